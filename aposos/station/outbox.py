"""The agent's durable state in one SQLite file: frames, the outbox, tasks, counters.

Tables::

    frames   one row per frame taken: key, path, state (captured | solved | unsolved |
             failed | quarantined | calibration), reason, task, tracklets
    outbox   one row per tracklet (its wire JSON), until the center has it:
             attempts, next try, delivered_at, or rejected with the center's reason
    tasks    tasks received from the center, what was done for them, whether the
             report went out
    meta     small values: last upload, last error, the simulator's clock

Written in WAL mode with ``synchronous = FULL``: a committed transaction survives
``kill -9`` and a power cut. A field's frames and its tracklets are committed in
one transaction (:meth:`AgentStore.commit_field`), so after a crash a field is either
wholly in the outbox or reduced again from its frames; tracklet UUIDs are
deterministic, and an outbox row is keyed by UUID, so nothing is queued twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["AgentStore", "FrameRow", "OutboxItem"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    task_id TEXT,
    tracklets INTEGER NOT NULL DEFAULT 0,
    captured_at TEXT NOT NULL,
    done_at TEXT
);
CREATE INDEX IF NOT EXISTS frames_state ON frames(state);
CREATE TABLE IF NOT EXISTS outbox (
    uuid TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_wall REAL NOT NULL,
    task_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at TEXT,
    rejected TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(delivered_at, rejected, next_try);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'new',
    frames INTEGER NOT NULL DEFAULT 0,
    tracklets INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    report_due INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS frame_quality (
    key TEXT PRIMARY KEY,
    done_wall REAL NOT NULL,
    fwhm_arcsec REAL,
    limiting_mag REAL,
    sky_mag_arcsec2 REAL
);
"""

OPEN_FRAME = "captured"
FRAME_STATES = ("captured", "solved", "unsolved", "failed", "quarantined", "calibration")


def utcnow_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True)
class FrameRow:
    key: str
    path: str
    task_id: str | None


@dataclass(frozen=True)
class OutboxItem:
    uuid: str
    body: dict
    attempts: int


