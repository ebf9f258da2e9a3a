"""The center database on SQLite and on a real PostgreSQL server: schema, tokens,
idempotent ingest, queries and the correlation queue."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import numpy as np
import pytest
from centerserver import CAT_0930, STATIONS, passes
from sqlalchemy import func, inspect, select, text

from aposos.center import schema as S
from aposos.center.auth import AuthError, authenticate, hash_token, issue_token
from aposos.center.config import CenterConfig, WorkerConfig
from aposos.center.snapshots import create_snapshot
from aposos.center.store import Filters, IngestConflict, Store, iso, parse_time, utcnow
from aposos.center.worker import (
    CorrelationWorker,
    claim_jobs,
    complete_jobs,
    enqueue_recorrelation,
    queue_counts,
    renew_leases,
    suitable_snapshot,
    wake_waiting,
)
from aposos.model import Candidate, Correlation, Tracklet

T0 = np.datetime64("2020-10-01T18:00:00.000000", "us")


def make_tracklet(station="IRN1", start=T0, n=5, seed=0, **kw) -> Tracklet:
    rng = np.random.default_rng(seed)
    utc = start + np.arange(n) * np.timedelta64(2_500_123, "us")
    return Tracklet(
        station=station,
        utc=utc,
        ra_deg=rng.uniform(0, 360) + 0.01 * np.arange(n),
        dec_deg=rng.uniform(-60, 60) + 0.01 * np.arange(n),
        sigma_arcsec=rng.uniform(0.5, 3.0, n),
        mag=np.where(np.arange(n) == 1, np.nan, rng.uniform(8, 14, n)),
        **kw,
    )


def add_snapshot(store, median: datetime, fp="fp1"):
    sid, new = store.add_snapshot(
        fingerprint=fp,
        source_name="test",
        n_objects=3,
        epochs=(median - timedelta(hours=6), median, median + timedelta(hours=6)),
        path="/nonexistent",
    )
    return sid


# ------------------------------------------------------------------ schema


def test_schema_is_created_stamped_and_upgrade_is_idempotent(store):
    assert store.upgrade() == S.SCHEMA_VERSION
    with store.read() as conn:
        assert S.schema_version(conn) == S.SCHEMA_VERSION
        names = set(inspect(conn).get_table_names())
    assert {"tracklets", "observations", "jobs", "correlations", "uploads"} <= names


def test_schema_upgrades_in_place_keeping_data(store):
    store.ingest(None, [make_tracklet()])

    def add_note_column(conn):
        conn.execute(text("ALTER TABLE tracklets ADD COLUMN note VARCHAR(40)"))
        conn.execute(text("UPDATE tracklets SET note = 'migrated'"))

    steps = (*S.MIGRATIONS, add_note_column)
    assert store.upgrade(migrations=steps) == S.SCHEMA_VERSION + 1
    assert store.upgrade(migrations=steps) == S.SCHEMA_VERSION + 1  # a second run: no change
    with store.read() as conn:
        assert S.schema_version(conn) == S.SCHEMA_VERSION + 1
        notes = conn.execute(text("SELECT note FROM tracklets")).scalars().all()
    assert notes == ["migrated"]
    assert store.list_tracklets(Filters(), 10).items[0]["n_obs"] == 5


def test_version_1_database_is_upgraded_to_the_hardening_columns(store):
    """A database made before tokens expired and tracklets had a content key."""
    store.ingest(None, [make_tracklet()])
    with store.write() as conn:
        conn.execute(text("DROP TABLE enrolments"))
        conn.execute(text("DROP INDEX ix_tracklets_content_key"))
        conn.execute(text("DROP INDEX ix_uploads_station_received"))
        for table, column in (
            ("principals", "expires_at"),
            ("principals", "previous_hash"),
            ("principals", "previous_until"),
            ("uploads", "attempts"),
            ("tracklets", "content_key"),
            ("tracklets", "duplicate_of"),
        ):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(S.schema_info.update().values(version=1))
    assert store.upgrade() == S.SCHEMA_VERSION
    with store.read() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("tracklets")}
        assert {"content_key", "duplicate_of"} <= columns
        assert inspect(conn).has_table("enrolments")
    assert store.list_tracklets(Filters(), 10).items[0]["n_obs"] == 5
    # the old tracklet has no content key: a copy of it is stored plainly, not linked
    copy = make_tracklet()
    assert store.ingest(None, [copy])[0].duplicate_of is None


def test_database_newer_than_the_code_is_refused(store):
    with store.write() as conn:
        conn.execute(S.schema_info.update().values(version=S.SCHEMA_VERSION + 5))
    with pytest.raises(RuntimeError, match="newer than this software"):
        store.upgrade()


def test_sqlite_runs_in_wal_mode(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x' / 'c.sqlite'}")  # makes the folder
    s.upgrade()
    with s.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    s.close()


def test_unsupported_database_is_named():
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        Store("mysql://x@localhost/db")


# ------------------------------------------------------------------ tokens


def test_tokens_store_only_a_hash_and_can_be_revoked(store):
    token = issue_token(store, "IRN1", "station")
    assert len(token) > 40
    with store.read() as conn:
        stored = conn.execute(select(S.principals.c.token_hash)).scalars().all()
    assert stored == [hash_token(token)] and token not in stored[0]
    who = authenticate(store, f"Bearer {token}")
    assert (who.name, who.role, who.station) == ("IRN1", "station", "IRN1")
    with pytest.raises(ValueError, match="already has a token"):
        issue_token(store, "IRN1", "station")
    assert store.revoke("IRN1") and not store.revoke("IRN1")
    with pytest.raises(AuthError) as err:
        authenticate(store, f"Bearer {token}")
    assert err.value.status == 401
    fresh = issue_token(store, "IRN1", "station")  # a revoked name may get a new token
    assert authenticate(store, f"Bearer {fresh}").name == "IRN1"
    with pytest.raises(AuthError):
        authenticate(store, "Basic abc")
    with pytest.raises(ValueError, match="bad name"):
        issue_token(store, "bad name!", "analyst")
    with pytest.raises(ValueError, match="unknown role"):
        issue_token(store, "bob", "root")


# ------------------------------------------------------------------ ingest


def test_ingest_round_trips_observations_exactly(store):
    t = make_tracklet(object="2020-001A")
    (res,) = store.ingest(None, [t])
    assert res.new
    back = store.load_tracklets([res.id])[res.id]
    assert back.uuid == t.uuid and back.station == t.station and back.object == t.object
    np.testing.assert_array_equal(back.utc, t.utc)
    np.testing.assert_array_equal(back.ra_deg, t.ra_deg)  # bit for bit
    np.testing.assert_array_equal(back.dec_deg, t.dec_deg)
    np.testing.assert_array_equal(back.sigma_arcsec, t.sigma_arcsec)
    np.testing.assert_array_equal(np.isnan(back.mag), np.isnan(t.mag))
    detail = store.get_tracklet(t.uuid)
    assert detail["t_start"] == "2020-10-01T18:00:00.000000Z"
    assert detail["observations"][1]["mag"] is None
    assert detail["status"] == "pending" and detail["correlation"] is None


def test_ingest_is_idempotent_on_uuid(store):
    a, b = make_tracklet(seed=1), make_tracklet(seed=2)
    up1 = store.save_raw_upload("IRN1", "application/json", b"[...]")
    first = store.ingest(up1, [a])
    up2 = store.save_raw_upload("IRN1", "application/json", b"[...]")
    second = store.ingest(up2, [a, b, b])
    assert [r.new for r in second] == [False, True, False]
    assert second[0].id == first[0].id and second[1].id == second[2].id
    up3 = store.save_raw_upload("IRN1", "application/json", b"[...]")
    third = store.ingest(up3, [b, a])
    assert not any(r.new for r in third)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(S.tracklets)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(S.jobs)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(S.observations)).scalar() == 10
        # the raw copy of an upload that brought nothing new is dropped again
        kept = conn.execute(select(S.uploads.c.id).order_by(S.uploads.c.id)).scalars().all()
    assert kept == [up1, up2]


def test_uuid_of_another_station_is_a_conflict_and_stores_nothing(store):
    a = make_tracklet(seed=1)
    store.ingest(None, [a])
    stolen = make_tracklet(station="PAK1", seed=3, uuid=a.uuid)
    other = make_tracklet(station="PAK1", seed=4)
    with pytest.raises(IngestConflict, match=r"record 1: tracklet .* another station"):
        store.ingest(None, [other, stolen])
    assert store.list_tracklets(Filters(), 10).items[0]["station"] == "IRN1"
    assert len(store.list_tracklets(Filters(), 10).items) == 1


def test_concurrent_uploads_of_the_same_tracklets_store_each_once(store):
    batch = [make_tracklet(seed=s, start=T0 + np.timedelta64(s, "m")) for s in range(40)]
    errors = []

    def upload(k):
        try:
            rng = np.random.default_rng(k)
            for _ in range(3):
                store.ingest(None, list(rng.permutation(np.array(batch, dtype=object))[:25]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    with store.read() as conn:
        uuids = conn.execute(select(S.tracklets.c.uuid)).scalars().all()
        jobs = conn.execute(select(func.count()).select_from(S.jobs)).scalar()
    assert len(uuids) == len(set(uuids)) == jobs
    assert set(uuids) <= {t.uuid for t in batch}


# ------------------------------------------------------------------ queries


def test_list_filters_and_pagination(store):
    ts = [
        make_tracklet(station=st, start=T0 + np.timedelta64(k, "h"), seed=k)
        for k, st in enumerate(["IRN1", "PAK1", "IRN1", "PER1", "IRN1"])
    ]
    store.ingest(None, ts)
    page = store.list_tracklets(Filters(station="IRN1"), limit=2)
    assert [i["uuid"] for i in page.items] == [ts[0].uuid, ts[2].uuid]
    assert page.next_offset == 2
    last = store.list_tracklets(Filters(station="IRN1"), limit=2, offset=2)
    assert [i["uuid"] for i in last.items] == [ts[4].uuid] and last.next_offset is None
    since = parse_time("2020-10-01T19:00:00Z")
    until = parse_time("2020-10-01T22:00:00+00:00")
    window = store.list_tracklets(Filters(since=since, until=until), limit=10)
    assert [i["uuid"] for i in window.items] == [t.uuid for t in ts[1:4]]
    assert store.list_tracklets(Filters(status="correlated"), 10).items == []


def test_heartbeats_and_station_counts(store):
    issue_token(store, "IRN1", "station")
    store.ingest(None, [make_tracklet(seed=1), make_tracklet(seed=2)])
    store.record_heartbeat("IRN1", outbox_backlog=7, agent_version="0.1", body={"x": 1})
    (item,) = store.list_stations(10).items
    assert item["code"] == "IRN1" and item["outbox_backlog"] == 7
    assert item["tracklets"] == 2 and item["by_status"]["pending"] == 2
    assert item["last_heartbeat"].endswith("Z")


def test_time_helpers():
    assert iso(parse_time("2020-10-01T19:00:00.5+02:00")) == "2020-10-01T17:00:00.500000Z"
    assert iso(parse_time("2020-10-01")) == "2020-10-01T00:00:00.000000Z"
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_time("yesterday")


# ------------------------------------------------------------------ queue


def correlation(norad=25544, status="correlated") -> Correlation:
    return Correlation(
        status=status,
        norad_id=norad if status == "correlated" else None,
        score=0.97,
        rms_arcsec=1.4,
        time_offset_s=0.12,
        cross_track_arcsec=0.8,
        candidates=[Candidate(norad, 0.97, 1.4, 0.12), Candidate(12345, 0.1, 900.0, 4.0)],
    )


def test_queue_claim_complete_and_lease_expiry(store):
    results = store.ingest(None, [make_tracklet(seed=k) for k in range(5)])
    sid = add_snapshot(store, datetime(2020, 10, 1, 12))
    a = claim_jobs(store, "A", 3, lease_seconds=60)
    b = claim_jobs(store, "B", 10, lease_seconds=0.0)  # B's lease runs out at once
    assert len(a) == 3 and len(b) == 2 and not {j.id for j in a} & {j.id for j in b}
    assert claim_jobs(store, "C", 10, lease_seconds=60) != []  # C takes B's two back
    assert complete_jobs(store, "B", [(j, sid, correlation()) for j in b]) == 0  # not B's now
    assert complete_jobs(store, "A", [(j, sid, correlation()) for j in a]) == 3
    assert renew_leases(store, "C", 60) == 2
    counts = queue_counts(store)
    assert counts["done"] == 3 and counts["running"] == 2 and counts["pending"] == 0
    detail = store.get_tracklet(a[0].tracklet_id)
    assert detail["status"] == "correlated" and detail["norad_id"] == 25544
    assert detail["correlation"]["candidates"][1]["norad_id"] == 12345
    assert detail["correlation"]["snapshot_id"] == sid
    page = store.list_correlations(Filters(norad_id=25544), 10)
    assert len(page.items) == 3 and page.items[0]["rms_arcsec"] == 1.4
    hist = store.object_history(25544, 10)
    assert len(hist.items[0]["observations"]) == 5
    assert {r.id for r in results} >= {j.tracklet_id for j in a}


def test_a_job_is_recorded_once_even_when_completed_twice(store):
    store.ingest(None, [make_tracklet()])
    sid = add_snapshot(store, datetime(2020, 10, 1, 12))
    (job,) = claim_jobs(store, "A", 1, 60)
    assert complete_jobs(store, "A", [(job, sid, correlation())]) == 1
    assert complete_jobs(store, "A", [(job, sid, correlation())]) == 0
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(S.correlations)).scalar() == 1


def test_recorrelation_keeps_history_and_waiting_jobs_wake(store):
    (r,) = store.ingest(None, [make_tracklet()])
    s1 = add_snapshot(store, datetime(2020, 10, 1, 12), fp="a")
    (job,) = claim_jobs(store, "A", 1, 60)
    complete_jobs(store, "A", [(job, s1, correlation(status="uncorrelated"))])
    s2 = add_snapshot(store, datetime(2020, 10, 2, 12), fp="b")
    assert add_snapshot(store, datetime(2020, 10, 2, 12), fp="b") == s2  # same fingerprint
    n = enqueue_recorrelation(store, since=None, until=None, snapshot_id=s2)
    assert n == 1
    assert enqueue_recorrelation(store, since=None, until=None, snapshot_id=s2) == 0
    (job2,) = claim_jobs(store, "A", 5, 60)
    assert job2.snapshot_id == s2
    complete_jobs(store, "A", [(job2, s2, correlation())])
    detail = store.get_tracklet(r.id)
    assert detail["status"] == "correlated" and detail["snapshot_id"] == s2
    assert [c["status"] for c in detail["correlation_history"]] == ["uncorrelated", "correlated"]
    assert store.list_correlations(Filters(status="uncorrelated"), 10).items == []
    # a job with nowhere to go waits, and wakes when a snapshot arrives
    with store.write() as conn:
        conn.execute(
            S.jobs.insert().values(tracklet_id=r.id, state="waiting", created_at=T0.tolist())
        )
    assert wake_waiting(store) == 1 and queue_counts(store)["pending"] == 1


def test_suitable_snapshot_is_the_newest_near_enough():
    cfg = CenterConfig(max_days_after_epoch=10, max_days_before_epoch=3)
    snaps = [
        {"id": 1, "_epoch_median": datetime(2020, 9, 30)},
        {"id": 2, "_epoch_median": datetime(2020, 10, 2)},
        {"id": 3, "_epoch_median": datetime(2020, 12, 1)},
    ]
    assert suitable_snapshot(snaps, datetime(2020, 10, 1), cfg)["id"] == 2
    assert suitable_snapshot(snaps, datetime(2020, 10, 11), cfg)["id"] == 2
    assert suitable_snapshot(snaps, datetime(2020, 10, 13), cfg) is None
    assert suitable_snapshot(snaps, datetime(2020, 9, 27, 1), cfg)["id"] == 1
    assert suitable_snapshot(snaps, datetime(2020, 11, 29), cfg)["id"] == 3


# ------------------------------------------------------------------ worker


def test_worker_correlates_each_queued_tracklet_once(store, tmp_path):
    """The real correlator on a tiny real catalogue: Hubble and 40 other payloads."""
    lines = CAT_0930.read_text().splitlines()
    keep = [k for k in range(0, len(lines) - 2, 3) if k < 120 or int(lines[k + 1][2:7]) == 20580]
    tiny = "\n".join(line for k in keep for line in lines[k : k + 3]) + "\n"
    config = CenterConfig(
        data_dir=tmp_path / "data",
        stations_dir=STATIONS,
        worker=WorkerConfig(batch_size=3, poll_seconds=0.05, lease_seconds=30),
    )
    snap = create_snapshot(store, config, tiny.encode(), "tiny").snapshot
    assert snap["n_objects"] == len(keep)
    hst = passes("IRN1", [20580], np.datetime64("2020-10-01T15:00", "us"))[20580]
    lost = make_tracklet(station="IRN1", seed=5)  # nothing of the catalogue there
    nowhere = make_tracklet(station="XXX9", seed=6)  # no site known
    late = make_tracklet(start=np.datetime64("2021-06-01T20:00", "us"), seed=7)
    ids = {r.uuid: r.id for r in store.ingest(None, [hst, lost, nowhere, late])}
    worker = CorrelationWorker(store, config)
    handled = 0
    while n := worker.run_once():
        handled += n
    assert handled == 4 and worker.run_once() == 0
    assert queue_counts(store) == {
        "pending": 0, "running": 0, "waiting": 1, "done": 2, "failed": 1
    }  # fmt: skip
    found = store.get_tracklet(ids[hst.uuid])
    assert found["status"] == "correlated" and found["norad_id"] == 20580
    assert found["correlation"]["snapshot_id"] == snap["id"]
    assert store.get_tracklet(ids[lost.uuid])["status"] == "uncorrelated"
    failed = store.get_tracklet(ids[nowhere.uuid])
    assert failed["status"] == "pending" and "no site known" in failed["queue"]["error"]
    assert store.get_tracklet(ids[late.uuid])["queue"]["state"] == "waiting"
    # started as a thread, it finds nothing more to do: nothing is correlated twice
    worker.start()
    time.sleep(0.3)
    worker.stop()
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(S.correlations)).scalar() == 2


def test_an_upload_and_its_raw_copy_in_one_transaction_or_in_chunks(store):
    batch = [make_tracklet(seed=k, start=T0 + np.timedelta64(k, "m")) for k in range(8)]
    batch.append(batch[1])  # a repeat in a later chunk
    upload_id, results = store.ingest_upload("IRN1", "application/json", b"raw", batch, chunk=3)
    assert [r.new for r in results] == [True] * 8 + [False]
    assert [r.index for r in results] == list(range(9)) and results[8].id == results[1].id
    with store.read() as conn:
        row = conn.execute(select(S.uploads).where(S.uploads.c.id == upload_id)).one()
        n_jobs = conn.execute(select(func.count()).select_from(S.jobs)).scalar()
    assert (row.state, row.n_tracklets, row.n_new, row.payload) == ("stored", 9, 8, b"raw")
    assert n_jobs == 8
    again, repeat = store.ingest_upload("IRN1", "application/json", b"raw", batch[:2])
    assert again is None and not any(r.new for r in repeat)  # a pure repeat keeps no copy
    changed = make_tracklet(seed=0, start=T0, uuid=batch[0].uuid)
    changed.dec_deg[0] += 0.1
    with pytest.raises(IngestConflict, match="different content"):
        store.ingest_upload("IRN1", "application/json", b"x", [changed])


def test_concurrent_uploads_share_commits_and_fail_alone(tmp_path):
    """Group commit on SQLite: 8 threads upload at once; a conflicting upload fails
    alone, every other one is stored exactly once."""
    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.upgrade()
    first = make_tracklet(seed=999)
    store.ingest_upload("IRN1", "application/json", b"x", [first])
    bad = make_tracklet(seed=998, uuid=first.uuid)  # same UUID, other observations
    errors, done = [], []

    def station(k: int):
        for j in range(15):
            batch = [make_tracklet(seed=1000 * k + j, start=T0 + np.timedelta64(j, "m"))]
            if (k, j) == (3, 7):
                batch.append(bad)
            try:
                done.extend(r.uuid for r in store.ingest_upload("IRN1", "a", b"x", batch)[1])
            except IngestConflict as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=station, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(errors) == 1 and first.uuid in errors[0]
    with store.read() as conn:
        stored = conn.execute(select(S.tracklets.c.uuid)).scalars().all()
    assert sorted(stored) == sorted([first.uuid, *done]) and len(done) == 8 * 15 - 1
    store.close()


def test_driver_level_times_are_what_sqlalchemy_writes(tmp_path):
    """The upload path writes observation and job times at the driver: the text must
    be exactly what SQLAlchemy's DateTime writes on SQLite (times compare as text)."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from aposos.center.ingestsql import db_time, db_times

    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    utc = np.array(
        ["1957-10-04T19:28:34", "2020-10-01T18:00:03.5", "2099-12-31T23:59:59.999999"],
        dtype="datetime64[us]",
    )
    dialect = sqlite.dialect()
    write = DateTime().dialect_impl(dialect).bind_processor(dialect)
    with store.engine.connect() as conn:
        assert db_times(conn, utc) == [write(t) for t in utc.tolist()]
    assert [db_time(t) for t in utc.tolist()] == [write(t) for t in utc.tolist()]
    store.close()


