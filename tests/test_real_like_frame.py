"""A frame with the header traits of a real survey cutout (issue 10).

The real frame: a 512 x 512 R-band cutout, 3.04"/px, from a 0.5 m survey telescope at
Sutherland, with one near-GEO streak. Its header carries a valid TAN WCS of the cutout
(``CRPIX`` far from the cutout's centre, ``LTV1``/``LTV2`` giving its place on the
detector), the old ``DATE-OBS = '26/07/102'`` (year - 1900), ``TIME-OBS`` stamping the
end of the exposure, sexagesimal site keys and ``ELEVATIO = ' 48:45:41'`` (the
telescope's elevation, an angle). No focal length or pixel size: the scale comes from
the WCS.

The field is near M25 (RA 278, Dec -19, overhead at Sutherland in July), where the
packaged catalogues (to G ~ 10) hold about 20 stars in the cutout; a field as sparse as
the real one needs the deeper catalogue of issue 10, which is not built yet.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.wcs import WCS
from station_synth import make_frame

from aposos.station.config import StationConfig
from aposos.station.reduce import reduce_frames

one_arcsec = 1 / 3600
SCALE = 3.04  # arcsec per pixel
ORIGIN = (700, 900)  # cutout's pixel (0, 0) on the 2048 x 2048 detector


def _cutout_wcs(ra0, dec0):
    """The detector's TAN WCS, seen from the cutout (CRPIX shifted by LTV)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [1024.5 - ORIGIN[0], 1024.5 - ORIGIN[1]]
    s, rot = SCALE / 3600.0, math.radians(0.7)
    w.wcs.cd = [[-s * math.cos(rot), s * math.sin(rot)], [s * math.sin(rot), s * math.cos(rot)]]
    w.wcs.set()
    return w


def _station():
    base = StationConfig.load("stations/iran.toml")
    site = {**base.site_info.__dict__}
    site.update(code="SUTH", name="Sutherland-like", latitude_deg=-32.3797,
                longitude_deg=20.8108, altitude_m=1798.0)  # fmt: skip
    px_um = 13.5
    focal = px_um * 1e-3 / math.tan(math.radians(SCALE / 3600.0))
    camera = {**base.camera.__dict__}
    camera.update(width_px=2048, height_px=2048, pixel_size_um=px_um, time_stamp="end",
                  shutter_latency_s=0.0)  # fmt: skip
    return StationConfig.from_dict(
        {
            "site": site,
            "telescope": {"aperture_mm": 500.0, "focal_length_mm": focal},
            "camera": camera,
            "center": {"url": "https://example.org", "token_file": "t"},
        }
    )


def test_sutherland_like_frame(tmp_path):
    w = _cutout_wcs(278.1, -19.2)
    centre = w.all_pix2world([[255.5, 255.5]], 0)[0]
    # a near-GEO streak: 15"/s against the stars for 10 s -> 49 px
    x0, y0, x1, y1 = 180.0, 300.0, 229.0, 297.0  # drawn as a segment: no direction
    header = {
        "DATE-OBS": "26/07/102",
        "TIME-OBS": "21:13:45",  # the end of the 10 s exposure
        "EXPTIME": 10.0,
        "FILTER": "R",
        "LTV1": -float(ORIGIN[0]),
        "LTV2": -float(ORIGIN[1]),
        "ELEVATIO": " 48:45:41",
        "LATITUDE": "-32:22:47",
        "LONGITUD": "20:48:39",
        "SITELAT": None,
        "SITELONG": None,
        "SITEELEV": None,
        "RA": None,
        "DEC": None,
        "FOCALLEN": None,
        "XPIXSZ": None,
        "YPIXSZ": None,
        "TRACKMOD": None,
        **{k: v for k, v in w.to_header().items() if k not in ("DATE-OBS", "MJD-OBS")},
    }
    (tmp_path / "frames").mkdir()
    truth = make_frame(
        tmp_path / "frames" / "sutherland.fits",
        ra=float(centre[0]), dec=float(centre[1]), shape=(512, 512), scale_arcsec=SCALE,
        wcs=w, epoch_jyear=2002.57, exptime=10.0, zero_point=21.0, sky_adu=300.0,
        streaks=[(x0, y0, x1, y1, 60000.0)], faint_stars=140, hot_pixels=4, cosmic_rays=3,
        extra_header=header,
    )  # fmt: skip
    result = reduce_frames(tmp_path / "frames", _station())
    doc = result.to_json()
    frame = doc["frames"][0]
    assert frame["solved"], frame.get("reason")
    assert frame["solve"] == "header WCS"
    assert frame["utc_open"] == "2002-07-26T21:13:35.000000Z"  # end stamp - EXPTIME
    assert any("ELEVATIO" in n and "angle" in n for n in frame["notes"])
    assert abs(frame["pixel_scale_arcsec"] - SCALE) < 0.01
    # the streak: one tracklet, ends at the shutter times and points along it; the GEO
    # moves east against the stars (-x here), which one frame alone cannot show: the
    # direction comes from the eastward-motion prior
    assert len(result.tracklets) == 1
    t = result.tracklets[0]
    assert len(t) == 5 and doc["tracklets"][0]["false_alarm_probability"] < 1e-6
    t_open = np.datetime64("2002-07-26T21:13:35", "us")
    ra, dec = truth.wcs.all_pix2world([x1, x0], [y1, y0], 0)  # east end first: the start
    for u, r, d in zip(t.utc, t.ra_deg, t.dec_deg, strict=True):
        f = (u - t_open) / np.timedelta64(10, "s")
        assert 0.0 <= f <= 1.0
        er, ed = ra[0] + f * (ra[1] - ra[0]), dec[0] + f * (dec[1] - dec[0])
        err = math.hypot((r - er) * math.cos(math.radians(d)), d - ed)
        assert err < 0.5 * SCALE * one_arcsec
