"""PSF fits of satellite images on pixels rendered by the sky simulator's kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from aposos.station.psffit import fit_streak
from aposos.station.simulator.render import PsfModel, add_points, add_segments


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_streak_across_stars_keeps_its_ends(seed):
    """A bright 918 px LEO streak with 100 stars merged into it (a sidereal field):
    the stars are rejected against the streak's own misfit and the ends stay put (the
    halo misfit all along was taken for stars and cut away: ends off by 17-166 px)."""
    rng = np.random.default_rng(seed)
    ny, nx, sky = 900, 900, 126.0
    xa, ya, xb, yb = 180.3, 820.6, 722.1, 79.4
    length = math.hypot(xb - xa, yb - ya)
    theta = math.atan2(yb - ya, xb - xa)
    mid = (0.5 * (xa + xb), 0.5 * (ya + yb))
    psf = PsfModel(1.55)
    img = np.zeros((ny, nx), np.float32)
    add_segments(img, *(np.array([v]) for v in (xa, ya, xb, yb, 1.5e6)), psf)
    f = rng.uniform(0, 1, 100)
    sx = xa + f * (xb - xa) + rng.normal(0, 3, f.size)
    sy = ya + f * (yb - ya) + rng.normal(0, 3, f.size)
    add_points(img, sx, sy, 10 ** rng.uniform(2.5, 5.5, f.size), psf)
    img = rng.poisson(img + sky).astype(np.float32) - sky
    noise = math.sqrt(sky)
    labels, _ = ndimage.label(ndimage.gaussian_filter(img, 0.7) > 1.7 * noise)
    label = labels[int(round(mid[1])), int(round(mid[0]))]
    fit = fit_streak(img, labels, label, mid, theta, length, 1.55 / 2.3548, noise)
    assert fit is not None
    assert abs(fit["length"] - length) < 1.0
    assert math.hypot(fit["x"] - mid[0], fit["y"] - mid[1]) < 0.5
