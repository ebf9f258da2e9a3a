"""The data center's HTTP API (v1), a FastAPI application.

>>> app = create_app(load_config("configs/center.toml"))  # doctest: +SKIP
>>> serve(load_config("configs/center.toml"))  # doctest: +SKIP

Start with ``aposos center serve``; OpenAPI docs at ``/docs`` (served from the
package: they work offline). Every error answer is
``{"detail": "one clear message", ...}``; input errors are 4xx, never 5xx. Lists are paged with ``limit``/``offset``
and answer ``next_offset`` (``null`` on the last page). Times are ISO 8601 UTC.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, InterfaceError, OperationalError

from aposos.center import worker as queue
from aposos.center.auth import AuthError, Principal, authenticate, enrol
from aposos.center.checks import int_problem, text_problem
from aposos.center.config import CenterConfig
from aposos.center.dbtypes import TRACKLET_STATUSES, Filters, parse_time
from aposos.center.docs import add_offline_docs
from aposos.center.guards import RateLimiter, TokenInUrlGuard, install_log_redaction
from aposos.center.heap import settle_heap
from aposos.center.heartbeats import heartbeat_problem
from aposos.center.housekeeping import Housekeeper, recover_uploads
from aposos.center.ingest import parse_upload
from aposos.center.schema import SCHEMA_VERSION
from aposos.center.snapshots import SnapshotError, create_snapshot
from aposos.center.store import IngestConflict, Store

__all__ = ["ApiError", "create_app", "recover_uploads", "serve"]

log = logging.getLogger(__name__)
API = "/api/v1"
SMALL_BODY = 64 * 1024  # heartbeats, re-correlation requests
MAX_OFFSET = 10**9
MAX_NORAD_ID = 999_999_999
EXPORT_FORMATS = ("tdm", "iod", "csv")
Limit = Annotated[int | None, Query(description="page size (default from the config)")]
Offset = Annotated[int, Query(description="items to skip")]


class ApiError(Exception):
    """An error answer: HTTP status and one clear message (plus optional details)."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# --------------------------------------------------------------------- plumbing


def _store(request: Request) -> Store:
    return request.app.state.store


def _config(request: Request) -> CenterConfig:
    return request.app.state.config


def caller(request: Request) -> Principal:
    """The authenticated caller (401 otherwise). The role checks below are async:
    no work for the thread pool."""
    return authenticate(_store(request), request.headers.get("authorization"))


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


def _json_body(body: bytes) -> dict:
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


def _time(value: str | None, name: str):
    if value is None:
        return None
    try:
        return parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise ApiError(422, f"{name}: {exc}") from None


def _check(problem: str | None) -> None:
    if problem is not None:
        raise ApiError(422, problem)


def _filters(
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    status: str | None = None,
    norad_id: int | None = None,
    statuses: tuple[str, ...] = TRACKLET_STATUSES,
) -> Filters:
    if status is not None and status not in statuses:
        raise ApiError(422, f"status {status!r} is not one of {', '.join(statuses)}")
    if station is not None:
        _check(text_problem("station", station, 32))
    _check(int_problem("norad_id", norad_id, 0, MAX_NORAD_ID))
    return Filters(
        station=station,
        since=_time(since, "since"),
        until=_time(until, "until"),
        status=status,
        norad_id=norad_id,
    )


def _paging(request: Request, limit: int | None, offset: int) -> tuple[int, int]:
    cfg = _config(request)
    limit = cfg.page_size if limit is None else limit
    if not 1 <= limit <= cfg.max_page_size:
        raise ApiError(422, f"limit must be within 1..{cfg.max_page_size}")
    if offset < 0:
        raise ApiError(422, "offset must not be negative")
    _check(int_problem("offset", offset, 0, MAX_OFFSET))
    return limit, offset


def _own_station(who: Principal, wanted: str | None) -> str | None:
    """Stations read only their own data; analysts and admins read all."""
    if who.role in ("analyst", "admin"):
        return wanted
    if wanted not in (None, who.name):
        raise ApiError(403, f"station {who.name} may not read the data of station {wanted}")
    return who.name


# -------------------------------------------------------------------------- app


