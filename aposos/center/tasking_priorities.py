"""What deserves observing tonight, and how much: the planner's priorities.

Highest first (the ``priority`` of a task; higher wins):

- 400 follow-up of recent uncorrelated tracks (UCTs): a field on the track's
  extrapolation from its last measured position and motion, tracked at the
  measured rates (or staring, for GEO-like motion), while the extrapolation stays
  within a fraction of the field;
- 310 manoeuvre or decay suspects: objects whose recent correlations needed a large
  along-track time offset; 300 objects whose element set is stale;
- 200 + p analyst requests (``POST /api/v1/requests``; p is the request's 0-99);
- 100 catalogue upkeep and the GEO-belt survey: every object not yet observed
  tonight, GEO objects in stare fields that take in their neighbours;
- 50 empty GEO-belt cells, when nothing else is in reach.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
from sqlalchemy import and_, func, select

from aposos.center import schema as S
from aposos.center.tasking_schedule import FieldTarget, RowPriorities
from aposos.center.tasking_stations import StationPlanning
from aposos.model import datetime64_to_jd_fr

__all__ = [
    "PRIORITY_REQUEST",
    "PRIORITY_STALE",
    "PRIORITY_SUSPECT",
    "PRIORITY_UCT",
    "geo_belt_cells",
    "request_targets",
    "stale_rows",
    "suspect_rows",
    "uct_targets",
]

PRIORITY_UCT = 400
PRIORITY_SUSPECT = 310
PRIORITY_STALE = 300
PRIORITY_REQUEST = 200
STALE_DAYS = 3.0
SUSPECT_OFFSET_S = 2.0
UCT_RECENT_HOURS = 48.0
SIDEREAL_ARCSEC_S = 15.0410686
GEO_RADIUS_KM = 42164.0
GEO_LIKE_ARCSEC_S = 5.0  # motion relative to the Earth below this: stare
LEO_LIKE_ARCSEC_S = 200.0


def _dt64(value) -> np.datetime64:
    if isinstance(value, datetime):
        return np.datetime64(value.replace(tzinfo=None), "us")
    return np.datetime64(value, "us")


def stale_rows(rows: RowPriorities, catalogue, night_start, days: float = STALE_DAYS) -> int:
    """Raise the priority of objects whose element set is older than ``days``."""
    jd, fr = datetime64_to_jd_fr(np.array([_dt64(night_start)]))
    age = (jd[0] - catalogue.epoch_jd) + (fr[0] - catalogue.epoch_fr)
    n = 0
    for row in np.flatnonzero(age > days):
        rows.set(int(row), PRIORITY_STALE, f"stale element set ({age[row]:.1f} days old)")
        n += 1
    return n


def suspect_rows(store, rows: RowPriorities, catalogue, since, until=None,
                 offset_s: float = SUSPECT_OFFSET_S) -> int:  # fmt: skip
    """Objects whose correlations since ``since`` needed a time offset above ``offset_s``."""
    K, C = S.tracklets, S.correlations
    q = (
        select(C.c.norad_id, func.max(func.abs(C.c.time_offset_s)).label("worst"))
        .select_from(C.join(K, K.c.correlation_id == C.c.id))
        .where(
            C.c.status == "correlated", K.c.t_mid >= since, func.abs(C.c.time_offset_s) > offset_s
        )  # fmt: skip
        .group_by(C.c.norad_id)
    )
    if until is not None:
        q = q.where(K.c.t_mid < until)
    with store.read() as conn:
        found = conn.execute(q).all()
    n = 0
    for norad, worst in found:
        try:
            row = catalogue.index_of(int(norad))
        except KeyError:
            continue
        rows.set(row, PRIORITY_SUSPECT,
                 f"manoeuvre or decay suspect: along-track offset {worst:.1f} s")  # fmt: skip
        n += 1
    return n


def uct_targets(store, since, until, field_deg: float) -> list[FieldTarget]:
    """Follow-up fields of uncorrelated tracklets observed between ``since`` and ``until``."""
    K, C = S.tracklets, S.correlations
    q = (
        select(K.c.id, K.c.uuid, K.c.station, K.c.t_mid)
        .select_from(K.join(C, K.c.correlation_id == C.c.id))
        .where(C.c.status == "uncorrelated", K.c.t_mid >= since, K.c.t_mid < until)
        .order_by(K.c.t_mid.desc())
        .limit(200)
    )
    with store.read() as conn:
        heads = conn.execute(q).all()
    tracklets = store.load_tracklets([h.id for h in heads]) if heads else {}
    out = []
    for h in heads:
        t = tracklets.get(h.id)
        if t is None or len(t) < 2:
            continue
        target = follow_up(t, field_deg, key=f"uct:{h.uuid}")
        if target is not None:
            out.append(target)
    return out


def follow_up(tracklet, field_deg: float, *, key: str) -> FieldTarget | None:
    """The field that follows a tracklet's last position and motion."""
    span_s = float((tracklet.utc[-1] - tracklet.utc[0]) / np.timedelta64(1, "us")) / 1e6
    if span_s <= 0:
        return None
    dra = (tracklet.ra_deg[-1] - tracklet.ra_deg[0] + 180.0) % 360.0 - 180.0
    rate_ra = dra * 3600.0 / span_s
    rate_dec = (tracklet.dec_deg[-1] - tracklet.dec_deg[0]) * 3600.0 / span_s
    sigma = float(np.median(tracklet.sigma_arcsec))
    sigma_rate = math.sqrt(2.0) * sigma / span_s  # arcsec/s, from the two ends
    earth_rel = math.hypot((rate_ra - SIDEREAL_ARCSEC_S) * math.cos(math.radians(
        tracklet.dec_deg[-1])), rate_dec)  # fmt: skip
    sky_rate = math.hypot(rate_ra * math.cos(math.radians(tracklet.dec_deg[-1])), rate_dec)
    # the extrapolation is trusted while its error stays within 40 % of the field
    horizon_s = 0.4 * field_deg * 3600.0 / max(sigma_rate, 1e-3)
    if sky_rate > LEO_LIKE_ARCSEC_S:
        horizon_s = min(horizon_s, 600.0)  # curved tracks: minutes, not hours
    elif earth_rel > GEO_LIKE_ARCSEC_S:
        horizon_s = min(horizon_s, 2 * 3600.0)
    horizon_s = min(horizon_s, UCT_RECENT_HOURS * 3600.0)
    tracking = "stare" if earth_rel <= GEO_LIKE_ARCSEC_S else "rate"
    last = tracklet.utc[-1]
    return FieldTarget(
        key=key,
        priority=PRIORITY_UCT,
        reason=f"follow-up of uncorrelated track {key.split(':', 1)[1][:8]} "
        f"({tracklet.station}, {np.datetime_as_string(last, unit='m')}Z)",
        ra_deg=float(tracklet.ra_deg[-1]),
        dec_deg=float(tracklet.dec_deg[-1]),
        epoch=last,
        tracking=tracking,
        rate_ra_arcsec_s=rate_ra,
        rate_dec_arcsec_s=rate_dec,
        valid_from=last,
        valid_until=last + np.timedelta64(int(horizon_s * 1e6), "us"),
        name=None,
    )


