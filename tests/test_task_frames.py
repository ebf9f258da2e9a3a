"""Frames taken on the data center's tasks, as the agent's simulator source makes them
(one frame at a time, each with its own pointing error), reduced into tracklets."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from aposos.model import datetime64_to_jd_fr
from aposos.orbit.catalogue import Catalogue
from aposos.station.agent_config import SimulatorSourceConfig
from aposos.station.config import StationConfig
from aposos.station.outbox import AgentStore
from aposos.station.reduce import reduce_frames
from aposos.station.simulator.plan import SatelliteEphemeris
from aposos.station.sources import SimulatorSource
from aposos.station.stars import StarCatalogue

ROOT = Path(__file__).resolve().parents[1]
TLE = ROOT / "tests" / "data" / "shared" / "catalogues" / "celestrak-active-2020-10-02.3le"
START = np.datetime64("2020-10-02T17:00:00", "us")  # Pakistan: 22:00 local
one_arcsec = 1 / 3600

pytestmark = pytest.mark.skipif(not TLE.exists(), reason="shared data not present")


def _task(tracking: str, ra: float, dec: float, *, exposure_s: float, norad=None) -> dict:
    end = START + np.timedelta64(10, "m")
    return {"task_id": "T1", "station": "PAK1", "start": f"{START}Z", "end": f"{end}Z",
            "target": {"kind": "object" if norad else "field", "norad_id": norad, "name": None},
            "ra_deg": ra, "dec_deg": dec, "tracking": tracking, "rate_ra_arcsec_s": None,
            "rate_dec_arcsec_s": None, "exposure_s": exposure_s, "frames": 8, "priority": 5,
            "reason": "test"}  # fmt: skip


def _station(pointing_error_deg: float) -> StationConfig:
    """Pakistan's station (2048 x 2048, 1.83"/px, 1.04 deg) with the given pointing error."""
    with open(ROOT / "stations" / "pakistan.toml", "rb") as fh:
        doc = tomllib.load(fh)
    doc["simulator"]["pointing_error_deg"] = pointing_error_deg
    return StationConfig.from_dict(doc, source="pakistan")


def _frames(tmp_path, cfg, task, n: int) -> Path:
    """The frames the agent's simulator source renders for ``task``, one poll each."""
    settings = SimulatorSourceConfig(TLE, START, 10.0, seed=3)
    store = AgentStore(tmp_path / "agent.sqlite")
    src = SimulatorSource(cfg, settings, store, tmp_path / "in", StarCatalogue.load("both"))
    for _ in range(n):
        assert src.poll(task) is not None
    store.close()
    return tmp_path / "in"


def _sunlit_geo(cfg, satellites) -> list[int]:
    eph = SatelliteEphemeris(satellites, cfg.site, np.array([START]))
    ok = eph.sunlit[:, 0] & (eph.elevation_deg[:, 0] > 30.0)
    ok &= np.asarray(satellites.orbit_class) == "GEO"
    return [int(i) for i in np.flatnonzero(ok)]


def _separation_arcsec(satellites, row, cfg, tracklet) -> np.ndarray:
    jd, fr = datetime64_to_jd_fr(np.asarray(tracklet.utc, "datetime64[us]"))
    ra, dec, _ = satellites.subset([row]).radec(cfg.site, jd, fr)
    d_ra = (np.asarray(tracklet.ra_deg) - ra[0] + 180.0) % 360.0 - 180.0
    d_dec = np.asarray(tracklet.dec_deg) - dec[0]
    return np.hypot(d_ra * np.cos(np.radians(dec[0])), d_dec) / one_arcsec


