"""Coarse gate: which catalogued objects could have made a tracklet.

For each tracklet take its middle observation: time ``t``, station position ``s`` and
observed (geometric) unit direction ``u``, all in TEME axes. Interpolate every object
of the ephemeris cube at ``t`` (cubic Hermite: position ``p``, velocity ``v``) and slide
it along its own track, ``p + v tau``. The ``tau`` that brings it closest to the line of
sight ``s + rho u`` is, with ``d = p - s`` and ``P`` the projection across ``u``,
``tau* = -(P d . P v) / |P v|^2`` (clipped to the object's window ``|tau - m| <= T``), and
the miss distance is ``|P d + tau* P v|`` km. The object passes when

    miss <= X + rho theta + g tau*^2 / 2

with ``X`` its cross-track allowance (km), ``theta`` the angular allowance of the
measurement, and ``g tau*^2 / 2`` the bend of the real (curved) track away from the
straight line over ``tau*``. ``m``, ``T`` and ``X`` come from the error model (prior mean
and ``gate_sigma`` sigmas), so the gate drops no object the fine fit could accept.

The kernel goes over the tracklets in parallel, each against every object a chunk at a
time: a branch-free pass (float32, structure-of-arrays, so it vectorises) computes a
normalised miss for every object of the chunk, then the passing ones, in object order
while still in cache, go on a heap of the ``cap`` closest, sorted closest first at the
end. Tracklets are taken in the order of their cube interval, so consecutive ones read the
same samples. One parallel region per block: each costs a wait for both cores, long when
another process holds one.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from aposos.orbit.jit import inline_kernel, kernel, parallel_kernel

__all__ = ["gate_block"]

MU_KM3_S2 = 398600.4418
MAX_GATE_CANDIDATES = 64
OBJECT_CHUNK = 2048  # objects per pass: their ratios are looked at while in cache


@kernel
def _miss_ratios(block, kk, w, h, site, u, tau_mid, tau_max, cross_km, th, ratio, taus, j0, j1):
    """Branch-free pass over objects ``j0:j1``: squared normalised miss (<= 1 passes) and
    tau* of object ``j`` into ``ratio[j - j0]``, ``taus[j - j0]``."""
    inv_h = np.float32(1.0) / h
    half_mu = np.float32(0.5 * MU_KM3_S2)
    tiny = np.float32(1e-12)
    zero = np.float32(0.0)
    w0, w1, w2, w3 = np.float32(w[0]), np.float32(w[1]) * h, np.float32(w[2]), np.float32(w[3]) * h
    d0, d1 = np.float32(w[4]) * inv_h, np.float32(w[5])
    d2, d3 = np.float32(w[6]) * inv_h, np.float32(w[7])
    sx, sy, sz = np.float32(site[0]), np.float32(site[1]), np.float32(site[2])
    ux, uy, uz = np.float32(u[0]), np.float32(u[1]), np.float32(u[2])
    p0x, p0y, p0z = block[kk, 0, j0:j1], block[kk, 1, j0:j1], block[kk, 2, j0:j1]
    v0x, v0y, v0z = block[kk, 3, j0:j1], block[kk, 4, j0:j1], block[kk, 5, j0:j1]
    p1x, p1y, p1z = block[kk + 1, 0, j0:j1], block[kk + 1, 1, j0:j1], block[kk + 1, 2, j0:j1]
    v1x, v1y, v1z = block[kk + 1, 3, j0:j1], block[kk + 1, 4, j0:j1], block[kk + 1, 5, j0:j1]
    mid, half, cross = tau_mid[j0:j1], tau_max[j0:j1], cross_km[j0:j1]
    # unsigned index: numba then skips negative-index wraparound, and the loop vectorises
    for j in range(np.uint64(j1 - j0)):
        px = w0 * p0x[j] + w1 * v0x[j] + w2 * p1x[j] + w3 * v1x[j]
        py = w0 * p0y[j] + w1 * v0y[j] + w2 * p1y[j] + w3 * v1y[j]
        pz = w0 * p0z[j] + w1 * v0z[j] + w2 * p1z[j] + w3 * v1z[j]
        vx = d0 * p0x[j] + d1 * v0x[j] + d2 * p1x[j] + d3 * v1x[j]
        vy = d0 * p0y[j] + d1 * v0y[j] + d2 * p1y[j] + d3 * v1y[j]
        vz = d0 * p0z[j] + d1 * v0z[j] + d2 * p1z[j] + d3 * v1z[j]
        dx, dy, dz = px - sx, py - sy, pz - sz
        du = dx * ux + dy * uy + dz * uz
        vu = vx * ux + vy * uy + vz * uz
        ax, ay, az = dx - du * ux, dy - du * uy, dz - du * uz
        bx, by, bz = vx - vu * ux, vy - vu * uy, vz - vu * uz
        bb = bx * bx + by * by + bz * bz + tiny
        tau = -(ax * bx + ay * by + az * bz) / bb
        tau = min(max(tau, mid[j] - half[j]), mid[j] + half[j])
        mx, my, mz = ax + tau * bx, ay + tau * by, az + tau * bz
        miss2 = mx * mx + my * my + mz * mz
        rho = du + tau * vu
        g = half_mu / (px * px + py * py + pz * pz)
        allowed = cross[j] + max(rho, zero) * th + g * tau * tau
        # compare squares (no sqrt); rho <= 0 (behind the station) and NaN never pass
        ok = rho > zero
        ratio[j] = miss2 / (allowed * allowed) if ok else np.float32(np.inf)
        taus[j] = tau


@inline_kernel
def _worse(miss, a, b):
    """Whether slot ``a`` is evicted before slot ``b``: the larger score, then the lower
    slot."""
    return miss[a] > miss[b] or (miss[a] == miss[b] and a < b)


@inline_kernel
def _sift_down(heap, miss, i, n):
    """Restore the heap (worst slot on top, :func:`_worse`) below position ``i``."""
    while True:
        top = i
        for child in (2 * i + 1, 2 * i + 2):
            if child < n and _worse(miss, heap[child], heap[top]):
                top = child
        if top == i:
            return
        heap[i], heap[top] = heap[top], heap[i]
        i = top


@inline_kernel
def _offer(j, tau_j, ratio_j, tau_mid, tau_max, n, idx, tau, miss, heap):
    """Offer passing object ``j`` (its tau* and ratio) to a list of ``n`` kept in slots
    ``idx, tau, miss``; returns the new ``n``.

    "Best" adds the squared share of the along-track window used to the miss ratio: far
    along the track the bend allowance grows with ``tau^2`` and makes any object's
    ratio small, so ranking by the ratio alone would fill the list with objects minutes
    away and crowd out one seconds away that is a little off its track.

    Once full (``cap`` slots), a better object takes the worst one's slot (the larger
    score, then the lower slot), kept on top of a heap of slots (``heap``: scratch of
    ``cap``).
    """
    cap = idx.size
    along = (tau_j - tau_mid[j]) / max(tau_max[j], 1e-3)
    r = ratio_j + along * along
    if n < cap:
        idx[n] = j
        tau[n] = tau_j
        miss[n] = r
        n += 1
        if n == cap:
            for i in range(cap):
                heap[i] = i
            for i in range(cap // 2 - 1, -1, -1):
                _sift_down(heap, miss, i, cap)
    elif r < miss[heap[0]]:
        worst = heap[0]
        idx[worst] = j
        tau[worst] = tau_j
        miss[worst] = r
        _sift_down(heap, miss, 0, cap)
    return n


@parallel_kernel
def _gate_rows(
    block, k, w, step_s, site, u, tau_mid, tau_max, cross_km, theta, out_n, out_idx, out_tau,
    out_miss,
):  # fmt: skip
    """Each tracklet against every object, a chunk of objects at a time: the passing ones
    in object order, the ``cap`` best kept (:func:`_offer`), closest first (stable: ties
    in slot order), into ``out_*[t]``. Tracklets come sorted by interval, so consecutive
    ones read the same samples (they stay in cache)."""
    n_obj = block.shape[2]
    h = np.float32(step_s)
    n_chunks = (n_obj + OBJECT_CHUNK - 1) // OBJECT_CHUNK
    for t in prange(k.shape[0]):
        heap = np.empty(out_idx.shape[1], dtype=np.int64)
        ratio = np.empty(OBJECT_CHUNK, dtype=np.float32)
        taus = np.empty(OBJECT_CHUNK, dtype=np.float32)
        idx, tau, miss = out_idx[t], out_tau[t], out_miss[t]
        n = 0
        for c in range(n_chunks):
            j0 = c * OBJECT_CHUNK
            j1 = min(n_obj, j0 + OBJECT_CHUNK)
            _miss_ratios(
                block, k[t], w[t], h, site[t], u[t], tau_mid, tau_max, cross_km,
                np.float32(theta[t]), ratio, taus, j0, j1,
            )  # fmt: skip
            for j in range(j1 - j0):  # still in cache
                if ratio[j] <= 1.0:
                    n = _offer(j0 + j, taus[j], ratio[j], tau_mid, tau_max, n, idx, tau, miss,
                               heap)  # fmt: skip
        out_n[t] = n
        _closest_first(n, idx, tau, miss)


@kernel
def _closest_first(n, idx, tau, miss):
    """Sort the first ``n`` slots by ``miss`` (>= 0), ties in slot order: one integer
    sort of keys made of the score's bits (ordered as the numbers are) and the slot."""
    bits = miss[:n].view(np.int32)
    key = np.empty(n, dtype=np.int64)
    for i in range(n):
        key[i] = (np.int64(bits[i]) << 32) | i
    key.sort()
    slot = key & 0xFFFFFFFF
    idx[:n] = idx[:n][slot]
    tau[:n] = tau[:n][slot]
    miss[:n] = miss[:n][slot]