def _start_background(store: Store, config: CenterConfig, run_worker: bool):
    """Start the housekeeping thread and the correlation worker (a process or a
    thread, as configured); returns them, for :func:`_stop_background`."""
    housekeeper = Housekeeper(store, config)  # start-up does not wait for user input
    housekeeper.start()
    background = None
    if run_worker and config.worker.process:
        from aposos.center.workerprocess import WorkerProcess

        background = WorkerProcess(config)
        background.start()
    elif run_worker:
        background = queue.CorrelationWorker(store, config)
        background.start()
    return housekeeper, background


def _stop_background(housekeeper, background) -> None:
    if background is not None:
        background.stop()
    if housekeeper is not None:
        housekeeper.stop()


def create_app(
    config: CenterConfig,
    *,
    worker: bool | None = None,
    freeze_heap: bool = False,
    background: bool = True,
) -> FastAPI:
    """The API application for ``config``; opens the database when it starts.

    Parameters
    ----------
    config : the center configuration.
    worker : run the correlation worker in this process (default from the config).
    freeze_heap : after start-up, exempt what is alive from the garbage collector's
        full passes (:func:`aposos.center.heap.settle_heap`); for a process that
        serves and nothing else (``serve`` sets it).
    background : run the housekeeping and the worker from this app; false for the
        server processes of ``server_processes`` > 1, whose parent runs them once.
    """
    run_worker = (config.worker.enabled if worker is None else worker) and background

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        install_log_redaction()
        store = Store(config.database_url, sqlite_synchronous=config.sqlite_synchronous)
        await run_in_threadpool(store.upgrade)
        app.state.store = store
        app.state.config = config
        app.state.limiter = RateLimiter(
            config.station_uploads_per_minute, config.station_upload_burst
        )
        app.state.enrol_limiter = RateLimiter(10, 5)  # per client address: no guessing
        running = _start_background(store, config, run_worker) if background else (None, None)
        app.state.housekeeper = running[0]
        if freeze_heap:
            settle_heap()  # no 0.2-0.8 s collector pauses of every request in flight
        try:
            yield
        finally:
            await run_in_threadpool(_stop_background, *running)
            store.close()

    app = FastAPI(
        title="APOSOS data center",
        version="1",
        summary="Tracklet uploads, correlation results, analyst queries and data sharing.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)
    app.add_middleware(TokenInUrlGuard)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        detail = exc.message.replace("\r", "\\r").replace("\n", "\\n")  # one line
        return JSONResponse({"detail": detail, **exc.extra}, status_code=exc.status)

    @app.exception_handler(AuthError)
    async def _auth_error(_request: Request, exc: AuthError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError):
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return JSONResponse({"detail": f"a value does not fit the database: {cause}"}, 422)

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError):
        log.error("database unavailable: %s", str(exc.orig or exc).splitlines()[0])
        return JSONResponse(
            {"detail": "the database is busy or unavailable; try again"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception):
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)

    _add_routes(app)
    from aposos.center.api_tasks import register_task_routes

    register_task_routes(app, caller=caller, analyst=analyst, station=station,
                         read_body=read_body, json_body=_json_body, api_error=ApiError)  # fmt: skip
    return app


