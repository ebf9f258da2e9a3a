"""Analyst and station queries: tracklets, correlations, an object's history, the
uncorrelated tracklets (UCTs). Lists are paged with ``limit``/``offset``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from aposos.center.api_common import (
    API,
    MAX_NORAD_ID,
    ApiError,
    Limit,
    Offset,
    analyst,
    caller,
    check,
    own_station,
    paging,
    query_filters,
    store_of,
)
from aposos.center.auth import Principal
from aposos.center.checks import int_problem

__all__ = ["router"]

router = APIRouter()

# -- tracklets


@router.get(f"{API}/tracklets", tags=["queries"], summary="List tracklets by observation time")
def list_tracklets(
    request: Request,
    who: Annotated[Principal, Depends(caller)],
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    status: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
):
    limit, offset = paging(request, limit, offset)
    f = query_filters(own_station(who, station), since, until, status)
    return store_of(request).list_tracklets(f, limit, offset).to_wire()


@router.get(
    f"{API}/tracklets/{{key}}",
    tags=["queries"],
    summary="One tracklet (by id or UUID) with observations, correlation and candidates",
)
def get_tracklet(request: Request, key: str, who: Annotated[Principal, Depends(caller)]):
    found = store_of(request).get_tracklet(_tracklet_key(key))
    if found is None:
        raise ApiError(404, f"no tracklet {key}")
    own_station(who, found["station"])
    return found


def _tracklet_key(key: str) -> int | str:
    """A tracklet id (decimal digits) or UUID from a URL, else 422."""
    import uuid as uuid_module

    if key.isascii() and key.isdigit():
        if len(key) > 18:
            raise ApiError(404, f"no tracklet {key}")
        return int(key)
    try:
        return str(uuid_module.UUID(key))
    except ValueError:
        raise ApiError(422, f"{key[:60]!r} is neither a tracklet id nor a UUID") from None


# -- correlations


@router.get(f"{API}/correlations", tags=["queries"], summary="Current correlations")
def list_correlations(
    request: Request,
    _who: Annotated[Principal, Depends(analyst)],
    norad_id: int | None = None,
    status: str | None = None,
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
):
    limit, offset = paging(request, limit, offset)
    statuses = ("correlated", "ambiguous", "uncorrelated")
    f = query_filters(station, since, until, status, norad_id, statuses=statuses)
    return store_of(request).list_correlations(f, limit, offset).to_wire()


@router.get(
    f"{API}/objects/{{norad_id}}",
    tags=["queries"],
    summary="A catalogued object: its observations and residual history",
)
def get_object(
    request: Request,
    norad_id: int,
    _who: Annotated[Principal, Depends(analyst)],
    limit: Limit = None,
    offset: Offset = 0,
):
    limit, offset = paging(request, limit, offset)
    check(int_problem("norad_id", norad_id, 0, MAX_NORAD_ID))
    page = store_of(request).object_history(norad_id, limit, offset).to_wire()
    return {"norad_id": norad_id, **page}


@router.get(f"{API}/uct", tags=["queries"], summary="Uncorrelated tracklets")
def list_uct(
    request: Request,
    _who: Annotated[Principal, Depends(analyst)],
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
):
    limit, offset = paging(request, limit, offset)
    f = query_filters(station, since, until, "uncorrelated")
    return store_of(request).list_correlations(f, limit, offset).to_wire()
