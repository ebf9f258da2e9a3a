"""Catalogue sanity at the center: a snapshot that is implausibly small or whose
epochs do not fit after the newest one is refused with its bad records named
(unless forced), and tracklets whose result came from a worse snapshot are queued
again when a better one arrives. Real CelesTrak catalogues, a real SQLite store."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from centerserver import CAT_0930, CAT_1002, CenterThread

from aposos.center.config import CenterConfig
from aposos.center.snapshots import SnapshotError, create_snapshot
from aposos.center.store import Store
from aposos.center.worker import claim_jobs, complete_jobs, queue_counts, requeue_worse_results
from aposos.model import Correlation, Tracklet

T0 = np.datetime64("2020-10-01T18:00:00", "us")


def garbage_after_one_tle() -> bytes:
    lines = CAT_0930.read_text().splitlines()
    return ("\n".join(lines[:3] + [f"garbage line {k}" for k in range(6)]) + "\n").encode()


@pytest.fixture
def setup(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'center.sqlite'}")
    store.upgrade()
    yield store, CenterConfig(data_dir=tmp_path)
    store.close()


def arc(k: int, start=T0) -> Tracklet:
    utc = start + np.timedelta64(k * 60, "s") + (np.arange(4) * 3e6).astype("timedelta64[us]")
    return Tracklet("IRN1", utc, 10.0 + k + 0.01 * np.arange(4), 5.0 + 0.01 * np.arange(4))


def test_implausible_catalogues_are_refused_unless_forced(setup):
    store, config = setup
    first = create_snapshot(store, config, CAT_0930.read_bytes(), "0930")
    assert first.new and first.snapshot["n_objects"] == 3062
    with pytest.raises(SnapshotError, match="implausibly small") as err:
        create_snapshot(store, config, garbage_after_one_tle(), "broken")
    assert "force" in str(err.value) and err.value.extra["problems"]  # the bad records
    assert len(store.list_snapshots()) == 1
    forced = create_snapshot(store, config, garbage_after_one_tle(), "broken", force=True)
    assert forced.new and forced.snapshot["n_objects"] == 1
    strict = CenterConfig(data_dir=config.data_dir, snapshot_max_epoch_regress_days=1.0)
    create_snapshot(store, strict, CAT_1002.read_bytes(), "1002", force=True)
    with pytest.raises(SnapshotError, match="epochs do not fit"):
        create_snapshot(store, strict, CAT_0930.read_bytes(), "0930 again")


def test_results_from_a_worse_snapshot_are_queued_again(setup):
    store, config = setup
    small = create_snapshot(store, config, garbage_after_one_tle(), "broken").snapshot["id"]
    near = [arc(k) for k in range(5)]
    far = [arc(k, T0 + np.timedelta64(60, "D")) for k in range(2)]
    store.ingest(None, near + far)
    jobs = claim_jobs(store, "w", 100, 60)
    complete_jobs(store, "w", [(j, small, Correlation(status="uncorrelated")) for j in jobs])
    assert queue_counts(store)["done"] == 7
    better = create_snapshot(store, config, CAT_0930.read_bytes(), "0930").snapshot["id"]
    assert requeue_worse_results(store, config, better) == 5  # not the far ones
    assert requeue_worse_results(store, config, better) == 0  # already queued
    assert queue_counts(store)["pending"] == 5


def test_the_api_refuses_and_requeues(tmp_path):
    center = CenterThread(tmp_path, worker=False).start()
    try:
        admin = {"Authorization": f"Bearer {center.token('root', 'admin')}"}
        url = f"{center.url}/api/v1/catalogue"
        assert (
            httpx.put(url, content=CAT_0930.read_bytes(), headers=admin, timeout=120).status_code
            == 201
        )
        refused = httpx.put(url, content=garbage_after_one_tle(), headers=admin, timeout=60)
        assert refused.status_code == 422
        body = refused.json()
        assert "implausibly small" in body["detail"] and body["problems"]
        forced = httpx.put(
            url, params={"force": "true"}, content=garbage_after_one_tle(), headers=admin
        )
        assert forced.status_code == 201 and forced.json()["requeued"] == 0
        again = httpx.put(url, content=CAT_1002.read_bytes(), headers=admin, timeout=120)
        assert again.status_code == 201, again.text
        assert json.loads(again.text)["requeued"] == 0  # nothing was correlated yet
    finally:
        center.stop()
