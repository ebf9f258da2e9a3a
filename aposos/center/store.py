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
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError

from aposos.center import schema as S
from aposos.center.dbtypes import (
    ROLES,
    Filters,
    Page,
    chunks,
    iso,
    num,
    parse_time,
    utcnow,
)
from aposos.center.queries import StoreQueries
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
    """What an upload did to one tracklet."""

    index: int
    uuid: str
    id: int
    new: bool


class IngestConflict(ValueError):
    """An uploaded UUID is already stored under another station."""


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
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        if self.is_sqlite:
            self.engine = self._sqlite_engine(sqlite_synchronous)
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
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (committed on success, rolled back on error).

        On SQLite, writers of this process queue on a lock first: SQLite's own busy
        wait sleeps in steps and lets late comers overtake, which gives long tails.
        """
        with self._write_lock, self.engine.connect() as conn:
            conn = conn.execution_options(write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (one consistent snapshot)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    # --------------------------------------------------------------- principals

    def add_principal(self, name: str, role: str, token_hash: str) -> None:
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
            values = {"role": role, "token_hash": token_hash, "created_at": utcnow()}
            if row is None:
                conn.execute(P.insert().values(name=name, **values))
            else:
                conn.execute(P.update().where(P.c.id == row.id).values(revoked_at=None, **values))
            if role == "station":
                self._ensure_station(conn, name)

    def principal_by_token_hash(self, token_hash: str) -> dict | None:
        """The live holder of a token hash, or ``None``."""
        P = S.principals
        with self.engine.connect() as conn:
            row = conn.execute(
                select(P.c.name, P.c.role).where(
                    P.c.token_hash == token_hash, P.c.revoked_at.is_(None)
                )
            ).first()
        return None if row is None else {"name": row.name, "role": row.role}

    def revoke(self, name: str) -> bool:
        """Revoke ``name``'s token; ``False`` if there was no live token."""
        P = S.principals
        with self.write() as conn:
            res = conn.execute(
                P.update()
                .where(P.c.name == name, P.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return res.rowcount > 0

    def list_principals(self) -> list[dict]:
        P = S.principals
        with self.read() as conn:
            rows = conn.execute(
                select(P.c.name, P.c.role, P.c.created_at, P.c.revoked_at).order_by(P.c.name)
            ).all()
        return [
            {
                "name": r.name,
                "role": r.role,
                "created_at": iso(r.created_at),
                "revoked_at": iso(r.revoked_at),
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
        return now

    # ------------------------------------------------------------------ uploads

    def save_raw_upload(self, station: str, content_type: str, payload: bytes) -> int:
        """Store an upload's raw bytes before anything is parsed; returns its id."""
        with self.write() as conn:
            res = conn.execute(
                S.uploads.insert().values(
                    station=station,
                    received_at=utcnow(),
                    content_type=content_type[:128],
                    size_bytes=len(payload),
                    payload=payload,
                    state="received",
                )
            )
            return int(res.inserted_primary_key[0])

    def reject_upload(self, upload_id: int, error: str) -> None:
        U = S.uploads
        with self.write() as conn:
            conn.execute(
                U.update().where(U.c.id == upload_id).values(state="rejected", error=error[:4000])
            )

    def received_uploads(self) -> list[dict]:
        """Uploads stored raw but never processed (the server stopped in between)."""
        U = S.uploads
        with self.read() as conn:
            rows = conn.execute(
                select(U.c.id, U.c.station, U.c.content_type, U.c.payload)
                .where(U.c.state == "received")
                .order_by(U.c.id)
            ).all()
        return [r._asdict() for r in rows]

    def ingest(self, upload_id: int | None, tracklets: Sequence[Tracklet]) -> list[IngestResult]:
        """Store tracklets and queue them for correlation, idempotent on UUID.

        A UUID already stored returns its stored id and stores nothing. When nothing
        in the upload is new, its raw copy is dropped again.

        Raises
        ------
        IngestConflict
            When a UUID is already stored under another station (nothing is stored).
        """
        for attempt in range(3):
            try:
                return self._ingest_once(upload_id, tracklets)
            except IntegrityError:
                # a concurrent upload stored one of these UUIDs first: look again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _ingest_once(self, upload_id, tracklets) -> list[IngestResult]:
        K = S.tracklets
        now = utcnow()
        uuids = list(dict.fromkeys(t.uuid for t in tracklets))
        with self.write() as conn:
            known: dict[str, tuple[int, str]] = {}
            for chunk in chunks(uuids):
                for r in conn.execute(
                    select(K.c.id, K.c.uuid, K.c.station).where(K.c.uuid.in_(chunk))
                ):
                    known[r.uuid] = (r.id, r.station)
            for i, t in enumerate(tracklets):
                if t.uuid in known and known[t.uuid][1] != t.station:
                    raise IngestConflict(
                        f"record {i}: tracklet {t.uuid} is already stored for another station"
                    )
            fresh: dict[str, Tracklet] = {}
            for t in sorted(tracklets, key=lambda t: t.uuid):  # one lock order: no deadlocks
                if t.uuid not in known and t.uuid not in fresh:
                    fresh[t.uuid] = t
            new_ids: dict[str, int] = {}
            if fresh:
                rows = [_tracklet_row(t, upload_id, now) for t in fresh.values()]
                stmt = (
                    self._insert(K)
                    .on_conflict_do_nothing(index_elements=["uuid"])
                    .returning(K.c.id, K.c.uuid)
                )
                for r in conn.execute(stmt, rows):
                    new_ids[r.uuid] = r.id
                late = [u for u in fresh if u not in new_ids]  # stored meanwhile by another
                for chunk in chunks(late):
                    for r in conn.execute(
                        select(K.c.id, K.c.uuid, K.c.station).where(K.c.uuid.in_(chunk))
                    ):
                        known[r.uuid] = (r.id, r.station)
                for i, t in enumerate(tracklets):
                    if t.uuid in late and known[t.uuid][1] != t.station:
                        raise IngestConflict(
                            f"record {i}: tracklet {t.uuid} is already stored for another station"
                        )
            if new_ids:
                obs_rows = []
                for u in new_ids:
                    obs_rows.extend(_observation_rows(new_ids[u], fresh[u]))
                conn.execute(S.observations.insert(), obs_rows)
                conn.execute(
                    S.jobs.insert(),
                    [
                        {
                            "tracklet_id": new_ids[u],
                            "state": "pending",
                            "attempts": 0,
                            "created_at": now,
                        }
                        for u in sorted(new_ids, key=new_ids.get)
                    ],
                )
            if upload_id is not None:
                U = S.uploads
                if new_ids:
                    conn.execute(
                        U.update()
                        .where(U.c.id == upload_id)
                        .values(state="stored", n_tracklets=len(tracklets), n_new=len(new_ids))
                    )
                else:  # a pure repeat: keep no copy (unless another process stored it)
                    conn.execute(
                        U.delete().where(
                            U.c.id == upload_id,
                            U.c.state == "received",
                            ~select(K.c.id).where(K.c.upload_id == upload_id).exists(),
                        )
                    )
        results = []
        seen: set[str] = set()
        for i, t in enumerate(tracklets):
            new = t.uuid in new_ids and t.uuid not in seen
            seen.add(t.uuid)
            tid = new_ids[t.uuid] if t.uuid in new_ids else known[t.uuid][0]
            results.append(IngestResult(index=i, uuid=t.uuid, id=tid, new=new))
        return results

    def _insert(self, table):
        """INSERT with the back end's ON CONFLICT support."""
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

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


def _tracklet_row(t: Tracklet, upload_id: int | None, now: datetime) -> dict:
    times = t.utc.astype("datetime64[us]").tolist()
    return {
        "uuid": t.uuid,
        "station": t.station,
        "object": t.object,
        "upload_id": upload_id,
        "received_at": now,
        "t_start": times[0],
        "t_mid": t.mid_utc.astype("datetime64[us]").tolist(),
        "t_end": times[-1],
        "n_obs": len(t),
        "status": "pending",
        "correlation_id": None,
    }


def _observation_rows(tracklet_id: int, t: Tracklet) -> list[dict]:
    times = t.utc.astype("datetime64[us]").tolist()
    return [
        {
            "tracklet_id": tracklet_id,
            "seq": k,
            "utc": times[k],
            "ra_deg": float(t.ra_deg[k]),
            "dec_deg": float(t.dec_deg[k]),
            "sigma_arcsec": float(t.sigma_arcsec[k]),
            "mag": num(float(t.mag[k])),
        }
        for k in range(len(t))
    ]


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
    }


def _candidate_wire(c: Candidate) -> dict:
    return {
        "norad_id": int(c.norad_id),
        "score": num(float(c.score)),
        "rms_arcsec": num(float(c.rms_arcsec)),
        "time_offset_s": num(float(c.time_offset_s)),
    }
