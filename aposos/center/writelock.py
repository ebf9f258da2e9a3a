"""The write lock of a SQLite database, shared by the threads and the processes that
write it (the API server, its correlation worker, the admin commands).

SQLite lets one writer in at a time. A writer that finds the database locked is put
to sleep by SQLite's busy handler in growing steps (up to 100 ms) and retried, so
it can wait far longer than the transaction ahead of it lasted, and late comers can
overtake it. Here writers queue on an exclusive ``flock`` on ``<database>-writelock``
instead: the kernel wakes the next one as soon as the lock is released. Within a
process a thread lock comes first, so the file lock is taken by one thread at a time.

>>> lock = WriteLock("/tmp/center.sqlite")  # doctest: +SKIP
>>> with lock: ...  # BEGIN IMMEDIATE ... COMMIT  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading

try:
    import fcntl
except (
    ImportError
):  # not on Windows: the thread lock alone, SQLite's busy handler between processes
    fcntl = None

__all__ = ["WriteLock"]


class WriteLock:
    """A context manager: this process's thread lock, then the database's file lock.

    Parameters
    ----------
    database : the SQLite file; ``None`` (in memory) takes the thread lock only.
    """

    def __init__(self, database: str | os.PathLike | None):
        self._threads = threading.Lock()
        self.path = None if database is None or fcntl is None else f"{database}-writelock"
        self._fd: int | None = None

    def __enter__(self) -> WriteLock:
        self._threads.acquire()
        if self.path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError:
                self.path = None  # a folder we cannot write a lock file in: SQLite's lock only
            except BaseException:
                self._threads.release()
                raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.path is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        """Close the lock file (a later use opens it again)."""
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
