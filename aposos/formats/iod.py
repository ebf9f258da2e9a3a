"""IOD 80-column optical observation records (G. D. Lewis's *Interactive Orbit
Determination* format, as used by visual and video satellite observers).

Columns (1-based), on an example line::

    23908 96 029C   4171 E 20200316192205771 17 25 1216076+260652 37 S+020 10  12345

    1-5 NORAD number   7-15 designation YY NNNPPP   17-20 station   22 status (sky)
    24-40 UTC YYYYMMDDHHMMSSsss   42-43 time sigma MX   45 angle format   46 epoch
    48-54 angle 1   55 sign   56-61 angle 2   63-64 position sigma MX
    66 optical behaviour   67-70 magnitude +MMm   72-73 its sigma Mm   75-80 flash period

- Object: columns 1-5 are the NORAD number (kept as ``ParsedTracklet.norad_id``;
  ``99999`` means unknown), columns 7-15 the international designator ``YY NNNPPP``,
  normalised to ``YYYY-NNNPPP`` (``1996-029C``; years 57-99 are 19xx) and kept as
  ``Tracklet.object``. Launch number ``000`` means unknown (object None); its piece
  letters then only tell unidentified tracklets apart. Lines with the same station and
  columns 1-15 in a row form a tracklet.
- Station: four characters, digits or (TruSat's extension) capitals without I and O.
- Time: digits of ``HHMMSSsss`` may be cut short on the right (the time's precision);
  missing digits are zeros. Columns 42-43 give its uncertainty as ``MX`` = M x 10^(X-8) s.
- Angles: format codes 1-7 (col 45); 1, 2, 3 and 7 are RA/Dec, 4-6 azimuth/elevation,
  which ``read_iod`` rejects (converting needs the site and refraction model). Digits
  may be cut short on the right. Epoch code (col 46): 0 mean equator and equinox of
  date, 1-3 B1855/B1875/B1900 (precessed with IAU 2006; FK4 E-terms and equinox
  correction, < 1", ignored),
  4 B1950 FK4 (to FK5 J2000 with ERFA fk45z), 5 J2000, 6 J2050. J2000 is taken as the
  ICRS axes (modern reductions use ICRS catalogues; the FK5 bias is 0.02").
- Position uncertainty ``MX`` (cols 63-64) is in the unit of the angle format:
  arcsec (1, 4), arcmin (2, 5), degrees (3, 6, 7); it becomes ``sigma_arcsec``.
- Magnitude ``+MMm`` (cols 67-70), its uncertainty ``Mm`` (72-73), flash period
  ``SSSsss`` (75-80, right-justified, only with a flashing/varying behaviour code).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aposos.formats.common import ParsedTracklet, read_source, stable_uuid
from aposos.model import Tracklet, datetime64_to_jd_fr

__all__ = [
    "IODRecord",
    "normalize_designation",
    "parse_iod_line",
    "read_iod",
    "to_icrs",
    "write_iod",
]

STATUS_CODES = "EGFPBTCO "
BEHAVIOUR_CODES = "EFIRSXBHPADMNV"
FLASH_CODES = "FRXBHP"  # behaviour codes that go with a flash period
UNKNOWN_NORAD = 99999
_STATION_RE = re.compile(r"[0-9A-HJ-NP-Z]{4}")
_PIECE_RE = re.compile(r"[A-Z]{1,3} *")
_LEFT_DIGITS_RE = re.compile(r"\d+ *")  # digits cut short on the right, blank-filled
_DESIGNATION_RE = re.compile(r"(\d{2}|\d{4})[- ]?(\d{3})([A-Z]{1,3})")

# Angle layouts: (integer digits, decimal digits) per sexagesimal group.
_HHMMSSs = ((2, 0), (2, 0), (2, 1))
_HHMMmmm = ((2, 0), (2, 3))
_DDMMSS = ((2, 0), (2, 0), (2, 0))
_DDMMmm = ((2, 0), (2, 2))
_DDdddd = ((2, 4),)
_DDDMMSS = ((3, 0), (2, 0), (2, 0))
_DDDMMmm = ((3, 0), (2, 2))
_DDDdddd = ((3, 4),)
# format code -> (is RA/Dec, angle-1 layout, angle-2 layout, arcsec per sigma unit)
ANGLE_FORMATS = {
    1: (True, _HHMMSSs, _DDMMSS, 1.0),
    2: (True, _HHMMmmm, _DDMMmm, 60.0),
    3: (True, _HHMMmmm, _DDdddd, 3600.0),
    4: (False, _DDDMMSS, _DDMMSS, 1.0),
    5: (False, _DDDMMmm, _DDMMmm, 60.0),
    6: (False, _DDDdddd, _DDdddd, 3600.0),
    7: (True, _HHMMSSs, _DDdddd, 3600.0),
}
EPOCH_NAMES = {0: "of date", 1: "B1855", 2: "B1875", 3: "B1900", 4: "B1950", 5: "J2000", 6: "J2050"}


@dataclass(frozen=True)
class IODRecord:
    """One decoded IOD line. Angles are in degrees, in the frame of ``epoch_code``."""

    norad_id: int | None
    designation: str | None
    station: str
    status: str
    utc: np.datetime64
    time_digits: int
    time_sigma_s: float | None = None
    angle_format: int | None = None
    epoch_code: int | None = None
    angle1_deg: float | None = None  # right ascension (or azimuth)
    angle2_deg: float | None = None  # declination (or elevation)
    position_sigma_arcsec: float | None = None
    behaviour: str | None = None
    mag: float | None = None
    mag_sigma: float | None = None
    flash_period_s: float | None = None
    remarks: str | None = None

    @property
    def has_position(self) -> bool:
        return self.angle_format is not None

    @property
    def is_radec(self) -> bool:
        return self.angle_format is not None and ANGLE_FORMATS[self.angle_format][0]


# --------------------------------------------------------------------------- one line


def parse_iod_line(line: str) -> IODRecord:
    """Decode one IOD line; ``ValueError`` names the columns that are wrong.

    Examples
    --------
    >>> r = parse_iod_line("23908 96 029C   4171 E 20200316192205771 17 25 1216076+260652 37 S")
    >>> r.designation, r.norad_id, str(r.utc), round(r.position_sigma_arcsec, 3)
    ('1996-029C', 23908, '2020-03-16T19:22:05.771000', 18.0)
    """
    line = line.rstrip("\r\n").rstrip()
    if "\t" in line:
        raise ValueError("contains a tab; IOD columns must be spaces")
    if not line.isascii() or not line.isprintable():
        raise ValueError("contains characters other than printable ASCII")
    remarks = None
    if len(line) > 80:
        if line[80] != " ":
            raise ValueError("text runs past column 80")
        remarks, line = line[80:].strip(), line[:80]
    c = line.ljust(80)

    def col(a: int, b: int | None = None) -> str:  # 1-based inclusive columns
        return c[a - 1 : b if b is not None else a]

    def blank(*cols: int) -> None:
        for k in cols:
            if col(k) != " ":
                raise ValueError(f"column {k} must be blank, found {col(k)!r}")

    norad_id, designation = _object_columns(col(1, 15), blank)
    blank(16)
    station = col(17, 20)
    if not _STATION_RE.fullmatch(station):
        raise ValueError(f"columns 17-20: station {station!r} is not 4 digits/capitals")
    blank(21)
    status = col(22)
    if status not in STATUS_CODES:
        raise ValueError(f"column 22: station status {status!r} is not one of E G F P B T C O")
    blank(23)
    utc, time_digits = _time_columns(col(24, 31), col(32, 40))
    rest = col(41, 80)
    if not rest.strip():
        return IODRecord(norad_id, designation, station, status, utc, time_digits, remarks=remarks)
    blank(41)
    time_sigma = _mx(col(42, 43), "42-43", "time uncertainty", allow_blank=True)
    blank(44)
    code, epoch = col(45), col(46)
    angle_fmt = epoch_code = a1 = a2 = pos_sigma = None
    if code == " " and epoch == " ":
        if col(47, 64).strip():
            raise ValueError("columns 47-64 hold positions but columns 45-46 give no format/epoch")
    else:
        if code not in "1234567" or code == " ":
            raise ValueError(f"column 45: angle format {code!r} is not 1-7")
        if epoch not in "0123456" or epoch == " ":
            raise ValueError(f"column 46: epoch code {epoch!r} is not 0-6")
        angle_fmt, epoch_code = int(code), int(epoch)
        is_radec, layout1, layout2, sigma_unit = ANGLE_FORMATS[angle_fmt]
        blank(47)
        a1 = _decode_angle(col(48, 54), layout1, "48-54", hours=is_radec)
        sign = col(55)
        if sign not in "+-":
            raise ValueError(f"column 55: sign {sign!r} is not + or -")
        a2 = _decode_angle(col(56, 61), layout2, "56-61", hours=False)
        a2 = -a2 if sign == "-" else a2
        if a1 >= 360.0 or abs(a2) > 90.0:
            names = ("RA", "Dec") if is_radec else ("azimuth", "elevation")
            raise ValueError(
                f"columns 48-61: {names[0]} {a1:.4f} deg or {names[1]} {a2:.4f} deg out of range"
            )
        blank(62)
        pos_sigma = _mx(col(63, 64), "63-64", "position uncertainty") * sigma_unit
    blank(65)
    behaviour = col(66)
    if behaviour != " " and behaviour not in BEHAVIOUR_CODES:
        raise ValueError(f"column 66: optical behaviour {behaviour!r} is not a known code")
    mag = _magnitude(col(67, 70))
    blank(71)
    mag_sigma = None
    if col(72, 73) != "  ":
        if not re.fullmatch(r"\d[\d ]", col(72, 73)):
            raise ValueError(f"columns 72-73: magnitude uncertainty {col(72, 73)!r} is not Mm")
        mag_sigma = int(col(72, 73).replace(" ", "0")) / 10
        if mag is None:
            raise ValueError("columns 72-73: magnitude uncertainty without a magnitude")
    blank(74)
    flash = None
    if col(75, 80).strip():
        if not re.fullmatch(r" *\d+", col(75, 80)):
            raise ValueError(f"columns 75-80: flash period {col(75, 80)!r} is not SSSsss")
        if behaviour not in FLASH_CODES:
            raise ValueError(
                f"columns 75-80: flash period given with behaviour {behaviour!r}, "
                f"which is not a flashing/varying code ({' '.join(FLASH_CODES)})"
            )
        flash = int(col(75, 80)) / 1000
    return IODRecord(
        norad_id,
        designation,
        station,
        status,
        utc,
        time_digits,
        time_sigma_s=time_sigma,
        angle_format=angle_fmt,
        epoch_code=epoch_code,
        angle1_deg=a1,
        angle2_deg=a2,
        position_sigma_arcsec=pos_sigma,
        behaviour=None if behaviour == " " else behaviour,
        mag=mag,
        mag_sigma=mag_sigma,
        flash_period_s=flash,
        remarks=remarks,
    )


def _object_columns(text: str, blank) -> tuple[int | None, str | None]:
    if not text.strip():
        return None, None  # station status line
    if not text[0:5].isdigit():
        raise ValueError(f"columns 1-5: object number {text[0:5]!r} is not 5 digits")
    blank(6)
    if not text[6:8].isdigit():
        raise ValueError(f"columns 7-8: launch year {text[6:8]!r} is not 2 digits")
    blank(9)
    if not text[9:12].isdigit():
        raise ValueError(f"columns 10-12: launch number {text[9:12]!r} is not 3 digits")
    if not _PIECE_RE.fullmatch(text[12:15]):
        raise ValueError(f"columns 13-15: piece {text[12:15]!r} is not 1-3 capital letters")
    norad = int(text[0:5])
    year = int(text[6:8])
    year += 1900 if year >= 57 else 2000
    designation = f"{year}-{text[9:12]}{text[12:15].strip()}" if text[9:12] != "000" else None
    return (None if norad in (0, UNKNOWN_NORAD) else norad), designation


def _time_columns(date: str, time: str) -> tuple[np.datetime64, int]:
    if not date.isdigit():
        raise ValueError(f"columns 24-31: date {date!r} is not YYYYMMDD")
    if not (time.strip() == "" or _LEFT_DIGITS_RE.fullmatch(time)):
        raise ValueError(f"columns 32-40: time {time!r} is not HHMMSSsss (digits, then blanks)")
    digits = time.strip()
    t = digits.ljust(9, "0")
    hh, mm, ss, ms = int(t[0:2]), int(t[2:4]), int(t[4:6]), int(t[6:9])
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueError(f"columns 32-40: time {digits!r} is out of range")
    try:
        day = np.datetime64(f"{date[0:4]}-{date[4:6]}-{date[6:8]}", "D")
    except ValueError:
        raise ValueError(f"columns 24-31: {date!r} is not a calendar date") from None
    us = ((hh * 60 + mm) * 60 + ss) * 1_000_000 + ms * 1000
    return day.astype("datetime64[us]") + np.timedelta64(us, "us"), len(digits)


def _mx(text: str, cols: str, what: str, allow_blank: bool = False) -> float | None:
    """``MX`` = M x 10^(X-8)."""
    if allow_blank and text == "  ":
        return None
    if not text.isdigit():
        raise ValueError(f"columns {cols}: {what} {text!r} is not two digits MX")
    if text[0] == "0":
        raise ValueError(f"columns {cols}: {what} {text!r} has mantissa 0")
    return int(text[0]) * 10.0 ** (int(text[1]) - 8)


def _decode_angle(text: str, layout, cols: str, hours: bool) -> float:
    """Left-justified sexagesimal digits -> degrees (hours x 15 if ``hours``)."""
    if not _LEFT_DIGITS_RE.fullmatch(text):
        raise ValueError(f"columns {cols}: angle {text!r} is not digits (then blanks)")
    digits = text.strip().ljust(sum(a + b for a, b in layout), "0")
    value, pos = 0.0, 0
    for k, (n_int, n_dec) in enumerate(layout):
        group = int(digits[pos : pos + n_int + n_dec]) / 10**n_dec
        pos += n_int + n_dec
        if k > 0 and group >= 60.0:
            raise ValueError(
                f"columns {cols}: angle {text.strip()!r} has {group:g} >= 60 minutes/seconds"
            )
        value += group / 60**k
    return value * 15.0 if hours else value


def _magnitude(text: str) -> float | None:
    if not text.strip():
        return None
    if text[0] not in "+-":
        raise ValueError(f"column 67: magnitude sign {text[0]!r} is not + or -")
    if not _LEFT_DIGITS_RE.fullmatch(text[1:]):
        raise ValueError(f"columns 68-70: magnitude {text[1:]!r} is not MMm digits")
    value = int(text[1:].strip().ljust(3, "0")) / 10
    return -value if text[0] == "-" else value


def normalize_designation(text: str | None) -> str | None:
    """International designator as ``YYYY-NNNPPP`` (``96029C``, ``96 029C``, ``1996-029C``
    -> ``1996-029C``); None if ``text`` is not one."""
    if not text:
        return None
    match = _DESIGNATION_RE.fullmatch(text.strip().upper())
    if match is None:
        return None
    year = int(match.group(1))
    if year < 100:
        year += 1900 if year >= 57 else 2000
    return f"{year}-{match.group(2)}{match.group(3)}"


# --------------------------------------------------------------------------- a file


def read_iod(
    source: str | os.PathLike,
    *,
    station_codes: Mapping[int | str, str] | None = None,
    strict: bool = False,
    max_gap_s: float | None = 1800.0,
    name: str | None = None,
) -> list[ParsedTracklet]:
    """Read IOD observations; consecutive lines of one station and object are a tracklet.

    Parameters
    ----------
    source : path or text.
    station_codes : IOD station number (int, or the 4-character code) -> our station
        code. Stations not in it keep their 4-character IOD code.
    strict : raise ``ValueError`` on the first bad line.
    max_gap_s : start a new tracklet when consecutive observations are further apart
        than this (two passes of one object are two tracklets); None: never split.
    name : label for messages.

    Returns
    -------
    list of ParsedTracklet
        Tracklets and rejected lines in file order. Blank lines and lines starting with
        ``#`` are skipped; valid IOD lines without a position (station status, magnitude
        only) are skipped too. Azimuth/elevation lines are rejected with a reason.

    Raises
    ------
    ValueError
        If no line of the source has the IOD layout.
    """
    text, label = read_source(source)
    label = name or label
    entries: list[tuple[int, object]] = []  # (line, error message or run)
    current: _Run | None = None
    looks_iod = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            rec = parse_iod_line(line)
            if rec.has_position and not rec.is_radec:
                raise ValueError(
                    f"angle format {rec.angle_format} is azimuth/elevation; "
                    "convert to RA/Dec (formats 1, 2, 3, 7) before reading"
                )
        except ValueError as exc:
            message = f"{label}: line {n}: {exc}"
            if strict:
                raise ValueError(message) from None
            entries.append((n, message))
            looks_iod = looks_iod or _looks_like_iod(line)
            continue
        looks_iod = True
        if not rec.has_position:
            continue
        key = (rec.station, line[:15])  # raw columns: unknown objects differ by piece
        if current is None or current.key != key or not current.accepts(rec.utc, max_gap_s):
            current = _Run(key)
            entries.append((n, current))
        current.add(line, rec)
    if not looks_iod:
        raise ValueError(f"{label}: not IOD observations (no line has the 80-column IOD layout)")
    results = []
    for index, (n, item) in enumerate(sorted(entries, key=lambda e: e[0])):
        if isinstance(item, str):
            results.append(ParsedTracklet(index, n, None, item))
        else:
            station = _station_name(item.key[0], station_codes)
            norad = item.records[0].norad_id
            results.append(ParsedTracklet(index, n, item.tracklet(station), None, norad))
    return results


class _Run:
    """Consecutive position records of one station and object."""

    def __init__(self, key):
        self.key = key
        self.lines: list[str] = []
        self.records: list[IODRecord] = []

    def accepts(self, utc: np.datetime64, max_gap_s: float | None) -> bool:
        if max_gap_s is None:
            return True
        gap = abs(utc - self.records[-1].utc) / np.timedelta64(1, "s")
        return gap <= max_gap_s

    def add(self, line: str, rec: IODRecord) -> None:
        self.lines.append(line)
        self.records.append(rec)

    def tracklet(self, station: str) -> Tracklet:
        recs = self.records
        utc = np.array([r.utc for r in recs], dtype="datetime64[us]")
        ra = np.array([r.angle1_deg for r in recs])
        dec = np.array([r.angle2_deg for r in recs])
        codes = np.array([r.epoch_code for r in recs])
        for code in np.unique(codes):
            sel = codes == code
            ra[sel], dec[sel] = to_icrs(ra[sel], dec[sel], int(code), utc[sel])
        return Tracklet(
            station=station,
            utc=utc,
            ra_deg=ra,
            dec_deg=dec,
            sigma_arcsec=[r.position_sigma_arcsec for r in recs],
            mag=[np.nan if r.mag is None else r.mag for r in recs],
            object=recs[0].designation,
            uuid=stable_uuid("iod", *self.lines),
        )


def _station_name(code: str, station_codes: Mapping[int | str, str] | None) -> str:
    if station_codes:
        if code.isdigit() and int(code) in station_codes:
            return station_codes[int(code)]
        if code in station_codes:
            return station_codes[code]
    return code


def _looks_like_iod(line: str) -> bool:
    """Loose shape test: a station field and an 8-digit date where IOD has them."""
    return len(line) >= 31 and line[16:20].strip().isalnum() and line[23:31].isdigit()


def to_icrs(ra_deg, dec_deg, epoch_code: int, utc) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec referred to an IOD epoch code -> ICRS axes (see module notes)."""
    ra_deg = np.asarray(ra_deg, dtype=float)
    dec_deg = np.asarray(dec_deg, dtype=float)
    if epoch_code == 5:
        return ra_deg, dec_deg
    import erfa

    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    jd, fr = datetime64_to_jd_fr(utc)
    if epoch_code == 4:  # FK4 B1950 -> FK5 J2000, at the observation epoch
        ra, dec = erfa.fk45z(ra, dec, erfa.epb(jd, fr))
    else:
        if epoch_code == 0:
            d1, d2 = jd, fr  # mean equator and equinox of date (UTC for TT: negligible)
        elif epoch_code == 6:
            d1, d2 = erfa.epj2jd(2050.0)
        else:
            d1, d2 = erfa.epb2jd({1: 1855.0, 2: 1875.0, 3: 1900.0}[epoch_code])
        _, rp, _ = erfa.bp06(d1, d2)  # precession J2000 mean -> mean of epoch
        v = erfa.s2c(ra, dec)
        v2000 = np.einsum("...ji,...j->...i", rp, v)  # transpose: back to J2000
        ra, dec = erfa.c2s(v2000)
    return np.degrees(erfa.anp(ra)), np.degrees(dec)


