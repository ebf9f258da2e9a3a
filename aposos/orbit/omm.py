"""OMM (CCSDS 502.0) mean elements as CelesTrak publishes them: JSON, XML and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from sgp4.model import WGS72
from sgp4.model import Satrec as PySatrec

from aposos.timeutil import to_jd_fr

__all__ = ["read_omm_records", "satrec_from_omm_fields"]

_REQUIRED = (
    "EPOCH", "MEAN_MOTION", "ECCENTRICITY", "INCLINATION", "RA_OF_ASC_NODE",
    "ARG_OF_PERICENTER", "MEAN_ANOMALY", "NORAD_CAT_ID", "BSTAR",
)  # fmt: skip
_NDOT_UNITS = 1036800.0 / math.pi  # rev/day^2 (TLE convention, /2 included) -> rad/min^2
_NDDOT_UNITS = 2985984000.0 / 2.0 / math.pi
_JD_1949 = 2433281.5


def _epoch_split(text: str) -> tuple[float, float]:
    """ISO epoch (sub-microseconds kept) -> (whole JD at midnight .5, fraction of day)."""
    try:
        jd, fr = to_jd_fr(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"EPOCH: {exc}") from None
    return float(jd), float(fr)


def satrec_from_omm_fields(fields: dict) -> tuple[PySatrec, str, str]:
    """Initialise SGP4 from one OMM record's fields; ValueError names what is wrong."""
    missing = [k for k in _REQUIRED if fields.get(k) in (None, "")]
    if missing:
        raise ValueError("missing " + ", ".join(missing))
    values = {}
    for key in _REQUIRED[1:] + ("MEAN_MOTION_DOT", "MEAN_MOTION_DDOT"):
        raw = fields.get(key, 0.0)
        try:
            values[key] = float(raw if raw not in (None, "") else 0.0)
        except (TypeError, ValueError):
            raise ValueError(f"{key} = {raw!r} is not a number") from None
    satnum = int(values["NORAD_CAT_ID"])
    if not 0 < satnum < 340000:
        raise ValueError(f"NORAD_CAT_ID {satnum} is out of range")
    if not 0.0 <= values["ECCENTRICITY"] < 1.0:
        raise ValueError(f"ECCENTRICITY {values['ECCENTRICITY']} is outside [0, 1)")
    if values["MEAN_MOTION"] <= 0.0:
        raise ValueError(f"MEAN_MOTION {values['MEAN_MOTION']} must be positive")
    whole, fraction = _epoch_split(str(fields["EPOCH"]))
    deg = math.pi / 180.0
    sat = PySatrec()
    sat.sgp4init(
        WGS72, "i", satnum, (whole - _JD_1949) + fraction, values["BSTAR"],
        values["MEAN_MOTION_DOT"] / _NDOT_UNITS, values["MEAN_MOTION_DDOT"] / _NDDOT_UNITS,
        values["ECCENTRICITY"], values["ARG_OF_PERICENTER"] * deg, values["INCLINATION"] * deg,
        values["MEAN_ANOMALY"] * deg, values["MEAN_MOTION"] / 720.0 * math.pi,
        values["RA_OF_ASC_NODE"] * deg,
    )  # fmt: skip
    # Keep the epoch split exactly as the message gives it (to the microsecond).
    sat.jdsatepoch = whole
    sat.jdsatepochF = fraction
    return sat, str(fields.get("OBJECT_NAME") or "").strip(), str(fields.get("OBJECT_ID") or "")


def _xml_records(text: str) -> list[dict]:
    root = ET.fromstring(text)
    records = []
    for segment in root.iter():
        if segment.tag.split("}")[-1] != "segment":
            continue
        fields = {}
        for el in segment.iter():
            if len(el) == 0 and el.text is not None:
                fields[el.tag.split("}")[-1]] = el.text.strip()
        records.append(fields)
    return records


def read_omm_records(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """Yield ``(record_number, (satrec, name, designator))`` or ``(record_number, reason)``.

    Record numbers are 1-based. JSON, XML or CSV is told from the content.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such OMM file: {path}") from None
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid OMM JSON: {exc}") from None
        records = data if isinstance(data, list) else [data]
    elif head == "<":
        try:
            records = _xml_records(text)
        except ET.ParseError as exc:
            raise ValueError(f"{path}: not valid OMM XML: {exc}") from None
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "EPOCH" not in reader.fieldnames:
            raise ValueError(f"{path}: not OMM (no JSON, XML or CSV header with EPOCH)")
        records = list(reader)
    if not records:
        raise ValueError(f"{path}: no OMM records")
    for number, fields in enumerate(records, start=1):
        if not isinstance(fields, dict):
            yield number, "record is not an object of OMM fields"
            continue
        try:
            yield number, satrec_from_omm_fields(fields)
        except ValueError as exc:
            yield number, str(exc)
