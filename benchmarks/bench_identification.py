"""Identification on real element-set errors: the 2026 CelesTrak series, pair by pair.

For a pair (older, newer) of snapshots of the daily series in ``shared/data/catalogues``,
tracklets are made from the newer snapshot's element sets (objects observed within half
a day of their newer epoch, where that element set is at its best) by the independent
path of ``tests/truthset.py`` (python-sgp4 + astropy, 1-3" noise), and correlated
against the older snapshot. Every object absent from the older snapshot (new launches)
is observed too: those must come out uncorrelated.

With ``--trains N`` the tracklets are instead N passes of trains (``tests/trainpasses.py``:
a member and its neighbours within minutes along track, seen from one station as they
cross the same stretch of sky), the case the joint stage (``aposos.correlate.joint``)
decides together. Both modes print the figures without and with the joint stage.

Goals (issue 9): >= 99.5 % right at 1 day, >= 98 % at 3 days, <= 0.1 % confidently
wrong at every age, >= 99 % of absent objects uncorrelated; the rest ambiguous.

    .venv/bin/python benchmarks/bench_identification.py [--pairs 17:18 19:20 ...]
        [--tracklets N | --trains N] [--model model.json] [--seed S]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from trainpasses import build_train_passes  # noqa: E402
from truthset import build_truth_set, read_3le, score_truth  # noqa: E402

from aposos.correlate.correlator import SGP4Correlator  # noqa: E402
from aposos.correlate.model import ErrorModel  # noqa: E402
from aposos.model import Site  # noqa: E402
from aposos.orbit.catalogue import Catalogue  # noqa: E402

SERIES = HERE.parent / "tests" / "data" / "shared" / "catalogues"
NEAR_RMS_ARCSEC = 1.0  # see nearer_than_truth
NEAR_CROSS_KM = 2.0
NEAR_MARGIN_S = 1.0
DEFAULT_PAIRS = ("17:18", "19:20", "17:19", "18:20", "16:19", "17:20", "20:23", "16:23")


def snapshot(day: str) -> Path:
    return SERIES / f"celestrak-active-2026-03-{int(day):02d}.3le.xz"


def previous_snapshot(day: str) -> Path | None:
    """The series' snapshot before ``day``, if any (the history a data center keeps)."""
    earlier = sorted(
        p for p in SERIES.glob("celestrak-active-2026-03-*.3le.xz") if p < snapshot(day)
    )
    return earlier[-1] if earlier else None


@functools.cache
def night_of(path: Path) -> float:
    """The UTC day (JD at 0 h) of the snapshot's median epoch (read from the element
    sets' epoch fields: initialising every orbit for it took about 4 CPU-s)."""
    epochs = []
    for _, line1, _ in read_3le(path):
        yy, day = int(line1[18:20]), float(line1[20:32])
        year = 1900 + yy if yy >= 57 else 2000 + yy
        jan1 = 367 * year - (7 * year) // 4 + 1721044.5  # JD of 1 January, 0 h (1901-2099)
        epochs.append(jan1 + day - 1.0)
    return float(np.floor(np.median(epochs) - 0.5) + 0.5)


def evaluate_pair(
    older: Path, newer: Path, *, n_tracklets: int, seed: int, model, cube_dir, previous=None,
    trains: int = 0,
):  # fmt: skip
    """Correlate tracklets of ``newer``'s objects against ``older`` (``previous``: the
    snapshot before ``older``, the catalogue history a data center keeps); ``trains``:
    that many train passes instead. Returns the truth, the single-tracklet and the joint
    results, and the seconds each took."""
    ts, correlator = pair_correlator(
        older, newer, n_tracklets=n_tracklets, seed=seed, model=model, cube_dir=cube_dir,
        previous=previous, trains=trains,
    )  # fmt: skip
    return (ts, *run_pair(correlator, ts))


def pair_correlator(
    older: Path, newer: Path, *, n_tracklets: int, seed: int, model, cube_dir, previous=None,
    trains: int = 0,
):  # fmt: skip
    """The truth set of a pair and a correlator of its older snapshot (see
    :func:`evaluate_pair`)."""
    if trains:
        ts = build_train_passes(
            newer, catalogue_path=older, night_jd=night_of(newer), n_passes=trains, seed=seed
        )
    else:
        ts = build_truth_set(
            newer, n_tracklets=n_tracklets, seed=seed, perturb=False, catalogue_path=older,
            nights=((night_of(newer), 1.0),), max_epoch_offset_days=0.5,
            include_all_missing=True,
        )  # fmt: skip
    cat = Catalogue.from_tle(ts.catalogue_lines)
    sites = {code: Site(*where) for code, where in ts.sites.items()}
    correlator = SGP4Correlator(
        cat, sites, cube_dir=cube_dir, error_model=model,
        previous_catalogue=Catalogue.from_tle(previous) if previous else None,
    )  # fmt: skip
    return ts, correlator


