"""CCSDS Tracking Data Message (CCSDS 503.0-B-2) angle data, in KVN and XML.

One TDM segment is one tracklet. What we read:

- ``ANGLE_TYPE = RADEC`` (ANGLE_1 right ascension, ANGLE_2 declination, degrees) in
  ``REFERENCE_FRAME`` EME2000, ICRF(2/3) or GCRF. EME2000 is taken as the ICRS axes:
  the 23 mas frame bias is far below optical tracking accuracy, and ignoring it both
  ways keeps round trips exact.
- ``TIME_SYSTEM`` UTC; TAI, GPS and TT are converted to UTC with ERFA's leap-second
  table. Other time systems, angle types and frames reject the segment with a reason.
- ``PARTICIPANT_1`` is the station, ``PARTICIPANT_2`` the object (``UNKNOWN`` -> None).
  ``TRACK_ID``, when it is a UUID, becomes the tracklet UUID; otherwise the UUID is
  derived from the observations, so re-reading a file gives the same UUIDs.
- ``MAG`` (apparent magnitude, a 503.0-B-2 data keyword). ANGLE_1/ANGLE_2/MAG records
  pair by timetag; other data types in the segment are ignored.
- Per-observation uncertainty is not a TDM keyword; our writer puts it in a metadata
  comment ``COMMENT aposos sigma_arcsec: <one value, or one per observation>``, which
  this reader understands. Without it the tracklet gets the default sigma.

What we write follows the standard's optical example (503.0-B-2 figure E-16): station
``PARTICIPANT_1``, object ``PARTICIPANT_2``, ``MODE = SEQUENTIAL``, ``PATH = 2,1`` (the
light travels from the object, participant 2, to the station, participant 1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
import time
import uuid as uuid_module
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.parsers import expat

import numpy as np

from aposos.formats.common import ParsedTracklet, read_source, stable_uuid
from aposos.model import Tracklet

__all__ = ["read_tdm", "write_tdm"]

SIGMA_COMMENT = "aposos sigma_arcsec:"
ACCEPTED_FRAMES = ("EME2000", "ICRF", "ICRF2", "ICRF3", "GCRF")
# Offset to add to a timetag in this time system to get TAI, in microseconds.
_TO_TAI_US = {"UTC": None, "TAI": 0, "GPS": 19_000_000, "TT": -32_184_000}
_DATA_KEYWORDS = frozenset(
    """ANGLE_1 ANGLE_2 CARRIER_POWER CLOCK_BIAS CLOCK_DRIFT DOPPLER_COUNT
    DOPPLER_INSTANTANEOUS DOPPLER_INTEGRATED DOR MAG PC_N0 PR_N0 PRESSURE RANGE RCS
    RECEIVE_FREQ RHUMIDITY STEC TEMPERATURE TROPO_DRY TROPO_WET VLBI_DELAY""".split()
    + [f"{k}_{n}" for k in ("RECEIVE_FREQ", "RECEIVE_PHASE_CT", "TRANSMIT_FREQ") for n in "12345"]
    + [f"{k}_{n}" for k in ("TRANSMIT_FREQ_RATE", "TRANSMIT_PHASE_CT") for n in "12345"]
)
_TIME_RE = re.compile(
    r"(\d{4})-(?:(\d{2})-(\d{2})|(\d{3}))T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?Z?"
)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_KV_RE = re.compile(r"([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s*")
_RECORD_RE = re.compile(r"([A-Z][A-Z0-9_]*)\s*=\s*(\S+)\s+(\S+)\s*")
_US_PER_DAY = 86_400_000_000
_MAX_XML_DEPTH = 16  # a TDM nests 5 deep (ndm, tdm, body, segment, data, observation)
_BUDGET_EVERY = 1024  # look at the clock every this many elements or lines
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_SCHEMA = "https://sanaregistry.org/r/ndmxml_unqualified/ndmxml-2.0.0-master-2.0.xsd"


class _SegmentError(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class _Segment:
    """A segment as read, before any meaning is given to it (KVN and XML alike)."""

    start_line: int
    meta: dict[str, tuple[str, int]] = field(default_factory=dict)
    comments: list[tuple[str, int]] = field(default_factory=list)
    records: list[tuple[str, str, str, int]] = field(default_factory=list)  # key, t, v, line
    problem: tuple[int, str] | None = None

    def fail(self, line: int, message: str) -> None:
        if self.problem is None:  # the first problem is the one to report
            self.problem = (line, message)


class _Budget:
    """A deadline for reading one document: raises ``ValueError`` once it has passed."""

    def __init__(self, label: str, seconds: float | None):
        self.label = label
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.calls = 0

    def tick(self) -> None:
        self.calls += 1
        if self.deadline is not None and self.calls % _BUDGET_EVERY == 0:
            if time.monotonic() > self.deadline:
                raise ValueError(f"{self.label}: reading took longer than {self.seconds:g} s")


# --------------------------------------------------------------------------- reading


def read_tdm(
    source: str | os.PathLike,
    *,
    strict: bool = False,
    name: str | None = None,
    time_budget_s: float | None = None,
) -> list[ParsedTracklet]:
    """Read the RA/Dec angle segments of a CCSDS TDM (KVN or XML) as tracklets.

    Parameters
    ----------
    source : path to the file, or its text.
    strict : raise ``ValueError`` on the first bad segment instead of reporting it.
    name : label for messages (default: the path, or ``<text>``).
    time_budget_s : give up (``ValueError``) when reading takes longer than this.

    XML is read without any DTD: a ``<!DOCTYPE`` (and so every entity declaration)
    is refused, and reading takes time linear in the size of the document.

    Returns
    -------
    list of ParsedTracklet
        One per segment, in file order; a bad segment has ``error`` set and no tracklet.

    Raises
    ------
    ValueError
        If the source is not a TDM at all (or, with ``strict``, on the first bad segment).

    Examples
    --------
    >>> from aposos.formats.tdm import read_tdm, write_tdm
    >>> parsed = read_tdm(write_tdm(tracklets))  # doctest: +SKIP
    >>> [p.tracklet for p in parsed if p.ok]  # doctest: +SKIP
    """
    text, label = read_source(source)
    label = name or label
    head = text.lstrip()
    budget = _Budget(label, time_budget_s)
    if head.startswith("<"):
        segments = _xml_segments(text, label, budget)
    else:
        segments = _kvn_segments(text, label, strict, budget)
    results = []
    for index, seg in enumerate(segments):
        budget.tick()
        try:
            tracklet = _segment_tracklet(seg)
            results.append(ParsedTracklet(index, seg.start_line, tracklet, None))
        except _SegmentError as exc:
            message = (
                f"{label}: segment {index + 1} (starts line {seg.start_line}), "
                f"line {exc.line}: {exc.message}"
            )
            if strict:
                raise ValueError(message) from None
            results.append(ParsedTracklet(index, seg.start_line, None, message))
    return results


def _kvn_segments(text: str, label: str, strict: bool, budget: _Budget) -> list[_Segment]:
    lines = text.splitlines()
    first = next(((n, s.strip()) for n, s in enumerate(lines, 1) if s.strip()), None)
    if first is None:
        raise ValueError(f"{label}: empty file, not a CCSDS TDM")
    n_first, s_first = first
    match = _KV_RE.fullmatch(s_first)
    if not match or match.group(1) != "CCSDS_TDM_VERS":
        kind = match.group(1).removeprefix("CCSDS_").removesuffix("_VERS") if match else None
        if match and match.group(1).startswith("CCSDS_") and kind:
            raise ValueError(f"{label}: line {n_first}: this is a CCSDS {kind} message, not a TDM")
        raise ValueError(f"{label}: not a CCSDS TDM (line {n_first} is not 'CCSDS_TDM_VERS = x.y')")
    version = match.group(2)
    if not re.fullmatch(r"[012]\.\d+", version):
        raise ValueError(f"{label}: line {n_first}: unsupported CCSDS_TDM_VERS {version!r}")

    header: dict[str, str] = {}
    segments: list[_Segment] = []
    seg: _Segment | None = None
    state = "header"
    for n, raw in enumerate(lines[n_first:], n_first + 1):
        budget.tick()
        s = raw.strip()
        if not s:
            continue
        if s == "COMMENT" or s.startswith(("COMMENT ", "COMMENT\t")):
            if state == "meta":  # metadata comments carry our sigma; others are kept out
                seg.comments.append((s[7:].strip(), n))
            continue
        if state == "header":
            if s == "META_START":
                seg, state = _Segment(n), "meta"
                segments.append(seg)
                continue
            kv = _KV_RE.fullmatch(s)
            if kv is None:
                raise ValueError(f"{label}: line {n}: header line {s!r} is not 'KEYWORD = value'")
            header[kv.group(1)] = kv.group(2)
        elif s == "META_START":
            if state not in ("between", "stray"):
                seg.fail(n, "segment not closed with DATA_STOP before the next META_START")
            seg, state = _Segment(n), "meta"
            segments.append(seg)
        elif state == "between":
            # Stray text between segments: reported once, as a segment of its own.
            stray, state = _Segment(n), "stray"
            stray.fail(n, f"expected META_START, found {s[:40]!r}")
            segments.append(stray)
        elif state == "stray":
            continue
        elif state == "meta":
            if s == "META_STOP":
                state = "after_meta"
            elif (kv := _KV_RE.fullmatch(s)) is None:
                seg.fail(n, f"metadata line {s[:40]!r} is not 'KEYWORD = value'")
            elif kv.group(1) in seg.meta:
                seg.fail(n, f"{kv.group(1)} given twice in the metadata")
            else:
                seg.meta[kv.group(1)] = (" ".join(kv.group(2).split()), n)
        elif state == "after_meta":
            if s != "DATA_START":
                seg.fail(n, f"expected DATA_START after META_STOP, found {s[:40]!r}")
            state = "data"
        else:  # data
            if s == "DATA_STOP":
                state = "between"
            elif (rec := _RECORD_RE.fullmatch(s)) is None:
                seg.fail(n, f"data line {s[:40]!r} is not 'KEYWORD = timetag value'")
            else:
                seg.records.append((rec.group(1), rec.group(2), rec.group(3), n))
    if state in ("meta", "after_meta", "data"):
        seg.fail(len(lines), "file ends inside the segment (no DATA_STOP)")
    if not segments:
        raise ValueError(f"{label}: TDM has no segments (no META_START)")
    if strict:
        for key in ("CREATION_DATE", "ORIGINATOR"):
            if key not in header:
                raise ValueError(f"{label}: TDM header has no {key}")
    return segments


@dataclass
class _Node:
    tag: str
    line: int
    text: str = ""
    children: list[_Node] = field(default_factory=list)

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)


def _parse_xml(text: str, label: str, budget: _Budget) -> _Node:
    """Element tree with line numbers; namespace prefixes dropped.

    Hardened as ``defusedxml`` does it: a DTD is refused, so no entity can be declared
    or expanded; nesting is bounded; character data is gathered in lists and joined
    once (linear time).
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Node] = [_Node("", 0)]
    texts: list[list[str]] = [[]]

    def start(tag, attrs):
        budget.tick()
        if len(stack) > _MAX_XML_DEPTH:
            raise ValueError(f"{label}: XML nested deeper than {_MAX_XML_DEPTH} elements")
        node = _Node(tag.rsplit(":", 1)[-1], parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)
        texts.append([])

    def end(tag):
        stack.pop().text = "".join(texts.pop())

    def chars(data):
        budget.tick()
        texts[-1].append(data)

    def refuse_dtd(*_args):
        raise ValueError(f"{label}: XML with a DOCTYPE (DTD or entities) is not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise ValueError(f"{label}: not well-formed XML: {exc}") from None
    if not stack[0].children:
        raise ValueError(f"{label}: XML without a root element")
    return stack[0].children[0]


def _xml_segments(text: str, label: str, budget: _Budget) -> list[_Segment]:
    root = _parse_xml(text, label, budget)
    tdms = [root] if root.tag == "tdm" else [c for c in root.children if c.tag == "tdm"]
    if not tdms:
        raise ValueError(f"{label}: XML root <{root.tag}> is not a CCSDS <tdm>")
    segments = []
    for tdm in tdms:
        body = tdm.find("body")
        for node in body.children if body is not None else []:
            if node.tag != "segment":
                continue
            seg = _Segment(node.line)
            segments.append(seg)
            meta, data = node.find("metadata"), node.find("data")
            if meta is None or data is None:
                seg.fail(node.line, "segment needs <metadata> and <data>")
                continue
            for item in meta.children:
                value = " ".join(item.text.split())
                if item.tag == "COMMENT":
                    seg.comments.append((item.text.strip(), item.line))
                elif item.tag in seg.meta:
                    seg.fail(item.line, f"{item.tag} given twice in the metadata")
                elif not value:
                    seg.fail(item.line, f"<{item.tag}> is empty")
                else:
                    seg.meta[item.tag] = (value, item.line)
            for obs in data.children:
                if obs.tag != "observation":
                    continue
                epoch = obs.find("EPOCH")
                if epoch is None:
                    seg.fail(obs.line, "<observation> without <EPOCH>")
                    continue
                for item in obs.children:
                    if item.tag != "EPOCH":
                        value = item.text.strip()
                        seg.records.append((item.tag, epoch.text.strip(), value, item.line))
    if not segments:
        raise ValueError(f"{label}: TDM has no <segment>")
    return segments


def _segment_tracklet(seg: _Segment) -> Tracklet:
    if seg.problem is not None:
        raise _SegmentError(*seg.problem)
    meta = seg.meta

    def need(key: str) -> tuple[str, int]:
        if key not in meta:
            raise _SegmentError(seg.start_line, f"metadata has no {key}")
        return meta[key]

    time_system, line = need("TIME_SYSTEM")
    time_system = time_system.upper()
    if time_system not in _TO_TAI_US:
        raise _SegmentError(line, f"TIME_SYSTEM {time_system} not supported (UTC, TAI, GPS, TT)")
    station = need("PARTICIPANT_1")[0]
    angle_type, line = need("ANGLE_TYPE")
    if angle_type.upper() != "RADEC":
        raise _SegmentError(line, f"ANGLE_TYPE {angle_type} not supported (need RADEC)")
    frame, line = need("REFERENCE_FRAME")
    if frame.upper() not in ACCEPTED_FRAMES:
        raise _SegmentError(
            line, f"REFERENCE_FRAME {frame} not supported ({', '.join(ACCEPTED_FRAMES)})"
        )
    obj = meta.get("PARTICIPANT_2", ("UNKNOWN", 0))[0]
    obj = None if obj.upper() == "UNKNOWN" else obj

    columns: dict[str, dict[int, tuple[float, int, str]]] = {
        "ANGLE_1": {},
        "ANGLE_2": {},
        "MAG": {},
    }
    for key, epoch, value, line in seg.records:
        if key not in _DATA_KEYWORDS:
            raise _SegmentError(line, f"{key} is not a TDM data keyword")
        if key not in columns:
            continue
        try:
            t_us = _parse_time_us(epoch)
        except ValueError as exc:
            raise _SegmentError(line, f"bad timetag {epoch!r}: {exc}") from None
        if not _NUMBER_RE.fullmatch(value):
            raise _SegmentError(line, f"bad {key} value {value!r}: not a number")
        if t_us in columns[key]:
            raise _SegmentError(line, f"second {key} at {epoch}")
        columns[key][t_us] = (float(value), line, epoch)
    ra_col, dec_col, mag_col = columns["ANGLE_1"], columns["ANGLE_2"], columns["MAG"]
    if not ra_col and not dec_col:
        raise _SegmentError(seg.start_line, "segment has no ANGLE_1/ANGLE_2 data")
    for this, other in (("ANGLE_1", dec_col), ("ANGLE_2", ra_col), ("MAG", ra_col)):
        for t_us, (_, line, epoch) in columns[this].items():
            if t_us not in other:
                partner = "ANGLE_2" if this == "ANGLE_1" else "ANGLE_1"
                raise _SegmentError(line, f"{this} at {epoch} has no {partner} at the same time")
    times = np.array(sorted(ra_col), dtype=np.int64)
    ra = np.array([ra_col[t][0] for t in times])
    dec = np.array([dec_col[t][0] for t in times])
    for t, value in zip(times, ra, strict=True):
        if not -180.0 <= value < 360.0:
            raise _SegmentError(ra_col[t][1], f"ANGLE_1 {value} outside [-180, 360) degrees")
    for t, value in zip(times, dec, strict=True):
        if not -90.0 <= value <= 90.0:
            raise _SegmentError(dec_col[t][1], f"declination ANGLE_2 {value} outside [-90, 90]")
    mag = np.array([mag_col[t][0] if t in mag_col else np.nan for t in times])
    sigma = _sigma_from_comments(seg.comments, times.size)
    utc = _to_utc(times, time_system).astype("datetime64[us]")
    track_id = meta.get("TRACK_ID", ("", 0))[0]
    try:
        uid = str(uuid_module.UUID(track_id))
    except ValueError:  # identity from the content: different data never collide
        digest = hashlib.sha256(times.tobytes() + ra.tobytes() + dec.tobytes()).hexdigest()
        uid = stable_uuid("tdm", station, obj, track_id, digest)
    return Tracklet(station, utc, ra, dec, sigma_arcsec=sigma, mag=mag, object=obj, uuid=uid)


def _parse_time_us(text: str) -> int:
    """A TDM timetag (calendar or day-of-year form) as integer microseconds since 1970."""
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise ValueError("expected YYYY-MM-DDThh:mm:ss[.s] or YYYY-DDDThh:mm:ss[.s]")
    year, month, day, doy, hh, mm, ss, frac = match.groups()
    year = int(year)
    if doy is not None:
        n_days = 366 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 365
        if not 1 <= int(doy) <= n_days:
            raise ValueError(f"day of year {doy} outside 1-{n_days}")
        date = dt.date(year, 1, 1) + dt.timedelta(days=int(doy) - 1)
    else:
        date = dt.date(year, int(month), int(day))  # ValueError for 2021-02-30
    hh, mm, ss = int(hh), int(mm), int(ss or 0)
    if hh > 23 or mm > 59 or ss > 60:
        raise ValueError("hour, minute or second out of range")
    if ss == 60:
        raise ValueError("a leap second (ss = 60) cannot be represented")
    frac_us = 0
    if frac:  # round to the microsecond, half up
        scale = 10 ** len(frac)
        frac_us = (int(frac) * 2_000_000 + scale) // (2 * scale)
    days = (date - dt.date(1970, 1, 1)).days
    return days * _US_PER_DAY + ((hh * 60 + mm) * 60 + ss) * 1_000_000 + frac_us


def _to_utc(us: np.ndarray, time_system: str) -> np.ndarray:
    """Microseconds in ``time_system`` to UTC microseconds (ERFA leap-second table)."""
    offset = _TO_TAI_US[time_system]
    if offset is None:
        return us
    tai = us + offset
    utc = tai - _tai_minus_utc_us(tai)
    return tai - _tai_minus_utc_us(utc)


def _tai_minus_utc_us(us: np.ndarray) -> np.ndarray:
    import erfa

    days = np.floor_divide(us, _US_PER_DAY).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    fd = np.mod(us, _US_PER_DAY) / _US_PER_DAY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)  # "dubious year" past the table
        dat = erfa.dat(
            years.astype(np.int64) + 1970,
            (months - years).astype(np.int64) + 1,
            (days - months).astype(np.int64) + 1,
            fd,
        )
    return np.round(np.asarray(dat) * 1e6).astype(np.int64)


