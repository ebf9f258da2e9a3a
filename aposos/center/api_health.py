"""``GET /healthz``: liveness, schema version, the correlation queue and the number of
catalogue snapshots (no authentication: for load balancers and monitoring)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from aposos.center import worker as queue
from aposos.center.api_common import store_of
from aposos.center.schema import SCHEMA_VERSION

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", tags=["service"], summary="Liveness, schema version and queue")
def healthz(request: Request):
    store = store_of(request)
    return {
        "status": "ok",
        "schema_version": SCHEMA_VERSION,
        "queue": queue.queue_counts(store),
        "snapshots": len(store.list_snapshots()),
    }
