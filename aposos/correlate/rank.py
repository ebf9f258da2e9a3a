"""Rank the coarse gate's candidates by a look along each object's real (curved) track.

The gate slides every object along a straight line, so far along the track its bend
allowance lets almost anything pass (hundreds of objects per tracklet). Before the fine
fit, each passing pair is looked at again: the object is put on its track at the
reference time plus its offset ``tau`` by the ephemeris cube (cubic Hermite, within
0.1 km of SGP4 on the cube's grid steps), ``tau`` takes a Newton step towards the line
of sight, twice, and the pair is scored by its negative log-likelihood under the best
mixture component: offset along track against the component's time sigma, miss
distance across the line of sight against its cross-track sigma plus the measurement's.

The cube block holding ``t + tau`` may be the tracklet's own or a neighbour (an offset
is at most the gate's window plus two clipped steps, well under the hour of a block), so
the kernel is given three consecutive blocks. Priors come per object for the block (at
its middle time, see :func:`block_priors`): an hour of element-set age changes them by
far less than they rank.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from aposos.orbit.jit import kernel, parallel_kernel

__all__ = [
    "MAX_STEP_S",
    "block_priors",
    "rank_order",
    "rank_scores",
    "sort_segments",
]

MAX_STEP_S = 120.0  # one Newton step on tau moves it at most this far
SIGMA_FLOOR_KM = 0.05  # cube interpolation and the straight miss near the line of sight


def block_priors(table, jd: float, fr: float, index: np.ndarray) -> np.ndarray:
    """``(n_obj, K, 4)`` per-object mixture terms at UTC ``jd + fr``: prior mean time
    offset (s), its sigma (s), the cross-track sigma (km, normal and radial together),
    and ``-2 ln weight`` (``inf`` where the component has no weight)."""
    n = index.size
    jd_n, fr_n = np.full(n, jd), np.full(n, fr)
    weights, _ = table.weights(jd_n, fr_n, index)
    out = np.empty((n, table.n_components, 4))
    parts = table.component_priors(jd_n, fr_n, index)
    for k in range(table.n_components):
        p = parts[:, k]
        out[:, k, 0] = p[:, 0]
        out[:, k, 1] = p[:, 1]
        out[:, k, 2] = np.hypot(p[:, 2], p[:, 3])
        with np.errstate(divide="ignore"):
            out[:, k, 3] = np.where(weights[:, k] > 0, -2.0 * np.log(weights[:, k]), np.inf)
    return out


@kernel
def _state(blocks, j, t_s, h, n):
    """Position (km) and velocity (km/s) of object ``j`` at ``t_s`` seconds after the
    start of the middle block; NaN beyond the three blocks (cube layout, see
    :func:`rank_scores`)."""
    q = t_s / h
    sample = math.floor(q)
    s = q - sample
    b = 1
    if sample < 0:
        sample += n
        b = 0
    elif sample >= n:
        sample -= n
        b = 2
    nan = np.nan
    if not (0 <= sample < n) or blocks[b].shape[2] <= j:
        return nan, nan, nan, nan, nan, nan
    k = int(sample)
    blk = blocks[b]
    s2 = s * s
    s3 = s2 * s
    w0, w1, w2, w3 = 2 * s3 - 3 * s2 + 1, (s3 - 2 * s2 + s) * h, -2 * s3 + 3 * s2, (s3 - s2) * h
    d0, d1 = (6 * s2 - 6 * s) / h, 3 * s2 - 4 * s + 1
    d2, d3 = (-6 * s2 + 6 * s) / h, 3 * s2 - 2 * s
    p0x, p0y, p0z = float(blk[k, 0, j]), float(blk[k, 1, j]), float(blk[k, 2, j])
    v0x, v0y, v0z = float(blk[k, 3, j]), float(blk[k, 4, j]), float(blk[k, 5, j])
    p1x, p1y, p1z = float(blk[k + 1, 0, j]), float(blk[k + 1, 1, j]), float(blk[k + 1, 2, j])
    v1x, v1y, v1z = float(blk[k + 1, 3, j]), float(blk[k + 1, 4, j]), float(blk[k + 1, 5, j])
    return (
        w0 * p0x + w1 * v0x + w2 * p1x + w3 * v1x,
        w0 * p0y + w1 * v0y + w2 * p1y + w3 * v1y,
        w0 * p0z + w1 * v0z + w2 * p1z + w3 * v1z,
        d0 * p0x + d1 * v0x + d2 * p1x + d3 * v1x,
        d0 * p0y + d1 * v0y + d2 * p1y + d3 * v1y,
        d0 * p0z + d1 * v0z + d2 * p1z + d3 * v1z,
    )


@kernel
def _object_order(obj, n_obj):
    """The pairs in object order (a counting sort, stable): looks at one object, and at
    its neighbours in the block, then share the cache lines they read."""
    start = np.zeros(n_obj + 1, dtype=np.int64)
    for j in obj:
        start[j + 1] += 1
    for j in range(n_obj):
        start[j + 1] += start[j]
    order = np.empty(obj.size, dtype=np.int64)
    for i in range(obj.size):
        order[start[obj[i]]] = i
        start[obj[i]] += 1
    return order


@parallel_kernel
def sort_segments(order, key, start):
    """Sort each ``order[start[t]:start[t + 1]]`` (ascending) by ``key``, equal keys in
    the order of ``order`` (a quicksort, then runs of equal keys put back in order)."""
    for t in prange(start.size - 1):
        segment = order[start[t] : start[t + 1]]
        by_key = np.argsort(key[segment])
        sorted_key = key[segment[by_key]]
        lo = 0
        for i in range(1, by_key.size + 1):
            if i == by_key.size or sorted_key[i] != sorted_key[lo]:
                if i - lo > 1:
                    by_key[lo:i] = np.sort(by_key[lo:i])
                lo = i
        order[start[t] : start[t + 1]] = segment[by_key]


def rank_order(pair_trk: np.ndarray, score: np.ndarray, n_trk: int):
    """``np.lexsort((score, pair_trk))`` (by tracklet, then score, stable; ``score`` not
    NaN) and where each tracklet's pairs start, ``(n_trk + 1,)``."""
    order = _object_order(np.ascontiguousarray(pair_trk, dtype=np.int64), n_trk)
    start = np.searchsorted(pair_trk[order], np.arange(n_trk + 1))
    sort_segments(order, np.ascontiguousarray(score, dtype=np.float64), start)
    return order, start


