"""A short streak along the star trails of a stare frame: an object crossing the field
in the direction the sky drifts.

Peru's stare frames of tuning night ``mar`` (seeds 103 and 107) had a GPS satellite
streaking 8 px in 1.5 s beside 16 px star trails, at S/N 250 and often saturated: it
was taken for a point (fitted 2 px off its midpoint, with the mount's velocity, not
its own) or, saturated, for nothing, and all 15 frames were missed in both nights.
"""

from __future__ import annotations

import numpy as np
import pytest
from station_synth import make_frame

from aposos.station.candidates import frame_candidates, trail_width
from aposos.station.extract import SourceExtractor
from aposos.station.fitsframe import read_frame

FWHM = 1.45
TRAIL = (15.7, -0.15)  # the sky's drift in the exposure (px)
STREAK = (600.0, 500.0, 608.3, 500.4)  # 8.3 px, 0.05 rad off the trails


@pytest.mark.parametrize("flux", [20000.0, 1.2e6], ids=["unsaturated", "saturated"])
def test_a_short_streak_along_the_trails_is_a_streak(tmp_path, flux):
    make_frame(
        tmp_path / "f.fits", scale_arcsec=1.62, fwhm_px=FWHM, zero_point=20.5, exptime=1.5,
        star_trail=TRAIL, streaks=[(*STREAK, flux)], seed=5,
    )  # fmt: skip
    frame = read_frame(tmp_path / "f.fits")
    ext = SourceExtractor(fwhm_px=FWHM, saturation=59000)(frame.data.astype(np.float32))
    assert ext.star_length_px > 12.0  # trailed stars
    psf = trail_width(ext)
    dets = frame_candidates(ext, psf, edge_margin=3.0)
    mx, my = (STREAK[0] + STREAK[2]) / 2, (STREAK[1] + STREAK[3]) / 2
    near = [d for d in dets if np.hypot(d.x - mx, d.y - my) < 6.0]
    assert [d.kind for d in near] == ["streak"]
    assert np.hypot(near[0].x - mx, near[0].y - my) < 0.3
    length = np.hypot(near[0].xb - near[0].xa, near[0].yb - near[0].ya)
    assert length == pytest.approx(8.3, abs=1.0)
