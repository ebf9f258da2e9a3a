"""Data sharing: observations exported as CCSDS TDM (KVN), IOD or CSV, paged (the
next page's offset in ``X-Next-Offset``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from aposos.center.api_common import (
    API,
    ApiError,
    Limit,
    Offset,
    analyst,
    config_of,
    paging,
    query_filters,
    store_of,
)
from aposos.center.auth import Principal

__all__ = ["EXPORT_FORMATS", "router"]

EXPORT_FORMATS = ("tdm", "iod", "csv")
router = APIRouter()


@router.get(
    f"{API}/export",
    tags=["data sharing"],
    summary="Observations in CCSDS TDM (KVN), IOD or CSV",
)
def export(
    request: Request,
    _who: Annotated[Principal, Depends(analyst)],
    format: str = "tdm",
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    status: str | None = None,
    norad_id: int | None = None,
    limit: Limit = None,
    offset: Offset = 0,
):
    from aposos.center.export import render_export

    if format not in EXPORT_FORMATS:
        raise ApiError(422, f"format {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    limit, offset = paging(request, limit, offset)
    f = query_filters(station, since, until, status, norad_id)
    try:
        text, media_type, next_offset = render_export(
            store_of(request), config_of(request), format, f, limit, offset
        )
    except ValueError as exc:
        raise ApiError(422, f"cannot export as {format}: {exc}") from None
    headers = {"Content-Disposition": f'attachment; filename="aposos-export.{format}"'}
    if next_offset is not None:
        headers["X-Next-Offset"] = str(next_offset)
    return Response(text, media_type=media_type, headers=headers)