def test_driver_level_upload_reads_back_as_sqlalchemy_wrote_it(tmp_path):
    """The SQLite upload path writes tracklets, uploads and jobs at the driver: read
    through SQLAlchemy, the times and values are the tracklet's own."""
    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.upgrade()
    t = make_tracklet(seed=5, start=T0)
    upload_id, results = store.ingest_upload("IRN1", "application/json; x=\u00e9", b"body", [t])
    K, U, J = S.tracklets, S.uploads, S.jobs
    with store.read() as conn:
        row = conn.execute(select(K).where(K.c.id == results[0].id)).one()
        up = conn.execute(select(U).where(U.c.id == upload_id)).one()
        job = conn.execute(select(J).where(J.c.tracklet_id == row.id)).one()
    utc = t.utc.astype("datetime64[us]").tolist()
    assert (row.uuid, row.station, row.upload_id, row.n_obs) == (t.uuid, "IRN1", upload_id, len(t))
    assert (row.t_start, row.t_end) == (utc[0], utc[-1])
    assert row.t_mid == t.mid_utc.astype("datetime64[us]").tolist()
    assert abs(row.received_at - utcnow()) < timedelta(minutes=1) and job.state == "pending"
    assert (up.state, up.n_tracklets, up.n_new, bytes(up.payload)) == ("stored", 1, 1, b"body")
    assert up.content_type == "application/json; x=?" and up.size_bytes == 4
    assert store.load_tracklets([row.id])[row.id].uuid == t.uuid
    store.close()


