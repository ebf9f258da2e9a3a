"""The test loop's own machinery: which tests share a worker, and the in-thread center."""

from __future__ import annotations

import threading

import httpx
import pytest
from centerserver import CenterThread


@pytest.fixture(scope="module")
def shared_set_up():
    return object()


def test_a_test_sharing_a_module_fixture_runs_with_its_file(request, shared_set_up):
    mark = request.node.get_closest_marker("xdist_group")
    assert mark is not None and mark.args[0] == "tests/test_test_loop.py"


def test_a_test_with_its_own_set_up_goes_to_any_worker(request, tmp_path):
    assert request.node.get_closest_marker("xdist_group") is None


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
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not left, left  # server, worker and housekeeping threads all ended
