"""Parsing uploaded tracklets: the JSON wire format or a CCSDS TDM document.

Every problem is reported with where it is (record number, UUID, field, or the TDM
line), all of them at once, so a station can fix or drop exactly the bad records.
"""

from __future__ import annotations

import json
import math
import re
import uuid as uuid_module
from dataclasses import dataclass, field

import numpy as np

from aposos.center.checks import MIN_OBSERVATIONS, tracklet_problems
from aposos.model import Tracklet

__all__ = ["ParsedUpload", "parse_upload"]

_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z?$")
MAX_ERRORS = 100  # problems listed in one answer
MAX_OBJECT = 64  # characters of an observer's designation (database column)
MAX_STATION = 32


@dataclass
class ParsedUpload:
    """Tracklets read from one upload, and the problems found (empty when clean)."""

    kind: str  # "json" | "tdm"
    tracklets: list[Tracklet] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    checked: set[int] = field(default_factory=set, repr=False)  # ids of clean tracklets


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__.replace("str", "string")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_record(i: int, rec) -> list[str]:
    """Type checks of one wire record, before the values are interpreted."""
    if not isinstance(rec, dict):
        return [f"record {i}: must be a JSON object, got {_type_name(rec)}"]
    where = f"record {i}"
    if isinstance(rec.get("uuid"), str):
        where += f" (uuid {rec['uuid']})"
    problems = []
    for key, kinds, label in (
        ("uuid", (str,), "a string"),
        ("station", (str,), "a string"),
        ("observations", (list,), "a list"),
    ):
        if key not in rec:
            problems.append(f"{where}: missing '{key}'")
        elif not isinstance(rec[key], kinds):
            problems.append(f"{where}: '{key}' must be {label}, got {_type_name(rec[key])}")
    obj = rec.get("object")
    if obj is not None and not isinstance(obj, str):
        problems.append(f"{where}: 'object' must be a string or null, got {_type_name(obj)}")
    station = rec.get("station")
    if isinstance(station, str) and not 0 < len(station) <= MAX_STATION:
        problems.append(f"{where}: 'station' must have 1 to {MAX_STATION} characters")
    unknown = set(rec) - {"uuid", "station", "object", "observations"}
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    obs = rec.get("observations")
    if not isinstance(obs, list):
        return problems
    if not obs:
        problems.append(f"{where}: 'observations' is empty")
    for k, o in enumerate(obs):
        at = f"{where}: observations[{k}]"
        if not isinstance(o, dict):
            problems.append(f"{at} must be a JSON object, got {_type_name(o)}")
            continue
        utc = o.get("utc")
        if not isinstance(utc, str):
            problems.append(f"{at}.utc must be an ISO 8601 UTC string, got {_type_name(utc)}")
        elif not _ISO_UTC.match(utc):
            problems.append(f"{at}.utc {utc!r} is not ISO 8601 UTC (YYYY-MM-DDThh:mm:ss[.f]Z)")
        for key, required in (
            ("ra_deg", True),
            ("dec_deg", True),
            ("sigma_arcsec", False),
            ("mag", False),
        ):
            value = o.get(key)
            if value is None:
                if required:
                    problems.append(f"{at}.{key} is missing")
                continue
            if not _is_number(value):
                problems.append(f"{at}.{key} must be a number, got {_type_name(value)}")
            elif not _finite(value):
                problems.append(f"{at}.{key} must be finite")
        sigma = o.get("sigma_arcsec")
        if _is_number(sigma) and not sigma > 0:
            problems.append(f"{at}.sigma_arcsec must be positive")
        dec = o.get("dec_deg")
        if _is_number(dec) and abs(dec) > 90:
            problems.append(f"{at}.dec_deg {dec} is outside [-90, 90]")
        extra = set(o) - {"utc", "ra_deg", "dec_deg", "sigma_arcsec", "mag"}
        if extra:
            problems.append(f"{at}: unknown field(s) {', '.join(sorted(extra))}")
    return problems


_RECORD_KEYS = {"uuid", "station", "object", "observations"}
_POINT_KEYS = {"utc", "ra_deg", "dec_deg", "sigma_arcsec", "mag"}
_FIRST_DAY, _LAST_YEAR = "1957-10-04", "2099"  # checks.TIME_RANGE, on ISO text


