"""Fine fit: exact SGP4 for each (tracklet, candidate) pair at every observation time.

Observations are first brought to geometric directions: the tracklet's astrometric
RA/Dec (annual aberration of the reference stars taken out, see
:func:`aposos.orbit.frames.radec_from_teme`) is put back through the same exact
special-relativistic aberration with the opposite velocity, which undoes it exactly.
The prediction is then plain geometry in GCRS axes: SGP4 in TEME, the TEME -> GCRS
matrix of the observation time, light time (twice iterated, ``r - v tau``), station
position from :mod:`aposos.orbit.frames`.

Residuals are taken in the sky plane of each prediction, along the object's motion
(``e_a``: its velocity across the line of sight) and across it (``e_c``). The model of
a correct identification has four parameters: the time offset ``tau`` (moves the
prediction by ``omega tau`` along ``e_a``, ``omega`` the angular rate), a tilt of the
orbit plane (a shift along the orbit normal of ``p sin u + q cos u`` km, ``u`` the
argument of latitude: what inclination and node errors do) and a radial shift. Their
sky displacements follow from the geometry of each observation; all four are fitted
with the Gaussian priors of :class:`~aposos.correlate.model.ErrorModel` (ridge
least squares: the minimum is the marginal chi-square, ``2 n`` degrees of freedom).
SGP4 is re-run at the updated ``tau`` until the update is below a millisecond, so the
fit does not rely on the linearisation (pairs far worse than their tracklet's best
stop early: :data:`HOPELESS_CHI2`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import prange

from aposos.orbit.jit import inline_kernel, kernel, parallel_kernel

__all__ = [
    "ObservationBatch",
    "PairFit",
    "chi2_floor",
    "evaluate_priors",
    "fit_pairs",
    "smooth_motion_fit",
    "unaberrate",
]

C_KMS = 299792.458
ARCSEC = math.pi / (180.0 * 3600.0)
SECONDS_PER_DAY = 86400.0
TAU_TOLERANCE_S = 1e-3
MAX_ITERATIONS = 4
MAX_CORRELATION = 0.999  # of the time and radial offset priors
# a pair whose chi-square is this far above its tracklet's best after an iteration is
# not iterated again: its share of the posterior (below exp(-1000)) cannot come back
HOPELESS_CHI2 = 2000.0


def radec_to_unit(ra_deg, dec_deg) -> np.ndarray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def unaberrate(q: np.ndarray, earth_velocity_kms: np.ndarray) -> np.ndarray:
    """Geometric unit directions from astrometric ones (the inverse of frames' aberration).

    ``frames`` applies the exact aberration formula for velocity ``beta = -v_earth / c``;
    the same formula with ``+v_earth / c`` inverts it exactly.
    """
    beta = earth_velocity_kms / C_KMS
    bm1 = np.sqrt(1.0 - np.sum(beta * beta, axis=-1, keepdims=True))
    w1 = 1.0 + np.sum(q * beta, axis=-1, keepdims=True) / (1.0 + bm1)
    p = bm1 * q + w1 * beta
    return p / np.linalg.norm(p, axis=-1, keepdims=True)


# a tracklet's own scatter replaces its declared sigma when the smooth-motion fit's
# chi-square per degree of freedom exceeds this (about the 0.1 % point for 2 dof)
SCATTER_CHI2_PER_DOF = 3.5
# beyond this arc length the polynomial no longer follows real motion to an arcsecond
SCATTER_MAX_ARC_DEG = 5.0


def smooth_motion_fit(tracklet, log_volume: float) -> tuple[float, float]:
    """The tracklet on its own: how much larger than declared its scatter is, and the
    deviance of "an object nobody catalogued" for it.

    The directions are put on the tangent plane at the middle observation (gnomonic:
    great circles are straight lines there) and fitted, weighted by the declared
    sigmas, with a polynomial in time of degree 1 (2-3 observations), 2 (4-5) or 3 (6
    or more): the smooth motion of any orbit over a tracklet up to
    :data:`SCATTER_MAX_ARC_DEG` long (longer arcs keep their declared sigma). When the residual
    chi-square per degree of freedom is beyond :data:`SCATTER_CHI2_PER_DOF`, the
    declared sigmas were optimistic (a visual observer, a poor time stamp) and the
    shown scatter is used: the first value returned (>= 1) scales the sigmas.

    The second is ``chi2 + ln det A + 2 ln V - 4 ln 2 pi``: the marginal deviance of the
    tracklet under a uniform prior of volume ``exp(log_volume)`` (steradian times
    (rad/s)^2) over its position and angular velocity at the middle time (``A`` their
    information matrix), comparable with the candidates' deviances.
    """
    inflation, deviance = smooth_motion_fits([tracklet], log_volume)
    return float(inflation[0]), float(deviance[0])


def smooth_motion_fits(tracklets, log_volume: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`smooth_motion_fit` of many tracklets: inflations and deviances, ``(n_trk,)``."""
    counts = np.array([len(t) for t in tracklets], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n_trk = len(tracklets)
    if n_trk == 0:
        return np.ones(0), np.full(0, np.inf)
    cat = np.concatenate
    sigma = cat([np.asarray(t.sigma_arcsec, dtype=np.float64) for t in tracklets]) * ARCSEC
    declared = np.logical_and.reduceat(np.isfinite(sigma) & (sigma > 0), offsets[:-1])
    sigma = np.where(np.repeat(declared, counts), sigma, 2.0 * ARCSEC)
    q = radec_to_unit(cat([t.ra_deg for t in tracklets]), cat([t.dec_deg for t in tracklets]))
    utc = cat([t.utc for t in tracklets]).astype("datetime64[us]").astype(np.int64)
    middle = offsets[:-1] + counts // 2
    t = (utc - np.repeat(utc[middle], counts)).astype(np.float64) * 1e-6
    inflation = np.ones(n_trk)
    deviance = np.full(n_trk, np.inf)
    _smooth_motion_kernel(q, t, sigma, offsets, float(log_volume), inflation, deviance)
    return inflation, deviance


@inline_kernel
def _remove_projection(basis, j, vectors, k):
    """Take from column ``k`` of ``vectors`` its part along unit column ``j`` of ``basis``."""
    dot = 0.0
    for i in range(basis.shape[0]):
        dot += basis[i, j] * vectors[i, k]
    for i in range(basis.shape[0]):
        vectors[i, k] -= dot * basis[i, j]


@kernel
def _residual_chi2(design, target, n_col):
    """Squared norm of ``target``'s part outside the span of ``design``'s first ``n_col``
    columns (modified Gram-Schmidt; columns dependent on earlier ones are left out, as
    a minimum-norm least-squares solution does). Changes both arrays."""
    for k in range(n_col):
        for j in range(k):
            _remove_projection(design, j, design, k)
        norm = 0.0
        for i in range(design.shape[0]):
            norm += design[i, k] * design[i, k]
        norm = math.sqrt(norm)
        # a column (weights times a power of t within [-1, 1]) this small is dependent
        scale = 0.0
        for i in range(design.shape[0]):
            scale = max(scale, math.fabs(target[i, 2]))  # the weights, kept in column 2
        if norm <= 1e-12 * scale * math.sqrt(design.shape[0]):
            for i in range(design.shape[0]):
                design[i, k] = 0.0
            continue
        for i in range(design.shape[0]):
            design[i, k] /= norm
        for axis in range(2):
            _remove_projection(design, k, target, axis)
    chi2 = 0.0
    for i in range(design.shape[0]):
        chi2 += target[i, 0] * target[i, 0] + target[i, 1] * target[i, 1]
    return chi2


@parallel_kernel
def _smooth_motion_kernel(q, t, sigma, offsets, log_volume, inflation, deviance):
    """:func:`smooth_motion_fit` of tracklet ``k`` (rows ``offsets[k]:offsets[k + 1]``)
    into ``inflation[k]``, ``deviance[k]`` (left at 1 and inf without a tangent plane)."""
    for k in prange(offsets.size - 1):
        lo, hi = offsets[k], offsets[k + 1]
        n = hi - lo
        mid = lo + n // 2
        cx, cy, cz = q[mid, 0], q[mid, 1], q[mid, 2]
        ex, ey, ez = -cy, cx, 0.0  # z x c
        norm = math.sqrt(ex * ex + ey * ey)
        if norm < 1e-9:
            ex, ey, norm = 1.0, 0.0, 1.0
        ex, ey = ex / norm, ey / norm
        nx, ny, nz = cy * ez - cz * ey, cz * ex - cx * ez, cx * ey - cy * ex  # c x east
        degree = 1 if n <= 3 else (2 if n <= 5 else 3)
        dof = 2 * (n - degree - 1)
        span = 0.0
        t_min, t_max = t[lo], t[lo]
        for i in range(lo, hi):
            t_min, t_max = min(t_min, t[i]), max(t_max, t[i])
        span = max(t_max - t_min, 1e-6)
        design = np.empty((n, degree + 1))
        target = np.empty((n, 3))
        tangent = True
        for i in range(n):
            o = lo + i
            z = q[o, 0] * cx + q[o, 1] * cy + q[o, 2] * cz
            if z <= 0.1:  # beyond 84 degrees from the middle: no tangent plane
                tangent = False
                break
            w = 1.0 / sigma[o]
            target[i, 0] = (q[o, 0] * ex + q[o, 1] * ey) / z * w
            target[i, 1] = (q[o, 0] * nx + q[o, 1] * ny + q[o, 2] * nz) / z * w
            target[i, 2] = w
            power = w
            for j in range(degree + 1):
                design[i, j] = power
                power *= t[o] / span
        if not tangent:
            continue
        chi2 = _residual_chi2(design, target, degree + 1)
        scale = 1.0
        first = q[lo, 0] * q[hi - 1, 0] + q[lo, 1] * q[hi - 1, 1] + q[lo, 2] * q[hi - 1, 2]
        arc_deg = math.degrees(math.acos(min(1.0, max(-1.0, first))))
        if arc_deg > SCATTER_MAX_ARC_DEG:
            chi2 = float(max(dof, 0))  # long arcs: the declared sigma, an orbit would fit
        elif dof > 0 and chi2 / dof > SCATTER_CHI2_PER_DOF:
            scale = math.sqrt(chi2 / dof)
            chi2 = float(dof)
        inflation[k] = scale
        # information of (position, angular velocity) per axis, with the inflated sigmas
        s0, s1, s2 = 0.0, 0.0, 0.0
        for o in range(lo, hi):
            w2 = 1.0 / (sigma[o] * scale) ** 2
            s0 += w2
            s1 += w2 * t[o]
            s2 += w2 * t[o] * t[o]
        det = s0 * s2 - s1 * s1
        if det > 0:
            deviance[k] = chi2 + 2.0 * math.log(det) + 2.0 * log_volume
            deviance[k] -= 4.0 * math.log(2.0 * math.pi)


@dataclass
class ObservationBatch:
    """The observations of many tracklets, flattened, with their per-time geometry.

    ``offsets[t]:offsets[t + 1]`` are the rows of tracklet ``t``. Directions and station
    positions are GCRS; ``teme_to_gcrs`` rotates TEME vectors into GCRS.
    """

    offsets: np.ndarray  # (n_trk + 1,) int64
    jd: np.ndarray  # (n_obs,)
    fr: np.ndarray
    u_gcrs: np.ndarray  # (n_obs, 3) observed geometric unit directions
    site_gcrs_km: np.ndarray  # (n_obs, 3)
    teme_to_gcrs: np.ndarray  # (n_obs, 3, 3)
    sigma_rad: np.ndarray  # (n_obs,) the larger of the declared and the shown scatter
    inflation: np.ndarray  # (n_trk,) shown scatter / declared sigma where larger, else 1
    free_deviance: np.ndarray  # (n_trk,) deviance of "an object nobody catalogued"

    @property
    def n_tracklets(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def reference_rows(self) -> np.ndarray:
        """Row of each tracklet's middle observation (the coarse gate's reference)."""
        return self.offsets[:-1] + self.counts // 2

    @classmethod
    def build(cls, tracklets, sites, log_volume: float = 0.0) -> ObservationBatch:
        """From tracklets (each with >= 1 observation) and their resolved ``Site`` objects;
        ``log_volume``: see :func:`smooth_motion_fit`."""
        from aposos.model import datetime64_to_jd_fr
        from aposos.orbit import frames

        counts = np.array([len(t) for t in tracklets], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n = int(offsets[-1])
        if n == 0:
            empty = np.zeros((0, 3))
            return cls(
                offsets, np.zeros(0), np.zeros(0), empty, empty, np.zeros((0, 3, 3)),
                np.zeros(0), np.ones(len(tracklets)), np.full(len(tracklets), np.inf),
            )  # fmt: skip
        # one time conversion for the batch (it is elementwise)
        jd, fr = datetime64_to_jd_fr(np.concatenate([trk.utc for trk in tracklets]))
        ra = np.empty(n)
        dec = np.empty(n)
        sigma = np.empty(n)
        for t, trk in enumerate(tracklets):
            lo, hi = offsets[t], offsets[t + 1]
            ra[lo:hi], dec[lo:hi] = trk.ra_deg, trk.dec_deg
            sigma[lo:hi] = trk.sigma_arcsec
        q = radec_to_unit(ra, dec)
        row_site = np.repeat(np.arange(len(tracklets)), counts)
        by_site: dict[int, list[int]] = {}
        site_objects = {}
        for t, site in enumerate(sites):
            by_site.setdefault(id(site), []).append(t)
            site_objects[id(site)] = site
        site_rows = [
            (site_objects[key], np.flatnonzero(np.isin(row_site, members)))
            for key, members in by_site.items()
        ]
        m, earth_kms, site_km = frames.observation_frames(jd, fr, site_rows)
        u = unaberrate(q, earth_kms)
        sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, 2.0) * ARCSEC
        inflation, free = smooth_motion_fits(tracklets, log_volume)
        sigma = sigma * np.repeat(inflation, counts)
        return cls(offsets, jd, fr, u, site_km, np.ascontiguousarray(m), sigma, inflation, free)

    def reference_teme(self) -> tuple[np.ndarray, np.ndarray]:
        """Station position (km) and observed direction of the reference rows, TEME axes."""
        rows = self.reference_rows()
        m = self.teme_to_gcrs[rows]
        site = np.einsum("nji,nj->ni", m, self.site_gcrs_km[rows])
        u = np.einsum("nji,nj->ni", m, self.u_gcrs[rows])
        return site, u


# Columns of the per-observation geometry: residuals along and across (rad), angular
# rate along (rad/s), range (km), then the sky displacement (rad per km, along and
# across) of three position offsets: along the orbit normal times sin u and times cos u
# (u the argument of latitude: a tilt of the orbit plane), and along the radius.
G_XA, G_XC, G_OMEGA, G_RHO = 0, 1, 2, 3
G_OFFSETS = 4  # then (along, across) pairs for the three offsets
N_GEO = 10
N_PARAM = 4  # time offset, plane tilt (two components), radial offset


@parallel_kernel
def _residual_kernel(r, v, rows, m, site, u, geo):
    """Sky-plane geometry of pair ``p`` at its observation rows ``rows[p, i]`` (-1: none)."""
    n_pairs, n_max = rows.shape
    inv_c = 1.0 / C_KMS
    for p in prange(n_pairs):
        for i in range(n_max):
            o = rows[p, i]
            if o < 0:
                for k in range(N_GEO):
                    geo[p, i, k] = 0.0
                continue
            rx = m[o, 0, 0] * r[p, i, 0] + m[o, 0, 1] * r[p, i, 1] + m[o, 0, 2] * r[p, i, 2]
            ry = m[o, 1, 0] * r[p, i, 0] + m[o, 1, 1] * r[p, i, 1] + m[o, 1, 2] * r[p, i, 2]
            rz = m[o, 2, 0] * r[p, i, 0] + m[o, 2, 1] * r[p, i, 1] + m[o, 2, 2] * r[p, i, 2]
            vx = m[o, 0, 0] * v[p, i, 0] + m[o, 0, 1] * v[p, i, 1] + m[o, 0, 2] * v[p, i, 2]
            vy = m[o, 1, 0] * v[p, i, 0] + m[o, 1, 1] * v[p, i, 1] + m[o, 1, 2] * v[p, i, 2]
            vz = m[o, 2, 0] * v[p, i, 0] + m[o, 2, 1] * v[p, i, 1] + m[o, 2, 2] * v[p, i, 2]
            sx, sy, sz = site[o, 0], site[o, 1], site[o, 2]
            dx, dy, dz = rx - sx, ry - sy, rz - sz
            rho = math.sqrt(dx * dx + dy * dy + dz * dz)
            for _ in range(2):  # light time
                lt = rho * inv_c
                dx, dy, dz = rx - vx * lt - sx, ry - vy * lt - sy, rz - vz * lt - sz
                rho = math.sqrt(dx * dx + dy * dy + dz * dz)
            px, py, pz = dx / rho, dy / rho, dz / rho
            vp = vx * px + vy * py + vz * pz
            ax, ay, az = vx - vp * px, vy - vp * py, vz - vp * pz
            speed = math.sqrt(ax * ax + ay * ay + az * az)
            if speed > 1e-9:
                ax, ay, az = ax / speed, ay / speed, az / speed
            else:  # moving along the line of sight: any axis across it
                ax, ay, az = -py, px, 0.0
                norm = math.sqrt(ax * ax + ay * ay)
                if norm < 1e-9:
                    ax, ay, az = 1.0, 0.0, 0.0
                else:
                    ax, ay = ax / norm, ay / norm
            cx, cy, cz = py * az - pz * ay, pz * ax - px * az, px * ay - py * ax
            ox, oy, oz = u[o, 0], u[o, 1], u[o, 2]
            along = ox * px + oy * py + oz * pz
            geo[p, i, G_XA] = math.atan2(ox * ax + oy * ay + oz * az, along)
            geo[p, i, G_XC] = math.atan2(ox * cx + oy * cy + oz * cz, along)
            geo[p, i, G_OMEGA] = speed / rho
            geo[p, i, G_RHO] = rho
            # orbit frame: normal h, radius, and the argument of latitude from the node
            # (any fixed in-plane reference would do; the node is one)
            hx, hy, hz = ry * vz - rz * vy, rz * vx - rx * vz, rx * vy - ry * vx
            hn = math.sqrt(hx * hx + hy * hy + hz * hz)
            hx, hy, hz = hx / hn, hy / hn, hz / hn
            rn = math.sqrt(rx * rx + ry * ry + rz * rz)
            ex, ey = -hy, hx  # z x h: towards the ascending node
            en = math.sqrt(ex * ex + ey * ey)
            if en < 1e-9:  # equatorial orbit: any fixed direction in the plane
                ex, ey, en = 1.0, 0.0, 1.0
            ex, ey = ex / en, ey / en
            fx, fy, fz = hy * 0.0 - hz * ey, hz * ex - hx * 0.0, hx * ey - hy * ex  # h x e
            cos_u = (rx * ex + ry * ey) / rn
            sin_u = (rx * fx + ry * fy + rz * fz) / rn
            n_a = (hx * ax + hy * ay + hz * az) / rho
            n_c = (hx * cx + hy * cy + hz * cz) / rho
            geo[p, i, G_OFFSETS + 0] = n_a * sin_u
            geo[p, i, G_OFFSETS + 1] = n_c * sin_u
            geo[p, i, G_OFFSETS + 2] = n_a * cos_u
            geo[p, i, G_OFFSETS + 3] = n_c * cos_u
            geo[p, i, G_OFFSETS + 4] = (rx * ax + ry * ay + rz * az) / (rn * rho)
            geo[p, i, G_OFFSETS + 5] = (rx * cx + ry * cy + rz * cz) / (rn * rho)


@kernel
def _cholesky_log_det(a, l):
    """Lower Cholesky factor of symmetric positive ``a`` into ``l``; returns ln det a
    (one logarithm of the squared diagonal's product: 4 x 4 information matrices stay far
    from overflow)."""
    n = a.shape[0]
    det = 1.0
    for j in range(n):
        d = a[j, j]
        for k in range(j):
            d -= l[j, k] * l[j, k]
        det *= d
        d = math.sqrt(d)
        l[j, j] = d
        for i in range(j + 1, n):
            t = a[i, j]
            for k in range(j):
                t -= l[i, k] * l[j, k]
            l[i, j] = t / d
    return math.log(det)


@kernel
def _prior_precision(var, out):
    """Inverse prior covariance of the parameters into ``out`` (4 x 4); returns its
    ln det. ``var``: time-offset, normal and radial variances and the time-radial
    correlation."""
    for i in range(N_PARAM):
        for j in range(N_PARAM):
            out[i, j] = 0.0
    rho = var[3]
    one_minus = 1.0 - rho * rho
    out[0, 0] = 1.0 / (var[0] * one_minus)
    out[1, 1] = 1.0 / var[1]
    out[2, 2] = 1.0 / var[1]
    out[3, 3] = 1.0 / (var[2] * one_minus)
    out[0, 3] = -rho / (math.sqrt(var[0] * var[2]) * one_minus)
    out[3, 0] = out[0, 3]
    return math.log(var[0] * var[1] * var[1] * var[2] * one_minus)


# Per-pair summary of the data (no prior): the information matrix ``A`` (row-major, 16),
# the gradient ``g`` (4) and the weighted sum of squared residuals, all at the geometry's
# time offset. Every prior's fit follows from it without going over the observations.
S_INFO, S_GRAD, S_RWR = 0, N_PARAM * N_PARAM, N_PARAM * N_PARAM + N_PARAM
N_SUMMARY = S_RWR + 1


@kernel
def _summarise(geo, sig, n, timing_s, summary):
    """:data:`N_SUMMARY` numbers of one pair's ``n`` observations into ``summary``.

    Parameters: time step (s), plane tilt as normal offsets ``p sin u + q cos u`` (km,
    two components) and radial offset (km); residual model along ``omega theta_0 +
    sum_k a_k theta_k``, across ``sum_k c_k theta_k``. Sums run over the observations in
    order, so the result does not depend on how pairs were batched.
    """
    for k in range(N_SUMMARY):
        summary[k] = 0.0
    for i in range(n):
        w_a = 1.0 / (sig[i] * sig[i] + (geo[i, G_OMEGA] * timing_s) ** 2)
        w_c = 1.0 / (sig[i] * sig[i])
        xa, xc = geo[i, G_XA], geo[i, G_XC]
        summary[S_RWR] += w_a * xa * xa + w_c * xc * xc
        for k in range(N_PARAM):
            ja_k = geo[i, G_OMEGA] if k == 0 else geo[i, G_OFFSETS + 2 * (k - 1)]
            jc_k = 0.0 if k == 0 else geo[i, G_OFFSETS + 2 * (k - 1) + 1]
            summary[S_GRAD + k] += w_a * ja_k * xa + w_c * jc_k * xc
            for j in range(N_PARAM):
                ja_j = geo[i, G_OMEGA] if j == 0 else geo[i, G_OFFSETS + 2 * (j - 1)]
                jc_j = 0.0 if j == 0 else geo[i, G_OFFSETS + 2 * (j - 1) + 1]
                summary[S_INFO + N_PARAM * k + j] += w_a * ja_k * ja_j + w_c * jc_k * jc_j


@kernel
def _solve(summary, offset, var_prior, theta, a, low, prec):
    """Ridge solution ``theta`` of one pair under a prior (scratch ``a, low, prec``: 4 x 4).

    Priors: ``(tau + theta_0, radial)`` jointly Gaussian about ``(tau_mean, 0)`` with
    variances ``var_prior[0]``, ``var_prior[2]`` and correlation ``var_prior[3]``;
    ``p, q ~ N(0, var_prior[1])``; ``offset = tau - tau_mean``. Returns ``(chi2, ln
    det)``: the minimum (equal to the marginal chi-square) and the Occam term.
    """
    log_det_prior = _prior_precision(var_prior, prec)
    for k in range(N_PARAM):
        for j in range(N_PARAM):
            a[k, j] = summary[S_INFO + N_PARAM * k + j] + prec[k, j]
    log_det = _cholesky_log_det(a, low) + log_det_prior
    for i in range(N_PARAM):  # forward then back substitution
        t = summary[S_GRAD + i] - prec[i, 0] * offset
        for k in range(i):
            t -= low[i, k] * theta[k]
        theta[i] = t / low[i, i]
    for i in range(N_PARAM - 1, -1, -1):
        t = theta[i]
        for k in range(i + 1, N_PARAM):
            t -= low[k, i] * theta[k]
        theta[i] = t / low[i, i]
    # data: |r - J theta|^2_W = rWr - 2 theta.g + theta' A theta; prior: d' P d
    chi2 = summary[S_RWR]
    for k in range(N_PARAM):
        chi2 -= 2.0 * theta[k] * summary[S_GRAD + k]
        d_k = theta[k] + (offset if k == 0 else 0.0)
        for j in range(N_PARAM):
            d_j = theta[j] + (offset if j == 0 else 0.0)
            chi2 += theta[k] * summary[S_INFO + N_PARAM * k + j] * theta[j]
            chi2 += d_k * prec[k, j] * d_j
    return chi2, log_det


@kernel
def _pair_fit_into(geo, sig, n, tau, tau_mean, var_prior, timing_s, out, summary, work):
    """Linear-Gaussian fit of one pair from its geometry at time offset ``tau`` (see
    :func:`_summarise` and :func:`_solve`). ``out``: theta (4), chi-square, ln det (Occam
    term), RMS after the time step alone, mean cross-track residual (rad). ``summary``
    (:data:`N_SUMMARY`) and ``work`` (3, 4, 4) are scratch."""
    _summarise(geo, sig, n, timing_s, summary)
    theta = out[:N_PARAM]
    chi2, log_det = _solve(summary, tau - tau_mean, var_prior, theta, work[0], work[1], work[2])
    sq = 0.0
    cross = 0.0
    for i in range(n):
        ea = geo[i, G_XA] - geo[i, G_OMEGA] * theta[0]
        ec = geo[i, G_XC]
        sq += ea * ea + ec * ec
        cross += ec
    out[4] = chi2
    out[5] = log_det
    out[6] = math.sqrt(sq / n)
    out[7] = cross / n


@kernel
def _pair_fit(geo, sig, n, tau, tau_mean, var_prior, var_ref, timing_s, out):
    """:func:`_pair_fit_into` of one pair with its own scratch, and in ``out[8]`` the
    Occam term under the reference priors ``var_ref``."""
    summary = np.empty(N_SUMMARY)
    work = np.empty((3, N_PARAM, N_PARAM))
    _pair_fit_into(geo, sig, n, tau, tau_mean, var_prior, timing_s, out, summary, work)
    theta = np.empty(N_PARAM)
    _, out[8] = _solve(summary, 0.0, var_ref, theta, work[0], work[1], work[2])


PAIRS_PER_TASK = 256  # pairs sharing one set of scratch arrays in the parallel loops


@parallel_kernel
def _fit_all(geo, sig, counts, tau, tau_mean, var_prior, timing_s, rows, out, summary):
    """Fit pairs ``rows`` (into ``out[p]`` and ``summary[p]`` of each ``p`` in ``rows``).
    Pairs are independent and each writes its own row: the same results on any threads."""
    n_tasks = (rows.size + PAIRS_PER_TASK - 1) // PAIRS_PER_TASK
    for task in prange(n_tasks):
        work = np.empty((3, N_PARAM, N_PARAM))
        for i in range(task * PAIRS_PER_TASK, min(rows.size, (task + 1) * PAIRS_PER_TASK)):
            p = rows[i]
            _pair_fit_into(
                geo[p], sig[p], counts[p], tau[p], tau_mean[p], var_prior[p], timing_s, out[p],
                summary[p], work,
            )  # fmt: skip


@kernel
def _data_only_chi2(summary, a, low, scale, theta):
    """The least chi-square of one pair's data alone (no prior) from its summary:
    ``rWr - g' A^-1 g``, ``A`` scaled to a unit diagonal (scratch ``a, low``: 4 x 4,
    ``scale, theta``: 4; a relative jitter of ``1e-12`` keeps a singular ``A``
    solvable, raising the value by far less than a unit)."""
    for k in range(N_PARAM):
        scale[k] = math.sqrt(max(summary[S_INFO + (N_PARAM + 1) * k], 1e-300))
    for k in range(N_PARAM):
        for j in range(N_PARAM):
            a[k, j] = summary[S_INFO + N_PARAM * k + j] / (scale[k] * scale[j])
        a[k, k] += 1e-12
    _cholesky_log_det(a, low)
    chi2 = summary[S_RWR]
    for i in range(N_PARAM):  # forward substitution: chi2 drops by |L^-1 g|^2
        t = summary[S_GRAD + i] / scale[i]
        for k in range(i):
            t -= low[i, k] * theta[k]
        theta[i] = t / low[i, i]
        chi2 -= theta[i] * theta[i]
    return chi2


@parallel_kernel
def _floor_all(summary, floor):
    """:func:`_data_only_chi2` of every pair (``summary`` rows) into ``floor``."""
    n_pairs = summary.shape[0]
    n_tasks = (n_pairs + PAIRS_PER_TASK - 1) // PAIRS_PER_TASK
    for task in prange(n_tasks):
        work = np.empty((2, N_PARAM, N_PARAM))
        vectors = np.empty((2, N_PARAM))
        for p in range(task * PAIRS_PER_TASK, min(n_pairs, (task + 1) * PAIRS_PER_TASK)):
            floor[p] = _data_only_chi2(summary[p], work[0], work[1], vectors[0], vectors[1])


@parallel_kernel
def _evaluate_all(summary, offset, var_prior, chi2, occam):
    """Chi-square and Occam term of every pair (``summary`` rows) under every prior
    (``offset``, ``var_prior``: ``(n_priors, n_pairs)`` and ``(n_priors, n_pairs, 4)``)."""
    n_pairs = summary.shape[0]
    n_tasks = (n_pairs + PAIRS_PER_TASK - 1) // PAIRS_PER_TASK
    for task in prange(n_tasks):
        work = np.empty((3, N_PARAM, N_PARAM))
        theta = np.empty(N_PARAM)
        for p in range(task * PAIRS_PER_TASK, min(n_pairs, (task + 1) * PAIRS_PER_TASK)):
            for m in range(offset.shape[0]):
                chi2[m, p], occam[m, p] = _solve(
                    summary[p], offset[m, p], var_prior[m, p], theta, work[0], work[1], work[2]
                )


@dataclass
class PairFit:
    """Fit of each (tracklet, candidate) pair; arrays of length ``n_pairs``.

    The data's summary at the converged time offset is kept (``summary``, ``tau_geo_s``:
    see :func:`_summarise`), so the marginal chi-square under other priors costs no SGP4
    and no pass over the observations: see :func:`evaluate_priors`.
    """

    tau_s: np.ndarray
    normal_km: np.ndarray  # (n_pairs, 2): plane tilt, normal offset p sin u + q cos u
    radial_km: np.ndarray
    chi2: np.ndarray  # marginal chi-square, 2 n degrees of freedom (inf: no prediction)
    occam: np.ndarray  # ln det term of the marginal likelihood
    rms_arcsec: np.ndarray  # residual RMS after the time offset alone
    cross_track_arcsec: np.ndarray  # mean cross-track residual
    n_obs: np.ndarray
    range_km: np.ndarray  # mean distance of the prediction
    speed_kms: np.ndarray  # orbital speed of the prediction
    summary: np.ndarray  # (n_pairs, N_SUMMARY) at tau_geo_s
    tau_geo_s: np.ndarray

    @property
    def along_track_km(self) -> np.ndarray:
        return self.tau_s * self.speed_kms

    @property
    def cross_track_km(self) -> np.ndarray:
        return self.cross_track_arcsec * ARCSEC * self.range_km

    def take(self, rows) -> PairFit:
        return PairFit(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})

    @classmethod
    def concatenate(cls, parts: list[PairFit]) -> PairFit:
        """The fits of ``parts`` one after the other."""
        if len(parts) == 1:
            return parts[0]
        fields = cls.__dataclass_fields__
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in fields})


