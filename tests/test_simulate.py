"""Sky simulator: FITS contract, truth against the orbit layer, noise, streak geometry."""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from aposos.model import datetime64_to_jd_fr
from aposos.orbit.catalogue import Catalogue
from aposos.station.config import StationConfig
from aposos.station.simulator.camera import CameraModel
from aposos.station.simulator.night import SkySimulator, write_night
from aposos.station.simulator.plan import SatelliteEphemeris, plan_night, read_pointings
from aposos.station.simulator.render import photon_noise
from aposos.station.simulator.sky import TanProjection, cd_matrix
from aposos.station.stars import StarCatalogue

ROOT = Path(__file__).resolve().parents[1]
TLE = ROOT / "tests" / "data" / "shared" / "catalogues" / "celestrak-active-2020-10-02.3le"
NIGHT = np.datetime64("2020-10-02T16:30:00", "us")  # Iran: 20:00 local, Sun -30 deg
one_arcsec = 1 / 3600

pytestmark = pytest.mark.skipif(not TLE.exists(), reason="shared data not present")

CONTRACT_KEYS = (
    "IMAGETYP", "DATE-OBS", "EXPTIME", "SITELAT", "SITELONG", "SITEELEV", "STATION",
    "TELESCOP", "INSTRUME", "FOCALLEN", "XPIXSZ", "YPIXSZ", "GAIN", "RDNOISE", "XBINNING",
    "FILTER",
)  # fmt: skip
LIGHT_KEYS = ("TRACKMOD", "RA", "DEC", "OBJCTRA", "OBJCTDEC")


def small_station_doc(width=512, height=512, **camera) -> dict:
    """Iran's station with a small, coarse camera (4.6 arcsec/px, 0.66 deg): fast tests."""
    with open(ROOT / "stations" / "iran.toml", "rb") as fh:
        doc = tomllib.load(fh)
    doc["telescope"]["focal_length_mm"] = 400.0
    doc["telescope"].pop("field_of_view_deg")
    doc["camera"].update(width_px=width, height_px=height, **camera)
    return doc


@pytest.fixture(scope="module")
def config() -> StationConfig:
    return StationConfig.from_dict(small_station_doc(), source="small-iran")


@pytest.fixture(scope="module")
def satellites() -> Catalogue:
    return Catalogue.from_tle(TLE)


@pytest.fixture(scope="module")
def stars() -> StarCatalogue:
    return StarCatalogue.load("gaia")


@pytest.fixture(scope="module")
def sim(config, stars, satellites) -> SkySimulator:
    return SkySimulator(config, stars, satellites, seed=11)


def _visible(sim, satellites, t, orbit_class="LEO", min_el=35.0):
    """Catalogue rows of sunlit objects of a class above min_el at t."""
    eph = SatelliteEphemeris(satellites, sim.config.site, np.array([t]))
    ok = eph.sunlit[:, 0] & (eph.elevation_deg[:, 0] > min_el)
    ok &= np.asarray(satellites.orbit_class) == orbit_class
    return np.flatnonzero(ok), eph


def _streak_spec(sim, satellites, *, at="mid", exposure_s=2.0, fastest=False):
    """A sidereal frame with no pointing error centred on a sunlit LEO object."""
    rows, eph = _visible(sim, satellites, NIGHT)
    assert rows.size, "no sunlit LEO object at the test time"
    row = int(rows[0])
    if fastest:
        later = SatelliteEphemeris(satellites.subset(rows), sim.config.site,
                                   np.array([NIGHT + np.timedelta64(1, "s")]))  # fmt: skip
        dra = (later.ra_deg[:, 0] - eph.ra_deg[rows, 0]) * np.cos(np.radians(eph.dec_deg[rows, 0]))
        row = int(rows[np.argmax(np.hypot(dra, later.dec_deg[:, 0] - eph.dec_deg[rows, 0]))])
    t_centre = NIGHT + np.timedelta64(int(exposure_s * 1e6 / 2), "us") if at == "mid" else NIGHT
    eph = SatelliteEphemeris(satellites.subset([row]), sim.config.site, np.array([t_centre]))
    spec = sim.frame_spec(NIGHT, float(eph.ra_deg[0, 0]), float(eph.dec_deg[0, 0]),
                          offset_xi_deg=0.0, offset_eta_deg=0.0, exposure_s=exposure_s,
                          sky_gradient=(0.0, 0.0))  # fmt: skip
    return spec, int(satellites.norad_id[row])


