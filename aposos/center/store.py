"""The results database of the data center, through SQLAlchemy Core.

A SQLite file (WAL journal) by default; PostgreSQL when given a
``postgresql+psycopg://`` URL. Write transactions take SQLite's write lock at once
(``BEGIN IMMEDIATE``) so concurrent writers queue on the busy timeout instead of
failing half-way.

Times go in and out as naive UTC :class:`datetime.datetime`; :func:`iso` formats
them for the wire (ISO 8601 with a ``Z``). The read queries live in
:mod:`aposos.center.queries`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import bindparam, create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError

from aposos.center import ingestsql as Q
from aposos.center import schema as S
from aposos.center import uploadtrace
from aposos.center.checks import content_keys, same_content
from aposos.center.dbtypes import (
    ROLES,
    Filters,
    Page,
    iso,
    num,
    parse_time,
    utcnow,
)
from aposos.center.groupcommit import GroupCommit
from aposos.center.heartbeats import heartbeat_row
from aposos.center.queries import StoreQueries
from aposos.center.walcheckpoint import WalCheckpointer
from aposos.center.writelock import WriteLock
from aposos.model import Candidate, Correlation, Tracklet

__all__ = [
    "Filters",
    "IngestConflict",
    "IngestResult",
    "Page",
    "Store",
    "iso",
    "parse_time",
    "utcnow",
]


@dataclass(frozen=True)
class IngestResult:
    """What an upload did to one tracklet (``duplicate_of``: the earlier tracklet with
    the same observations, to which this one is linked)."""

    index: int
    uuid: str
    id: int
    new: bool
    duplicate_of: int | None = None


class IngestConflict(ValueError):
    """An uploaded UUID is already stored with other content (or another station),
    or given twice in one upload with different content."""


class Store(StoreQueries):
    """The data-center database.

    Parameters
    ----------
    url : SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
    sqlite_synchronous : SQLite ``PRAGMA synchronous``.

    Examples
    --------
    >>> store = Store("sqlite:///:memory:")  # doctest: +SKIP
    >>> store.upgrade()  # doctest: +SKIP
    1
    """

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL"):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._write_lock = contextlib.nullcontext()
        if self.is_sqlite:
            db = self.url.database
            self._write_lock = WriteLock(None if db in (None, "", ":memory:") else db)
        if self.is_sqlite:
            self.engine = self._sqlite_engine(sqlite_synchronous)
            db = self.url.database
            on_disk = db not in (None, "", ":memory:")
            self._checkpointer = WalCheckpointer(db, self._write_lock) if on_disk else None
            self._group = GroupCommit(
                self.engine, self._write_lock, checkpointer=self._checkpointer
            )
        elif self.url.get_backend_name() == "postgresql":
            self.engine = create_engine(self.url, pool_size=10, max_overflow=30, pool_pre_ping=True)
        else:
            raise ValueError(
                f"unsupported database {self.url.get_backend_name()!r}: "
                "use sqlite:///FILE or postgresql+psycopg://..."
            )

    def _sqlite_engine(self, synchronous: str) -> Engine:
        db = self.url.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            self.url,
            connect_args={"timeout": 60.0, "check_same_thread": False},
            pool_size=10,
            max_overflow=30,
        )
        sync = synchronous.upper()

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            write = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    # ----------------------------------------------------------------- plumbing

    def upgrade(self, migrations: Sequence[S.Migration] | None = None) -> int:
        """Create or upgrade the schema in place; returns its version."""
        if migrations is None:
            return S.upgrade_schema(self.engine)
        return S.upgrade_schema(self.engine, migrations)

    def close(self) -> None:
        if self.is_sqlite:
            self._group.close()
            if self._checkpointer is not None:
                self._checkpointer.close()
        self.engine.dispose()
        if isinstance(self._write_lock, WriteLock):
            self._write_lock.close()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (committed on success, rolled back on error).

        On SQLite, writers of every process queue on :class:`WriteLock` first: SQLite's
        own busy wait sleeps in steps and lets late comers overtake, which gives long
        tails.
        """
        trace = uploadtrace.recorder()
        called = time.monotonic() if trace else 0.0
        with self._write_lock, self.engine.connect() as conn:
            locked = time.monotonic() if trace else 0.0
            conn = conn.execution_options(write=True)
            with conn.begin():
                yield conn
            if trace:
                wal = trace.wal_state(self.url.database) if self.is_sqlite else None
                trace.writes.append((called, locked, time.monotonic(), wal))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (one consistent snapshot)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    # --------------------------------------------------------------- principals

    def add_principal(
        self, name: str, role: str, token_hash: str, *, expires_at: datetime | None = None
    ) -> None:
        """Register a token holder; a revoked name is given the new token.

        Raises ``ValueError`` when ``name`` already holds a live token.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        P = S.principals
        with self.write() as conn:
            row = conn.execute(select(P.c.id, P.c.revoked_at).where(P.c.name == name)).first()
            if row is not None and row.revoked_at is None:
                raise ValueError(f"{name!r} already has a token; revoke it first")
            values = {
                "role": role,
                "token_hash": token_hash,
                "created_at": utcnow(),
                "expires_at": expires_at,
                "previous_hash": None,
                "previous_until": None,
            }
            if row is None:
                conn.execute(P.insert().values(name=name, **values))
            else:
                conn.execute(P.update().where(P.c.id == row.id).values(revoked_at=None, **values))
            if role == "station":
                self._ensure_station(conn, name)
        self._principals_changed()

    def principal_by_token_hash(self, token_hash: str) -> dict | None:
        """The live holder of a token hash (not expired; a rotated-out token within its
        overlap), or ``None``."""
        now = utcnow()
        with self.engine.connect() as conn:
            db = Q.sqlite_driver(conn)
            if db is not None:  # every request asks: at the driver (see ingestsql)
                now = Q.db_time(now)
                row = Q.run_driver(db, _SQL_PRINCIPAL_BY_HASH, (token_hash, now, token_hash, now))
            else:
                row = conn.execute(_PRINCIPAL_BY_HASH, {"hash": token_hash, "now": now}).first()
        return None if row is None else {"name": row[0], "role": row[1]}

    def principal_entry(self, token_hash: str) -> tuple[str, str, str | None] | None:
        """The live holder of a token hash as (name, role, valid until) for a cache of
        verified tokens: the time (SQLite's text form, ``None``: no limit) is the
        token's expiry, or the end of a rotated-out token's overlap. SQLite only."""
        now = Q.db_time(utcnow())
        with self.engine.connect() as conn:
            row = Q.run_driver(
                Q.sqlite_driver(conn), _SQL_PRINCIPAL_ENTRY, {"h": token_hash, "now": now}
            )
        if row is None:
            return None
        return row[0], row[1], (row[3] if row[2] else row[4])

    @property
    def principals_stamp_path(self) -> str | None:
        """The file whose content changes after every change of the tokens (SQLite
        file databases; ``None`` otherwise): a process that caches verified tokens
        reads it on each request and forgets them all when it changed."""
        db = self.url.database if self.is_sqlite else None
        return None if db in (None, "", ":memory:") else f"{db}-principals"

    def principals_stamp(self) -> bytes:
        """The current content of :attr:`principals_stamp_path` (``b""``: none yet)."""
        try:
            with open(self.principals_stamp_path, "rb") as f:
                return f.read()
        except (OSError, TypeError):
            return b""

    def _principals_changed(self) -> None:
        """A new stamp, written after the change committed (a cache filled from the
        old rows holds the old stamp, so it is dropped at its next use)."""
        path = self.principals_stamp_path
        if path is None:
            return
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(os.urandom(16))
        os.replace(tmp, path)

    def rotate_token(
        self, name: str, token_hash: str, *, overlap_until: datetime, expires_at: datetime | None
    ) -> bool:
        """Give ``name`` a new token; the old one stays valid until ``overlap_until``.
        ``False`` when ``name`` holds no live token."""
        P = S.principals
        with self.write() as conn:
            row = conn.execute(
                select(P.c.id, P.c.token_hash).where(P.c.name == name, P.c.revoked_at.is_(None))
            ).first()
            if row is None:
                return False
            conn.execute(
                P.update()
                .where(P.c.id == row.id)
                .values(
                    token_hash=token_hash,
                    expires_at=expires_at,
                    previous_hash=row.token_hash,
                    previous_until=overlap_until,
                )
            )
        self._principals_changed()
        return True

    def add_enrolment(self, station: str, code_hash: str, expires_at: datetime) -> None:
        with self.write() as conn:
            conn.execute(
                S.enrolments.insert().values(
                    station=station, code_hash=code_hash, created_at=utcnow(), expires_at=expires_at
                )
            )

    def redeem_enrolment(self, code_hash: str) -> str | None:
        """Use up a one-time enrolment code; its station, or ``None`` (unknown, used
        or expired)."""
        E = S.enrolments
        now = utcnow()
        with self.write() as conn:
            row = conn.execute(
                select(E.c.id, E.c.station).where(
                    E.c.code_hash == code_hash, E.c.used_at.is_(None), E.c.expires_at > now
                )
            ).first()
            if row is None:
                return None
            res = conn.execute(
                E.update().where(E.c.id == row.id, E.c.used_at.is_(None)).values(used_at=now)
            )
        return row.station if res.rowcount == 1 else None

    def revoke(self, name: str) -> bool:
        """Revoke ``name``'s token; ``False`` if there was no live token."""
        P = S.principals
        with self.write() as conn:
            res = conn.execute(
                P.update()
                .where(P.c.name == name, P.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        self._principals_changed()
        return res.rowcount > 0

    def list_principals(self) -> list[dict]:
        P = S.principals
        with self.read() as conn:
            rows = conn.execute(
                select(P.c.name, P.c.role, P.c.created_at, P.c.revoked_at, P.c.expires_at).order_by(
                    P.c.name
                )
            ).all()
        return [
            {
                "name": r.name,
                "role": r.role,
                "created_at": iso(r.created_at),
                "revoked_at": iso(r.revoked_at),
                "expires_at": iso(r.expires_at),
            }
            for r in rows
        ]

    # ----------------------------------------------------------------- stations

    @staticmethod
    def _ensure_station(conn: Connection, code: str) -> None:
        T = S.stations
        if conn.execute(select(T.c.code).where(T.c.code == code)).first() is None:
            conn.execute(T.insert().values(code=code, created_at=utcnow()))

    def record_heartbeat(
        self, code: str, *, outbox_backlog: int | None, agent_version: str | None, body: dict
    ) -> datetime:
        """Store a station's heartbeat; returns its time."""
        T = S.stations
        now = utcnow()
        with self.write() as conn:
            self._ensure_station(conn, code)
            conn.execute(
                T.update()
                .where(T.c.code == code)
                .values(
                    last_heartbeat=now,
                    outbox_backlog=outbox_backlog,
                    agent_version=agent_version,
                    heartbeat=json.dumps(body),
                )
            )
            row = {**heartbeat_row(code, now, body), "outbox_backlog": outbox_backlog}
            conn.execute(S.heartbeats.insert().values(row))
        return now

    # ------------------------------------------------------------------ uploads

    def save_raw_upload(self, station: str, content_type: str, payload: bytes) -> int:
        """Store an upload's raw bytes before anything is parsed; returns its id.

        The upload counts one processing attempt (the one about to run).
        """
        with self.write() as conn:
            return self._insert_upload(conn, station, content_type, payload)

    def save_refused_upload(
        self, station: str, content_type: str, payload: bytes, error: str, state: str
    ) -> int:
        """Keep a refused upload (``rejected`` or ``quarantined``) with its reason."""
        with self.write() as conn:
            upload_id = self._insert_upload(conn, station, content_type, payload)
            _set_refused(conn, upload_id, error, state)
        return upload_id

    def reject_upload(self, upload_id: int, error: str, *, state: str = "rejected") -> None:
        """Mark an upload ``rejected`` (bad input) or ``quarantined`` (could not be
        processed), with the reason; its raw copy is kept for the retention time."""
        with self.write() as conn:
            _set_refused(conn, upload_id, error, state)

    def quarantine_upload(self, upload_id: int, reason: str) -> None:
        self.reject_upload(upload_id, reason, state="quarantined")

    def received_uploads(self, before: datetime | None = None) -> list[dict]:
        """Uploads stored raw but never processed (the server stopped in between),
        received before ``before``, without their payloads (see
        :meth:`claim_received_upload`)."""
        U = S.uploads
        q = select(U.c.id, U.c.station, U.c.content_type, U.c.attempts).where(
            U.c.state == "received"
        )
        if before is not None:
            q = q.where(U.c.received_at < before)
        with self.read() as conn:
            rows = conn.execute(q.order_by(U.c.id)).all()
        return [r._asdict() for r in rows]

    def claim_received_upload(self, upload_id: int, max_attempts: int) -> bytes | None:
        """Count one more processing attempt and return the payload; ``None`` (and the
        upload quarantined) when it was already attempted ``max_attempts`` times:
        processing it stopped the server before, so it is not tried again."""
        U = S.uploads
        with self.write() as conn:
            row = conn.execute(
                select(U.c.attempts, U.c.payload).where(
                    U.c.id == upload_id, U.c.state == "received"
                )
            ).first()
            if row is None:
                return None
            attempts = row.attempts or 0
            if attempts >= max_attempts:
                conn.execute(
                    U.update()
                    .where(U.c.id == upload_id)
                    .values(
                        state="quarantined",
                        error=f"processing did not finish in {attempts} attempt(s) "
                        "(the server stopped during it); not tried again",
                    )
                )
                return None
            conn.execute(U.update().where(U.c.id == upload_id).values(attempts=attempts + 1))
            return bytes(row.payload)

    def purge_payloads(self, older_than: datetime) -> int:
        """Drop the raw copies of rejected and quarantined uploads received before
        ``older_than`` (the rows and their reasons stay); returns how many."""
        U = S.uploads
        with self.write() as conn:
            res = conn.execute(
                U.update()
                .where(
                    U.c.state.in_(("rejected", "quarantined")),
                    U.c.received_at < older_than,
                    func.length(U.c.payload) > 0,
                )
                .values(payload=b"")
            )
        return res.rowcount

    def station_bytes(self, station: str) -> int:
        """Bytes of accepted uploads of ``station`` (its storage quota use; rejected
        ones are dropped after the retention time)."""
        U = S.uploads
        with self.read() as conn:
            n = conn.execute(
                select(func.coalesce(func.sum(U.c.size_bytes), 0)).where(
                    U.c.station == station, U.c.state.in_(("stored", "received"))
                )
            ).scalar()
        return int(n or 0)

    def ingest(self, upload_id: int | None, tracklets: Sequence[Tracklet]) -> list[IngestResult]:
        """Store tracklets and queue them for correlation, idempotent on UUID.

        A UUID already stored with the same content returns its stored id and stores
        nothing. When nothing in the upload is new, its raw copy is dropped again. A
        new UUID carrying the same observations (station, times, positions) as a stored
        tracklet is stored with ``duplicate_of`` pointing to the first and status
        ``duplicate``, and is not queued for correlation.

        Raises
        ------
        IngestConflict
            When a UUID is already stored under another station or with other
            observations, or comes twice in the upload with different content
            (nothing is stored).
        """
        first = _check_within_upload(tracklets)

        def once():
            with self.write() as conn:
                results, n_new = self._ingest_in(conn, upload_id, tracklets, first)
                if upload_id is not None:
                    self._close_upload(conn, upload_id, len(tracklets), n_new)
            return results

        return _retrying(once)

    def ingest_upload(
        self,
        station: str,
        content_type: str,
        payload: bytes,
        tracklets: Sequence[Tracklet],
        *,
        chunk: int = 100,
    ) -> tuple[int | None, list[IngestResult]]:
        """Store an upload's raw bytes and its tracklets: one transaction (one disk
        sync) when it holds up to ``chunk`` tracklets, else one per ``chunk``, so that
        a large upload never holds the write lock for long (100 tracklets: some 30 ms,
        which the small uploads queued meanwhile wait at most). Returns (upload id, or
        None when nothing was new, results). An upload cut off by a crash between
        chunks stays ``received`` and is finished, idempotently, after a restart.

        Raises :class:`IngestConflict` as :meth:`ingest` (a large upload may then
        have stored the chunks before the conflict: each stands on its own).
        """
        first = _check_within_upload(tracklets)
        upload_id = None
        results: list[IngestResult] = []
        n_new = 0
        starts = range(0, max(1, len(tracklets)), chunk)
        for offset in starts:
            part = list(tracklets[offset : offset + chunk])
            last = offset == starts[-1]
            upload_id, got, n = _retrying(
                lambda uid=upload_id, part=part, last=last, n_new=n_new: self._ingest_chunk(
                    uid,
                    (station, content_type, payload),
                    part,
                    first,
                    (last, len(tracklets), n_new),
                )
            )
            n_new += n
            results += [
                IngestResult(r.index + offset, r.uuid, r.id, r.new, r.duplicate_of) for r in got
            ]
        return (upload_id if n_new else None), _new_once(results)

    def _ingest_chunk(self, upload_id, raw, part, first, closing):
        """One transaction of :meth:`ingest_upload`; ``closing`` is (last chunk?,
        tracklets in the upload, new ones in the chunks before)."""
        last, n_total, n_before = closing

        def work(conn):
            uid = upload_id if upload_id is not None else self._insert_upload(conn, *raw)
            got, n = self._ingest_in(conn, uid, part, {t.uuid: first[t.uuid] for t in part})
            if last:
                self._close_upload(conn, uid, n_total, n_before + n)
            return uid, got, n

        if self.is_sqlite:  # concurrent uploads share a transaction and a disk sync
            return self._group.run(work)
        with self.write() as conn:
            return work(conn)

    @staticmethod
    def _insert_upload(conn: Connection, station: str, content_type: str, payload: bytes) -> int:
        return Q.insert_upload(conn, station, content_type, payload)

    @staticmethod
    def _close_upload(conn: Connection, upload_id: int, n_tracklets: int, n_new: int) -> None:
        """Mark an upload stored; a pure repeat keeps no copy (unless another
        process stored tracklets from it)."""
        U, K = S.uploads, S.tracklets
        if n_new:
            Q.close_upload(conn, upload_id, n_tracklets, n_new)
        else:
            conn.execute(
                U.delete().where(
                    U.c.id == upload_id,
                    U.c.state == "received",
                    ~select(K.c.id).where(K.c.upload_id == upload_id).exists(),
                )
            )

    def _ingest_in(self, conn, upload_id, tracklets, first) -> tuple[list[IngestResult], int]:
        """Store ``tracklets`` (``first``: the first of each UUID) in the open write
        transaction; returns the results and how many were new."""
        now = Q.db_times(conn, np.array([utcnow()], dtype="datetime64[us]"))[0]
        known = Q.known_uuids(conn, list(first))
        self._check_against_stored(conn, tracklets, known)
        fresh = {u: t for u, t in sorted(first.items()) if u not in known}  # one lock order
        keys = dict(zip(fresh, content_keys(list(fresh.values())), strict=True))
        times = _db_times_of(conn, list(fresh.values()))
        earlier = Q.first_with_keys(conn, sorted(set(keys.values())))
        new_ids: dict[str, int] = {}
        linked: dict[str, int] = {}
        # originals first, so that copies within the upload can point to them
        originals = [u for u in fresh if keys[u] not in earlier]
        copies = [u for u in fresh if keys[u] in earlier]
        seen_key: dict[str, str] = {}
        for u in originals:
            if keys[u] in seen_key:
                copies.append(u)
            else:
                seen_key[keys[u]] = u
        originals = list(seen_key.values())
        for batch, is_copy in ((originals, False), (copies, True)):
            if not batch:
                continue
            of = [None] * len(batch)
            if is_copy:
                for j, u in enumerate(batch):
                    k = keys[u]
                    of[j] = earlier[k] if k in earlier else new_ids.get(seen_key[k])
                    if of[j] is not None:  # None: its original lost a race; stored plainly
                        linked[u] = of[j]
            rows = _tracklet_rows([fresh[u] for u in batch], upload_id, now, keys, times, of)
            for tid, u in Q.insert_tracklets(conn, rows):
                new_ids[u] = tid
        late = [u for u in fresh if u not in new_ids]  # stored meanwhile by another
        if late:
            known.update(Q.known_uuids(conn, late))
            self._check_against_stored(conn, [t for t in tracklets if t.uuid in late], known)
        if new_ids:
            stored = [(new_ids[u], fresh[u]) for u in new_ids]
            Q.insert_plain(
                conn, "observations", _OBSERVATION_COLUMNS, _observation_rows(stored, times)
            )
            queued = [u for u in new_ids if u not in linked]  # copies are not correlated
            if queued:
                Q.insert_plain(
                    conn,
                    "jobs",
                    ("tracklet_id", "state", "attempts", "created_at"),
                    [(new_ids[u], "pending", 0, now) for u in sorted(queued, key=new_ids.get)],
                )
        results = []
        seen: set[str] = set()
        for i, t in enumerate(tracklets):
            new = t.uuid in new_ids and t.uuid not in seen
            seen.add(t.uuid)
            tid = new_ids[t.uuid] if t.uuid in new_ids else known[t.uuid][0]
            results.append(IngestResult(i, t.uuid, tid, new, linked.get(t.uuid)))
        return results, len(new_ids)

    def _check_against_stored(self, conn, tracklets, known) -> None:
        """A UUID already stored must carry the same station and observations."""
        for i, t in enumerate(tracklets):
            if t.uuid in known and known[t.uuid][1] != t.station:
                raise IngestConflict(
                    f"record {i}: tracklet {t.uuid} is already stored for another station"
                )
        ids = {known[t.uuid][0] for t in tracklets if t.uuid in known}
        stored = self._load_tracklets(conn, sorted(ids)) if ids else {}
        for i, t in enumerate(tracklets):
            if t.uuid in known and not same_content(t, stored[known[t.uuid][0]]):
                theirs = stored[known[t.uuid][0]]
                raise IngestConflict(
                    f"record {i}: tracklet {t.uuid} is already stored (id {known[t.uuid][0]}) "
                    f"with different content: {_difference(t, theirs)}"
                )

    # ---------------------------------------------------------------- snapshots

    def add_snapshot(
        self,
        *,
        fingerprint: str,
        source_name: str,
        n_objects: int,
        epochs: tuple[datetime, datetime, datetime],
        path: str,
    ) -> tuple[int, bool]:
        """Register a catalogue snapshot; returns (id, new). Same fingerprint: not new."""
        N = S.snapshots
        with self.write() as conn:
            row = conn.execute(select(N.c.id).where(N.c.fingerprint == fingerprint)).first()
            if row is not None:
                return int(row.id), False
            res = conn.execute(
                N.insert().values(
                    created_at=utcnow(),
                    fingerprint=fingerprint,
                    source_name=source_name[:256],
                    n_objects=n_objects,
                    epoch_min=epochs[0],
                    epoch_median=epochs[1],
                    epoch_max=epochs[2],
                    path=path,
                )
            )
            return int(res.inserted_primary_key[0]), True


# ---------------------------------------------------------------------- helpers

_P = S.principals
# every request asks it: built once, so only executing it costs (see ingestsql)
_PRINCIPAL_BY_HASH = select(_P.c.name, _P.c.role).where(
    (
        (_P.c.token_hash == bindparam("hash"))
        & (_P.c.expires_at.is_(None) | (_P.c.expires_at > bindparam("now")))
    )
    | ((_P.c.previous_hash == bindparam("hash")) & (_P.c.previous_until > bindparam("now"))),
    _P.c.revoked_at.is_(None),
)
_SQL_PRINCIPAL_ENTRY = (
    "SELECT name, role, token_hash = :h, expires_at, previous_until FROM principals "
    "WHERE revoked_at IS NULL AND ((token_hash = :h AND (expires_at IS NULL OR expires_at > :now)) "
    "OR (previous_hash = :h AND previous_until > :now))"
)
_SQL_PRINCIPAL_BY_HASH = (
    "SELECT name, role FROM principals WHERE revoked_at IS NULL AND ("
    "(token_hash = ? AND (expires_at IS NULL OR expires_at > ?)) "
    "OR (previous_hash = ? AND previous_until > ?))"
)


def _set_refused(conn: Connection, upload_id: int, error: str, state: str) -> None:
    U = S.uploads
    error = error.replace("\x00", "\\x00")[:4000]
    conn.execute(U.update().where(U.c.id == upload_id).values(state=state, error=error))


def _new_once(results: list[IngestResult]) -> list[IngestResult]:
    """A UUID repeated in an upload counts as new only at its first place."""
    seen: set[str] = set()
    out = []
    for r in results:
        out.append(
            IngestResult(r.index, r.uuid, r.id, r.new and r.uuid not in seen, r.duplicate_of)
        )
        seen.add(r.uuid)
    return out


def _retrying(once):
    """Run a write once more when a concurrent upload stored one of its UUIDs first."""
    for attempt in range(3):
        try:
            return once()
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _check_within_upload(tracklets: Sequence[Tracklet]) -> dict[str, Tracklet]:
    """The first tracklet of each UUID; a repeated UUID must repeat the content."""
    first: dict[str, tuple[int, Tracklet]] = {}
    for i, t in enumerate(tracklets):
        if t.uuid not in first:
            first[t.uuid] = (i, t)
        elif not same_content(t, first[t.uuid][1]):
            j, other = first[t.uuid]
            raise IngestConflict(
                f"records {j} and {i} both have uuid {t.uuid} but different content: "
                f"{_difference(t, other)}"
            )
    return {u: t for u, (_, t) in first.items()}


def _difference(a: Tracklet, b: Tracklet) -> str:
    """What differs between two tracklets, in a few words."""
    if a.station != b.station:
        return f"station {a.station!r} vs {b.station!r}"
    if (a.object or None) != (b.object or None):
        return f"object {a.object!r} vs {b.object!r}"
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} observations"
    if not (a.utc == b.utc).all():
        return "observation times differ"
    return "observed values (positions, sigma or magnitudes) differ"


def _db_times_of(conn: Connection, tracklets: list[Tracklet]) -> dict[str, tuple[list, list]]:
    """Per UUID, the observation times and (start, middle, end) of each tracklet as
    :func:`ingestsql.db_times` gives them, all converted in one call."""
    if not tracklets:
        return {}
    n = [len(t) for t in tracklets]
    last = np.cumsum(n) - 1
    utc = np.concatenate([t.utc for t in tracklets]).astype("datetime64[us]")
    start, end = utc[last - np.array(n) + 1], utc[last]
    mid = start + (end - start) // 2  # Tracklet.mid_utc
    texts = Q.db_times(conn, np.concatenate([utc, start, mid, end]))
    m, k = utc.size, len(tracklets)
    out, lo = {}, 0
    for j, t in enumerate(tracklets):
        out[t.uuid] = (texts[lo : lo + n[j]], texts[m + j : m + 3 * k + j : k])
        lo += n[j]
    return out


def _tracklet_rows(
    tracklets: list[Tracklet],
    upload_id: int | None,
    now,
    keys: dict[str, str],
    times: dict[str, tuple[list, list]],
    duplicate_of: list[int | None],
) -> list[tuple]:
    """Rows in the order of :data:`ingestsql.TRACKLET_COLUMNS` (``now`` and ``times``
    as :func:`ingestsql.db_times` gives them)."""
    return [
        (
            t.uuid,
            t.station,
            t.object,
            upload_id,
            now,
            *times[t.uuid][1],
            len(t),
            "pending" if of is None else "duplicate",
            None,
            keys[t.uuid],
            of,
        )
        for t, of in zip(tracklets, duplicate_of, strict=True)
    ]


_OBSERVATION_COLUMNS = ("tracklet_id", "seq", "utc", "ra_deg", "dec_deg", "sigma_arcsec", "mag")


def _observation_rows(stored: list[tuple[int, Tracklet]], times: dict) -> list[tuple]:
    """Rows in the order of ``_OBSERVATION_COLUMNS`` for (tracklet id, tracklet) pairs
    (``times``: from :func:`_db_times_of`)."""
    rows = []
    for tracklet_id, t in stored:
        n = len(t)
        mags = [None if m != m else m for m in t.mag.tolist()]  # NaN: no magnitude
        rows += zip(
            [tracklet_id] * n,
            range(n),
            times[t.uuid][0],
            t.ra_deg.tolist(),
            t.dec_deg.tolist(),
            t.sigma_arcsec.tolist(),
            mags,
            strict=True,
        )
    return rows


def correlation_row(c: Correlation) -> dict:
    """Columns of a :class:`Correlation` (without ids)."""
    return {
        "status": c.status,
        "norad_id": None if c.norad_id is None else int(c.norad_id),
        "score": num(c.score),
        "rms_arcsec": num(c.rms_arcsec),
        "time_offset_s": num(c.time_offset_s),
        "cross_track_arcsec": num(c.cross_track_arcsec),
        "candidates": json.dumps([_candidate_wire(k) for k in c.candidates]),
        "error": c.error,
        "reason": c.reason,
        "p_unlisted": num(c.p_unlisted),
    }


def _candidate_wire(c: Candidate) -> dict:
    return c.to_wire()
