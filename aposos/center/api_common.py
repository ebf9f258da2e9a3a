"""What every room of the HTTP API uses: the error answer, who is calling, reading a
body, paging and query filters.

The rooms (``api_uploads``, ``api_queries``, ``api_stations``, ``api_catalogue``,
``api_export``, ``api_tasks``, ``api_health``) each hold an ``APIRouter``;
:func:`aposos.center.api.create_app` includes them.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from aposos.center.auth import Principal, TokenCache
from aposos.center.bodies import Body, validated
from aposos.center.checks import int_problem, text_problem
from aposos.center.config import CenterConfig
from aposos.center.dbtypes import TRACKLET_STATUSES, Filters, parse_time
from aposos.center.store import Store
from aposos.center.uploadtrace import mark

__all__ = [
    "API",
    "MAX_NORAD_ID",
    "SMALL_BODY",
    "ApiError",
    "Limit",
    "Offset",
    "admin",
    "analyst",
    "body_as",
    "caller",
    "check",
    "config_of",
    "json_body",
    "own_station",
    "paging",
    "query_filters",
    "read_body",
    "station",
    "store_of",
]

API = "/api/v1"
SMALL_BODY = 64 * 1024  # heartbeats, re-correlation requests
MAX_OFFSET = 10**9
MAX_NORAD_ID = 999_999_999
Limit = Annotated[int | None, Query(description="page size (default from the config)")]
Offset = Annotated[int, Query(description="items to skip")]


class ApiError(Exception):
    """An error answer: HTTP status and one clear message (plus optional details)."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def store_of(request: Request) -> Store:
    return request.app.state.store


def config_of(request: Request) -> CenterConfig:
    return request.app.state.config


async def caller(request: Request) -> Principal:
    """The authenticated caller (401 otherwise). A token this process has verified
    is checked on the event loop (:class:`TokenCache`); only a new one goes to the
    database in the thread pool. The role checks below are async too."""
    mark("auth")
    state = request.app.state
    tokens = getattr(state, "tokens", None)
    if tokens is None or tokens.store is not state.store:
        tokens = state.tokens = TokenCache(state.store)
    header = request.headers.get("authorization")
    return tokens.lookup(header) or await run_in_threadpool(tokens.verify, header)


async def analyst(who: Annotated[Principal, Depends(caller)]) -> Principal:
    who.require("analyst", "admin")
    return who


async def admin(who: Annotated[Principal, Depends(caller)]) -> Principal:
    who.require("admin")
    return who


async def station(who: Annotated[Principal, Depends(caller)]) -> Principal:
    who.require("station")
    return who


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, f"bad Content-Length header {declared!r}") from None
        if size > limit:
            raise ApiError(413, f"body of {size} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON")


def json_body(body: bytes) -> dict:
    """A JSON object from a request body (an empty body is ``{}``), else 422."""
    if not body.strip():
        return {}
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except ValueError as exc:
        raise ApiError(422, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(422, "the body is not valid JSON here: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ApiError(422, "the body must be a JSON object")
    return doc


def body_as(model: type[Body], doc: dict):
    """``doc`` as a ``model`` (:mod:`aposos.center.bodies`), else 422 naming the field."""
    try:
        return validated(model, doc)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def _time(value: str | None, name: str):
    if value is None:
        return None
    try:
        return parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise ApiError(422, f"{name}: {exc}") from None


def check(problem: str | None) -> None:
    """422 with ``problem``, if there is one."""
    if problem is not None:
        raise ApiError(422, problem)


def query_filters(
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    status: str | None = None,
    norad_id: int | None = None,
    statuses: tuple[str, ...] = TRACKLET_STATUSES,
) -> Filters:
    """The store's filters from query parameters, each checked (422 naming it)."""
    if status is not None and status not in statuses:
        raise ApiError(422, f"status {status!r} is not one of {', '.join(statuses)}")
    if station is not None:
        check(text_problem("station", station, 32))
    check(int_problem("norad_id", norad_id, 0, MAX_NORAD_ID))
    return Filters(
        station=station,
        since=_time(since, "since"),
        until=_time(until, "until"),
        status=status,
        norad_id=norad_id,
    )


def paging(request: Request, limit: int | None, offset: int) -> tuple[int, int]:
    """(limit, offset) of a list request: the config's page size by default."""
    cfg = config_of(request)
    limit = cfg.page_size if limit is None else limit
    if not 1 <= limit <= cfg.max_page_size:
        raise ApiError(422, f"limit must be within 1..{cfg.max_page_size}")
    if offset < 0:
        raise ApiError(422, "offset must not be negative")
    check(int_problem("offset", offset, 0, MAX_OFFSET))
    return limit, offset


def own_station(who: Principal, wanted: str | None) -> str | None:
    """Stations read only their own data; analysts and admins read all."""
    if who.role in ("analyst", "admin"):
        return wanted
    if wanted not in (None, who.name):
        raise ApiError(403, f"station {who.name} may not read the data of station {wanted}")
    return who.name