def run_pair(correlator, ts):
    """The single-tracklet and joint results of a truth set, and the seconds each took."""
    tracklets = [t.tracklet for t in ts.tracklets]
    t0 = time.perf_counter()
    single, untempered = correlator.correlate_single(tracklets)
    t1 = time.perf_counter()
    joint = correlator.joint(tracklets, single, untempered)
    t2 = time.perf_counter()
    return single, joint, (t1 - t0, t2 - t1)


def truth_stages(correlator, ts) -> list[str | None]:
    """How far each tracklet's true object got: ``"gate"`` (not through the coarse
    gate), ``"rank"`` (through it, ranked out before the fit) or ``"fit"`` (fitted);
    ``None``: not in the catalogue."""
    from rank_of_truth import NOT_GATED, truth_ranks

    tracklets = [t.tracklet for t in ts.tracklets]
    ranks, *_, kept = truth_ranks(correlator, tracklets, [t.norad_id for t in ts.tracklets])
    return [
        None if r < 0 else "gate" if r == NOT_GATED else "fit" if k else "rank"
        for r, k in zip(ranks.tolist(), kept.tolist(), strict=True)
    ]


def class_table(ts, results) -> list[str]:
    rows = []
    for name in ("LEO", "MEO", "GEO", "HEO"):
        sel = [(r, t) for r, t in zip(results, ts.tracklets, strict=True)
               if t.orbit_class == name and t.in_catalogue]  # fmt: skip
        if not sel:
            continue
        right = sum(r.status == "correlated" and r.norad_id == t.norad_id for r, t in sel)
        wrong = sum(r.status == "correlated" and r.norad_id != t.norad_id for r, t in sel)
        amb = sum(r.status == "ambiguous" for r, _ in sel)
        none = sum(not r.candidates for r, _ in sel)
        rows.append(
            f"    {name}: {len(sel)} listed, right {right / len(sel):.2%}, wrong {wrong}, "
            f"ambiguous {amb}, uncorrelated {len(sel) - right - wrong - amb} "
            f"(no candidate {none})"
        )
    return rows


def reliability(all_pairs) -> list[str]:
    """Among correlations reported with score p, the share that is right, by bin."""
    scores, right = [], []
    for ts, results in all_pairs:
        for r, t in zip(results, ts.tracklets, strict=True):
            if r.status == "correlated":
                scores.append(r.score)
                right.append(r.norad_id == t.norad_id)
    edges = (0.0, 0.9, 0.99, 0.999, 1.01)
    return _binned(np.array(scores), np.array(right), edges, ("score", "correlated", "right"))


def _binned(p, hit, edges, words, weight=None) -> list[str]:
    """One line per bin of ``p`` that holds any: its count, mean p and share of ``hit``
    (weighted by ``weight`` when given); ``words`` name the value, the things counted
    and the hit."""
    value, things, hit_word = words
    weight = np.ones(p.size) if weight is None else weight
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (p >= lo) & (p < hi)
        if sel.any():
            w = weight[sel]
            rows.append(
                f"    {value} [{lo}, {min(hi, 1.0)}): {sel.sum()} {things}, mean {value} "
                f"{np.average(p[sel], weights=w):.4f}, {hit_word} "
                f"{np.average(hit[sel], weights=w):.4f}"
            )
    return rows


def unlisted_reliability(all_pairs, absent_share=None) -> list[str]:
    """Among tracklets given a "not in the catalogue" posterior p, the share whose object
    is absent from the older snapshot, by bin (co-located objects left out).

    Every absent object is observed, so they are several times commoner among the
    tracklets than in the sky: with ``absent_share`` (per pair, the newer snapshot's
    share of objects absent from the older one) the absent tracklets are weighted down
    to that share, the base rate the model's ``uncatalogued_fraction`` stands for."""
    p, absent, weight = [], [], []
    for k, (ts, results) in enumerate(all_pairs):
        kept = [(r, t) for r, t in zip(results, ts.tracklets, strict=True) if not t.colocated]
        hit = np.array([not t.in_catalogue for _, t in kept])
        w = np.ones(hit.size)
        if absent_share is not None and hit.any() and not hit.all():
            s = absent_share[k]
            w[hit] = s / (1.0 - s) * (~hit).sum() / hit.sum()
        p += [r.p_unlisted if np.isfinite(r.p_unlisted) else 1.0 for r, _ in kept]
        absent += hit.tolist()
        weight += w.tolist()
    edges = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.01)
    words = ("p", "tracklets", "absent")
    return _binned(np.array(p), np.array(absent), edges, words, np.array(weight))