def open_requests(store, start, end) -> list[dict]:
    """Open analyst requests whose window overlaps [start, end)."""
    R = S.task_requests
    with store.read() as conn:
        found = conn.execute(
            select(R).where(and_(R.c.state == "open", R.c.t_start < end, R.c.t_end > start))
            .order_by(R.c.id)
        ).all()  # fmt: skip
    return [r._asdict() for r in found]


def request_targets(requests: list[dict], rows: RowPriorities, catalogue) -> list[FieldTarget]:
    """Object requests raise row priorities; field requests become field targets."""
    fields = []
    for r in requests:
        priority = PRIORITY_REQUEST + int(r["priority"])
        note = f"analyst request {r['id']}" + (f": {r['reason']}" if r.get("reason") else "")
        start, end = _dt64(r["t_start"]), _dt64(r["t_end"])
        if r["kind"] == "object":
            try:
                row = catalogue.index_of(int(r["norad_id"]))
            except KeyError:
                continue
            rows.set(row, priority, note, start, end, bool(r["simultaneous"]), int(r["id"]))
        else:
            fields.append(FieldTarget(
                key=f"req:{r['id']}", priority=priority, reason=note,
                ra_deg=float(r["ra_deg"]), dec_deg=float(r["dec_deg"]), epoch=start,
                tracking="sidereal", valid_from=start, valid_until=end,
                simultaneous=bool(r["simultaneous"]), request_id=int(r["id"]),
            ))  # fmt: skip
    return fields


def geo_belt_cells(station: StationPlanning, epoch: np.datetime64) -> list[FieldTarget]:
    """GEO-belt survey cells in reach of a station: Earth-fixed points of the geostationary
    ring, one field apart, above the station's minimum elevation; each a stare field."""
    from aposos.orbit import frames

    site = station.site
    s_itrs = site.itrs_km()
    lat, lon = math.radians(site.latitude_deg), math.radians(site.longitude_deg)
    up = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    step = 0.9 * station.field_deg
    longitudes = site.longitude_deg + np.arange(-90.0, 90.0 + 1e-9, step)
    lam = np.radians(longitudes)
    p = GEO_RADIUS_KM * np.stack([np.cos(lam), np.sin(lam), np.zeros_like(lam)], 1)
    d = p - s_itrs
    d /= np.linalg.norm(d, axis=1)[:, None]
    el = np.degrees(np.arcsin(d @ up))
    keep = el >= station.min_elevation_deg
    jd, fr = datetime64_to_jd_fr(np.array([epoch]))
    m = frames.gcrs_to_itrs_matrices(jd, fr)[0]
    v = d[keep] @ m  # ITRS -> GCRS: m.T @ d
    ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))
    cells = []
    for lon_deg, a, b in zip(longitudes[keep], ra, dec):
        cells.append(FieldTarget(
            key=f"belt:{station.code}:{lon_deg % 360.0:.2f}", priority=50,
            reason=f"GEO-belt survey, longitude {lon_deg % 360.0:.1f} E", ra_deg=float(a),
            dec_deg=float(b), epoch=epoch, tracking="stare",
            rate_ra_arcsec_s=SIDEREAL_ARCSEC_S, rate_dec_arcsec_s=0.0,
        ))  # fmt: skip
    return cells
