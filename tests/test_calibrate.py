"""Master bias / dark / flat from real FITS files, and applying them to lights and cutouts."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from aposos.station.calibrate import MasterCalibration
from aposos.station.fitsframe import FrameError, read_frame

SHAPE = (120, 160)


def _write(path, kind, data, exptime, **extra):
    h = fits.Header()
    h["IMAGETYP"] = kind
    h["EXPTIME"] = exptime
    h["DATE-OBS"] = "2026-11-22T01:00:00"
    for k, v in extra.items():
        h[k] = v
    fits.PrimaryHDU(np.clip(np.round(data), 0, 65535).astype(np.uint16), h).writeto(path)


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """A camera with a column bias pattern, dark current, a vignetted flat, one hot pixel."""
    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    bias = 1000.0 + 5.0 * np.sin(xx / 7.0)
    dark = np.full(SHAPE, 0.5)  # ADU/s
    dark[40, 50] = 200.0  # hot
    flat = 1.0 - 0.2 * (((xx - 80) / 80.0) ** 2 + ((yy - 60) / 60.0) ** 2)
    for i in range(9):
        _write(d / f"bias{i}.fits", "Bias Frame", bias + rng.normal(0, 3, SHAPE), 0.0)
        _write(d / f"dark{i}.fits", "DARK", bias + dark * 30 + rng.normal(0, 3, SHAPE), 30.0)
        _write(
            d / f"flat{i}.fits",
            "Flat Field",
            bias + dark + 20000 * flat + rng.normal(0, 3, SHAPE),
            1.0,
        )
    return d, bias, dark, flat


def test_masters(camera):
    d, bias, dark, flat = camera
    cal = MasterCalibration.from_directory(d)
    assert cal.counts == {"bias": 9, "dark": 9, "flat": 9}
    # a median of 9 frames with 3 ADU noise: about 1.2 ADU off
    assert np.median(np.abs(cal.bias - bias)) < 1.2
    np.testing.assert_allclose(cal.bias, bias, atol=7.0)
    np.testing.assert_allclose(np.delete(cal.dark_rate.ravel(), 40 * 160 + 50), 0.5, atol=0.3)
    # the flat is normalised to median 1; the shape follows the vignetting
    ratio = cal.flat / (flat / np.median(flat))
    assert np.max(np.abs(ratio - 1.0)) < 0.01
    assert cal.bad_pixels[40, 50] and cal.bad_pixels.sum() == 1
    assert cal.summary()["bad_pixels"] == 1


def test_apply_to_light_and_cutout(camera, tmp_path):
    d, bias, dark, flat = camera
    cal = MasterCalibration.from_directory(d)
    sky = 300.0
    light = bias + dark * 10 + sky * flat
    _write(tmp_path / "l.fits", "LIGHT", light, 10.0)
    out = cal.apply(read_frame(tmp_path / "l.fits"))
    sky = sky * np.median(flat)  # the master flat has median 1
    assert np.isnan(out[40, 50])
    good = np.isfinite(out)
    assert np.median(np.abs(out[good] - sky)) < 1.5
    # a 40 x 30 cutout at detector offset (40, 20): LTV = -offset
    cut = light[20:50, 40:80]
    _write(tmp_path / "c.fits", "LIGHT", cut, 10.0, LTV1=-40.0, LTV2=-20.0)
    out = cal.apply(read_frame(tmp_path / "c.fits"))
    assert out.shape == (30, 40)
    assert np.isnan(out[40 - 20, 50 - 40])  # the hot pixel, in cutout coordinates
    assert np.nanmedian(np.abs(out - sky)) < 1.5
    # a cutout that runs off the masters is an error naming the file
    _write(tmp_path / "bad.fits", "LIGHT", cut, 10.0, LTV1=-140.0, LTV2=0.0)
    with pytest.raises(FrameError, match="outside"):
        cal.apply(read_frame(tmp_path / "bad.fits"))


def test_no_calibration_is_identity(tmp_path):
    _write(tmp_path / "l.fits", "LIGHT", np.full(SHAPE, 1234.0), 1.0)
    f = read_frame(tmp_path / "l.fits")
    np.testing.assert_array_equal(MasterCalibration().apply(f), f.data)


def test_bad_calibration_files_are_listed(tmp_path):
    (tmp_path / "broken.fits").write_bytes(b"SIMPLE  = junk" * 100)
    _write(tmp_path / "b.fits", "BIAS", np.full(SHAPE, 1000.0), 0.0)
    cal = MasterCalibration.from_directory(tmp_path)
    assert cal.counts["bias"] == 1
    assert any("broken.fits" in p for p in cal.problems)
