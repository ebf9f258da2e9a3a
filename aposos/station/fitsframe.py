"""Reading telescope FITS frames, with the header conventions found in the wild.

A :class:`Frame` is the pixels (``float32``, BZERO/BSCALE applied) plus what the
reduction needs from the header: image type, exposure start in UTC, exposure time,
commanded pointing, site, optics, the cutout offset in the full detector and any
celestial WCS the writer put in.

Conventions handled (and what is refused rather than guessed):

- ``DATE-OBS`` as ISO ``YYYY-MM-DDThh:mm:ss[.s]`` (``T`` or a space), as a date alone
  with the time in ``TIME-OBS``/``UT``/``UTSTART``/``UT-START``, and the pre-2000
  ``dd/mm/yy`` form, where the year is 1900 + ``yy`` (``yy`` may have three digits,
  the "year-1900" writers of 2000 and later: ``01/01/100`` is 2000-01-01). A
  two-digit year before 57 would mean a date before Sputnik: refused.
- ``DATE-BEG``, ``MJD-OBS``, ``MJD-BEG``, ``JD`` and ``JD-OBS``; ``DATE-AVG``/``MJD-AVG``
  (middle) and ``DATE-END``/``MJD-END`` (end) when nothing else is there.
- Which moment ``DATE-OBS``/``MJD-OBS``/``JD`` stamp (shutter open, middle or end) is
  a station setting (``time_stamp``); ``TIMESYS`` of TT/TAI/GPS is converted to UTC.
- Site keys ``SITELAT``/``SITELONG``/``SITEELEV``, ``LATITUDE``/``LONGITUD``,
  ``LAT-OBS``/``LONG-OBS``/``ALT-OBS``, ``OBSGEO-B``/``-L``/``-H`` and
  ``OBSGEO-X``/``-Y``/``-Z`` (numbers or sexagesimal strings). Longitude signs differ
  between writers, so the reduction compares the header site with the station's.
- Pointing from ``RA``/``DEC`` (degrees, or sexagesimal strings), ``OBJCTRA``/``OBJCTDEC``
  or ``TELRA``/``TELDEC`` (hours / degrees), else the WCS reference point.
- Sub-frame cutouts (``LTV1``/``LTV2``), binning (``XBINNING``/``YBINNING``), integer
  and float data, ``BLANK`` values, data in the primary HDU or the first image
  extension (``.fz`` tile compression).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aposos.model import Site

__all__ = [
    "Frame",
    "FrameError",
    "parse_sexagesimal",
    "read_frame",
    "read_header_time",
    "read_image_type",
]

IMAGE_TYPES = ("light", "bias", "dark", "flat")
TIME_STAMPS = ("start", "mid", "end")
_MJD_UNIX = 40587.0  # MJD of 1970-01-01
_US_PER_DAY = 86_400_000_000


class FrameError(ValueError):
    """A frame that cannot be used, with the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class Frame:
    """One frame read from FITS.

    Attributes
    ----------
    data : float32 pixels (row = y, column = x), scaled; NaN where ``BLANK``.
    start_utc : shutter-open time as stamped (before any shutter latency), or ``None``
        for calibration frames without a usable date.
    origin_xy : offset of pixel (0, 0) of this cutout in the full detector
        (``-LTV1``, ``-LTV2``), in binned pixels.
    """

    path: str
    data: np.ndarray
    header: object
    image_type: str
    start_utc: np.datetime64 | None
    exptime_s: float
    pointing_deg: tuple[float, float] | None = None
    site: Site | None = None
    track_mode: str | None = None
    station: str | None = None
    focal_length_mm: float | None = None
    pixel_size_um: tuple[float, float] | None = None
    binning: tuple[int, int] = (1, 1)
    origin_xy: tuple[float, float] = (0.0, 0.0)
    gain_e_per_adu: float | None = None
    read_noise_e: float | None = None
    saturation_adu: float | None = None
    wcs: object | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    @property
    def name(self) -> str:
        return Path(self.path).name

    def pixel_scale_arcsec(self) -> float | None:
        """Nominal pixel scale from the focal length and the (binned) pixel size."""
        if not self.focal_length_mm or not self.pixel_size_um:
            return None
        px_mm = 0.5 * (self.pixel_size_um[0] + self.pixel_size_um[1]) * 1e-3
        return math.degrees(math.atan(px_mm / self.focal_length_mm)) * 3600.0


# ---------------------------------------------------------------- small parsers