@pytest.mark.slow
def test_a_geo_stare_task_with_a_pointing_error_per_frame_gives_its_tracklet(tmp_path):
    """The demo's GEO stares: the mount re-points for each frame, so a GEO jumps by
    the new pointing error on the detector (here up to 0.3 deg, 600 px) while it stays
    put relative to the commanded pointing. It must link (it did not: the test for a
    point held by the mount compared detector pixels only)."""
    cfg = _station(0.3)
    satellites = Catalogue.from_tle(TLE)
    rows = _sunlit_geo(cfg, satellites)
    assert rows, "no sunlit GEO object at the test time"
    eph = SatelliteEphemeris(satellites.subset(rows), cfg.site, np.array([START]))
    ra, dec = float(eph.ra_deg[0, 0]), float(eph.dec_deg[0, 0])
    folder = _frames(tmp_path, cfg, _task("stare", ra, dec, exposure_s=2.0), 8)
    result = reduce_frames(folder, cfg)
    solved = [r for r in result.reports if r.status == "solved"]
    assert len(solved) >= 7
    jumps = [r.info["pointing_error_deg"] for r in solved]
    assert max(jumps) - min(jumps) > 0.05  # 100 px: far beyond a held point's drift
    best = min(
        (_separation_arcsec(satellites, rows[0], cfg, t) for t in result.tracklets),
        key=lambda s: float(np.median(s)),
        default=None,
    )
    assert best is not None and best.size >= 6
    # arcsec (1.83"/px): about a pixel at most, with 8-13 reference stars a frame
    assert np.median(best) < 2.0 and best.max() < 4.0


def test_no_pointing_known_compares_detector_pixels():
    """Without a commanded pointing a held point is compared on the detector alone."""
    from aposos.station.detection import Detection
    from aposos.station.tracklets import _held_points, _on_held_pixels

    t0 = np.datetime64("2020-10-02T17:00:00", "us")
    dets = []
    for k, (x, mount) in enumerate([(100.0, None), (400.0, None), (100.5, (5.0, 5.0))]):
        d = Detection(frame=k, kind="point", x=x, y=50.0, sigma_px=0.1, flux=1.0, snr=50.0,
                      width_px=0.8)  # fmt: skip
        d.t_open = t0 + np.timedelta64(6 * k, "s")
        d.t_close = d.t_open + np.timedelta64(2, "s")
        d.radec_a, d.mount_xy = (1.0, 1.0), mount
        d.pointing_error_xy = None if mount is None else (0.0, 0.0)
        dets.append(d)
    held = _held_points(dets)
    assert not _on_held_pixels(held, 0, 1, 6.0)  # 300 px apart, pointing unknown
    assert _on_held_pixels(held, 0, 2, 12.0)  # same pixels
    assert math.isnan(held[0, 3]) and held[2, 3] == 5.0


def test_the_pointing_relative_check_only_when_the_mount_re_pointed():
    """Two points 300 px apart on the detector at the same place relative to the
    commanded pointing: one held object when the frames' pointing errors differ by
    those 300 px (the mount re-pointed), two things when they do not (a Pakistan
    stare night made a false tracklet of such a pair)."""
    from aposos.station.detection import Detection
    from aposos.station.tracklets import _held_points, _on_held_pixels

    t0 = np.datetime64("2020-10-02T17:00:00", "us")

    def pair(error_b):
        dets = []
        for k, (x, err) in enumerate([(100.0, (0.0, 0.0)), (400.0, error_b)]):
            d = Detection(frame=k, kind="point", x=x, y=50.0, sigma_px=0.1, flux=1.0,
                          snr=50.0, width_px=0.8)  # fmt: skip
            d.t_open = t0 + np.timedelta64(6 * k, "s")
            d.t_close = d.t_open + np.timedelta64(2, "s")
            d.radec_a, d.mount_xy, d.pointing_error_xy = (1.0, 1.0), (7.0, 3.0), err
            dets.append(d)
        return _held_points(dets)

    assert _on_held_pixels(pair((300.0, 0.0)), 0, 1, 6.0)
    assert not _on_held_pixels(pair((0.5, 0.0)), 0, 1, 6.0)
