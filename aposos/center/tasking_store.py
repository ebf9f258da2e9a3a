"""Plans, tasks, task reports and analyst requests in the center database.

A plan is stored as a new version (``task_plans``) each time it is made; its tasks go
into ``tasks`` keyed by a stable id, so a task that a re-made plan keeps keeps its id
(stations reconcile their schedule by id). Tasks a newer plan drops become
``superseded``; reported tasks (executed, skipped, failed) are never touched again.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
from sqlalchemy import and_, or_, select

from aposos.center import schema as S
from aposos.center.dbtypes import iso, utcnow
from aposos.center.tasking_schedule import FieldTarget, Planned
from aposos.model import Task, TaskReport

__all__ = [
    "TaskNotFound",
    "add_request",
    "catalogue_for_night",
    "kept_tasks",
    "list_requests",
    "list_tasks",
    "planned_from_row",
    "report_task",
    "save_plan",
]

REPORTED = ("executed", "skipped", "failed")


class TaskNotFound(LookupError):
    pass


def _naive(t) -> datetime:
    return np.datetime64(t, "us").astype(datetime)


def catalogue_for_night(store, day: np.datetime64):
    """The stored catalogue snapshot whose median epoch is nearest the night, loaded."""
    from aposos.orbit.catalogue import Catalogue

    snaps = store.list_snapshots()
    if not snaps:
        raise ValueError("no catalogue snapshot is stored: put one first (PUT /api/v1/catalogue)")
    night = np.datetime64(day, "D").astype("datetime64[us]") + np.timedelta64(18, "h")

    def distance(s):
        median = np.datetime64(s["epoch_median"].rstrip("Z"), "us")
        return abs((median - night) / np.timedelta64(1, "s"))

    best = min(snaps, key=distance)
    N = S.snapshots
    with store.read() as conn:
        path = conn.execute(select(N.c.path).where(N.c.id == best["id"])).scalar()
    return Catalogue.load_zarr(path), best


def kept_tasks(store, night: str, now) -> list[dict]:
    """Tasks of ``night`` a re-plan must keep: reported ones, and those started by ``now``."""
    T = S.tasks
    cond = T.c.state.in_(REPORTED)
    if now is not None:
        cond = or_(cond, and_(T.c.state == "planned", T.c.t_start < _naive(now)))
    with store.read() as conn:
        rows = conn.execute(select(T).where(T.c.night == night, cond).order_by(T.c.t_start)).all()
    return [r._asdict() for r in rows]


def planned_from_row(row: dict, catalogue) -> Planned:
    """A stored task as the scheduler sees it (for kept tasks)."""
    covers = []
    for norad in json.loads(row["covers"] or "[]"):
        try:
            covers.append(catalogue.index_of(int(norad)))
        except KeyError:
            pass
    target_row = None
    target = None
    if row["norad_id"] is not None:
        try:
            target_row = catalogue.index_of(int(row["norad_id"]))
        except KeyError:
            target_row = None
    if target_row is None:
        target = FieldTarget(key=f"task:{row['task_id']}", priority=row["priority"],
                             reason=row["reason"], ra_deg=row["ra_deg"], dec_deg=row["dec_deg"],
                             epoch=np.datetime64(row["t_start"], "us"),
                             tracking=row["tracking"])  # fmt: skip
    return Planned(
        row["station"], np.datetime64(row["t_start"], "us"), np.datetime64(row["t_end"], "us"),
        row["tracking"], row["priority"], row["reason"], row=target_row, target=target,
        ra_deg=row["ra_deg"], dec_deg=row["dec_deg"], covers=covers, kept=True,
        task_id=row["task_id"], request_id=row["request_id"],
    )  # fmt: skip


def save_plan(store, plan, *, now=None, trigger: str = "command", snapshot=None,
              catalogue=None) -> int:  # fmt: skip
    """Store a plan version: supersede the old unstarted tasks, upsert the new ones."""
    T, P = S.tasks, S.task_plans
    created = utcnow()
    summary = json.dumps(plan.summary())
    by_id = {p.task_id: p for p in plan.planned}
    with store.write() as conn:
        plan_id = conn.execute(P.insert().values(
            night=plan.night, created_at=created,
            planned_from=None if now is None else _naive(now), trigger=trigger[:64],
            snapshot=None if snapshot is None else json.dumps(
                {"id": snapshot.get("id"), "source_name": snapshot.get("source_name")}),
            summary=summary,
        )).inserted_primary_key[0]  # fmt: skip
        stale = and_(T.c.night == plan.night, T.c.state == "planned")
        if now is not None:
            stale = and_(stale, T.c.t_start >= _naive(now))
        conn.execute(T.update().where(stale).values(state="superseded"))
        for task in plan.tasks:
            p = by_id.get(task.task_id)
            covers = []
            if p is not None and catalogue is not None:
                covers = [int(catalogue.norad_id[r]) for r in p.covers]
            values = {
                "plan_id": plan_id, "night": plan.night, "station": task.station,
                "t_start": _naive(task.start), "t_end": _naive(task.end),
                "target_kind": task.kind, "norad_id": task.norad_id,
                "name": None if task.name is None else task.name[:128],
                "ra_deg": task.ra_deg, "dec_deg": task.dec_deg, "tracking": task.tracking,
                "rate_ra_arcsec_s": task.rate_ra_arcsec_s,
                "rate_dec_arcsec_s": task.rate_dec_arcsec_s, "exposure_s": task.exposure_s,
                "frames": task.frames, "priority": task.priority, "reason": task.reason,
                "request_id": None if p is None else p.request_id,
                "covers": json.dumps(covers), "state": "planned",
            }  # fmt: skip
            old = conn.execute(select(T.c.state).where(T.c.task_id == task.task_id)).first()
            if old is None:
                conn.execute(T.insert().values(task_id=task.task_id, **values))
            elif old.state not in REPORTED:
                conn.execute(T.update().where(T.c.task_id == task.task_id).values(**values))
    return int(plan_id)


def _task_of(r) -> Task:
    return Task(
        task_id=r.task_id, station=r.station, start=np.datetime64(r.t_start, "us"),
        end=np.datetime64(r.t_end, "us"), kind=r.target_kind, norad_id=r.norad_id,
        name=r.name, ra_deg=r.ra_deg, dec_deg=r.dec_deg, tracking=r.tracking,
        rate_ra_arcsec_s=r.rate_ra_arcsec_s, rate_dec_arcsec_s=r.rate_dec_arcsec_s,
        exposure_s=r.exposure_s, frames=r.frames, priority=r.priority, reason=r.reason,
    )  # fmt: skip


def list_tasks(store, *, station=None, since=None, until=None, night=None,
               with_state: bool = False) -> dict:  # fmt: skip
    """Current tasks (not superseded), by start time: ``{"generated", "tasks"}``.

    ``since``: tasks ending at or after it; ``until``: starting before it.
    ``generated`` is when the newest plan version in force was made.
    """
    T, P = S.tasks, S.task_plans
    q = select(T).where(T.c.state != "superseded").order_by(T.c.t_start, T.c.station)
    if station is not None:
        q = q.where(T.c.station == station)
    if since is not None:
        q = q.where(T.c.t_end >= since)
    if until is not None:
        q = q.where(T.c.t_start < until)
    if night is not None:
        q = q.where(T.c.night == night)
    with store.read() as conn:
        rows = conn.execute(q).all()
        plan_ids = {r.plan_id for r in rows}
        newest = None
        if plan_ids:
            newest = conn.execute(
                select(P.c.created_at).where(P.c.id.in_(list(plan_ids)))
                .order_by(P.c.created_at.desc()).limit(1)
            ).scalar()  # fmt: skip
        if newest is None:
            newest = conn.execute(select(P.c.created_at).order_by(P.c.id.desc()).limit(1)).scalar()
    tasks = []
    for r in rows:
        wire = _task_of(r).to_wire()
        if with_state:
            wire["state"] = r.state
            wire["frames_done"], wire["tracklets"] = r.frames_done, r.tracklets
        tasks.append(wire)
    return {"generated": iso(newest or utcnow()), "tasks": tasks}


def task_station(store, task_id: str) -> dict | None:
    T = S.tasks
    with store.read() as conn:
        r = conn.execute(select(T.c.station, T.c.state, T.c.night).where(
            T.c.task_id == task_id)).first()  # fmt: skip
    return None if r is None else r._asdict()


def report_task(store, task_id: str, report: TaskReport) -> dict:
    """Record what a station did; a repeated identical report is accepted again."""
    T = S.tasks
    now = utcnow()
    with store.write() as conn:
        r = conn.execute(select(T.c.state, T.c.night).where(T.c.task_id == task_id)).first()
        if r is None:
            raise TaskNotFound(task_id)
        conn.execute(T.update().where(T.c.task_id == task_id).values(
            state=report.status, reported_at=now, frames_done=report.frames,
            tracklets=report.tracklets, report_reason=report.reason,
        ))  # fmt: skip
    return {"task_id": task_id, "state": report.status, "night": r.night,
            "received_at": iso(now)}  # fmt: skip


def add_request(store, who: str, req: dict) -> int:
    """Store a validated analyst request; returns its id."""
    R = S.task_requests
    with store.write() as conn:
        return int(conn.execute(R.insert().values(
            created_at=utcnow(), created_by=who, kind=req["kind"], norad_id=req.get("norad_id"),
            ra_deg=req.get("ra_deg"), dec_deg=req.get("dec_deg"), t_start=req["start"],
            t_end=req["end"], priority=req["priority"], simultaneous=int(req["simultaneous"]),
            reason=req.get("reason"), state="open",
        )).inserted_primary_key[0])  # fmt: skip


def list_requests(store) -> list[dict]:
    R = S.task_requests
    with store.read() as conn:
        rows = conn.execute(select(R).order_by(R.c.id)).all()
    return [
        {"request_id": r.id, "created_at": iso(r.created_at), "created_by": r.created_by,
         "kind": r.kind, "norad_id": r.norad_id, "ra_deg": r.ra_deg, "dec_deg": r.dec_deg,
         "start": iso(r.t_start), "end": iso(r.t_end), "priority": r.priority,
         "simultaneous": bool(r.simultaneous), "reason": r.reason, "state": r.state}
        for r in rows
    ]  # fmt: skip


def nights_with_plans(store, start: datetime, end: datetime) -> list[str]:
    """Nights that have a stored plan with tasks overlapping [start, end)."""
    T = S.tasks
    with store.read() as conn:
        rows = conn.execute(select(T.c.night).where(T.c.t_end > start, T.c.t_start < end)
                            .distinct()).all()  # fmt: skip
    return sorted(r.night for r in rows)