def _sigma_from_comments(comments: list[tuple[str, int]], n: int) -> np.ndarray | None:
    values: list[float] = []
    line = 0
    for text, line_no in comments:
        if text.strip().startswith(SIGMA_COMMENT):
            line = line or line_no
            for word in text.strip()[len(SIGMA_COMMENT) :].split():
                if not _NUMBER_RE.fullmatch(word) or not float(word) > 0:
                    raise _SegmentError(line_no, f"bad sigma_arcsec {word!r} in comment")
                values.append(float(word))
    if not values:
        return None
    if len(values) not in (1, n):
        raise _SegmentError(line, f"{len(values)} sigma_arcsec values for {n} observations")
    return np.asarray(values)


# --------------------------------------------------------------------------- writing


def write_tdm(
    tracklets: Iterable[Tracklet],
    *,
    format: str = "kvn",
    originator: str = "APOSOS",
    creation_date: dt.datetime | np.datetime64 | None = None,
    reference_frame: str = "EME2000",
) -> str:
    """A standard CCSDS TDM (version 2.0) with one RA/Dec segment per tracklet.

    Parameters
    ----------
    tracklets : tracklets to write (at least one, each with at least one observation).
    format : ``"kvn"`` or ``"xml"``.
    originator : the ``ORIGINATOR`` header value.
    creation_date : ``CREATION_DATE`` (UTC); now by default.
    reference_frame : ``EME2000`` (default, as the standard's optical examples) or ``ICRF``.

    Returns
    -------
    str
        The message text. Times are written to the microsecond, angles to 1e-10 degree;
        sigma goes into a metadata comment (see module notes), the tracklet UUID into
        ``TRACK_ID``.
    """
    if format not in ("kvn", "xml"):
        raise ValueError(f"format must be 'kvn' or 'xml', not {format!r}")
    if reference_frame not in ("EME2000", "ICRF"):
        raise ValueError("reference_frame must be 'EME2000' or 'ICRF'")
    if creation_date is None:
        creation_date = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    created = np.datetime_as_string(np.datetime64(creation_date, "ms"), unit="ms")
    _check_text("originator", originator)
    segments = [_segment_items(t, reference_frame) for t in tracklets]
    if not segments:
        raise ValueError("write_tdm needs at least one tracklet")
    header = [("CREATION_DATE", created), ("ORIGINATOR", originator)]
    if format == "kvn":
        return _render_kvn(header, segments)
    return _render_xml(header, segments)


