"""Plan against executed, and trends against previous nights, from the center database.

- :func:`plan_vs_executed`: the night's tasks (the current plan: superseded tasks left
  out) per station, by the state the stations reported (executed, skipped, failed) or
  ``planned`` when no report came, with frames planned against frames taken.
- :func:`trends`: the last nights' totals per station: tracklets, share correlated, and
  the share of frames solved from the heartbeats.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select

from aposos.center import schema as S
from aposos.center.report_beats import heartbeat_nights

__all__ = ["TASK_STATES", "TREND_NIGHTS", "plan_vs_executed", "trends"]

TASK_STATES = ("executed", "skipped", "failed", "planned")
TREND_NIGHTS = 7


def plan_vs_executed(conn, night: str) -> list[dict]:
    """One row per station with tasks that night."""
    T = S.tasks
    rows = conn.execute(
        select(T.c.station, T.c.state, T.c.frames, T.c.frames_done, T.c.tracklets)
        .where(T.c.night == night, T.c.state != "superseded")
        .order_by(T.c.station, T.c.t_start, T.c.task_id)
    ).all()
    per: dict[str, dict] = {}
    for r in rows:
        s = per.setdefault(
            r.station,
            {"code": r.station, "tasks": 0, **dict.fromkeys(TASK_STATES, 0),
             "frames_planned": 0, "frames_taken": 0, "tracklets_reported": 0},
        )  # fmt: skip
        s["tasks"] += 1
        s[r.state if r.state in TASK_STATES else "planned"] += 1
        s["frames_planned"] += r.frames or 0
        s["frames_taken"] += r.frames_done or 0
        s["tracklets_reported"] += r.tracklets or 0
    for s in per.values():
        s["executed_pct"] = round(100.0 * s["executed"] / s["tasks"], 1) if s["tasks"] else None
    return [per[k] for k in sorted(per)]


def trends(conn, night: str, windows: dict[str, tuple[datetime, datetime]],
           n: int = TREND_NIGHTS) -> list[dict]:  # fmt: skip
    """One row per (night, station) for the ``n`` nights ending with ``night``, oldest
    first; nights where a station has neither tracklets nor heartbeats are left out."""
    if not windows:
        return []
    K = S.tracklets
    first = min(w[0] for w in windows.values()) - timedelta(days=n - 1)
    last = max(w[1] for w in windows.values())
    counts: dict[tuple[int, str], Counter] = defaultdict(Counter)
    for r in conn.execute(
        select(K.c.station, K.c.t_mid, K.c.status).where(
            K.c.t_mid >= first, K.c.t_mid < last, K.c.duplicate_of.is_(None)
        )
    ):
        if r.station not in windows:
            continue
        back = -((r.t_mid - windows[r.station][1]) // timedelta(days=1)) - 1  # 0: this night
        if 0 <= back < n:
            counts[(back, r.station)][r.status] += 1
    day = datetime.fromisoformat(night)
    out = []
    for back in range(n - 1, -1, -1):
        shifted = {c: (lo - timedelta(days=back), hi - timedelta(days=back))
                   for c, (lo, hi) in windows.items()}  # fmt: skip
        beats = heartbeat_nights(conn, shifted)
        for code in sorted(windows):
            c, b = counts.get((back, code), Counter()), beats[code]
            total = sum(c.values())
            if not total and not b["heartbeats"]:
                continue
            frames, solved = b.get("frames_night"), b.get("solved_night")
            out.append({
                "night": (day - timedelta(days=back)).date().isoformat(),
                "code": code,
                "tracklets": total,
                "correlated_pct": round(100.0 * c["correlated"] / total, 1) if total else None,
                "solved_pct": round(100.0 * solved / frames, 1) if frames and solved is not None
                else None,
            })  # fmt: skip
    return out
