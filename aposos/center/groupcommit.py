"""Group commit for SQLite: concurrent small writes share one transaction and one
disk sync.

Each write joins a queue. When no batch is running, the thread that finds its work
queued becomes the leader: it takes every write queued so far, waits for the store's
write lock, runs each write in a SAVEPOINT of one transaction (a failing write is
rolled back alone and its caller gets its exception), commits once, and hands out
the results. The others wait for their own batch's commit, not for the write lock:
a lock lets any waiter in next, and a follower that lost that race used to wait
behind the whole next batch (up to 0.3 s under load). The savepoints go straight to
the driver: SQLAlchemy's nested transactions cost more Python than a small upload's
statements. With FULL synchronous mode a commit is a disk sync, which costs more
than a small upload's whole SQL work, so under load this multiplies throughput.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.engine import Connection

from aposos.center import uploadtrace
from aposos.center.walcheckpoint import WalCheckpointer

__all__ = ["GroupCommit"]

CACHE_KIB = 65536  # page cache of the batches' connection (SQLite's default: 2 MB)


class _Slot:
    __slots__ = ("done", "error", "phases", "result", "work")

    def __init__(self, work: Callable[[Connection], Any]):
        self.work = work
        self.done = False
        self.result = None
        self.error: BaseException | None = None
        self.phases = uploadtrace.phases()  # None unless traced


class GroupCommit:
    """Run writes of a store in shared transactions.

    Parameters
    ----------
    engine : the SQLite engine (connections begin with ``BEGIN IMMEDIATE`` when
        given the ``write`` execution option).
    lock : the store's write lock (:class:`aposos.center.writelock.WriteLock`).
    max_batch : writes per transaction at most.
    checkpointer : takes the WAL's checkpoints beside the batches (their connection
        then commits with SQLite's automatic checkpoint off); ``None``: SQLite's.
    """

    def __init__(
        self,
        engine,
        lock: AbstractContextManager,
        max_batch: int = 64,
        checkpointer: WalCheckpointer | None = None,
    ):
        self.engine = engine
        self.lock = lock
        self.max_batch = max_batch
        self.checkpointer = checkpointer
        self._queue: list[_Slot] = []
        self._turn = threading.Condition()  # guards _queue and _leading
        self._leading = False
        self._conn: Connection | None = None  # the leaders' own connection

    def run(self, work: Callable[[Connection], Any]) -> Any:
        """Run ``work(conn)`` in a committed transaction; its result or its exception.

        A follower waits for its batch's commit, not for the write lock: woken as
        soon as its work is committed, it never waits behind the next batch."""
        slot = _Slot(work)
        with self._turn:
            self._queue.append(slot)
            uploadtrace.mark("queued")
            while self._leading and not slot.done:
                self._turn.wait()
            if not slot.done:  # no batch running: this thread leads the next one
                self._leading = True
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        if not slot.done:
            try:
                with self.lock:
                    self._lead(batch)
            except Exception as exc:  # the lock itself failed
                for other in batch:
                    other.error = exc
            finally:
                with self._turn:
                    for other in batch:
                        other.done = True
                    self._leading = False
                    self._turn.notify_all()
            if self.checkpointer is not None:
                self.checkpointer.after_commit()  # answers first, then a look at the WAL
        uploadtrace.mark("locked")
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self, batch: list[_Slot]) -> None:
        trace = uploadtrace.recorder()
        times = [time.monotonic()] if trace else None
        try:
            conn = self._connection()
            try:
                with conn.begin():
                    db = conn.connection.driver_connection  # savepoints at the driver
                    if trace:
                        times.append(time.monotonic())
                    for slot in batch:
                        db.execute("SAVEPOINT upload")
                        try:
                            slot.result = slot.work(conn)
                            db.execute("RELEASE upload")
                        except Exception as exc:
                            db.execute("ROLLBACK TO upload")
                            db.execute("RELEASE upload")
                            slot.error = exc
                    if trace:
                        times.append(time.monotonic())
            except Exception:
                self.close()  # a fresh connection for the next batch
                raise
        except Exception as exc:  # the commit itself failed: nothing of the batch stands
            for slot in batch:
                slot.error, slot.result = exc, None
        finally:
            if trace:
                self._note(trace, batch, times)

    def _connection(self) -> Connection:
        """The connection every batch uses. One connection keeps its page cache from
        batch to batch (SQLite empties a connection's cache when another one wrote
        since its last transaction: with the pool's connections in turn, every batch
        read the indexes it updates from the disk cache again)."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect().execution_options(write=True)
            db = self._conn.connection.driver_connection
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            if self.checkpointer is not None:  # no checkpoint inside a batch's commit
                db.execute("PRAGMA wal_autocheckpoint=0")
        return self._conn

    def close(self) -> None:
        """Give the batches' connection back (a later batch opens another)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _note(self, trace, batch: list[_Slot], times: list[float]) -> None:
        """Keep a traced batch's times (:mod:`aposos.center.uploadtrace`)."""
        times += [time.monotonic()] * (4 - len(times))
        start, begun, worked, committed = times
        trace.commits.append(
            {"start": start, "begun": begun, "worked": worked, "committed": committed,
             "n": len(batch), "wal": trace.wal_state(self.engine.url.database)}
        )  # fmt: skip
        for slot in batch:
            if slot.phases is not None:
                slot.phases.update(lead=start, committed=committed, batch=len(batch))
