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
