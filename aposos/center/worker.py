"""The background correlation worker, and its queue in the database.

Every stored tracklet gets a row in ``jobs``. A worker *claims* a batch (state
``running`` with a lease), correlates it, and in one transaction writes the
correlations and marks the jobs ``done``. A worker that dies leaves its jobs
``running`` with a lease that is no longer renewed; once the lease runs out any
worker claims them again. A correlation row is unique per job, so a job is never
recorded twice even when two workers raced for it.

A job without a fixed snapshot is correlated against the newest catalogue snapshot
whose epochs suit the tracklet's time; when none suits, the job *waits* until a new
snapshot is put (:func:`wake_waiting`).
"""

from __future__ import annotations

import logging
import threading
import uuid as uuid_module
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, bindparam, func, or_, select

from aposos.center import schema as S
from aposos.center.config import CenterConfig
from aposos.center.heap import settle_heap
from aposos.center.store import Store, correlation_row, utcnow
from aposos.correlate.sites import resolve_site
from aposos.model import Correlation, Tracklet

__all__ = [
    "CorrelationWorker",
    "Job",
    "build_correlator",
    "claim_jobs",
    "complete_jobs",
    "correlate_batch",
    "enqueue_recorrelation",
    "queue_counts",
    "requeue_worse_results",
    "wake_waiting",
]

log = logging.getLogger(__name__)
OPEN_STATES = ("pending", "running", "waiting")
MAX_ATTEMPTS = 5  # a job whose batch failed this often is marked failed
HISTORY_MIN_DAYS = 0.5  # the snapshot before: at least this much older ...
HISTORY_MAX_DAYS = 4.0  # ... and no more than this


# ------------------------------------------------------ the correlation engine


def build_correlator(catalogue, sites: dict, cube_dir: Path | None = None, previous=None):
    """The one place where the correlation engine is connected to the worker
    (``previous``: the snapshot before ``catalogue``, its history)."""
    from aposos.correlate.correlator import SGP4Correlator

    return SGP4Correlator(catalogue, sites, cube_dir=cube_dir, previous_catalogue=previous)


def load_sites(stations_dir: Path) -> dict:
    """Station sites by code, from the ``[site]`` tables of ``stations/*.toml``."""
    from aposos.correlate import sites

    return sites.load_sites(stations_dir)


def load_catalogue(path: str):
    """A catalogue snapshot from its zarr store."""
    from aposos.orbit.catalogue import Catalogue

    return Catalogue.load_zarr(path)


def correlate_batch(correlator, tracklets: list[Tracklet]) -> list[Correlation]:
    """Correlate a batch; if the batch call fails, one at a time, so one bad tracklet
    costs only its own result (recorded with its error)."""
    try:
        results = list(correlator(tracklets))
        if len(results) == len(tracklets):
            return results
        log.error("correlator returned %d results for %d tracklets", len(results), len(tracklets))
    except Exception:
        log.exception("batch correlation failed; correlating one by one")
    out = []
    for t in tracklets:
        try:
            out.append(correlator.correlate_one(t))
        except Exception as exc:
            log.exception("correlation of tracklet %s failed", t.uuid)
            out.append(Correlation(status="uncorrelated", error=f"{type(exc).__name__}: {exc}"))
    return out


# ------------------------------------------------------------------- the queue


@dataclass(frozen=True)
class Job:
    """A claimed job: which tracklet, against which snapshot (``None``: by time)."""

    id: int
    tracklet_id: int
    snapshot_id: int | None
    t_mid: datetime
    station: str
    attempts: int = 1


