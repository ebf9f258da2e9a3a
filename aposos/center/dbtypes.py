"""Small shared pieces of the center database layer: time conventions, filters, pages.

Times go in and out of the database as naive UTC :class:`datetime.datetime`;
:func:`iso` formats them for the wire (ISO 8601 with a ``Z``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "ROLES",
    "TRACKLET_STATUSES",
    "Filters",
    "Page",
    "chunks",
    "iso",
    "num",
    "page_of",
    "parse_time",
    "utcnow",
]

ROLES = ("station", "analyst", "admin")
# "duplicate": the same observations as an earlier tracklet (linked, not correlated)
TRACKLET_STATUSES = ("pending", "correlated", "ambiguous", "uncorrelated", "duplicate")
IN_CHUNK = 500  # values per IN (...) list


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (the database convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 UTC with microseconds and a ``Z``; ``None`` stays ``None``."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``Z``, an offset, or none meaning UTC) to naive UTC.

    Raises ``ValueError`` with the offending text.
    """
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is not None:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    return dt


def num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


@dataclass(frozen=True)
class Filters:
    """Filters shared by the list queries (``None`` means no filter)."""

    station: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    norad_id: int | None = None


@dataclass
class Page:
    """One page of a list: its items and the offset of the next page (``None``: last)."""

    items: list[dict]
    offset: int
    limit: int
    next_offset: int | None

    def to_wire(self) -> dict:
        return {
            "items": self.items,
            "offset": self.offset,
            "limit": self.limit,
            "next_offset": self.next_offset,
        }


def chunks(values: list, n: int = IN_CHUNK) -> Iterator[list]:
    """Slices of ``values`` small enough for one ``IN (...)`` list."""
    for i in range(0, len(values), n):
        yield values[i : i + n]


def page_of(items: list[dict], rows: Sequence, limit: int, offset: int) -> Page:
    """A page from ``limit + 1`` fetched rows (the extra row tells there is more)."""
    return Page(
        items=items,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(rows) > limit else None,
    )
