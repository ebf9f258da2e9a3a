"""Group commit: concurrent uploads share a transaction and a disk sync, each writer
waits for its own batch's commit, and the batches keep one connection.

A real SQLite file; the writes' own code blocks on events so that the test decides
which batch each write falls in.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from aposos.center.groupcommit import GroupCommit
from aposos.center.store import Store

WAIT_S = 10.0


class LastComeFirst:
    """A lock that lets the latest waiter in first: as fair as a lock must be (not
    at all), and the order in which a busy server's threads often get it."""

    def __init__(self):
        self._turn = threading.Condition()
        self._held = False
        self._waiting: list[object] = []

    def __enter__(self):
        me = object()
        with self._turn:
            self._waiting.append(me)
            while self._held or self._waiting[-1] is not me:
                self._turn.wait()
            self._waiting.pop()
            self._held = True

    def __exit__(self, *exc):
        with self._turn:
            self._held = False
            self._turn.notify_all()


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    s.upgrade()
    yield s
    s.close()


def _queued(group, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(group._queue) < n:
        assert time.monotonic() < deadline, "writes did not queue"
        time.sleep(0.005)


def _write(group, name: str, gate: threading.Event | None, done: dict):
    def work(conn):
        if gate is not None:
            assert gate.wait(WAIT_S)
        return conn.execute(text("SELECT :n"), {"n": name}).scalar_one()

    def run():
        done[name] = group.run(work)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_a_follower_returns_when_its_batch_commits_not_after_the_next(store):
    """Under load the trace showed followers waiting up to 0.3 s behind the next
    batch: they waited for the write lock, which a new leader took first."""
    group, done = GroupCommit(store.engine, LastComeFirst()), {}
    first, second, third = threading.Event(), threading.Event(), threading.Event()
    a = _write(group, "a", first, done)  # batch 1, held open by the test
    _queued(group, 0)
    time.sleep(0.05)
    x = _write(group, "x", second, done)  # x and y: batch 2, while batch 1 runs
    y = _write(group, "y", second, done)
    _queued(group, 2)
    first.set()
    a.join(WAIT_S)
    time.sleep(0.05)  # batch 2 is running (held by ``second``)
    n = _write(group, "n", third, done)  # batch 3, held open until the end
    _queued(group, 1)
    second.set()
    x.join(WAIT_S)
    y.join(WAIT_S)
    try:
        # batch 3 is still running: the writes of batch 2 must not wait for it
        assert not x.is_alive() and not y.is_alive()
        assert done == {"a": "a", "x": "x", "y": "y"}
    finally:
        third.set()
        n.join(WAIT_S)
        group.close()
    assert done["n"] == "n"


def test_a_failing_write_fails_alone_and_batches_share_one_connection(store):
    group = store._group

    def bad(conn):
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))

    with pytest.raises(Exception, match="no_such_table"):
        group.run(bad)
    first = group._connection()  # a failed write does not spoil the batch's connection
    assert group.run(lambda conn: conn.execute(text("SELECT 7")).scalar_one()) == 7
    assert group._connection() is first
    cache = first.connection.driver_connection.execute("PRAGMA cache_size").fetchone()[0]
    assert cache == -65536
    store.close()  # gives it back; a later batch opens another
    assert group.run(lambda conn: conn.execute(text("SELECT 8")).scalar_one()) == 8