def claim_jobs(store: Store, worker: str, n: int, lease_seconds: float) -> list[Job]:
    """Claim up to ``n`` pending (or abandoned) jobs, oldest first."""
    J, K = S.jobs, S.tracklets
    now = utcnow()
    with store.write() as conn:
        q = (
            select(J.c.id)
            .where(or_(J.c.state == "pending", and_(J.c.state == "running", J.c.lease_until < now)))
            .order_by(J.c.id)
            .limit(n)
        )
        if not store.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        ids = list(conn.execute(q).scalars())
        if not ids:
            return []
        conn.execute(
            J.update()
            .where(J.c.id.in_(ids))
            .values(
                state="running",
                worker=worker,
                lease_until=now + timedelta(seconds=lease_seconds),
                attempts=J.c.attempts + 1,
            )
        )
        rows = conn.execute(
            select(J.c.id, J.c.tracklet_id, J.c.snapshot_id, K.c.t_mid, K.c.station, J.c.attempts)
            .join(K, K.c.id == J.c.tracklet_id)
            .where(J.c.id.in_(ids))
            .order_by(J.c.id)
        ).all()
    return [Job(*r) for r in rows]


def renew_leases(store: Store, worker: str, lease_seconds: float) -> int:
    """Extend the leases of the jobs ``worker`` is holding."""
    J = S.jobs
    with store.write() as conn:
        res = conn.execute(
            J.update()
            .where(J.c.worker == worker, J.c.state == "running")
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
    return res.rowcount


def complete_jobs(store: Store, worker: str, results: list[tuple[Job, int, Correlation]]) -> int:
    """Record (job, snapshot id, correlation) results in one transaction.

    Jobs no longer held by ``worker`` (its lease ran out and another took them) are
    skipped. Returns the number recorded. The rows are made before the write lock is
    taken and written with one statement per table, so uploads wait little for it.
    """
    if not results:
        return 0
    now = utcnow()
    rows = {
        job.id: {
            "tracklet_id": job.tracklet_id,
            "job_id": job.id,
            "snapshot_id": snapshot_id,
            "created_at": now,
            **correlation_row(corr),
        }
        for job, snapshot_id, corr in results
    }
    with store.write() as conn:
        held = set(conn.execute(_HELD_JOBS, {"ids": list(rows), "worker": worker}).scalars())
        mine = [rows[j] for j in rows if j in held]
        if not mine:
            return 0
        made = conn.execute(_INSERT_CORRELATIONS, mine).all()
        conn.execute(
            _SET_TRACKLET_RESULT,
            [
                {"tid": rows[r.job_id]["tracklet_id"], "st": rows[r.job_id]["status"], "cid": r.id}
                for r in made
            ],
        )
        conn.execute(_FINISH_JOB, [{"jid": r.job_id, "now": now} for r in made])
    return len(made)


_J, _K, _C = S.jobs, S.tracklets, S.correlations
_HELD_JOBS = select(_J.c.id).where(
    _J.c.id.in_(bindparam("ids", expanding=True)),
    _J.c.worker == bindparam("worker"),
    _J.c.state == "running",
)
_INSERT_CORRELATIONS = _C.insert().returning(_C.c.id, _C.c.job_id, sort_by_parameter_order=True)
_SET_TRACKLET_RESULT = (
    _K.update()
    .where(_K.c.id == bindparam("tid"))
    .values(status=bindparam("st"), correlation_id=bindparam("cid"))
)
_FINISH_JOB = (
    _J.update()
    .where(_J.c.id == bindparam("jid"))
    .values(state="done", finished_at=bindparam("now"), lease_until=None, error=None)
)


def _release(store: Store, worker: str, job_ids: list[int], state: str, error: str | None):
    J = S.jobs
    if not job_ids:
        return
    with store.write() as conn:
        conn.execute(
            J.update()
            .where(J.c.id.in_(job_ids), J.c.worker == worker, J.c.state == "running")
            .values(
                state=state,
                worker=None,
                lease_until=None,
                error=error,
                finished_at=utcnow() if state == "failed" else None,
            )
        )


def _direct(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def wake_waiting(store: Store) -> int:
    """Put jobs that waited for a suitable catalogue back in the queue."""
    J = S.jobs
    with store.write() as conn:
        res = conn.execute(J.update().where(J.c.state == "waiting").values(state="pending"))
    return res.rowcount


def enqueue_recorrelation(
    store: Store,
    *,
    since: datetime | None,
    until: datetime | None,
    station: str | None = None,
    snapshot_id: int | None = None,
) -> int:
    """Queue the tracklets observed in [since, until) for correlation again.

    Tracklets that already have an open job for the same snapshot are left alone.
    Returns the number of jobs queued.
    """
    J, K = S.jobs, S.tracklets
    now = utcnow()
    conds = []
    if since is not None:
        conds.append(K.c.t_mid >= since)
    if until is not None:
        conds.append(K.c.t_mid < until)
    if station:
        conds.append(K.c.station == station)
    same_target = (
        J.c.snapshot_id.is_(None) if snapshot_id is None else J.c.snapshot_id == snapshot_id
    )
    open_job = (
        select(J.c.id)
        .where(J.c.tracklet_id == K.c.id, J.c.state.in_(OPEN_STATES), same_target)
        .exists()
    )
    with store.write() as conn:
        ids = list(conn.execute(select(K.c.id).where(*conds, ~open_job)).scalars())
        if ids:
            conn.execute(
                J.insert(),
                [
                    {
                        "tracklet_id": i,
                        "snapshot_id": snapshot_id,
                        "state": "pending",
                        "attempts": 0,
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
    return len(ids)


def requeue_worse_results(
    store: Store, config: CenterConfig, snapshot_id: int, *, worse_fraction: float = 0.9
) -> int:
    """Queue again the tracklets whose current result came from a worse snapshot
    (fewer than ``worse_fraction`` of the objects of snapshot ``snapshot_id``) and
    whose time the new snapshot suits. Returns the number queued."""
    J, K, C, N = S.jobs, S.tracklets, S.correlations, S.snapshots
    new = store.snapshot(snapshot_id)
    median = datetime.fromisoformat(new["epoch_median"][:-1])
    since = median - timedelta(days=config.max_days_before_epoch)
    until = median + timedelta(days=config.max_days_after_epoch)
    open_job = select(J.c.id).where(J.c.tracklet_id == K.c.id, J.c.state.in_(OPEN_STATES)).exists()
    now = utcnow()
    with store.write() as conn:
        ids = list(
            conn.execute(
                select(K.c.id)
                .join(C, C.c.id == K.c.correlation_id)
                .join(N, N.c.id == C.c.snapshot_id)
                .where(
                    N.c.n_objects < worse_fraction * new["n_objects"],
                    K.c.t_mid >= since,
                    K.c.t_mid <= until,
                    ~open_job,
                )
            ).scalars()
        )
        if ids:
            conn.execute(
                J.insert(),
                [
                    {"tracklet_id": i, "state": "pending", "attempts": 0, "created_at": now}
                    for i in ids
                ],
            )
    if ids:
        log.info("snapshot %d: %d tracklet(s) queued again (worse results)", snapshot_id, len(ids))
    return len(ids)


def queue_counts(store: Store) -> dict[str, int]:
    """Jobs by state."""
    J = S.jobs
    with store.read() as conn:
        rows = conn.execute(select(J.c.state, func.count()).group_by(J.c.state)).all()
    counts = {s: 0 for s in (*OPEN_STATES, "done", "failed")}
    counts.update({s: int(n) for s, n in rows})
    return counts


def suitable_snapshot(snapshots: list[dict], t: datetime, config: CenterConfig) -> dict | None:
    """The newest snapshot whose median epoch is near enough to ``t``."""
    after = timedelta(days=config.max_days_after_epoch)
    before = timedelta(days=config.max_days_before_epoch)
    best = None
    for snap in snapshots:
        if snap["_epoch_median"] - before <= t <= snap["_epoch_median"] + after:
            if best is None or snap["id"] > best["id"]:
                best = snap
    return best


# ------------------------------------------------------------------ the worker


class _BatchFailed(RuntimeError):
    """A batch failed for a reason already logged; the worker loop backs off."""


class CorrelationWorker:
    """Correlates queued tracklets in a background thread.

    Parameters
    ----------
    store : the database.
    config : the center configuration (worker settings, snapshot suitability,
        stations folder).
    dask_client : a ``dask.distributed.Client``: batches are correlated on its cluster
        (:meth:`~aposos.correlate.SGP4Correlator.run_distributed`), else in this process.

    Examples
    --------
    >>> worker = CorrelationWorker(store, config)  # doctest: +SKIP
    >>> worker.start(); ...; worker.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        config: CenterConfig,
        *,
        cached_snapshots: int = 2,
        freeze_heap: bool = False,
        dask_client=None,
        writer=None,
    ):
        self.store = store
        # the write transactions: in ``writer`` (a WriterThread at the server's
        # priority, in the niced worker process), else in the calling thread
        self._write = writer.call if writer is not None else _direct
        self.config = config
        self.freeze_heap = freeze_heap  # a process of its own: see heap.settle_heap
        self.name = f"worker-{uuid_module.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._correlators: OrderedDict[int, object] = OrderedDict()
        self._cached = cached_snapshots
        self._sites: dict | None = None
        self.dask_client = dask_client

    # -- life cycle

    def start(self) -> None:
        """Start the worker and its lease-renewal threads."""
        if self._threads:
            return
        self._stop.clear()
        for target, name in ((self._run, "correlate"), (self._renew, "lease")):
            th = threading.Thread(target=target, name=f"aposos-{name}", daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the threads to finish their batch and wait for them."""
        self._stop.set()
        for th in self._threads:
            th.join(timeout)
        self._threads = []

    def _run(self) -> None:
        poll = self.config.worker.poll_seconds
        while not self._stop.is_set():
            try:
                n = self.run_once()
            except _BatchFailed:
                n = 0  # logged where it happened
                self._stop.wait(5 * poll)
            except Exception:
                log.exception("correlation worker: batch failed; retrying after a pause")
                n = 0
                self._stop.wait(5 * poll)
            if n == 0:
                self._stop.wait(poll)

    def _renew(self) -> None:
        lease = self.config.worker.lease_seconds
        while not self._stop.wait(lease / 3.0):
            try:
                self._write(renew_leases, self.store, self.name, lease)
            except Exception:
                log.exception("correlation worker: lease renewal failed")

    # -- one batch

    def run_once(self) -> int:
        """Claim one batch and process it; returns the number of jobs handled."""
        wc = self.config.worker
        jobs = self._write(claim_jobs, self.store, self.name, wc.batch_size, wc.lease_seconds)
        if not jobs:
            return 0
        snapshots = self.store.list_snapshots()
        for snap in snapshots:
            snap["_epoch_median"] = datetime.fromisoformat(snap["epoch_median"][:-1])
        by_id = {s["id"]: s for s in snapshots}
        groups: dict[int, list[Job]] = {}
        waiting = []
        for job in jobs:
            if job.snapshot_id is not None:
                snap = by_id.get(job.snapshot_id)
            else:
                snap = suitable_snapshot(snapshots, job.t_mid, self.config)
            if snap is None:
                waiting.append(job.id)
            else:
                groups.setdefault(snap["id"], []).append(job)
        self._write(
            _release, self.store, self.name, waiting, "waiting", "no catalogue snapshot suits"
        )
        if waiting and {s["id"] for s in self.store.list_snapshots()} != set(by_id):
            # a catalogue came (and woke the waiting jobs) while these were claimed
            self._write(wake_waiting, self.store)
        failure = None
        for snapshot_id, group in groups.items():
            try:
                self._process(snapshot_id, by_id[snapshot_id], group)
            except Exception as exc:
                # the engine or the snapshot failed (not one tracklet): retry later
                log.exception("correlation against snapshot %d failed", snapshot_id)
                error = f"{type(exc).__name__}: {exc}"
                spent = [j.id for j in group if j.attempts >= MAX_ATTEMPTS]
                again = [j.id for j in group if j.attempts < MAX_ATTEMPTS]
                self._write(_release, self.store, self.name, spent, "failed", error)
                self._write(_release, self.store, self.name, again, "pending", error)
                failure = exc
        if failure is not None:
            raise _BatchFailed(str(failure))  # the loop backs off
        return len(jobs)

    def _process(self, snapshot_id: int, snap: dict, group: list[Job]) -> None:
        tracklets = self.store.load_tracklets([j.tracklet_id for j in group])
        sites = self._sites_for({j.station for j in group})
        known = [j for j in group if resolve_site(sites, j.station) is not None]
        unknown = [j.id for j in group if resolve_site(sites, j.station) is None]
        self._write(
            _release,
            self.store,
            self.name,
            unknown,
            "failed",
            f"no site known for the station (add it under {self.config.stations_dir})",
        )
        if not known:
            return
        correlator = self._correlator(snapshot_id, snap, sites)
        batch = [tracklets[j.tracklet_id] for j in known]
        if self.dask_client is not None:  # the same results, computed on the cluster
            results = correlator.run_distributed(batch, self.dask_client)
        else:
            results = correlate_batch(correlator, batch)
        self._write(
            complete_jobs,
            self.store,
            self.name,
            [(j, snapshot_id, c) for j, c in zip(known, results, strict=True)],
        )

    def _sites_for(self, stations: set[str]) -> dict:
        if self._sites is None or any(resolve_site(self._sites, s) is None for s in stations):
            sites = load_sites(self.config.stations_dir)
            if self._sites is not None and set(sites) != set(self._sites):
                self._correlators.clear()  # built with the old site table
            self._sites = sites
        return self._sites

    def _correlator(self, snapshot_id: int, snap: dict, sites: dict):
        if snapshot_id in self._correlators:
            self._correlators.move_to_end(snapshot_id)
            return self._correlators[snapshot_id]
        path = self._snapshot_path(snapshot_id)
        log.info("loading catalogue snapshot %d (%d objects)", snapshot_id, snap["n_objects"])
        cube_dir = Path(self.config.data_dir) / "cubes" / f"snapshot-{snapshot_id}"
        previous = self._previous_snapshot_path(snap)
        correlator = build_correlator(
            load_catalogue(path), sites, cube_dir,
            previous=load_catalogue(previous) if previous else None,
        )  # fmt: skip
        self._correlators[snapshot_id] = correlator
        while len(self._correlators) > self._cached:
            self._correlators.popitem(last=False)
        if self.freeze_heap:
            settle_heap()
        return correlator

    def _previous_snapshot_path(self, snap: dict) -> str | None:
        """The newest snapshot at least ``HISTORY_MIN_DAYS`` older than ``snap`` (median
        epochs), within ``HISTORY_MAX_DAYS``: which orbits were changing before it."""
        N = S.snapshots
        median = snap.get("epoch_median")
        if median is None:
            return None
        if isinstance(median, str):
            median = datetime.fromisoformat(median.replace("Z", "+00:00"))
        median = median.replace(tzinfo=None)
        with self.store.read() as conn:
            row = conn.execute(
                select(N.c.path)
                .where(N.c.epoch_median <= median - timedelta(days=HISTORY_MIN_DAYS))
                .where(N.c.epoch_median >= median - timedelta(days=HISTORY_MAX_DAYS))
                .order_by(N.c.epoch_median.desc())
                .limit(1)
            ).first()
        return None if row is None else str(row.path)

    def _snapshot_path(self, snapshot_id: int) -> str:
        N = S.snapshots
        with self.store.read() as conn:
            return conn.execute(select(N.c.path).where(N.c.id == snapshot_id)).scalar_one()
