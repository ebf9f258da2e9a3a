"""Joint fits of blended sources: a point on a star trail, a point beside a point.

The model is a sum of components over one background level: at most one star trail
(a PSF-convolved segment of the frame's trail length and angle, held fixed, with
free centre and flux) and circular Gaussian points (free centre, flux and width). Pixels of other segments and saturated pixels are left out.
"""

from __future__ import annotations

import math

import numpy as np

from aposos.station.psffit import (
    covariance,
    cutout,
    fit_least_squares,
    gauss_jac,
    gauss_model,
    segment_jac,
    segment_model,
)

__all__ = ["fit_blend", "fit_point_on_trail", "fit_two_points"]


def _unpack(p, n_points, trail):
    k = 1
    seg = None
    if trail is not None:
        seg = np.array([p[1], p[2], trail[0], trail[1], p[3], trail[2], 0.0])
        k = 4
    pts = [np.array([*p[k + 4 * j : k + 4 * j + 4], 0.0]) for j in range(n_points)]
    return seg, pts


def _model(p, x, y, n_points, trail):
    seg, pts = _unpack(p, n_points, trail)
    m = np.full(x.size, p[0])
    if seg is not None:
        m += segment_model(seg, x, y)
    for q in pts:
        m += gauss_model(q, x, y)
    return m


def _jacobian(p, x, y, n_points, trail):
    seg, pts = _unpack(p, n_points, trail)
    cols = [np.ones(x.size)]
    if seg is not None:
        js = segment_jac(seg, x, y)
        cols += [js[:, 0], js[:, 1], js[:, 4]]
    for q in pts:
        jg = gauss_jac(q, x, y)
        cols += [jg[:, 0], jg[:, 1], jg[:, 2], jg[:, 3]]
    return np.stack(cols, axis=1)


def fit_blend(x, y, d, noise, *, points, sigma, trail=None, trail_start=None):
    """Fit Gaussian ``points`` [(x, y, flux), ...] (+ a fixed-shape trail) to pixels.

    Parameters
    ----------
    x, y, d : pixel coordinates and background-subtracted values.
    noise : per-pixel noise (ADU).
    points : first guesses of the points.
    sigma : first guess of the points' Gaussian sigma (px).
    trail : (length_px, theta_rad, sigma_px) of the star trail, or None.
    trail_start : (x, y, flux) first guess of the trail.

    Returns
    -------
    A list of dicts (one per point: x, y, flux, sigma, sigma_mid, flux_err), or None.
    """
    p0 = [0.0]
    if trail is not None:
        p0 += list(trail_start)
    for q in points:
        p0 += [*q, sigma]
    n = len(points)
    fit = fit_least_squares(
        lambda p: (_model(p, x, y, n, trail) - d) / noise,
        lambda p: _jacobian(p, x, y, n, trail) / noise,
        np.array(p0, float),
    )
    if fit is None:
        return None
    cov = covariance(fit, d.size)
    if cov is None:  # a trail that left the pixels (a point far brighter than it):
        # what no pixel constrains leaves the points' errors as they are
        j = fit.jac
        s2 = float(np.sum(fit.fun**2)) / max(d.size - j.shape[1], 1)
        cov = np.linalg.pinv(j.T @ j) * max(s2, 1.0)
    k = 4 if trail is not None else 1
    out = []
    for j in range(n):
        i = k + 4 * j
        out.append(
            {
                "x": float(fit.x[i]),
                "y": float(fit.x[i + 1]),
                "flux": float(fit.x[i + 2]),
                "flux_err": math.sqrt(max(cov[i + 2, i + 2], 0.0)),
                "sigma": abs(float(fit.x[i + 3])),
                "sigma_mid": math.sqrt(max(0.5 * (cov[i, i] + cov[i + 1, i + 1]), 0.0)),
            }
        )
    return out


def fit_point_on_trail(ext, i, peak_xy, psf_sigma, noise, length):
    """Fit a point merged with star trail ``i`` of ``ext.sources`` (trails ``length``
    px long at the frame's trail angle); a dict or None."""
    s = ext.sources
    theta = ext.star_theta
    c, sn = math.cos(theta), math.sin(theta)
    half_l = 0.5 * length + 3.0 * psf_sigma + 3.0
    half_w = 3.0 * psf_sigma + 3.0
    xc, yc = s.fx[i], s.fy[i]
    ex = abs(c) * half_l + abs(sn) * half_w
    ey = abs(sn) * half_l + abs(c) * half_w
    x, y, d, _ = cutout(
        ext.subtracted, xc - ex, xc + ex, yc - ey, yc + ey, ext.labels, s.label[i], ext.saturated
    )
    along = (x - xc) * c + (y - yc) * sn
    perp = -(x - xc) * sn + (y - yc) * c
    band = (np.abs(along) < half_l) & (np.abs(perp) < half_w)
    x, y, d = x[band], y[band], d[band]
    if d.size < 20:
        return None
    px, py = peak_xy
    near = np.hypot(x - px, y - py) < 2.0 * psf_sigma + 2.0
    point_flux = max(float(np.clip(d[near], 0, None).sum()), 1.0)
    # the trail's first guess from the pixels away from the point
    w = np.where(near, 0.0, np.clip(d, 0, None))
    total = float(w.sum())
    if total <= 0:
        return None
    xc, yc = float(np.sum(w * x) / total), float(np.sum(w * y) / total)
    fits = fit_blend(
        x, y, d, noise,
        points=[(px, py, point_flux)],
        sigma=psf_sigma,
        trail=(length, theta, psf_sigma),
        trail_start=(xc, yc, total),
    )  # fmt: skip
    if fits is None:
        return None
    f = fits[0]
    if math.hypot(f["x"] - px, f["y"] - py) > 2.0 * psf_sigma + 1.0:
        return None
    return f


def fit_two_points(ext, label, first, second, psf_sigma, noise):
    """Fit two Gaussian points jointly (``first``, ``second``: (x, y, flux) guesses)."""
    r = 3.0 * psf_sigma + 3.0
    xs = (first[0], second[0])
    ys = (first[1], second[1])
    x, y, d, _ = cutout(
        ext.subtracted, min(xs) - r, max(xs) + r, min(ys) - r, max(ys) + r,
        ext.labels, label, ext.saturated,
    )  # fmt: skip
    if d.size < 20:
        return None
    return fit_blend(x, y, d, noise, points=[first, second], sigma=psf_sigma)
