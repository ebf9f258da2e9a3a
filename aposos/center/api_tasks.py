"""Tasking routes of the HTTP API: tasks per station, task reports, analyst requests.

- ``GET /api/v1/tasks?station=CODE&since=ISO`` - the station's current tasks (a station
  sees only its own; analysts and admins any): ``{"generated", "tasks": [Task wire]}``.
  ``since``: tasks ending at or after it; optional ``until`` and ``night``.
- ``POST /api/v1/tasks/{task_id}/report`` - ``{"status": "executed"|"skipped"|"failed",
  "frames": int, "tracklets": int, "reason": str|null}`` (station role, own tasks).
- ``POST /api/v1/requests`` - an analyst asks for observations (analyst or admin)::

      {"kind": "object", "norad_id": 25544 | "kind": "field", "ra_deg": .., "dec_deg": ..,
       "start": ISO, "end": ISO, "priority": 0-99 (default 50),
       "simultaneous": false, "reason": "..."}

- ``GET /api/v1/requests`` - the requests (analyst or admin).

A request or a report makes the planner re-make the plans it touches, in the
background (:class:`Replanner`), from the present moment on; tasks already reported
or under way are kept. New uncorrelated tracks are looked for every ``poll_s`` and
also lead to a re-plan of the current night.
"""

import logging
import math
import threading
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from aposos.center import tasking_store as TS
from aposos.center.api_common import (
    API,
    SMALL_BODY,
    ApiError,
    analyst,
    caller,
    json_body,
    read_body,
    station,
)
from aposos.center.auth import Principal
from aposos.center.dbtypes import utcnow
from aposos.model import TaskReport

__all__ = ["Replanner", "router", "validate_request"]

log = logging.getLogger(__name__)
REQUEST_KEYS = {"kind", "norad_id", "ra_deg", "dec_deg", "start", "end", "priority",
                "simultaneous", "reason"}  # fmt: skip
MAX_REQUEST_DAYS = 14.0


def validate_request(doc: dict) -> dict:
    """Check an analyst request; returns it with parsed times. Raises ``ValueError``."""
    from aposos.center.dbtypes import parse_time

    unknown = set(doc) - REQUEST_KEYS
    if unknown:
        raise ValueError(f"unknown request field(s): {', '.join(sorted(unknown))}")
    kind = doc.get("kind")
    if kind not in ("object", "field"):
        raise ValueError("kind must be 'object' or 'field'")
    out = {"kind": kind}
    if kind == "object":
        norad = doc.get("norad_id")
        if isinstance(norad, bool) or not isinstance(norad, int) or not 0 < norad < 10**9:
            raise ValueError("an object request needs norad_id, a positive integer")
        out["norad_id"] = norad
    else:
        for key, lo, hi in (("ra_deg", 0.0, 360.0), ("dec_deg", -90.0, 90.0)):
            value = doc.get(key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and lo <= value <= hi)
            ):
                raise ValueError(f"a field request needs {key} within [{lo:g}, {hi:g}]")
            out[key] = float(value)
    for key in ("start", "end"):
        value = doc.get(key)
        if not isinstance(value, str):
            raise ValueError(f"{key} must be an ISO 8601 UTC time")
        out[key] = parse_time(value)
    if out["end"] <= out["start"]:
        raise ValueError("end must be after start")
    if out["end"] - out["start"] > timedelta(days=MAX_REQUEST_DAYS):
        raise ValueError(f"the window may span at most {MAX_REQUEST_DAYS:g} days")
    priority = doc.get("priority", 50)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 99:
        raise ValueError("priority must be an integer within 0..99 (higher first)")
    out["priority"] = priority
    simultaneous = doc.get("simultaneous", False)
    if not isinstance(simultaneous, bool):
        raise ValueError("simultaneous must be true or false")
    out["simultaneous"] = simultaneous
    reason = doc.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise ValueError("reason must be a string of at most 500 characters")
    out["reason"] = reason
    return out