class AgentStore:
    """The agent's SQLite file; safe to share between the agent's threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ meta
    def get(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set(self, key: str, value: str | None, db=None) -> None:
        sql = "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?"
        if db is not None:
            db.execute(sql, (key, value, value))
            return
        with self.transaction() as db:
            db.execute(sql, (key, value, value))

    # ------------------------------------------------------------------ frames
    def has_frame(self, key: str) -> bool:
        return bool(self._query("SELECT 1 FROM frames WHERE key = ?", (key,)))

    def add_frame(self, key: str, path, *, task_id=None, state=OPEN_FRAME, reason=None,
                  meta: dict | None = None) -> bool:  # fmt: skip
        """Record a frame taken (and ``meta`` values in the same transaction);
        False if it was known."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO frames(key, path, state, reason, task_id, captured_at,"
                " done_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, str(path), state, reason, task_id, utcnow_iso(),
                 None if state == OPEN_FRAME else utcnow_iso()),
            )  # fmt: skip
            for k, value in (meta or {}).items():
                self.set(k, value, db)
            return cur.rowcount == 1

    def open_frames(self) -> list[FrameRow]:
        """Frames taken but whose field is not yet committed (in the order taken)."""
        rows = self._query(
            "SELECT key, path, task_id FROM frames WHERE state = ? ORDER BY rowid", (OPEN_FRAME,)
        )
        return [FrameRow(*r) for r in rows]

    def commit_field(self, frames: list[tuple[str, str, str | None, int]],
                     tracklets: list[tuple[dict, str | None]],
                     quality: list[tuple] = ()) -> int:  # fmt: skip
        """In one transaction: the frames' outcomes ``(key, state, reason, n_tracklets)``,
        the new tracklets ``(wire dict, task_id)`` and the solved frames' quality
        ``(key, fwhm_arcsec, limiting_mag, sky_mag_arcsec2)``. Returns the tracklets
        queued (those whose UUID was not queued before)."""
        now, wall = utcnow_iso(), time.time()
        with self.transaction() as db:
            for key, *figures in quality:
                db.execute(
                    "INSERT OR REPLACE INTO frame_quality(key, done_wall, fwhm_arcsec,"
                    " limiting_mag, sky_mag_arcsec2) VALUES (?, ?, ?, ?, ?)",
                    (key, wall, *figures),
                )
            for key, state, reason, n in frames:
                db.execute(
                    "UPDATE frames SET state = ?, reason = ?, tracklets = ?, done_at = ?"
                    " WHERE key = ?",
                    (state, reason, n, now, key),
                )
            queued = 0
            for body, task_id in tracklets:
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox(uuid, body, created_at, created_wall, task_id)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (body["uuid"], json.dumps(body, allow_nan=False), now, wall, task_id),
                )
                queued += cur.rowcount
            return queued

    def enqueue(self, tracklets: list[dict]) -> int:
        """Queue tracklets (wire dicts) for upload; returns how many were new."""
        return self.commit_field([], [(t, None) for t in tracklets])

    def recent_quality(self, n: int, max_age_s: float) -> list[tuple]:
        """``(fwhm, lim, sky)`` of the last ``n`` solved frames of the last ``max_age_s``."""
        return self._query(
            "SELECT fwhm_arcsec, limiting_mag, sky_mag_arcsec2 FROM frame_quality"
            " WHERE done_wall >= ? ORDER BY done_wall DESC, key DESC LIMIT ?",
            (time.time() - max_age_s, n),
        )

    def unsolved_reasons(self) -> list[tuple[str | None, int]]:
        """``(reason, frames)`` of the frames not solved (unsolved, failed, quarantined)."""
        return self._query(
            "SELECT reason, COUNT(*) FROM frames WHERE state IN ('unsolved', 'failed',"
            " 'quarantined') GROUP BY reason ORDER BY reason"
        )

    def frame_counts(self, *, since_iso: str | None = None) -> dict[str, int]:
        sql = "SELECT state, COUNT(*) FROM frames"
        args: tuple = ()
        if since_iso is not None:
            sql += " WHERE captured_at >= ?"
            args = (since_iso,)
        counts = dict.fromkeys(FRAME_STATES, 0)
        counts.update(dict(self._query(sql + " GROUP BY state", args)))
        return counts

    # ------------------------------------------------------------------ outbox
    def due(self, limit: int, now: float | None = None) -> list[OutboxItem]:
        """Tracklets waiting for upload whose next try has come, oldest first."""
        now = time.time() if now is None else now
        rows = self._query(
            "SELECT uuid, body, attempts FROM outbox WHERE delivered_at IS NULL AND rejected IS"
            " NULL AND next_try <= ? ORDER BY created_wall, uuid LIMIT ?",
            (now, limit),
        )
        return [OutboxItem(u, json.loads(b), a) for u, b, a in rows]

    def delivered(self, uuids: list[str], *, note: str | None = None) -> None:
        """The center holds these tracklets (``note``: how, if not as sent)."""
        now = utcnow_iso()
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = ?"
                " WHERE uuid = ?",
                [(now, note, u) for u in uuids],
            )
            self.set("last_upload", now, db)

    def failed(self, uuids: list[str], error: str, next_try: float) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ?"
                " WHERE uuid = ?",
                [(error, next_try, u) for u in uuids],
            )

    def rejected(self, uuid: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET rejected = ?, attempts = attempts + 1 WHERE uuid = ?",
                (reason, uuid),
            )

    def backlog(self) -> int:
        return self._query(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND rejected IS NULL"
        )[0][0]

    def outbox_counts(self) -> dict[str, int]:
        (waiting, delivered, rejected, total), = self._query(
            "SELECT SUM(delivered_at IS NULL AND rejected IS NULL),"
            " SUM(delivered_at IS NOT NULL), SUM(rejected IS NOT NULL), COUNT(*) FROM outbox"
        )  # fmt: skip
        return {
            "waiting": waiting or 0,
            "delivered": delivered or 0,
            "rejected": rejected or 0,
            "total": total or 0,
        }

    def delivered_latencies(self) -> list[tuple[str, float]]:
        """(uuid, wall time queued) of delivered tracklets, for the benchmark."""
        return self._query("SELECT uuid, created_wall FROM outbox WHERE delivered_at IS NOT NULL")

    # ------------------------------------------------------------------ tasks
    def save_tasks(self, tasks: list[dict]) -> int:
        """Keep tasks from the center (new ones added; known ones updated if not begun)."""
        n = 0
        with self.transaction() as db:
            for t in tasks:
                cur = db.execute(
                    "INSERT INTO tasks(task_id, doc) VALUES (?, ?) ON CONFLICT(task_id) DO"
                    " UPDATE SET doc = excluded.doc WHERE tasks.state = 'new'"
                    " AND tasks.doc != excluded.doc",
                    (t["task_id"], json.dumps(t)),
                )
                n += cur.rowcount
        return n

    def tasks(self, states=("new", "running")) -> list[dict]:
        marks = ",".join("?" * len(states))
        rows = self._query(
            f"SELECT doc, state, frames, tracklets FROM tasks WHERE state IN ({marks})",
            tuple(states),
        )
        return [{**json.loads(d), "_state": s, "_frames": f, "_tracklets": n}
                for d, s, f, n in rows]  # fmt: skip

    def task_progress(self, task_id: str, *, frames: int = 0, tracklets: int = 0) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE tasks SET state = CASE state WHEN 'new' THEN 'running' ELSE state END,"
                " frames = frames + ?, tracklets = tracklets + ? WHERE task_id = ?",
                (frames, tracklets, task_id),
            )

    def finish_task(self, task_id: str, state: str, reason: str | None = None) -> None:
        """Mark a task executed / skipped / failed; its report is then due."""
        with self.transaction() as db:
            db.execute(
                "UPDATE tasks SET state = ?, reason = ?, report_due = 1 WHERE task_id = ?"
                " AND state IN ('new', 'running')",
                (state, reason, task_id),
            )

    def reports_due(self) -> list[dict]:
        rows = self._query(
            "SELECT task_id, state, frames, tracklets, reason FROM tasks WHERE report_due = 1"
        )
        return [
            {"task_id": i, "status": s, "frames": f, "tracklets": n, "reason": r}
            for i, s, f, n, r in rows
        ]

    def report_sent(self, task_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE tasks SET report_due = 0 WHERE task_id = ?", (task_id,))