# --------------------------------------------------------------------------- writing


def write_iod(
    tracklets: Iterable[Tracklet],
    *,
    iod_station: int | str | Mapping[str, int | str],
    norad_ids: Sequence[int | None] | None = None,
    designations: Sequence[str | None] | None = None,
    angle_format: int = 2,
    time_sigma_s: float = 0.01,
    status: str = "G",
    behaviour: str = "S",
) -> str:
    """IOD lines for tracklets: RA/Dec J2000 (epoch code 5), times to the millisecond.

    Parameters
    ----------
    tracklets : tracklets to write.
    iod_station : IOD station number for all, or our station code -> IOD number.
    norad_ids : NORAD number per tracklet (None: a number in ``Tracklet.object``, else
        99999, unknown).
    designations : international designator per tracklet (None: ``Tracklet.object`` if it
        is one). Unknown ones are written as launch number 000 with piece letters A, B,
        C... in turn, so that unidentified tracklets stay apart when read back.
    angle_format : 2 (``HHMMmmm+DDMMmm``, 0.9"/0.6" steps; the default and what video
        observers use), 1 (``HHMMSSs+DDMMSS``), 3 or 7.
    time_sigma_s : time uncertainty written to columns 42-43.
    status : sky condition code (IOD has no "unknown"; G = good).
    behaviour : optical behaviour code (S = steady) written in column 66.

    Returns
    -------
    str
        One 80-column line per observation. ``sigma_arcsec`` goes to the position
        uncertainty ``MX`` in the unit of the angle format, rounded to one digit.
    """
    if angle_format not in (1, 2, 3, 7):
        raise ValueError(f"angle_format must be 1, 2, 3 or 7 (RA/Dec), not {angle_format}")
    if status not in STATUS_CODES or behaviour not in BEHAVIOUR_CODES + " ":
        raise ValueError(f"bad status {status!r} or behaviour {behaviour!r}")
    tracklets = list(tracklets)
    for what, seq in (("norad_ids", norad_ids), ("designations", designations)):
        if seq is not None and len(seq) != len(tracklets):
            raise ValueError(f"{what} has {len(seq)} entries for {len(tracklets)} tracklets")
    _, layout1, layout2, sigma_unit = ANGLE_FORMATS[angle_format]
    time_mx = _encode_mx(time_sigma_s)
    out = []
    n_unknown = 0
    for i, t in enumerate(tracklets):
        station = _station_number(t.station, iod_station)
        norad = norad_ids[i] if norad_ids is not None else _norad_from_object(t.object)
        desig = designations[i] if designations is not None else t.object
        if designations is not None and desig and normalize_designation(desig) is None:
            raise ValueError(f"designation {desig!r} is not an international designator")
        obj_cols = _object_text(norad, desig, _piece_letters(n_unknown))
        n_unknown += normalize_designation(desig) is None
        ms = (t.utc.astype("datetime64[us]").astype(np.int64) + 500) // 1000
        stamps = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
        for stamp, ra, dec, sigma, mag in zip(
            stamps, t.ra_deg, t.dec_deg, t.sigma_arcsec, t.mag, strict=True
        ):
            when = re.sub(r"\D", "", stamp)
            a1 = _encode_angle(ra / 15.0, layout1, wrap=24)
            a2 = _encode_angle(abs(dec), layout2)
            sign = "-" if dec < 0 and a2.strip("0") else "+"
            line = (
                f"{obj_cols} {station} {status} {when} {time_mx} {angle_format}5 "
                f"{a1}{sign}{a2} {_encode_mx(sigma / sigma_unit)} {behaviour}{_mag_text(mag)}"
            )
            out.append(line.rstrip())
    return "\n".join(out) + "\n" if out else ""


