"""Short streaks of GEO-belt objects in sidereal frames, as the simulator renders them.

A Peru sidereal frame before dawn (tuning seed 47): four objects cross it as streaks
of 14-33 px at a peak S/N of 40-60, with the camera's undersampled PSF (1.45 px FWHM)
and hundreds of bright stars whose footprints reach far and ragged. The footprint
length threshold of the bright sources lay above all of them (runs of 12 frames of
one object missed in the night's reduction); the light's own second moments do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared_data import CATALOGUE_NEW

from aposos.orbit.catalogue import Catalogue
from aposos.station.config import StationConfig
from aposos.station.extract import STREAK, SourceExtractor
from aposos.station.simulator.night import SkySimulator
from aposos.station.simulator.plan import plan_night
from aposos.station.stars import StarCatalogue

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not CATALOGUE_NEW.exists(), reason="shared data not present")


def test_short_geo_streaks_in_a_peru_sidereal_frame():
    cfg = StationConfig.load(ROOT / "stations" / "peru.toml")
    sats = Catalogue.from_tle(CATALOGUE_NEW)
    start = np.datetime64("2020-10-03T06:25:00", "us")
    specs = plan_night(cfg, sats, start, 0.2, mode="sidereal", seed=47)
    sim = SkySimulator(cfg, StarCatalogue.load("both"), sats, seed=47)
    data, _, truth = sim.render(specs[2])
    ny, nx = data.shape
    ext = SourceExtractor(fwhm_px=1.45, saturation=0.98 * cfg.camera.saturation_adu)(
        data.astype(np.float32)
    )
    s = ext.sources
    short = []
    for sat in truth["satellites"]:
        a, b = sat["start"], sat["end"]
        length = float(np.hypot(b["x"] - a["x"], b["y"] - a["y"]))
        inside = all(10 < p["x"] < nx - 10 and 10 < p["y"] < ny - 10 for p in (a, b))
        if sat["peak_snr"] >= 20 and inside and 10 < length < 40:
            mx, my = sat["mid"]["x"], sat["mid"]["y"]
            i = int(np.argmin(np.hypot(s.fx - mx, s.fy - my)))
            assert s.kind[i] == STREAK, sat["norad_id"]
            assert s.flux_length[i] == pytest.approx(length, abs=3.0)
            short.append(sat["norad_id"])
    assert len(short) >= 3
