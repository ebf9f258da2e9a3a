"""A lone streak must be evenly bright along its length.

In Pakistan's first frame of tuning night ``mar`` seed 103 two faint stars 16 px apart
(peaks of 10 and 7 sigma, 1.1 px FWHM), joined by a noise bridge into one footprint,
were fitted as a streak of S/N 16 and became a single-frame tracklet matching no
satellite: as wide as the PSF, long enough, bright enough, but bright at its ends only.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from station_synth import _render_gauss as render_points
from station_synth import make_frame, render_segment

from aposos.station.candidates import uneven_sigma
from aposos.station.config import StationConfig
from aposos.station.detection import Detection
from aposos.station.reduce import reduce_frames

SIGMA = 1.1 / 2.3548
NOISE = 11.6  # ADU a pixel, as in that frame
ENDS = (1147.3, 599.1, 1158.9, 588.7)  # the fitted "streak" ends, 15.6 px apart


def _measure(draw, seed):
    rng = np.random.default_rng(seed)
    img = np.zeros((1200, 1300))
    draw(img)
    img += rng.normal(0.0, NOISE, img.shape)
    labels = np.zeros(img.shape, np.int32)
    labels[580:608, 1140:1166] = 1  # one footprint
    ext = SimpleNamespace(subtracted=img, labels=labels)
    xa, ya, xb, yb = ENDS
    d = Detection(-1, "streak", (xa + xb) / 2, (ya + yb) / 2, 0.1, 0.0, 16.0, SIGMA,
                  xa=xa, ya=ya, xb=xb, yb=yb)  # fmt: skip
    return uneven_sigma(ext, d, 1, SIGMA, NOISE)


def test_two_faint_stars_are_uneven_a_streak_is_not():
    xa, ya, xb, yb = ENDS
    flux = 10 * NOISE * 2 * np.sqrt(np.pi) * SIGMA * 2.2  # S/N 16 over the whole length

    def pair(img):
        render_points(img, [xa, xb], [ya, yb], [0.6 * flux, 0.4 * flux], SIGMA)
        render_segment(img, xa, ya, xb, yb, 0.1 * flux, SIGMA)  # a faint bridge

    def streak(img):
        render_segment(img, xa, ya, xb, yb, flux, SIGMA)

    for seed in range(5):
        assert _measure(pair, seed) > 3.0
        assert _measure(streak, seed) < 3.0


def test_a_faint_even_streak_still_stands_alone(tmp_path):
    """S/N 15, 20 px: a single-frame tracklet, as before."""
    (tmp_path / "frames").mkdir()
    truth = make_frame(
        tmp_path / "frames" / "f.fits", zero_point=19.5, seed=3,
        streaks=[(300.0, 700.0, 318.0, 690.0, 5000.0)],
    )  # fmt: skip
    result = reduce_frames(tmp_path / "frames", StationConfig.load("stations/iran.toml"))
    assert len(result.tracklets) == 1
    t = result.tracklets[0]
    x, y = truth.wcs.all_world2pix(t.ra_deg, t.dec_deg, 0)
    assert np.all(np.hypot(x - 309, y - 695) < 12)