def _segment_items(t: Tracklet, frame: str):
    if len(t) == 0:
        raise ValueError(f"tracklet {t.uuid}: no observations to write")
    _check_text("station", t.station)
    obj = t.object if t.object else "UNKNOWN"
    _check_text("object", obj)
    epochs = np.datetime_as_string(t.utc, unit="us")
    sigma = np.asarray(t.sigma_arcsec, dtype=float)
    values = [sigma[0]] if np.all(sigma == sigma[0]) else list(sigma)
    comments = [
        f"{SIGMA_COMMENT} " + " ".join(f"{v:.6g}" for v in values[i : i + 16])
        for i in range(0, len(values), 16)
    ]
    has_mag = bool(np.any(np.isfinite(t.mag)))
    meta = [
        ("TRACK_ID", t.uuid),
        ("DATA_TYPES", "ANGLE_1,ANGLE_2,MAG" if has_mag else "ANGLE_1,ANGLE_2"),
        ("TIME_SYSTEM", "UTC"),
        ("START_TIME", epochs[0]),
        ("STOP_TIME", epochs[-1]),
        ("PARTICIPANT_1", t.station),
        ("PARTICIPANT_2", obj),
        ("MODE", "SEQUENTIAL"),
        ("PATH", "2,1"),
        ("ANGLE_TYPE", "RADEC"),
        ("REFERENCE_FRAME", frame),
    ]
    records = []
    for epoch, ra, dec, mag in zip(epochs, t.ra_deg, t.dec_deg, t.mag, strict=True):
        records.append(("ANGLE_1", epoch, _format_angle(ra % 360.0, wrap=True)))
        records.append(("ANGLE_2", epoch, _format_angle(dec)))
        if math.isfinite(mag):
            records.append(("MAG", epoch, f"{mag + 0.0:.4f}"))
    return comments, meta, records


