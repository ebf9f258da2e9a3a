"""Satellite measurements in a frame, their times, and linking across frames.

A streak is fitted with a model of a line segment convolved with the PSF (midpoint,
length, angle, flux, width, background), which puts the endpoints where the object
was when the shutter opened and closed, even though the light fades out over a PSF
width there. A point is fitted with a circular Gaussian. Endpoints within a PSF
width of the frame edge are marked clipped: their position is not the position at
an exposure boundary, so they are never reported.

Which endpoint is the start is unknown within one frame. Every detection carries an
in-frame sky velocity known up to its sign (a streak: along its length; a point in
a frame with trailed stars: against the star trails; a point among round stars:
about zero); :func:`link` joins detections across frames where a straight-line
motion fits them all, and takes each sign from the motion across frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

__all__ = ["Detection", "LinkedTrack", "fit_point", "fit_streak", "link"]

SQRT2 = math.sqrt(2.0)


@dataclass
class Detection:
    """One satellite candidate in one frame (pixels 0-based; times UTC)."""

    frame: int
    kind: str  # "streak" | "point"
    x: float  # midpoint
    y: float
    sigma_px: float  # 1-sigma position error of the midpoint (per axis)
    flux: float
    snr: float
    width_px: float
    # streak endpoints (a, b unordered), their errors and clipping
    xa: float = float("nan")
    ya: float = float("nan")
    xb: float = float("nan")
    yb: float = float("nan")
    sigma_end_px: float = float("nan")
    clipped_a: bool = False
    clipped_b: bool = False
    # filled by the reduction once the frame is solved
    t_open: np.datetime64 | None = None
    t_close: np.datetime64 | None = None
    radec_mid: tuple[float, float] | None = None
    # streak ends; for a point in a frame of trailed stars, where it was against the
    # stars at the ends of the exposure (in some order)
    radec_a: tuple[float, float] | None = None
    radec_b: tuple[float, float] | None = None
    velocity_sigma: float = 0.0  # error of the in-frame velocity, deg/s
    mag: float = float("nan")
    sigma_arcsec: float = float("nan")
    sigma_end_arcsec: float = float("nan")
    notes: list[str] = field(default_factory=list)

    @property
    def t_mid(self) -> np.datetime64:
        return self.t_open + (self.t_close - self.t_open) / 2

    @property
    def exptime_s(self) -> float:
        return float((self.t_close - self.t_open) / np.timedelta64(1, "us")) * 1e-6


# ------------------------------------------------------------------ fitting


def _segment_model(p, x, y):
    xc, yc, length, theta, flux, sigma, bkg = p
    c, s = math.cos(theta), math.sin(theta)
    dx, dy = x - xc, y - yc
    along = dx * c + dy * s
    perp = -dx * s + dy * c
    length = max(abs(length), 1e-3)
    sigma = math.sqrt(min(max(abs(sigma), 0.2), 1e3) ** 2 + 1.0 / 12.0)  # + the pixel's box
    prof = np.exp(-0.5 * (perp / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    ends = 0.5 * (
        erf((along + length / 2) / (SQRT2 * sigma)) - erf((along - length / 2) / (SQRT2 * sigma))
    )
    return flux / length * prof * ends + bkg


def _segment_jac(p, x, y):
    """Analytic Jacobian of :func:`_segment_model` (columns as the parameters)."""
    xc, yc, length, theta, flux, sigma, _ = p
    c, s = math.cos(theta), math.sin(theta)
    dx, dy = x - xc, y - yc
    a = dx * c + dy * s
    perp = -dx * s + dy * c
    length = max(abs(length), 1e-3)
    sig0 = min(max(abs(sigma), 0.2), 1e3)
    sigma = math.sqrt(sig0**2 + 1.0 / 12.0)
    dsig = sig0 / sigma  # d sigma_eff / d sigma
    norm = 1.0 / (math.sqrt(2 * math.pi) * sigma)
    prof = np.exp(-0.5 * (perp / sigma) ** 2) * norm
    up, lo = a + length / 2, a - length / 2
    ends = 0.5 * (erf(up / (SQRT2 * sigma)) - erf(lo / (SQRT2 * sigma)))
    gp = np.exp(-0.5 * (up / sigma) ** 2) * norm
    gm = np.exp(-0.5 * (lo / sigma) ** 2) * norm
    amp = flux / length
    dprof_dperp = -perp / sigma**2 * prof
    dends_da = gp - gm
    jac = np.empty((x.size, 7))
    jac[:, 0] = amp * (dprof_dperp * s * ends - prof * dends_da * c)
    jac[:, 1] = amp * (-dprof_dperp * c * ends - prof * dends_da * s)
    jac[:, 2] = -flux / length**2 * prof * ends + amp * prof * 0.5 * (gp + gm)
    jac[:, 3] = amp * (-dprof_dperp * a * ends + prof * dends_da * perp)
    jac[:, 4] = prof * ends / length
    dprof_ds = prof * (perp**2 / sigma**3 - 1.0 / sigma)
    dends_ds = -(up * gp - lo * gm) / sigma
    jac[:, 5] = amp * (dprof_ds * ends + prof * dends_ds) * dsig
    jac[:, 6] = 1.0
    return jac


def _gauss_jac(p, x, y):
    xc, yc, flux, sigma, _ = p
    sigma = min(max(abs(sigma), 0.2), 1e3)
    dx, dy = x - xc, y - yc
    r2 = dx * dx + dy * dy
    g = np.exp(-0.5 * r2 / sigma**2) / (2 * math.pi * sigma**2)
    jac = np.empty((x.size, 5))
    jac[:, 0] = flux * g * dx / sigma**2
    jac[:, 1] = flux * g * dy / sigma**2
    jac[:, 2] = g
    jac[:, 3] = flux * g * (r2 / sigma**3 - 2.0 / sigma)
    jac[:, 4] = 1.0
    return jac


def _cutout(sub, x0, x1, y0, y1, labels, own_label, saturated=None):
    ny, nx = sub.shape
    x0, x1 = max(int(x0), 0), min(int(x1) + 1, nx)
    y0, y1 = max(int(y0), 0), min(int(y1) + 1, ny)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    data = sub[y0:y1, x0:x1].astype(np.float64)
    lab = labels[y0:y1, x0:x1]
    use = (lab == 0) | (lab == own_label)
    if saturated is not None:
        use &= ~saturated[y0:y1, x0:x1]  # the model fits the unsaturated wings
    return xx[use].astype(float), yy[use].astype(float), data[use], (x0, x1, y0, y1)


def fit_streak(sub, labels, label, centre, theta0, length0, psf_sigma, noise, saturated=None):
    """Fit a PSF-convolved segment; returns a dict or None when the fit fails.

    Only pixels in a band around the first-guess axis (``centre``, ``theta0``,
    ``length0`` from the footprint) are used; pixels of other segments (stars) are left
    out, and pixels that the model leaves above 5 sigma (a star merged into the
    streak) are dropped and the fit repeated.
    """
    xc0, yc0 = centre
    c0, s0 = math.cos(theta0), math.sin(theta0)
    half_w = 3.0 * psf_sigma + 3.0
    half_l = 0.5 * length0 + 3.0 * psf_sigma + 5.0
    ext_x = abs(c0) * half_l + abs(s0) * half_w
    ext_y = abs(s0) * half_l + abs(c0) * half_w
    x, y, d, _ = _cutout(
        sub, xc0 - ext_x, xc0 + ext_x, yc0 - ext_y, yc0 + ext_y, labels, label, saturated
    )
    along = (x - xc0) * c0 + (y - yc0) * s0
    perp = -(x - xc0) * s0 + (y - yc0) * c0
    band = (np.abs(perp) < half_w) & (np.abs(along) < half_l)
    x, y, d = x[band], y[band], d[band]
    if d.size < 10:
        return None
    flux0 = float(np.clip(d, 0, None).sum())
    if flux0 <= 0:
        return None
    p0 = np.array([xc0, yc0, max(length0, 2.0), theta0, flux0, psf_sigma, 0.0])
    # thin the middle of long streaks: the ends carry the information
    inner = np.abs((x - xc0) * c0 + (y - yc0) * s0) < 0.5 * length0 - 3.0 * psf_sigma - 6.0
    n_inner, budget = int(inner.sum()), 2500
    if d.size > budget + 500 and n_inner > budget:
        take = np.random.default_rng(0).random(d.size) < budget / n_inner
        sel = ~inner | take
        x, y, d = x[sel], y[sel], d[sel]
    keep = np.ones(d.size, bool)
    fit = None
    fixed = np.ones(7)
    fixed[5] = 0.0  # first with the width held at the stars' PSF: stable ends
    for _ in range(3):
        xk, yk, dk = x[keep], y[keep], d[keep]
        fit = _levenberg_marquardt(
            lambda p, xk=xk, yk=yk, dk=dk: (_segment_model(p, xk, yk) - dk) / noise,
            lambda p, xk=xk, yk=yk: _segment_jac(p, xk, yk) * fixed / noise,
            p0,
        )
        if fit is None:
            return None
        model = _segment_model(fit.x, x, y)
        # a star merged into the streak stands far above it; a bright streak's own
        # small misfit does not
        bad = (d - model) > 5.0 * noise + 0.5 * np.abs(model - fit.x[6])
        if not bad.any():
            break
        new_keep = ~_dilate_points(x, y, bad, 2.5)
        if new_keep.sum() < 10 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        p0 = fit.x
    # then the width free, from there: it tells streaks from sharp cosmic-ray tracks
    xk, yk, dk = x[keep], y[keep], d[keep]
    free = _levenberg_marquardt(
        lambda p: (_segment_model(p, xk, yk) - dk) / noise,
        lambda p: _segment_jac(p, xk, yk) / noise,
        fit.x,
    )
    width = abs(free.x[5]) if free is not None else abs(fit.x[5])
    p = fit.x.copy()
    p[2], p[5] = abs(p[2]), abs(p[5])
    # errors of the fixed-width fit (parameters 0-3 keep their places)
    jac = np.delete(_segment_jac(fit.x, xk, yk) / noise, 5, axis=1)
    cov = _covariance(_Fit(fit.x, fit.fun, jac), int(keep.sum()))
    if cov is None:
        return None
    xc, yc, length, theta = p[:4]
    c, s = math.cos(theta), math.sin(theta)
    # endpoint error: midpoint error plus half the length error along, plus angle
    sig_mid = math.sqrt(max(0.5 * (cov[0, 0] + cov[1, 1]), 0.0))
    sig_len = math.sqrt(max(cov[2, 2], 0.0))
    sig_th = math.sqrt(max(cov[3, 3], 0.0))
    sig_end = math.sqrt(sig_mid**2 + 0.25 * sig_len**2 + (0.5 * length * sig_th) ** 2 / 2)
    return {
        "x": xc,
        "y": yc,
        "xa": xc - 0.5 * length * c,
        "ya": yc - 0.5 * length * s,
        "xb": xc + 0.5 * length * c,
        "yb": yc + 0.5 * length * s,
        "length": length,
        "theta": theta,
        "flux": p[4],
        "sigma": min(width, 10.0 * p[5]),
        "sigma_mid": sig_mid,
        "sigma_end": sig_end,
        "chi2": float(np.mean(fit.fun**2)),
    }


def _dilate_points(x, y, flag, radius):
    if not flag.any():
        return flag
    from scipy.spatial import cKDTree

    tree = cKDTree(np.stack([x[flag], y[flag]], 1))
    d, _ = tree.query(np.stack([x, y], 1), distance_upper_bound=radius)
    return np.isfinite(d)


@dataclass
class _Fit:
    x: np.ndarray
    fun: np.ndarray
    jac: np.ndarray


def _levenberg_marquardt(fun, jac, p0, max_iter: int = 60) -> _Fit | None:
    """Small Levenberg-Marquardt on the normal equations (few parameters, many pixels)."""
    with np.errstate(all="ignore"):  # wild trial steps are rejected by their cost
        try:
            return _lm_loop(fun, jac, p0, max_iter)
        except (OverflowError, ZeroDivisionError, FloatingPointError):
            return None


def _lm_loop(fun, jac, p0, max_iter):
    p = np.asarray(p0, float).copy()
    r = fun(p)
    if not np.all(np.isfinite(r)):
        return None
    cost = float(r @ r)
    lam = 1e-3
    j = jac(p)
    for _ in range(max_iter):
        a = j.T @ j
        g = j.T @ r
        diag = np.diag(a).copy()
        diag[diag <= 0] = 1.0
        improved = False
        while lam < 1e12:
            try:
                step = np.linalg.solve(a + lam * np.diag(diag), -g)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            pn = p + step
            rn = fun(pn)
            cn = float(rn @ rn)
            if np.isfinite(cn) and cn <= cost:
                improved = True
                done = cost - cn < 1e-10 * cost + 1e-12
                p, r, cost = pn, rn, cn
                lam = max(lam * 0.3, 1e-9)
                break
            lam *= 10.0
        if not improved:
            break
        j = jac(p)
        if done:
            break
    if not np.all(np.isfinite(p)):
        return None
    return _Fit(p, r, j)


def _covariance(fit, n):
    j = fit.jac
    dof = max(n - j.shape[1], 1)
    s2 = float(np.sum(fit.fun**2)) / dof
    try:
        return np.linalg.inv(j.T @ j) * max(s2, 1.0)
    except np.linalg.LinAlgError:
        return None


def _gauss_model(p, x, y):
    xc, yc, flux, sigma, bkg = p
    sigma = min(max(abs(sigma), 0.2), 1e3)
    r2 = (x - xc) ** 2 + (y - yc) ** 2
    return flux / (2 * math.pi * sigma**2) * np.exp(-0.5 * r2 / sigma**2) + bkg


def fit_point(sub, labels, label, x0, y0, psf_sigma, noise, saturated=None):
    """Fit a circular Gaussian at (x0, y0); returns a dict or None.

    Saturated pixels (``saturated`` mask) are left out: the wings place the centre.
    """
    r = 3.0 * psf_sigma + 3
    if saturated is not None and saturated[int(round(y0)), int(round(x0))]:
        r += 6.0
    x, y, d, _ = _cutout(sub, x0 - r, x0 + r, y0 - r, y0 + r, labels, label, saturated)
    if d.size < 9:
        return None
    flux0 = float(np.clip(d, 0, None).sum())
    fit = _levenberg_marquardt(
        lambda p: (_gauss_model(p, x, y) - d) / noise,
        lambda p: _gauss_jac(p, x, y) / noise,
        np.array([x0, y0, flux0, psf_sigma, 0.0]),
    )
    if fit is None:
        return None
    cov = _covariance(fit, d.size)
    if cov is None or abs(fit.x[0] - x0) > r or abs(fit.x[1] - y0) > r:
        return None
    return {
        "x": fit.x[0],
        "y": fit.x[1],
        "flux": fit.x[2],
        "sigma": abs(fit.x[3]),
        "sigma_mid": math.sqrt(max(0.5 * (cov[0, 0] + cov[1, 1]), 0.0)),
    }


# ------------------------------------------------------------------ linking


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
