"""A timeline of uploads, for finding where slow ones spend their time (debugging).

Off unless ``$APOSOS_UPLOAD_TRACE`` names a file: then each process of the center
(the API server, the correlation worker) keeps, in memory, every upload's phases
(monotonic seconds: arrival, token check, body read, thread pool, parse, group-commit
queue, lock, SQL, commit, answer), every write transaction (lock wait and hold,
the WAL's size), every garbage collection with its generation, and the event loop's
lag; :func:`dump` writes them as JSON to ``FILE.<pid>.json`` when the process stops.
``benchmarks/bench_upload.py --trace`` reads them back. When off, :func:`mark` costs
one context-variable lookup.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from contextvars import ContextVar

__all__ = ["ENV", "Recorder", "dump", "mark", "phases", "recorder", "TracingMiddleware"]

ENV = "APOSOS_UPLOAD_TRACE"
TICK_S = 0.005  # the event loop's ticker period
_phases: ContextVar[dict | None] = ContextVar("aposos_upload_phases", default=None)
_recorder: Recorder | None = None


class Recorder:
    """What one process saw; kept in memory until :meth:`dump`."""

    def __init__(self, path: str):
        self.path = path
        self.uploads: list[dict] = []
        self.commits: list[dict] = []  # group commits (server)
        self.writes: list[dict] = []  # other write transactions (worker, housekeeping)
        self.checkpoints: list[tuple] = []  # (start, end, mode, busy, wal frames, copied)
        self.gcs: list[tuple[float, float, int]] = []  # (start, end, generation)
        self.lags: list[tuple[float, float]] = []  # (when, seconds late)
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        now = time.monotonic()
        if phase == "start":
            self._gc_start = now
        else:
            self.gcs.append((self._gc_start, now, info["generation"]))

    async def tick(self) -> None:
        """Measure how late the event loop wakes a sleeping task (its lag)."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(TICK_S)
            late = time.monotonic() - t - TICK_S
            if late > 0.002:
                self.lags.append((t, late))

    @staticmethod
    def wal_state(database: str) -> tuple[int, int, int]:
        """(checkpoint sequence of the WAL file, frames in the WAL, frames already
        copied back to the database) from the WAL's header and its index (``-shm``)."""
        try:
            with open(f"{database}-wal", "rb") as f:
                seq = int.from_bytes(f.read(16)[12:16], "big")
            with open(f"{database}-shm", "rb") as f:
                head = f.read(100)
            frames = int.from_bytes(head[16:20], sys.byteorder)
            backfilled = int.from_bytes(head[96:100], sys.byteorder)
        except (OSError, ValueError):
            return (0, 0, 0)
        return seq, frames, backfilled

    def dump(self) -> None:
        doc = {
            "pid": os.getpid(),
            "uploads": self.uploads,
            "commits": self.commits,
            "writes": self.writes,
            "checkpoints": self.checkpoints,
            "gcs": self.gcs,
            "lags": self.lags,
        }
        with open(f"{self.path}.{os.getpid()}.json", "w") as f:
            json.dump(doc, f)


def recorder() -> Recorder | None:
    """This process's recorder when ``$APOSOS_UPLOAD_TRACE`` is set, else ``None``."""
    global _recorder
    if _recorder is None and os.environ.get(ENV):
        _recorder = Recorder(os.environ[ENV])
    return _recorder


def dump() -> None:
    if _recorder is not None:
        _recorder.dump()


def mark(name: str, value=None) -> None:
    """Note the time (or ``value``) of a phase of the upload being served, if traced."""
    phases = _phases.get()
    if phases is not None:
        phases[name] = time.monotonic() if value is None else value


def phases() -> dict | None:
    """The phases of the upload being served (``None``: not traced)."""
    return _phases.get()


class TracingMiddleware:
    """ASGI middleware that opens a timeline for each upload and keeps it when the
    answer has been sent."""

    def __init__(self, app):
        self.app = app
        self.rec = recorder()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or "tracklets" not in scope["path"]:
            return await self.app(scope, receive, send)
        doc = {"in": time.monotonic()}
        _phases.set(doc)

        async def sending(message):
            if message["type"] == "http.response.start":
                doc["status"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                doc["sent"] = time.monotonic()
                self.rec.uploads.append(doc)

        await self.app(scope, receive, sending)