def absent_share(older: Path, newer: Path) -> float:
    """The share of ``newer``'s objects absent from ``older``."""
    new_ids = Catalogue.from_tle(newer).norad_id
    return float(np.mean(~np.isin(new_ids, Catalogue.from_tle(older).norad_id)))


def _category(r, t, launch: dict[int, int], stage: str | None = None) -> str:
    """Why a listed tracklet was not identified (see ``miss_categories``; ``stage``: how
    far its true object got, :func:`truth_stages`)."""
    ids = [c.norad_id for c in r.candidates]
    mate = len(ids) > 1 and launch.get(ids[0], -1) >= 0 and launch.get(ids[0]) == launch.get(ids[1])
    if r.status == "correlated":
        return "c: wrong object named, " + ("a launch mate" if launch.get(ids[0], -1) >= 0
                                             and launch.get(ids[0]) == launch.get(t.norad_id)
                                             else "not a launch mate")  # fmt: skip
    if t.norad_id not in ids:
        why = {
            "gate": ": not through the gate",
            "rank": ": through the gate, not fitted",
            "fit": ": fitted, below the record's candidates",
        }
        return "b: true object not among the candidates" + why.get(stage, "")
    if ids[0] != t.norad_id:
        return f"b: true object ranked {ids.index(t.norad_id) + 1}, {r.status}"
    if r.status == "ambiguous":
        return "a: true on top, ambiguous with " + ("a launch mate" if mate else "another object")
    if r.reason and "element set is lost" in r.reason:
        return "a: true on top, uncorrelated: its element set taken for lost"
    if r.p_unlisted >= 0.1:
        return "a: true on top, uncorrelated: 'not in the catalogue' >= 0.1"
    return "a: true on top, uncorrelated: below the threshold, no tie"


def miss_categories(ts, results, stages=None) -> list[str]:
    """The listed tracklets not identified, counted by why (issue 9's diagnosis;
    ``stages``: :func:`truth_stages`, to tell where a true object that is not among the
    candidates was lost)."""
    from aposos.correlate.errors import launch_index

    cat = Catalogue.from_tle(ts.catalogue_lines)
    launch = dict(
        zip(cat.norad_id.tolist(), launch_index(cat.intl_designator).tolist(), strict=True)
    )
    counts: dict[str, int] = {}
    stages = [None] * len(results) if stages is None else stages
    for r, t, stage in zip(results, ts.tracklets, stages, strict=True):
        if (
            t.in_catalogue
            and not t.colocated
            and not (r.status == "correlated" and r.norad_id == t.norad_id)
        ):
            key = _category(r, t, launch, stage)
            counts[key] = counts.get(key, 0) + 1
    return [f"      {n:4d}  {key}" for key, n in sorted(counts.items())]


def nearer_than_truth(ts, results) -> list[str]:
    """Listed tracklets lying nearer to another catalogued object's prediction than to
    their own: among the record's candidates, another object fits as well (rms at most
    the truth's fit's + NEAR_RMS_ARCSEC, within NEAR_CROSS_KM across track of it) with a
    time offset more than NEAR_MARGIN_S smaller than the truth's. An error model that
    scores by class and age alone, smaller offsets likelier, cannot name the truth for
    these; their share bounds what such a model gets right (right and not-right counted
    apart; tracklets whose truth is not among the candidates are not counted)."""
    near = {True: 0, False: 0}
    for r, t in zip(results, ts.tracklets, strict=True):
        own = [c for c in r.candidates if c.norad_id == t.norad_id]
        if not t.in_catalogue or t.colocated or not own:
            continue
        if any(
            c.norad_id != t.norad_id
            and c.rms_arcsec <= own[0].rms_arcsec + NEAR_RMS_ARCSEC
            and abs(c.cross_track_km) <= abs(own[0].cross_track_km) + NEAR_CROSS_KM
            and abs(c.time_offset_s) + NEAR_MARGIN_S < abs(own[0].time_offset_s)
            for c in r.candidates
        ):
            near[r.status == "correlated" and r.norad_id == t.norad_id] += 1
    listed = sum(t.in_catalogue and not t.colocated for t in ts.tracklets)
    share = (near[True] + near[False]) / max(listed, 1)
    return [
        f"    nearer to another object than to their own: {near[True] + near[False]} "
        f"({share:.2%} of listed; {near[True]} named right anyway, {near[False]} not)"
    ]


