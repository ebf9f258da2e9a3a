"""Stations: the list with heartbeats and counts, an agent's heartbeat, and
enrolment (a one-time code traded for the station's token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from aposos.center.api_common import (
    API,
    SMALL_BODY,
    ApiError,
    Limit,
    Offset,
    analyst,
    body_as,
    json_body,
    paging,
    read_body,
    station,
    store_of,
)
from aposos.center.auth import Principal, enrol
from aposos.center.bodies import EnrolBody
from aposos.center.heartbeats import HeartbeatBody

__all__ = ["router"]

router = APIRouter()


@router.get(f"{API}/stations", tags=["stations"], summary="Stations, heartbeats and counts")
def list_stations(
    request: Request,
    _who: Annotated[Principal, Depends(analyst)],
    limit: Limit = None,
    offset: Offset = 0,
):
    limit, offset = paging(request, limit, offset)
    return store_of(request).list_stations(limit, offset).to_wire()


@router.post(
    f"{API}/stations/{{code}}/heartbeat",
    tags=["stations"],
    summary="A station agent's heartbeat (with its outbox backlog)",
)
async def heartbeat(request: Request, code: str, who: Annotated[Principal, Depends(station)]):
    if code != who.name:
        raise ApiError(403, f"station {who.name} may not send heartbeats for {code!r}")
    doc = json_body(await read_body(request, SMALL_BODY))
    body_as(HeartbeatBody, doc)  # the raw body is kept: an agent may send more
    backlog, version = doc.get("outbox_backlog"), doc.get("agent_version")
    store = store_of(request)
    when = await run_in_threadpool(
        lambda: store.record_heartbeat(
            code, outbox_backlog=backlog, agent_version=version, body=doc
        )
    )
    return {"code": code, "received_at": when.isoformat(timespec="microseconds") + "Z"}


@router.post(
    f"{API}/enrol",
    tags=["stations"],
    summary="Trade a one-time enrolment code for the station's token",
)
async def enrol_station(request: Request):
    client = request.client.host if request.client else "?"
    wait = request.app.state.enrol_limiter.wait_time(client)
    if wait > 0:
        raise ApiError(429, f"too many enrolment attempts; retry in {wait:.0f} s")
    doc = json_body(await read_body(request, SMALL_BODY))
    code = body_as(EnrolBody, doc).code
    name, token = await run_in_threadpool(enrol, store_of(request), code)
    return {"station": name, "token": token}
