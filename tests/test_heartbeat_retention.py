"""Retention of the center's heartbeat history: the housekeeper drops heartbeats older
than ``heartbeat_retention_days`` (on SQLite, and on PostgreSQL under the ``postgres``
marker), keeps the newer ones and each station's last heartbeat."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from aposos.center import schema as S
from aposos.center.config import CenterConfig, load_config
from aposos.center.dbtypes import utcnow
from aposos.center.housekeeping import Housekeeper, purge_heartbeats

REPO = Path(__file__).resolve().parents[1]
BODY = {"outbox_backlog": 0, "frames_reduced": 12, "solve_rate": 1.0}


def beat_aged(store, station: str, days: float) -> None:
    """A heartbeat of ``station`` as the center recorded it ``days`` ago."""
    store.record_heartbeat(station, outbox_backlog=0, agent_version="a", body=BODY)
    H = S.heartbeats
    with store.write() as conn:
        newest = conn.execute(select(H.c.id).order_by(H.c.id.desc()).limit(1)).scalar_one()
        then = utcnow() - timedelta(days=days)
        conn.execute(update(H).where(H.c.id == newest).values(received_at=then, at=then))


def ages(store) -> list[tuple[str, int]]:
    """(station, age in whole days) of every kept heartbeat, oldest first."""
    H = S.heartbeats
    with store.read() as conn:
        rows = conn.execute(select(H.c.station, H.c.received_at).order_by(H.c.id)).all()
    now = utcnow()
    return [(st, round((now - at) / timedelta(days=1))) for st, at in rows]


def test_heartbeats_older_than_the_retention_are_dropped(store):
    for station, days in [("IRN1", 45), ("PER1", 31), ("IRN1", 29), ("PER1", 2), ("IRN1", 0)]:
        beat_aged(store, station, days)
    keeper = Housekeeper(store, CenterConfig(heartbeat_retention_days=30))
    assert keeper.purge_heartbeats() == 2
    assert ages(store) == [("IRN1", 29), ("PER1", 2), ("IRN1", 0)]
    assert keeper.purge_heartbeats() == 0
    with store.read() as conn:  # each station's last heartbeat stays where the API reads it
        last = conn.execute(select(S.stations.c.code, S.stations.c.heartbeat)).all()
    assert {code for code, body in last if body} == {"IRN1", "PER1"}


def test_zero_keeps_every_heartbeat(store):
    beat_aged(store, "IRN1", 400)
    assert Housekeeper(store, CenterConfig(heartbeat_retention_days=0)).purge_heartbeats() == 0
    assert ages(store) == [("IRN1", 400)]


def test_a_long_history_goes_in_batches(store):
    for k in range(11):
        beat_aged(store, "PER1", 60 - k)
    beat_aged(store, "PER1", 1)
    assert purge_heartbeats(store, utcnow() - timedelta(days=30), batch=4) == 11
    assert ages(store) == [("PER1", 1)]


def test_the_housekeeper_thread_applies_it(store):
    beat_aged(store, "IRN1", 40)
    beat_aged(store, "IRN1", 3)
    keeper = Housekeeper(store, CenterConfig(heartbeat_retention_days=14))
    keeper.start()
    try:
        deadline = time.monotonic() + 60
        while len(ages(store)) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        keeper.stop()
    assert ages(store) == [("IRN1", 3)]


def test_the_retention_key_is_read_and_checked(tmp_path):
    assert load_config(REPO / "configs" / "center.toml").heartbeat_retention_days == 30.0
    assert CenterConfig().heartbeat_retention_days == 30.0
    path = tmp_path / "center.toml"
    path.write_text("[center]\nheartbeat_retention_days = 7\n")
    with pytest.raises(ValueError, match="heartbeat_retention_days must be 0 .* or at least 14"):
        load_config(path)
    path.write_text("[center]\nheartbeat_retention_days = 0\n")
    assert load_config(path).heartbeat_retention_days == 0