def _pair_rows(batch: ObservationBatch, pair_trk: np.ndarray, n_max=None) -> np.ndarray:
    counts = batch.counts[pair_trk]
    if n_max is None:
        n_max = int(counts.max()) if counts.size else 0
    i = np.arange(n_max)
    rows = batch.offsets[pair_trk][:, None] + i[None, :]
    return np.where(i[None, :] < counts[:, None], rows, -1)


def _propagate(params, obj, batch, rows, tau_s):
    from aposos.orbit.propagation import propagate_packed_rows

    safe = np.where(rows >= 0, rows, rows.max(axis=1, keepdims=True))
    jd = batch.jd[safe]
    fr = batch.fr[safe] + tau_s[:, None] / SECONDS_PER_DAY
    _, r, v = propagate_packed_rows(params, obj, jd, fr)
    return r, v


def _geometry(batch, rows, r, v):
    geo = np.empty(rows.shape + (N_GEO,))
    _residual_kernel(r, v, rows, batch.teme_to_gcrs, batch.site_gcrs_km, batch.u_gcrs, geo)
    return geo


def _prior_arrays(priors, n_pairs):
    """Prior mean time offsets and ``(n_pairs, 4)`` variances and correlation for the
    kernel, from priors of ``(n_pairs, 4)`` (uncorrelated) or ``(n_pairs, 5)``."""
    priors = np.asarray(priors, dtype=np.float64)
    width = priors.shape[-1] if priors.ndim else 0
    if width not in (4, 5):
        raise ValueError(f"priors must be (n_pairs, 4) or (n_pairs, 5), got {priors.shape}")
    priors = priors.reshape(n_pairs, width)
    var = np.zeros((n_pairs, 4))
    var[:, :3] = priors[:, 1:4] ** 2
    if width == 5:
        var[:, 3] = np.clip(priors[:, 4], -MAX_CORRELATION, MAX_CORRELATION)
    return np.ascontiguousarray(priors[:, 0]), var


