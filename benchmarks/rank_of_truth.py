"""Where the true object ranks after the coarse gate's cube rank (how many go to the fit).

The correlator fits the ``N_FIT`` best-ranked gate pairs of each tracklet
(:mod:`aposos.correlate.rank`); a true object ranked beyond that is lost before the fit.
This prints, for each set of tracklets, how often the true object is at rank 0, 1, 2-3,
... and beyond, so a smaller ``N_FIT`` can be chosen with a margin.

Sets: the speed bench's night (``bench_correlate.py``: replicated 25,000-object catalogue,
or ``--catalogue FILE``), and real pairs of the 2026 series (``--pairs 16:17 ...``,
tracklets made as in ``bench_identification.py``; ``--trains N`` for train passes).

    .venv/bin/python benchmarks/rank_of_truth.py --bench 2000
    .venv/bin/python benchmarks/rank_of_truth.py --pairs 16:17 18:19 16:18 16:20 19:23
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import bench_correlate  # noqa: E402
import bench_identification as ident  # noqa: E402

from aposos.correlate.correlator import N_FIT, SGP4Correlator, fit_worthy  # noqa: E402
from aposos.correlate.fit import ObservationBatch  # noqa: E402
from aposos.model import Site  # noqa: E402
from aposos.orbit.catalogue import Catalogue  # noqa: E402

EDGES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
NOT_GATED = 1 << 30
GAPS = (20.0, 25.0, 30.0, 35.0, 40.0, 50.0, 100.0)


def truth_ranks(correlator: SGP4Correlator, tracklets, truth_ids):
    """Rank of the true object among each tracklet's gate pairs after the cube rank
    (``NOT_GATED``: not among them; -1: not in the catalogue), its place in the gate's
    own order (closest first, within its orbit-class group), and how many pairs each
    tracklet's gate passed."""
    row_of = {int(n): i for i, n in enumerate(np.asarray(correlator.catalogue.norad_id))}
    ranks = np.full(len(tracklets), NOT_GATED, dtype=np.int64)
    places = np.full(len(tracklets), NOT_GATED, dtype=np.int64)
    passed = np.zeros(len(tracklets), dtype=np.int64)
    gaps = np.full(len(tracklets), np.inf)
    fitted = np.zeros(len(tracklets), dtype=np.int64)  # pairs the correlator fits
    kept = np.zeros(len(tracklets), dtype=bool)  # the true object among them
    within = np.zeros((len(tracklets), len(GAPS)), dtype=np.int64)
    results = [None] * len(tracklets)
    for chunk, sites in correlator._time_ordered_chunks(tracklets, results):
        batch = ObservationBatch.build(
            [tracklets[i] for i in chunk], sites,
            log_volume=correlator.error_model.background_log_volume,
        )  # fmt: skip
        trk, obj, _, score, rank, place = correlator._gate_ranked(batch)
        finite = np.isfinite(score)
        passed[chunk] = np.bincount(trk, minlength=len(chunk))
        best = np.full(len(chunk), np.inf)
        np.minimum.at(best, trk, score)
        gap = score - best[trk]
        worthy = fit_worthy(trk, score, rank, len(chunk))
        fitted[chunk] = np.bincount(trk[worthy], minlength=len(chunk))
        for g, d in enumerate(GAPS):
            within[chunk, g] = np.bincount(trk[gap <= d], minlength=len(chunk))
        for local, i in enumerate(chunk):
            row = row_of.get(int(truth_ids[i]))
            if row is None:
                ranks[i] = -1
                continue
            hit = np.flatnonzero((trk == local) & (obj == row) & finite)
            if hit.size:
                ranks[i] = int(rank[hit[0]])
                places[i] = int(place[hit[0]])
                gaps[i] = float(gap[hit[0]])
                kept[i] = bool(worthy[hit[0]])
    return ranks, places, passed, gaps, within, fitted, kept


