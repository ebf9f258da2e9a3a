"""The niced worker's write transactions run in a thread at the server's priority.

Under load a nice-19 worker holding the write lock was kept off the CPU for up to
0.34 s while uploads queued behind it; its writes now go through a thread started
before the process lowers its priority (a thread's own nice value, on Linux).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from aposos.center.config import CenterConfig
from aposos.center.store import Store
from aposos.center.worker import CorrelationWorker, claim_jobs
from aposos.center.writerthread import WriterThread


def test_results_and_exceptions_come_back_to_the_caller():
    writer = WriterThread()
    try:
        assert writer.call(lambda a, b=0: (a + b, threading.get_native_id()), 2, b=3)[0] == 5
        assert writer.call(threading.get_native_id) == writer.native_id
        assert writer.native_id != threading.get_native_id()
        with pytest.raises(ValueError, match="bad"):
            writer.call(lambda: (_ for _ in ()).throw(ValueError("bad")))
        assert writer.call(lambda: "still serving") == "still serving"
    finally:
        writer.close()
    assert writer.call(lambda: "after close: here") == "after close: here"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_writer_keeps_its_priority_when_the_process_is_niced():
    """In a child process, since a nice value cannot be raised back."""
    code = textwrap.dedent(
        """
        import os
        from aposos.center.writerthread import WriterThread
        w = WriterThread()
        os.nice(7)
        late = WriterThread()  # started after the nice: inherits it
        print(os.getpriority(os.PRIO_PROCESS, 0),
              w.call(os.getpriority, os.PRIO_PROCESS, 0),
              late.call(os.getpriority, os.PRIO_PROCESS, 0))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    base = int(subprocess.run([sys.executable, "-c", "import os; print(os.nice(0))"],
                              capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert [int(x) for x in out.stdout.split()] == [base + 7, base, base + 7]


def test_the_worker_hands_its_write_transactions_to_the_writer(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.upgrade()
    writer, seen = WriterThread(), []
    real = writer.call

    def call(fn, *args, **kwargs):
        seen.append(fn)
        return real(fn, *args, **kwargs)

    writer.call = call
    try:
        worker = CorrelationWorker(store, CenterConfig(data_dir=tmp_path), writer=writer)
        assert worker.run_once() == 0
        assert seen == [claim_jobs]
    finally:
        writer.close()
        store.close()
