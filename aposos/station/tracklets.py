"""Linking detections across frames into tracks with one straight-line motion.

Which endpoint of a streak is the start is unknown within one frame; :func:`link`
joins detections across frames where a straight-line motion fits them all, and takes
each streak's sign from the motion across frames. Assembling tracks into
:class:`~aposos.model.Tracklet` objects is :mod:`aposos.station.linking`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aposos.station.detection import Detection

__all__ = ["Detection", "LinkedTrack", "link"]


@dataclass
class LinkedTrack:
    """Detections of one object across frames, with the sign of each streak resolved.

    ``forward[i]`` is True when endpoint ``a`` of detection ``i`` is the shutter-open
    end (for points it is meaningless).
    """

    members: list[Detection]
    forward: list[bool]
    rate_deg_s: float
    rms_arcsec: float


def _tangent(ra, dec, ra0, dec0):
    """Small-field tangent-plane coordinates in degrees (gnomonic)."""
    ra, dec = np.radians(ra), np.radians(dec)
    r0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = math.sin(d0) * np.sin(dec) + math.cos(d0) * np.cos(dec) * np.cos(ra - r0)
    xi = np.cos(dec) * np.sin(ra - r0) / cosc
    eta = (math.cos(d0) * np.sin(dec) - math.sin(d0) * np.cos(dec) * np.cos(ra - r0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def _seconds(t, t0):
    return (np.asarray(t, "datetime64[us]") - t0) / np.timedelta64(1, "us") * 1e-6


def link(
    detections: list[Detection],
    *,
    max_gap_s: float = 120.0,
    max_rate_deg_s: float = 3.0,
    gate_arcsec: float = 20.0,
    min_points: int = 3,
) -> list[LinkedTrack]:
    """Join detections from different frames that one straight-line motion explains.

    Parameters
    ----------
    detections : solved detections (``radec_mid``, ``t_open``/``t_close`` set, and
        ``radec_a``/``radec_b`` where the frame shows motion), any order, frames of one
        field (a few degrees at most).
    max_gap_s : largest time between consecutive members.
    gate_arcsec : how far a member may sit from the fitted motion.
    min_points : fewest frames for a track (two are enough when both are streaks, whose
        lengths and directions must agree); one well-measured streak with both ends in
        the frame stands alone.
    """
    dets = [d for d in detections if d.radec_mid is not None]
    if not dets:
        return []
    ref = dets[0].radec_mid
    t0 = min(d.t_open for d in dets)
    times = np.array([_seconds(d.t_mid, t0) for d in dets])
    ra = np.array([d.radec_mid[0] for d in dets])
    dec = np.array([d.radec_mid[1] for d in dets])
    xi, eta = _tangent(ra, dec, *ref)
    pos = np.stack([xi, eta], 1)
    vel = np.zeros((len(dets), 2))
    for i, d in enumerate(dets):
        if d.radec_a is not None and d.radec_b is not None and d.exptime_s > 0:
            ta = np.array(_tangent(d.radec_a[0], d.radec_a[1], *ref))
            tb = np.array(_tangent(d.radec_b[0], d.radec_b[1], *ref))
            vel[i] = (tb - ta) / d.exptime_s
    vsig = np.array([d.velocity_sigma for d in dets])
    frames = np.array([d.frame for d in dets])
    order = np.argsort(times, kind="stable")
    used = np.zeros(len(dets), bool)
    gate = gate_arcsec / 3600.0
    seeds = []
    for a_i, a in enumerate(order):
        for b in order[a_i + 1 :]:
            dt = times[b] - times[a]
            if frames[b] == frames[a] or dt <= 0:
                continue
            if dt > max_gap_s:
                break
            v = (pos[b] - pos[a]) / dt
            rate = float(np.hypot(*v))
            if rate > max_rate_deg_s:
                continue
            err = _velocity_mismatch(v, vel[a], vsig[a]) + _velocity_mismatch(v, vel[b], vsig[b])
            if err < 6.0:
                seeds.append((err, dt, a, b))
    # nearest frames first: the motion between consecutive frames is the least ambiguous
    seeds.sort(key=lambda s: (round(s[1], 1), s[0]))
    tracks: list[LinkedTrack] = []
    for _, _, a, b in seeds:
        if used[a] or used[b]:
            continue
        members = _grow(a, b, times, pos, vel, vsig, frames, used, gate, max_gap_s)
        n_streak = sum(dets[m].kind == "streak" and dets[m].radec_a is not None for m in members)
        if len(members) < min_points and n_streak < 2:
            continue
        track = _make_track([dets[m] for m in members], times[members], pos[members], vel[members])
        if track is None:
            continue
        used[members] = True
        tracks.append(track)
    # lone streaks: both ends inside the frame, clearly measured
    for i, d in enumerate(dets):
        if used[i] or d.kind != "streak" or d.radec_a is None or d.clipped_a or d.clipped_b:
            continue
        length = np.hypot(d.xb - d.xa, d.yb - d.ya)
        if d.snr >= 10.0 and length > max(15.0, 10.0 * d.width_px):
            tracks.append(LinkedTrack([d], [True], float(np.hypot(*vel[i])), 0.0))
            used[i] = True
    return tracks


def _velocity_mismatch(v, vd, vsig):
    """Normalised distance of v from +vd or -vd (whichever is nearer)."""
    tol = vsig + 0.05 * float(np.hypot(*vd)) + 2e-5
    return float(min(np.hypot(*(v - vd)), np.hypot(*(v + vd)))) / tol


def _grow(a, b, times, pos, vel, vsig, frames, used, gate, max_gap):
    members = [a, b]
    changed = True
    while changed:
        changed = False
        t = times[members]
        p = pos[members]
        coef = _fit_motion(t, p)
        tmin, tmax = t.min(), t.max()
        best = {}
        for k in range(times.size):
            if used[k] or k in members or frames[k] in frames[members]:
                continue
            if times[k] < tmin - max_gap or times[k] > tmax + max_gap:
                continue
            pred = coef[0] + coef[1] * times[k] + (coef[2] * times[k] ** 2 if len(coef) > 2 else 0)
            dist = float(np.hypot(*(pos[k] - pred)))
            span = max(abs(times[k] - tmin), abs(times[k] - tmax))
            g = gate * min(1.0 + 0.5 * span / max(tmax - tmin, 1.0), 3.0)
            if dist < g and _velocity_mismatch(coef[1], vel[k], vsig[k]) < 6.0:
                f = frames[k]
                if f not in best or dist < best[f][0]:
                    best[f] = (dist, k)
        if best:
            # add the closest in time first, then refit
            k = min(best.values(), key=lambda dk: min(abs(times[dk[1]] - times[members])))[1]
            members.append(k)
            changed = True
    return sorted(members, key=lambda m: times[m])


def _fit_motion(t, p):
    """Least-squares motion p(t) = c0 + c1 t (+ c2 t^2 with five or more points)."""
    deg = 2 if t.size >= 5 and (t.max() - t.min()) > 0 else 1
    if t.size < 2:
        return [p[0], np.zeros(2)]
    a = np.vander(t, deg + 1, increasing=True)
    sol, *_ = np.linalg.lstsq(a, p, rcond=None)
    return list(sol)


def _make_track(members: list[Detection], t, p, vel):
    coef = _fit_motion(t, p)
    pred = sum(c * t[:, None] ** i for i, c in enumerate(coef))
    rms = float(np.sqrt(np.mean(np.sum((p - pred) ** 2, axis=1)))) * 3600.0
    forward = []
    for ti, vd in zip(t, vel, strict=True):
        v = coef[1] + (2 * coef[2] * ti if len(coef) > 2 else 0.0)
        # a -> b is the in-frame motion; forward when it agrees with the motion across frames
        forward.append(float(np.dot(v, vd)) >= 0.0)
    return LinkedTrack(members, forward, float(np.hypot(*coef[1])), rms)
