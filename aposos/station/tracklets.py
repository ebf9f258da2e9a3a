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

__all__ = ["Detection", "LinkedTrack", "Motion", "eastward", "link"]

SEED_FRAMES = 2  # a track's first two members are at most this many frames apart
LOCAL = 8  # members a motion is fitted to when predicting (see _local_motion)
SEED_MAG = 2.5  # largest brightness difference (mag) of a seed's two members
LONE_SNR = 10.0  # S/N a streak needs to stand alone
LONE_WIDTH = 1.5  # widest a lone streak may be across, in units of the frame's PSF
LONE_UNEVEN = 3.0  # how uneven along its length (sigma) a lone streak may be


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
    direction: str = "motion"  # from the motion across frames | "prior" | "unknown"


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
        lengths and directions must agree); one well-measured streak with an end in
        the frame stands alone (S/N 10, longer than 15 px and ten widths, and as
        sharp across as the PSF: real streaks fit 0.9-1.3 PSF widths, a row of faint
        stars wider).
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
    snr = np.array([max(d.snr, 1e-3) for d in dets])
    held = _held_points(dets)
    order = np.argsort(times, kind="stable")
    used = np.zeros(len(dets), bool)
    gate = gate_arcsec / 3600.0
    # seeds: pairs in frames at most SEED_FRAMES apart (a real object shows in most
    # frames), moving at most max_rate, and agreeing with both in-frame velocities
    frame_times = np.unique(times[order])
    rank = np.searchsorted(frame_times, times)
    seeds = []
    for a in order:
        b = order[(rank[order] > rank[a]) & (rank[order] <= rank[a] + SEED_FRAMES)]
        b = b[(frames[b] != frames[a]) & (times[b] - times[a] <= max_gap_s)]
        if b.size == 0:
            continue
        dt = times[b] - times[a]
        v = (pos[b] - pos[a]) / dt[:, None]
        ok = np.hypot(*v.T) <= max_rate_deg_s
        # one object in consecutive frames: brightness alike (a seed of a bright
        # object and a noise peak grows into a wrong track)
        ok &= np.abs(np.log10(snr[b] / snr[a])) < 0.4 * SEED_MAG
        ok &= _on_held_pixels(held, a, b, dt)
        b, dt, v = b[ok], dt[ok], v[ok]
        err = _mismatch(v, vel[a][None, :], vsig[a]) + _mismatch(v, vel[b], vsig[b])
        for i in np.nonzero(err < 6.0)[0]:
            seeds.append((float(err[i]), float(dt[i]), int(a), int(b[i])))
    # nearest frames first: the motion between consecutive frames is the least ambiguous
    seeds.sort(key=lambda s: (round(s[1], 1), s[0]))
    tracks: list[LinkedTrack] = []
    for _, _, a, b in seeds:
        if used[a] or used[b]:
            continue
        members = _grow(a, b, times, pos, vel, vsig, frames, used, gate, max_gap_s, snr, held)
        n_streak = sum(dets[m].kind == "streak" and dets[m].radec_a is not None for m in members)
        if len(members) < min_points and n_streak < 2:
            continue
        if not _steady_on_pixels(held[members], times[members]):
            continue
        track = _make_track([dets[m] for m in members], times[members], pos[members], vel[members])
        if track is None:
            continue
        used[members] = True
        tracks.append(track)
    # lone streaks, clearly measured, with at least one end inside the frame
    for i, d in enumerate(dets):
        if used[i] or d.kind != "streak" or d.radec_a is None or (d.clipped_a and d.clipped_b):
            continue
        length = np.hypot(d.xb - d.xa, d.yb - d.ya)
        if not (d.snr >= LONE_SNR and length > max(15.0, 10.0 * d.width_px)):
            continue
        if d.width_px > LONE_WIDTH * d.psf_sigma_px:
            continue  # wider than the PSF across: faint stars in a row, not one object
        if d.uneven_sigma > LONE_UNEVEN:
            continue  # bright at its ends only: two faint stars in one footprint
        forward = eastward(vel[i])
        if forward is None and (d.clipped_a or d.clipped_b):
            continue  # which moment the visible end marks is unknown
        direction = "unknown" if forward is None else "prior"
        tracks.append(
            LinkedTrack([d], [forward is not False], float(np.hypot(*vel[i])), 0.0, direction)
        )
        used[i] = True
    return tracks


