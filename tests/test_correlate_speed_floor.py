"""Pairs left out before the fit by their chi-square floor (issue 9): the floor bounds
every deviance from below, and leaving the pairs out changes no call, no named object,
no best score and no listed runner-up of 1e-6 or more."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from aposos.correlate.correlator import SGP4Correlator
from aposos.correlate.fit import (
    N_GEO,
    N_SUMMARY,
    ObservationBatch,
    _floor_all,
    _pair_fit,
    _summarise,
    chi2_floor,
)
from aposos.orbit.catalogue import Catalogue

HERE = Path(__file__).resolve().parent
SERIES = HERE / "data" / "shared" / "catalogues"


def _random_geometry(rng, n):
    geo = np.zeros((n, N_GEO))
    geo[:, 0:2] = rng.normal(0, 2e-5, (n, 2)) * rng.choice([1.0, 30.0])  # residuals, rad
    geo[:, 2] = rng.uniform(1e-3, 1e-2, n)  # rate, rad/s
    geo[:, 3] = rng.uniform(500, 2000, n)  # range, km
    geo[:, 4:10] = rng.normal(0, 1e-3, (n, 6))  # offsets, rad per km
    return geo


@pytest.mark.kernel
def test_floor_is_the_data_alone_least_squares_and_below_every_deviance():
    rng = np.random.default_rng(8)
    timing = 0.004
    for _ in range(30):
        n = int(rng.integers(2, 9))
        geo = _random_geometry(rng, n)
        sig = rng.uniform(1, 3, n) * math.radians(1.0 / 3600.0)
        summary = np.empty((1, N_SUMMARY))
        _summarise(geo, sig, n, timing, summary[0])
        floor = np.empty(1)
        _floor_all(summary, floor)
        # naive: weighted least squares of the four parameters, no prior
        sa = np.sqrt(sig**2 + (geo[:, 2] * timing) ** 2)
        ja = np.column_stack([geo[:, 2], geo[:, 4], geo[:, 6], geo[:, 8]]) / sa[:, None]
        jc = np.column_stack([np.zeros(n), geo[:, 5], geo[:, 7], geo[:, 9]]) / sig[:, None]
        j = np.vstack([ja, jc])
        r = np.concatenate([geo[:, 0] / sa, geo[:, 1] / sig])
        theta, *_ = np.linalg.lstsq(j, r, rcond=None)
        naive = float(np.sum((r - j @ theta) ** 2))
        assert floor[0] == pytest.approx(naive, rel=1e-6, abs=1e-6)
        for _ in range(5):  # any prior: chi-square plus Occam term is above the floor
            var = np.array([rng.uniform(0.01, 1e4), rng.uniform(1e-3, 1e3),
                            rng.uniform(1e-3, 1e3), rng.uniform(-0.99, 0.99)])  # fmt: skip
            out = np.zeros(9)
            _pair_fit(geo, sig, n, 0.0, rng.normal(0, 30), var, var, timing, out)
            assert out[4] + out[5] >= floor[0] - 1e-9 * max(1.0, floor[0])


def _night_of_tracklets(n):
    """Tracklets from the 2026-03-19 element sets over one night (the speed bench's
    stations and mix), to be correlated against the 2026-03-18 snapshot: real
    element-set errors, trains and GEO clusters."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from bench_correlate import STATIONS, make_tracklets, real_snapshot

    _, newer, night = real_snapshot(str(SERIES / "celestrak-active-2026-03-19.3le.xz"))
    tracklets, _ = make_tracklets(newer, n, seed=3, night_jd=night)
    return tracklets, STATIONS


@pytest.mark.slow
def test_leaving_out_negligible_pairs_changes_no_listed_result(tmp_path):
    tracklets, stations = _night_of_tracklets(240)
    catalogue = Catalogue.from_tle(SERIES / "celestrak-active-2026-03-18.3le.xz")
    cut = SGP4Correlator(catalogue, stations, cube_dir=tmp_path)
    every = SGP4Correlator(catalogue, stations, cube_dir=tmp_path)
    every._negligible = np.inf  # the threshold, cached: no pair is left out
    # the cut leaves out most pairs
    results = [None] * len(tracklets)
    (chunk, sites), *_ = cut._time_ordered_chunks(tracklets, results)
    batch = ObservationBatch.build(
        [tracklets[i] for i in chunk], sites, log_volume=cut.error_model.background_log_volume
    )
    pair_trk, pair_obj, tau0 = cut._gate(batch)
    order = np.lexsort((pair_obj, pair_trk))
    _, live = cut._fit_components(batch, pair_trk[order], pair_obj[order], tau0[order])
    assert live.mean() < 0.5
    assert np.unique(pair_trk[order][live]).size == batch.n_tracklets
    fits, kept_all = every._fit_components(batch, pair_trk[order], pair_obj[order], tau0[order])
    assert kept_all.all()
    # on real pairs, every deviance the scores are made of is above the floor
    fit, deviance, cluster, _, _, lost_deviance, _ = fits
    least = np.minimum(np.minimum(deviance.min(axis=1), cluster.min(axis=1)), lost_deviance)
    finite = np.isfinite(fit.chi2)
    floor = chi2_floor(fit)[finite]
    assert np.all(least[finite] >= floor - 1e-6 * np.maximum(1.0, np.abs(floor)))
    # and changes nothing a record is read for
    changed_tails = 0
    for a, b in zip(cut(tracklets), every(tracklets), strict=True):
        assert (a.status, a.norad_id) == (b.status, b.norad_id)
        assert a.score == pytest.approx(b.score, abs=1e-6)
        assert a.p_unlisted == pytest.approx(b.p_unlisted, abs=1e-6)
        listed = [c.norad_id for c in a.candidates if c.score >= 1e-6]
        assert listed == [c.norad_id for c in b.candidates if c.score >= 1e-6]
        for x, y in zip(a.candidates, b.candidates, strict=False):
            if x.score >= 1e-6:
                assert x.score == pytest.approx(y.score, abs=1e-6)
                assert x.time_offset_s == pytest.approx(y.time_offset_s, abs=1e-6)
        changed_tails += [c.norad_id for c in a.candidates] != [c.norad_id for c in b.candidates]
    assert changed_tails > 0  # the tails (scores below 1e-12) were left out