@kernel
def _gather(order, obj, trk, tau):
    n = order.size
    obj_s, trk_s, tau_s = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
    for i in range(n):
        obj_s[i], trk_s[i], tau_s[i] = obj[order[i]], trk[order[i]], tau[order[i]]
    return obj_s, trk_s, tau_s


@kernel
def _scatter(order, sorted_out, out):
    for i in range(order.size):
        for c in range(3):
            out[order[i], c] = sorted_out[i, c]


@parallel_kernel
def _rank_kernel(blocks, h, n, obj, trk, t0, tau, site, u, sigma, priors, out):
    """Pair ``i`` (object ``obj[i]``, tracklet ``trk[i]``, in the order given) into
    ``out[i]``: tau, miss, score."""
    for i in prange(obj.size):
        j = obj[i]
        t = trk[i]
        ux, uy, uz = u[t, 0], u[t, 1], u[t, 2]
        ta = tau[i]
        miss = np.inf
        rho = 0.0
        for _ in range(2):
            px, py, pz, vx, vy, vz = _state(blocks, j, t0[t] + ta, h, n)
            dx, dy, dz = px - site[t, 0], py - site[t, 1], pz - site[t, 2]
            rho = dx * ux + dy * uy + dz * uz
            vu = vx * ux + vy * uy + vz * uz
            ax, ay, az = dx - rho * ux, dy - rho * uy, dz - rho * uz
            bx, by, bz = vx - vu * ux, vy - vu * uy, vz - vu * uz
            step = -(ax * bx + ay * by + az * bz) / max(bx * bx + by * by + bz * bz, 1e-12)
            mx, my, mz = ax + step * bx, ay + step * by, az + step * bz
            miss = math.sqrt(mx * mx + my * my + mz * mz)
            if math.isnan(step):  # off the cube (a failed propagation, or beyond it)
                miss = np.inf
                break
            ta += min(max(step, -MAX_STEP_S), MAX_STEP_S)
        out[i, 0] = ta
        out[i, 1] = miss
        sigma_meas = sigma[t] * max(rho, 0.0)
        best = np.inf
        if math.isfinite(miss):
            for k in range(priors.shape[1]):
                p = priors[j, k]
                if not math.isfinite(p[3]):
                    continue
                sx = math.hypot(p[2], sigma_meas) + SIGMA_FLOOR_KM
                z = (ta - p[0]) / p[1]
                nll = z * z + (miss / sx) ** 2 + 2.0 * math.log(p[1] * sx) + p[3]
                best = min(best, nll)
        out[i, 2] = best


