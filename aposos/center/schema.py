"""Tables of the data-center database, and their versioned, in-place upgrades.

All times are naive ``DateTime`` values in UTC (SQLite has no time zones, and one
convention on both back ends keeps comparisons simple).

A fresh database gets the current tables and is stamped :data:`SCHEMA_VERSION`.
An older one is brought forward by the steps in :data:`MIGRATIONS`, each run in a
transaction of its own with the stamp, so an interrupted upgrade resumes where it
stopped. A database newer than this code is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import (
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "metadata", "schema_version", "upgrade_schema"]

metadata = MetaData()

schema_info = Table(
    "schema_info",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

# Holders of access tokens: stations (name = station code), analysts, admins.
principals = Table(
    "principals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Column("expires_at", DateTime),  # None: no expiry
    # a rotated-out token, valid until previous_until (overlap while stations switch)
    Column("previous_hash", String(64)),
    Column("previous_until", DateTime),
)

# One-time enrolment codes: the operator types one at the station to get its token.
enrolments = Table(
    "enrolments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("station", String(32), nullable=False),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("used_at", DateTime),
)

stations = Table(
    "stations",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("last_heartbeat", DateTime),
    Column("outbox_backlog", Integer),
    Column("agent_version", String(64)),
    Column("heartbeat", Text),  # the last heartbeat's JSON body
)

# Every heartbeat (schema version 5): the nightly report's heartbeats, gaps, backlog
# over the night, errors and each station's night quality (FWHM, limiting magnitude,
# sky brightness, why frames were not solved).
heartbeats = Table(
    "heartbeats",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("station", String(32), nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("station_time", DateTime),  # the agent's clock (a simulated night's own)
    Column("at", DateTime, nullable=False),  # station_time, else received_at: its night
    Column("heartbeat_s", Double),  # the agent's heartbeat period
    Column("outbox_backlog", Integer),
    Column("frames_reduced", Integer),
    Column("frames_failed", Integer),
    Column("solve_rate", Double),
    Column("fwhm_arcsec", Double),
    Column("limiting_mag", Double),
    Column("sky_mag_arcsec2", Double),
    Column("quality_frames", Integer),  # solved frames the three figures above come from
    Column("unsolved_reasons", Text),  # JSON {reason: frames}, the agent's running count
    Column("last_error", Text),
    Index("ix_heartbeats_station_received", "station", "received_at"),
    Index("ix_heartbeats_station_at", "station", "at"),
)

# Raw payloads, stored before anything is parsed.
uploads = Table(
    "uploads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("station", String(32), nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    # received | stored | rejected (bad input) | quarantined (could not be processed)
    Column("state", String(16), nullable=False),
    Column("n_tracklets", Integer),
    Column("n_new", Integer),
    Column("error", Text),
    Column("attempts", Integer),  # processing attempts (a restart retries once)
    Index("ix_uploads_state", "state"),
    Index("ix_uploads_station_received", "station", "received_at"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("fingerprint", String(128), nullable=False, unique=True),
    Column("source_name", String(256), nullable=False),
    Column("n_objects", Integer, nullable=False),
    Column("epoch_min", DateTime, nullable=False),
    Column("epoch_median", DateTime, nullable=False),
    Column("epoch_max", DateTime, nullable=False),
    Column("path", Text, nullable=False),
)

tracklets = Table(
    "tracklets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("station", String(32), nullable=False),
    Column("object", String(64)),
    Column("upload_id", Integer, ForeignKey("uploads.id")),
    Column("received_at", DateTime, nullable=False),
    Column("t_start", DateTime, nullable=False),
    Column("t_mid", DateTime, nullable=False),
    Column("t_end", DateTime, nullable=False),
    Column("n_obs", Integer, nullable=False),
    # pending | correlated | ambiguous | uncorrelated
    Column("status", String(16), nullable=False),
    Column("correlation_id", Integer),  # the current correlation (no FK: it points back)
    # digest of station, times and positions (checks.content_key); the same
    # observations under another UUID point to the first with duplicate_of
    Column("content_key", String(64)),
    Column("duplicate_of", Integer),
    Index("ix_tracklets_station_t_mid", "station", "t_mid"),
    Index("ix_tracklets_content_key", "content_key"),
    Index("ix_tracklets_t_mid", "t_mid"),
    Index("ix_tracklets_status", "status"),
)

observations = Table(
    "observations",
    metadata,
    Column("tracklet_id", Integer, ForeignKey("tracklets.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("utc", DateTime, nullable=False),
    Column("ra_deg", Double, nullable=False),
    Column("dec_deg", Double, nullable=False),
    Column("sigma_arcsec", Double, nullable=False),
    Column("mag", Double),
)

# The correlation queue: one row per (tracklet, request to correlate it).
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tracklet_id", Integer, ForeignKey("tracklets.id"), nullable=False),
    Column("snapshot_id", Integer, ForeignKey("snapshots.id")),  # None: choose by time
    # pending | running | waiting (no suitable catalogue yet) | done | failed
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(64)),
    Column("lease_until", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("error", Text),
    Index("ix_jobs_state_id", "state", "id"),
    Index("ix_jobs_tracklet", "tracklet_id"),
)

correlations = Table(
    "correlations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tracklet_id", Integer, ForeignKey("tracklets.id"), nullable=False),
    # unique: a job yields at most one correlation, however often it is retried
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False, unique=True),
    Column("snapshot_id", Integer, ForeignKey("snapshots.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("norad_id", Integer),
    Column("score", Double),
    Column("rms_arcsec", Double),
    Column("time_offset_s", Double),
    Column("cross_track_arcsec", Double),
    Column("candidates", Text, nullable=False),  # JSON list of Candidate wire forms
    Column("error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("reason", Text),  # why: winner, runner-up, nearest candidate in km and s
    Column("p_unlisted", Double),  # posterior of "not in the catalogue"
    Index("ix_correlations_norad", "norad_id"),
    Index("ix_correlations_tracklet", "tracklet_id"),
)

# Joint observation planning (schema version 2): plan versions, tasks, analyst requests.
task_plans = Table(
    "task_plans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("night", String(10), nullable=False),  # YYYY-MM-DD the night starts on
    Column("created_at", DateTime, nullable=False),
    Column("planned_from", DateTime),  # tasks before this were kept, not re-planned
    Column("trigger", String(64), nullable=False),  # command | request | report | uct
    Column("snapshot", Text),  # catalogue used
    Column("summary", Text),  # JSON: windows, counts, coverage
    Index("ix_task_plans_night", "night"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("plan_id", Integer, ForeignKey("task_plans.id"), nullable=False),
    Column("night", String(10), nullable=False),
    Column("station", String(32), nullable=False),
    Column("t_start", DateTime, nullable=False),
    Column("t_end", DateTime, nullable=False),
    Column("target_kind", String(8), nullable=False),  # object | field
    Column("norad_id", Integer),
    Column("name", String(128)),
    Column("ra_deg", Double, nullable=False),
    Column("dec_deg", Double, nullable=False),
    Column("tracking", String(8), nullable=False),  # sidereal | rate | stare
    Column("rate_ra_arcsec_s", Double),
    Column("rate_dec_arcsec_s", Double),
    Column("exposure_s", Double, nullable=False),
    Column("frames", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("request_id", Integer),
    Column("covers", Text),  # JSON list of NORAD numbers the task observes
    # planned | superseded (a later plan dropped it) | executed | skipped | failed
    Column("state", String(12), nullable=False),
    Column("reported_at", DateTime),
    Column("frames_done", Integer),
    Column("tracklets", Integer),
    Column("report_reason", Text),
    Index("ix_tasks_station_start", "station", "t_start"),
    Index("ix_tasks_night_state", "night", "state"),
)

task_requests = Table(
    "task_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # object | field
    Column("norad_id", Integer),
    Column("ra_deg", Double),
    Column("dec_deg", Double),
    Column("t_start", DateTime, nullable=False),
    Column("t_end", DateTime, nullable=False),
    Column("priority", Integer, nullable=False),  # 0..99, higher first
    Column("simultaneous", Integer, nullable=False),  # 0 | 1
    Column("reason", Text),
    Column("state", String(12), nullable=False),  # open | cancelled
    Index("ix_task_requests_window", "t_start", "t_end"),
)

TASKING_TABLES = (task_plans, tasks, task_requests)


def _add_tasking_tables(conn: Connection) -> None:
    """Version 2: the planning tables (additive; nothing else changes)."""
    metadata.create_all(conn, tables=list(TASKING_TABLES))


# One step per schema version after the first: step k turns version k-1 into k.
Migration = Callable[[Connection], None]


def _add_columns(conn: Connection, table: Table, names: Sequence[str]) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    for name in names:
        if name not in have:
            col = table.c[name]
            kind = col.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))


def _v2_hardening(conn: Connection) -> None:
    """Token expiry and rotation, enrolment codes, upload attempts, content identity."""
    _add_columns(conn, principals, ("expires_at", "previous_hash", "previous_until"))
    _add_columns(conn, uploads, ("attempts",))
    _add_columns(conn, tracklets, ("content_key", "duplicate_of"))
    enrolments.create(conn, checkfirst=True)
    for index in (
        *[i for i in uploads.indexes if i.name == "ix_uploads_station_received"],
        *[i for i in tracklets.indexes if i.name == "ix_tracklets_content_key"],
    ):
        index.create(conn, checkfirst=True)


def _correlation_reasons(conn: Connection) -> None:
    """Each correlation says why (the hypothesis that won, the runner-up)."""
    _add_columns(conn, correlations, ("reason", "p_unlisted"))


def _heartbeat_history(conn: Connection) -> None:
    """Every heartbeat kept (additive; the stations' last heartbeat stays as it was)."""
    heartbeats.create(conn, checkfirst=True)
    for index in heartbeats.indexes:
        index.create(conn, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    _v2_hardening,
    _add_tasking_tables,
    _correlation_reasons,
    _heartbeat_history,
)
SCHEMA_VERSION = 1 + len(MIGRATIONS)


def schema_version(conn: Connection) -> int:
    """The version stamped in the database; 0 for an empty one."""
    if not inspect(conn).has_table("schema_info"):
        return 0
    version = conn.execute(select(schema_info.c.version)).scalar()
    return int(version or 0)


def _stamp(conn: Connection, version: int) -> None:
    if conn.execute(select(schema_info.c.id)).first() is None:
        conn.execute(schema_info.insert().values(id=1, version=version))
    else:
        conn.execute(schema_info.update().values(version=version))


def _lock_for_upgrade(conn: Connection) -> None:
    # SQLite: the write transaction (BEGIN IMMEDIATE) already excludes other writers
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(5050505)"))


def upgrade_schema(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Create or upgrade the schema in place; returns the version reached.

    Parameters
    ----------
    engine : the database.
    migrations : the upgrade steps (the module's own by default; tests pass extra
        ones to exercise the mechanism).

    Raises
    ------
    RuntimeError
        When the database was made by a newer version of this software.
    """
    target = 1 + len(migrations)
    with engine.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            _lock_for_upgrade(conn)
            current = schema_version(conn)
            if current > target:
                raise RuntimeError(
                    f"database schema version {current} is newer than this software "
                    f"understands ({target}); upgrade aposos"
                )
            if current == 0:
                metadata.create_all(conn)
                _stamp(conn, target)
                return target
        for version in range(current + 1, target + 1):
            with conn.begin():
                _lock_for_upgrade(conn)
                # re-read under the write lock: another process may have upgraded
                if schema_version(conn) >= version:
                    continue
                migrations[version - 2](conn)
                _stamp(conn, version)
    return target
