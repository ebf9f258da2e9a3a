"""The numbers of one network night, read from the center database.

:func:`gather_night` reads the night's tracklets with their current correlations, the
stations' last heartbeats and uploads, and the catalogue snapshots used, and returns one
dict of plain, rounded values (arcsec and seconds to 0.1, km to 0.1, shares in per cent
to 0.1), sorted, so the same database gives the same report.

A station's night runs from local mean noon of the date to the next (the tasking's
convention); a station whose site is not known gets 12:00 to 12:00 UTC.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, select

from aposos.center import schema as S
from aposos.center.report_beats import heartbeat_nights
from aposos.center.report_flags import flags
from aposos.center.report_plan import plan_vs_executed, trends

__all__ = ["STATUSES", "gather_night", "night_windows"]

STATUSES = ("correlated", "ambiguous", "uncorrelated", "pending")
UNKNOWN_CLASS = "unknown"
UNIX_EPOCH, JD_UNIX_EPOCH = datetime(1970, 1, 1), 2440587.5


def r1(x) -> float | None:
    """A number to 0.1 (arcsec, seconds, km, per cent); ``None`` when not finite."""
    if x is None:
        return None
    x = float(x)
    return round(x, 1) if math.isfinite(x) else None


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(microsecond=0).isoformat() + "Z"


def night_windows(night: str, codes, sites: dict | None = None) -> dict:
    """``{code: (start, end)}``, naive UTC: local mean noon of ``night`` to the next."""
    day = datetime.fromisoformat(night)
    out = {}
    for code in codes:
        site = (sites or {}).get(code)
        lon = float(site.longitude_deg) if site is not None else 0.0
        start = day + timedelta(hours=12) - timedelta(seconds=round(lon / 15.0 * 3600))
        out[code] = (start, start + timedelta(days=1))
    return out


class _Names:
    """Name, designator, orbit class and element-set epoch of catalogued objects, per
    snapshot (loaded lazily; a snapshot whose files are gone gives no names)."""

    def __init__(self, paths: dict[int, str]):
        self.paths, self.cats = paths, {}

    def _row(self, snapshot_id, norad_id):
        if snapshot_id is None or norad_id is None:
            return None, None
        if snapshot_id not in self.cats:
            self.cats[snapshot_id] = _load(self.paths.get(snapshot_id))
        cat = self.cats[snapshot_id]
        try:
            return (cat, cat.index_of(int(norad_id))) if cat is not None else (None, None)
        except (KeyError, ValueError, IndexError):
            return None, None

    def age_days(self, snapshot_id, norad_id, t: datetime) -> float | None:
        """Days from the object's element-set epoch to ``t``."""
        cat, k = self._row(snapshot_id, norad_id)
        if cat is None:
            return None
        jd = (t - UNIX_EPOCH).total_seconds() / 86400.0 + JD_UNIX_EPOCH
        return (jd - float(cat.epoch_jd[k])) - float(cat.epoch_fr[k])

    def __call__(self, snapshot_id, norad_id) -> tuple[str | None, str | None, str | None]:
        if norad_id is None:
            return None, None, None
        cat, k = self._row(snapshot_id, norad_id)
        if cat is None:
            return None, None, UNKNOWN_CLASS
        name = str(cat.name[k]).strip() or None
        desig = str(cat.intl_designator[k]).strip() or None
        return name, desig, str(cat.orbit_class[k])


def _load(path: str | None):
    if not path or not Path(path).exists():
        return None
    from aposos.orbit.catalogue import Catalogue

    try:
        return Catalogue.load_zarr(path)
    except (OSError, ValueError, KeyError):
        return None


def _nearest(candidates: list[dict]) -> dict | None:
    """The candidate closest in space (along- and cross-track km), else by RMS."""

    def key(c):
        a, x = c.get("along_track_km"), c.get("cross_track_km")
        if a is not None and x is not None:
            return (0, math.hypot(a, x), c["norad_id"])
        rms = c.get("rms_arcsec")
        return (1, rms if rms is not None else math.inf, c["norad_id"])

    return min(candidates, key=key) if candidates else None


