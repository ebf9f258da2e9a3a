"""A station agent's heartbeat: the fields the center checks, and the row it keeps.

Every field is optional (an older agent sends fewer); a field that is present must
make sense, or the heartbeat is refused with one line naming it. The night-quality
figures are medians over the frames the agent solved shortly before the heartbeat:
FWHM of the stars (arcsec), limiting magnitude (5 sigma, point source) and the sky's
surface brightness (mag/arcsec^2). ``station_time`` is the agent's clock when it
sent the heartbeat (a simulated night's clock is not the wall clock): the report
places heartbeats in the night by it, else by the time the center received them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from pydantic import Field

from aposos.center.bodies import Body, checked
from aposos.center.checks import DB_INT_MAX, text_problem
from aposos.center.dbtypes import parse_time

__all__ = ["COUNTERS", "QUALITY", "HeartbeatBody", "heartbeat_row"]

COUNTERS = ("outbox_backlog", "frames_captured", "frames_reduced", "frames_failed",
            "frames_waiting", "quality_frames")  # fmt: skip
# name: (lowest, highest) a real sky and camera can give
QUALITY = {
    "fwhm_arcsec": (0.05, 600.0),
    "limiting_mag": (-5.0, 30.0),
    "sky_mag_arcsec2": (5.0, 30.0),
}
MAX_REASONS = 50
EARLIEST, LATEST = datetime(1957, 1, 1), datetime(2100, 1, 1)
MAX_REASON_LEN = 200
MAX_ERROR_LEN = 500


def _reasons_problem(reasons: dict) -> str | None:
    if len(reasons) > MAX_REASONS:
        return f"unsolved_reasons must be an object of at most {MAX_REASONS} reasons"
    for why, n in reasons.items():
        problem = text_problem("an unsolved reason", why, MAX_REASON_LEN)
        if problem or not why:
            return problem or "an unsolved reason is empty"
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= DB_INT_MAX:
            return f"unsolved_reasons[{why[:40]!r}] must be a non-negative integer"
    return None


def _time_problem(text: str) -> str | None:
    if _station_time({"station_time": text}) is None:
        return "station_time must be an ISO 8601 time between 1957 and 2099"
    return None


Count = Annotated[
    int | None,
    Field(ge=0, le=DB_INT_MAX, description=f"a non-negative integer (at most {DB_INT_MAX})"),
]


def _quality(name: str):
    lo, hi = QUALITY[name]
    return Field(None, ge=lo, le=hi, description=f"a number from {lo:g} to {hi:g}")


class HeartbeatBody(Body):
    """What a heartbeat may hold; every field optional, checked in this order."""

    outbox_backlog: Count = None
    frames_captured: Count = None
    frames_reduced: Count = None
    frames_failed: Count = None
    frames_waiting: Count = None
    quality_frames: Count = None
    heartbeat_s: float | None = Field(
        None, ge=1.0, le=3600.0, description="a number of seconds from 1 to 3600"
    )
    station_time: Annotated[str | None, checked(_time_problem)] = Field(
        None, description="an ISO 8601 time between 1957 and 2099"
    )
    solve_rate: float | None = Field(None, ge=0.0, le=1.0, description="a number from 0 to 1")
    fwhm_arcsec: float | None = _quality("fwhm_arcsec")
    limiting_mag: float | None = _quality("limiting_mag")
    sky_mag_arcsec2: float | None = _quality("sky_mag_arcsec2")
    agent_version: Annotated[
        str | None, checked(lambda v: text_problem("agent_version", v, 64))
    ] = Field(None, description="a string")
    last_error: str | None = Field(None, description="a string")
    unsolved_reasons: Annotated[dict | None, checked(_reasons_problem)] = Field(
        None, description=f"an object of at most {MAX_REASONS} reasons"
    )


def _station_time(doc: dict) -> datetime | None:
    """The station's clock at the heartbeat (the simulator's clock in a simulated night)."""
    text = doc.get("station_time")
    if not isinstance(text, str) or len(text) > 40:
        return None
    try:
        t = parse_time(text)
    except ValueError:
        return None
    return t if EARLIEST <= t < LATEST else None


def heartbeat_row(code: str, when: datetime, doc: dict) -> dict:
    """The ``heartbeats`` row of a checked heartbeat body."""
    reasons = doc.get("unsolved_reasons")
    error = doc.get("last_error")
    return {
        "station": code,
        "received_at": when,
        "station_time": _station_time(doc),
        "at": _station_time(doc) or when,
        "heartbeat_s": doc.get("heartbeat_s"),
        "outbox_backlog": doc.get("outbox_backlog"),
        "frames_reduced": doc.get("frames_reduced"),
        "frames_failed": doc.get("frames_failed"),
        "solve_rate": doc.get("solve_rate"),
        "fwhm_arcsec": doc.get("fwhm_arcsec"),
        "limiting_mag": doc.get("limiting_mag"),
        "sky_mag_arcsec2": doc.get("sky_mag_arcsec2"),
        "quality_frames": doc.get("quality_frames"),
        "unsolved_reasons": json.dumps(reasons, sort_keys=True) if reasons else None,
        "last_error": error[:MAX_ERROR_LEN] if isinstance(error, str) and error else None,
    }
