"""A slow object among round stars: a HEO near apogee, tracked, moves 2 px between frames.

Pakistan's rate-tracking sequence of tuning night ``mar`` seed 103 followed the
Chandra X-ray Observatory (HEO near apogee, 0.8"/s against the stars, S/N 20 in an
undersampled 1.1 px FWHM): its 12 frames gave no tracklet. The neighbour frames'
S/N was read at the best of 3 x 3 pixels around its place, which reaches 1.5 px away
and found the object itself 2 px off (taken for a star); and its track was dropped as
fixed on the sky (slower than 1"/s), a rule for points along star trails.
"""

from __future__ import annotations

import math

import numpy as np
from station_synth import make_frame

from aposos.station.config import StationConfig
from aposos.station.reduce import reduce_frames

SCALE = 1.83  # arcsec/px, Pakistan's camera
FWHM = 1.1
STEP_PX = 2.1  # between frames 5 s apart: 0.77"/s
START = (400.0, 620.0)
ANGLE = math.radians(35.0)


def _frames(folder, n=6):
    folder.mkdir(parents=True, exist_ok=True)
    truths = []
    for k in range(n):
        x = START[0] + STEP_PX * k * math.cos(ANGLE)
        y = START[1] + STEP_PX * k * math.sin(ANGLE)
        truths.append(
            make_frame(
                folder / f"f{k:02d}.fits",
                shape=(1024, 1024),
                scale_arcsec=SCALE,
                fwhm_px=FWHM,
                zero_point=21.0,
                exptime=0.5,
                points=[(x, y, 600.0)],  # S/N about 20
                date_obs=f"2026-11-22T01:02:{3 + 5 * k:02d}.250",
                seed=20 + k,
                hot_pixels=3,
                cosmic_rays=3,
            )
        )
    return truths


def test_a_slow_heo_among_round_stars_gives_a_tracklet(tmp_path):
    truths = _frames(tmp_path / "frames")
    station = StationConfig.load("stations/pakistan.toml")
    result = reduce_frames(tmp_path / "frames", station)
    assert sum(r.status == "solved" for r in result.reports) == len(truths)
    best = 0
    for t in result.tracklets:
        hits = 0
        for k, truth in enumerate(truths):
            x, y = truth.wcs.all_world2pix(t.ra_deg, t.dec_deg, 0)
            px = START[0] + STEP_PX * k * math.cos(ANGLE)
            py = START[1] + STEP_PX * k * math.sin(ANGLE)
            hits += bool(np.any(np.hypot(x - px, y - py) < 0.5))
        best = max(best, hits)
    assert best >= len(truths) - 1


def test_a_saturated_tracked_object_among_round_stars_gives_a_tracklet(tmp_path):
    """Iran's rate-tracking sequence of ``mar`` seed 107 followed a Galileo satellite at
    S/N 300: saturated in most frames, it was taken for a saturated star (only stars
    and unclassified sources were compared with the neighbour frames)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    step = 20.0  # px between frames 5 s apart against the stars
    truths, places = [], []
    for k in range(5):
        x, y = 300.0 + step * k, 500.0 + 0.5 * step * k
        places.append((x, y))
        truths.append(
            make_frame(
                folder / f"f{k:02d}.fits", shape=(1024, 1024), scale_arcsec=SCALE,
                fwhm_px=FWHM, zero_point=21.0, exptime=0.5, points=[(x, y, 300000.0)],
                date_obs=f"2026-11-22T01:02:{3 + 5 * k:02d}.250", seed=40 + k,
            )
        )  # fmt: skip
    station = StationConfig.load("stations/pakistan.toml")
    result = reduce_frames(folder, station)
    best = 0
    for t in result.tracklets:
        hits = 0
        for truth, (px, py) in zip(truths, places, strict=True):
            x, y = truth.wcs.all_world2pix(t.ra_deg, t.dec_deg, 0)
            hits += bool(np.any(np.hypot(x - px, y - py) < 1.0))
        best = max(best, hits)
    assert best >= len(truths) - 1
