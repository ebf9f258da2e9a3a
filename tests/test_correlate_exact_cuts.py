"""The correlator's faster paths give exactly what the plain ones gave.

Each fast path here (the gate's few kept per chunk and heap of its worst candidate, the
rank's looks in object order, the pairs' order by tracklet and score without
``np.lexsort``) must change no result, not even the order of ties: the plain algorithm is written out here and the
outputs are compared for equality, on inputs made to tie often.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from aposos.correlate import gate
from aposos.correlate.rank import rank_order, rank_scores

pytestmark = pytest.mark.kernel  # also run with NUMBA_DISABLE_JIT=1 by make test


def _collect_plainly(ratio, taus, tau_mid, tau_max, cap):
    """The gate's keep-the-best list as first written: a full scan for the worst slot
    after each replacement (the larger score, the first such slot)."""
    idx, tau, miss = [], [], []
    for j in range(ratio.size):
        if not ratio[j] <= 1.0:
            continue
        # compiled, the float32 inputs meet a float64 constant and the sum is float64;
        # under NUMBA_DISABLE_JIT numpy keeps float32 scalars float32
        real = np.float32 if numba.config.DISABLE_JIT else float
        along = real(taus[j] - tau_mid[j]) / max(real(tau_max[j]), real(1e-3))
        r = np.float32(real(ratio[j]) + along * along)
        if len(idx) < cap:
            idx.append(j), tau.append(taus[j]), miss.append(r)
            continue
        worst = int(np.argmax(miss))  # the first of the largest
        if r < miss[worst]:
            idx[worst], tau[worst], miss[worst] = j, taus[j], r
    return len(idx), idx, tau, miss


def _circular_block(rng, n_obj, n, step):
    """A cube block ``(n + 1, 6, n_obj)`` of circular 7000 km orbits in assorted planes."""
    phase = rng.uniform(0, 2 * np.pi, n_obj)
    tilt = rng.uniform(0, np.pi, n_obj)
    angle = phase[None, :] + 7.5 / 7000.0 * (np.arange(n + 1) * step)[:, None]
    block = np.empty((n + 1, 6, n_obj), np.float32)
    block[:, 0] = 7000 * np.cos(angle)
    block[:, 1] = 7000 * np.sin(angle) * np.cos(tilt)
    block[:, 2] = 7000 * np.sin(angle) * np.sin(tilt)
    block[:, 3] = -7.5 * np.sin(angle)
    block[:, 4] = 7.5 * np.cos(angle) * np.cos(tilt)
    block[:, 5] = 7.5 * np.cos(angle) * np.sin(tilt)
    return block


@pytest.mark.parametrize("ties", [False, True])
def test_gate_keeps_the_same_best_candidates_in_the_same_order(ties):
    """The gate's tiles keep a few passing objects per chunk and look again at a chunk
    with more; the result must be the plain scan's: every object's ratio, the ``cap``
    best kept on the heap, then sorted closest first (stable)."""
    rng = np.random.default_rng(11)
    step, n = 180.0, 20
    for _ in range(6):
        n_obj, n_trk = int(rng.integers(1, 7000)), int(rng.integers(1, 12))
        block = _circular_block(rng, n_obj, n, step)
        if ties:  # copies of a few objects: equal ratios, equal scores
            block = np.ascontiguousarray(block[:, :, rng.integers(0, min(n_obj, 7), n_obj)])
        cap = int(rng.choice([1, 7, 64, 1024]))
        k = rng.integers(0, n, n_trk)
        s = rng.uniform(0, 1, n_trk)
        w = np.stack([2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2,
                      s**3 - s**2, 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1,
                      -6 * s**2 + 6 * s, 3 * s**2 - 2 * s], axis=1)  # fmt: skip
        site = rng.normal(0, 6400 / np.sqrt(3), (n_trk, 3))
        u = rng.normal(0, 1, (n_trk, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        tau_mid = rng.normal(0, 20, n_obj).astype(np.float32)
        tau_max = rng.uniform(10, 600, n_obj).astype(np.float32)
        cross = rng.uniform(0, 3000, n_obj).astype(np.float32)  # many pass
        theta = rng.uniform(0, 1e-3, n_trk)
        counts, objects, taus = gate.gate_block(
            block, step, k, w, site, u, tau_mid, tau_max, cross, theta, cap=cap
        )
        assert counts.sum() > 0
        start = np.concatenate([[0], np.cumsum(counts)])
        for t in range(n_trk):
            ratio = np.empty(n_obj, np.float32)
            tau = np.empty(n_obj, np.float32)
            gate._miss_ratios(
                block, k[t], w[t], np.float32(step), site[t], u[t], tau_mid, tau_max, cross,
                np.float32(theta[t]), ratio, tau, 0, n_obj,
            )  # fmt: skip
            m, p_idx, p_tau, p_miss = _collect_plainly(ratio, tau, tau_mid, tau_max, cap)
            by_miss = np.argsort(np.asarray(p_miss, np.float32), kind="stable")
            assert counts[t] == m
            assert objects[start[t] : start[t + 1]].tolist() == np.asarray(p_idx)[by_miss].tolist()
            expect = np.asarray(p_tau, np.float32)[by_miss].astype(np.float64)
            assert taus[start[t] : start[t + 1]].tolist() == expect.tolist()


def test_rank_order_is_lexsort_by_tracklet_then_score():
    rng = np.random.default_rng(5)
    for digits in (0, 1, 6):
        n_trk = 50
        trk = rng.integers(0, n_trk, 20_000)
        score = np.round(rng.normal(0, 3, trk.size), digits)
        score[rng.random(trk.size) < 0.1] = np.inf
        order, start = rank_order(trk, score, n_trk)
        assert np.array_equal(order, np.lexsort((score, trk)))
        assert np.array_equal(start, np.searchsorted(trk[order], np.arange(n_trk + 1)))


def test_rank_looks_do_not_depend_on_their_order_or_on_per_tracklet_rows():
    """Looks go in object order inside the kernel; each answer must land on its own pair,
    and per-tracklet rows (``trk``) must give what per-pair rows give."""
    rng = np.random.default_rng(2)
    n_obj, n_trk, n_pairs, n = 300, 20, 4000, 20
    step = 180.0
    block = np.empty((n_obj, n + 1, 6), np.float32)
    # circular orbits of 7000 km in assorted planes, sampled every step
    phase = rng.uniform(0, 2 * np.pi, n_obj)
    rate = 7.5 / 7000.0
    t = np.arange(n + 1) * step
    angle = phase[:, None] + rate * t[None, :]
    tilt = rng.uniform(0, np.pi, n_obj)[:, None]
    block[:, :, 0] = 7000 * np.cos(angle)
    block[:, :, 1] = 7000 * np.sin(angle) * np.cos(tilt)
    block[:, :, 2] = 7000 * np.sin(angle) * np.sin(tilt)
    block[:, :, 3] = -7.5 * np.sin(angle)
    block[:, :, 4] = 7.5 * np.cos(angle) * np.cos(tilt)
    block[:, :, 5] = 7.5 * np.cos(angle) * np.sin(tilt)
    stand_in = np.zeros((1, 6, 0), np.float32)
    blocks = (stand_in, np.ascontiguousarray(block.transpose(1, 2, 0)), stand_in)  # cube layout
    priors = np.zeros((n_obj, 2, 4))
    priors[:, :, 1] = [5.0, 60.0]
    priors[:, :, 2] = [1.0, 20.0]
    priors[:, :, 3] = [0.2, 3.0]
    site = rng.normal(0, 6400 / np.sqrt(3), (n_trk, 3))
    u = rng.normal(0, 1, (n_trk, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    t0 = rng.uniform(600, 3000, n_trk)
    sigma = np.full(n_trk, 1e-5)
    obj = rng.integers(0, n_obj, n_pairs)
    trk = rng.integers(0, n_trk, n_pairs)
    tau = rng.normal(0, 100, n_pairs)
    per_trk = rank_scores(blocks, step, obj, t0, tau, site, u, sigma, priors, trk=trk)
    per_pair = rank_scores(blocks, step, obj, t0[trk], tau, site[trk], u[trk], sigma[trk], priors)
    shuffle = rng.permutation(n_pairs)
    shuffled = rank_scores(
        blocks, step, obj[shuffle], t0, tau[shuffle], site, u, sigma, priors, trk=trk[shuffle]
    )
    assert np.isfinite(per_trk[2]).mean() > 0.5
    for a, b, c in zip(per_trk, per_pair, shuffled, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
        assert np.array_equal(a[shuffle], c, equal_nan=True)