def _held_points(dets) -> np.ndarray:
    """Per detection: (x, y, drift bound px/s, x', y', ex, ey) of a point in a frame of
    trailed stars, NaN otherwise. Such a point moved with the mount: no more than its
    ``drift_px`` (about its PSF width) in the exposure, so on the detector it drifts at
    most that fast from frame to frame (whatever the mount's own changes of rate, which
    the sky positions must model). ``x', y'`` are its offset on the sky from the
    commanded pointing, in pixels (NaN when unknown): a mount that re-points between
    frames moves the point on the detector by its new pointing error (``ex, ey``, the
    frame's solved centre from the commanded pointing), but not there."""
    out = np.full((len(dets), 7), np.nan)
    for i, d in enumerate(dets):
        if d.kind == "point" and d.radec_a is not None and d.exptime_s > 0:
            out[i, :3] = d.x, d.y, d.drift_px / d.exptime_s
            if d.mount_xy is not None and d.pointing_error_xy is not None:
                out[i, 3:5] = d.mount_xy
                out[i, 5:] = d.pointing_error_xy
    return out


def _on_held_pixels(held, a, b, dt) -> np.ndarray:
    """Whether held points ``a`` and ``b`` (indices) ``dt`` seconds apart are near
    enough on the detector, or, when the frames' pointing errors differ (the mount
    re-pointed), relative to the commanded pointing (True where either is not a held
    point)."""
    ha, hb = held[a], held[b]
    bound = np.fmax(ha[..., 2], hb[..., 2]) * np.abs(dt) + 3.0
    dist = np.hypot(ha[..., 0] - hb[..., 0], ha[..., 1] - hb[..., 1])
    moved = np.hypot(ha[..., 3] - hb[..., 3], ha[..., 4] - hb[..., 4])
    repointed = np.hypot(ha[..., 5] - hb[..., 5], ha[..., 6] - hb[..., 6]) > 3.0
    # NaN (not held, or no pointing) compares False: kept, or not re-pointed
    return ~(dist > bound) | (repointed & (moved <= bound))


def _steady_on_pixels(held, t, tol_px: float = 2.0) -> bool:
    """Whether the held points of a track drift steadily across the detector (as they
    are, or relative to the commanded pointing): a straight line at a steady rate (with
    a slow change of rate from five on) to ``tol_px`` rms, or two of them within their
    drift bound. Noise points that chance to lie near each other do not."""
    ok = np.isfinite(held[:, 0])
    if ok.sum() == 2:
        i, j = np.nonzero(ok)[0]
        return bool(_on_held_pixels(held, i, j, t[j] - t[i]))
    if ok.sum() < 3:
        return True
    tt = t[ok] - t[ok].mean()
    deg = 1 if ok.sum() < 5 else 2
    frames = [held[ok, :2]]
    err = held[ok, 5:]
    if np.isfinite(err).all() and np.hypot(*(err - err[0]).T).max() > 3.0:
        frames.append(held[ok, 3:5])  # the mount re-pointed within the track
    for xy in frames:
        if not np.isfinite(xy).all():
            continue
        resid = [xy[:, k] - np.polyval(np.polyfit(tt, xy[:, k], deg), tt) for k in (0, 1)]
        if np.sqrt(np.mean(resid[0] ** 2 + resid[1] ** 2)) <= tol_px:
            return True
    return False


def eastward(v, *, max_angle_deg: float = 60.0) -> bool | None:
    """Whether in-frame motion ``v`` (tangent plane: +x east, a -> b) runs from a to b
    under the prior that satellites move eastward against the stars; None when the
    motion is within ``90 - max_angle_deg`` of north-south and the prior cannot tell.

    A GEO satellite in sidereal tracking always moves east against the stars (the
    Earth's rotation), and so do most prograde LEOs; one frame alone cannot tell.
    """
    speed = float(np.hypot(*v))
    if speed <= 0 or abs(v[0]) < math.cos(math.radians(max_angle_deg)) * speed:
        return None
    return bool(v[0] > 0)


def _mismatch(v, vd, vsig):
    """:func:`_velocity_mismatch` over rows."""
    tol = vsig + 0.05 * np.hypot(*vd.T) + 2e-5
    d = np.minimum(np.hypot(*(v - vd).T), np.hypot(*(v + vd).T))
    return d / tol


def _velocity_mismatch(v, vd, vsig):
    """Normalised distance of v from +vd or -vd (whichever is nearer)."""
    tol = vsig + 0.05 * float(np.hypot(*vd)) + 2e-5
    return float(min(np.hypot(*(v - vd)), np.hypot(*(v + vd)))) / tol