def fit_pairs(
    batch, params, pair_trk, tau0_s, priors, timing_sigma_s, obj=None, n_max=None
) -> PairFit:
    """Fit a time offset and normal and radial offsets for every (tracklet, candidate) pair.

    SGP4 is re-run at the updated time offset until the update is below a millisecond,
    except for pairs whose chi-square exceeds their tracklet's best by
    :data:`HOPELESS_CHI2`: their last step is taken without a further look.

    Parameters
    ----------
    batch : the observations.
    params : ``(n_pairs, N_PARAMS)`` packed SGP4 element sets of the candidates, or
        with ``obj`` (each pair's row of ``params``) any packed rows, e.g. a catalogue's.
    pair_trk : ``(n_pairs,)`` tracklet of each pair.
    tau0_s : starting time offsets (from the gate).
    priors : ``(n_pairs, 4)``: prior mean time offset (s), and the sigmas of the time
        offset (s), normal offset and radial offset (km); a fifth column is the
        correlation of the time and radial offsets; see ``PriorTable.priors``.
        A wide prior lets the data place the time offset.
    timing_sigma_s : observation timing jitter.
    n_max : observations per pair the arrays hold (default: the pairs' longest
        tracklet); the fits of pairs taken apart are those of pairs taken together
        when given the together's (numpy sums a row of 8 or more in another order).
    """
    pair_trk = np.asarray(pair_trk, dtype=np.int64)
    n_pairs = pair_trk.size
    obj = np.arange(n_pairs) if obj is None else np.asarray(obj, dtype=np.int64)
    rows = _pair_rows(batch, pair_trk, n_max)
    counts = batch.counts[pair_trk]
    sig = np.where(rows >= 0, batch.sigma_rad[np.maximum(rows, 0)], 1.0)
    tau = np.asarray(tau0_s, dtype=np.float64).copy()
    tau_geo = tau.copy()
    tau_mean, var_prior = _prior_arrays(priors, n_pairs)
    stats = np.zeros((n_pairs, 8))
    summary = np.zeros((n_pairs, N_SUMMARY))
    geo_all = np.zeros(rows.shape + (N_GEO,)) if n_pairs == 0 else None  # set by the first look
    speed = np.full(n_pairs, np.nan)
    finite = np.ones(n_pairs, dtype=bool)
    active = np.arange(n_pairs)
    latest = np.full(n_pairs, np.inf)  # each pair's chi-square after its last iteration
    for _ in range(MAX_ITERATIONS):
        if active.size == 0:
            break
        # every pair (the first look): views instead of copies of the pairs' rows
        sel = slice(None) if active.size == n_pairs else active
        r, v = _propagate(params, obj[sel], batch, rows[sel], tau[sel])
        geo = _geometry(batch, rows[sel], r, v)
        ok = np.isfinite(geo.reshape(active.size, -1).sum(axis=1))
        finite[active] = ok
        if active.size == n_pairs:
            geo_all = geo
        else:
            geo_all[active] = geo
        tau_geo[active] = tau[active]
        speed[active] = np.sqrt(v[:, 0, 0] ** 2 + v[:, 0, 1] ** 2 + v[:, 0, 2] ** 2)
        stats[active[~ok]] = 0.0
        good = active[ok]
        _fit_all(
            geo_all, sig, counts, tau, tau_mean, var_prior, float(timing_sigma_s), good, stats,
            summary,
        )  # fmt: skip
        # residuals are linear in a small step: take it, and re-run SGP4 if it is not small
        tau[active] += stats[active, 0]
        latest[good] = stats[good, 4]
        best = np.full(batch.n_tracklets, np.inf)
        np.minimum.at(best, pair_trk, latest)
        hopeless = latest[good] > best[pair_trk[good]] + HOPELESS_CHI2
        active = good[(np.abs(stats[good, 0]) > TAU_TOLERANCE_S) & ~hopeless]
    chi2 = np.where(finite & np.isfinite(stats[:, 4]), stats[:, 4], np.inf)
    n_max = rows.shape[1]
    valid = np.arange(n_max)[None, :] < counts[:, None]
    range_km = np.where(valid, geo_all[:, :, G_RHO], 0.0).sum(axis=1) / np.maximum(counts, 1)
    return PairFit(
        tau_s=tau,
        normal_km=stats[:, 1:3],
        radial_km=stats[:, 3],
        chi2=chi2,
        occam=stats[:, 5],
        rms_arcsec=stats[:, 6] / ARCSEC,
        cross_track_arcsec=stats[:, 7] / ARCSEC,
        n_obs=counts,
        range_km=range_km,
        speed_kms=speed,
        summary=summary,
        tau_geo_s=tau_geo,
    )


