"""Re-correlate a night's tracklets against the newest suitable catalogue snapshot,
before the nightly report is written (``aposos report nightly --recorrelate``).

The tracklets of the night whose current result did not come from that snapshot are
queued for it (the center's own queue), then the queue is worked off here, by the
center's worker code, on the Dask cluster when one is given (``[worker]
dask_scheduler``), else in this process. A center running at the same time may take
some of the jobs: the results are the same, and this waits for them.
"""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import and_, or_, select

from aposos.center import schema as S
from aposos.center.dbtypes import utcnow
from aposos.center.worker import OPEN_STATES, CorrelationWorker, suitable_snapshot

__all__ = ["recorrelate_night"]


def _queue(store, snapshot_id: int, lo: datetime, hi: datetime) -> list[int]:
    J, K, C = S.jobs, S.tracklets, S.correlations
    open_job = (
        select(J.c.id)
        .where(
            J.c.tracklet_id == K.c.id, J.c.state.in_(OPEN_STATES), J.c.snapshot_id == snapshot_id
        )
        .exists()
    )
    now = utcnow()
    with store.write() as conn:
        ids = list(
            conn.execute(
                select(K.c.id)
                .select_from(K.outerjoin(C, C.c.id == K.c.correlation_id))
                .where(
                    K.c.t_mid >= lo,
                    K.c.t_mid < hi,
                    K.c.duplicate_of.is_(None),
                    or_(C.c.id.is_(None), C.c.snapshot_id != snapshot_id),
                    ~open_job,
                )  # fmt: skip
                .order_by(K.c.id)
            ).scalars()
        )
        if ids:
            conn.execute(J.insert(), [
                {"tracklet_id": i, "snapshot_id": snapshot_id, "state": "pending",
                 "attempts": 0, "created_at": now} for i in ids])  # fmt: skip
    return ids


def _open(store, ids: list[int], snapshot_id: int) -> int:
    J = S.jobs
    with store.read() as conn:
        return len(
            conn.execute(
                select(J.c.id).where(
                    and_(
                        J.c.tracklet_id.in_(ids),
                        J.c.snapshot_id == snapshot_id,
                        J.c.state.in_(OPEN_STATES),
                    )  # fmt: skip
                )
            ).all()
        )


def recorrelate_night(store, config, lo: datetime, hi: datetime, *, client=None,
                      wait_s: float = 600.0) -> dict:  # fmt: skip
    """Re-correlate the tracklets observed in ``[lo, hi)``; returns what was done:
    ``{"snapshot_id", "source_name", "queued", "on"}`` (``snapshot_id`` None when no
    snapshot suits the night)."""
    snapshots = store.list_snapshots()
    for snap in snapshots:
        snap["_epoch_median"] = datetime.fromisoformat(snap["epoch_median"][:-1])
    best = suitable_snapshot(snapshots, lo + (hi - lo) / 2, config)
    on = "dask" if client is not None else "this process"
    if best is None:
        return {"snapshot_id": None, "source_name": None, "queued": 0, "on": on}
    ids = _queue(store, best["id"], lo, hi)
    if ids:
        worker = CorrelationWorker(store, config, dask_client=client)
        while worker.run_once():  # a failed batch raises: the command names it
            pass
        deadline = time.monotonic() + wait_s  # jobs a running center took
        while _open(store, ids, best["id"]) and time.monotonic() < deadline:
            time.sleep(1.0)
    return {"snapshot_id": best["id"], "source_name": best["source_name"],
            "queued": len(ids), "on": on}  # fmt: skip