def gate_block(
    block, step_s, k, w, site_teme_km, u_teme, tau_mid_s, tau_max_s, cross_km, theta_rad,
    cap: int = MAX_GATE_CANDIDATES,
):  # fmt: skip
    """Run the coarse gate for tracklets whose reference time falls in one cube block.

    Parameters
    ----------
    block : ``(n + 1, 6, n_obj)`` float32 cube block (:class:`HermiteEphemeris`).
    step_s : grid step of the block.
    k, w : interval index in the block and Hermite weights ``(n_trk, 8)`` of each
        tracklet's reference time.
    site_teme_km, u_teme : ``(n_trk, 3)`` station position and observed geometric unit
        direction, TEME axes, at the reference time.
    tau_mid_s, tau_max_s : ``(n_obj,)`` float32 centre and half-width of the along-track
        window (s) of every object.
    cross_km : ``(n_obj,)`` float32 cross-track allowance (km) of every object.
    theta_rad : ``(n_trk,)`` angular allowance of each tracklet's measurement.
    cap : at most this many candidates per tracklet (the best, see :func:`_offer`).

    Returns
    -------
    counts : ``(n_trk,)`` int64, how many objects pass for each tracklet;
    objects, taus : int64 / float64 arrays of ``counts.sum()``: the objects of tracklet
    0, then 1, ..., each tracklet's the closest first (see :func:`_offer`).
    """
    k = np.ascontiguousarray(k, dtype=np.int64)
    n_trk = int(k.size)
    order = np.argsort(k, kind="stable")
    w = np.ascontiguousarray(w, dtype=np.float64)
    site_teme_km = np.ascontiguousarray(site_teme_km, dtype=np.float64)
    u_teme = np.ascontiguousarray(u_teme, dtype=np.float64)
    theta_rad = np.ascontiguousarray(theta_rad, dtype=np.float64)
    tau_mid_s = np.ascontiguousarray(tau_mid_s, dtype=np.float32)
    tau_max_s = np.ascontiguousarray(tau_max_s, dtype=np.float32)
    cross_km = np.ascontiguousarray(cross_km, dtype=np.float32)
    args = (
        block, k[order], w[order], float(step_s), site_teme_km[order], u_teme[order],
        tau_mid_s, tau_max_s, cross_km, theta_rad[order],
    )  # fmt: skip
    sorted_n = np.zeros(n_trk, dtype=np.int64)
    sorted_idx = np.empty((n_trk, cap), dtype=np.int64)
    sorted_tau = np.empty((n_trk, cap), dtype=np.float32)
    sorted_miss = np.empty((n_trk, cap), dtype=np.float32)
    _gate_rows(*args, sorted_n, sorted_idx, sorted_tau, sorted_miss)
    out_n = np.empty(n_trk, dtype=np.int64)
    out_n[order] = sorted_n
    # each tracklet's kept candidates, tracklet 0 first
    start = np.concatenate([[0], np.cumsum(out_n)])
    kept = np.arange(cap)[None, :] < sorted_n[:, None]
    first = np.cumsum(sorted_n) - sorted_n
    dest = np.repeat(start[order] - first, sorted_n) + np.arange(sorted_n.sum())
    objects = np.empty(start[-1], dtype=np.int64)
    taus = np.empty(start[-1], dtype=np.float64)
    objects[dest] = sorted_idx[kept]
    taus[dest] = sorted_tau[kept]
    return out_n, objects, taus
