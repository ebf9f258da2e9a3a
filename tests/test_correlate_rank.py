"""The gate pairs' ranking look (aposos.correlate.rank) against python-sgp4.

The kernel puts each object on its track with the ephemeris cube; the naive version here
does the same two Newton steps with python-sgp4 (Vallado's code, the outside authority)
at the exact times, in plain numpy. Tolerances are physical: the cube's Hermite
interpolation is good to about 0.1 km at these grid steps, i.e. hundredths of a second
along a LEO track.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sgp4.api import Satrec

from aposos.correlate.model import ErrorModel
from aposos.correlate.rank import (
    MAX_STEP_S,
    SIGMA_FLOOR_KM,
    block_priors,
    rank_scores,
)
from aposos.orbit.catalogue import Catalogue
from aposos.orbit.ephemeris import HermiteEphemeris

pytestmark = pytest.mark.kernel  # also run with NUMBA_DISABLE_JIT=1 by make test

SNAPSHOT = Path(__file__).parent / "data" / "shared" / "catalogues"
SNAPSHOT = SNAPSHOT / "celestrak-active-2020-10-02.3le"
one_km = 1.0
one_arcsec_rad = np.radians(1.0 / 3600.0)
BLOCK = 181_932  # 2020-10-02 12-13 h UTC, near the snapshot's epochs (hours from 2000)


def _sgp4_look(satrec, jd, fr, tau, site, u):
    """Two Newton steps of tau towards the line of sight, python-sgp4 at the exact times."""
    miss = rho = np.nan
    for _ in range(2):
        err, r, v = satrec.sgp4(jd, fr + tau / 86400.0)
        assert err == 0
        d = np.asarray(r) - site
        rho = d @ u
        pd = d - rho * u
        pv = np.asarray(v) - (np.asarray(v) @ u) * u
        step = -(pd @ pv) / (pv @ pv)
        miss = np.linalg.norm(pd + step * pv)
        tau += np.clip(step, -MAX_STEP_S, MAX_STEP_S)
    return tau, miss, rho


@pytest.fixture(scope="module")
def sky():
    lines = SNAPSHOT.read_text().splitlines()
    rng = np.random.default_rng(3)
    records = rng.choice(len(lines) // 3, 150, replace=False)
    chosen = [line for i in sorted(records) for line in lines[3 * i : 3 * i + 3]]
    cat = Catalogue.from_tle(chosen)
    leo = np.flatnonzero(cat.orbit_class == "LEO")
    cat = cat.subset(leo)
    satrecs = {
        int(Satrec.twoline2rv(a, b).satnum): Satrec.twoline2rv(a, b)
        for a, b in zip(chosen[1::3], chosen[2::3], strict=True)
    }
    return cat, [satrecs[int(n)] for n in cat.norad_id]


def test_look_on_the_cube_matches_sgp4(sky):
    """Offsets, miss distances and scores of the cube look against python-sgp4's."""
    cat, satrecs = sky
    eph = HermiteEphemeris(cat, step_s=180)
    blocks = tuple(eph.block(b) for b in (BLOCK - 1, BLOCK, BLOCK + 1))
    start_jd, start_fr = eph.sample_times(BLOCK * eph.samples_per_block, 1)
    rng = np.random.default_rng(8)
    n = len(cat)
    obj = np.arange(n)
    t0 = rng.uniform(0.0, 3600.0, n)  # reference times in the block
    jd, fr = np.full(n, start_jd[0]), start_fr[0] + t0 / 86400.0
    site = np.array([5000.0, 3000.0, 2500.0])
    # each line of sight passes a few km off the object's track, some minutes away
    true_tau = rng.uniform(-600.0, 600.0, n)
    u = np.empty((n, 3))
    for i, sat in enumerate(satrecs):
        _, r, v = sat.sgp4(jd[i], fr[i] + true_tau[i] / 86400.0)
        d = np.asarray(r) + rng.normal(0.0, 3.0, 3) - site
        u[i] = d / np.linalg.norm(d)
    tau0 = true_tau + rng.normal(0.0, 20.0, n)  # the gate's straight-line guess
    sigma = np.full(n, 1.5 * one_arcsec_rad)
    table = ErrorModel.default().table(cat)
    mid_jd, mid_fr = eph.sample_times(BLOCK * eph.samples_per_block + 10, 1)
    priors = block_priors(table, mid_jd[0], mid_fr[0], obj)
    tau, miss, score = rank_scores(blocks, 180, obj, t0, tau0, site[None] * np.ones((n, 1)), u,
                                   sigma, priors)  # fmt: skip

    for i, sat in enumerate(satrecs):
        want_tau, want_miss, rho = _sgp4_look(sat, jd[i], fr[i], tau0[i], site, u[i])
        # 0.1 km of cube error at 7.5 km/s
        assert tau[i] == pytest.approx(want_tau, abs=0.02), i
        assert miss[i] == pytest.approx(want_miss, abs=0.1 * one_km), i
        p = priors[i]
        sx = np.hypot(p[:, 2], sigma[i] * max(rho, 0.0)) + SIGMA_FLOOR_KM
        nll = ((want_tau - p[:, 0]) / p[:, 1]) ** 2 + (want_miss / sx) ** 2
        nll += 2.0 * np.log(p[:, 1] * sx) + p[:, 3]
        assert score[i] == pytest.approx(nll.min(), abs=0.05 + 0.01 * abs(nll.min())), i