def _tracklet_rows(conn, lo: datetime, hi: datetime) -> list:
    K, C = S.tracklets, S.correlations
    q = (
        select(
            K.c.id,
            K.c.uuid,
            K.c.station,
            K.c.upload_id,
            K.c.t_start,
            K.c.t_mid,
            K.c.t_end,
            K.c.n_obs,
            K.c.status,
            C.c.norad_id,
            C.c.snapshot_id,
            C.c.score,
            C.c.rms_arcsec,
            C.c.time_offset_s,
            C.c.cross_track_arcsec,
            C.c.candidates,
            C.c.reason,
            C.c.p_unlisted,
        )
        .select_from(K.outerjoin(C, C.c.id == K.c.correlation_id))
        .where(K.c.t_mid >= lo, K.c.t_mid < hi, K.c.duplicate_of.is_(None))
        .order_by(K.c.t_mid, K.c.id)
    )
    return conn.execute(q).all()


def _mid_positions(conn, ids: list[int]) -> dict[int, tuple[float, float]]:
    O = S.observations
    by_id: dict[int, list] = defaultdict(list)
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        for r in conn.execute(
            select(O.c.tracklet_id, O.c.seq, O.c.ra_deg, O.c.dec_deg)
            .where(O.c.tracklet_id.in_(part))
            .order_by(O.c.tracklet_id, O.c.seq)
        ):
            by_id[r.tracklet_id].append((r.ra_deg, r.dec_deg))
    return {k: v[len(v) // 2] for k, v in by_id.items()}


def _station_rows(conn) -> dict[str, dict]:
    T = S.stations
    out = {}
    for r in conn.execute(select(T).order_by(T.c.code)):
        try:
            body = json.loads(r.heartbeat) if r.heartbeat else {}
        except ValueError:
            body = {}
        out[r.code] = {
            "last_heartbeat": r.last_heartbeat,
            "outbox_backlog": r.outbox_backlog,
            "agent_version": r.agent_version,
            "body": body if isinstance(body, dict) else {},
        }
    return out


def _uploads(conn, lo: datetime, hi: datetime) -> dict[str, Counter]:
    U = S.uploads
    out: dict[str, Counter] = defaultdict(Counter)
    for r in conn.execute(
        select(U.c.station, U.c.state).where(and_(U.c.received_at >= lo, U.c.received_at < hi))
    ):
        out[r.station][r.state] += 1
    return out


def _station_night(code, window, rows, station, uploads) -> dict:
    lo, hi = window
    counts = Counter(r["status"] for r in rows)
    times = sorted(r["t_mid_dt"] for r in rows)
    gaps = [(b - a).total_seconds() / 60.0 for a, b in zip(times, times[1:], strict=False)]
    body = station.get("body", {}) if station else {}
    last = station.get("last_heartbeat") if station else None
    reduced, rate = body.get("frames_reduced"), body.get("solve_rate")
    return {
        "code": code,
        "night_start": _iso(lo),
        "night_end": _iso(hi),
        "tracklets": len(rows),
        **{s: counts.get(s, 0) for s in STATUSES},
        "objects": len({r["norad_id"] for r in rows if r["status"] == "correlated"}),
        "first_tracklet": _iso(times[0]) if times else None,
        "last_tracklet": _iso(times[-1]) if times else None,
        "longest_gap_min": r1(max(gaps)) if gaps else None,
        "uploads": len({r["upload_id"] for r in rows} - {None}),  # that carried the night's
        "uploads_refused": uploads.get("rejected", 0) + uploads.get("quarantined", 0),
        "registered": station is not None,
        "last_heartbeat": _iso(last),
        "heartbeat_in_night": None if last is None else bool(lo <= last < hi),
        "outbox_backlog": station.get("outbox_backlog") if station else None,
        "agent_version": station.get("agent_version") if station else None,
        "frames_captured": body.get("frames_captured"),
        "frames_reduced": reduced,
        "frames_solved": round(rate * reduced) if rate is not None and reduced else None,
        "frames_failed": body.get("frames_failed"),
        "solved_pct": r1(100.0 * rate) if rate is not None else None,
        "last_error": body.get("last_error"),
    }


def _with_beats(night: dict, beats: dict) -> dict:
    """The station's night with its heartbeats; frame counts of the night itself when
    the heartbeats of the night carry them (else the agent's last report, as before)."""
    out = {**night, **beats, "frames_from": "last heartbeat (agent's running count)"}
    if beats.get("frames_night") is not None:
        frames, solved = beats["frames_night"], beats.get("solved_night")
        out.update(
            frames_reduced=frames,
            frames_solved=solved,
            solved_pct=r1(100.0 * solved / frames) if frames and solved is not None else None,
            frames_from=f"heartbeats of the night (counted from {beats['counted_from']})",
        )
    return out


def _spread(values: list[float]) -> dict:
    v = sorted(x for x in values if x is not None and math.isfinite(x))
    if not v:
        return {"n": 0, "median": None, "p95_abs": None}
    a = sorted(abs(x) for x in v)
    return {
        "n": len(v),
        "median": r1(statistics.median(v)),
        "p95_abs": r1(a[int(0.95 * (len(a) - 1))]),
    }


def gather_night(store, night: str, *, sites: dict | None = None) -> dict:
    """The report's numbers for the night that starts on ``night`` (``YYYY-MM-DD``).

    Parameters
    ----------
    store : the center's :class:`~aposos.center.store.Store`.
    night : the date the night starts on.
    sites : station sites by code (for each station's local night); optional.

    Returns a dict; its ``tracklets`` list (one row per tracklet, sorted by time) feeds
    ``correlations.csv`` and the plots, the rest ``summary.json``.
    """
    datetime.fromisoformat(night)  # a clear ValueError for a bad date
    with store.read() as conn:
        stations = _station_rows(conn)
        codes = sorted(set(stations) | set(sites or {}))
        windows = night_windows(night, codes, sites)
        lo = min((w[0] for w in windows.values()), default=datetime.fromisoformat(night))
        hi = max((w[1] for w in windows.values()), default=lo + timedelta(days=1))
        lo, hi = lo - timedelta(hours=12), hi + timedelta(hours=12)  # unknown codes
        raw = _tracklet_rows(conn, lo, hi)
        extra = sorted({r.station for r in raw} - set(windows))
        windows.update(night_windows(night, extra, sites))
        raw = [r for r in raw if windows[r.station][0] <= r.t_mid < windows[r.station][1]]
        beats = heartbeat_nights(conn, windows)
        plan = plan_vs_executed(conn, night)
        trend = trends(conn, night, windows)
        prev_lo = min((w[0] for w in windows.values()), default=lo) - timedelta(days=1)
        first = min((w[0] for w in windows.values()), default=lo)
        K, C = S.tracklets, S.correlations
        seen_before = set(
            conn.execute(
                select(C.c.norad_id)
                .select_from(K.join(C, C.c.id == K.c.correlation_id))
                .where(K.c.t_mid >= prev_lo, K.c.t_mid < first, K.c.status == "correlated")
            ).scalars()
        )
        positions = _mid_positions(conn, [r.id for r in raw])
        N = S.snapshots
        snaps = {r.id: r for r in conn.execute(select(N).order_by(N.c.id))}
        uploads = _uploads(conn, lo, hi)
    names = _Names({k: v.path for k, v in snaps.items()})

    rows = []
    for r in raw:
        name, desig, klass = names(r.snapshot_id, r.norad_id)
        candidates = json.loads(r.candidates) if r.candidates else []
        ra, dec = positions.get(r.id, (None, None))
        rows.append(
            {
                "tracklet_id": r.id,
                "uuid": r.uuid,
                "station": r.station,
                "upload_id": r.upload_id,
                "t_mid": _iso(r.t_mid),
                "t_mid_dt": r.t_mid,
                "duration_s": r1((r.t_end - r.t_start).total_seconds()),
                "n_obs": r.n_obs,
                "status": r.status,
                "norad_id": r.norad_id,
                "name": name,
                "intl_designator": desig,
                "orbit_class": klass,
                "elset_age_d": r1(names.age_days(r.snapshot_id, r.norad_id, r.t_mid)),
                "ra_deg": None if ra is None else round(ra, 3),
                "dec_deg": None if dec is None else round(dec, 3),
                "score": None if r.score is None else round(r.score, 3),
                "rms_arcsec": r1(r.rms_arcsec),
                "time_offset_s": r1(r.time_offset_s),
                "cross_track_arcsec": r1(r.cross_track_arcsec),
                "p_unlisted": None if r.p_unlisted is None else round(r.p_unlisted, 3),
                "snapshot_id": r.snapshot_id,
                "reason": r.reason,
                "candidates": candidates,
            }
        )

    by_station = defaultdict(list)
    for row in rows:
        by_station[row["station"]].append(row)
    station_list = [
        _with_beats(
            _station_night(c, windows[c], by_station[c], stations.get(c), uploads.get(c, {})),
            beats[c],
        )
        for c in sorted(windows)
        if c in stations or by_station[c]
    ]

    objects: dict[int, dict] = {}
    for row in rows:
        if row["status"] != "correlated" or row["norad_id"] is None:
            continue
        o = objects.setdefault(
            row["norad_id"],
            {
                "norad_id": row["norad_id"],
                "name": row["name"],
                "intl_designator": row["intl_designator"],
                "orbit_class": row["orbit_class"],
                "tracklets": 0,
                "stations": set(),
                "rms": [],
                "new": row["norad_id"] not in seen_before,
            },
        )
        o["tracklets"] += 1
        o["stations"].add(row["station"])
        if row["rms_arcsec"] is not None:
            o["rms"].append(row["rms_arcsec"])
    object_list = [
        {
            **{k: v for k, v in o.items() if k not in ("stations", "rms")},
            "stations": sorted(o["stations"]),
            "median_rms_arcsec": r1(statistics.median(o["rms"])) if o["rms"] else None,
        }
        for o in sorted(objects.values(), key=lambda o: (-o["tracklets"], o["norad_id"]))
    ]

    residuals = {}
    for klass in sorted({r["orbit_class"] for r in rows if r["status"] == "correlated"}):
        sel = [r for r in rows if r["status"] == "correlated" and r["orbit_class"] == klass]
        residuals[klass] = {
            "cross_track_arcsec": _spread([r["cross_track_arcsec"] for r in sel]),
            "time_offset_s": _spread([r["time_offset_s"] for r in sel]),
            "elset_age_d": _spread([r["elset_age_d"] for r in sel]),
        }

    uct = []
    for row in rows:
        if row["status"] != "uncorrelated":
            continue
        near = _nearest(row["candidates"])
        if near is not None:
            nname, ndesig, nclass = names(row["snapshot_id"], near["norad_id"])
            near = {
                "norad_id": near["norad_id"],
                "name": nname,
                "orbit_class": nclass,
                "rms_arcsec": r1(near.get("rms_arcsec")),
                "time_offset_s": r1(near.get("time_offset_s")),
                "along_track_km": r1(near.get("along_track_km")),
                "cross_track_km": r1(near.get("cross_track_km")),
            }
        uct.append(
            {
                "tracklet_id": row["tracklet_id"],
                "station": row["station"],
                "t_mid": row["t_mid"],
                "n_obs": row["n_obs"],
                "ra_deg": row["ra_deg"],
                "dec_deg": row["dec_deg"],
                "reason": row["reason"],
                "nearest": near,
            }
        )

    flagged = flags(rows, uct)
    totals = Counter(r["status"] for r in rows)
    used = sorted({r["snapshot_id"] for r in rows if r["snapshot_id"] is not None})
    return {
        "night": night,
        "totals": {
            "tracklets": len(rows),
            **{s: totals.get(s, 0) for s in STATUSES},
            "objects_identified": len(object_list),
            "objects_new": sum(1 for o in object_list if o["new"]),
            "stations_reporting": sum(1 for s in station_list if s["tracklets"]),
        },
        "stations": station_list,
        "objects": object_list,
        "residuals": residuals,
        "uncorrelated": uct,
        "flags": flagged,
        "plan": plan,
        "trends": trend,
        "snapshots": [
            {
                "id": k,
                "source_name": snaps[k].source_name,
                "n_objects": snaps[k].n_objects,
                "epoch_median": _iso(snaps[k].epoch_median),
            }
            for k in used
        ],
        "tracklets": rows,
    }