def _clean_tracklet(rec) -> Tracklet | None:
    """The tracklet of a wire record that passes every check (:func:`_check_record`,
    :meth:`Tracklet.from_wire`, :func:`tracklet_problems`), built in one pass; ``None``
    when anything is unusual, and the checks above then name the problem.

    Most uploads are clean: this is their fast path, the same tracklet for less work.
    """
    try:
        if type(rec) is not dict or not rec.keys() <= _RECORD_KEYS:
            return None
        uid, station, obs = rec["uuid"], rec["station"], rec["observations"]
        name = rec.get("object")
        if not (type(uid) is str and type(station) is str and type(obs) is list and obs):
            return None
        if not 0 < len(station) <= MAX_STATION or not station.isprintable():
            return None
        if name is not None and not (
            type(name) is str and len(name) <= MAX_OBJECT and name.isprintable()
        ):
            return None
        if len(obs) < MIN_OBSERVATIONS:
            return None
        times, ra, dec, sigma, mag = [], [], [], [], []
        for o in obs:
            if type(o) is not dict or not o.keys() <= _POINT_KEYS:
                return None
            utc = o["utc"]
            if type(utc) is not str or not _ISO_UTC.match(utc):
                return None
            if not (_FIRST_DAY <= utc[:10] and utc[:4] <= _LAST_YEAR):
                return None
            a, d, s, m = o["ra_deg"], o["dec_deg"], o.get("sigma_arcsec"), o.get("mag")
            if type(a) not in (float, int) or type(d) not in (float, int):
                return None
            a, d = float(a), float(d)
            if not (math.isfinite(a) and math.isfinite(d) and -90.0 <= d <= 90.0):
                return None
            if s is None:
                s = 2.0
            elif type(s) not in (float, int) or not (0.0 < s < math.inf):
                return None
            if m is None:
                m = math.nan
            elif type(m) not in (float, int) or not math.isfinite(m):
                return None
            times.append(utc.rstrip("Z"))
            ra.append(a)
            dec.append(d)
            sigma.append(float(s))
            mag.append(float(m))
        return Tracklet(
            station=station,
            utc=np.array(times, dtype="datetime64[us]"),
            ra_deg=np.array(ra),
            dec_deg=np.array(dec),
            sigma_arcsec=np.array(sigma),
            mag=np.array(mag),
            object=name,
            uuid=str(uuid_module.UUID(uid)),
        )
    except (KeyError, ValueError, TypeError, OverflowError):
        return None  # the checks say what


def _parse_json(text: str) -> ParsedUpload:
    out = ParsedUpload(kind="json")
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        out.errors.append(f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")
        return out
    except ValueError as exc:
        out.errors.append(f"not valid JSON: {exc}")
        return out
    except RecursionError:
        out.errors.append("not valid JSON for an upload: nested too deeply")
        return out
    if isinstance(doc, dict) and "tracklets" in doc:
        doc = doc["tracklets"]
    if not isinstance(doc, list):
        out.errors.append(
            'the body must be a JSON list of tracklets (or {"tracklets": [...]}), '
            f"got {_type_name(doc)}"
        )
        return out
    if not doc:
        out.errors.append("the upload holds no tracklets")
    for i, rec in enumerate(doc):
        clean = _clean_tracklet(rec)
        if clean is not None:
            out.tracklets.append(clean)
            out.checked.add(id(clean))
            continue
        problems = _check_record(i, rec)
        if not problems:
            try:
                out.tracklets.append(Tracklet.from_wire(rec))
            except ValueError as exc:
                problems = [f"record {i}: {exc}"]
        out.errors.extend(problems)
    return out


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON")


def _parse_tdm(text: str, time_budget_s: float | None) -> ParsedUpload:
    from aposos.formats.tdm import read_tdm

    out = ParsedUpload(kind="tdm")
    if "\n" not in text:
        text += "\n"  # read_tdm takes a one-line string for a file name
    try:
        parsed = read_tdm(text, name="TDM", time_budget_s=time_budget_s)
    except ValueError as exc:
        out.errors.append(f"not a readable CCSDS TDM document: {exc}")
        return out
    for p in parsed:
        if p.error:
            out.errors.append(p.error)
        elif p.tracklet is not None:
            out.tracklets.append(p.tracklet)
    if not parsed:
        out.errors.append("the TDM document holds no tracking data segment")
    return out


def parse_upload(payload: bytes, *, time_budget_s: float | None = None) -> ParsedUpload:
    """Read an upload: JSON (a list of wire tracklets) or a CCSDS TDM (KVN or XML).

    The kind is told by the content: JSON starts with ``[`` or ``{``. Tracklets that
    could never be correlated or stored (one observation, absurd times, control
    characters in names) are errors too. ``time_budget_s`` bounds TDM reading.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ParsedUpload(kind="?", errors=[f"the body is not UTF-8 text (byte {exc.start})"])
    head = text.lstrip("\ufeff \t\r\n")[:1]
    if head in ("[", "{"):
        result = _parse_json(text)
    elif head == "<" or text.lstrip("\ufeff \t\r\n").startswith("CCSDS_TDM_VERS"):
        result = _parse_tdm(text, time_budget_s)
    elif not head:
        result = ParsedUpload(kind="?", errors=["the body is empty"])
    else:
        result = ParsedUpload(
            kind="?",
            errors=["the body is neither JSON (a list of tracklets) nor a CCSDS TDM document"],
        )
    for t in result.tracklets:
        if id(t) not in result.checked:
            result.errors.extend(tracklet_problems(t))
    if len(result.errors) > MAX_ERRORS:
        more = len(result.errors) - MAX_ERRORS
        result.errors = result.errors[:MAX_ERRORS] + [f"... and {more} more problems"]
    return result
