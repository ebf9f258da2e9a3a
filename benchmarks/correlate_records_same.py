"""Whether two versions of the correlator give the same records on the bench's night.

A speed change must leave every record as it was: ``dump`` writes the warm-cube records
of :mod:`bench_correlate`'s night (all tracklets at once, and every 50th one alone) as
``Correlation.to_wire()`` to a pickle; run it from each version's tree, then ``compare``
says how many records are identical and names any number that differs by more than
1e-12 (relative, or absolute below 1).

    # the baseline's aposos first on the path (this file and the bench from this tree)
    cd BASELINE && PYTHONPATH=BASELINE python THIS/benchmarks/correlate_records_same.py \\
        dump /tmp/a.pkl --catalogue tests/data/shared/catalogues/celestrak-active-2026-03-18.3le.xz
    .venv/bin/python benchmarks/correlate_records_same.py dump /tmp/b.pkl \\
        --catalogue tests/data/shared/catalogues/celestrak-active-2026-03-18.3le.xz
    .venv/bin/python benchmarks/correlate_records_same.py compare /tmp/a.pkl /tmp/b.pkl
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

TOLERANCE = 1e-12


def dump(out: str, catalogue: str | None, n_tracklets: int) -> None:
    import bench_correlate as bench
    from catalogue25k import realistic_tle_lines

    from aposos.correlate.correlator import SGP4Correlator
    from aposos.orbit.catalogue import Catalogue

    if catalogue:
        _, cat, night = bench.real_snapshot(catalogue)
    else:
        cat, night = Catalogue.from_tle(realistic_tle_lines(25_000)), bench.NIGHT_JD
    tracklets, _ = bench.make_tracklets(cat, n_tracklets, night_jd=night)
    with tempfile.TemporaryDirectory() as cube_dir:
        SGP4Correlator(cat, bench.STATIONS, cube_dir=cube_dir)(tracklets)  # cold: builds
        warm = SGP4Correlator(cat, bench.STATIONS, cube_dir=cube_dir)
        night_records = [c.to_wire() for c in warm(tracklets)]
        alone = [warm.correlate_one(t).to_wire() for t in tracklets[::50]]
    with open(out, "wb") as f:
        pickle.dump({"night": night_records, "one at a time": alone}, f)


def differences(a, b, where: str = "") -> list[str]:
    """Where ``a`` and ``b`` (wire records) differ beyond :data:`TOLERANCE`."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: fields {sorted(a)} vs {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = a == b or (math.isnan(a) and math.isnan(b))
        if same or abs(a - b) <= TOLERANCE * max(1.0, abs(a)):
            return []
    elif a == b:
        return []
    return [f"{where}: {a!r} vs {b!r}"]


def compare(path_a: str, path_b: str) -> bool:
    with open(path_a, "rb") as fa, open(path_b, "rb") as fb:
        a, b = pickle.load(fa), pickle.load(fb)
    ok = True
    for key in a:
        same = sum(x == y for x, y in zip(a[key], b[key]))
        found = differences(a[key], b[key], key)
        print(f"{key}: {same} of {len(a[key])} records identical; {len(found)} differences")
        for line in found[:20]:
            print("  ", line)
        ok = ok and not found
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--catalogue", help="a real TLE/3LE snapshot (default: the replicated 25k)")
    d.add_argument("--tracklets", type=int, default=10_000)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args(argv)
    if args.command == "dump":
        dump(args.out, args.catalogue, args.tracklets)
        return 0
    return 0 if compare(args.a, args.b) else 1


if __name__ == "__main__":
    sys.exit(main())
