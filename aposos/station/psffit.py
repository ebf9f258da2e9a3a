"""PSF models of satellite images and their least-squares fits.

A streak is fitted with a model of a line segment convolved with the PSF (midpoint,
length, angle, flux, width, background), which puts the endpoints where the object
was when the shutter opened and closed, even though the light fades out over a PSF
width there. A point is fitted with a circular Gaussian. The models come with their
analytic Jacobians; the fits use scipy's ``least_squares`` (MINPACK's
Levenberg-Marquardt) through :func:`fit_least_squares`, which can hold parameters
fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.special import erf

__all__ = [
    "Fit",
    "covariance",
    "cutout",
    "fit_least_squares",
    "fit_point",
    "fit_streak",
    "gauss_jac",
    "gauss_model",
    "segment_jac",
    "segment_model",
]

SQRT2 = math.sqrt(2.0)


@dataclass
class Fit:
    """A least-squares solution: parameters, scaled residuals, Jacobian of the free
    parameters at the solution."""

    x: np.ndarray
    fun: np.ndarray
    jac: np.ndarray


def fit_least_squares(fun, jac, p0, *, free=None, max_nfev: int = 200) -> Fit | None:
    """Minimise ``sum(fun(p)**2)`` from ``p0`` (Levenberg-Marquardt); None on failure.

    ``fun`` and ``jac`` take the full parameter vector; ``free`` (a boolean mask) says
    which parameters move, the others keep their ``p0`` values. The returned Jacobian
    has the free columns only.
    """
    p0 = np.asarray(p0, float)
    free = np.ones(p0.size, bool) if free is None else np.asarray(free, bool)

    def full(q):
        p = p0.copy()
        p[free] = q
        return p

    with np.errstate(all="ignore"):  # wild trial steps are rejected by their cost
        try:
            r0 = fun(p0)
            if not np.all(np.isfinite(r0)) or r0.size < int(free.sum()):
                return None
            res = least_squares(
                lambda q: fun(full(q)),
                p0[free],
                jac=lambda q: jac(full(q))[:, free],
                method="lm",
                max_nfev=max_nfev,
            )
        except (ValueError, np.linalg.LinAlgError, OverflowError, ZeroDivisionError):
            return None
    if not (np.all(np.isfinite(res.x)) and np.all(np.isfinite(res.fun))):
        return None
    return Fit(full(res.x), res.fun, res.jac)


def segment_model(p, x, y):
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


def segment_jac(p, x, y):
    """Analytic Jacobian of :func:`segment_model` (columns as the parameters)."""
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


def gauss_jac(p, x, y):
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


def cutout(sub, x0, x1, y0, y1, labels, own_label, saturated=None):
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
    x, y, d, _ = cutout(
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
    free = np.ones(7, bool)
    free[5] = False  # first with the width held at the stars' PSF: stable ends
    for _ in range(3):
        xk, yk, dk = x[keep], y[keep], d[keep]
        fit = fit_least_squares(
            lambda p, xk=xk, yk=yk, dk=dk: (segment_model(p, xk, yk) - dk) / noise,
            lambda p, xk=xk, yk=yk: segment_jac(p, xk, yk) / noise,
            p0,
            free=free,
        )
        if fit is None:
            return None
        with np.errstate(over="ignore", invalid="ignore"):  # a wild fit is caught below
            model = segment_model(fit.x, x, y)
        # a star merged into the streak stands far above it; a bright streak's own
        # small misfit does not (a Gaussian across a bright streak misses its halo all
        # along: that misfit sets the scale, or the halo is cut away bit by bit)
        resid = d - model
        core = np.abs(model - fit.x[6]) > 2.0 * noise
        scale = noise
        if core.sum() >= 20:
            r = resid[core]
            scale = max(noise, 1.4826 * float(np.median(np.abs(r - np.median(r)))))
        bad = resid > 5.0 * scale + 0.5 * np.abs(model - fit.x[6])
        if not bad.any():
            break
        new_keep = ~_dilate_points(x, y, bad, 2.5)
        if new_keep.sum() < 10 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        p0 = fit.x
    # then the width free, from there: it tells streaks from sharp cosmic-ray tracks
    xk, yk, dk = x[keep], y[keep], d[keep]
    wide = fit_least_squares(
        lambda p: (segment_model(p, xk, yk) - dk) / noise,
        lambda p: segment_jac(p, xk, yk) / noise,
        fit.x,
    )
    width = abs(wide.x[5]) if wide is not None else abs(fit.x[5])
    p = fit.x.copy()
    p[2], p[5] = abs(p[2]), abs(p[5])
    # errors of the fixed-width fit (its Jacobian has the free columns: 0-3 keep places)
    cov = covariance(fit, int(keep.sum()))
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


def covariance(fit, n):
    j = fit.jac
    dof = max(n - j.shape[1], 1)
    s2 = float(np.sum(fit.fun**2)) / dof
    try:
        return np.linalg.inv(j.T @ j) * max(s2, 1.0)
    except np.linalg.LinAlgError:
        return None


def gauss_model(p, x, y):
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
    x, y, d, _ = cutout(sub, x0 - r, x0 + r, y0 - r, y0 + r, labels, label, saturated)
    if d.size < 9:
        return None
    flux0 = float(np.clip(d, 0, None).sum())
    fit = fit_least_squares(
        lambda p: (gauss_model(p, x, y) - d) / noise,
        lambda p: gauss_jac(p, x, y) / noise,
        np.array([x0, y0, flux0, psf_sigma, 0.0]),
    )
    if fit is None:
        return None
    cov = covariance(fit, d.size)
    if cov is None or abs(fit.x[0] - x0) > r or abs(fit.x[1] - y0) > r:
        return None
    return {
        "x": fit.x[0],
        "y": fit.x[1],
        "flux": fit.x[2],
        "sigma": abs(fit.x[3]),
        "sigma_mid": math.sqrt(max(0.5 * (cov[0, 0] + cov[1, 1]), 0.0)),
    }