def _add_routes(app: FastAPI) -> None:  # noqa: C901 - one route table, read top to bottom
    @app.get("/healthz", tags=["service"], summary="Liveness, schema version and queue")
    def healthz(request: Request):
        store = _store(request)
        return {
            "status": "ok",
            "schema_version": SCHEMA_VERSION,
            "queue": queue.queue_counts(store),
            "snapshots": len(store.list_snapshots()),
        }

    # -- uploads

    @app.post(
        f"{API}/tracklets",
        tags=["stations"],
        summary="Upload tracklets (JSON wire format or a CCSDS TDM document)",
        responses={200: {"description": "all were stored before"}, 201: {"description": ""}},
    )
    async def upload(request: Request, who: Annotated[Principal, Depends(station)]):
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
        # one trip to the thread pool: quota, parsing (bounded in time) and storing
        upload_id, results = await run_in_threadpool(
            _take_upload, _store(request), cfg, who.name, ctype, body
        )
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

    # -- tracklets

    @app.get(f"{API}/tracklets", tags=["queries"], summary="List tracklets by observation time")
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
        limit, offset = _paging(request, limit, offset)
        f = _filters(_own_station(who, station), since, until, status)
        return _store(request).list_tracklets(f, limit, offset).to_wire()

    @app.get(
        f"{API}/tracklets/{{key}}",
        tags=["queries"],
        summary="One tracklet (by id or UUID) with observations, correlation and candidates",
    )
    def get_tracklet(request: Request, key: str, who: Annotated[Principal, Depends(caller)]):
        found = _store(request).get_tracklet(_tracklet_key(key))
        if found is None:
            raise ApiError(404, f"no tracklet {key}")
        _own_station(who, found["station"])
        return found

    # -- correlations

    @app.get(f"{API}/correlations", tags=["queries"], summary="Current correlations")
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
        limit, offset = _paging(request, limit, offset)
        statuses = ("correlated", "ambiguous", "uncorrelated")
        f = _filters(station, since, until, status, norad_id, statuses=statuses)
        return _store(request).list_correlations(f, limit, offset).to_wire()

    @app.get(
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
        limit, offset = _paging(request, limit, offset)
        _check(int_problem("norad_id", norad_id, 0, MAX_NORAD_ID))
        page = _store(request).object_history(norad_id, limit, offset).to_wire()
        return {"norad_id": norad_id, **page}

    @app.get(f"{API}/uct", tags=["queries"], summary="Uncorrelated tracklets")
    def list_uct(
        request: Request,
        _who: Annotated[Principal, Depends(analyst)],
        station: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: Limit = None,
        offset: Offset = 0,
    ):
        limit, offset = _paging(request, limit, offset)
        f = _filters(station, since, until, "uncorrelated")
        return _store(request).list_correlations(f, limit, offset).to_wire()

    # -- stations

    @app.get(f"{API}/stations", tags=["stations"], summary="Stations, heartbeats and counts")
    def list_stations(
        request: Request,
        _who: Annotated[Principal, Depends(analyst)],
        limit: Limit = None,
        offset: Offset = 0,
    ):
        limit, offset = _paging(request, limit, offset)
        return _store(request).list_stations(limit, offset).to_wire()

    @app.post(
        f"{API}/stations/{{code}}/heartbeat",
        tags=["stations"],
        summary="A station agent's heartbeat (with its outbox backlog)",
    )
    async def heartbeat(request: Request, code: str, who: Annotated[Principal, Depends(station)]):
        if code != who.name:
            raise ApiError(403, f"station {who.name} may not send heartbeats for {code!r}")
        doc = _json_body(await read_body(request, SMALL_BODY))
        _check(heartbeat_problem(doc))
        backlog, version = doc.get("outbox_backlog"), doc.get("agent_version")
        store = _store(request)
        when = await run_in_threadpool(
            lambda: store.record_heartbeat(
                code, outbox_backlog=backlog, agent_version=version, body=doc
            )
        )
        return {"code": code, "received_at": when.isoformat(timespec="microseconds") + "Z"}

    @app.post(
        f"{API}/enrol",
        tags=["stations"],
        summary="Trade a one-time enrolment code for the station's token",
    )
    async def enrol_station(request: Request):
        client = request.client.host if request.client else "?"
        wait = request.app.state.enrol_limiter.wait_time(client)
        if wait > 0:
            raise ApiError(429, f"too many enrolment attempts; retry in {wait:.0f} s")
        doc = _json_body(await read_body(request, SMALL_BODY))
        code = doc.get("code")
        if not isinstance(code, str) or not 0 < len(code) <= 64:
            raise ApiError(422, "code must be the enrolment code (a string)")
        name, token = await run_in_threadpool(enrol, _store(request), code)
        return {"station": name, "token": token}

    # -- catalogue

    @app.put(
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
        cfg = _config(request)
        _check(text_problem("name", name, 256))
        body = await read_body(request, cfg.max_catalogue_bytes)
        store = _store(request)
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

    @app.get(f"{API}/catalogue", tags=["catalogue"], summary="Catalogue snapshots")
    def list_catalogue(request: Request, _who: Annotated[Principal, Depends(analyst)]):
        return {"items": _store(request).list_snapshots()}

    @app.post(
        f"{API}/recorrelate",
        tags=["catalogue"],
        summary="Correlate the tracklets of a time range again (against a snapshot)",
    )
    async def recorrelate(request: Request, _who: Annotated[Principal, Depends(admin)]):
        doc = _json_body(await read_body(request, SMALL_BODY))
        for key in ("since", "until", "station"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise ApiError(422, f"{key} must be a string")
        snapshot_id = doc.get("snapshot_id")
        if snapshot_id is not None and (
            not isinstance(snapshot_id, int) or isinstance(snapshot_id, bool)
        ):
            raise ApiError(422, "snapshot_id must be an integer")
        _check(int_problem("snapshot_id", snapshot_id))
        store = _store(request)
        if snapshot_id is not None and store.snapshot(snapshot_id) is None:
            raise ApiError(404, f"no catalogue snapshot {snapshot_id}")
        f = _filters(doc.get("station"), doc.get("since"), doc.get("until"))
        n = await run_in_threadpool(
            lambda: queue.enqueue_recorrelation(
                store, since=f.since, until=f.until, station=f.station, snapshot_id=snapshot_id
            )
        )
        return {"queued": n, "snapshot_id": snapshot_id}

    # -- data sharing

    @app.get(
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
        limit, offset = _paging(request, limit, offset)
        f = _filters(station, since, until, status, norad_id)
        try:
            text, media_type, next_offset = render_export(
                _store(request), _config(request), format, f, limit, offset
            )
        except ValueError as exc:
            raise ApiError(422, f"cannot export as {format}: {exc}") from None
        headers = {"Content-Disposition": f'attachment; filename="aposos-export.{format}"'}
        if next_offset is not None:
            headers["X-Next-Offset"] = str(next_offset)
        return Response(text, media_type=media_type, headers=headers)


def _take_upload(store: Store, cfg: CenterConfig, station: str, ctype: str, body: bytes):
    """Parse and store an upload: (upload id, results). A refused upload is kept with
    its reason (``rejected``: bad input; ``quarantined``: could not be processed) and
    :class:`ApiError` raised. The raw copy is stored with the tracklets in one
    transaction."""

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


def _could_not(exc: Exception) -> str:
    """The reason for quarantining an upload that could not be processed."""
    log.error("upload quarantined: %s: %s", type(exc).__name__, exc)
    return f"could not be processed ({type(exc).__name__}: {str(exc)[:300]}); quarantined"


def serve(config: CenterConfig, *, log_level: str = "info") -> None:
    """Run the API with uvicorn until interrupted.

    With ``ssl_certfile``/``ssl_keyfile`` in the config it serves HTTPS itself.
    Behind a reverse proxy that ends TLS, set ``proxy_headers = true`` and
    ``forwarded_allow_ips`` to the proxy's address: client addresses and the scheme
    then come from ``X-Forwarded-For`` / ``X-Forwarded-Proto``.
    """
    import uvicorn

    options = {
        "host": config.host,
        "port": config.port,
        "log_level": log_level,
        "proxy_headers": config.proxy_headers,
        "forwarded_allow_ips": config.forwarded_allow_ips,
    }
    if config.ssl_certfile:
        options |= {"ssl_certfile": config.ssl_certfile, "ssl_keyfile": config.ssl_keyfile}
    if config.server_processes == 1:
        uvicorn.run(create_app(config, freeze_heap=True), **options)
        return
    # several processes on one socket; this one runs the worker and the housekeeping
    store = Store(config.database_url, sqlite_synchronous=config.sqlite_synchronous)
    store.upgrade()
    running = _start_background(store, config, config.worker.enabled)
    os.environ[APP_CONFIG_ENV] = base64.b64encode(pickle.dumps(config)).decode("ascii")
    try:
        uvicorn.run(
            f"{__name__}:served_app",
            factory=True,
            workers=config.server_processes,
            **options,
        )
    finally:
        _stop_background(*running)
        store.close()


APP_CONFIG_ENV = "APOSOS_CENTER_SERVED_CONFIG"


def served_app() -> FastAPI:
    """The app of one of the ``server_processes``: the configuration comes from the
    parent (:func:`serve`), which runs the worker and the housekeeping itself."""
    config = pickle.loads(base64.b64decode(os.environ[APP_CONFIG_ENV]))
    return create_app(config, freeze_heap=True, background=False)
