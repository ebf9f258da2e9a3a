"""Plate solving against the real catalogues, checked with astropy's WCS."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from station_synth import frame_stars, make_frame, truth_wcs

from aposos.station.astrometry import (
    PlateSolver,
    TanSipModel,
    estimate_radial_k,
    refit,
    tan_deproject,
    tan_project,
)
from aposos.station.stars import StarCatalogue

one_arcsec = 1 / 3600


def test_tan_against_astropy():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [250.0, -62.0]
    w.wcs.crpix = [1.0, 1.0]  # FITS 1-based: pixel 0 (0-based) is the tangent point
    w.wcs.cd = np.eye(2)  # 1 pixel = 1 degree of standard coordinate
    w.wcs.set()
    rng = np.random.default_rng(1)
    ra = 250.0 + rng.uniform(-8, 8, 50)
    dec = -62.0 + rng.uniform(-5, 5, 50)
    xi, eta, _ = tan_project(ra, dec, 250.0, -62.0)
    px, py = w.wcs_world2pix(ra, dec, 0)
    np.testing.assert_allclose(xi, px, atol=1e-9)
    np.testing.assert_allclose(eta, py, atol=1e-9)
    r2, d2 = tan_deproject(xi, eta, 250.0, -62.0)
    np.testing.assert_allclose(r2, ra, atol=1e-9)
    np.testing.assert_allclose(d2, dec, atol=1e-9)


def test_model_equals_its_astropy_wcs():
    cd = np.array([[-4.1e-4, 1.0e-5], [1.2e-5, 4.1e-4]])
    a = np.zeros(7)
    b = np.zeros(7)
    a[:] = [1e-7, -2e-7, 3e-8, 2e-9, 0.0, 2e-9, 0.0]
    b[:] = [-1e-7, 1e-7, 2e-7, 0.0, 2e-9, 0.0, 2e-9]
    m = TanSipModel((12.3, 45.6), (1023.5, 1023.5), cd, a, b)
    w = m.to_astropy((2048, 2048))
    gx, gy = np.meshgrid(np.linspace(0, 2047, 7), np.linspace(0, 2047, 7))
    ra, dec = m.pixel_to_world(gx.ravel(), gy.ravel())
    ra2, dec2 = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
    assert np.max(np.abs((ra - ra2) * np.cos(np.radians(dec)))) < 1e-4 * one_arcsec
    assert np.max(np.abs(dec - dec2)) < 1e-4 * one_arcsec
    x, y = m.world_to_pixel(ra, dec)
    np.testing.assert_allclose(x, gx.ravel(), atol=1e-6)
    np.testing.assert_allclose(y, gy.ravel(), atol=1e-6)


def _solve(solver, frame, s, **kw):
    return solver(
        s.x, s.y, s.flux, shape=frame.shape, scale_arcsec=frame.pixel_scale_arcsec(),
        epoch_jyear=2026.9, saturated=s.nsat > 0, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def catalogue():
    return StarCatalogue.load("both")


@pytest.mark.parametrize(
    "rotation, parity, error",
    [(1.5, 1, (0.3, -0.2)), (37.0, 1, (0.9, 0.6)), (-120.0, -1, (-0.5, 0.8))],
)
def test_solve_against_truth(tmp_path, catalogue, rotation, parity, error):
    path = tmp_path / "f.fits"
    truth = make_frame(
        path,
        zero_point=19.5,
        rotation_deg=rotation,
        parity=parity,
        pointing_error=error,  # up to 1.1 degree off, on a 0.85 degree field
        k_radial=3e-9,
        faint_stars=200,
        seed=3,
    )
    frame, s = frame_stars(path)
    sol = _solve(PlateSolver(catalogue), frame, s, pointing_deg=frame.pointing_deg)
    assert sol.solved, sol.reason
    assert sol.n_matched >= 15
    assert sol.rms_px < 0.1
    w = sol.wcs(frame.shape)
    gx, gy = np.meshgrid(np.linspace(0, 1023, 9), np.linspace(0, 1023, 9))
    ra, dec = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
    tx, ty = truth.wcs.all_world2pix(ra, dec, 0)
    assert np.max(np.hypot(tx - gx.ravel(), ty - gy.ravel())) < 0.25  # corners included


def test_prior_and_failures(tmp_path, catalogue):
    path = tmp_path / "f.fits"
    make_frame(path, zero_point=19.5, faint_stars=100, seed=4)
    frame, s = frame_stars(path)
    solver = PlateSolver(catalogue)
    args = dict(shape=frame.shape, scale_arcsec=frame.pixel_scale_arcsec(), epoch_jyear=2026.9)
    first = solver(s.x, s.y, s.flux, pointing_deg=frame.pointing_deg, **args)
    assert first.solved
    again = solver(s.x, s.y, s.flux, pointing_deg=frame.pointing_deg, prior=first.model, **args)
    assert again.solved and again.n_matched == first.n_matched
    # far outside the pointing tolerance: no solution, and a reason
    off = solver(s.x, s.y, s.flux, pointing_deg=(frame.pointing_deg[0] + 20, 10.0), **args)
    assert not off.solved and "no match" in off.reason
    # random points do not match the sky
    rng = np.random.default_rng(0)
    junk = solver(
        rng.uniform(0, 1023, 60), rng.uniform(0, 1023, 60), rng.uniform(1, 2, 60),
        pointing_deg=frame.pointing_deg, **args,
    )  # fmt: skip
    assert not junk.solved
    empty = solver([], [], [], pointing_deg=frame.pointing_deg, **args)
    assert not empty.solved and "stars extracted" in empty.reason


def test_shared_radial_distortion(tmp_path, catalogue):
    k_true = 4e-9
    sols = []
    for i, (ra, dec) in enumerate([(83.8, -5.4), (84.6, -4.9), (83.2, -6.0)]):
        path = tmp_path / f"k{i}.fits"
        make_frame(path, ra=ra, dec=dec, zero_point=19.5, k_radial=k_true, seed=10 + i)
        frame, s = frame_stars(path)
        sol = PlateSolver(catalogue, radial_min_stars=1000)(  # never fit k per frame
            s.x, s.y, s.flux, shape=frame.shape, pointing_deg=frame.pointing_deg,
            scale_arcsec=frame.pixel_scale_arcsec(), epoch_jyear=2026.9,
        )  # fmt: skip
        assert sol.solved
        sols.append(sol)
    # SIP with A_30 = k maps pixels to undistorted coordinates; the fit recovers it
    k = estimate_radial_k(sols, k_max=5e-8)
    assert k == pytest.approx(k_true, rel=0.15)
    for sol in sols:
        better = refit(sol, k)
        assert better.rms_px <= sol.rms_px + 1e-9
    # and the truth itself is the SIP convention astropy uses
    w = truth_wcs(83.8, -5.4, (1024, 1024), 3.0, k_radial=k_true)
    assert w.sip.a[3, 0] == k_true