def test_tan_projection_matches_astropy_wcs():
    cd = cd_matrix(1.5 / 3600, 17.0)
    proj = TanProjection(201.3, -43.2, (255.5, 300.25), cd)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [201.3, -43.2]
    w.wcs.crpix = [256.5, 301.25]  # FITS pixels are 1-based
    w.wcs.cd = np.array(cd)
    rng = np.random.default_rng(1)
    ra = 201.3 + rng.uniform(-1, 1, 200) / math.cos(math.radians(43.2))
    dec = -43.2 + rng.uniform(-1, 1, 200)
    x, y = proj.world_to_pixel(ra, dec)
    xw, yw = w.all_world2pix(ra, dec, 0)
    assert np.max(np.hypot(x - xw, y - yw)) < 1e-6
    distorted = TanProjection(201.3, -43.2, (255.5, 300.25), cd, k1_per_px2=3e-10)
    ra2, dec2 = distorted.pixel_to_world(*distorted.world_to_pixel(ra, dec))
    assert np.max(np.abs(ra2 - ra) * np.cos(np.radians(dec))) < 1e-6 * one_arcsec
    assert np.max(np.abs(dec2 - dec)) < 1e-6 * one_arcsec
    assert TanProjection.from_dict(distorted.to_dict()) == distorted


def test_streak_centroid_and_truth_match_the_orbit_layer(sim, satellites):
    spec, norad = _streak_spec(sim, satellites)
    data, header, truth = sim.render(spec)
    rec = next(s for s in truth["satellites"] if s["norad_id"] == norad)
    assert rec["length_px"] > 20 and rec["fraction_in_frame"] == 1.0 and rec["sunlit"]
    # truth RA/Dec at start, mid and end are Catalogue.radec at those instants
    row = satellites.index_of(norad)
    for label in ("start", "mid", "end"):
        t = np.datetime64(rec[label]["utc"], "us")
        jd, fr = datetime64_to_jd_fr(np.array([t]))
        ra, dec, _ = satellites.subset([row]).radec(sim.config.site, jd, fr)
        assert (
            abs(ra[0, 0] - rec[label]["ra_deg"]) * math.cos(math.radians(dec[0, 0]))
            < 1e-6 * one_arcsec
        )
        assert abs(dec[0, 0] - rec[label]["dec_deg"]) < 1e-6 * one_arcsec
    # the pixels are the true projection of those positions
    proj = TanProjection.from_dict(truth["tan"])
    x, y = proj.world_to_pixel(rec["mid"]["ra_deg"], rec["mid"]["dec_deg"])
    assert abs(x - rec["mid"]["x"]) < 1e-6 and abs(y - rec["mid"]["y"]) < 1e-6
    # the rendered flux centroid is the time-averaged position: the mid-point, up to the
    # track's curvature (a T^2 / 24 = (start + end - 2 mid) / 6)
    image = sim.expected_electrons(spec, sky=False, stars=False)
    yy, xx = np.indices(image.shape)
    total = image.sum()
    cx, cy = (image * xx).sum() / total, (image * yy).sum() / total
    s, m, e = rec["start"], rec["mid"], rec["end"]
    bend_x, bend_y = (s["x"] + e["x"] - 2 * m["x"]) / 6, (s["y"] + e["y"] - 2 * m["y"]) / 6
    assert math.hypot(cx - m["x"] - bend_x, cy - m["y"] - bend_y) < 0.1
    assert math.hypot(bend_x, bend_y) < 0.05  # so the mid-point itself is within 0.1 px too
    assert math.hypot(cx - m["x"], cy - m["y"]) < 0.1
    assert total == pytest.approx(rec["flux_e"], rel=0.01)
    # the expected peak is the noise-free peak (times the vignetting at the streak)
    vig = float(sim.camera.vignetting(m["x"], m["y"]))
    assert rec["peak_e"] == pytest.approx(image.max() * vig, rel=0.05)