def test_a_look_beyond_the_given_blocks_scores_nothing(sky):
    """A neighbour block that was not loaded (the stand-in) gives an infinite score."""
    cat, _ = sky
    eph = HermiteEphemeris(cat, step_s=180)
    stand_in = np.zeros((1, 6, 0), dtype=np.float32)
    n = len(cat)
    obj = np.arange(n)
    table = ErrorModel.default().table(cat)
    jd, fr = eph.sample_times(BLOCK * eph.samples_per_block, 1)
    priors = block_priors(table, jd[0], fr[0], obj)
    site = np.zeros((n, 3))
    u = np.tile([1.0, 0.0, 0.0], (n, 1))
    sigma = np.full(n, one_arcsec_rad)
    blocks = (stand_in, eph.block(BLOCK), stand_in)
    _, _, before = rank_scores(blocks, 180, obj, np.full(n, 10.0), np.full(n, -400.0), site, u,
                               sigma, priors)  # fmt: skip
    _, _, after = rank_scores(blocks, 180, obj, np.full(n, 3590.0), np.full(n, 400.0), site, u,
                              sigma, priors)  # fmt: skip
    _, _, inside = rank_scores(blocks, 180, obj, np.full(n, 1800.0), np.zeros(n), site, u,
                               sigma, priors)  # fmt: skip
    assert np.isinf(before).all() and np.isinf(after).all()
    assert np.isfinite(inside).any()


def test_fit_takes_the_first_few_and_the_near_ones():
    """``fit_worthy`` against its rule written out pair by pair: the first ``N_FIT_MIN``
    of each tracklet, then those within ``RANK_GAP`` of its best, never more than
    ``N_FIT``, never an infinite score."""
    from aposos.correlate.correlator import N_FIT, N_FIT_MIN, RANK_GAP, fit_worthy

    rng = np.random.default_rng(4)
    counts = [0, 3, N_FIT_MIN + 5, N_FIT + 20, 40]
    trk, score, rank = [], [], []
    for t, n in enumerate(counts):
        s = np.sort(rng.uniform(0.0, 3.0 * RANK_GAP, n))
        s[-1:] = np.inf if n else s[-1:]  # the worst of each: no valid look
        trk += [t] * n
        score += s.tolist()
        rank += list(range(n))
    trk, score, rank = np.array(trk), np.array(score), np.array(rank)
    keep = fit_worthy(trk, score, rank, len(counts))
    for i in range(trk.size):
        best = score[(trk == trk[i]) & (rank == 0)][0]
        near = score[i] <= best + RANK_GAP
        expected = np.isfinite(score[i]) and rank[i] < N_FIT and (rank[i] < N_FIT_MIN or near)
        assert keep[i] == expected, i
    assert np.bincount(trk[keep], minlength=len(counts))[3] <= N_FIT
