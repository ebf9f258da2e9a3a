"""The statements of the upload path, built once.

An upload runs the same handful of statements every time. Built once, a statement
keeps its compiled form and cache key, so each upload pays only for executing it
(building and keying a statement anew cost more than running it on SQLite). IN
lists are expanding bind parameters: one statement for any number of values.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from aposos.center import schema as S

__all__ = [
    "CLOSE_UPLOAD",
    "FIRST_WITH_KEYS",
    "INSERT_UPLOAD",
    "KNOWN_UUIDS",
    "db_times",
    "insert_plain",
    "insert_tracklets",
]

K, U = S.tracklets, S.uploads

KNOWN_UUIDS = select(K.c.id, K.c.uuid, K.c.station).where(
    K.c.uuid.in_(bindparam("uuids", expanding=True))
)
# the first stored (non-copy) tracklet of each content key
FIRST_WITH_KEYS = (
    select(K.c.content_key, func.min(K.c.id))
    .where(K.c.content_key.in_(bindparam("keys", expanding=True)), K.c.duplicate_of.is_(None))
    .group_by(K.c.content_key)
)
INSERT_UPLOAD = U.insert().returning(U.c.id)
CLOSE_UPLOAD = (
    U.update()
    .where(U.c.id == bindparam("upload_id"))
    .values(state="stored", n_tracklets=bindparam("n"), n_new=bindparam("n_new"))
)
_INSERT_TRACKLETS = {
    dialect: module.insert(K)
    .on_conflict_do_nothing(index_elements=["uuid"])
    .returning(K.c.id, K.c.uuid)
    for dialect, module in (("sqlite", sqlite), ("postgresql", postgresql))
}


def insert_tracklets(dialect: str):
    """INSERT of tracklet rows that skips UUIDs already stored, returning (id, uuid)."""
    return _INSERT_TRACKLETS[dialect]


def insert_plain(conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Many rows of plain values (numbers, strings, times from :func:`db_times`) in one
    ``executemany`` at the driver, without SQLAlchemy's work for every row."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    conn.exec_driver_sql(sql, rows)


def db_times(conn: Connection, utc: np.ndarray) -> list:
    """Times as the database column takes them: on SQLite the text SQLAlchemy's
    DateTime writes there (``YYYY-MM-DD hh:mm:ss.ffffff``), else datetimes."""
    utc = utc.astype("datetime64[us]")
    if conn.dialect.name == "sqlite":
        return [s.replace("T", " ", 1) for s in np.datetime_as_string(utc, unit="us")]
    return utc.tolist()