def test_edge_clipped_streak_is_flagged(sim, satellites):
    spec, norad = _streak_spec(sim, satellites, at="start", exposure_s=3.0, fastest=True)
    _, _, truth = sim.render(spec)
    rec = next(s for s in truth["satellites"] if s["norad_id"] == norad)
    assert 0.0 < rec["fraction_in_frame"] < 1.0
    clipped = [f for f in truth["features"] if f["kind"] == "edge_clipped_streak"]
    assert any(f["norad_id"] == norad for f in clipped)


def test_rate_and_stare_tracking(sim, satellites):
    rows, _ = _visible(sim, satellites, NIGHT)
    norad = int(satellites.norad_id[rows[0]])
    spec = sim.frame_spec(NIGHT, 0.0, 0.0, mode="rate", target_norad=norad, offset_xi_deg=0.05,
                          offset_eta_deg=0.0, track_time_error_s=0.0)  # fmt: skip
    assert spec.exposure_s == sim.config.simulator.rate_exposure_s
    _, header, truth = sim.render(spec)
    target = next(s for s in truth["satellites"] if s["role"] == "target")
    assert target["norad_id"] == norad and target["length_px"] < 0.5  # a point
    assert header["TRACKMOD"] == "rate"
    # the commanded pointing follows the target: RA/DEC is its position at shutter open
    assert header["RA"] == pytest.approx(target["start"]["ra_deg"], abs=1e-6)
    # stare: GEO objects stay put while the sky drifts at the sidereal rate
    geo, eph = _visible(sim, satellites, NIGHT, orbit_class="GEO", min_el=20.0)
    assert geo.size
    row = int(geo[0])
    spec = sim.frame_spec(NIGHT, float(eph.ra_deg[row, 0]), float(eph.dec_deg[row, 0]),
                          mode="stare", offset_xi_deg=0.0, offset_eta_deg=0.0)  # fmt: skip
    _, _, truth = sim.render(spec)
    rec = next(s for s in truth["satellites"] if s["norad_id"] == int(satellites.norad_id[row]))
    assert rec["length_px"] < 1.0
    ra0, ra1 = truth["crval_start"][0], truth["crval_end"][0]
    assert (ra1 - ra0) * 3600 == pytest.approx(15.041 * spec.exposure_s, rel=1e-3)


def test_bright_star_features(sim):
    # Vega, high in the Iranian evening sky
    spec = sim.frame_spec(NIGHT, 279.2347, 38.7837, offset_xi_deg=0.0, offset_eta_deg=0.0,
                          seeing_fwhm_arcsec=2.0)  # fmt: skip
    data, _, truth = sim.render(spec)
    kinds = {f["kind"] for f in truth["features"]}
    assert {"saturated_star", "diffraction_spike", "blooming_column"} <= kinds
    spike = next(f for f in truth["features"] if f["kind"] == "diffraction_spike")
    bloom = [f for f in truth["features"] if f["kind"] == "blooming_column"]
    assert any(f["x"] - 2 <= spike["x"] <= f["x_last"] + 2 for f in bloom)
    assert data.max() == sim.config.camera.saturation_adu or data.max() >= (
        sim.config.camera.full_well / sim.config.camera.gain_e_per_adu
    )
    assert truth["n_catalogue_stars"] >= 1


def test_poisson_sampler_moments():
    rng = np.random.default_rng(5)
    for mean in (0.5, 3.0, 24.0, 26.0, 400.0):
        lam = np.full((400, 500), mean, dtype=np.float32)
        z = rng.standard_normal(lam.shape, dtype=np.float32)
        x = photon_noise(lam, z).astype(np.float64)
        assert x.mean() == pytest.approx(mean, rel=0.01, abs=0.005)
        assert x.var() == pytest.approx(mean, rel=0.02)
        skew = np.mean((x - x.mean()) ** 3) / x.var() ** 1.5
        assert skew == pytest.approx(1 / math.sqrt(mean), rel=0.15, abs=0.01)