def evaluate_priors(fit: PairFit, priors):
    """Marginal chi-square and Occam term of every pair under other priors (no SGP4).

    ``priors`` is ``(n_pairs, 4)`` or ``(n_pairs, 5)`` as for :func:`fit_pairs`, or a
    stack of such (``(n_priors, n_pairs, 4 or 5)``: all evaluated in one pass); the
    data's summary kept at the converged time offset is reused (the residuals are
    linear in small offsets there; the timing jitter is the fit's). Returns ``(chi2,
    occam)``, shaped ``(n_pairs,)`` or ``(n_priors, n_pairs)``; pairs without a
    prediction give ``inf``.
    """
    n_pairs = fit.tau_s.size
    priors = np.asarray(priors, dtype=np.float64)
    n_priors = priors.shape[0] if priors.ndim == 3 else 1
    stack = priors.reshape((n_priors, n_pairs, priors.shape[-1]))
    offset = np.empty(stack.shape[:2])
    var = np.empty(stack.shape[:2] + (4,))
    for m, one in enumerate(stack):
        tau_mean, var[m] = _prior_arrays(one, n_pairs)
        offset[m] = fit.tau_geo_s - tau_mean
    chi2 = np.empty(offset.shape)
    occam = np.empty(offset.shape)
    _evaluate_all(fit.summary, offset, var, chi2, occam)
    bad = ~np.isfinite(fit.chi2)
    chi2[:, bad] = np.inf
    occam[:, bad] = np.inf
    shape = offset.shape if priors.ndim == 3 else (n_pairs,)
    return chi2.reshape(shape), occam.reshape(shape)


def chi2_floor(fit: PairFit) -> np.ndarray:
    """Each pair's least chi-square with the time offset and the position offsets free
    (no prior), from the data's summary the fit keeps. Every deviance
    :func:`evaluate_priors` gives the pair (chi-square plus Occam term, under any prior)
    comes from that summary and is at least this: a prior only adds to the chi-square,
    and the Occam term ``ln det(I + C A)`` is never negative. ``(n_pairs,)``; pairs
    without a prediction get 0."""
    floor = np.zeros(fit.tau_s.size)
    _floor_all(np.ascontiguousarray(fit.summary), floor)
    return np.where(np.isfinite(fit.chi2), floor, 0.0)