def _station_number(station: str, iod_station) -> str:
    value = iod_station
    if isinstance(iod_station, Mapping):
        if station not in iod_station:
            raise ValueError(f"station {station!r} has no IOD station number in iod_station")
        value = iod_station[station]
    text = f"{value:04d}" if isinstance(value, int) else str(value)
    if not _STATION_RE.fullmatch(text):
        raise ValueError(f"IOD station {value!r} is not 0-9999 (or a 4-character code)")
    return text


def _norad_from_object(obj: str | None) -> int:
    return int(obj) if obj and obj.strip().isdigit() and len(obj.strip()) <= 5 else UNKNOWN_NORAD


def _object_text(norad: int | None, designation: str | None, unknown_piece: str) -> str:
    """Columns 1-15; an unknown designation is launch 000 with ``unknown_piece``."""
    norad = UNKNOWN_NORAD if norad is None else int(norad)
    if not 0 <= norad <= 99999:
        raise ValueError(f"NORAD number {norad} does not fit IOD columns 1-5")
    normal = normalize_designation(designation)
    if normal is None:
        return f"{norad:05d} 00 000{unknown_piece:<3}"
    year, rest = normal.split("-")
    return f"{norad:05d} {year[2:]} {rest:<6}"


def _piece_letters(k: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA, ... (up to ZZZ)."""
    if not 0 <= k < 26 + 26**2 + 26**3:
        raise ValueError("too many unidentified tracklets for IOD piece letters")
    letters, k = "", k + 1
    while k:
        k, r = divmod(k - 1, 26)
        letters = chr(ord("A") + r) + letters
    return letters


def _encode_angle(value: float, layout, wrap: int | None = None) -> str:
    """Degrees/hours -> sexagesimal digits, rounded to the last digit, with carries."""
    n_last = layout[-1][1]
    steps_per_unit = 60 ** (len(layout) - 1) * 10**n_last
    q = math.floor(value * steps_per_unit + 0.5)
    if wrap is not None:
        q %= wrap * steps_per_unit
    parts = []
    for k in range(len(layout) - 1, 0, -1):
        base = 60 * 10 ** layout[k][1]
        q, r = divmod(q, base)
        parts.append(f"{r:0{sum(layout[k])}d}")
    parts.append(f"{q:0{sum(layout[0])}d}")
    return "".join(reversed(parts))


def _encode_mx(value: float) -> str:
    """Positive value -> ``MX`` (M x 10^(X-8)), rounded to one digit, clamped to 1e-8..9e1."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"uncertainty {value} must be positive and finite")
    exp = math.floor(math.log10(value))
    mant = math.floor(value / 10.0**exp + 0.5)
    if mant == 10:
        mant, exp = 1, exp + 1
    if exp + 8 < 0:
        return "10"
    if exp + 8 > 9:
        return "99"
    return f"{mant}{exp + 8}"


def _mag_text(mag: float) -> str:
    if not math.isfinite(mag):
        return ""
    tenths = math.floor(abs(mag) * 10 + 0.5)
    if tenths > 999:
        raise ValueError(f"magnitude {mag} does not fit IOD columns 67-70")
    return f"{'-' if mag < 0 and tenths else '+'}{tenths:03d}"
