"""Checkpoints of a SQLite WAL taken beside the writes, not inside a commit.

SQLite copies the WAL back into the database (a checkpoint) in the commit that
passes ``wal_autocheckpoint`` pages (1000): that commit, and every upload of its
group commit, waited for the copy and the database's disk sync (61 ms at the
median against 15 ms for the other batches, under load). The API server's batches
therefore commit with the automatic checkpoint off, and after each batch the
leader only looks at the WAL's length in its index (a 100-byte read); past
``PASSIVE_PAGES`` it wakes a thread of its own, which takes a PASSIVE checkpoint
on its own connection. A PASSIVE checkpoint waits for no one and no writer waits
for it: the batches go on appending to the WAL meanwhile, and the next writer
after a complete one starts the WAL again from its beginning. When the WAL file
has still grown past ``TRUNCATE_BYTES`` (readers that kept it from starting
over), a TRUNCATE checkpoint under the store's write lock cuts it back: rare.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from contextlib import AbstractContextManager

from aposos.center import uploadtrace

__all__ = ["PASSIVE_PAGES", "TRUNCATE_BYTES", "WalCheckpointer", "wal_frames"]

PASSIVE_PAGES = 256
TRUNCATE_BYTES = 64 * 2**20
TRUNCATE_WAIT_MS = 100  # for readers to leave the WAL, holding the write lock


def wal_frames(database: str) -> tuple[int, int]:
    """(frames in the WAL, frames already copied back) from the WAL index's header;
    (0, 0) without one."""
    try:
        with open(f"{database}-shm", "rb") as f:
            head = f.read(100)
    except OSError:
        return (0, 0)
    if len(head) < 100:
        return (0, 0)
    return (
        int.from_bytes(head[16:20], sys.byteorder),
        int.from_bytes(head[96:100], sys.byteorder),
    )


class WalCheckpointer:
    """Keeps the WAL of ``database`` short from a thread of its own.

    Parameters
    ----------
    database : the SQLite file.
    lock : the store's write lock (held for the rare TRUNCATE checkpoint only).
    passive_pages : WAL frames not yet copied back that start a PASSIVE checkpoint.
    truncate_bytes : WAL file size that starts a TRUNCATE checkpoint.
    """

    def __init__(
        self,
        database: str,
        lock: AbstractContextManager,
        *,
        passive_pages: int = PASSIVE_PAGES,
        truncate_bytes: int = TRUNCATE_BYTES,
    ):
        self.database = database
        self.lock = lock
        self.passive_pages = passive_pages
        self.truncate_bytes = truncate_bytes
        self.passive = 0  # checkpoints taken (for tests and traces)
        self.truncated = 0
        self.failures = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def after_commit(self) -> None:
        """Called after each commit: wake the thread when the WAL is long (cheap)."""
        frames, backfilled = wal_frames(self.database)
        if frames - backfilled >= self.passive_pages:
            self._start()
            self._wake.set()

    def _start(self) -> None:
        if self._thread is None:
            with self._guard:
                if self._thread is None and not self._stop:
                    self._thread = threading.Thread(
                        target=self._run, name="aposos-wal-checkpoint", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, timeout=60.0, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=60000")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """A PASSIVE checkpoint; a TRUNCATE one (under the write lock) when the WAL
        file has grown past ``truncate_bytes``."""
        trace = uploadtrace.recorder()
        try:
            t0 = time.monotonic()
            got = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passive += 1
            if trace:
                trace.checkpoints.append((t0, time.monotonic(), "passive", *got))
            if os.path.getsize(f"{self.database}-wal") > self.truncate_bytes:
                # never hold up the writers long for readers to leave
                conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
                try:
                    with self.lock:
                        t0 = time.monotonic()
                        got = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                finally:
                    conn.execute("PRAGMA busy_timeout=60000")
                self.truncated += not got[0]
                if trace:
                    trace.checkpoints.append((t0, time.monotonic(), "truncate", *got))
        except (sqlite3.Error, OSError):
            self.failures += 1  # the next batch's wake tries again

    def close(self) -> None:
        """Stop the thread (a last checkpoint is left to SQLite's close); a later
        commit starts another."""
        with self._guard:
            self._stop = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._wake.set()
                thread.join()
            self._stop = False
