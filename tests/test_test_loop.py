"""The test loop's own machinery: the center served in a thread of the test process."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from centerserver import CenterThread


def test_the_center_in_a_thread_serves_logs_and_stops(tmp_path):
    before = set(threading.enumerate())
    center = CenterThread(tmp_path, worker=True).start()
    try:
        assert httpx.get(f"{center.url}/healthz").json()["status"] == "ok"
        with pytest.raises(NotImplementedError, match="CenterProcess"):
            center.kill()
    finally:
        center.stop()
    assert '"GET /healthz HTTP/1.1" 200' in center.log.read_text()  # the access log
    deadline = time.monotonic() + 10
    while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, left  # server, worker and housekeeping threads all ended