def test_read_noise_and_gain_from_calibration_frames(config):
    """Photon transfer: bias pairs give the read noise, flat pairs the gain (within 3%)."""
    cam = CameraModel(config)
    rng = np.random.default_rng(9)
    gain, rn = config.camera.gain_e_per_adu, config.camera.read_noise_e

    def robust_var(a):
        a = a[np.abs(a - np.median(a)) < 5 * 1.4826 * np.median(np.abs(a - np.median(a)))]
        return a.var()

    b1, b2 = (cam.expose(None, 0.0, rng).data.astype(np.float64) for _ in range(2))
    assert math.sqrt(robust_var(b1 - b2) / 2) * gain == pytest.approx(rn, rel=0.03)
    level = 20000.0
    f1, f2 = (cam.expose(np.full(cam.shape, level, np.float32), 1.0, rng).data.astype(np.float64)
              for _ in range(2))  # fmt: skip
    bias = np.median(b1)
    signal_adu = 0.5 * (f1 + f2).mean() - bias
    var_adu = robust_var(f1 - f2) / 2 - (rn / gain) ** 2
    assert signal_adu / var_adu == pytest.approx(gain, rel=0.03)


def test_warm_columns_and_amplifier_glow_in_darks(config):
    """Real cameras' fixed pattern beyond hot pixels: warm columns from a trap row on,
    glow in the read-out corner; the darks carry them, and the bad-pixel map built
    from the darks flags the warm columns."""
    from aposos.station.calibrate import MasterCalibration
    from aposos.station.fitsframe import Frame

    cam = CameraModel(config)
    rng = np.random.default_rng(3)
    t = 120.0
    darks = [cam.expose(None, t, rng, cosmic_rays=False).data.astype(np.float32) for _ in range(3)]
    biases = [
        cam.expose(None, 0.0, rng, cosmic_rays=False).data.astype(np.float32) for _ in range(3)
    ]
    dark = np.median(darks, axis=0) - np.median(biases, axis=0)
    gain = config.camera.gain_e_per_adu
    h, w = cam.shape
    for col, first, rate in cam.bad_columns:
        above = np.median(dark[first + 5 :, col]) * gain / t
        expected = float(np.median(cam.dark_pattern[first + 5 :, col]))  # columns may coincide
        assert expected >= rate - 1e-5
        assert above == pytest.approx(expected, abs=0.1 + 0.1 * expected)
        if first > 20:
            expected = float(np.median(cam.dark_pattern[: first - 5, col]))
            assert np.median(dark[: first - 5, col]) * gain / t == pytest.approx(
                expected, abs=0.1 + 0.1 * expected
            )
    gx, gy, peak, _ = cam.amp_glow
    corner = dark[int(gy) if gy == 0 else int(gy) - 1, int(gx) if gx == 0 else int(gx) - 1]
    assert corner * gain / t == pytest.approx(peak, rel=0.35)
    frames = [Frame("d", d, None, "dark", None, t) for d in darks]
    cal = MasterCalibration.from_frames(frames)
    col, first, rate = max(cam.bad_columns, key=lambda c: c[2])
    if rate * t / gain > 8.0:  # well above the dark noise
        assert cal.bad_pixels[first + 5 :, col].mean() > 0.9


def test_write_night_fits_contract(tmp_path, config, stars, satellites):
    truth = write_night(config, stars, satellites, NIGHT, 0.4, tmp_path, seed=2,
                        n_calibration=2, progress=False)  # fmt: skip
    on_disk = json.loads((tmp_path / "truth.json").read_text())
    assert on_disk["frames"] and on_disk == json.loads(json.dumps(truth))
    latency = np.timedelta64(int(config.camera.shutter_latency_s * 1e6), "us")
    for frame in truth["frames"]:
        with fits.open(tmp_path / frame["file"]) as hdul:
            assert len(hdul) == 1
            hdr, data = hdul[0].header, hdul[0].data
            assert hdr["BITPIX"] == 16 and hdr["BZERO"] == 32768
            assert data.dtype == np.uint16 and data.shape == (512, 512)
            for key in CONTRACT_KEYS + LIGHT_KEYS:
                assert key in hdr, key
            assert "CTYPE1" not in hdr and "CRVAL1" not in hdr  # no WCS
            assert hdr["IMAGETYP"] == "LIGHT" and hdr["TRACKMOD"] == frame["mode"]
            stamp = np.datetime64(hdr["DATE-OBS"], "us")
            assert stamp + latency == np.datetime64(frame["utc_start"], "us")  # time_stamp start
            assert len(hdr["DATE-OBS"]) == 26  # microseconds
            assert hdr["STATION"] == "IRN1" and hdr["SITELONG"] == pytest.approx(51.318)
            # the commanded pointing is within the pointing error of the truth
            sep = math.hypot(*frame["pointing_error_deg"].values())
            assert sep <= config.simulator.pointing_error_deg + 0.01
    kinds = sorted({c["imagetyp"] for c in truth["calibration"]})
    assert kinds == ["BIAS", "DARK", "FLAT"]
    for calib in truth["calibration"]:
        hdr = fits.getheader(tmp_path / calib["file"])
        assert hdr["IMAGETYP"] == calib["imagetyp"] and "RA" not in hdr
    assert truth["camera"]["hot_pixels"]