def report(a, b, label, ts, results, seconds, verbose, categories=None) -> None:
    """Print a pair's figures; ``categories``: the misses by cause too (a list of
    :func:`truth_stages`, or ``True`` without them)."""
    stats = score_truth(results, ts.tracklets)
    amb = sum(r.status == "ambiguous" for r, t in zip(results, ts.tracklets, strict=True)
              if t.in_catalogue)  # fmt: skip
    print(
        f"2026-03-{a} -> 2026-03-{b} [{label}]: {len(results)} tracklets, "
        f"right {stats['correct_rate']:.2%} of {stats['listed']} listed, "
        f"confidently wrong {stats['confidently_wrong']} ({stats['wrong_rate']:.2%}), "
        f"ambiguous {amb}, absent uncorrelated {stats['missing_uncorrelated']}"
        f"/{stats['missing']}, co-located ambiguous-or-right "
        f"{stats['colocated_ambiguous_or_right']}/{stats['colocated']}; {seconds:.1f} s"
    )
    print("\n".join(class_table(ts, results)))
    print("\n".join(reliability([(ts, results)])))
    print("\n".join(nearer_than_truth(ts, results)))
    if categories:
        print("    misses by cause:")
        stages = categories if isinstance(categories, list) else None
        print("\n".join(miss_categories(ts, results, stages)))
    if verbose:
        for r, t in zip(results, ts.tracklets, strict=True):
            missed = t.in_catalogue and not (r.status == "correlated" and r.norad_id == t.norad_id)
            named = not t.in_catalogue and r.status != "uncorrelated"
            if missed or named:
                top = r.candidates[0] if r.candidates else None
                print(
                    f"      {'miss' if missed else 'absent'} {t.norad_id} {t.orbit_class} "
                    f"n={len(t.tracklet)} "
                    f"{t.tracklet.station} {t.tracklet.utc[0]} "
                    f"{r.status} top={top.norad_id if top else None} "
                    f"score={r.score:.3f} tau={r.time_offset_s:.1f} "
                    f"why={getattr(r, 'reason', '')}"
                )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="*", default=list(DEFAULT_PAIRS))
    parser.add_argument("--tracklets", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--trains", type=int, default=0,
        help="observe this many train passes per pair instead of single objects",
    )  # fmt: skip
    parser.add_argument("--model", help="fitted error model (JSON); default: the packaged one")
    parser.add_argument("--verbose", action="store_true", help="list every miss")
    parser.add_argument(
        "--categories", action="store_true", help="count the misses by cause (fitting pairs only)"
    )
    parser.add_argument(
        "--no-history", action="store_true",
        help="correlate without the snapshot before the older one",
    )  # fmt: skip
    args = parser.parse_args(argv)
    model = ErrorModel.load(args.model) if args.model else ErrorModel.default()
    evaluated, shares = [], []
    with tempfile.TemporaryDirectory() as cube_dir:
        for pair in args.pairs:
            a, b = pair.split(":")
            older, newer = snapshot(a), snapshot(b)
            before = None if args.no_history else previous_snapshot(a)
            ts, correlator = pair_correlator(
                older, newer, n_tracklets=args.tracklets, seed=args.seed, model=model,
                cube_dir=os.path.join(cube_dir, pair.replace(":", "-")), previous=before,
                trains=args.trains,
            )  # fmt: skip
            single, joint, (elapsed, joint_s) = run_pair(correlator, ts)
            stages = truth_stages(correlator, ts) if args.categories else None
            for label, results, seconds in (("single", single, elapsed), ("joint", joint, joint_s)):
                report(a, b, label, ts, results, seconds, args.verbose, stages)
            changed = sum(
                (s.status, s.norad_id) != (j.status, j.norad_id)
                for s, j in zip(single, joint, strict=True)
            )
            grouped = sum(bool(r.reason and r.reason.startswith("joint")) for r in joint)
            print(f"    joint stage: {grouped} tracklets in pass groups, {changed} calls changed")
            evaluated.append((int(b) - int(a), ts, joint))
            shares.append(absent_share(older, newer))
            sys.stdout.flush()
    for age in sorted({age for age, _, _ in evaluated}):
        print(f"reliability of 'correlated' (joint), pairs {age} day(s) apart:")
        print("\n".join(reliability([(ts, r) for a, ts, r in evaluated if a == age])))
    print("reliability of 'correlated' (joint), all pairs:")
    print("\n".join(reliability([(ts, r) for _, ts, r in evaluated])))
    print("reliability of 'not in the catalogue' (joint), all pairs:")
    print("\n".join(unlisted_reliability([(ts, r) for _, ts, r in evaluated])))
    print(
        "the same, absent objects weighted to their share of the newer snapshot "
        f"({', '.join(f'{s:.2%}' for s in shares)}):"
    )
    print("\n".join(unlisted_reliability([(ts, r) for _, ts, r in evaluated], shares)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
