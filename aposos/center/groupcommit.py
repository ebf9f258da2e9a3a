"""Group commit for SQLite: concurrent small writes share one transaction and one
disk sync.

Each write waits for the store's write lock. The thread that gets it (the leader)
runs every write queued so far, each in a SAVEPOINT of one transaction (a failing
write is rolled back alone and its caller gets its exception), commits once, and
hands out the results. The savepoints go straight to the driver: SQLAlchemy's
nested transactions cost more Python than a small upload's statements. The others find their work done when they get the lock.
With FULL synchronous mode a commit is a disk sync, which costs more than a small
upload's whole SQL work, so under load this multiplies throughput.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.engine import Connection

__all__ = ["GroupCommit"]


class _Slot:
    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[Connection], Any]):
        self.work = work
        self.done = False
        self.result = None
        self.error: BaseException | None = None


class GroupCommit:
    """Run writes of a store in shared transactions.

    Parameters
    ----------
    engine : the SQLite engine (connections begin with ``BEGIN IMMEDIATE`` when
        given the ``write`` execution option).
    lock : the store's write lock (:class:`aposos.center.writelock.WriteLock`).
    max_batch : writes per transaction at most.
    """

    def __init__(self, engine, lock: AbstractContextManager, max_batch: int = 64):
        self.engine = engine
        self.lock = lock
        self.max_batch = max_batch
        self._queue: list[_Slot] = []
        self._queue_lock = threading.Lock()

    def run(self, work: Callable[[Connection], Any]) -> Any:
        """Run ``work(conn)`` in a committed transaction; its result or its exception."""
        slot = _Slot(work)
        with self._queue_lock:
            self._queue.append(slot)
        with self.lock:
            if not slot.done:
                self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(write=True)
                with conn.begin():
                    db = conn.connection.driver_connection  # savepoints at the driver
                    for slot in batch:
                        db.execute("SAVEPOINT upload")
                        try:
                            slot.result = slot.work(conn)
                            db.execute("RELEASE upload")
                        except Exception as exc:
                            db.execute("ROLLBACK TO upload")
                            db.execute("RELEASE upload")
                            slot.error = exc
        except Exception as exc:  # the commit itself failed: nothing of the batch stands
            for slot in batch:
                slot.error, slot.result = exc, None
        finally:
            for slot in batch:
                slot.done = True