def _grow(a, b, times, pos, vel, vsig, frames, used, gate, max_gap, snr, held):
    members = [a, b]
    while True:
        members.sort(key=lambda m: times[m])
        t = times[members]
        tmin, tmax = t.min(), t.max()
        cand = ~used & ~np.isin(frames, frames[members])
        cand &= (times >= tmin - max_gap) & (times <= tmax + max_gap)
        # about as bright as the members (a noise peak near the path is not the object)
        cand &= np.abs(np.log10(snr / np.median(snr[members]))) < 0.4 * SEED_MAG
        k = np.nonzero(cand)[0]
        if k.size == 0:
            break
        tk = times[k]
        mh = np.array([m for m in members if np.isfinite(held[m, 0])], np.int64)
        if mh.size:  # against the held member nearest in time (not a streak between)
            nearest = mh[np.argmin(np.abs(tk[:, None] - times[mh][None, :]), axis=1)]
            k, tk = k[(ok := _on_held_pixels(held, nearest, k, tk - times[nearest]))], tk[ok]
        if k.size == 0:
            break
        pred, v, rate, (w0, w1) = _local_motion(t, pos[members], tk)
        dist = np.hypot(*(pos[k] - pred).T)
        span = np.maximum(np.abs(tk - w0), np.abs(tk - w1))
        g = gate * np.minimum(1.0 + 0.5 * span / np.maximum(w1 - w0, 1.0), 3.0)
        # beyond the members, an unmodelled change of rate grows with the time squared
        # (two members fit no change of rate: a LEO's changes by up to 1.5 % a second)
        out = np.maximum(np.maximum(w0 - tk, tk - w1), 0.0)
        accel = 0.015 if len(members) == 2 else 0.004
        g = g + 0.5 * accel * rate * out * (out + (w1 - w0))
        near = dist < g
        if not near.any():
            break
        k, tk, dist, v = k[near], tk[near], dist[near], v[near]
        ok = np.array([_velocity_mismatch(v[i], vel[j], vsig[j]) < 6.0 for i, j in enumerate(k)])
        if not ok.any():
            break
        k, tk, dist = k[ok], tk[ok], dist[ok]
        # the best candidate of each frame; of those, the closest in time first, refit
        order = np.lexsort((dist, frames[k]))
        k, tk = k[order], tk[order]
        first = np.r_[True, frames[k][1:] != frames[k][:-1]]
        k, tk = k[first], tk[first]
        gap = np.min(np.abs(tk[:, None] - t[None, :]), axis=1)
        members.append(int(k[np.argmin(gap)]))
    return sorted(members, key=lambda m: times[m])


class Motion:
    """A great circle travelled at a steadily changing rate, in tangent-plane degrees.

    Gnomonic coordinates map great circles to straight lines, but not at a uniform
    rate: the angle along the circle, not the tangent-plane position, is what grows
    linearly (quadratically with four points or more) with time. Over the tens of
    degrees a LEO crosses in a minute this matters (a tangent-plane polynomial leaves
    arcseconds to arcminutes of misfit).
    """

    def __init__(self, pole, e0, e1, coef, cross=None):
        self.pole, self.e0, self.e1, self.coef = pole, e0, e1, coef
        self.cross = np.zeros(1) if cross is None else cross

    @classmethod
    def fit(cls, t: np.ndarray, p: np.ndarray) -> Motion:
        u = _unit(p)
        if t.size < 2 or np.ptp(t) <= 0:  # no motion to fit: stay at the first point
            e0 = u[0]
            e1 = np.cross(e0, [1.0, 0.0, 0.0])
            e1 /= np.linalg.norm(e1)
            return cls(np.cross(e0, e1), e0, e1, np.array([0.0]))
        if t.size == 2:
            pole = np.cross(u[0], u[1])
        else:
            pole = np.linalg.svd(u, full_matrices=False)[2][-1]
        norm = np.linalg.norm(pole)
        if norm < 1e-15:  # no motion: any circle through the point
            pole = np.cross(u[0], np.array([0.0, 0.0, 1.0]))
            norm = np.linalg.norm(pole)
        pole = pole / norm
        e0 = u[0] - pole * float(u[0] @ pole)
        e0 /= np.linalg.norm(e0)
        e1 = np.cross(pole, e0)
        ang = np.unwrap(np.arctan2(u @ e1, u @ e0))
        if t.size == 2:  # exact: no fit needed
            rate = (ang[1] - ang[0]) / (t[1] - t[0])
            return cls(pole, e0, e1, np.array([ang[0] - rate * t[0], rate]))
        deg = 2 if t.size < 8 else 3  # three points: the rate and its change
        coef = np.polynomial.polynomial.polyfit(t, ang, deg)
        # topocentric parallax bends a LEO's path off the great circle: a slow drift
        # across it (a line with four points, a parabola with five, a cubic with eight)
        xt = np.arcsin(np.clip(u @ pole, -1.0, 1.0))
        xdeg = 0 if t.size < 4 else (1 if t.size < 5 else (2 if t.size < 8 else 3))
        cross = np.polynomial.polynomial.polyfit(t, xt, xdeg) if xdeg else np.zeros(1)
        return cls(pole, e0, e1, coef, cross)

    def _vector(self, t):
        t = np.asarray(t, float)
        a = np.polynomial.polynomial.polyval(t, self.coef)
        c = np.polynomial.polynomial.polyval(t, self.cross)
        along = np.cos(a)[..., None] * self.e0 + np.sin(a)[..., None] * self.e1
        return np.cos(c)[..., None] * along + np.sin(c)[..., None] * self.pole

    def position(self, t) -> np.ndarray:
        """Tangent-plane position(s) in degrees at time(s) ``t``."""
        v = self._vector(t)
        return np.degrees(v[..., :2] / v[..., 2:3])

    def velocity(self, t, dt: float = 0.05) -> np.ndarray:
        """Tangent-plane velocity in degrees per second at time ``t``."""
        return (self.position(t + dt) - self.position(t - dt)) / (2 * dt)

    def rate_deg_s(self, t) -> float:
        d = np.polynomial.polynomial.polyder(self.coef)
        return float(abs(np.degrees(np.polynomial.polynomial.polyval(t, d)))) if d.size else 0.0

    def cross_track_deg(self, p: np.ndarray) -> np.ndarray:
        return np.degrees(np.arcsin(np.clip(_unit(p) @ self.pole, -1, 1)))


