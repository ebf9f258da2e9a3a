"""Small fields on random sky: how many solve with the packaged catalogues and with the
deep star store (issue 10: "solve frames of 0.4 deg and larger with 95 %+ success").

Each field (random pointing, uniform on the sphere, seeded) is rendered by the tests'
synthetic frame writer (``tests/station_synth.make_frame``: the deep catalogue's stars at
their 2026.9 places, Gaussian PSF, sky and read noise, fainter field stars at random
places, a pointing error of 0.1-0.2 deg), its stars are extracted once, and three
solvers solve the same star list (``PlateSolver``, as the reduction calls it): ``both``
(packaged catalogues), ``deep`` (the store) and ``geo`` (the store, and the camera's
scale and rotation known to ``--geometry-error``, as the last solved frame gives them).
A solution is right within 1 px of the true WCS at the frame's corners, else WRONG;
fields with fewer than ``--min-stars`` catalogue stars (3: the fewest a known-geometry
match accepts) are counted apart (unsolvable), and those with fewer than 4 are shown too.

Run (needs the store: ``make stars``):
``python benchmarks/bench_small_fields.py --fields 60 --sizes 0.4,0.7``
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from station_synth import make_frame  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fields", type=int, default=60, help="fields per size")
    ap.add_argument("--sizes", default="0.4,0.7", help="field widths, degrees")
    ap.add_argument("--scale", type=float, default=3.0, help="arcsec per pixel")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument(
        "--geometry-error",
        default="1.0,0.01",
        help="what the station knows of its camera: the rotation (deg) and scale (fraction) "
        "errors, drawn uniformly within these, of the geometry handed to the 'geo' solve",
    )
    ap.add_argument("--min-stars", type=int, default=3,
                    help="fields with fewer catalogue stars count as unsolvable")  # fmt: skip
    args = ap.parse_args(argv)
    rot_err, scale_err = (float(v) for v in args.geometry_error.split(","))

    from aposos.station.astrometry import PlateSolver
    from aposos.station.extract import SATURATED, STAR, SourceExtractor
    from aposos.station.fitsframe import read_frame
    from aposos.station.stars import StarCatalogue

    both = StarCatalogue.load("both")
    deep = StarCatalogue.load("deep")  # fails with a clear line when there is no store
    print(f"deep: {len(deep):,} stars ({deep.store_description}); both: {len(both):,}")
    solvers = {"both": PlateSolver(both), "deep": PlateSolver(deep), "geo": PlateSolver(deep)}
    rng = np.random.default_rng(args.seed)
    geo_rng = np.random.default_rng(args.seed + 1)  # apart: the fields stay those of --seed
    for size in (float(s) for s in args.sizes.split(",")):
        n_px = int(round(size * 3600.0 / args.scale))
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(args.fields):
                ra = rng.uniform(0, 360)
                dec = math.degrees(math.asin(rng.uniform(-1, 1)))
                # pointing error 0.1-0.2 deg in any direction (before 4 Dec 2026: along RA only)
                turn = rng.uniform(0, 2 * math.pi)
                err = rng.uniform(0.1, 0.2) * np.array([math.cos(turn), math.sin(turn)])
                path = Path(tmp) / f"f{k}.fits"
                truth = make_frame(
                    path, ra=ra, dec=dec, shape=(n_px, n_px), scale_arcsec=args.scale,
                    rotation_deg=float(rng.uniform(0, 360)), pointing_error=tuple(err),
                    zero_point=20.5, mag_limit=14.0, catalogue="deep", faint_stars=60,
                    seed=int(rng.integers(1 << 30)),
                )  # fmt: skip
                frame = read_frame(path)
                s = SourceExtractor(fwhm_px=2.8, saturation=59000)(frame.data).sources
                s = s.subset((s.kind == STAR) | (s.kind == SATURATED))
                cx, cy = truth.wcs.all_pix2world([n_px / 2], [n_px / 2], 0)
                n_deep = _in_field(deep, truth.wcs, n_px, cx[0], cy[0], size)
                row = {"n_deep": n_deep}
                # the camera's geometry as the station knows it: rotation and scale off a bit
                known = _rotated(truth.wcs.wcs.cd, geo_rng.uniform(-rot_err, rot_err))
                known = known * (1.0 + geo_rng.uniform(-scale_err, scale_err))
                for name, solver in solvers.items():
                    sol = solver(
                        s.x, s.y, s.flux, shape=frame.shape, scale_arcsec=args.scale,
                        pointing_deg=frame.pointing_deg, epoch_jyear=2026.9,
                        saturated=s.nsat > 0, geometry_cd=known if name == "geo" else None,
                    )  # fmt: skip
                    row[name] = (
                        "right" if sol.solved and _right(sol, truth.wcs, n_px) else
                        "WRONG" if sol.solved else "no"
                    )  # fmt: skip
                    row[name + "_matched"] = sol.n_matched
                rows.append(row)
                print(f"  {size} deg field {k}: ra {ra:6.1f} dec {dec:+5.1f}, {n_deep} deep stars,"
                      f" {len(s)} extracted, both {row['both']}, deep {row['deep']}, geo "
                      f"{row['geo']} ({row['geo_matched']} matched)", file=sys.stderr)  # fmt: skip
        n8 = [r for r in rows if r["n_deep"] >= 8]
        few = [r for r in rows if r["n_deep"] < args.min_stars]
        med = np.median([r["n_deep"] for r in rows])
        print(
            f'{size:.2f} deg ({n_px} px of {args.scale}"): {len(rows)} fields, median {med:.0f} '
            f"deep-catalogue stars in the field, {len(n8)} with 8+, {len(few)} with fewer "
            f"than {args.min_stars} (unsolvable: "
            + ", ".join(f"{n} stars: {sum(r['n_deep'] == n for r in few)}" for n in range(args.min_stars))
            + f"), {sum(r['n_deep'] < 4 for r in rows)} with fewer than 4"
        )  # fmt: skip
        for name in solvers:
            right = sum(r[name] == "right" for r in rows)
            wrong = sum(r[name] == "WRONG" for r in rows)
            solvable = [r for r in rows if r["n_deep"] >= args.min_stars]
            print(
                f"  {name:4}: solved {right}/{len(rows)} ({100 * right / len(rows):.0f}%), "
                f"wrong {wrong}; with {args.min_stars}+ stars "
                f"{sum(r[name] == 'right' for r in solvable)}/{len(solvable)}; with 4+ stars "
                f"{sum(r[name] == 'right' for r in rows if r['n_deep'] >= 4)}/"
                f"{sum(r['n_deep'] >= 4 for r in rows)}; with 8+ stars "
                f"{sum(r[name] == 'right' for r in n8)}/{len(n8)}"
            )
    return 0


def _rotated(cd, angle_deg):
    a = math.radians(angle_deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ cd


def _in_field(cat, wcs, n_px, ra, dec, size) -> int:
    cone = cat.cone(ra, dec, size * 0.75, epoch_jyear=2026.9, mag_limit=14.0)
    x, y = wcs.all_world2pix(cone.ra_deg, cone.dec_deg, 0)
    return int(np.sum((x >= 0) & (x < n_px) & (y >= 0) & (y < n_px)))


def _right(sol, wcs, n_px) -> bool:
    g = (
        np.array([0, n_px - 1, 0, n_px - 1, n_px / 2]),
        np.array([0, 0, n_px - 1, n_px - 1, n_px / 2]),
    )
    ra, dec = sol.wcs((n_px, n_px)).all_pix2world(g[0], g[1], 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    return bool(np.max(np.hypot(x - g[0], y - g[1])) < 1.0)


if __name__ == "__main__":
    sys.exit(main())
