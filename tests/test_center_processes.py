"""``server_processes = 2``: two API processes on one port, one correlation worker.

Real ``aposos center serve`` (tests/centerserver.py), stations uploading at once
from threads: every acknowledged tracklet is stored exactly once, the queue is
correlated once, and a restart picks up the same database.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from centerserver import CAT_0930, CenterProcess, children
from sqlalchemy import func, select
from test_center_faults import tracklet

from aposos.center import schema as S


@pytest.mark.slow  # four processes, 15 s of CPU: the quick loop leaves it out; make test runs it
def test_two_server_processes_store_every_upload_once_and_correlate_once(tmp_path):
    center = CenterProcess(tmp_path, worker=True, lease_s=5.0, server_processes=2).start()
    try:
        kids = children(center.proc.pid)
        serving = [
            k for k in kids if b"resource_tracker" not in Path(f"/proc/{k}/cmdline").read_bytes()
        ]
        assert len(serving) == 3, kids  # two API processes and the correlation worker
        with center.client(center.token("root", "admin")) as c:
            c.put_catalogue(CAT_0930)
        tokens = {code: center.token(code) for code in ("IRN1", "PAK1", "PER1")}
        acked: list[str] = []
        lock = threading.Lock()

        def station(code: str, seed: int):
            with center.client(tokens[code]) as c:
                for k in range(8):
                    batch = [tracklet(seed * 100 + 3 * k + j, code) for j in range(3)]
                    c.upload_tracklets(batch)
                    with lock:
                        acked.extend(t.uuid for t in batch)

        threads = [
            threading.Thread(target=station, args=(code, 10 * n + k))
            for n, code in enumerate(tokens, start=1)
            for k in range(2)  # two uploaders per station
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        counts = center.wait_for_queue(timeout=300)
        assert counts["done"] == len(acked) == 6 * 8 * 3, counts
        with center.store.read() as conn:
            stored = conn.execute(select(S.tracklets.c.uuid)).scalars().all()
            n_corr = conn.execute(select(func.count()).select_from(S.correlations)).scalar()
        assert sorted(stored) == sorted(acked)
        assert n_corr == len(acked)  # correlated once each
    finally:
        center.stop()


def test_the_worker_runs_at_the_lowest_priority_by_default():
    """Uploads get the CPU first: the correlation worker's default niceness is 19, in
    the code and in the shipped configuration alike."""
    from aposos.center.config import WorkerConfig, load_config

    shipped = load_config(Path(__file__).resolve().parents[1] / "configs" / "center.toml")
    assert WorkerConfig().nice == shipped.worker.nice == 19