def parse_sexagesimal(value, *, hours: bool = False) -> float:
    """A number or a ``'dd mm ss.s'`` / ``'dd:mm:ss'`` string as a float.

    The sign is read from the text, so ``'-00 30 00'`` is -0.5. With ``hours`` the
    result is multiplied by 15 (hours to degrees).

    >>> parse_sexagesimal("-00 30 00")
    -0.5
    >>> parse_sexagesimal("12:30:00", hours=True)
    187.5
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an angle")
    if isinstance(value, (int, float, np.floating, np.integer)):
        out = float(value)
    else:
        text = str(value).strip()
        parts = re.split(r"[:\s dhmsDHM'\"°]+", text.strip())
        parts = [p for p in parts if p]
        if not parts or len(parts) > 3:
            raise ValueError(f"{value!r} is not an angle")
        negative = parts[0].startswith("-")
        try:
            nums = [abs(float(parts[0]))] + [float(p) for p in parts[1:]]
        except ValueError:
            raise ValueError(f"{value!r} is not an angle") from None
        if len(nums) > 1 and any(not 0 <= n < 60 for n in nums[1:]):
            raise ValueError(f"{value!r}: minutes/seconds outside [0, 60)")
        out = nums[0] + sum(n / 60.0**i for i, n in enumerate(nums[1:], start=1))
        out = -out if negative else out
    if not math.isfinite(out):
        raise ValueError(f"{value!r} is not a finite angle")
    return out * 15.0 if hours else out


_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?)?Z?$")
_OLD = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2,3})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2}(?:\.\d*)?)$")


def _datetime64(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0.0):
    if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 61):
        raise ValueError("date or time field out of range")
    try:
        day = np.datetime64(f"{y:04d}-{mo:02d}-{d:02d}", "D")
    except ValueError:
        raise ValueError(f"no such day: {y:04d}-{mo:02d}-{d:02d}") from None
    us = round(((h * 60 + mi) * 60 + s) * 1e6)
    return day.astype("datetime64[us]") + np.timedelta64(us, "us")


def _parse_time_of_day(text: str) -> float:
    m = _TIME.match(text.strip())
    if not m:
        raise ValueError(f"time {text!r} is not hh:mm:ss")
    h, mi, s = int(m[1]), int(m[2]), float(m[3])
    if not (0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 61):
        raise ValueError(f"time {text!r} out of range")
    return (h * 60 + mi) * 60 + s


def _parse_date(text: str) -> tuple[np.datetime64, bool]:
    """A DATE-OBS value -> (datetime64[us], whether it carried a time of day)."""
    text = text.strip()
    m = _ISO.match(text)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        if m[4] is None:
            return _datetime64(y, mo, d), False
        return _datetime64(y, mo, d, int(m[4]), int(m[5]), float(m[6] or 0.0)), True
    m = _OLD.match(text)
    if m:
        d, mo, yy = int(m[1]), int(m[2]), int(m[3])
        year = 1900 + yy
        if year < 1957:
            raise ValueError(
                f"'dd/mm/yy' date {text!r} means {year} by the FITS standard, before any "
                "artificial satellite; not guessing what the writer meant"
            )
        return _datetime64(year, mo, d), False
    raise ValueError(f"date {text!r} is in no known form (ISO 8601 or dd/mm/yy)")


def _from_mjd(mjd: float) -> np.datetime64:
    us = round((mjd - _MJD_UNIX) * _US_PER_DAY)
    return np.datetime64(us, "us")


def _to_utc(t: np.datetime64, timesys: str) -> np.datetime64:
    if timesys in ("UTC", "UT", ""):
        return t
    if timesys in ("TT", "TAI", "GPS", "TDT", "ET"):
        from astropy.time import Time

        scale = {"TDT": "tt", "ET": "tt", "GPS": "tai"}.get(timesys, timesys.lower())
        tt = Time(np.datetime_as_string(t, unit="us"), format="isot", scale=scale)
        if timesys == "GPS":  # GPS = TAI - 19 s
            tt = tt + (19.0 / 86400.0)
        return np.datetime64(tt.utc.isot, "us")
    raise ValueError(f"TIMESYS {timesys!r} is not a time scale this reader knows")


def read_header_time(header, *, time_stamp: str = "start", exptime_s: float | None = None):
    """Shutter-open UTC from a header, or raise ``ValueError`` saying why not.

    Parameters
    ----------
    header : mapping of FITS keywords.
    time_stamp : which moment ``DATE-OBS``, ``MJD-OBS`` and ``JD`` mark: ``"start"``,
        ``"mid"`` or ``"end"`` of the exposure (a station setting).
    exptime_s : exposure time, needed unless ``time_stamp`` is ``"start"``.

    Returns
    -------
    (start_utc, source, notes) : ``datetime64[us]``, the keyword used, and remarks.
    """
    if time_stamp not in TIME_STAMPS:
        raise ValueError(f"time_stamp must be one of {TIME_STAMPS}, not {time_stamp!r}")
    notes: list[str] = []
    timesys = str(header.get("TIMESYS", "UTC")).strip().upper()
    stamp, source, kind = None, None, time_stamp
    date_text = header.get("DATE-OBS")
    if date_text is not None and str(date_text).strip():
        t, has_time = _parse_date(str(date_text))
        source = "DATE-OBS"
        if not has_time:
            for key in ("TIME-OBS", "UT", "UTSTART", "UT-START", "TIME-BEG"):
                value = header.get(key)
                if value is not None and str(value).strip():
                    if not isinstance(value, str):
                        raise ValueError(
                            f"{key} = {value!r} is a number; only hh:mm:ss text is understood"
                        )
                    t = t + np.timedelta64(round(_parse_time_of_day(value) * 1e6), "us")
                    source = f"DATE-OBS+{key}"
                    break
            else:
                raise ValueError(f"DATE-OBS {date_text!r} has no time of day and no TIME-OBS")
        stamp = t
    else:
        for key, k in (
            ("DATE-BEG", "start"),
            ("MJD-OBS", time_stamp),
            ("MJD-BEG", "start"),
            ("JD", time_stamp),
            ("JD-OBS", time_stamp),
            ("DATE-AVG", "mid"),
            ("MJD-AVG", "mid"),
            ("DATE-END", "end"),
            ("MJD-END", "end"),
        ):
            value = header.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if key.startswith("DATE"):
                t, has_time = _parse_date(str(value))
                if not has_time:
                    raise ValueError(f"{key} {value!r} has no time of day")
                stamp = t
            else:
                v = float(value)
                stamp = _from_mjd(v - 2400000.5 if key.startswith("JD") else v)
            source, kind = key, k
            break
    if stamp is None:
        raise ValueError("no DATE-OBS (nor DATE-BEG, MJD-OBS, JD) in the header")
    stamp = _to_utc(stamp, timesys)
    if timesys not in ("UTC", "UT", ""):
        notes.append(f"times converted from TIMESYS {timesys} to UTC")
    if kind != "start":
        if exptime_s is None:
            raise ValueError(f"{source} marks the exposure {kind} but there is no exposure time")
        shift = exptime_s * (0.5 if kind == "mid" else 1.0)
        stamp = stamp - np.timedelta64(round(shift * 1e6), "us")
    # Cross-check against MJD-OBS when both are present.
    if source.startswith("DATE-OBS") and header.get("MJD-OBS") not in (None, ""):
        try:
            other = _to_utc(_from_mjd(float(header["MJD-OBS"])), timesys)
            if kind != "start" and exptime_s is not None:
                other = other - np.timedelta64(
                    round(exptime_s * (0.5 if kind == "mid" else 1.0) * 1e6), "us"
                )
            diff = abs((other - stamp) / np.timedelta64(1, "s"))
            if diff > 1.0:
                notes.append(f"MJD-OBS disagrees with DATE-OBS by {diff:.1f} s; DATE-OBS used")
        except (TypeError, ValueError):
            notes.append("MJD-OBS is not a number; ignored")
    return stamp, source, notes


def _image_type(header) -> str:
    for key in ("IMAGETYP", "IMAGETYPE", "OBSTYPE", "FRAME", "FRAMETYP"):
        value = header.get(key)
        if value is None:
            continue
        text = str(value).strip().lower()
        if "bias" in text or text == "zero":
            return "bias"
        if "dark" in text:
            return "dark"
        if "flat" in text:
            return "flat"
        if any(w in text for w in ("light", "object", "science", "target")):
            return "light"
        raise ValueError(f"{key} = {value!r} is not a known image type")
    return "light"


def _first_float(header, keys):
    for key in keys:
        value = header.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            return float(value), key
        except (TypeError, ValueError):
            raise ValueError(f"{key} = {value!r} is not a number") from None
    return None, None


def _read_site(header, notes: list[str]) -> Site | None:
    try:
        if "OBSGEO-X" in header and "OBSGEO-Y" in header and "OBSGEO-Z" in header:
            from astropy import units as u
            from astropy.coordinates import EarthLocation

            loc = EarthLocation.from_geocentric(
                float(header["OBSGEO-X"]),
                float(header["OBSGEO-Y"]),
                float(header["OBSGEO-Z"]),
                unit=u.m,
            )
            lon, lat, h = loc.to_geodetic("WGS84")
            return Site(float(lat.deg), float(lon.deg), float(h.to_value(u.m)))
        for lat_key, lon_key, alt_keys in (
            ("OBSGEO-B", "OBSGEO-L", ("OBSGEO-H",)),
            ("SITELAT", "SITELONG", ("SITEELEV", "SITEALT", "ALTITUDE")),
            ("LAT-OBS", "LONG-OBS", ("ALT-OBS",)),
            ("LATITUDE", "LONGITUD", ("ALTITUDE", "ELEVATIO", "SITEELEV")),
            ("LATITUDE", "LONGITUDE", ("ALTITUDE", "ELEVATIO", "SITEELEV")),
        ):
            if lat_key in header and lon_key in header:
                lat = parse_sexagesimal(header[lat_key])
                lon = parse_sexagesimal(header[lon_key])
                alt = _site_height(header, alt_keys, notes)
                if lon > 180.0:
                    lon -= 360.0
                return Site(lat, lon, 0.0 if alt is None else alt)
    except (ValueError, TypeError) as exc:
        notes.append(f"site keys not understood: {exc}")
    return None


def _site_height(header, keys, notes: list[str]) -> float | None:
    """The site height in metres from the first of ``keys`` that holds a number.

    A sexagesimal string (``ELEVATIO = ' 48:45:41'``) is the telescope's elevation
    angle, which some writers put under a key other writers use for the site height:
    it is read as an angle, noted, and not taken for a height.
    """
    for key in keys:
        value = header.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, str) and re.search(r"\d[:\s]+\d", value.strip()):
            angle = parse_sexagesimal(value)
            notes.append(f"{key} = {value!r} is an angle ({angle:.4f} deg), not the site height")
            continue
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} = {value!r} is not a number") from None
    return None


def _read_pointing(header, wcs, notes: list[str]):
    ra_s, dec_s = header.get("OBJCTRA"), header.get("OBJCTDEC")
    from_strings = None
    if isinstance(ra_s, str) and isinstance(dec_s, str):
        try:
            from_strings = (parse_sexagesimal(ra_s, hours=True), parse_sexagesimal(dec_s))
        except ValueError as exc:
            notes.append(f"OBJCTRA/OBJCTDEC not understood: {exc}")
    for ra_key, dec_key in (("RA", "DEC"), ("TELRA", "TELDEC"), ("RA_OBJ", "DEC_OBJ")):
        if ra_key not in header or dec_key not in header:
            continue
        ra_v, dec_v = header[ra_key], header[dec_key]
        try:
            dec = parse_sexagesimal(dec_v)
            if isinstance(ra_v, str) and not re.fullmatch(r"\s*[-+]?[\d.]+\s*", ra_v):
                ra = parse_sexagesimal(ra_v, hours=True)  # 'hh mm ss' text: hours
            else:
                ra = parse_sexagesimal(ra_v)
                if from_strings is not None and abs(ra * 15.0 - from_strings[0]) < 0.1:
                    ra *= 15.0
                    notes.append(f"{ra_key} is in hours (agrees with OBJCTRA)")
        except ValueError as exc:
            notes.append(f"{ra_key}/{dec_key} not understood: {exc}")
            continue
        if abs(dec) <= 90.0:
            return (ra % 360.0, dec)
        notes.append(f"{dec_key} = {dec_v!r} is outside [-90, 90]")
    if from_strings is not None and abs(from_strings[1]) <= 90.0:
        return (from_strings[0] % 360.0, from_strings[1])
    if wcs is not None:
        ra, dec = wcs.wcs.crval
        return (float(ra) % 360.0, float(dec))
    return None


def _read_wcs(header, notes: list[str]):
    ctype1 = str(header.get("CTYPE1", ""))
    if not (ctype1.startswith("RA") or ctype1.startswith("GLON")):
        return None
    from astropy.wcs import WCS, FITSFixedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
        if not wcs.has_celestial or not ctype1.startswith("RA"):
            notes.append(f"header WCS ({ctype1}) is not equatorial; ignored")
            return None
        return wcs
    except Exception as exc:  # astropy raises many kinds here
        notes.append(f"header WCS unreadable ({type(exc).__name__}: {exc}); ignored")
        return None


def _image_hdu(hdul, path):
    for hdu in hdul:
        if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2:
            return hdu
    raise FrameError(path, "no 2-D image in any HDU")


def read_image_type(path) -> str | None:
    """The image type from the header alone; None when the file is unreadable."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                return _image_type(_image_hdu(hdul, path).header)
    except Exception:  # any failure here is reported when the frame is read in full
        return None


