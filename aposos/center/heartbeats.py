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
import math
from datetime import datetime

from aposos.center.checks import DB_INT_MAX, text_problem
from aposos.center.dbtypes import parse_time

__all__ = ["COUNTERS", "QUALITY", "heartbeat_problem", "heartbeat_row"]

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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def heartbeat_problem(doc: dict) -> str | None:
    """Why a heartbeat body cannot be kept, in one line; ``None`` when it is fine."""
    for name in COUNTERS:
        v = doc.get(name)
        if v is not None and not (_is_int(v) and 0 <= v <= DB_INT_MAX):
            return f"{name} must be a non-negative integer (at most {DB_INT_MAX})"
    period = doc.get("heartbeat_s")
    if period is not None and not (_is_number(period) and 1.0 <= period <= 3600.0):
        return "heartbeat_s must be a number of seconds from 1 to 3600"
    if doc.get("station_time") is not None and _station_time(doc) is None:
        return "station_time must be an ISO 8601 time between 1957 and 2099"
    rate = doc.get("solve_rate")
    if rate is not None and not (_is_number(rate) and 0.0 <= rate <= 1.0):
        return "solve_rate must be a number from 0 to 1"
    for name, (lo, hi) in QUALITY.items():
        v = doc.get(name)
        if v is not None and not (_is_number(v) and lo <= v <= hi):
            return f"{name} must be a number from {lo:g} to {hi:g}"
    for name in ("agent_version", "last_error"):
        v = doc.get(name)
        if v is not None and not isinstance(v, str):
            return f"{name} must be a string"
    if doc.get("agent_version") is not None:
        problem = text_problem("agent_version", doc["agent_version"], 64)
        if problem:
            return problem
    reasons = doc.get("unsolved_reasons")
    if reasons is not None:
        if not isinstance(reasons, dict) or len(reasons) > MAX_REASONS:
            return f"unsolved_reasons must be an object of at most {MAX_REASONS} reasons"
        for why, n in reasons.items():
            problem = text_problem("an unsolved reason", why, MAX_REASON_LEN)
            if problem or not why:
                return problem or "an unsolved reason is empty"
            if not (_is_int(n) and 0 <= n <= DB_INT_MAX):
                return f"unsolved_reasons[{why[:40]!r}] must be a non-negative integer"
    return None


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