def test_mid_and_end_time_stamps(stars):
    for stamp, shift in (("mid", 1.0), ("end", 2.0)):
        cfg = StationConfig.from_dict(small_station_doc(128, 128, time_stamp=stamp))
        s = SkySimulator(cfg, stars, None, seed=1, faint_stars=False)
        spec = s.frame_spec(NIGHT, 10.0, 10.0, exposure_s=2.0)
        _, hdr, truth = s.render(spec)
        latency = np.timedelta64(int(cfg.camera.shutter_latency_s * 1e6), "us")
        expected = NIGHT + np.timedelta64(int(shift * 1e6), "us") - latency
        assert np.datetime64(hdr["DATE-OBS"], "us") == expected
        assert truth["utc_start"] == str(NIGHT)


def test_plan_night_modes_and_darkness(config, satellites):
    specs = plan_night(config, satellites, NIGHT, 3.2, mode="mixed", seed=4)
    assert [s.mode for s in specs[:: len(specs) // 3]][:3] == ["sidereal", "rate", "stare"]
    assert len({s.visit for s in specs}) >= 3
    with pytest.raises(ValueError, match="not dark"):
        plan_night(config, satellites, np.datetime64("2020-10-02T08:00"), 10)


def test_render_is_reproducible(sim, satellites):
    spec, _ = _streak_spec(sim, satellites)
    a, _, ta = sim.render(spec)
    b, _, tb = sim.render(spec)
    assert np.array_equal(a, b) and ta == tb


def test_pointings_file(tmp_path):
    good = tmp_path / "p.csv"
    good.write_text("utc,ra_deg,dec_deg,mode,norad_id\n2020-10-02T16:30:00,10,20,,\n"
                    "2020-10-02T16:31:00,,,rate,25544\n")  # fmt: skip
    rows = read_pointings(good)
    assert rows[0]["ra_deg"] == 10.0 and rows[1]["norad_id"] == 25544
    bad = tmp_path / "bad.csv"
    bad.write_text("utc,ra_deg,dec_deg\n2020-10-02T16:30:00,10,20\n2020-10-02T16:31:00,10,95\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 3: dec_deg 95.0 is outside"):
        read_pointings(bad)


def test_cli_simulate(tmp_path, capsys):
    from test_station_config import _to_toml

    from aposos.cli import CommandError
    from aposos.commands import station_simulate

    station = tmp_path / "small.toml"
    station.write_text(_to_toml(small_station_doc(256, 256)))
    parser = argparse.ArgumentParser()
    station_simulate.register(parser.add_subparsers())
    argv = ["simulate", "--station", str(station), "--catalog", str(TLE), "--start",
            "2020-10-02T16:30:00Z", "--minutes", "0.2", "--out", str(tmp_path / "out"),
            "--mode", "stare", "--stars", "hipparcos", "--calibration-frames", "1",
            "--no-progress"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "IRN1: wrote" in capsys.readouterr().out
    truth = json.loads((tmp_path / "out" / "truth.json").read_text())
    assert truth["frames"][0]["mode"] == "stare"
    assert sorted(c["imagetyp"] for c in truth["calibration"]) == ["BIAS", "DARK", "FLAT"]
    args = parser.parse_args([*argv[:2], str(tmp_path / "missing.toml"), *argv[3:]])
    with pytest.raises(CommandError, match="does not exist"):
        args.func(args)