def rank_scores(blocks, step_s, obj, t0_s, tau_s, site_km, u, sigma_rad, priors, trk=None):
    """Refined offsets and scores of gate pairs whose reference times share a block.

    Parameters
    ----------
    blocks : the previous, own and next cube blocks, ``(n + 1, 6, n_obj)`` float32 as
        the cube keeps them (an unneeded neighbour may be a ``(1, 6, 0)`` stand-in: a
        pair that reaches it scores ``inf``). The pairs are looked at in object order, so
        consecutive looks read the same cache lines of this layout.
    step_s : grid step (s).
    obj : ``(n_pairs,)`` object index in the blocks.
    t0_s : ``(n_trk,)`` reference time, seconds after the start of the own block.
    tau_s : ``(n_pairs,)`` the gate's offset (s).
    site_km, u : ``(n_trk, 3)`` station position and observed unit direction (TEME).
    sigma_rad : ``(n_trk,)`` the measurement's angular sigma.
    priors : :func:`block_priors` of the blocks' objects.
    trk : ``(n_pairs,)`` each pair's row in the tracklet arrays (``None``: those arrays
        are per pair).

    Returns
    -------
    tau : ``(n_pairs,)`` refined offsets (s); miss : ``(n_pairs,)`` distance of the
    object's track from the line of sight there (km); score : ``(n_pairs,)`` ``-2 ln``
    likelihood up to a constant, lower is likelier (``inf``: no valid look).
    """
    n = blocks[1].shape[0] - 1
    obj = np.ascontiguousarray(obj, dtype=np.int64)
    trk = np.arange(obj.size) if trk is None else np.ascontiguousarray(trk, dtype=np.int64)
    tau_s = np.ascontiguousarray(tau_s, dtype=np.float64)
    # looked at in object order (a look at one object, or a neighbour in the block,
    # then reads the cache lines the previous one did), answered in the order given
    order = _object_order(obj, priors.shape[0])
    obj_s, trk_s, tau_s = _gather(order, obj, trk, tau_s)
    sorted_out = np.empty((obj.size, 3))
    _rank_kernel(
        tuple(np.ascontiguousarray(b, dtype=np.float32) for b in blocks), float(step_s), n,
        obj_s, trk_s, np.ascontiguousarray(t0_s, dtype=np.float64),
        tau_s, np.ascontiguousarray(site_km, np.float64),
        np.ascontiguousarray(u, dtype=np.float64), np.ascontiguousarray(sigma_rad, np.float64),
        np.ascontiguousarray(priors, dtype=np.float64), sorted_out,
    )  # fmt: skip
    out = np.empty((obj.size, 3))
    _scatter(order, sorted_out, out)
    return out[:, 0], out[:, 1], out[:, 2]