def _format_angle(value: float, wrap: bool = False) -> str:
    text = f"{value + 0.0:.10f}"
    if wrap and text.startswith("360."):
        text = f"{0.0:.10f}"
    return "0.0000000000" if text == "-0.0000000000" else text


def _check_text(what: str, value: str) -> None:
    if not value or not value.isascii() or not value.isprintable() or len(value) > 200:
        raise ValueError(f"{what} {value!r}: a TDM value must be 1-200 printable ASCII characters")


def _render_kvn(header, segments) -> str:
    out = ["CCSDS_TDM_VERS = 2.0"]
    out += [f"{k} = {v}" for k, v in header]
    for comments, meta, records in segments:
        out.append("META_START")
        out += [f"COMMENT {c}" for c in comments]
        out += [f"{k} = {v}" for k, v in meta]
        out += ["META_STOP", "DATA_START"]
        out += [f"{k} = {epoch} {v}" for k, epoch, v in records]
        out.append("DATA_STOP")
    return "\n".join(out) + "\n"


def _render_xml(header, segments) -> str:
    root = ET.Element(
        "tdm",
        {
            "xmlns:xsi": _XSI,
            "xsi:noNamespaceSchemaLocation": _SCHEMA,
            "id": "CCSDS_TDM_VERS",
            "version": "2.0",
        },
    )
    head = ET.SubElement(root, "header")
    for key, value in header:
        ET.SubElement(head, key).text = value
    body = ET.SubElement(root, "body")
    for comments, meta, records in segments:
        segment = ET.SubElement(body, "segment")
        metadata = ET.SubElement(segment, "metadata")
        for comment in comments:
            ET.SubElement(metadata, "COMMENT").text = comment
        for key, value in meta:
            ET.SubElement(metadata, key).text = value
        data = ET.SubElement(segment, "data")
        for key, epoch, value in records:
            obs = ET.SubElement(data, "observation")
            ET.SubElement(obs, "EPOCH").text = epoch
            ET.SubElement(obs, key).text = value
    ET.indent(root, "  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
