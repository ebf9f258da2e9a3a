"""Benchmark: plan one night for the three stations, against a per-station greedy baseline.

    python benchmarks/bench_plan.py [--night 2026-03-19] [--catalogue PATH]

The catalogue is the real 2026 CelesTrak snapshot of about 14,700 objects in
``../shared/data/catalogues/``; the stations are ``stations/*.toml``. Reported:

- planning time for one night, whole (visibility of the catalogue from every station,
  scheduling, exact pointings): cold (the first plan in this process; numba kernels
  from the on-disk cache) and warm (two more runs, with their CPU seconds);
- coverage: of the catalogue objects the three stations could observe that night,
  the share the plan observes at least once; the baseline is the same greedy rule
  run for each station on its own (no knowledge of the others, one target per
  pointing, as an observatory would plan alone), in the same process on the same
  visibility tables. Every plan's objects are counted the same way: targets, GEO
  neighbours in stare fields, and low-orbit objects that cross a field during the
  frames (:mod:`aposos.center.tasking_fields`). A third line, each station alone but
  with multi-object fields, splits the gain between fields and coordination.
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
    t0 = time.perf_counter()
    plan_night(stations, cat, args.night)
    t_cold = time.perf_counter() - t0
    times, cpus = [], []
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        plan = plan_night(stations, cat, args.night)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    t_plan = min(times)
    t0 = time.perf_counter()
    nights = station_nights(stations, cat, np.datetime64(args.night, "D"))
    t_vis = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = plan_night(stations, cat, args.night, nights=nights, network=False)
    t_base = time.perf_counter() - t0
    alone_multi = plan_night(stations, cat, args.night, nights=nights, network=False, multi=True)

    print(f"\nnight {args.night}, stations {', '.join(s.code for s in stations)}")
    for code, w in plan.windows.items():
        print(f"  {code}: dark {w[0]} .. {w[1]}" if w else f"  {code}: never dark")
    print(
        f"\nplanning time, whole night, network plan: cold {t_cold:.2f} s, warm {t_plan:.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)}; visibility alone {t_vis:.2f} s)"
    )
    # on a shared machine the CPU seconds (both threads of numba's kernels summed) compare
    # better than the wall time
    print(f"CPU seconds of the warm runs: {', '.join(f'{c:.2f}' for c in cpus)}")
    print(f"baseline scheduling alone (visibility shared): {t_base:.2f} s")
    n_obs = plan.observable.size
    observable = set(plan.observable.tolist())
    print(f"\nobjects observable by some station tonight: {n_obs} of {len(cat)}")
    rows = [
        ("network plan", plan),
        ("per-station greedy baseline", base),
        ("each station alone + fields", alone_multi),
    ]
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
    for label, p in rows:
        fields = [q for q in p.planned if q.reason.startswith("multi-object field")]
        streak_only = {r for q in fields for r in q.covers} - {
            r for q in p.planned if not q.reason.startswith("multi-object field") for r in q.covers
        }
        passers = sum(len(q.covers) - 1 for q in p.planned if q.tracking == "rate")
        print(
            f"  {label:30s} multi-object fields {len(fields):4d}, objects seen only as "
            f"streaks in them {len(streak_only & observable):4d}; passers in rate tasks {passers}"
        )
    ratio = plan.coverage() / max(base.coverage(), 1e-9)
    print(
        f"\ncoverage ratio network / baseline: {ratio:.2f}x "
        f"(+{100 * (plan.coverage() - base.coverage()):.1f} points)"
    )
    slowest = max(t_cold, t_plan)
    print(
        f"goal: plan a night in under 60 s: {'met' if slowest < 60 else 'NOT met'} "
        f"(cold {t_cold:.1f} s, warm {t_plan:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
