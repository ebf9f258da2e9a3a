"""FITS side of the sky simulator: headers as a camera writes them, calibration frames.

The header keys are the simulator's FITS contract, listed in :mod:`aposos.station.simulator.night`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from aposos.station.config import StationConfig

__all__ = ["calibration_frames", "light_header", "sexagesimal", "write_fits"]

FLAT_LEVEL_OF_FULL_WELL = 0.4
FLAT_EXPOSURE_S = 1.0


def sexagesimal(value_deg: float, *, hours: bool) -> str:
    """``'HH MM SS.ss'`` for RA (``hours=True``) or ``'+DD MM SS.s'`` for Dec."""
    if hours:
        total = round((value_deg % 360.0) / 15.0 * 3600.0 * 100)  # centiseconds of time
        total %= 24 * 3600 * 100
        hh, rest = divmod(total, 3600 * 100)
        mm, cs = divmod(rest, 60 * 100)
        return f"{hh:02d} {mm:02d} {cs // 100:02d}.{cs % 100:02d}"
    sign = "-" if value_deg < 0 else "+"
    total = round(abs(value_deg) * 3600.0 * 10)  # tenths of arcsec
    dd, rest = divmod(total, 3600 * 10)
    mm, ds = divmod(rest, 60 * 10)
    return f"{sign}{dd:02d} {mm:02d} {ds // 10:02d}.{ds % 10:d}"


def _iso(t) -> str:
    return np.datetime_as_string(np.datetime64(t, "us"), unit="us")


def base_header(config: StationConfig, imagetyp: str, date_obs, exposure_s: float) -> fits.Header:
    """Keys every frame carries: type, time, site, optics and camera."""
    cam, tel, site = config.camera, config.telescope, config.site_info
    h = fits.Header()
    h["IMAGETYP"] = (imagetyp, "frame type")
    h["DATE-OBS"] = (_iso(date_obs), f"[UTC] exposure {cam.time_stamp}, camera clock")
    h["EXPTIME"] = (float(exposure_s), "[s] exposure time")
    h["EXPOSURE"] = (float(exposure_s), "[s] exposure time")
    h["STATION"] = (site.code, "APOSOS station code")
    h["SITELAT"] = (site.latitude_deg, "[deg] geodetic latitude, north positive")
    h["SITELONG"] = (site.longitude_deg, "[deg] longitude, east positive")
    h["SITEELEV"] = (site.altitude_m, "[m] height above the WGS84 ellipsoid")
    h["TELESCOP"] = ((tel.name or f"{tel.aperture_mm:g} mm telescope")[:68], "telescope")
    h["INSTRUME"] = ((cam.name or "camera")[:68], "camera")
    h["FILTER"] = (cam.filter, "filter")
    h["FOCALLEN"] = (tel.focal_length_mm, "[mm] focal length")
    h["APTDIA"] = (tel.aperture_mm, "[mm] aperture diameter")
    h["XPIXSZ"] = (cam.pixel_size_um, "[um] pixel width")
    h["YPIXSZ"] = (cam.pixel_size_um, "[um] pixel height")
    h["XBINNING"] = (1, "binning along x")
    h["YBINNING"] = (1, "binning along y")
    h["GAIN"] = (cam.gain_e_per_adu, "[e-/ADU] camera gain")
    h["RDNOISE"] = (cam.read_noise_e, "[e-] read noise")
    h["SWCREATE"] = ("aposos station simulate", "software that wrote the frame")
    return h


def light_header(config: StationConfig, spec, date_obs, airmass: float) -> fits.Header:
    """Header of a light frame: the common keys plus pointing and tracking."""
    h = base_header(config, "LIGHT", date_obs, spec.exposure_s)
    h["TRACKMOD"] = (spec.mode, "mount tracking: sidereal, rate or stare")
    h["OBJECT"] = (str(spec.object)[:68], "field or tracked object")
    h["RA"] = (round(spec.commanded_ra_deg, 7), "[deg] commanded pointing at shutter open")
    h["DEC"] = (round(spec.commanded_dec_deg, 7), "[deg] commanded pointing at shutter open")
    h["OBJCTRA"] = (sexagesimal(spec.commanded_ra_deg, hours=True), "commanded RA (h m s)")
    h["OBJCTDEC"] = (sexagesimal(spec.commanded_dec_deg, hours=False), "commanded Dec (d m s)")
    h["AIRMASS"] = (round(airmass, 4), "air mass at mid-exposure")
    return h


def write_fits(path: Path, data: np.ndarray, header: fits.Header) -> None:
    """Write a uint16 frame (stored as int16 with BZERO = 32768, as cameras do)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(data=data, header=header)
    hdu.writeto(path, overwrite=True, output_verify="exception")


def calibration_frames(sim, out: Path, specs, n: int) -> list[dict]:
    """Write bias, dark (one set per light exposure time) and flat frames under ``calib/``.

    Flats are taken 40 minutes before the first light; biases and darks after the last.
    """
    if n <= 0:
        return []
    config = sim.config
    cam = config.camera
    latency = np.timedelta64(int(round(cam.shutter_latency_s * 1e6)), "us")
    first = min(s.t_open for s in specs)
    last = max(s.t_open + np.timedelta64(int(round(s.exposure_s * 1e6)), "us") for s in specs)
    plan = [("FLAT", FLAT_EXPOSURE_S, first - np.timedelta64(40, "m"))]
    plan.append(("BIAS", 0.0, last + np.timedelta64(5, "m")))
    for k, t in enumerate(sorted({round(s.exposure_s, 6) for s in specs})):
        plan.append(("DARK", t, last + np.timedelta64(10 + 5 * k, "m")))
    records = []
    serial = 0
    for kind, exposure_s, t0 in plan:
        for i in range(n):
            rng = np.random.default_rng([sim.seed, 2_000_000 + serial])
            serial += 1
            t_open = t0 + np.timedelta64(int(round((exposure_s + 3.0) * i * 1e6)), "us")
            if kind == "FLAT":
                level = FLAT_LEVEL_OF_FULL_WELL * cam.full_well / float(np.mean(sim.camera.flat))
                photo = np.full(sim.camera.shape, level, dtype=np.float32)
                exposure = sim.camera.expose(photo, exposure_s, rng)
            else:
                exposure = sim.camera.expose(None, exposure_s, rng)
            event = {"start": 0.0, "mid": exposure_s / 2, "end": exposure_s}[cam.time_stamp]
            date_obs = t_open + np.timedelta64(int(round(event * 1e6)), "us") - latency
            header = base_header(config, kind, date_obs, exposure_s)
            name = f"calib/{config.code}_{kind.lower()}_{_tag(exposure_s)}_{i:03d}.fits"
            write_fits(out / name, exposure.data, header)
            records.append({"file": name, "imagetyp": kind, "exposure_s": exposure_s,
                            "date_obs": _iso(date_obs), "utc_start": _iso(t_open)})  # fmt: skip
    return records


def _tag(exposure_s: float) -> str:
    ms = int(round(exposure_s * 1000))
    return f"{ms // 1000}s{ms % 1000:03d}" if not math.isnan(exposure_s) else "na"