def test_driver_level_errors_are_sqlalchemy_errors(tmp_path):
    """A database fault in the driver-level upload path is SQLAlchemy's
    ``OperationalError`` (the API answers 503 and the station sends again), and the
    upload's raw copy is not left behind half-written."""
    from sqlalchemy.exc import OperationalError

    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.upgrade()
    with store.write() as conn:
        conn.exec_driver_sql("DROP TABLE jobs")
    with pytest.raises(OperationalError, match="no such table: jobs"):
        store.ingest_upload("IRN1", "application/json", b"x", [make_tracklet(seed=6)])
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(S.uploads)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(S.tracklets)).scalar() == 0
    store.close()


def test_the_worker_gives_the_engine_the_snapshot_before_as_history(store, tmp_path):
    """The correlator of a snapshot gets the newest snapshot 0.5 to 4 days older (its
    differences tell which orbits are being changed), none when there is none."""
    day = datetime(2026, 3, 17, 12)
    sids = {}
    for offset, fp in ((-6.0, "a"), (-2.0, "b"), (-1.0, "c"), (-0.2, "d"), (0.0, "e")):
        sids[fp] = store.add_snapshot(
            fingerprint=fp, source_name="test", n_objects=3,
            epochs=(day, day + timedelta(days=offset), day), path=f"/snap/{fp}",
        )[0]  # fmt: skip
    worker = CorrelationWorker(store, CenterConfig(data_dir=tmp_path))
    assert worker._previous_snapshot_path(store.snapshot(sids["e"])) == "/snap/c"
    assert worker._previous_snapshot_path(store.snapshot(sids["c"])) == "/snap/b"
    assert worker._previous_snapshot_path(store.snapshot(sids["a"])) is None


