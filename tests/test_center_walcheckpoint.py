"""WAL checkpoints beside the group commits: no batch's commit copies the WAL back,
a thread of its own does, and the WAL stays short.

A real SQLite file and the store's real group commit.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import text

from aposos.center.groupcommit import GroupCommit
from aposos.center.store import Store
from aposos.center.walcheckpoint import WalCheckpointer, wal_frames

WAIT_S = 10.0
ROW = "x" * 3000  # about one page per row


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    s.upgrade()
    with s.write() as conn:
        conn.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)"))
    yield s
    s.close()


def _fill(group: GroupCommit, batches: int, rows: int = 10) -> None:
    for _ in range(batches):
        group.run(
            lambda conn: conn.execute(
                text("INSERT INTO filler (v) VALUES (:v)"), [{"v": ROW}] * rows
            )
        )


def _settled(ckpt: WalCheckpointer, database: str) -> tuple[int, int]:
    deadline = time.monotonic() + WAIT_S
    while True:
        frames, backfilled = wal_frames(database)
        if frames - backfilled < ckpt.passive_pages or time.monotonic() > deadline:
            return frames, backfilled
        time.sleep(0.01)


def test_the_batches_connection_commits_without_sqlites_checkpoint(store):
    group = store._group
    assert group.checkpointer is store._checkpointer is not None
    _fill(group, 1)
    db = group._conn.connection.driver_connection
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0


def test_a_long_wal_is_checkpointed_by_the_thread_not_by_a_commit(store):
    """Past ``passive_pages`` the thread copies the WAL back; the batches go on."""
    database = store.url.database
    ckpt = store._checkpointer
    ckpt.passive_pages = 64
    _fill(store._group, 40)  # some 400 pages
    frames, backfilled = _settled(ckpt, database)
    assert ckpt.passive >= 1
    assert ckpt.failures == 0
    assert frames - backfilled < 64
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM filler")).scalar_one() == 400


def test_without_the_thread_the_wal_would_grow(tmp_path):
    """The control: the same writes with the automatic checkpoint off and no thread
    leave every frame in the WAL (so the test above is the thread's doing)."""
    s = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    s.upgrade()
    with s.write() as conn:
        conn.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)"))

    class Idle(WalCheckpointer):
        def after_commit(self):
            pass

    group = GroupCommit(s.engine, threading.Lock(), checkpointer=Idle(s.url.database, None))
    try:
        _fill(group, 40)
        frames, backfilled = wal_frames(s.url.database)
        assert frames - backfilled >= 400
    finally:
        group.close()
        s.close()


def test_a_wal_file_grown_too_big_is_truncated_under_the_write_lock(store):
    database = store.url.database
    ckpt = store._checkpointer
    ckpt.passive_pages = 64
    with store.read() as conn:  # a reader keeps the WAL from starting over
        conn.execute(text("SELECT count(*) FROM filler")).scalar_one()
        _fill(store._group, 40)
    assert os.path.getsize(f"{database}-wal") > 300 * 4096
    ckpt.truncate_bytes = 100 * 4096
    held = []

    class Spy:
        def __enter__(self):
            held.append(True)

        def __exit__(self, *exc):
            pass

    ckpt.lock = Spy()
    _fill(store._group, 1)
    deadline = time.monotonic() + WAIT_S
    while ckpt.truncated == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ckpt.truncated == 1 and held
    assert os.path.getsize(f"{database}-wal") == 0


def test_closing_stops_the_thread_and_a_later_commit_starts_another(store):
    ckpt = store._checkpointer
    ckpt.passive_pages = 16
    _fill(store._group, 5)
    _settled(ckpt, store.url.database)
    assert ckpt._thread is not None and ckpt._thread.is_alive()
    old = ckpt._thread
    ckpt.close()
    assert not old.is_alive() and ckpt._thread is None
    before = ckpt.passive
    _fill(store._group, 5)
    _settled(ckpt, store.url.database)
    assert ckpt.passive > before