def summary(label: str, ranks, places, passed, gaps, within, fitted, kept) -> str:
    listed = ranks[ranks >= 0]
    parts = [
        f"{label}: {listed.size} tracklets of catalogued objects; gate pairs per tracklet: "
        f"mean {passed.mean():.0f}, median {np.median(passed):.0f}, max {passed.max()}"
    ]
    gate = places[(ranks >= 0) & (places < NOT_GATED)]
    if gate.size:
        parts.append(
            "true object's place in the gate's order (closest first, per group): "
            + ", ".join(f"<{q}: {int((gate < q).sum())}" for q in (16, 64, 128, 256, 512))
            + f", worst {int(gate.max())}"
        )
    gap = gaps[(ranks >= 0) & np.isfinite(gaps)]
    if gap.size:
        parts.append(
            "true object's rank score above the best (-2 ln L): "
            + ", ".join(f"{q:.0%} {np.quantile(gap, q):.1f}" for q in (0.5, 0.99, 0.999))
            + f", worst {gap.max():.1f}"
        )
    parts.append(
        "pairs per tracklet within a score gap: "
        + ", ".join(
            f"{d:g}: mean {within[:, g].mean():.1f} max {within[:, g].max()}"
            for g, d in enumerate(GAPS)
        )
    )
    listed_kept = kept[ranks >= 0]
    top64 = (listed >= 0) & (listed < EDGES[-1])
    parts.append(
        f"fitted per tracklet: mean {fitted.mean():.1f}, max {fitted.max()}; true object "
        f"fitted {int(listed_kept.sum())}, among the first {EDGES[-1]} but not fitted "
        f"{int((top64 & ~listed_kept).sum())}"
    )
    parts.append("true object's rank after the cube rank:")
    lo = 0
    for hi in EDGES:
        parts.append(f"rank {lo}-{hi - 1}: {int(((listed >= lo) & (listed < hi)).sum())}")
        lo = hi
    gated = listed[listed < NOT_GATED]
    parts.append(f">= {EDGES[-1]}: {int((gated >= EDGES[-1]).sum())}")
    parts.append(f"not through the gate: {int((listed == NOT_GATED).sum())}")
    kept = gated[gated < N_FIT]
    parts.append(f"worst rank kept by N_FIT={N_FIT}: {int(kept.max()) if kept.size else '-'}")
    return "\n    ".join(parts)


def bench_set(n: int, catalogue: str | None):
    if catalogue:
        _, cat, night = bench_correlate.real_snapshot(catalogue)
    else:
        cat = Catalogue.from_tle(bench_correlate.realistic_tle_lines(25_000))
        night = bench_correlate.NIGHT_JD
    tracklets, truth = bench_correlate.make_tracklets(cat, n, night_jd=night)
    return cat, bench_correlate.STATIONS, None, tracklets, truth


def pair_set(pair: str, n: int, trains: int, seed: int):
    a, b = pair.split(":")
    older, newer = ident.snapshot(a), ident.snapshot(b)
    if trains:
        ts = ident.build_train_passes(
            newer, catalogue_path=older, night_jd=ident.night_of(newer), n_passes=trains,
            seed=seed,
        )  # fmt: skip
    else:
        ts = ident.build_truth_set(
            newer, n_tracklets=n, seed=seed, perturb=False, catalogue_path=older,
            nights=((ident.night_of(newer), 1.0),), max_epoch_offset_days=0.5,
            include_all_missing=True,
        )  # fmt: skip
    cat = Catalogue.from_tle(ts.catalogue_lines)
    sites = {code: Site(*where) for code, where in ts.sites.items()}
    before = ident.previous_snapshot(a)
    previous = Catalogue.from_tle(before) if before else None
    tracklets = [t.tracklet for t in ts.tracklets]
    return cat, sites, previous, tracklets, [t.norad_id for t in ts.tracklets]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bench", type=int, default=0, help="tracklets of the speed bench's night")
    ap.add_argument("--catalogue", help="the bench on a real snapshot instead (TLE/3LE, .xz)")
    ap.add_argument("--pairs", nargs="*", default=[], help="2026 series pairs, OLDER:NEWER")
    ap.add_argument("--tracklets", type=int, default=1500, help="tracklets per pair")
    ap.add_argument("--trains", type=int, default=0, help="train passes per pair instead")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    if not args.bench and not args.pairs:
        ap.error("nothing to do: give --bench N and/or --pairs")
    sets = []
    if args.bench:
        sets.append(("bench", lambda: bench_set(args.bench, args.catalogue)))
    for pair in args.pairs:
        label = f"{pair}" + (f" trains {args.trains}" if args.trains else "")
        sets.append((label, lambda p=pair: pair_set(p, args.tracklets, args.trains, args.seed)))
    every: list[tuple[np.ndarray, ...]] = []
    for label, make in sets:
        cat, sites, previous, tracklets, truth = make()
        with tempfile.TemporaryDirectory() as cube_dir:
            correlator = SGP4Correlator(cat, sites, cube_dir=cube_dir, previous_catalogue=previous)
            found = truth_ranks(correlator, tracklets, truth)
        every.append(found)
        print(summary(label, *found), flush=True)
    if len(every) > 1:
        print(summary("all sets", *(np.concatenate(part) for part in zip(*every))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