def read_frame(
    path,
    *,
    time_stamp: str = "start",
    require_time: bool | None = None,
) -> Frame:
    """Read one FITS frame.

    Parameters
    ----------
    path : FITS file.
    time_stamp : which moment ``DATE-OBS`` (and ``MJD-OBS``, ``JD``) stamp.
    require_time : raise when the start time cannot be read (default: for light frames).

    Raises
    ------
    FrameError
        The file is not readable FITS, is truncated, has no 2-D image, or (for light
        frames) has no exposure time or no usable date.
    """
    from astropy.io import fits

    path = Path(path)
    notes: list[str] = []
    failure = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                hdu = _image_hdu(hdul, path)
                header = hdu.header.copy()
                data = hdu.data
                if data is not None:
                    data = np.array(data)
        except FrameError:
            raise
        except (OSError, ValueError, TypeError, IndexError) as exc:
            failure = exc
    for w in caught:
        text = str(w.message)
        if "truncated" in text:
            raise FrameError(path, f"truncated FITS file ({text})")
        if "Header missing END card" in text or "Unexpected bytes" in text:
            raise FrameError(path, f"corrupt FITS header ({text})")
    if failure is not None:
        raise FrameError(path, f"not a readable FITS file ({failure})")
    if data is None:
        raise FrameError(path, "the image HDU holds no data")
    data = np.squeeze(data)
    if data.ndim != 2:
        raise FrameError(path, f"image has {data.ndim} dimensions, expected 2")
    if data.dtype.kind in "iu":
        blank = header.get("BLANK")
        out = data.astype(np.float32)
        if blank is not None and not (header.get("BZERO") or header.get("BSCALE")):
            out[data == blank] = np.nan
        data = out
    else:
        data = data.astype(np.float32, copy=False)
    try:
        image_type = _image_type(header)
    except ValueError as exc:
        raise FrameError(path, str(exc)) from None
    if require_time is None:
        require_time = image_type == "light"
    try:
        exptime, _ = _first_float(header, ("EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME"))
    except ValueError as exc:
        raise FrameError(path, str(exc)) from None
    if exptime is None or not math.isfinite(exptime) or exptime < 0:
        if require_time or image_type == "dark":
            raise FrameError(path, "no exposure time (EXPTIME/EXPOSURE)")
        exptime = 0.0
    try:
        start, source, tnotes = read_header_time(header, time_stamp=time_stamp, exptime_s=exptime)
        notes += tnotes
    except ValueError as exc:
        if require_time:
            raise FrameError(path, str(exc)) from None
        start = None
    wcs = _read_wcs(header, notes)
    pointing = _read_pointing(header, wcs, notes)
    site = _read_site(header, notes)
    try:
        focal, _ = _first_float(header, ("FOCALLEN", "FOCAL", "FOCLEN"))
        px, _ = _first_float(header, ("XPIXSZ", "PIXSIZE1", "PIXSIZE", "XPIXELSZ"))
        py, _ = _first_float(header, ("YPIXSZ", "PIXSIZE2", "PIXSIZE", "YPIXELSZ"))
        bx, _ = _first_float(header, ("XBINNING", "BINX", "CCDXBIN"))
        by, _ = _first_float(header, ("YBINNING", "BINY", "CCDYBIN"))
        ltv1, _ = _first_float(header, ("LTV1",))
        ltv2, _ = _first_float(header, ("LTV2",))
        gain, _ = _first_float(header, ("GAIN", "EGAIN", "CCDGAIN"))
        rdnoise, _ = _first_float(header, ("RDNOISE", "READNOIS", "RON"))
        sat, _ = _first_float(header, ("SATURATE", "DATAMAX", "SATLEVEL"))
    except ValueError as exc:
        raise FrameError(path, str(exc)) from None
    bx, by = int(bx or 1), int(by or 1)
    if px is not None and py is None:
        py = px
    # Convention (MaxIm DL, ASCOM): XPIXSZ already includes binning. PIXSIZE1 does not.
    if px is not None and "XPIXSZ" not in header:
        px, py = px * bx, py * by
    track = header.get("TRACKMOD")
    station = header.get("STATION") or header.get("OBSERVAT")
    return Frame(
        path=str(path),
        data=data,
        header=header,
        image_type=image_type,
        start_utc=start,
        exptime_s=float(exptime),
        pointing_deg=pointing,
        site=site,
        track_mode=str(track).strip().lower() if track else None,
        station=str(station).strip() if station else None,
        focal_length_mm=focal,
        pixel_size_um=None if px is None else (px, py),
        binning=(bx, by),
        origin_xy=(-(ltv1 or 0.0), -(ltv2 or 0.0)),
        gain_e_per_adu=gain,
        read_noise_e=rdnoise,
        saturation_adu=sat,
        wcs=wcs,
        notes=notes,
    )