def _unit(p: np.ndarray) -> np.ndarray:
    """Tangent-plane degrees -> unit vectors (the tangent point on +z)."""
    xy = np.radians(np.atleast_2d(p))
    v = np.column_stack([xy, np.ones(len(xy))])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _windows(t: np.ndarray, tk: np.ndarray) -> np.ndarray:
    """First index of the window of ``LOCAL`` members (times ``t``, sorted) nearest
    in time to each of ``tk``."""
    n = t.size
    if n <= LOCAL:
        return np.zeros(tk.size, np.int64)
    j = np.searchsorted(t, tk)
    return np.clip(j - LOCAL // 2, 0, n - LOCAL)


def _local_motion(t, p, tk):
    """Positions, velocities and the rate (deg/s) predicted at times ``tk`` from the
    members (sorted times ``t``, positions ``p``) nearest in time, and the time span
    of the window used for the latest-predicted ones: a LEO's path over a minute of
    rate tracking bends more than one motion fits, a few consecutive members do not."""
    start = _windows(t, tk)
    pred = np.empty((tk.size, 2))
    vel = np.empty((tk.size, 2))
    w0 = np.empty(tk.size)
    w1 = np.empty(tk.size)
    rate = 0.0
    for s0 in np.unique(start):
        sel = start == s0
        tw, pw = t[s0 : s0 + LOCAL], p[s0 : s0 + LOCAL]
        motion = Motion.fit(tw, pw)
        pred[sel] = motion.position(tk[sel])
        vel[sel] = motion.velocity(tk[sel])
        w0[sel], w1[sel] = tw.min(), tw.max()
        rate = max(rate, motion.rate_deg_s(float(np.mean(tw))))
    return pred, vel, rate, (w0, w1)


def _make_track(members: list[Detection], t, p, vel):
    motion = Motion.fit(t, p)
    if t.size <= LOCAL:
        resid = p - motion.position(t)
    else:  # each member against the motion of its neighbours in time
        resid = np.array([p[i] - _local_fit(t, p, i) for i in range(t.size)])
    rms = float(np.sqrt(np.mean(np.sum(resid**2, axis=1)))) * 3600.0
    forward = []
    for ti, vd in zip(t, vel, strict=True):
        # a -> b is the in-frame motion; forward when it agrees with the motion across frames
        s0 = int(_windows(t, np.array([ti]))[0])
        local = motion if t.size <= LOCAL else Motion.fit(t[s0 : s0 + LOCAL], p[s0 : s0 + LOCAL])
        forward.append(float(np.dot(local.velocity(ti), vd)) >= 0.0)
    rate = motion.rate_deg_s(float(np.mean(t)))
    return LinkedTrack(members, forward, rate, rms)


def _local_fit(t, p, i):
    """Where the window of ``LOCAL`` members around member ``i`` (itself included,
    as a global fit includes every member) puts it."""
    s0 = int(np.clip(i - LOCAL // 2, 0, t.size - LOCAL))
    motion = Motion.fit(t[s0 : s0 + LOCAL], p[s0 : s0 + LOCAL])
    return motion.position(t[i : i + 1])[0]
