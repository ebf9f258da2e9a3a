"""A few-star field with one star cut by the frame's edge: its centroid is pulled inwards
and must not bend the fit (bench_small_fields, seed 4242: five of five wrong solutions,
1.0-2.0 px off at a corner, had one matched star within a pixel of the edge)."""

from __future__ import annotations

import numpy as np
from station_synth import frame_stars, make_frame, truth_wcs

from aposos.station.astrometry import PlateSolver
from aposos.station.stars import StarCatalogue

SHAPE = (480, 480)
SCALE = 3.0


def _field(tmp_path):
    """Nine stars inside a 0.4 deg frame and a bright one centred 1.6 px beyond its left
    edge; the catalogue holds all ten (and the frame nothing else)."""
    rng = np.random.default_rng(4)
    xy = np.vstack([rng.uniform(40, 440, (9, 2)), [[-1.6, 260.0]]])
    mag = np.r_[np.linspace(9.0, 11.5, 9), 8.5]
    w = truth_wcs(150.0, 25.0, SHAPE, SCALE, rotation_deg=33.0)
    ra, dec = w.all_pix2world(xy[:, 0], xy[:, 1], 0)
    flux = 10 ** (-0.4 * (mag - 20.5)) * 2.0
    path = tmp_path / "edge.fits"
    make_frame(
        path, ra=150.0, dec=25.0, shape=SHAPE, scale_arcsec=SCALE, wcs=w, zero_point=20.5,
        pointing_error=(0.1, 0.05), mag_limit=-5.0,  # no catalogue star: only ours
        points=[(x, y, f) for (x, y), f in zip(xy, flux, strict=True)], seed=3,
    )  # fmt: skip
    n = mag.size
    cat = StarCatalogue("test", np.arange(n), ra, dec, np.zeros(n), np.zeros(n), 2026.9, mag, 12)
    return path, cat, w


def _corner_error(sol, w):
    ny, nx = SHAPE
    gx = np.array([0, nx - 1, 0, nx - 1])
    gy = np.array([0, 0, ny - 1, ny - 1])
    ra, dec = sol.wcs(SHAPE).all_pix2world(gx, gy, 0)
    x, y = w.all_world2pix(ra, dec, 0)  # astropy's WCS, the truth
    return float(np.max(np.hypot(x - gx, y - gy)))


def _solve(solver, path):
    frame, s = frame_stars(path)
    return solver(
        s.x, s.y, s.flux, shape=frame.shape, scale_arcsec=SCALE,
        pointing_deg=frame.pointing_deg, epoch_jyear=2026.9, saturated=s.nsat > 0,
    )  # fmt: skip


def test_a_star_cut_by_the_edge_does_not_bend_the_solution(tmp_path):
    path, cat, w = _field(tmp_path)
    sol = _solve(PlateSolver(cat), path)
    assert sol.solved, sol.reason
    assert sol.n_matched == 9
    assert _corner_error(sol, w) < 0.2
    # the case is real: with the edge star in the fit the corners are a pixel off
    bent = _solve(PlateSolver(cat, edge_px=0.0), path)
    assert bent.solved and bent.n_matched == 10
    assert _corner_error(bent, w) > 0.8
