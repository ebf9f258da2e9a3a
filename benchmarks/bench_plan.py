"""Benchmark: plan one night for the three stations, against a per-station greedy baseline.

    python benchmarks/bench_plan.py [--night 2026-03-19] [--catalogue PATH]

The catalogue is the real 2026 CelesTrak snapshot of about 14,700 objects in
``../shared/data/catalogues/``; the stations are ``stations/*.toml``. Reported:

- planning time for one night, whole (visibility of the catalogue from every station,
  scheduling, exact pointings), warm (numba compiled by a first run of the same);
- coverage: of the catalogue objects the three stations could observe that night,
  the share the plan observes at least once; the baseline is the same greedy rule
  run for each station on its own (no knowledge of the others), in the same process
  on the same visibility tables.
"""

from __future__ import annotations

import argparse
import lzma
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aposos.center.tasking import plan_night, station_nights  # noqa: E402
from aposos.center.tasking_stations import load_planning_stations  # noqa: E402
from aposos.orbit.catalogue import Catalogue  # noqa: E402

DEFAULT_CATALOGUE = (
    REPO.parent / "shared" / "data" / "catalogues" / "celestrak-active-2026-03-18.3le.xz"
)


def load(path: Path) -> Catalogue:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt") as fh:
        return Catalogue.from_tle(fh.read().splitlines())


def duplicates(tasks) -> int:
    """Pairs of tasks on the same object at overlapping times on different stations."""
    by_obj = {}
    for t in tasks:
        if t.norad_id is not None:
            by_obj.setdefault(t.norad_id, []).append(t)
    n = 0
    for ts in by_obj.values():
        for i, a in enumerate(ts):
            for b in ts[i + 1 :]:
                if a.station != b.station and a.start < b.end and b.start < a.end:
                    n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--night", default="2026-03-19")
    ap.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    args = ap.parse_args()
    stations = load_planning_stations(REPO / "stations")
    t0 = time.perf_counter()
    cat = load(args.catalogue)
    t_load = time.perf_counter() - t0
    print(f"catalogue {args.catalogue.name}: {len(cat)} objects, read in {t_load:.1f} s")
    print("warm-up (numba compilation) ...", flush=True)
    small = cat.subset(np.arange(0, len(cat), 50))
    plan_night(stations, small, args.night)

    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        plan = plan_night(stations, cat, args.night)
        times.append(time.perf_counter() - t0)
    t_plan = min(times)
    t0 = time.perf_counter()
    nights = station_nights(stations, cat, np.datetime64(args.night, "D"))
    t_vis = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = plan_night(stations, cat, args.night, nights=nights, network=False)
    t_base = time.perf_counter() - t0

    print(f"\nnight {args.night}, stations {', '.join(s.code for s in stations)}")
    for code, w in plan.windows.items():
        print(f"  {code}: dark {w[0]} .. {w[1]}" if w else f"  {code}: never dark")
    print(
        f"\nplanning time, whole night, network plan: {t_plan:.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)}; of which visibility {t_vis:.2f} s)"
    )
    print(f"baseline scheduling alone (visibility shared): {t_base:.2f} s")
    n_obs = plan.observable.size
    observable = set(plan.observable.tolist())
    print(f"\nobjects observable by some station tonight: {n_obs} of {len(cat)}")
    rows = [("network plan", plan), ("per-station greedy baseline", base)]
    for label, p in rows:
        per = {}
        for t in p.tasks:
            per[t.station] = per.get(t.station, 0) + 1
        print(
            f"  {label:30s} tasks {len(p.tasks):5d} {per}  observed "
            f"{len(p.covered & set(p.observable.tolist())):5d}  coverage {p.coverage():6.1%}"
            f"  double-booked pairs {duplicates(p.tasks)}"
        )
    # the most any de-duplication could gain: every baseline station's own objects
    own = sum(
        len({r for p in base.planned if p.station == code for r in p.covers} & observable)
        for code in base.nights
    )
    print(f"  baseline objects counted per station and summed (duplicates not removed): {own}")
    ratio = plan.coverage() / max(base.coverage(), 1e-9)
    print(
        f"\ncoverage ratio network / baseline: {ratio:.2f}x "
        f"(+{100 * (plan.coverage() - base.coverage()):.1f} points)"
    )
    print(
        f"goal: plan a night in under 60 s: {'met' if t_plan < 60 else 'NOT met'} ({t_plan:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
