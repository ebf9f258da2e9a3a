"""Read queries of the center database (mixed into :class:`aposos.center.store.Store`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from aposos.center import schema as S
from aposos.center.dbtypes import TRACKLET_STATUSES, Filters, Page, chunks, iso, num, page_of
from aposos.model import Tracklet

__all__ = ["StoreQueries"]


class StoreQueries:
    """Lists and lookups; needs ``self.read()`` (a read transaction)."""

    def list_stations(self, limit: int, offset: int = 0) -> Page:
        """Stations with last heartbeat, outbox backlog and tracklet counts by status."""
        T, K = S.stations, S.tracklets
        with self.read() as conn:
            rows = conn.execute(select(T).order_by(T.c.code).limit(limit + 1).offset(offset)).all()
            codes = [r.code for r in rows[:limit]]
            counts: dict[str, dict[str, int]] = {c: {} for c in codes}
            if codes:
                for code, status, n in conn.execute(
                    select(K.c.station, K.c.status, func.count())
                    .where(K.c.station.in_(codes))
                    .group_by(K.c.station, K.c.status)
                ):
                    counts[code][status] = int(n)
        items = []
        for r in rows[:limit]:
            by_status = {s: counts[r.code].get(s, 0) for s in TRACKLET_STATUSES}
            items.append(
                {
                    "code": r.code,
                    "created_at": iso(r.created_at),
                    "last_heartbeat": iso(r.last_heartbeat),
                    "outbox_backlog": r.outbox_backlog,
                    "agent_version": r.agent_version,
                    "tracklets": sum(by_status.values()),
                    "by_status": by_status,
                }
            )
        return page_of(items, rows, limit, offset)

    # ---------------------------------------------------------------- tracklets

    def _tracklet_query(self, f: Filters):
        K, C = S.tracklets, S.correlations
        q = select(
            K.c.id,
            K.c.uuid,
            K.c.station,
            K.c.object,
            K.c.received_at,
            K.c.t_start,
            K.c.t_mid,
            K.c.t_end,
            K.c.n_obs,
            K.c.status,
            K.c.duplicate_of,
            C.c.norad_id,
            C.c.snapshot_id,
        ).select_from(K.outerjoin(C, C.c.id == K.c.correlation_id))
        q = _filtered(q, f, status=K.c.status)
        return q

    def list_tracklets(self, f: Filters, limit: int, offset: int = 0) -> Page:
        """Tracklets by observation time (``since`` <= mid-time < ``until``), then id."""
        K = S.tracklets
        q = self._tracklet_query(f).order_by(K.c.t_mid, K.c.id).limit(limit + 1).offset(offset)
        with self.read() as conn:
            rows = conn.execute(q).all()
        return page_of([_tracklet_summary(r) for r in rows[:limit]], rows, limit, offset)

    def get_tracklet(self, key: int | str) -> dict | None:
        """One tracklet (by id or UUID) with its observations and correlations."""
        K, C = S.tracklets, S.correlations
        cond = K.c.uuid == key if isinstance(key, str) else K.c.id == key
        with self.read() as conn:
            row = conn.execute(self._tracklet_query(Filters()).where(cond)).first()
            if row is None:
                return None
            out = _tracklet_summary(row)
            obs = self._observations(conn, [row.id])[row.id]
            out["observations"] = obs
            hist = conn.execute(select(C).where(C.c.tracklet_id == row.id).order_by(C.c.id)).all()
            current = conn.execute(select(K.c.correlation_id).where(K.c.id == row.id)).scalar()
            J = S.jobs
            job = conn.execute(
                select(J.c.state, J.c.attempts, J.c.error)
                .where(J.c.tracklet_id == row.id)
                .order_by(J.c.id.desc())
                .limit(1)
            ).first()
        out["queue"] = None if job is None else job._asdict()
        out["correlation"] = next((_correlation_wire(c) for c in hist if c.id == current), None)
        out["correlation_history"] = [_correlation_wire(c) for c in hist]
        return out

    @staticmethod
    def _observations(conn: Connection, ids: Sequence[int]) -> dict[int, list[dict]]:
        O = S.observations
        out: dict[int, list[dict]] = {i: [] for i in ids}
        for chunk in chunks(list(ids)):
            for r in conn.execute(
                select(O).where(O.c.tracklet_id.in_(chunk)).order_by(O.c.tracklet_id, O.c.seq)
            ):
                out[r.tracklet_id].append(
                    {
                        "utc": iso(r.utc),
                        "ra_deg": r.ra_deg,
                        "dec_deg": r.dec_deg,
                        "sigma_arcsec": r.sigma_arcsec,
                        "mag": r.mag,
                    }
                )
        return out

    def load_tracklets(self, ids: Sequence[int]) -> dict[int, Tracklet]:
        """Rebuild :class:`Tracklet` objects (for correlation and export)."""
        with self.read() as conn:
            return self._load_tracklets(conn, ids)

    @classmethod
    def _load_tracklets(cls, conn: Connection, ids: Sequence[int]) -> dict[int, Tracklet]:
        K = S.tracklets
        out: dict[int, Tracklet] = {}
        heads = {}
        for chunk in chunks(list(ids)):
            for r in conn.execute(
                select(K.c.id, K.c.uuid, K.c.station, K.c.object).where(K.c.id.in_(chunk))
            ):
                heads[r.id] = r
        obs = cls._observations(conn, list(heads))
        for i in ids:
            if i not in heads:
                continue
            h, o = heads[i], obs[i]
            out[i] = Tracklet(
                station=h.station,
                object=h.object,
                uuid=h.uuid,
                utc=np.array([np.datetime64(x["utc"][:-1], "us") for x in o]),
                ra_deg=[x["ra_deg"] for x in o],
                dec_deg=[x["dec_deg"] for x in o],
                sigma_arcsec=[x["sigma_arcsec"] for x in o],
                mag=[np.nan if x["mag"] is None else x["mag"] for x in o],
            )
        return out

    # ------------------------------------------------------------- correlations

    def list_correlations(self, f: Filters, limit: int, offset: int = 0) -> Page:
        """Current correlations of tracklets, by tracklet time."""
        K, C = S.tracklets, S.correlations
        q = (
            select(C, K.c.uuid, K.c.station, K.c.t_mid, K.c.n_obs)
            .select_from(C.join(K, K.c.correlation_id == C.c.id))
            .order_by(K.c.t_mid, K.c.id)
        )
        q = _filtered(q, f, status=C.c.status)
        with self.read() as conn:
            rows = conn.execute(q.limit(limit + 1).offset(offset)).all()
        items = []
        for r in rows[:limit]:
            item = {
                "tracklet_id": r.tracklet_id,
                "uuid": r.uuid,
                "station": r.station,
                "t_mid": iso(r.t_mid),
                "n_obs": r.n_obs,
            }
            item.update(_correlation_wire(r))
            items.append(item)
        return page_of(items, rows, limit, offset)

    def object_history(self, norad_id: int, limit: int, offset: int = 0) -> Page:
        """Tracklets currently identified as ``norad_id``, with observations and residuals."""
        page = self.list_correlations(Filters(norad_id=norad_id), limit, offset)
        with self.read() as conn:
            obs = self._observations(conn, [i["tracklet_id"] for i in page.items])
        for item in page.items:
            item["observations"] = obs[item["tracklet_id"]]
        return page

    def list_snapshots(self) -> list[dict]:
        N = S.snapshots
        with self.read() as conn:
            rows = conn.execute(select(N).order_by(N.c.id)).all()
        return [_snapshot_wire(r) for r in rows]

    def snapshot(self, snapshot_id: int) -> dict | None:
        N = S.snapshots
        with self.read() as conn:
            row = conn.execute(select(N).where(N.c.id == snapshot_id)).first()
        return None if row is None else _snapshot_wire(row)


def _filtered(q, f: Filters, *, status):
    """Apply the list filters shared by tracklet and correlation queries."""
    K, C = S.tracklets, S.correlations
    conds = []
    if f.station:
        conds.append(K.c.station == f.station)
    if f.since:
        conds.append(K.c.t_mid >= f.since)
    if f.until:
        conds.append(K.c.t_mid < f.until)
    if f.status:
        conds.append(status == f.status)
    if f.norad_id is not None:
        conds.append(C.c.norad_id == f.norad_id)
    return q.where(and_(*conds)) if conds else q


def _tracklet_summary(r) -> dict:
    return {
        "id": r.id,
        "uuid": r.uuid,
        "station": r.station,
        "object": r.object,
        "received_at": iso(r.received_at),
        "t_start": iso(r.t_start),
        "t_mid": iso(r.t_mid),
        "t_end": iso(r.t_end),
        "n_obs": r.n_obs,
        "status": r.status,
        "duplicate_of": r.duplicate_of,
        "norad_id": r.norad_id,
        "snapshot_id": r.snapshot_id,
    }


def _correlation_wire(r) -> dict:
    return {
        "correlation_id": r.id,
        "snapshot_id": r.snapshot_id,
        "status": r.status,
        "norad_id": r.norad_id,
        "score": num(r.score),
        "rms_arcsec": num(r.rms_arcsec),
        "time_offset_s": num(r.time_offset_s),
        "cross_track_arcsec": num(r.cross_track_arcsec),
        "candidates": json.loads(r.candidates),
        "error": r.error,
        "reason": r.reason,
        "p_unlisted": num(r.p_unlisted),
        "correlated_at": iso(r.created_at),
    }


def _snapshot_wire(r) -> dict:
    return {
        "id": r.id,
        "created_at": iso(r.created_at),
        "fingerprint": r.fingerprint,
        "source_name": r.source_name,
        "n_objects": r.n_objects,
        "epoch_min": iso(r.epoch_min),
        "epoch_median": iso(r.epoch_median),
        "epoch_max": iso(r.epoch_max),
    }
