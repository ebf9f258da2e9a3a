"""Two-line and three-line element sets, checked line by line before SGP4 initialisation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sgp4.model import WGS72
from sgp4.model import Satrec as PySatrec

__all__ = ["TleRecord", "iter_tle_records", "tle_checksum"]

TLE_LENGTH = 69


@dataclass
class TleRecord:
    satrec: PySatrec
    name: str
    intl_designator: str
    line_no: int


def tle_checksum(line: str) -> int:
    """Modulo-10 checksum of the first 68 columns (digits count, '-' counts 1)."""
    total = 0
    for ch in line[:68]:
        if ch.isdigit():
            total += int(ch)
        elif ch == "-":
            total += 1
    return total % 10


def _check_line(line: str, number: str, line_no: int) -> str | None:
    if len(line) < TLE_LENGTH:
        return f"truncated line {number} ({len(line)} characters, a TLE line has {TLE_LENGTH})"
    if not line[68].isdigit():
        return f"line {number} has no checksum digit in column 69"
    expected, computed = int(line[68]), tle_checksum(line)
    if expected != computed:
        return f"checksum error on line {number}: column 69 says {expected}, computed {computed}"
    return None


def _designator(line1: str) -> str:
    """International designator as YYYY-NNNP (e.g. 1998-067A) from columns 10-17."""
    raw = line1[9:17].strip()
    if len(raw) < 5 or not raw[:5].isdigit():
        return raw
    yy = int(raw[:2])
    year = 1900 + yy if yy >= 57 else 2000 + yy
    return f"{year}-{raw[2:5]}{raw[5:]}"


def iter_tle_records(lines: Iterable[str]) -> Iterator[TleRecord | tuple[int, str]]:
    """Yield a :class:`TleRecord` per good element set, ``(line_no, reason)`` per bad one."""
    name = ""
    name_line = 0
    pending: tuple[int, str] | None = None  # a line 1 waiting for its line 2
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n").rstrip()
        if not line.strip():
            continue
        if line.startswith("1 ") or (line.startswith("1") and len(line) >= 60):
            if pending:
                yield pending[0], "line 1 is not followed by its line 2"
            pending = (line_no, line)
            continue
        if line.startswith("2 ") or (line.startswith("2") and len(line) >= 60 and pending):
            if not pending:
                yield line_no, "line 2 without a line 1 before it"
                continue
            l1_no, line1 = pending
            pending = None
            problem = _check_line(line1, "1", l1_no)
            where = l1_no
            if problem is None:
                problem = _check_line(line, "2", line_no)
                where = line_no
            if problem is None and line1[2:7] != line[2:7]:
                problem = (
                    f"catalogue numbers differ between line 1 ({line1[2:7].strip()}) "
                    f"and line 2 ({line[2:7].strip()})"
                )
            if problem is None:
                try:
                    satrec = PySatrec.twoline2rv(line1[:TLE_LENGTH], line[:TLE_LENGTH], WGS72)
                except (ValueError, IndexError) as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    problem = f"bad field: {first}"
                    where = l1_no
            if problem is not None:
                yield where, problem
            else:
                label = name if name and name_line == l1_no - 1 else ""
                yield TleRecord(satrec, label, _designator(line1), l1_no)
            name = ""
            continue
        # A title line (3LE); CelesTrak sometimes prefixes it with "0 ".
        if pending:
            yield pending[0], "line 1 is not followed by its line 2"
            pending = None
        name = line[2:].strip() if line.startswith("0 ") else line.strip()
        name_line = line_no
    if pending:
        yield pending[0], "line 1 is not followed by its line 2 (end of file)"
