"""The correlation worker in a process of its own, beside the API server.

Correlating is CPU work in Python and numba; in the server's process it would hold
the interpreter lock against request handling and stretch upload latencies. Here it
runs in a child process (started with ``spawn``: nothing of the server's threads
is inherited) at a lower scheduling priority, so uploads get the CPU first. Both
meet only in the database, through the job queue and its leases.

The child stops when asked (:meth:`WorkerProcess.stop`), on SIGTERM, or by itself
when the server's process goes away (a ``kill -9`` of the server): its claimed jobs
then go back to the queue when their lease runs out.

>>> proc = WorkerProcess(config)  # doctest: +SKIP
>>> proc.start(); ...; proc.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal

from aposos.center.config import CenterConfig

__all__ = ["WorkerProcess", "run_worker"]

log = logging.getLogger(__name__)
PARENT_CHECK_S = 0.5  # how often the child looks whether the server still lives


class WorkerProcess:
    """The correlation worker as a child process of the server.

    Parameters
    ----------
    config : the center configuration (``[worker]`` settings, database URL).
    """

    def __init__(self, config: CenterConfig):
        self.config = config
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._proc = None

    def start(self) -> None:
        if self._proc is not None:
            return
        self._proc = self._ctx.Process(
            target=run_worker,
            args=(self.config, os.getpid(), self._stop),
            name="aposos-correlation-worker",
            daemon=True,
        )
        self._proc.start()
        log.info("correlation worker started (process %d)", self._proc.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to finish its batch and wait for it (then end it)."""
        if self._proc is None:
            return
        self._stop.set()
        self._proc.join(timeout)
        if self._proc.is_alive():
            log.warning("correlation worker did not stop in %.0f s; terminated", timeout)
            self._proc.terminate()
            self._proc.join(5.0)
        self._proc = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid


def run_worker(config: CenterConfig, parent_pid: int, stop) -> None:
    """The child's main: correlate until ``stop`` is set, SIGTERM, or the parent dies."""
    from aposos.center import uploadtrace
    from aposos.center.heap import settle_heap
    from aposos.center.store import Store
    from aposos.center.worker import CorrelationWorker
    from aposos.center.writerthread import WriterThread

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it stops us
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: worker: %(message)s")
    writer = WriterThread()  # started before the nice below: keeps the server's priority
    if config.worker.nice:
        try:
            os.nice(config.worker.nice)
        except OSError:
            pass  # not allowed here: run at the server's priority
    uploadtrace.recorder()  # its garbage collections from the start, when traced
    store = Store(config.database_url, sqlite_synchronous=config.sqlite_synchronous)
    worker = CorrelationWorker(store, config, freeze_heap=True, writer=writer)
    settle_heap()  # no long collector pauses inside the worker's write transactions
    worker.start()
    try:
        while not stop.wait(PARENT_CHECK_S):
            if os.getppid() != parent_pid:
                log.warning("the server's process is gone; stopping")
                break
    finally:
        worker.stop()
        writer.close()
        store.close()
        uploadtrace.dump()
