"""The data center's HTTP API (v1), a FastAPI application.

>>> app = create_app(load_config("configs/center.toml"))  # doctest: +SKIP
>>> serve(load_config("configs/center.toml"))  # doctest: +SKIP

Start with ``aposos center serve``; OpenAPI docs at ``/docs`` (served from the
package: they work offline). Every error answer is
``{"detail": "one clear message", ...}``; input errors are 4xx, never 5xx. Lists are paged with ``limit``/``offset``
and answer ``next_offset`` (``null`` on the last page). Times are ISO 8601 UTC.

The routes live in rooms, one ``APIRouter`` each (:data:`ROOMS`): ``api_health``,
``api_uploads``, ``api_queries``, ``api_stations``, ``api_catalogue``, ``api_export``,
``api_tasks``; what they share (errors, roles, bodies, paging) is in ``api_common``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import pickle
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError

from aposos.center import (
    api_catalogue,
    api_export,
    api_health,
    api_queries,
    api_stations,
    api_tasks,
    api_uploads,
    uploadtrace,
)
from aposos.center import worker as queue
from aposos.center.api_common import ApiError
from aposos.center.auth import AuthError
from aposos.center.config import CenterConfig
from aposos.center.docs import add_offline_docs
from aposos.center.guards import RateLimiter, TokenInUrlGuard, install_log_redaction
from aposos.center.heap import settle_heap
from aposos.center.housekeeping import Housekeeper, recover_uploads
from aposos.center.store import Store

__all__ = ["ROOMS", "ApiError", "create_app", "recover_uploads", "serve"]

log = logging.getLogger(__name__)
# the API's rooms, in the order of the OpenAPI page
ROOMS = (api_health, api_uploads, api_queries, api_stations, api_catalogue, api_export, api_tasks)


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
        trace = uploadtrace.recorder()  # None unless $APOSOS_UPLOAD_TRACE (debugging)
        ticker = asyncio.create_task(trace.tick()) if trace else None
        try:
            yield
        finally:
            if ticker is not None:
                ticker.cancel()
            await run_in_threadpool(_stop_background, *running)
            store.close()
            uploadtrace.dump()

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
    if uploadtrace.recorder() is not None:
        app.add_middleware(uploadtrace.TracingMiddleware)

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

    for room in ROOMS:
        app.include_router(room.router)
    return app


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
