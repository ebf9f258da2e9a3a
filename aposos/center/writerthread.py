"""A thread that runs the correlation worker's write transactions at the server's
priority while the correlating runs niced.

The worker process is niced (``[worker] nice``, 19 by default) so that correlating
never takes the CPU from the API server. But its write transactions hold the
database's write lock, which the uploads wait for: under load (other processes
at normal priority on both cores) a nice-19 thread holding the lock was kept off
the CPU for hundreds of milliseconds, and the uploads behind it waited (a worker
write held 341 ms, the slowest uploads waited 470 ms for the lock, traced at
load 17). On Linux a thread's nice value is its own: this thread is started
before the process lowers its priority and keeps the server's, so the lock is
never held by a thread the scheduler puts last. The correlating thread hands it
each transaction and waits (without the GIL) for the result.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["WriterThread"]


class WriterThread:
    """Runs ``call(fn, *args)`` in one long-lived thread; returns fn's result or raises
    its exception in the caller."""

    def __init__(self, name: str = "aposos-worker-writes"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self.native_id = None
        self._ready = threading.Event()
        self._jobs.put(None)  # learn the thread's id before anyone calls
        self._ready.wait()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self.native_id = threading.get_native_id()
                self._ready.set()
                continue
            if job == "stop":
                return
            fn, args, kwargs, done, out = job
            try:
                out.append((True, fn(*args, **kwargs)))
            except BaseException as exc:  # handed to the caller
                out.append((False, exc))
            done.set()

    def call(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return fn(*args, **kwargs)
        done, out = threading.Event(), []
        self._jobs.put((fn, args, kwargs, done, out))
        done.wait()
        ok, value = out[0]
        if not ok:
            raise value
        return value

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put("stop")
            self._thread.join()
