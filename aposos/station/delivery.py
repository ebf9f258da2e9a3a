"""Delivery: drain the outbox to the center, send heartbeats, fetch tasks, report them.

:class:`Courier` runs in its own thread beside the agent's capture-and-reduce loop
(observing never waits for the network). Uploads go in batches; after a failure the
courier waits ``min(max, initial * 2**n) * U(0.5, 1)`` (exponential backoff with
jitter, so that stations coming back after an outage do not all call at once), then
tries again. A record the center refuses (its reason recorded) is tried alone, and
kept as rejected if refused alone; a wrong or revoked token is reported once as one
clear line and the tracklets stay in the outbox until a good token is in the file.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from aposos.station.outbox import AgentStore, utcnow_iso
from aposos.station.uplink import CenterLink, LinkError

__all__ = ["Backoff", "Courier"]

log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Exponential backoff with jitter: ``min(max, initial * 2**failures) * U(0.5, 1)``."""

    initial_s: float = 2.0
    max_s: float = 600.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 40))
        return base * self.rng.uniform(0.5, 1.0)

    def fail(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        self.failures += 1
        return self.delay()

    def reset(self) -> None:
        self.failures = 0


class Courier:
    """Delivers what the agent produced; see the module notes.

    Parameters
    ----------
    store : the agent's state.
    link : the center.
    status : a callable giving the heartbeat's frame counters and the like.
    batch : tracklets per upload.
    heartbeat_s : heartbeat period.
    clock : the source's time (``datetime64``; the simulator's is not the wall clock);
        tasks ending after an hour before it are asked for.
    """

    def __init__(self, store: AgentStore, link: CenterLink, status, *, batch: int = 50,
                 heartbeat_s: float = 60.0, backoff: Backoff | None = None,
                 clock=None):  # fmt: skip
        self.store = store
        self.link = link
        self.status = status
        self.batch = batch
        self.heartbeat_s = heartbeat_s
        self.backoff = backoff or Backoff()
        self.clock = clock or (lambda: np.datetime64("now", "us"))
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.next_upload = 0.0
        self.next_heartbeat = 0.0
        self.next_tasks = 0.0
        self._auth_reported = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)
        self._thread.start()

    def stop(self, flush_s: float = 10.0) -> None:
        """Stop; first try for up to ``flush_s`` to deliver what is waiting."""
        deadline = time.monotonic() + flush_s
        self.next_upload = 0.0
        self.wake.set()
        while time.monotonic() < deadline and self.store.due(1) and self.backoff.failures == 0:
            time.sleep(0.05)
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, deadline - time.monotonic()) + 5.0)
        for action in (self.heartbeat, self.sync_tasks):  # last word: counters, reports
            try:
                action()
            except LinkError:
                pass

    def first_contact(self) -> None:
        """Fetch tasks once, now (the observing loop has not begun); never raises."""
        try:
            self.sync_tasks()
        except LinkError as exc:
            log.info("no tasks from the center yet: %s", exc)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception:  # never let the courier die silently
                log.exception("delivery step failed")
                self.store.set("last_error", "internal error in delivery (see the log)")
                time.sleep(1.0)
            now = time.monotonic()
            wait = min(self.next_upload, self.next_heartbeat, self.next_tasks) - now
            self.wake.wait(timeout=max(0.05, min(wait, 5.0)))
            self.wake.clear()

    def step(self) -> None:
        """One round: heartbeat, tasks and uploads when each is due."""
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + self.heartbeat_s
            self._quietly(self.heartbeat)
        if now >= self.next_tasks:
            self.next_tasks = now + self.heartbeat_s  # tasks are checked as often
            self._quietly(self.sync_tasks)
        if now >= self.next_upload:
            while not self.stopping.is_set() and self.upload_once():
                pass

    def _quietly(self, action) -> None:
        try:
            action()
        except LinkError as exc:
            log.debug("%s: %s", action.__name__, exc)

    # ------------------------------------------------------------------ uploads
    def upload_once(self) -> bool:
        """Upload one batch; True if it went and more may be waiting."""
        items = self.store.due(self.batch)
        if not items:
            self.next_upload = time.monotonic() + 1.0
            return False
        try:
            answer = self.link.upload([i.body for i in items])
        except LinkError as exc:
            return self._upload_failed(items, exc)
        done = [r["uuid"] for r in answer.get("tracklets", []) if "uuid" in r]
        self.store.delivered(done or [i.uuid for i in items])
        log.info(
            "uploaded %d tracklet(s): %d new, %d known", len(items),
            answer.get("stored", 0), answer.get("duplicates", 0),
        )  # fmt: skip
        self.backoff.reset()
        self._auth_reported = False
        return True

    def _upload_failed(self, items, exc: LinkError) -> bool:
        if exc.kind in ("refused", "known") and len(items) > 1:
            log.warning("the center refused a batch (%s); trying its tracklets one by one", exc)
            for item in items:
                if self.stopping.is_set():
                    break
                try:
                    self.link.upload([item.body])
                    self.store.delivered([item.uuid])
                except LinkError as one:
                    if one.kind not in ("refused", "known"):
                        return self._upload_failed([item], one)
                    self._refused(item, one)
            return True
        if exc.kind in ("refused", "known"):
            self._refused(items[0], exc)
            return True
        wait = self.backoff.fail()
        if exc.kind == "auth":
            wait = max(wait, min(self.backoff.max_s, 60.0))
            if not self._auth_reported:
                log.error(
                    "the center refused the station token (%s); %d tracklet(s) stay in the "
                    "outbox until the token in %s is fixed", exc, self.store.backlog(),
                    self.link.token_path,
                )  # fmt: skip
                self._auth_reported = True
        else:
            log.warning("upload failed (%s); next try in %.1f s", exc, wait)
        self.store.failed([i.uuid for i in items], str(exc), time.time() + wait)
        self.store.set("last_error", f"{utcnow_iso()} {exc}")
        self.next_upload = time.monotonic() + wait
        return False

    def _refused(self, item, exc: LinkError) -> None:
        if exc.kind == "known":
            log.warning(
                "tracklet %s is at the center already, from an earlier reduction of the same "
                "frames (its last digits differ): the center keeps that one", item.uuid,
            )  # fmt: skip
            self.store.delivered([item.uuid], note=f"the center kept an earlier copy: {exc}")
            return
        self._reject(item, exc)

    def _reject(self, item, exc: LinkError) -> None:
        reason = "; ".join(exc.errors) or str(exc)
        log.error("the center refused tracklet %s for good: %s", item.uuid, reason)
        self.store.rejected(item.uuid, reason)
        self.store.set("last_error", f"{utcnow_iso()} tracklet {item.uuid} refused: {reason}")

    # ------------------------------------------------------------------ heartbeat, tasks
    def heartbeat(self) -> None:
        doc = {"outbox_backlog": self.store.backlog(), **self.status()}
        self.link.heartbeat(doc)
        self.store.set("last_heartbeat", utcnow_iso())

    def sync_tasks(self) -> None:
        """Fetch the station's tasks and send the reports that are due."""
        for report in self.store.reports_due():
            task_id = report.pop("task_id")
            try:
                self.link.report(task_id, report)
            except LinkError as exc:
                if exc.kind in ("network", "auth"):
                    raise
                log.warning("task %s: the center refused the report: %s", task_id, exc)
            self.store.report_sent(task_id)
        since = np.datetime64(self.clock(), "s") - np.timedelta64(1, "h")
        tasks = self.link.tasks(f"{since}Z")
        n = self.store.save_tasks(tasks) if tasks else 0
        if n:
            log.info("%d new or changed task(s) from the center (%d current)", n, len(tasks))
        self.store.set("tasks_checked", utcnow_iso())
