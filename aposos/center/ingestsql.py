"""The statements of the upload path, built once.

An upload runs the same handful of statements every time. On SQLite they go to the
driver (``sqlite3``) as plain SQL text on the transaction's own connection: its
statement cache keeps them prepared, and SQLAlchemy's work per statement (about
0.1 ms of Python each, more than SQLite takes to run them) is not paid. On
PostgreSQL they are SQLAlchemy statements built once, so each upload pays only for
executing them. IN lists take any number of values. Driver errors come out as
SQLAlchemy's (``OperationalError`` is a 503, as anywhere else).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from aposos.center import schema as S
from aposos.center.dbtypes import chunks, utcnow

__all__ = [
    "TRACKLET_COLUMNS",
    "close_upload",
    "db_time",
    "db_times",
    "first_with_keys",
    "insert_plain",
    "insert_tracklets",
    "insert_upload",
    "known_uuids",
    "run_driver",
    "sqlite_driver",
]

K, U = S.tracklets, S.uploads

TRACKLET_COLUMNS = (
    "uuid",
    "station",
    "object",
    "upload_id",
    "received_at",
    "t_start",
    "t_mid",
    "t_end",
    "n_obs",
    "status",
    "correlation_id",
    "content_key",
    "duplicate_of",
)
_UPLOAD_COLUMNS = (
    "station",
    "received_at",
    "content_type",
    "size_bytes",
    "payload",
    "state",
    "attempts",
)
_ROWS_PER_INSERT = 500  # 13 columns: well below SQLite's 32,766 variables

# PostgreSQL: SQLAlchemy statements, built once
_KNOWN_UUIDS = select(K.c.id, K.c.uuid, K.c.station).where(
    K.c.uuid.in_(bindparam("uuids", expanding=True))
)
_FIRST_WITH_KEYS = (  # the first stored (non-copy) tracklet of each content key
    select(K.c.content_key, func.min(K.c.id))
    .where(K.c.content_key.in_(bindparam("keys", expanding=True)), K.c.duplicate_of.is_(None))
    .group_by(K.c.content_key)
)
_INSERT_UPLOAD = U.insert().returning(U.c.id)
_CLOSE_UPLOAD = (
    U.update()
    .where(U.c.id == bindparam("upload_id"))
    .values(state="stored", n_tracklets=bindparam("n"), n_new=bindparam("n_new"))
)
_INSERT_TRACKLETS = (
    postgresql.insert(K).on_conflict_do_nothing(index_elements=["uuid"]).returning(K.c.id, K.c.uuid)
)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# SQLite: plain SQL text for the driver
_SQL_KNOWN_UUIDS = "SELECT id, uuid, station FROM tracklets WHERE uuid IN ({})"
_SQL_FIRST_WITH_KEYS = (
    "SELECT content_key, min(id) FROM tracklets "
    "WHERE content_key IN ({}) AND duplicate_of IS NULL GROUP BY content_key"
)
_SQL_INSERT_UPLOAD = (
    f"INSERT INTO uploads ({', '.join(_UPLOAD_COLUMNS)}) VALUES ({_marks(len(_UPLOAD_COLUMNS))})"
)
_SQL_CLOSE_UPLOAD = "UPDATE uploads SET state = 'stored', n_tracklets = ?, n_new = ? WHERE id = ?"
_SQL_INSERT_TRACKLETS = (
    f"INSERT INTO tracklets ({', '.join(TRACKLET_COLUMNS)}) VALUES {{}} "
    "ON CONFLICT (uuid) DO NOTHING RETURNING id, uuid"
)


def sqlite_driver(conn: Connection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn`` (in its transaction), else ``None``."""
    if conn.dialect.name != "sqlite":
        return None
    return conn.connection.driver_connection