class Replanner:
    """Re-makes plans in a background thread when requests, reports or UCTs arrive."""

    def __init__(self, store, config, *, poll_s: float = 30.0, settle_s: float = 1.0):
        self.store, self.config = store, config
        self.poll_s, self.settle_s = poll_s, settle_s
        self._wanted: dict[str, str] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._last_uct = None
        self.done = 0  # plans re-made (for tests and logs)
        self._thread = threading.Thread(target=self._run, name="aposos-replanner", daemon=True)
        self._thread.start()

    def want(self, nights, trigger: str) -> None:
        with self._cond:
            for night in nights:
                self._wanted[night] = trigger
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._wanted and not self._stop:
                    self._cond.wait(self.poll_s)
                if self._stop:
                    return
                wanted, self._wanted = self._wanted, {}
            if not wanted:
                wanted = self._new_ucts()
            for night, trigger in sorted(wanted.items()):
                if not TS.nights_with_plans(
                    self.store, utcnow(), utcnow() + timedelta(days=30)
                ).count(night):
                    continue  # the night is over: nothing left to re-plan
                try:
                    from aposos.center.tasking import replan

                    replan(self.store, self.config, night, now=utcnow(), trigger=trigger)
                    self.done += 1
                except Exception:  # one failed re-plan must not stop the next
                    log.exception("re-planning night %s failed", night)

    def _new_ucts(self) -> dict:
        from sqlalchemy import func, select

        from aposos.center import schema as S

        C = S.correlations
        try:
            with self.store.read() as conn:
                top = conn.execute(select(func.max(C.c.id)).where(
                    C.c.status == "uncorrelated")).scalar()  # fmt: skip
        except Exception:
            return {}
        if top is None or top == self._last_uct:
            return {}
        first = self._last_uct is None
        self._last_uct = top
        if first:
            return {}
        now = utcnow()
        return {n: "uct" for n in TS.nights_with_plans(self.store, now, now + timedelta(hours=1))}


def _replanner(request: Request) -> Replanner:
    state = request.app.state
    with _LOCK:
        if getattr(state, "replanner", None) is None:
            state.replanner = Replanner(state.store, state.config)
    return state.replanner


_LOCK = threading.Lock()
router = APIRouter()


def _time(value, name):
    from aposos.center.dbtypes import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ApiError(422, f"{name}: {exc}") from None


@router.get(f"{API}/tasks", tags=["tasking"], summary="A station's current tasks")
def list_tasks(
    request: Request,
    who: Annotated[Principal, Depends(caller)],
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    night: str | None = None,
):
    if who.role == "station":
        if station not in (None, who.name):
            raise ApiError(403, f"station {who.name} may not read the tasks of {station}")
        station = who.name
    if night is not None:
        from aposos.center.tasking import parse_night

        try:
            night = str(parse_night(night))
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
    return TS.list_tasks(
        request.app.state.store,
        station=station,
        since=_time(since, "since"),
        until=_time(until, "until"),
        night=night,
        with_state=who.role != "station",
    )


@router.post(
    f"{API}/tasks/{{task_id}}/report", tags=["tasking"], summary="What a station did with a task"
)
async def report(request: Request, task_id: str, who: Annotated[Principal, Depends(station)]):
    doc = json_body(await read_body(request, SMALL_BODY))
    try:
        rep = TaskReport.from_wire(doc)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    store = request.app.state.store
    found = await run_in_threadpool(TS.task_station, store, task_id)
    if found is None:
        raise ApiError(404, f"no task {task_id}")
    if found["station"] != who.name:
        raise ApiError(403, f"task {task_id} belongs to station {found['station']}")
    answer = await run_in_threadpool(TS.report_task, store, task_id, rep)
    if rep.status != "executed":  # not observed: the plan must find another chance
        _replanner(request).want([found["night"]], "report")
    return answer


@router.post(f"{API}/requests", tags=["tasking"], summary="Ask for observations", status_code=201)
async def add_request(request: Request, who: Annotated[Principal, Depends(analyst)]):
    doc = json_body(await read_body(request, SMALL_BODY))
    try:
        req = validate_request(doc)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    store = request.app.state.store
    rid = await run_in_threadpool(TS.add_request, store, who.name, req)
    nights = await run_in_threadpool(
        TS.nights_with_plans, store, req["start"] - timedelta(hours=14), req["end"]
    )
    if nights:
        _replanner(request).want(nights, "request")
    return JSONResponse({"request_id": rid, "replanning": nights}, status_code=201)


@router.get(f"{API}/requests", tags=["tasking"], summary="Analyst requests")
def list_requests(request: Request, _who: Annotated[Principal, Depends(analyst)]):
    return {"items": TS.list_requests(request.app.state.store)}
