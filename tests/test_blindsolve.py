"""Blind plate solving: frames with no pointing, or a wrong one.

Truth is the astropy TAN-SIP WCS the synthetic frame was drawn with (real catalogue
stars, see tests/station_synth.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from station_synth import make_frame

from aposos.station.astrometry import PlateSolver
from aposos.station.blindsolve import BlindIndex, blind_solve, quad_codes
from aposos.station.config import StationConfig
from aposos.station.extract import SATURATED, STAR, SourceExtractor
from aposos.station.fitsframe import read_frame
from aposos.station.reduce import ReduceOptions, reduce_frames
from aposos.station.stars import StarCatalogue

FIELD_DEG = 1024 * 3.0 / 3600.0  # the synthetic frames: 1024 px of 3 arcsec


def test_codes_ignore_position_rotation_scale_and_order():
    rng = np.random.default_rng(1)
    q = rng.uniform(-1, 1, (200, 4)) + 1j * rng.uniform(-1, 1, (200, 4))
    codes, order = quad_codes(q)
    moved = (3.0 - 2.0j) + 0.37 * np.exp(1.1j) * q
    swapped = moved[:, [1, 0, 3, 2]]  # A<->B and C<->D: the same quad
    for other in (moved, swapped):
        c2, o2 = quad_codes(other)
        np.testing.assert_allclose(c2, codes, atol=1e-9)
    # a mirror image has other codes (the solver tries both parities)
    mirrored, _ = quad_codes(np.conj(q))
    assert np.mean(np.all(np.abs(mirrored - codes) < 1e-3, axis=1)) < 0.05


@pytest.fixture(scope="module")
def index():
    cat = StarCatalogue.load("both")
    return cat, BlindIndex.cached(cat, FIELD_DEG, 2026.9)


def _stars(path):
    frame = read_frame(path)
    s = SourceExtractor(fwhm_px=2.8, saturation=59000)(frame.data).sources
    return frame, s.subset((s.kind == STAR) | (s.kind == SATURATED))


@pytest.mark.parametrize(
    "ra, dec, rotation, parity",
    [
        (83.8, -5.4, 1.5, 1),  # Orion
        (359.8, 21.0, 123.0, -1),  # across RA 0
        (243.6, -61.5, -75.0, 1),  # southern Milky Way
        (40.0, 88.9, 10.0, 1),  # by the celestial pole
        (359.8, 21.0, -160.0, 1),  # only 6 catalogue stars in the field
    ],
)
def test_blind_solve_against_truth(tmp_path, index, ra, dec, rotation, parity):
    cat, idx = index
    path = tmp_path / "f.fits"
    truth = make_frame(
        path, ra=ra, dec=dec, rotation_deg=rotation, parity=parity, zero_point=19.5,
        k_radial=2e-9, faint_stars=150, seed=2,
    )  # fmt: skip
    frame, s = _stars(path)
    sol = blind_solve(
        PlateSolver(cat), idx, s.x, s.y, s.flux, shape=frame.shape, scale_arcsec=3.0,
        saturated=s.nsat > 0,
    )  # fmt: skip
    assert sol.solved, sol.reason
    assert sol.n_matched >= 6 and sol.rms_px < 0.15
    gx, gy = np.meshgrid(np.linspace(0, 1023, 5), np.linspace(0, 1023, 5))
    r, d = sol.wcs(frame.shape).all_pix2world(gx.ravel(), gy.ravel(), 0)
    tx, ty = truth.wcs.all_world2pix(r, d, 0)
    # pixels, corners included; with under 25 stars the radial distortion (0.76 px in the
    # corners here) is left to the reduction's shared fit over many frames
    limit = 0.3 if sol.n_matched >= 25 else 1.0
    assert np.max(np.hypot(tx - gx.ravel(), ty - gy.ravel())) < limit


def test_too_few_catalogue_stars_is_no_solution(tmp_path, index):
    """By the north galactic pole a 0.85 deg field holds 3 stars to G 10: no guessing."""
    cat, idx = index
    make_frame(tmp_path / "f.fits", ra=176.0, dec=44.0, zero_point=19.5, faint_stars=150)
    frame, s = _stars(tmp_path / "f.fits")
    sol = blind_solve(PlateSolver(cat), idx, s.x, s.y, s.flux, shape=frame.shape, scale_arcsec=3.0)
    assert not sol.solved and "blind solve" in sol.reason


def test_random_dots_are_not_solved(index):
    cat, idx = index
    solver = PlateSolver(cat)
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 80
        sol = blind_solve(
            solver, idx, rng.uniform(0, 1023, n), rng.uniform(0, 1023, n),
            rng.lognormal(0, 1, n), shape=(1024, 1024), scale_arcsec=3.0,
        )  # fmt: skip
        assert not sol.solved and "blind solve" in sol.reason
    few = blind_solve(
        solver, idx, [1.0, 2.0], [3.0, 4.0], [1.0, 1.0], shape=(64, 64), scale_arcsec=3.0
    )
    assert not few.solved and "2 stars" in few.reason


def test_reduce_without_pointing(tmp_path, index):
    """No RA/DEC in the headers, then a pointing 25 degrees off: solved blind, measured."""
    folder = tmp_path / "frames"
    folder.mkdir()
    no_pointing = {"RA": None, "DEC": None}
    streak = (300.0, 400.0, 380.0, 440.0, 30000.0)
    truths = [
        make_frame(folder / "a.fits", extra_header=no_pointing, streaks=[streak], seed=1,
                   zero_point=19.5, faint_stars=150),
        make_frame(folder / "b.fits", extra_header=no_pointing, seed=2, zero_point=19.5,
                   date_obs="2026-11-22T01:02:09.250", faint_stars=150),
        make_frame(folder / "c.fits", ra=120.0, dec=30.0, pointing_error=(25.0, 0.0), seed=3,
                   zero_point=19.5, date_obs="2026-11-22T01:05:00.000", faint_stars=150),
        make_frame(folder / "dots.fits", extra_header=no_pointing, mag_limit=-20.0, seed=4,
                   date_obs="2026-11-22T01:09:00.000", faint_stars=120),
    ]  # fmt: skip
    station = StationConfig.load("stations/iran.toml")
    reduce_frames(folder, station, out_dir=tmp_path / "out")
    frames = {
        f["file"]: f for f in json.loads((tmp_path / "out/reduction.json").read_text())["frames"]
    }
    a, b, c, dots = (frames[n] for n in ("a.fits", "b.fits", "c.fits", "dots.fits"))
    assert a["solved"] and a["solve"] == "blind"
    assert b["solved"] and b["solve"] == "previous frame"  # same field: no search needed
    assert c["solved"] and c["solve"] == "blind" and c["pointing_error_deg"] > 20
    assert (
        not dots["solved"] and "no pointing" in dots["reason"] and "blind solve" in dots["reason"]
    )
    for f, t in ((a, truths[0]), (c, truths[2])):
        tr, td = t.wcs.all_pix2world(511.5, 511.5, 0)
        r, d = f["centre_deg"]
        sep = math.hypot((r - tr) * math.cos(math.radians(d)), d - td) * 3600
        assert sep < 0.5 and f["astrometric_rms_px"] < 0.1
    # the streak of the frame with no pointing is measured (on the sky) like any other
    assert a["detections"], a
    # blind solving off: the operator is told why
    off = (
        reduce_frames(folder / "a.fits", station, options=ReduceOptions(blind=False))
        .reports[0]
        .to_json()
    )
    assert not off["solved"] and "blind solving is off" in off["reason"]
