"""Each station's night from its heartbeats: when they came, the gaps, the outbox backlog
over the night, the errors, the night's quality (FWHM, limiting magnitude, sky) and why
frames were not solved.

A heartbeat belongs to the night by the agent's own clock (``station_time``; a simulated
night runs on its own clock), else by the time the center received it. The agent's
frame and reason counts run on from its first night; the night's share is the last
count in the night minus the last one before it (when there is one).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from aposos.center import schema as S

__all__ = ["GAP_INTERVALS", "heartbeat_nights"]

GAP_INTERVALS = 3  # no heartbeat for more than this many periods is a gap
LOOKBACK = timedelta(days=7)  # how far back the count before the night is looked for
MAX_ERRORS = 10


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(microsecond=0).isoformat() + "Z"


def _median(values) -> float | None:
    v = [x for x in values if x is not None]
    return round(statistics.median(v), 2) if v else None


def _reasons(text: str | None) -> Counter:
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        return Counter()
    return Counter({k: v for k, v in doc.items() if isinstance(v, int)})


def _solved(row) -> int | None:
    if row is None or row.frames_reduced is None or row.solve_rate is None:
        return None
    return round(row.solve_rate * row.frames_reduced)


def _one_station(rows: list, lo: datetime, hi: datetime) -> dict:
    before = [r for r in rows if r.at < lo]
    night = [r for r in rows if lo <= r.at < hi]
    base = before[-1] if before else None
    out: dict = {"heartbeats": len(night), "heartbeat_series": [], "gaps": [], "errors": []}
    if not night:
        return out
    times = [r.at for r in night]
    spacing = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    # the period: the agent's, or the typical spacing when longer (a simulated clock
    # moves by frames, so its heartbeats are further apart than the wall-clock period)
    reported = [r.heartbeat_s for r in night if r.heartbeat_s]
    positive = [x for x in spacing if x > 0]
    periods = [statistics.median(v) for v in (reported, positive) if v]
    period = max(periods) if periods else None
    if period:
        for a, b, s in zip(times, times[1:], spacing, strict=False):
            if s > GAP_INTERVALS * period:
                out["gaps"].append({"from": _iso(a), "to": _iso(b), "minutes": round(s / 60, 1)})
    seen = {}
    for r in night:
        if r.last_error and r.last_error not in seen:
            seen[r.last_error] = r.at
    last = night[-1]
    frames = solved = None
    if last.frames_reduced is not None:
        frames = last.frames_reduced - ((base.frames_reduced or 0) if base is not None else 0)
        s_last = _solved(last)
        s_base = (_solved(base) or 0) if base is not None else 0
        solved = None if s_last is None else s_last - s_base
    reasons = _reasons(last.unsolved_reasons)
    if base is not None:
        reasons.subtract(_reasons(base.unsolved_reasons))
    backlog = [r.outbox_backlog for r in night if r.outbox_backlog is not None]
    out.update(
        first_heartbeat=_iso(times[0]),
        last_heartbeat_night=_iso(times[-1]),
        heartbeat_period_s=None if period is None else round(period, 1),
        longest_silence_min=round(max(spacing) / 60, 1) if spacing else None,
        backlog_max=max(backlog) if backlog else None,
        backlog_end=backlog[-1] if backlog else None,
        heartbeat_series=[
            {"t": _iso(r.at), "outbox_backlog": r.outbox_backlog} for r in night
        ],  # fmt: skip
        errors=[{"first_seen": _iso(t), "error": e} for e, t in seen.items()][-MAX_ERRORS:],
        frames_night=frames if frames is None or frames >= 0 else None,
        solved_night=solved if solved is None or solved >= 0 else None,
        counted_from=_iso(base.at) if base is not None else "the agent's start",
        unsolved_reasons={
            k: n for k, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0
        },  # fmt: skip
        fwhm_arcsec=_median(r.fwhm_arcsec for r in night),
        limiting_mag=_median(r.limiting_mag for r in night),
        sky_mag_arcsec2=_median(r.sky_mag_arcsec2 for r in night),
    )
    return out


def heartbeat_nights(conn, windows: dict[str, tuple[datetime, datetime]]) -> dict[str, dict]:
    """``{code: the station's night from its heartbeats}`` for each ``(start, end)`` window."""
    H = S.heartbeats
    out = {}
    for code, (lo, hi) in sorted(windows.items()):
        rows = conn.execute(
            select(H)
            .where(H.c.station == code, H.c.at >= lo - LOOKBACK, H.c.at < hi)
            .order_by(H.c.at, H.c.id)
        ).all()
        out[code] = _one_station(rows, lo, hi)
    return out
