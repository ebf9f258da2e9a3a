"""Station reduction on simulated nights it was not tuned on: the goal table.

For each station (Iran 4096², Pakistan and Peru 2048²) a short night in ``mixed``
mode (visits cycle through sidereal, rate and stare tracking) is simulated with a
seed and a start time, reduced with its calibration frames as ``aposos station
reduce`` does, and scored against the simulator's truth (``tests/station_truth.py``):

* recall: satellite-frames with peak S/N >= 5 and a measurable position (midpoint or
  an end inside the frame) that some tracklet observation matches within 3 px at one
  of the three times (open, middle, close);
* objects: distinct satellites with such a frame, found in at least one of them;
* false tracklets: tracklets none of whose observations match a satellite;
* frames with 8+ catalogue stars solved;
* median position error (px) of the matched observations.

Seed sets (say which when quoting figures):

* ``tuned``: seeds 11, 12 with the start times below: used while changing the code;
* ``heldout``: seeds 31, 32 with other start times: not looked at while tuning (seed 31
  was then looked at one by one while fixing issue 10: it is tuned data now);
* ``fresh``: seeds 47, 53 with start times later in the night: held out from issue 10's
  fixes (run once, at the end; seed 47 of Peru and Pakistan was then looked at, and
  seed 53's and Iran 47's misses by category in the second pass: tuning data now);
* ``late``: seeds 59, 61 with start times later still: held out from the second pass
  (run once, with its final code);
* ``dec``: seeds 67, 71 with start times later again (after 2 a.m. local time, when
  rate-tracking targets are mostly slow MEO objects): held out from the third pass
  (short star trails), run once with its final code (3cce849, nights simulated
  first, then reduced with ``--reuse``): recall 351/373 (94 %; rate 49/55, Iran rate
  19/21), false 0/37, solved 8+ 119/120, median 0.049 px.
* ``jan``: seeds 83, 89 with start times later again (the last hours before dawn):
  held out from the fourth pass (task frames), run once with its final code (e219216;
  nights simulated first with ``--simulate-only``, then reduced with ``--reuse``):
  recall 437/488 (90 %; Peru sidereal 70/110), false 5/58, solved 8+ 154/160 (Pakistan
  rate 13/19), median 0.02-0.08 px.
* ``feb``: seeds 97, 101 with start times between the earlier sets': held out from the
  fifth pass (short bright streaks, streak pairs; Peru seed 47 looked at one by one at
  the ``jan`` start, seed 53 by category), run once with its final code (nights
  simulated first with ``--simulate-only``, not looked at, then reduced with ``--reuse``;
  81ade06): recall 637/662 (96 %; sidereal 154/162, rate 79/94 with Peru rate 50/62
  and Pakistan rate 9/12, stare 404/406), false 1/60 (a Pakistan sidereal tracklet),
  solved 8+ 155/167 (Pakistan rate 2/14), median 0.03-0.06 px.
* ``mar``: seeds 103, 107 with start times between the earlier sets': held out from the
  known-geometry solving of small fields (tuned on bench_small_fields.py seed 11), run
  once with its final code (75c02f6): recall 598/664 (90 %), false 3/56; then looked
  at one by one (slow HEO in rate tracking, short streaks along stare trails): tuning
  data now.
* ``apr``: seeds 113, 127 with start times between the earlier sets': held out from
  that sixth pass, run once with its final code (81b5e02; nights simulated first with
  ``--simulate-only``, then reduced with ``--reuse``): recall 692/700 (99 %; rate 70/75,
  Peru rate 27/31), false 1/63 (a Peru sidereal tracklet), solved 8+ 222/222, median
  0.02-0.09 px.

Run: ``python benchmarks/bench_station_night.py --set heldout [--minutes 3]``.
Goals (issue 10): recall >= 95 %, false tracklets <= 2 % of those reported, >= 98 %
of frames with 8+ stars solved, median error <= 0.3 px.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from station_truth import score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STARTS = {  # (station, UTC start) per set; all an hour or more into astronomical night
    "tuned": {
        "iran": "2020-10-02T17:10:00",
        "pakistan": "2020-10-02T15:40:00",
        "peru": "2020-10-03T01:20:00",
    },
    "heldout": {
        "iran": "2020-10-02T18:25:00",
        "pakistan": "2020-10-02T17:05:00",
        "peru": "2020-10-03T00:35:00",
    },
    "fresh": {  # chosen on 3 December 2026, after the fixes of issue 10, and not tuned on
        "iran": "2020-10-02T20:40:00",
        "pakistan": "2020-10-02T19:15:00",
        "peru": "2020-10-03T03:05:00",
    },
    "late": {  # chosen on 3 December 2026 (second pass), run once with the final code
        "iran": "2020-10-02T21:50:00",
        "pakistan": "2020-10-02T20:25:00",
        "peru": "2020-10-03T04:10:00",
    },
    "dec": {  # chosen on 3 December 2026 (third pass), run once with the final code
        "iran": "2020-10-02T23:05:00",
        "pakistan": "2020-10-02T21:40:00",
        "peru": "2020-10-03T05:20:00",
    },
    "jan": {  # chosen on 3 December 2026 (fourth pass), run once with the final code
        "iran": "2020-10-03T00:10:00",
        "pakistan": "2020-10-02T22:45:00",
        "peru": "2020-10-03T06:25:00",
    },
    "feb": {  # chosen on 3 December 2026 (fifth pass), run once with the final code
        "iran": "2020-10-02T19:35:00",
        "pakistan": "2020-10-02T18:15:00",
        "peru": "2020-10-03T02:10:00",
    },
    "mar": {  # chosen on 4 December 2026 (issue 10, known-geometry solving), run once
        "iran": "2020-10-02T22:30:00",
        "pakistan": "2020-10-02T16:25:00",
        "peru": "2020-10-03T04:45:00",
    },
    "apr": {  # chosen on 4 December 2026 (issue 10, sixth pass), run once
        "iran": "2020-10-02T21:15:00",
        "pakistan": "2020-10-02T19:50:00",
        "peru": "2020-10-03T03:35:00",
    },
}
SEEDS = {
    "tuned": (11, 12), "heldout": (31, 32), "fresh": (47, 53), "late": (59, 61), "dec": (67, 71),
    "jan": (83, 89), "feb": (97, 101), "mar": (103, 107), "apr": (113, 127),
}  # fmt: skip
MODES = ("sidereal", "rate", "stare")


def run_one(
    station: str, start: str, seed: int, minutes: float, folder: Path, cat, stars,
    *, mode: str = "mixed", reuse: bool = False, simulate_only: bool = False,
    star_catalogue: str = "auto",
):  # fmt: skip
    from aposos.station.config import StationConfig
    from aposos.station.reduce import ReduceOptions, reduce_frames
    from aposos.station.simulator.night import write_night

    cfg = StationConfig.load(ROOT / "stations" / f"{station}.toml")
    t0 = time.perf_counter()
    if not (reuse and (folder / "truth.json").exists()):
        write_night(cfg, stars, cat, start, minutes, folder, mode=mode, seed=seed, progress=False)
    t1 = time.perf_counter()
    if simulate_only:
        return None, t1 - t0, 0.0
    options = ReduceOptions(catalogue=star_catalogue)
    result = reduce_frames(folder / "lights", cfg, calib=folder / "calib", options=options)
    t2 = time.perf_counter()
    return result, t1 - t0, t2 - t1


def by_mode(folder: Path, result) -> dict:
    """Score each tracking mode on its own frames: recall with every tracklet (a target
    seen in sidereal frames and then tracked is one tracklet across both), tracklets and
    false ones with the mode of their first frame."""
    truth = json.loads((folder / "truth.json").read_text())
    doc = result.to_json()
    mode_of = {Path(f["file"]).name: f["mode"] for f in truth["frames"]}
    frame_utc = sorted(
        (np.datetime64(f["utc_open"].rstrip("Z"), "us"), mode_of.get(f["file"]))
        for f in doc["frames"]
        if "utc_open" in f
    )
    whole = score(folder / "truth.json", doc, result.tracklets)
    false = set(whole.false_tracklets)
    out = {}
    for mode in MODES:
        sub = dict(truth, frames=[f for f in truth["frames"] if f["mode"] == mode])
        path = folder / f"truth-{mode}.json"
        path.write_text(json.dumps(sub))
        keep = []
        for k, t in enumerate(result.tracklets):
            first = np.datetime64(t.utc[0], "us")
            m = None
            for u, mm in frame_utc:
                if u <= first + np.timedelta64(1, "ms"):
                    m = mm
            if m == mode:
                keep.append(k)
        out[mode] = score(path, doc, result.tracklets)
        out[mode].tracklets = len(keep)
        out[mode].false_tracklets = [k for k in keep if k in false]
    out["all"] = whole
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=sorted(SEEDS), default="heldout")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--stations", default="iran,pakistan,peru")
    ap.add_argument("--seeds", help="comma-separated seeds (default: the set's)")
    ap.add_argument("--mode", choices=("mixed", *MODES), default="mixed", help="tracking mode")
    ap.add_argument("--keep", type=Path, help="keep the simulated nights in this folder")
    ap.add_argument(
        "--reuse", action="store_true", help="reduce the nights already in --keep again"
    )
    ap.add_argument(
        "--simulate-only", action="store_true", help="write the nights into --keep, no reduction"
    )
    ap.add_argument("--json", type=Path, help="write the table as JSON here")
    ap.add_argument(
        "--star-catalogue", default="auto", choices=("auto", "deep", "both"),
        help="reference stars of the reduction (the sky shows the deep store when installed)",
    )  # fmt: skip
    args = ap.parse_args(argv)

    from aposos.orbit.catalogue import Catalogue
    from aposos.station.stars import StarCatalogue

    sys.path.insert(0, str(ROOT / "tests"))
    from shared_data import CATALOGUE_NEW

    cat = Catalogue.from_tle(CATALOGUE_NEW)
    stars = StarCatalogue.load("both")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else SEEDS[args.set]
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-night-"))
    rows = []
    for station in args.stations.split(","):
        for seed in seeds:
            suffix = "" if args.mode == "mixed" else f"-{args.mode}"
            folder = base / f"{station}-{seed}{suffix}"
            start = STARTS[args.set][station]
            result, t_sim, t_red = run_one(
                station, start, seed, args.minutes, folder, cat, stars,
                mode=args.mode, reuse=args.reuse and args.keep is not None,
                simulate_only=args.simulate_only, star_catalogue=args.star_catalogue,
            )  # fmt: skip
            if result is None:
                print(f"{station} seed {seed}: simulated in {t_sim:.0f} s", file=sys.stderr)
                continue
            scores = by_mode(folder, result)
            for mode, s in scores.items():
                e = np.array(s.pos_err_px) if s.pos_err_px else np.array([np.nan])
                rows.append(
                    {
                        "station": station, "seed": seed, "mode": mode, "frames": s.frames,
                        "solved_8plus": s.solved_8plus, "frames_8plus": s.frames_8plus,
                        "satellites": s.satellites, "found": s.found,
                        "tracklets": s.tracklets, "false": len(s.false_tracklets),
                        "err_px": [float(v) for v in e],
                        "missed": [list(m) for m in s.missed],
                    }
                )  # fmt: skip
            print(
                f"{station} seed {seed}: simulated in {t_sim:.0f} s, reduced in {t_red:.0f} s",
                file=sys.stderr,
            )
    if args.simulate_only:
        return 0
    print_table(rows, f"set {args.set}, seeds {seeds}, {args.minutes} min {args.mode} per station")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _fmt(num, den, pct=True):
    if den == 0:
        return "  -  "
    return f"{num}/{den} ({100.0 * num / den:.0f}%)" if pct else f"{num}/{den}"


def print_table(rows, title):
    print(f"\n{title}")
    head = f"{'station':9} {'mode':9} {'recall':>15} {'false tracklets':>16} {'solved 8+':>15}"
    print(head + f" {'median err px':>14}")
    keys = sorted({(r["station"], r["mode"]) for r in rows}, key=lambda k: (k[0], k[1] == "all"))
    keys += [("ALL", m) for m in (*MODES, "all")]
    for st, mode in keys:
        sel = [r for r in rows if (st == "ALL" or r["station"] == st) and r["mode"] == mode]
        if not sel:
            continue
        err = np.concatenate([r["err_px"] for r in sel]) if sel else np.array([])
        err = err[np.isfinite(err)]
        med = f"{np.median(err):.3f}" if err.size else "-"
        print(
            f"{st:9} {mode:9} {_fmt(sum(r['found'] for r in sel), sum(r['satellites'] for r in sel)):>15} "
            f"{_fmt(sum(r['false'] for r in sel), sum(r['tracklets'] for r in sel)):>16} "
            f"{_fmt(sum(r['solved_8plus'] for r in sel), sum(r['frames_8plus'] for r in sel)):>15} "
            f"{med:>14}"
        )
    missed = [
        (r["station"], r["seed"], *m) for r in rows if r["mode"] == "all" for m in r["missed"]
    ]
    if missed:
        print("missed (station, seed, file, norad, peak S/N):")
        for m in missed:
            print("  ", m)


if __name__ == "__main__":
    raise SystemExit(main())
