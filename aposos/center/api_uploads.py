"""Tracklet uploads: ``POST /api/v1/tracklets`` (the JSON wire format or a CCSDS TDM
document), the stations' hot path (one trip to the thread pool per upload)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from aposos.center.api_common import API, ApiError, read_body, station
from aposos.center.api_common import config_of as _config
from aposos.center.api_common import store_of as _store
from aposos.center.auth import Principal
from aposos.center.config import CenterConfig
from aposos.center.ingest import parse_upload
from aposos.center.store import IngestConflict, Store
from aposos.center.uploadtrace import mark

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter()


@router.post(
    f"{API}/tracklets",
    tags=["stations"],
    summary="Upload tracklets (JSON wire format or a CCSDS TDM document)",
    responses={200: {"description": "all were stored before"}, 201: {"description": ""}},
)
async def upload(request: Request, who: Annotated[Principal, Depends(station)]):
    mark("handler")
    cfg = _config(request)
    wait = request.app.state.limiter.wait_time(who.name)
    if wait > 0:
        raise ApiError(
            429,
            f"station {who.name} is over its upload rate; retry in {wait:.0f} s",
            retry_after_s=round(wait, 1),
        )
    body = await read_body(request, cfg.max_upload_bytes)
    ctype = request.headers.get("content-type", "")
    mark("body")
    # one trip to the thread pool: quota, parsing (bounded in time) and storing
    upload_id, results = await run_in_threadpool(
        _take_upload, _store(request), cfg, who.name, ctype, body
    )
    mark("back")
    n_new = sum(r.new for r in results)
    return JSONResponse(
        {
            "upload_id": upload_id,
            "stored": n_new,
            "duplicates": len(results) - n_new,
            "linked_duplicates": sum(r.duplicate_of is not None for r in results),
            "tracklets": [
                {
                    "index": r.index,
                    "uuid": r.uuid,
                    "id": r.id,
                    "new": r.new,
                    "duplicate_of": r.duplicate_of,
                }
                for r in results
            ],
        },
        status_code=201 if n_new else 200,
    )


def _take_upload(store: Store, cfg: CenterConfig, station: str, ctype: str, body: bytes):
    """Parse and store an upload: (upload id, results). A refused upload is kept with
    its reason (``rejected``: bad input; ``quarantined``: could not be processed) and
    :class:`ApiError` raised. The raw copy is stored with the tracklets in one
    transaction."""
    mark("thread")

    def refuse(status: int, message: str, state: str = "rejected", **extra):
        store.save_refused_upload(station, ctype, body, message, state)
        raise ApiError(status, message, **extra)

    if cfg.station_quota_bytes:
        used = store.station_bytes(station)
        if used + len(body) > cfg.station_quota_bytes:
            raise ApiError(
                403,
                f"station {station} has used {used} of its storage quota of "
                f"{cfg.station_quota_bytes} bytes; ask the data center to raise it",
            )
    try:
        parsed = parse_upload(body, time_budget_s=cfg.upload_time_budget_s)
    except Exception as exc:
        refuse(422, _could_not(exc), "quarantined")
    mark("parsed")
    mark("uuid", parsed.tracklets[0].uuid if parsed.tracklets else None)
    if parsed.errors:
        refuse(422, parsed.errors[0], errors=parsed.errors)
    for i, t in enumerate(parsed.tracklets):
        if t.station != station:
            refuse(
                403,
                f"record {i} (uuid {t.uuid}): station {t.station!r} is not the "
                f"uploading station {station!r}",
            )
    try:
        return store.ingest_upload(station, ctype, body, parsed.tracklets)
    except IngestConflict as exc:
        refuse(409, str(exc))
    except (OperationalError, InterfaceError):
        raise  # the database, not the upload: 503, the station sends it again
    except Exception as exc:
        refuse(422, _could_not(exc), "quarantined")


def _could_not(exc: Exception) -> str:
    """The reason for quarantining an upload that could not be processed."""
    log.error("upload quarantined: %s: %s", type(exc).__name__, exc)
    return f"could not be processed ({type(exc).__name__}: {str(exc)[:300]}); quarantined"
