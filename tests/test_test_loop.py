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


def test_the_disk_cache_makes_a_value_once_and_again_when_its_source_changes(tmp_path, monkeypatch):
    import diskcache

    monkeypatch.setenv("APOSOS_TEST_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "maker.py"
    source.write_text("x = 1\n")
    made = []

    def make():
        made.append(1)
        return {"value": len(made)}

    def get():
        return diskcache.cached(diskcache.key("t", sources=[source], args=(3,)), make)

    assert get() == {"value": 1} and get() == {"value": 1} and len(made) == 1
    source.write_text("x = 2\n")  # the code changed: made again
    assert get() == {"value": 2} and len(made) == 2
    assert diskcache.key("t", args=(3,)) != diskcache.key("t", args=(4,))
    monkeypatch.setenv("APOSOS_TEST_CACHE", "off")
    assert get() == {"value": 3}


def test_a_cached_truth_set_equals_one_made_afresh(tmp_path, monkeypatch):
    import numpy as np
    from shared_data import CATALOGUE_NEW
    from truthset import build_truth_set, make_truth_set

    monkeypatch.setenv("APOSOS_TEST_CACHE", str(tmp_path))
    path = CATALOGUE_NEW
    fresh = make_truth_set(path, n_tracklets=12, seed=3)
    first, again = (build_truth_set(path, n_tracklets=12, seed=3) for _ in range(2))
    assert len(list(tmp_path.iterdir())) == 1
    for got in (first, again):
        assert got.catalogue_lines == fresh.catalogue_lines and got.sites == fresh.sites
        assert len(got.tracklets) == len(fresh.tracklets) > 0
        for a, b in zip(got.tracklets, fresh.tracklets):
            assert (a.norad_id, a.in_catalogue, a.tau_s) == (b.norad_id, b.in_catalogue, b.tau_s)
            assert np.array_equal(a.tracklet.ra_deg, b.tracklet.ra_deg)
            assert np.array_equal(a.tracklet.utc, b.tracklet.utc)


def test_the_costliest_files_go_first_each_file_whole_and_in_order():
    from types import SimpleNamespace

    from longest_first import order

    ids = ["t/a.py::1", "t/a.py::2", "t/b.py::1", "t/c.py::1", "t/c.py::2", "t/d.py::1"]
    items = [SimpleNamespace(nodeid=i) for i in ids]
    order(items, {"t/c.py": 90.0, "t/b.py": 10.0})
    assert [i.nodeid for i in items] == [
        "t/c.py::1", "t/c.py::2", "t/b.py::1", "t/a.py::1", "t/a.py::2", "t/d.py::1"
    ]  # fmt: skip


def test_the_cost_table_names_test_files_that_exist():
    from longest_first import TABLE, file_costs

    costs = file_costs()
    assert len(costs) >= 20 and all(cpu >= 0 for cpu in costs.values())
    root = TABLE.parents[1]
    assert all((root / name).is_file() for name in costs), "rewrite it: timing_plugin.py --table"
    assert file_costs(TABLE.with_name("no-such-table.json")) == {}


def test_the_timing_summary_adds_up_each_files_phases(tmp_path, capsys):
    import json

    from timing_plugin import cpu_by_file, main

    rows = [
        {"kind": "fixture", "name": "f", "test": "t/a.py::x", "cpu": 5.0},  # inside setup
        {"kind": "setup", "test": "t/a.py::x", "cpu": 5.5},
        {"kind": "call", "test": "t/a.py::x", "cpu": 2.0},
        {"kind": "teardown", "test": "t/a.py::x", "cpu": 0.5},
        {"kind": "call", "test": "t/b.py::y[1]", "cpu": 1.0},
        {"kind": "session", "test": "", "cpu": 12.0},
    ]
    (tmp_path / "timing-gw0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cpu_by_file(tmp_path) == {"t/a.py": 8.0, "t/b.py": 1.0}
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "timing-gw0: 12.0 CPU-s in all" in out and "9.0 CPU-s in 2 files" in out
    assert "busiest of 2 workers, costliest files first: 8.0 CPU-s" in out


def test_the_busiest_worker_is_predicted_as_xdist_hands_out_files():
    from longest_first import predicted_busiest

    costs = {"a": 10.0, "b": 6.0, "c": 5.0, "d": 4.0, "e": 1.0}
    assert predicted_busiest(costs, 1) == 26.0
    assert predicted_busiest(costs, 2) == 14.0  # a+d | b+c+e = 12
    assert predicted_busiest(costs, 3) == 10.0  # a | b+e | c+d
    assert predicted_busiest({}, 2) == 0.0
