"""Background upkeep of the center: uploads left unprocessed by a stop, and retention.

Start-up never waits for user input to be parsed: a :class:`Housekeeper` thread
processes uploads that were stored raw but not parsed when the server stopped, each
at most once more (an upload that was being processed when the server died twice is
quarantined, never retried), and drops the raw copies of rejected and quarantined
uploads after ``rejected_retention_days`` and the stations' heartbeats after
``heartbeat_retention_days`` (every hour; heartbeats in batches, so uploads waiting
for the write lock are not held up by a first purge of a long history).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import sqlalchemy as sa

from aposos.center import schema as S
from aposos.center.config import CenterConfig
from aposos.center.dbtypes import utcnow
from aposos.center.ingest import parse_upload
from aposos.center.store import IngestConflict, Store

__all__ = ["Housekeeper", "process_stored_upload", "purge_heartbeats", "recover_uploads"]

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 2  # the live attempt and one after a restart
PURGE_EVERY_S = 3600.0
HEARTBEAT_BATCH = 5000  # rows deleted per write transaction


def process_stored_upload(store: Store, upload: dict, payload: bytes, budget_s: float) -> str:
    """Parse and ingest an upload stored raw; returns its new state. Never raises for
    what the upload holds: a failure quarantines it with the reason."""
    try:
        parsed = parse_upload(payload, time_budget_s=budget_s)
        foreign = [t.uuid for t in parsed.tracklets if t.station != upload["station"]]
        if parsed.errors or foreign:
            store.reject_upload(upload["id"], "; ".join(parsed.errors) or "cross-station upload")
            return "rejected"
        try:
            store.ingest(upload["id"], parsed.tracklets)
        except IngestConflict as exc:
            store.reject_upload(upload["id"], str(exc))
            return "rejected"
        return "stored"
    except Exception as exc:
        log.exception("upload %d could not be processed; quarantined", upload["id"])
        store.quarantine_upload(
            upload["id"], f"could not be processed: {type(exc).__name__}: {exc}"
        )
        return "quarantined"


def recover_uploads(store: Store, budget_s: float = 20.0, before=None) -> dict[str, int]:
    """Process uploads stored raw but not yet parsed (the server stopped in between),
    received before ``before`` (the start of this server: later ones are live)."""
    counts: dict[str, int] = {}
    for up in store.received_uploads(before):
        payload = store.claim_received_upload(up["id"], MAX_ATTEMPTS)
        state = "quarantined" if payload is None else None
        if payload is not None:
            state = process_stored_upload(store, up, payload, budget_s)
        counts[state] = counts.get(state, 0) + 1
    if counts:
        log.info("uploads received before a restart: %s", counts)
    return counts


def purge_heartbeats(store: Store, older_than, *, batch: int = HEARTBEAT_BATCH,
                     stop: threading.Event | None = None) -> int:  # fmt: skip
    """Delete the heartbeats the center received before ``older_than`` (the stations'
    last heartbeat, in ``stations``, stays), oldest first, ``batch`` rows a
    transaction; returns how many."""
    H = S.heartbeats
    oldest = (
        sa.select(H.c.id).where(H.c.received_at < older_than).order_by(H.c.id).limit(batch)
    )  # ids grow with arrival: the scan finds the old rows first
    total = 0
    while stop is None or not stop.is_set():
        with store.write() as conn:
            ids = conn.execute(oldest).scalars().all()
            if ids:
                conn.execute(H.delete().where(H.c.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            break
    return total


class Housekeeper:
    """A daemon thread: recovery once at start, then retention every hour."""

    def __init__(self, store: Store, config: CenterConfig):
        self.store = store
        self.config = config
        self.started_at = utcnow()
        self.recovered = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aposos-housekeeping", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def purge(self) -> int:
        keep = timedelta(days=self.config.rejected_retention_days)
        return self.store.purge_payloads(utcnow() - keep)

    def purge_heartbeats(self) -> int:
        """Drop heartbeats older than ``heartbeat_retention_days`` (0: none)."""
        days = self.config.heartbeat_retention_days
        if days <= 0:
            return 0
        return purge_heartbeats(self.store, utcnow() - timedelta(days=days), stop=self._stop)

    def _run(self) -> None:
        try:
            recover_uploads(self.store, self.config.upload_time_budget_s, self.started_at)
        except Exception:
            log.exception("recovery of uploads failed; they stay for the next start")
        finally:
            self.recovered.set()
        while not self._stop.is_set():
            try:
                n = self.purge()
                if n:
                    log.info("dropped the raw copies of %d old rejected upload(s)", n)
            except Exception:
                log.exception("retention purge failed")
            try:
                n = self.purge_heartbeats()
                if n:
                    log.info("dropped %d heartbeat(s) older than %g days", n,
                             self.config.heartbeat_retention_days)  # fmt: skip
            except Exception:
                log.exception("heartbeat retention failed")
            self._stop.wait(PURGE_EVERY_S)
