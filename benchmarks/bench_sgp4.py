"""SGP4 throughput: aposos numba kernels against python-sgp4's SatrecArray, same process.

25,000 realistic element sets x 1,000 times (one night at 30 s steps). Prints
propagations per second for both, the ratio, and the largest difference.

    .venv/bin/python benchmarks/bench_sgp4.py [--objects N] [--times M] [--repeat K]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from sgp4.api import Satrec, SatrecArray

sys.path.insert(0, os.path.dirname(__file__))
from catalogue25k import realistic_tle_lines  # noqa: E402

from aposos.orbit.catalogue import Catalogue  # noqa: E402


def best_of(repeat, func):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=25_000)
    ap.add_argument("--times", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    lines = realistic_tle_lines(args.objects)
    t0 = time.perf_counter()
    cat = Catalogue.from_tle(lines)
    t_load = time.perf_counter() - t0
    ref = SatrecArray([Satrec.twoline2rv(a, b) for a, b in zip(lines[1::3], lines[2::3])])
    classes = {c: int((cat.orbit_class == c).sum()) for c in ("LEO", "MEO", "GEO", "HEO")}
    print(f"catalogue: {len(cat)} objects {classes}, loaded in {t_load:.2f} s")

    jd = np.full(args.times, 2459124.5)
    fr = 0.75 + np.arange(args.times) * (30.0 / 86400.0)  # a night at 30 s steps
    n = len(cat) * args.times
    e = np.empty((len(cat), args.times), dtype=np.uint8)
    r = np.empty((len(cat), args.times, 3))
    v = np.empty_like(r)
    cat.propagate(jd[:2], fr[:2])  # compile / load the cached kernel
    ours_best, ours_med = best_of(args.repeat, lambda: cat.propagate(jd, fr, out=(e, r, v)))
    e_ref = np.empty_like(e)
    r_ref = np.empty_like(r)
    v_ref = np.empty_like(v)
    ref_best, ref_med = best_of(
        args.repeat,
        lambda: ref._sgp4(jd, fr, e_ref, r_ref, v_ref),  # sgp4() minus allocation
    )
    ok = (e == 0) & (e_ref == 0)
    dr = np.abs(r - r_ref)[ok].max() * 1e6
    dv = np.abs(v - v_ref)[ok].max() * 1e6
    print(f"propagations: {len(cat)} objects x {args.times} times = {n / 1e6:.1f} M")
    print(
        f"python-sgp4 SatrecArray: {n / ref_best / 1e6:7.2f} M/s (best), {n / ref_med / 1e6:.2f} M/s (median)"
    )
    print(
        f"aposos numba ({os.cpu_count()} cores): {n / ours_best / 1e6:7.2f} M/s (best), {n / ours_med / 1e6:.2f} M/s (median)"
    )
    print(
        f"ratio aposos / SatrecArray: {ref_best / ours_best:.2f}x (best), {ref_med / ours_med:.2f}x (median)"
    )
    print(
        f"largest difference: {dr:.4f} mm, {dv:.4f} mm/s; error codes equal: {np.array_equal(e, e_ref)}"
    )


if __name__ == "__main__":
    main()
