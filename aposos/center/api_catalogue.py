"""The catalogue: put a TLE/3LE or OMM file as a new snapshot, list the snapshots,
and correlate a time range again (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from aposos.center import worker as queue
from aposos.center.api_common import (
    API,
    SMALL_BODY,
    ApiError,
    admin,
    analyst,
    body_as,
    check,
    config_of,
    json_body,
    query_filters,
    read_body,
    store_of,
)
from aposos.center.auth import Principal
from aposos.center.bodies import RecorrelateBody
from aposos.center.checks import text_problem
from aposos.center.snapshots import SnapshotError, create_snapshot

__all__ = ["router"]

router = APIRouter()


@router.put(
    f"{API}/catalogue",
    tags=["catalogue"],
    summary="Put a TLE/3LE or OMM (JSON, XML, CSV) file: a new catalogue snapshot",
    status_code=201,
)
async def put_catalogue(
    request: Request,
    _who: Annotated[Principal, Depends(admin)],
    name: Annotated[str, Query(description="source name to record")] = "upload",
    force: Annotated[
        bool, Query(description="store it even if it looks implausible next to the last")
    ] = False,
):
    cfg = config_of(request)
    check(text_problem("name", name, 256))
    body = await read_body(request, cfg.max_catalogue_bytes)
    store = store_of(request)
    try:
        result = await run_in_threadpool(
            lambda: create_snapshot(store, cfg, body, name, force=force)
        )
    except SnapshotError as exc:
        raise ApiError(422, str(exc), **exc.extra) from None
    woken = await run_in_threadpool(queue.wake_waiting, store)
    requeued = 0
    if result.new:
        requeued = await run_in_threadpool(
            queue.requeue_worse_results, store, cfg, result.snapshot["id"]
        )
    return JSONResponse(
        {
            "snapshot": result.snapshot,
            "new": result.new,
            "problems": result.problems,
            "jobs_woken": woken,
            "requeued": requeued,
        },
        status_code=201 if result.new else 200,
    )


@router.get(f"{API}/catalogue", tags=["catalogue"], summary="Catalogue snapshots")
def list_catalogue(request: Request, _who: Annotated[Principal, Depends(analyst)]):
    return {"items": store_of(request).list_snapshots()}


@router.post(
    f"{API}/recorrelate",
    tags=["catalogue"],
    summary="Correlate the tracklets of a time range again (against a snapshot)",
)
async def recorrelate(request: Request, _who: Annotated[Principal, Depends(admin)]):
    wanted = body_as(RecorrelateBody, json_body(await read_body(request, SMALL_BODY)))
    snapshot_id = wanted.snapshot_id
    store = store_of(request)
    if snapshot_id is not None and store.snapshot(snapshot_id) is None:
        raise ApiError(404, f"no catalogue snapshot {snapshot_id}")
    f = query_filters(wanted.station, wanted.since, wanted.until)
    n = await run_in_threadpool(
        lambda: queue.enqueue_recorrelation(
            store, since=f.since, until=f.until, station=f.station, snapshot_id=snapshot_id
        )
    )
    return {"queued": n, "snapshot_id": snapshot_id}
