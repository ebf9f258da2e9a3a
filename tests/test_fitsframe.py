"""FITS reading: the header conventions of real cameras, checked against astropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.io import fits
from astropy.time import Time

from aposos.station.fitsframe import FrameError, parse_sexagesimal, read_frame, read_header_time

one_us = np.timedelta64(1, "us")


def write(path, header_items, data=None, **kw):
    header = fits.Header()
    for k, v in header_items.items():
        header[k] = v
    if data is None:
        data = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    fits.PrimaryHDU(data, header, **kw).writeto(path, overwrite=True)
    return path


BASE = {"IMAGETYP": "LIGHT", "EXPTIME": 2.0}


def t(text):
    return np.datetime64(text, "us")


def test_simulator_contract(tmp_path):
    data = (np.arange(64 * 48).reshape(48, 64) * 20 % 65535).astype(np.uint16)
    p = write(
        tmp_path / "a.fits",
        {
            **BASE,
            "DATE-OBS": "2026-11-22T01:02:03.250000",
            "TRACKMOD": "sidereal",
            "RA": 83.8,
            "DEC": -5.4,
            "OBJCTRA": "05 35 12.00",
            "OBJCTDEC": "-05 24 00.0",
            "SITELAT": 33.674,
            "SITELONG": 51.318,
            "SITEELEV": 3600.0,
            "STATION": "IRN1",
            "FOCALLEN": 1250.0,
            "XPIXSZ": 9.0,
            "YPIXSZ": 9.0,
            "GAIN": 1.4,
            "RDNOISE": 9.0,
        },
        data,
    )
    with fits.open(p) as hdul:
        assert hdul[0].header["BZERO"] == 32768  # astropy writes uint16 the camera way
    f = read_frame(p)
    assert f.data.dtype == np.float32
    np.testing.assert_array_equal(f.data, data.astype(np.float32))
    assert f.start_utc == t("2026-11-22T01:02:03.25")
    assert f.exptime_s == 2.0 and f.track_mode == "sidereal" and f.station == "IRN1"
    assert f.pointing_deg == pytest.approx((83.8, -5.4))
    assert f.site.latitude_deg == pytest.approx(33.674)
    assert f.site.longitude_deg == pytest.approx(51.318)
    # 9 um at 1250 mm: 206264.8 * 9e-3 / 1250 = 1.48511 arcsec
    assert f.pixel_scale_arcsec() == pytest.approx(206264.806 * 9e-3 / 1250, rel=1e-6)
    assert f.wcs is None and f.image_type == "light"


@pytest.mark.parametrize(
    "items, expected",
    [
        ({"DATE-OBS": "2024-03-05T04:05:06.5"}, "2024-03-05T04:05:06.5"),
        ({"DATE-OBS": "2024-03-05 04:05:06"}, "2024-03-05T04:05:06"),
        ({"DATE-OBS": "2024-03-05", "TIME-OBS": "04:05:06.25"}, "2024-03-05T04:05:06.25"),
        ({"DATE-OBS": "2024-03-05", "UT": "23:59:59.9"}, "2024-03-05T23:59:59.9"),
        ({"DATE-OBS": "2024-03-05", "UTSTART": "00:00:01"}, "2024-03-05T00:00:01"),
        # the pre-2000 FITS form: year = 1900 + yy
        ({"DATE-OBS": "14/07/98", "TIME-OBS": "22:10:00"}, "1998-07-14T22:10:00"),
        # its "year - 1900" writers after 1999
        ({"DATE-OBS": "01/01/100", "TIME-OBS": "00:00:00"}, "2000-01-01T00:00:00"),
        ({"DATE-OBS": "29/02/124", "UT": "12:00:00"}, "2024-02-29T12:00:00"),
        ({"DATE-BEG": "2024-03-05T04:05:06"}, "2024-03-05T04:05:06"),
    ],
)
def test_date_forms(items, expected):
    start, _, _ = read_header_time(items)
    assert start == t(expected)


def test_mjd_and_jd_against_astropy():
    ref = Time("2023-08-09T21:43:11.123456", scale="utc", precision=6)
    start, src, _ = read_header_time({"MJD-OBS": ref.mjd})
    assert src == "MJD-OBS"
    assert abs((start - t(ref.isot)) / one_us) < 2
    start, src, _ = read_header_time({"JD": ref.jd})
    assert src == "JD"
    assert abs((start - t(ref.isot)) / one_us) < 50  # a float JD resolves ~40 us


def test_mid_and_end_stamps():
    h = {"DATE-OBS": "2024-03-05T04:05:06"}
    assert read_header_time(h, time_stamp="mid", exptime_s=3.0)[0] == t("2024-03-05T04:05:04.5")
    assert read_header_time(h, time_stamp="end", exptime_s=3.0)[0] == t("2024-03-05T04:05:03")
    # DATE-AVG / DATE-END say what they are, whatever the station setting
    assert read_header_time({"DATE-AVG": "2024-03-05T04:05:06"}, exptime_s=2.0)[0] == t(
        "2024-03-05T04:05:05"
    )
    assert read_header_time({"DATE-END": "2024-03-05T04:05:06"}, exptime_s=2.0)[0] == t(
        "2024-03-05T04:05:04"
    )


def test_timesys_tt_converted_with_astropy():
    start, _, notes = read_header_time({"DATE-OBS": "2020-06-01T00:01:09.184", "TIMESYS": "TT"})
    expected = Time("2020-06-01T00:01:09.184", scale="tt", precision=6).utc.isot
    assert start == t(expected)
    assert any("TIMESYS" in n for n in notes)


@pytest.mark.parametrize(
    "items, message",
    [
        ({}, "no DATE-OBS"),
        ({"DATE-OBS": "2024-03-05"}, "no time of day"),
        ({"DATE-OBS": "05/06/05", "TIME-OBS": "01:00:00"}, "before any"),
        ({"DATE-OBS": "March 5th"}, "no known form"),
        ({"DATE-OBS": "2024-02-30T00:00:00"}, "no such day"),
        ({"DATE-OBS": "2024-03-05", "UT": 4.5}, "only hh:mm:ss"),
        ({"DATE-OBS": "2024-03-05T00:00:00", "TIMESYS": "LOCAL"}, "TIMESYS"),
    ],
)
def test_unknown_conventions_are_reported(items, message):
    with pytest.raises(ValueError, match=message):
        read_header_time(items)


def test_mjd_disagreement_noted():
    _, _, notes = read_header_time({"DATE-OBS": "2024-03-05T04:05:06", "MJD-OBS": 60374.0})
    assert any("disagrees" in n for n in notes)


def test_sexagesimal():
    assert parse_sexagesimal("-00 30 00") == -0.5
    assert parse_sexagesimal("+12:30:36") == pytest.approx(12.51)
    assert parse_sexagesimal("05 35 12.0", hours=True) == pytest.approx(83.8)
    assert parse_sexagesimal(-7.25) == -7.25
    with pytest.raises(ValueError):
        parse_sexagesimal("12 75 00")


def test_site_keys(tmp_path):
    loc = EarthLocation.from_geodetic(-70.7366 * u.deg, -30.2407 * u.deg, 2207.0 * u.m)
    cases = [
        {"SITELAT": "-30 14 26.5", "SITELONG": "-70 44 11.8", "SITEELEV": 2207.0},
        {"LATITUDE": -30.2407, "LONGITUD": -70.7366, "ALTITUDE": 2207.0},
        {"OBSGEO-B": -30.2407, "OBSGEO-L": -70.7366, "OBSGEO-H": 2207.0},
        {
            "OBSGEO-X": loc.x.to_value(u.m),
            "OBSGEO-Y": loc.y.to_value(u.m),
            "OBSGEO-Z": loc.z.to_value(u.m),
        },
    ]
    for i, items in enumerate(cases):
        p = write(tmp_path / f"s{i}.fits", {**BASE, "DATE-OBS": "2024-01-01T00:00:00", **items})
        site = read_frame(p).site
        assert site.latitude_deg == pytest.approx(-30.2407, abs=1e-4), items
        assert site.longitude_deg == pytest.approx(-70.7366, abs=1e-4), items
        assert site.altitude_m == pytest.approx(2207.0, abs=0.5), items


def test_pointing_forms(tmp_path):
    base = {**BASE, "DATE-OBS": "2024-01-01T00:00:00"}
    p = write(tmp_path / "p1.fits", {**base, "OBJCTRA": "12 30 00", "OBJCTDEC": "-00 30 00"})
    assert read_frame(p).pointing_deg == pytest.approx((187.5, -0.5))
    p = write(tmp_path / "p2.fits", {**base, "RA": "12:30:00", "DEC": "+45:00:00"})
    assert read_frame(p).pointing_deg == pytest.approx((187.5, 45.0))
    # a float RA in hours, recognised by agreeing with OBJCTRA
    p = write(
        tmp_path / "p3.fits",
        {**base, "RA": 12.5, "DEC": 10.0, "OBJCTRA": "12 30 00", "OBJCTDEC": "+10 00 00"},
    )
    f = read_frame(p)
    assert f.pointing_deg == pytest.approx((187.5, 10.0))
    assert any("hours" in n for n in f.notes)


def test_cutout_binning_and_wcs(tmp_path):
    items = {
        **BASE,
        "DATE-OBS": "2024-01-01T00:00:00",
        "LTV1": -100.0,
        "LTV2": -50.0,
        "XBINNING": 2,
        "YBINNING": 2,
        "PIXSIZE1": 9.0,
        "PIXSIZE2": 9.0,
        "FOCALLEN": 1000.0,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": 10.0,
        "CRVAL2": 20.0,
        "CRPIX1": 15.0,
        "CRPIX2": 10.0,
        "CD1_1": -0.001,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": 0.001,
    }
    f = read_frame(write(tmp_path / "c.fits", items))
    assert f.origin_xy == (100.0, 50.0)
    assert f.binning == (2, 2)
    assert f.pixel_size_um == (18.0, 18.0)  # PIXSIZE is per unbinned pixel
    assert f.wcs is not None
    assert f.pointing_deg == pytest.approx((10.0, 20.0))  # from the WCS when nothing else


def test_integer_float_and_scaled_data(tmp_path):
    base = {**BASE, "DATE-OBS": "2024-01-01T00:00:00"}
    fl = np.linspace(-5, 5, 600, dtype=np.float32).reshape(20, 30)
    f = read_frame(write(tmp_path / "f.fits", base, fl))
    np.testing.assert_array_equal(f.data, fl)
    # int16 with BSCALE/BZERO: physical = 2 * stored + 100
    stored = (np.arange(600, dtype=np.int16) - 300).reshape(20, 30)
    hdu = fits.PrimaryHDU(stored)
    for k, v in base.items():
        hdu.header[k] = v
    hdu.scale("int16", bscale=2.0, bzero=100.0)
    hdu.data = stored
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.0, 100.0
    hdu.writeto(tmp_path / "s.fits")
    f = read_frame(tmp_path / "s.fits")
    np.testing.assert_allclose(f.data, 2.0 * stored + 100.0)
    # a tile-compressed image in the first extension
    comp = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(stored.astype(np.int32))])
    for k, v in base.items():
        comp[1].header[k] = v
    comp.writeto(tmp_path / "z.fits.fz")
    np.testing.assert_array_equal(read_frame(tmp_path / "z.fits.fz").data, stored)


def test_bad_files(tmp_path):
    good = write(tmp_path / "g.fits", {**BASE, "DATE-OBS": "2024-01-01T00:00:00"})
    raw = good.read_bytes()
    (tmp_path / "trunc.fits").write_bytes(raw[: len(raw) - 2000])
    with pytest.raises(FrameError, match="truncated"):
        read_frame(tmp_path / "trunc.fits")
    (tmp_path / "junk.fits").write_bytes(b"not a fits file" * 300)
    with pytest.raises(FrameError, match="not a readable FITS"):
        read_frame(tmp_path / "junk.fits")
    with pytest.raises(FrameError, match="DATE-OBS"):
        read_frame(write(tmp_path / "nodate.fits", BASE))
    with pytest.raises(FrameError, match="exposure time"):
        read_frame(write(tmp_path / "noexp.fits", {"DATE-OBS": "2024-01-01T00:00:00"}))
    with pytest.raises(FrameError, match="image type"):
        read_frame(write(tmp_path / "odd.fits", {**BASE, "IMAGETYP": "Pizza"}))
    # calibration frames do not need a date
    bias = read_frame(write(tmp_path / "b.fits", {"IMAGETYP": "Bias Frame"}))
    assert bias.image_type == "bias" and bias.start_utc is None
    assert math.isfinite(bias.exptime_s)