def _stored_key_format(t) -> str:
    """The content key as the database holds it (written one tracklet at a time before
    uploads were digested at once): the keys of rows already stored must not change."""
    import hashlib

    h = hashlib.sha256(t.station.encode("utf-8"))
    h.update(np.ascontiguousarray(t.utc.astype(np.int64)).tobytes())
    for values in (t.ra_deg % 360.0, t.dec_deg):
        h.update(np.round(values * 1e7).astype(np.int64).tobytes())
    return h.hexdigest()


def test_content_keys_of_an_upload_are_each_tracklets_own():
    """The upload path digests all its tracklets at once: the same keys as one by one
    (RA near 0/360 and negative, other stations, lengths and time units)."""
    from aposos.center.checks import content_key, content_keys

    tracklets = [make_tracklet(seed=s, n=2 + s % 5) for s in range(12)]
    tracklets[3].ra_deg[:] = [359.99999999, 1e-9, 0.0, 180.0, 360.0 - 1e-12][: len(tracklets[3])]
    tracklets[4] = make_tracklet(station="ZZ9", seed=4, start=np.datetime64("1999-12-31T23:59:59"))
    tracklets.append(
        Tracklet(station="IRN1", utc=[T0, T0 + np.timedelta64(1, "s")], ra_deg=[-10.5, -10.4],
                 dec_deg=[-89.9, -89.8])
    )  # fmt: skip
    assert content_keys(tracklets) == [_stored_key_format(t) for t in tracklets]
    assert [content_key(t) for t in tracklets] == content_keys(tracklets)
    assert content_keys([]) == []
    assert len(set(content_keys(tracklets))) == len(tracklets)
