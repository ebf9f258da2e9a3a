"""Points among trailed stars (rate tracking), on pixels rendered by the simulator's
kernels: the tracked object merged with a faint trail, and noise bumps on faint trails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aposos.station.extract import POINT, SourceExtractor
from aposos.station.simulator.render import PsfModel, add_points, add_segments


@pytest.fixture(scope="module")
def rate_frame():
    """1024^2, 300 px trails at -72 deg (20 bright, 200 faint enough to break up),
    the tracked object (a point) on a faint trail, and a faint isolated point."""
    rng = np.random.default_rng(7)
    n, sky, length, theta = 1024, 40.0, 300.0, math.radians(-72.0)
    psf = PsfModel(1.3)
    img = np.zeros((n, n), np.float32)
    ux, uy = math.cos(theta) * length / 2, math.sin(theta) * length / 2
    flux = np.concatenate([10 ** rng.uniform(4.5, 5.5, 20), 10 ** rng.uniform(3.2, 3.7, 200)])
    cx, cy = rng.uniform(0, n, flux.size), rng.uniform(0, n, flux.size)
    cx[-1], cy[-1] = 500.0, 500.0  # a faint trail through the tracked object
    add_segments(img, cx - ux, cy - uy, cx + ux, cy + uy, flux, psf)
    add_points(img, np.array([500.3, 800.6]), np.array([520.2, 200.4]), np.array([2e5, 300.0]), psf)
    img = rng.poisson(img + sky).astype(np.float32) - sky
    ext = SourceExtractor(fwhm_px=1.3, box=64)(img)
    return ext


def _nearest(ext, x, y):
    s = ext.sources
    return int(np.argmin(np.hypot(s.px - x, s.py - y)))


def test_tracked_object_on_a_faint_trail_is_a_point(rate_frame):
    ext = rate_frame
    assert ext.star_length_px > 200
    i = _nearest(ext, 500.3, 520.2)
    assert abs(ext.sources.px[i] - 500.3) < 2 and abs(ext.sources.py[i] - 520.2) < 2
    assert ext.sources.kind[i] == POINT


def test_noise_bumps_on_faint_trails_are_no_points(rate_frame):
    """Most noise bumps on faint trails are not points (68 were before, 8 are now: the
    two real ones and bumps 5 sigma above the trail, which only linking tells apart)."""
    s = rate_frame.sources
    assert np.sum(s.kind == POINT) <= 10
    assert s.kind[_nearest(rate_frame, 800.6, 200.4)] == POINT  # the faint isolated one


def test_a_bright_tracked_object_near_a_trail_end_is_found():
    """The tracked object, far brighter than a faint trail it merges with and 76 px from
    that trail's middle, is one source with the trail, shaped like a star trail; its
    halo spoils the joint fit's first guess of the trail, so it is fitted alone with the
    trail as background (a Peru rate frame lost its target this way)."""
    from aposos.station.candidates import hidden_points, trail_width

    rng = np.random.default_rng(11)
    n, sky, length, theta = 1024, 40.0, 230.0, math.radians(-78.0)
    psf = PsfModel(1.8)
    img = np.zeros((n, n), np.float32)
    ux, uy = math.cos(theta) * length / 2, math.sin(theta) * length / 2
    flux = np.concatenate([10 ** rng.uniform(4.5, 5.5, 20), [3000.0]])
    cx, cy = rng.uniform(0, n, flux.size), rng.uniform(0, n, flux.size)
    cx[-1], cy[-1] = 512.0 - 76 * math.cos(theta), 600.0 - 76 * math.sin(theta)
    add_segments(img, cx - ux, cy - uy, cx + ux, cy + uy, flux, psf)
    add_points(img, np.array([512.0]), np.array([600.0]), np.array([1.1e5]), psf)
    img = rng.poisson(img + sky).astype(np.float32) - sky
    ext = SourceExtractor(fwhm_px=1.8, box=64)(img)
    found = hidden_points(ext, trail_width(ext), [], margin=5.0)
    near = [d for d in found if math.hypot(d.x - 512.0, d.y - 600.0) < 0.5]
    assert len(near) == 1


def _short_trail_frame(seed, fwhm=2.0):
    """1024^2, 600 stars trailed 6 px at 35 deg (FWHM 2 px), the tracked object a
    round point at (400.4, 610.7)."""
    rng = np.random.default_rng(seed)
    n, sky, length, theta = 1024, 40.0, 6.0, math.radians(35.0)
    psf = PsfModel(fwhm)
    img = np.zeros((n, n), np.float32)
    ux, uy = math.cos(theta) * length / 2, math.sin(theta) * length / 2
    star_rng = np.random.default_rng(99)  # the same sky in every frame
    flux = 10 ** star_rng.uniform(2.8, 5.0, 600)
    cx = star_rng.uniform(0, n, flux.size)
    cy = star_rng.uniform(0, n, flux.size)
    add_segments(img, cx - ux, cy - uy, cx + ux, cy + uy, flux, psf)
    add_points(img, np.array([400.4]), np.array([610.7]), np.array([2e4]), psf)
    return rng.poisson(img + sky).astype(np.float32) - sky


def test_stars_trailed_a_few_pixels_are_elongated_stars():
    """Stars trailed by a few PSF widths (an MEO tracked in a short exposure): no
    point-on-trail test can tell a point from such a star (a step of a PSF width along
    the trail leaves it), so they are stars of an elongated PSF, the frame takes the
    round-star path (no joint fits of points on trails: an Iran frame made 3,300 of
    them, 50-60 s, and lost the target), and the PSF is measured across them."""
    from aposos.station.candidates import elongated_star_sigma, hidden_points
    from aposos.station.classify import STAR

    ext = SourceExtractor(fwhm_px=2.85, box=64)(_short_trail_frame(1))
    assert ext.star_length_px == 0.0
    # (the footprint's length: the trail and the PSF wings above the threshold)
    assert ext.star_elongation_px == pytest.approx(6.0 + 2.0, abs=1.5)
    assert np.degrees(ext.star_theta) % 180 == pytest.approx(35.0, abs=3)
    s = ext.sources
    assert np.sum(s.kind == POINT) == 0  # the frame alone does not say which is round
    assert s.kind[_nearest(ext, 400.4, 610.7)] == STAR
    assert hidden_points(ext, 0.85, [], margin=5.0) == []
    sigma = 2.0 / 2.3548  # the simulator's core; its halo widens a fit a little
    for guess in (0.6, sigma, 1.6):  # the last frames' seeing, poor or good
        assert elongated_star_sigma(ext, guess) == pytest.approx(sigma, rel=0.15)


def test_a_round_point_among_undersampled_elongated_stars_is_no_artefact():
    """With an undersampled PSF (FWHM 0.9 px) a round point is much sharper than stars
    elongated 6 px: only the sharpest sources are artefacts in such frames, as among
    trails (a Pakistan rate night lost its target as a hot pixel)."""
    from aposos.station.classify import SHARP, STAR

    ext = SourceExtractor(fwhm_px=2.0, box=64)(_short_trail_frame(2, fwhm=0.9))
    assert ext.star_length_px == 0.0 and ext.star_elongation_px > 0
    i = _nearest(ext, 400.4, 610.7)
    assert ext.sources.kind[i] == STAR
    assert ext.sources.kind[i] != SHARP


def test_long_trails_cut_by_the_edges_do_not_shorten_the_star_trail():
    """A fast LEO tracked in Peru's 0.92 deg field (a demo rate task, 0.4 s): stars
    trail about 440 px, so most bright sources are trails cut by the frame's edges or
    pieces of faint trails. These are the bright sources' lengths of one such frame
    (rounded, px): their median (86 px) was taken for the stars' trail, the whole
    trails became streaks and the frame did not solve. The length whole trails share
    is the largest group of lengths that agree."""
    from aposos.station.classify import _trail_length

    whole = [452, 444, 443, 442, 441, 441, 438, 438, 437]
    cut = [332, 278, 158]
    pieces = [88, 83, 34, 61, 55, 47, 41, 38, 33, 29, 26, 22, 19, 17]
    lengths = np.array(whole + cut + pieces, float)
    assert np.median(lengths) < 100  # what the stars' trail was taken to be
    assert _trail_length(lengths, float(np.median(lengths))) == pytest.approx(441, abs=3)
    # short trails (a stare): the lengths agree within noise, as the median does
    stare = np.array([22.1, 22.4, 21.9, 22.3, 21.7, 22.0, 15.2, 9.8], float)
    assert _trail_length(stare, 22.0) == pytest.approx(22.0, abs=0.4)
    assert _trail_length(stare[:4], 5.0) == 5.0  # too few to tell: the fallback