@contextmanager
def _driver_errors(sql: str) -> Iterator[None]:
    """``sqlite3`` errors as SQLAlchemy's (``OperationalError``, ``IntegrityError``...)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc


def run_driver(db: sqlite3.Connection, sql: str, values: tuple) -> tuple | None:
    """The first row of a query at the ``sqlite3`` driver (``None``: no row)."""
    with _driver_errors(sql):
        return db.execute(sql, values).fetchone()


def _select_in(db: sqlite3.Connection, sql: str, values: list) -> Iterator[tuple]:
    for chunk in chunks(values):
        text = sql.format(_marks(len(chunk)))
        with _driver_errors(text):
            yield from db.execute(text, chunk).fetchall()


def known_uuids(conn: Connection, uuids: list[str]) -> dict[str, tuple[int, str]]:
    """(id, station) of the stored tracklets among ``uuids``."""
    db = sqlite_driver(conn)
    if db is not None:
        return {u: (i, s) for i, u, s in _select_in(db, _SQL_KNOWN_UUIDS, uuids)}
    known = {}
    for chunk in chunks(uuids):
        for r in conn.execute(_KNOWN_UUIDS, {"uuids": chunk}):
            known[r.uuid] = (r.id, r.station)
    return known


def first_with_keys(conn: Connection, keys: list[str]) -> dict[str, int]:
    """The first stored (non-copy) tracklet of each content key."""
    db = sqlite_driver(conn)
    if db is not None:
        return {k: int(i) for k, i in _select_in(db, _SQL_FIRST_WITH_KEYS, keys)}
    found: dict[str, int] = {}
    for chunk in chunks(keys):
        for r in conn.execute(_FIRST_WITH_KEYS, {"keys": chunk}):
            found[r[0]] = int(r[1])
    return found


def insert_upload(conn: Connection, station: str, content_type: str, payload: bytes) -> int:
    """A new upload row (state ``received``, one attempt); its id."""
    now = utcnow()
    content_type = content_type.encode("ascii", "replace").decode()[:128]
    values = (station, now, content_type, len(payload), payload, "received", 1)
    db = sqlite_driver(conn)
    if db is None:
        return int(conn.execute(_INSERT_UPLOAD, dict(zip(_UPLOAD_COLUMNS, values))).scalar_one())
    values = (station, db_time(now), *values[2:])
    with _driver_errors(_SQL_INSERT_UPLOAD):
        return int(db.execute(_SQL_INSERT_UPLOAD, values).lastrowid)


def close_upload(conn: Connection, upload_id: int, n_tracklets: int, n_new: int) -> None:
    """Mark an upload ``stored`` with its counts."""
    db = sqlite_driver(conn)
    if db is None:
        conn.execute(_CLOSE_UPLOAD, {"upload_id": upload_id, "n": n_tracklets, "n_new": n_new})
        return
    with _driver_errors(_SQL_CLOSE_UPLOAD):
        db.execute(_SQL_CLOSE_UPLOAD, (n_tracklets, n_new, upload_id))


def insert_tracklets(conn: Connection, rows: list[tuple]) -> list[tuple[int, str]]:
    """Tracklet rows (values in :data:`TRACKLET_COLUMNS` order, times from
    :func:`db_times`), skipping UUIDs already stored; (id, uuid) of those inserted."""
    db = sqlite_driver(conn)
    if db is None:
        made = conn.execute(_INSERT_TRACKLETS, [dict(zip(TRACKLET_COLUMNS, r)) for r in rows])
        return [(r.id, r.uuid) for r in made]
    out = []
    row_marks = f"({_marks(len(TRACKLET_COLUMNS))})"
    for chunk in chunks(rows, _ROWS_PER_INSERT):
        sql = _SQL_INSERT_TRACKLETS.format(", ".join([row_marks] * len(chunk)))
        with _driver_errors(sql):
            out += db.execute(sql, [v for r in chunk for v in r]).fetchall()
    return out


def insert_plain(conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Many rows of plain values (numbers, strings, times from :func:`db_times`) in one
    ``executemany`` at the driver, without SQLAlchemy's work for every row."""
    db = sqlite_driver(conn)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    if db is None:
        conn.exec_driver_sql(sql, rows)
        return
    with _driver_errors(sql):
        db.executemany(sql, rows)


def db_times(conn: Connection, utc: np.ndarray) -> list:
    """Times as the database column takes them: on SQLite the text SQLAlchemy's
    DateTime writes there (``YYYY-MM-DD hh:mm:ss.ffffff``), else datetimes."""
    utc = utc.astype("datetime64[us]")
    if conn.dialect.name == "sqlite":
        return [s.replace("T", " ", 1) for s in np.datetime_as_string(utc, unit="us")]
    return utc.tolist()


def db_time(when: datetime) -> str:
    """One naive UTC time as SQLAlchemy's DateTime writes it on SQLite."""
    return when.isoformat(" ", "microseconds")
