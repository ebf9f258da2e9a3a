"""Correlation engine: truth sets made by an independent path, real element-set errors,
error handling, the command line, and Dask.

The truth sets (``truthset.py``) are built with python-sgp4 and astropy only; the real
test uses the two CelesTrak snapshots two days apart (observations from the newer one,
correlated against the older one). Issue goals: >= 99.5 % correct identities, <= 0.1 %
confidently wrong, >= 99 % of missing-object tracklets reported uncorrelated.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from truthset import build_truth_set, score_truth

from aposos.correlate.correlator import SGP4Correlator
from aposos.correlate.decide import chi2_sf_even, decide, score_pairs
from aposos.correlate.fit import N_GEO, _pair_fit
from aposos.correlate.gate import _miss_ratios
from aposos.correlate.model import ErrorModel
from aposos.correlate.sites import load_sites, read_station_sites
from aposos.model import Site, Tracklet
from aposos.orbit.catalogue import Catalogue

HERE = Path(__file__).resolve().parent
CATALOGUES = HERE / "data" / "shared" / "catalogues"
NEWER = CATALOGUES / "celestrak-active-2020-10-02.3le"
OLDER = CATALOGUES / "celestrak-active-2020-09-30.3le"
one_arcsec = 1.0 / 3600.0


def _sites(truth):
    return {code: Site(*where) for code, where in truth.sites.items()}


def _report(name, stats):
    print(
        f"\n{name}: "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()
        )
    )


@pytest.fixture(scope="module")
def truth():
    return build_truth_set(NEWER, n_tracklets=300, seed=11)


@pytest.fixture(scope="module")
def catalogue(truth):
    return Catalogue.from_tle(truth.catalogue_lines)


def _truth_model():
    """The packaged model with the truth set's own share of uncatalogued objects (12 %):
    the prior is a deployment setting."""
    return replace(ErrorModel.default(), uncatalogued_fraction=0.12)


@pytest.fixture(scope="module")
def correlator(truth, catalogue, tmp_path_factory):
    return SGP4Correlator(
        catalogue, _sites(truth), cube_dir=tmp_path_factory.mktemp("cubes"),
        error_model=_truth_model(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def results(truth, correlator):
    return correlator([t.tracklet for t in truth.tracklets])


# --------------------------------------------------------------------- exactness


def test_prediction_chain_agrees_with_astropy(tmp_path):
    """Noise-free observations of exact element sets: zero offset, residuals well under 1".

    No timing jitter is modelled (there is none), so the prior does not pull the fitted
    time offset; what is left is the difference between our frames and astropy's (below
    0.1" for the fastest LEO passes, a few mas for GEO), shared out by the joint fit of
    the time and position offsets (the RMS is taken after the time offset alone)."""
    exact = build_truth_set(
        NEWER, n_tracklets=60, seed=5, perturb=False, noise=False, missing_fraction=0.0
    )
    cat = Catalogue.from_tle(exact.catalogue_lines)
    model = ErrorModel(timing_sigma_s=1e-6)
    corr = SGP4Correlator(cat, _sites(exact), cube_dir=tmp_path, error_model=model)
    out = corr([t.tracklet for t in exact.tracklets])
    for res, t in zip(out, exact.tracklets, strict=True):
        if t.colocated:
            continue
        # exact element sets of train members may still share the probability
        assert res.status in ("correlated", "ambiguous")
        assert res.candidates[0].norad_id == t.norad_id
        assert abs(res.time_offset_s) < (2e-3 if t.orbit_class == "LEO" else 3e-3)  # s
        assert res.rms_arcsec < (0.3 if t.orbit_class == "LEO" else 0.02)


# --------------------------------------------------------------------- truth set


def test_truth_set_identities(truth, results):
    stats = score_truth(results, truth.tracklets)
    _report("truth set (300)", stats)
    # 300 tracklets resolve the goals only coarsely. Measured with the model fitted on
    # the 2026 series (time-radial slopes, activity weights): 98.2 % correct, 2 confidently
    # wrong, 27 of 29 missing objects uncorrelated (the model before: 100 %, 4 of 29
    # missing named as a catalogued train member). This truth set's manoeuvres ignore
    # n_dot, which real errors do not (see test_truth_set_goals_large). Issue 9 keeps
    # this open; the bounds stop it getting worse.
    assert stats["correct_rate"] >= 0.98
    assert stats["confidently_wrong"] <= 4
    assert stats["missing_uncorrelated_rate"] >= 0.85
    assert stats["colocated_ambiguous_or_right"] == stats["colocated"]


def test_time_offset_is_recovered(truth, results):
    """The fitted time offset is the one the object was given (within 0.1 s)."""
    diffs = [
        r.time_offset_s - t.tau_s
        for r, t in zip(results, truth.tracklets, strict=True)
        if r.status == "correlated" and r.norad_id == t.norad_id
    ]
    assert np.median(np.abs(diffs)) < 0.02
    assert np.percentile(np.abs(diffs), 90) < 0.1


def test_records_are_complete(results):
    for res in results:
        assert res.status in ("correlated", "ambiguous", "uncorrelated")
        assert len(res.candidates) <= 5
        scores = [c.score for c in res.candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        if res.status == "correlated":
            assert res.norad_id == res.candidates[0].norad_id and res.score >= 0.9
        else:
            assert res.norad_id is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4, 5])
def test_truth_set_goals_large(seed, tmp_path):
    """1,450 tracklets per seed of the synthetic truth set (12 % of the objects left out
    of the catalogue, the truth set's own prior), with the packaged model fitted on the
    2026 series.

    Measured (correct / confidently wrong / missing uncorrelated), model with the
    time-radial slopes and activity-dependent weights: seed 2 99.62 % / 4 / 92.4 %,
    seed 3 98.98 % / 8 / 92.1 %, seed 4 98.60 % / 4 / 92.0 %, seed 5 99.14 % / 8 / 92.3 %
    (the model before: 99.69 / 5 / 88.3, 99.53 / 8 / 84.9, 99.46 / 2 / 92.0, 99.37 / 6 /
    86.5). This truth set draws its manoeuvres regardless of an element set's n_dot, so a
    model that learned from real errors that quiet element sets rarely jump loses up to
    0.9 points here while it gains 2-4 points on held-out real pairs. Issue 9 keeps this
    open; these bounds only stop it getting worse."""
    ts = build_truth_set(NEWER, n_tracklets=1500, seed=seed)
    cat = Catalogue.from_tle(ts.catalogue_lines)
    out = SGP4Correlator(cat, _sites(ts), cube_dir=tmp_path, error_model=_truth_model())(
        [t.tracklet for t in ts.tracklets]
    )
    stats = score_truth(out, ts.tracklets)
    _report(f"truth set seed {seed}", stats)
    assert stats["correct_rate"] >= 0.984
    assert stats["wrong_rate"] <= 0.007
    assert stats["missing_uncorrelated_rate"] >= 0.9
    assert stats["colocated_ambiguous_or_right"] == stats["colocated"]


@pytest.mark.slow
def test_real_element_set_errors(tmp_path):
    """Observations from the 2020-10-02 element sets, correlated against 2020-09-30's.

    Real errors: most objects are found; manoeuvred ones (Starlink and OneWeb orbit
    raising, GEO station keeping, HEO) are reported uncorrelated or ambiguous unless the
    manoeuvre component makes them nearly certain. Measured on 599 tracklets: 575 of 596
    listed correct (96.5 %), 1 wrong; 576 before the unseen plane mates (a Starlink being
    raised, 371 s off its element set, no longer called at 0.96); the model before the
    2026 fit: 91.3 %, 0 wrong.
    """
    ts = build_truth_set(
        NEWER, n_tracklets=600, seed=1, perturb=False, catalogue_path=OLDER,
        nights=((2459125.5, 1.0),),
    )  # fmt: skip
    cat = Catalogue.from_tle(ts.catalogue_lines)
    out = SGP4Correlator(cat, _sites(ts), cube_dir=tmp_path)([t.tracklet for t in ts.tracklets])
    stats = score_truth(out, ts.tracklets)
    _report("real element-set errors", stats)
    assert stats["correct_rate"] >= 0.9
    assert stats["wrong_rate"] <= 0.002


@pytest.mark.slow
@pytest.mark.parametrize(("older", "newer"), [(17, 18), (17, 20)])
def test_held_out_pairs_of_the_2026_series(older, newer, tmp_path):
    """Tracklets from the newer snapshot of a 2026 pair the packaged model was not fitted
    on (python-sgp4 + astropy, objects within half a day of their newer epoch), against
    the older snapshot: ``benchmarks/bench_identification.py`` in small.

    The goals (>= 99.5 % right at 1 day, >= 98 % at 3 days, <= 0.1 % confidently
    wrong) are NOT met yet; these bounds hold what was measured (1000 tracklets, seed 5:
    97.9 % right / 0.1 % wrong at 1 day, 94.9 % / 1.2 % at 3 days, where whole Starlink
    trains lowered together put a tracklet on a neighbour's predicted slot), so it cannot
    get worse. As run here (500 tracklets, seed 3, no earlier snapshot): 98.0 % / 0 at 1
    day, 96.4 % / 0.6 % at 3 days (96.6 % before the unseen plane mates)."""
    import sys

    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from bench_identification import evaluate_pair, snapshot

    ts, _, results, _ = evaluate_pair(
        snapshot(older), snapshot(newer), n_tracklets=500, seed=3,
        model=ErrorModel.default(), cube_dir=tmp_path,
    )  # fmt: skip
    stats = score_truth(results, ts.tracklets)
    _report(f"2026-03-{older} -> {newer}", stats)
    age = newer - older
    assert stats["correct_rate"] >= (0.96 if age == 1 else 0.92)
    assert stats["wrong_rate"] <= (0.003 if age == 1 else 0.016)
    for r in results:
        assert r.reason and (r.status != "correlated" or r.score >= 0.9)


# --------------------------------------------------------------------- classification


def test_colocated_objects_are_ambiguous(truth, catalogue, tmp_path):
    """The same element set under two numbers: the tracklet cannot choose."""
    pick = next(t for t in truth.tracklets if t.in_catalogue and t.orbit_class == "LEO")
    row = catalogue.index_of(pick.norad_id)
    lines = list(truth.catalogue_lines)
    at = lines.index(next(line for line in lines if line.startswith(f"1 {pick.norad_id:05d}")))
    from sgp4.exporter import compute_checksum

    twin = []
    for line in lines[at : at + 2]:
        body = line[:2] + "99990" + line[7:68]
        twin.append(body + str(compute_checksum(body)))
    cat = Catalogue.from_tle([*lines, "TWIN", *twin])
    assert len(cat) == len(catalogue) + 1 and row >= 0
    res = SGP4Correlator(
        cat, _sites(truth), cube_dir=tmp_path, error_model=_truth_model()
    ).correlate_one(pick.tracklet)
    assert res.status == "ambiguous" and res.norad_id is None
    top = {c.norad_id: c.score for c in res.candidates[:2]}
    assert set(top) == {pick.norad_id, 99990}
    assert all(0.4 < s < 0.6 for s in top.values())


def test_bad_tracklets_do_not_stop_the_batch(truth, correlator):
    good = [t.tracklet for t in truth.tracklets if t.in_catalogue and not t.colocated][:2]
    one = Tracklet(good[0].station, good[0].utc[:1], good[0].ra_deg[:1], good[0].dec_deg[:1])
    stranger = Tracklet("XYZ9", good[0].utc, good[0].ra_deg, good[0].dec_deg)
    out = correlator([one, good[0], stranger, "not a tracklet", good[1]])
    assert out[0].status == "uncorrelated" and "at least 2" in out[0].error
    assert out[2].status == "uncorrelated" and "unknown station 'XYZ9'" in out[2].error
    assert "not a Tracklet" in out[3].error
    assert out[1].status == "correlated" and out[4].status == "correlated"
    assert out[1].error is None and out[4].error is None


def test_iod_station_numbers_resolve(truth, catalogue, tmp_path):
    sites = dict(_sites(truth))
    sites["2401"] = sites["IRN1"]
    corr = SGP4Correlator(catalogue, sites, cube_dir=tmp_path, error_model=_truth_model())
    pick = next(t for t in truth.tracklets if t.in_catalogue and t.tracklet.station == "IRN1")
    trk = pick.tracklet
    res = corr.correlate_one(Tracklet("2401", trk.utc, trk.ra_deg, trk.dec_deg, trk.sigma_arcsec))
    assert res.norad_id == pick.norad_id


def test_correlate_one_matches_the_batch(truth, correlator, results):
    for k in range(0, 80, 4):
        one = correlator.correlate_one(truth.tracklets[k].tracklet)
        assert one.status == results[k].status and one.norad_id == results[k].norad_id
        assert one.score == pytest.approx(results[k].score, abs=1e-6, nan_ok=True)
        assert one.time_offset_s == pytest.approx(results[k].time_offset_s, abs=1e-6, nan_ok=True)


def test_chunking_changes_nothing(truth, catalogue, correlator, results):
    small = SGP4Correlator(
        catalogue,
        _sites(truth),
        cube_dir=correlator.cube_dir,
        chunk_size=7,
        error_model=_truth_model(),
    )
    # the same tracklets both ways: the joint stage decides a pass from the tracklets
    # given together, so a shorter list may give a tracklet fewer companions
    first = [t.tracklet for t in truth.tracklets[:60]]
    again = small(first)
    for a, b in zip(again, correlator(first), strict=True):
        assert (a.status, a.norad_id) == (b.status, b.norad_id)
        assert a.score == pytest.approx(b.score, abs=1e-6, nan_ok=True)


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_gate_loses_nothing_the_fit_accepts(truth, catalogue, correlator):
    """Fine-fit every catalogued object (no gate) for some tracklets: all that pass the
    chi-square test under any mixture component are among the gate's candidates."""
    from aposos.correlate.fit import ObservationBatch, fit_pairs

    picks = [t.tracklet for t in truth.tracklets if t.in_catalogue][:12]
    sites = _sites(truth)
    batch = ObservationBatch.build(picks, [sites[t.station] for t in picks])
    gate_trk, gate_obj, _ = correlator._gate(batch)
    gated = set(zip(gate_trk.tolist(), gate_obj.tolist(), strict=True))
    n = len(catalogue)
    pair_trk = np.repeat(np.arange(len(picks)), n)
    pair_obj = np.tile(np.arange(n), len(picks))
    rows = batch.reference_rows()[pair_trk]
    table = correlator.error_model.table(catalogue)
    accepted = np.zeros(pair_trk.size, dtype=bool)
    weights, _ = table.weights(batch.jd[rows], batch.fr[rows], pair_obj)
    for component in range(table.n_components):
        priors = table.priors(batch.jd[rows], batch.fr[rows], pair_obj, component)
        fit = fit_pairs(
            batch, catalogue.params[pair_obj], pair_trk, priors[:, 0], priors,
            correlator.error_model.timing_sigma_s,
        )  # fmt: skip
        passes = chi2_sf_even(fit.chi2, 2 * fit.n_obs) >= correlator.error_model.p_min
        accepted |= passes & (weights[:, component] > 0)
    accepted = np.flatnonzero(accepted)
    assert accepted.size >= len(picks) - 1
    for k in accepted:
        assert (int(pair_trk[k]), int(pair_obj[k])) in gated


# --------------------------------------------------------------------- kernels vs naive


@pytest.mark.parametrize("rho", [0.0, -0.8])
def test_fit_kernel_matches_naive_least_squares(rho):
    """The fit kernel against dense weighted least squares, the prior of the time and
    radial offsets correlated or not."""
    rng = np.random.default_rng(4)
    n = 6
    geo = np.zeros((n, N_GEO))
    geo[:, 0:2] = rng.normal(0, 2e-5, (n, 2))  # residuals, rad
    geo[:, 2] = rng.uniform(1e-3, 1e-2, n)  # rate, rad/s
    geo[:, 3] = rng.uniform(500, 2000, n)  # range, km
    geo[:, 4:10] = rng.normal(0, 1e-3, (n, 6))  # offsets, rad per km
    sig = rng.uniform(1, 3, n) * math.radians(one_arcsec)
    tau, tau_mean, timing = 0.3, -0.2, 0.004
    var = np.array([0.5**2, 0.2**2, 0.3**2, rho])
    ref = np.array([0.2**2, 0.1**2, 0.1**2, rho / 2])
    out = np.zeros(9)
    _pair_fit(geo, sig, n, tau, tau_mean, var, ref, timing, out)

    def covariance(v):
        c = np.diag([v[0], v[1], v[1], v[2]])
        c[0, 3] = c[3, 0] = v[3] * math.sqrt(v[0] * v[2])
        return c

    # naive: weighted least squares with the whitened priors as extra rows
    sa = np.sqrt(sig**2 + (geo[:, 2] * timing) ** 2)
    ja = np.column_stack([geo[:, 2], geo[:, 4], geo[:, 6], geo[:, 8]]) / sa[:, None]
    jc = np.column_stack([np.zeros(n), geo[:, 5], geo[:, 7], geo[:, 9]]) / sig[:, None]
    whiten = np.linalg.cholesky(np.linalg.inv(covariance(var))).T
    design = np.vstack([ja, jc, whiten])
    target = np.concatenate(
        [geo[:, 0] / sa, geo[:, 1] / sig, whiten @ np.array([tau_mean - tau, 0, 0, 0])]
    )
    theta, *_ = np.linalg.lstsq(design, target, rcond=None)
    chi2 = np.sum((design @ theta - target) ** 2)
    assert out[:4] == pytest.approx(theta, rel=1e-8, abs=1e-12)
    assert out[4] == pytest.approx(chi2, rel=1e-9)
    info = design[: 2 * n].T @ design[: 2 * n]
    occam = np.linalg.slogdet(np.eye(4) + covariance(var) @ info)[1]
    occam_ref = np.linalg.slogdet(np.eye(4) + covariance(ref) @ info)[1]
    assert out[5] == pytest.approx(occam, rel=1e-9)
    assert out[8] == pytest.approx(occam_ref, rel=1e-9)


def test_gate_kernel_matches_naive():
    rng = np.random.default_rng(6)
    n = 3000
    scale = np.array([7000.0, 7000, 7000, 7, 7, 7])[None, :, None]
    block = (rng.normal(size=(3, 6, n)) * scale).astype(np.float32)
    w = np.array([0.5, 0.125, 0.5, -0.125, 1.5, -0.25, -1.5, -0.25])  # s = 0.5
    h = 180.0
    site = np.array([3000.0, 4000.0, 3700.0])
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    mid = rng.normal(0, 2, n).astype(np.float32)
    half = np.full(n, 20.0, np.float32)
    cross = np.full(n, 50.0, np.float32)
    theta = 1e-3
    ratio = np.empty(n, np.float32)
    taus = np.empty(n, np.float32)
    _miss_ratios(
        block, 1, w, np.float32(h), site, u, mid, half, cross, np.float32(theta), ratio, taus, 0, n
    )
    b = block.astype(np.float64)
    p = w[0] * b[1, :3] + w[1] * h * b[1, 3:] + w[2] * b[2, :3] + w[3] * h * b[2, 3:]
    v = (w[4] * b[1, :3] + w[5] * h * b[1, 3:] + w[6] * b[2, :3] + w[7] * h * b[2, 3:]) / h
    d = p - site[:, None]
    du, vu = u @ d, u @ v
    a = d - np.outer(u, du)
    bb = v - np.outer(u, vu)
    t = np.clip(-np.sum(a * bb, 0) / np.sum(bb * bb, 0), mid - half, mid + half)
    miss = np.linalg.norm(a + t * bb, axis=0)
    rho = du + t * vu
    allowed = cross + np.maximum(rho, 0) * theta + 0.5 * 398600.4418 / np.sum(p * p, 0) * t * t
    naive = np.where(rho > 0, (miss / allowed) ** 2, np.inf)
    assert np.allclose(taus, t, rtol=1e-3, atol=1e-3)
    finite = np.isfinite(naive)
    assert np.array_equal(np.isfinite(ratio), finite)
    assert np.allclose(ratio[finite], naive[finite], rtol=1e-3)


# --------------------------------------------------------------------- error model


def test_error_model_priors(catalogue):
    model = ErrorModel.default()
    table = model.table(catalogue)
    idx = np.arange(len(catalogue))
    epoch = catalogue.epoch_jd + catalogue.epoch_fr
    at_epoch = table.priors(np.floor(epoch - 0.5) + 0.5, epoch - (np.floor(epoch - 0.5) + 0.5), idx)
    later = table.priors(
        np.floor(epoch - 0.5) + 0.5, epoch - (np.floor(epoch - 0.5) + 0.5) + 3.0, idx
    )
    assert np.all(later[:, 1:] >= at_epoch[:, 1:])  # uncertainty grows with age
    assert np.allclose(at_epoch[:, 0], 0.0)  # no drift at epoch
    # SGP4 ignores n_dot; objects run behind (tau < 0) when n_dot > 0, as observed
    strong = (np.abs(catalogue.ndot) > 1e-10) & (np.abs(later[:, 0]) > 0.1)
    assert np.all(np.sign(later[strong, 0]) == -np.sign(catalogue.ndot[strong]))
    leo = catalogue.orbit_class == "LEO"
    geo = catalogue.orbit_class == "GEO"
    assert np.all(at_epoch[geo, 1] > 0) and np.all(at_epoch[leo, 1] > 0)


def test_prior_components(catalogue):
    """Components are ordered core first and widen; the cluster priors spread along track
    by the stated widths; the gate takes the widest (capped); every component shares the
    drift-predicted mean offset; weights grow towards the tail with age and sum to one
    with the lost share."""
    model = ErrorModel.default()
    table = model.table(catalogue)
    idx = np.arange(len(catalogue))
    jd = np.full(idx.size, 2459129.5)
    fr = np.full(idx.size, 0.25)
    p = [table.priors(jd, fr, idx, k) for k in range(table.n_components)]
    leo = catalogue.orbit_class == "LEO"
    assert np.all(p[-1][leo, 1] >= p[0][leo, 1])
    for k in range(table.n_components):
        assert np.array_equal(p[k][:, 0], p[0][:, 0])
    cls = catalogue.orbit_class
    along = np.array([model.cluster_along_s[c] for c in cls]) * table.along_scale
    assert np.allclose(table.priors(jd, fr, idx, 0, cluster=True)[:, 1], along)
    geo = cls == "GEO"
    clustered = table.priors(jd, fr, idx, 0, cluster=True)
    assert np.allclose(clustered[geo, 2:4], model.cluster_normal_km["GEO"])
    assert np.all(clustered[:, 4] == 0)  # a neighbour's offsets are not its own errors
    assert np.allclose(clustered[leo, 2], p[0][leo, 2])  # same plane
    assert np.allclose(clustered[leo, 3], model.cluster_radial_km["LEO"])
    gate = table.gate_priors(jd, fr, idx)
    used = table.weight > 0
    widest = np.max([np.where(used[:, k], q[:, 1], 0) for k, q in enumerate(p)], axis=0)
    assert np.allclose(gate[:, 1], np.minimum(widest, model.gate_max_along_s / model.gate_sigma))
    assert np.all(gate[:, 4] == 0)
    w, lost = table.weights(jd, fr, idx)
    assert np.allclose(w.sum(axis=1) + lost, 1.0)
    epoch = catalogue.epoch_jd + catalogue.epoch_fr
    young, _ = table.weights(np.floor(epoch), epoch - np.floor(epoch) + 0.5, idx)
    old, old_lost = table.weights(np.floor(epoch), epoch - np.floor(epoch) + 7.0, idx)
    assert np.all(old[leo, -1] >= young[leo, -1])  # manoeuvres accumulate
    assert np.all(old_lost[leo] > 0)
    with pytest.raises(ValueError, match="no prior component 9"):
        table.priors(jd, fr, idx, 9)


def test_model_round_trip_and_bad_files(tmp_path):
    model = ErrorModel.default()
    model.save(tmp_path / "m.json")
    assert ErrorModel.load(tmp_path / "m.json") == model
    (tmp_path / "bad.json").write_text('{"components": {"LEO": [{"weight": 1}]}}')
    with pytest.raises(ValueError, match="bad.json: bad error model components"):
        ErrorModel.load(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text('{"min_scor": 0.9}')
    with pytest.raises(ValueError, match="unknown error model keys: min_scor"):
        ErrorModel.load(tmp_path / "odd.json")
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ValueError, match="junk.json: not an error model"):
        ErrorModel.load(tmp_path / "junk.json")
    with pytest.raises(FileNotFoundError, match="no such error model file"):
        ErrorModel.load(tmp_path / "nowhere.json")


@pytest.mark.slow
@pytest.mark.parametrize("pair", [(17, 18), (17, 20)])
def test_mixture_is_calibrated_on_held_out_pairs(pair):
    """The packaged error model against real element-set errors of snapshot pairs it was
    not fitted on (2026 series; fitted on 16-17, 18-19, 16-18, 16-20, 19-23, 17-23),
    measured with python-sgp4 alone: the older element set propagated to the newer
    one's epoch, the time offset along track. Under a calibrated mixture the tail
    probability of each offset is uniform: about 5 % fall below 0.05 and 1 % below
    0.01 (the lost share counts as beyond everything). The packaged model is fitted
    without the catalogue's history, and is calibrated so; given the history, the
    correlator widens the changing orbits further (more conservative, measured in
    ``benchmarks/bench_identification.py``)."""
    from scipy.stats import norm
    from sgp4.api import Satrec

    from aposos.correlate.errors import train_ndot
    from aposos.correlate.model import drift_prior, lost_share, mixture_weights

    model = ErrorModel.default()

    def read(day):
        path = CATALOGUES / f"celestrak-active-2026-03-{day}.3le.xz"
        from truthset import read_3le

        return {int(b[2:7]): (b, c) for _, b, c in read_3le(path)}

    older, newer = read(pair[0]), read(pair[1])
    common = sorted(set(older) & set(newer))
    cat = Catalogue.from_tle([x for k in common for x in ("X", *older[k])])
    train = train_ndot(cat.intl_designator, cat.ndot, cat.mean_motion_rev_per_day)
    tails = {"LEO": [], "GEO": []}
    for i, k in enumerate(cat.norad_id):
        name = str(cat.orbit_class[i])
        if name not in tails:
            continue
        old_sat, new_sat = (Satrec.twoline2rv(*d[int(k)]) for d in (older, newer))
        e1, r1, v1 = new_sat.sgp4(new_sat.jdsatepoch, new_sat.jdsatepochF)
        e0, r0, _ = old_sat.sgp4(new_sat.jdsatepoch, new_sat.jdsatepochF)
        age = (new_sat.jdsatepoch - old_sat.jdsatepoch) + (
            new_sat.jdsatepochF - old_sat.jdsatepochF
        )
        if e0 or e1 or age < 0.2:
            continue
        r0, r1, v1 = np.array(r0), np.array(r1), np.array(v1)
        h = np.cross(r1, v1)
        n_hat = h / np.linalg.norm(h)
        plane = r0 - (r0 @ n_hat) * n_hat
        angle = math.atan2(np.cross(plane, r1) @ n_hat, plane @ r1)
        tau = angle / (np.linalg.norm(h) / (r1 @ r1))
        n_rad_min = old_sat.no_kozai
        drift = 0.5 * old_sat.ndot * (age * 1440) ** 2 / n_rad_min * 60.0
        drift_train = 0.5 * train[i] * (age * 1440) ** 2 / n_rad_min * 60.0
        mean, sd = drift_prior(model, drift)
        comps = model.components[name]
        w = mixture_weights(
            [c.weight for c in comps], [c.weight_slope for c in comps], age,
            [c.weight_drift_slope for c in comps], drift_train,
        )  # fmt: skip
        logit, slope, *drift_slope = model.lost[name]
        lost = float(lost_share(logit, slope, age, *drift_slope, drift_train))
        tail = lost * 0.0
        for wk, c in zip(w, comps, strict=True):
            rest, _, radial = (float(x) for x in c.sigmas(age))
            s_tau = math.hypot(  # the marginal
                rest, c.tau_per_radial * age * radial, sd, c.drift_scatter * drift
            )
            mean_k = mean - c.drift_gain * drift
            tail += (1 - lost) * wk * 2 * norm.sf(abs(tau - mean_k) / s_tau)
        tails[name].append(tail)
    for name, values in tails.items():
        values = np.array(values)
        below5, below1 = np.mean(values < 0.05), np.mean(values < 0.01)
        print(
            f"{pair} {name}: {values.size} objects, {below5:.3f} below 0.05, {below1:.4f} below 0.01"
        )
        assert 0.02 <= below5 <= 0.10, (name, below5)
        assert below1 <= 0.03, (name, below1)


def test_score_pairs_matches_naive_posterior():
    """The vectorised posterior against a loop written from the module's formulas."""
    model = ErrorModel.default()
    rng = np.random.default_rng(3)
    pair_trk = np.array([0, 0, 0, 1, 3, 3, 4])
    k_max = 3
    dev = rng.uniform(20.0, 40.0, (pair_trk.size, k_max))
    dev[2, 0] = np.inf  # one component's fit failed: the others stand
    cdev = rng.uniform(20.0, 40.0, (pair_trk.size, k_max))
    w = rng.uniform(0.05, 0.5, (pair_trk.size, k_max))
    lost = rng.uniform(0.0, 0.01, pair_trk.size)
    free = rng.uniform(25.0, 45.0, 5)
    free[2] = np.inf
    ldev = rng.uniform(25.0, 45.0, pair_trk.size)
    got = score_pairs(model, pair_trk, dev, cdev, w, lost, free, ldev)
    f = model.uncatalogued_fraction
    r = f / (1 - f)
    for t in range(5):
        mine = np.flatnonzero(pair_trk == t)
        if mine.size == 0:
            assert got.unlisted[t] == pytest.approx(1.0)
            continue
        like = [sum(w[k, c] * math.exp(-dev[k, c] / 2) for c in range(k_max)) for k in mine]
        kern = [r * sum(w[k, c] * math.exp(-cdev[k, c] / 2) for c in range(k_max)) for k in mine]
        unlisted = sum(kern) - (1 - model.self_cluster_weight) * max(kern)
        unlisted += r * math.exp(-free[t] / 2)
        spread = sum(lost[k] * math.exp(-ldev[k] / 2) for k in mine)
        total = sum(like) + unlisted + spread
        assert got.unlisted[t] == pytest.approx(unlisted / total, rel=1e-9)
        assert got.lost[t] == pytest.approx(spread / total, rel=1e-9)
        for k, lk in zip(mine, like, strict=True):
            assert got.score[k] == pytest.approx(lk / total, rel=1e-9)


def test_decision_rules():
    model = ErrorModel.default()
    assert decide(model, []) == "uncorrelated"
    assert decide(model, [0.95]) == "correlated"
    assert decide(model, [0.85]) == "uncorrelated"  # one candidate or a new object
    assert decide(model, [0.6, 0.35]) == "ambiguous"  # a near tie
    assert decide(model, [0.85, 0.03]) == "uncorrelated"  # no second choice
    assert decide(model, [0.3, 0.15, 0.1]) == "ambiguous"
    assert decide(model, [0.2, 0.15, 0.1]) == "uncorrelated"  # likely new


def test_a_poor_fit_never_overrules_the_posterior_silently(truth, correlator):
    """A tracklet whose declared sigma is far too small (a camera stamp declared at 1.8"
    with a real scatter of 0.02 deg, as real IOD reports are): its own scatter is used,
    the object is still identified, and any poor fit is said in the record."""
    pick = next(
        t for t in truth.tracklets
        if t.in_catalogue and not t.colocated and t.orbit_class == "GEO" and len(t.tracklet) >= 5
    )  # fmt: skip
    rng = np.random.default_rng(9)
    trk = pick.tracklet
    n = len(trk)
    noisy = Tracklet(
        trk.station, trk.utc, trk.ra_deg + rng.normal(0, 0.02, n) / np.cos(np.radians(trk.dec_deg)),
        trk.dec_deg + rng.normal(0, 0.02, n), sigma_arcsec=np.full(n, 0.0005 * 3600),
    )  # fmt: skip
    res = correlator.correlate_one(noisy)
    assert res.candidates and res.candidates[0].norad_id == pick.norad_id
    assert res.reason
    from aposos.correlate.fit import smooth_motion_fit

    inflation, _ = smooth_motion_fit(noisy, 0.0)
    assert inflation > 2.0
    honest, _ = smooth_motion_fit(trk, 0.0)
    assert honest == 1.0


# --------------------------------------------------------------------- sites


STATION_TOML = """
[site]
code = "{code}"
name = "test site"
iod_station = {iod}
latitude_deg = {lat}
longitude_deg = {lon}
altitude_m = 100.0

[camera]
anything = "belongs to the station agent"
"""


def test_sites_from_station_files(tmp_path):
    (tmp_path / "a.toml").write_text(STATION_TOML.format(code="AAA1", iod=2401, lat=33.6, lon=51.3))
    (tmp_path / "b.toml").write_text(STATION_TOML.format(code="BBB1", iod=12, lat=-17.0, lon=-70.9))
    sites = load_sites(tmp_path)
    assert sites["AAA1"] == sites["2401"] == Site(33.6, 51.3, 100.0)
    assert sites["BBB1"] == sites["0012"]
    assert [s.code for s in read_station_sites(tmp_path)] == ["AAA1", "BBB1"]


def test_bad_station_files_name_the_file(tmp_path):
    (tmp_path / "a.toml").write_text(STATION_TOML.format(code="AAA1", iod=2401, lat=33.6, lon=51.3))
    (tmp_path / "b.toml").write_text(STATION_TOML.format(code="AAA1", iod=2402, lat=33.6, lon=51.3))
    with pytest.raises(ValueError, match=r"b\.toml: station AAA1 is also defined in .*a\.toml"):
        load_sites(tmp_path)
    (tmp_path / "b.toml").write_text("[site]\ncode = 'CCC1'\nlatitude_deg = 1.0\n")
    with pytest.raises(ValueError, match=r"b\.toml: \[site\] is missing iod_station"):
        load_sites(tmp_path)
    (tmp_path / "b.toml").write_text(STATION_TOML.format(code="CCC1", iod=2402, lat=95.0, lon=0))
    with pytest.raises(ValueError, match=r"b\.toml: bad site: latitude_deg"):
        load_sites(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_sites(tmp_path / "nowhere")


def test_the_real_station_files_load():
    sites = load_sites(HERE.parent / "stations")
    assert {"IRN1", "PAK1", "PER1"} <= set(sites)


def test_correlate_imports_neither_wing():
    for path in sorted((HERE.parent / "aposos" / "correlate").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            bad = ("aposos.station", "aposos.center")
            assert not any(n.startswith(bad) for n in names), path.name


# --------------------------------------------------------------------- command line


def _write_inputs(truth, folder: Path):
    from aposos.formats.iod import write_iod
    from aposos.formats.tdm import write_tdm

    listed = [t for t in truth.tracklets if t.in_catalogue and not t.colocated]
    missing = [t for t in truth.tracklets if not t.in_catalogue and not t.colocated]
    picks = listed[:14] + missing[:2]
    irn = [t for t in picks if t.tracklet.station == "IRN1"][:4]
    rest = [t for t in picks if t.tracklet.station != "IRN1"]
    kvn, xml = rest[:5], rest[5:9]
    stranger = Tracklet(
        "XYZ9", kvn[0].tracklet.utc, kvn[0].tracklet.ra_deg, kvn[0].tracklet.dec_deg
    )
    (folder / "a.tdm").write_text(write_tdm([t.tracklet for t in kvn] + [stranger], format="kvn"))
    (folder / "b.xml").write_text(write_tdm([t.tracklet for t in xml], format="xml"))
    (folder / "c.iod").write_text(write_iod([t.tracklet for t in irn], iod_station=2401))
    (folder / "broken.tdm").write_text("CCSDS_TDM_VERS = 2.0\nthis is not a TDM\n")
    stations = folder / "stations"
    stations.mkdir()
    for code, (lat, lon, alt), iod in zip(
        ("IRN1", "PAK1", "PER1"), truth.sites.values(), (2401, 2402, 2403), strict=True
    ):
        text = STATION_TOML.format(code=code, iod=iod, lat=lat, lon=lon).replace("100.0", str(alt))
        (stations / f"{code.lower()}.toml").write_text(text)
    (folder / "cat.3le").write_text("\n".join(truth.catalogue_lines) + "\n")
    expected = [("a.tdm", t) for t in kvn] + [("a.tdm", None)]
    expected += [("b.xml", t) for t in xml] + [("c.iod", t) for t in irn]
    return expected


def test_cli_end_to_end(truth, tmp_path, capsys, monkeypatch):
    from aposos.cli import main

    expected = _write_inputs(truth, tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["correlate", "a.tdm", "b.xml", "c.iod", "broken.tdm", "--catalog", "cat.3le",
            "--stations", "stations", "--cube-dir", "cubes", "--no-progress"]  # fmt: skip
    assert main(args) == 1  # some input could not be processed
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert "unknown station 'XYZ9'" in captured.err and "broken.tdm" in captured.err
    assert [r["file"] for r in records[:-1]] == [f for f, _ in expected]
    segments = [r["segment"] for r in records if r["file"] == "a.tdm"]
    assert segments == list(range(len(segments)))
    for rec, (_, t) in zip(records, expected, strict=False):
        if t is None:
            assert rec["status"] == "failed" and "a.tdm: segment 5" in rec["error"]
        elif t.in_catalogue:
            assert rec["status"] == "correlated" and rec["norad_id"] == t.norad_id, rec
            assert set(rec) >= {"score", "rms_arcsec", "time_offset_s", "cross_track_arcsec"}
            assert set(rec["candidates"][0]) >= {
                "norad_id",
                "score",
                "time_offset_s",
                "along_track_km",
            }
        else:
            assert rec["status"] != "correlated" or rec["norad_id"] != t.norad_id
    assert records[-1]["file"] == "broken.tdm" and records[-1]["error"]
    iod_records = [r for r in records if r["file"] == "c.iod"]
    assert iod_records and all(r["station"] == "IRN1" for r in iod_records)

    args += ["--format", "csv", "--out", "ids.csv"]
    assert main(args) == 1
    rows = list(csv.DictReader(io.StringIO((tmp_path / "ids.csv").read_text())))
    assert len(rows) == len(records)
    for row, rec in zip(rows, records, strict=True):
        assert row["status"] == rec["status"] and row["file"] == rec["file"]
        assert row["norad_id"] == ("" if rec["norad_id"] is None else str(rec["norad_id"]))
        best = rec["candidates"][0]["norad_id"] if rec["candidates"] else ""
        assert row["candidate_norad_id"] == str(best)
        assert row["n_candidates"] == str(len(rec["candidates"]))
    # the cube was kept: a second run reuses it
    assert any((tmp_path / "cubes").rglob("*.zarr"))


# --------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def dask_cluster():
    """Two worker processes, started once for the module's Dask tests (each process
    loads aposos and its kernels: about 4 CPU-s a cluster)."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.mark.slow
def test_dask_local_cluster_gives_identical_results(truth, catalogue, tmp_path, dask_cluster):
    from dask.distributed import Client

    tracklets = [t.tracklet for t in truth.tracklets[:120]]
    local = SGP4Correlator(catalogue, _sites(truth), cube_dir=tmp_path, chunk_size=40)(tracklets)
    with Client(dask_cluster) as client:
        fresh = SGP4Correlator(catalogue, _sites(truth), cube_dir=tmp_path, chunk_size=40)
        remote = fresh.run_distributed(tracklets, client)
    assert [r.to_wire() for r in remote] == [r.to_wire() for r in local]


@pytest.mark.slow
def test_cli_on_dask_matches_local(truth, tmp_path, capsys, monkeypatch, dask_cluster):
    from aposos.cli import main

    _write_inputs(truth, tmp_path)
    monkeypatch.chdir(tmp_path)
    # the cube folder in full: the shared cluster's workers did not start in tmp_path
    base = ["correlate", "a.tdm", "b.xml", "c.iod", "--catalog", "cat.3le", "--stations",
            "stations", "--cube-dir", str(tmp_path / "cubes"), "--no-progress"]  # fmt: skip
    main(base)
    local = capsys.readouterr().out
    main([*base, "--workers", "2"])
    assert capsys.readouterr().out == local
    main([*base, "--scheduler", dask_cluster.scheduler_address])
    assert capsys.readouterr().out == local


# --------------------------------------------------------------------- calibration


def _value(f):
    return lambda p, *args: f(p, *args)[0]


def _central_difference(f, p, args, h=1e-6):
    return np.array([(f(p + h * e, *args) - f(p - h * e, *args)) / (2 * h) for e in np.eye(p.size)])  # fmt: skip


def test_calibration_gradients_are_the_derivatives_and_find_the_same_optimum():
    """The EM fit's L-BFGS-B steps take analytic gradients: they equal central
    differences of the objectives, and each axis's fit reaches the optimum that
    L-BFGS-B reaches on finite differences alone (what the fit used before): the same
    variance at every error, within 0.1 %."""
    from scipy.optimize import minimize

    from aposos.correlate.calibrate import _axis_nll, _axis_sigma, _fit_axis, _weights_nll
    from aposos.correlate.model import activity

    rng = np.random.default_rng(4)
    n = 400
    age = rng.uniform(0.05, 8.0, n)
    drift = rng.normal(0.0, 20.0, n)
    resp = rng.uniform(0.0, 1.0, n)
    extra2 = rng.uniform(0.0, 0.5, n)
    z2 = (rng.normal(0.0, 1.0, n) * np.sqrt(0.3 + (0.4 * age) ** 2 + 0.05 * drift**2)) ** 2
    for degree, drift2, start in ((1, None, [-1.0, -0.5]), (2, drift**2, [-1, -0.5, -3, -2])):
        args = (z2, age, extra2, resp, degree, drift2)
        start = np.array(start, dtype=float)
        value, grad = _axis_nll(start, *args)
        numeric = _central_difference(_value(_axis_nll), start, args)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * abs(value))
        fitted = _fit_axis(start, z2, age, extra2, resp, degree, 0.01, drift2)
        bounds = [(math.log(0.01), math.log(1e5))] + [(math.log(1e-6), math.log(1e5))] * degree
        bounds += [(math.log(1e-6), math.log(10.0))] if drift2 is not None else []
        plain = minimize(_value(_axis_nll), start, args=args, method="L-BFGS-B", bounds=bounds,
                         options={"maxiter": 200}).x  # fmt: skip
        assert _axis_nll(fitted, *args)[0] <= _axis_nll(plain, *args)[0] + 1e-6 * n

        def variance(p, degree=degree, drift2=drift2):
            own = 0.0 if drift2 is None else np.exp(2.0 * p[-1]) * drift2
            return _axis_sigma(p, age, degree) + own

        np.testing.assert_allclose(variance(fitted), variance(plain), rtol=1e-3)
    resp3 = rng.dirichlet([5.0, 2.0, 1.0], n)
    args = (resp3, age, drift, (np.log(age), activity(drift)))
    start = rng.normal(0.0, 0.5, 6)
    value, grad = _weights_nll(start, *args)
    numeric = _central_difference(_value(_weights_nll), start, args)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * abs(value))


def _drawn_errors(n, rng, slope):
    """Errors drawn from a known two-population law: a quiet core, and 10 % moved
    objects whose time offset follows their radial offset (``slope`` s per km per day)."""
    from aposos.correlate.errors import ElementSetErrors

    age = rng.uniform(0.5, 3.0, n)
    moved = rng.random(n) < 0.1
    radial = np.where(moved, rng.normal(0, 5.0, n), rng.normal(0, 0.1, n))
    tau = np.where(moved, slope * age * radial + rng.normal(0, 2.0, n), rng.normal(0, 0.5, n))
    return ElementSetErrors(
        norad_id=np.arange(n), orbit_class=np.full(n, "LEO"), age_days=age,
        drift_s=np.zeros(n), train_drift_s=np.zeros(n), tau_s=tau, normal_km=rng.normal(0, 0.2, n), radial_km=radial,
        rev_per_day=np.full(n, 15.0), pair=np.zeros(n, dtype=np.int64),
    )  # fmt: skip


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_calibration_learns_how_time_offsets_follow_radial_offsets():
    """The EM fit finds the slope of a drawn law (the fitter's own check, not physics:
    the physics is checked on held-out real pairs), and the slope is worth having:
    fresh draws are likelier under the fitted model than with the slope set to zero."""
    from aposos.correlate.calibrate import fit_error_model, log_likelihood

    rng = np.random.default_rng(11)
    model = fit_error_model(
        _drawn_errors(4000, rng, -8.0), components_by_class={"LEO": 3}, iterations=25
    )
    comps = model.components["LEO"]
    moved = max(comps, key=lambda c: abs(c.tau_per_radial) * c.weight)
    assert -9.5 <= moved.tau_per_radial <= -6.5
    assert 0.05 <= moved.weight <= 0.2
    flat = replace(
        model,
        components={"LEO": [replace(c, tau_per_radial=0.0) for c in comps]},
    )
    fresh = _drawn_errors(3000, rng, -8.0)
    assert log_likelihood(model, fresh)["LEO"] > log_likelihood(flat, fresh)["LEO"] + 0.1


def _three_populations(n, rng):
    """A quiet core (85 %), objects moved long ago whose time offset follows their
    radial offset (10 %, -8 s per km per day), and objects moved in the last day whose
    radial offset (20 km) has not yet become a time offset (5 %)."""
    from aposos.correlate.errors import ElementSetErrors

    age = rng.uniform(0.5, 3.0, n)
    kind = rng.choice(3, n, p=[0.85, 0.1, 0.05])
    quiet, moved = kind == 0, kind == 1
    radial = np.select(
        [quiet, moved], [rng.normal(0, 0.1, n), rng.normal(0, 5.0, n)], rng.normal(0, 20.0, n)
    )
    tau = np.select(
        [quiet, moved],
        [rng.normal(0, 0.5, n), -8.0 * age * radial + rng.normal(0, 2.0, n)],
        rng.normal(0, 5.0, n),
    )
    return ElementSetErrors(
        norad_id=np.arange(n), orbit_class=np.full(n, "LEO"), age_days=age,
        drift_s=np.zeros(n), train_drift_s=np.zeros(n), tau_s=tau,
        normal_km=rng.normal(0, 0.2, n), radial_km=radial, rev_per_day=np.full(n, 15.0),
        pair=np.zeros(n, dtype=np.int64),
    )  # fmt: skip


@pytest.mark.slow
def test_widest_component_is_free_of_the_time_radial_slope():
    """With four or more components the widest has no time-radial slope (an object
    moved in the last day has the radial offset without the time offset), while the
    coupled one still finds the drawn slope; on fresh draws the fit is as likely as one
    whose widest component may take a slope (the fitter's own check: on real pairs see
    ``benchmarks/bench_identification.py``)."""
    from aposos.correlate.calibrate import _coupled, fit_error_model, log_likelihood

    assert [_coupled(k, 5, True) for k in range(5)] == [False, False, True, True, False]
    assert [_coupled(k, 3, True) for k in range(3)] == [False, False, True]
    assert [_coupled(k, 5, False) for k in range(5)] == [False, False, True, True, True]
    rng = np.random.default_rng(11)
    drawn, fresh = _three_populations(4000, rng), _three_populations(3000, rng)
    fits = {
        free: fit_error_model(
            drawn, components_by_class={"LEO": 4}, iterations=25, decouple_widest=free
        )
        for free in (True, False)
    }
    comps = fits[True].components["LEO"]
    widest = max(comps, key=lambda c: c.radial_km[0])
    assert widest.tau_per_radial == 0.0
    assert 15.0 <= widest.radial_km[0] <= 21.0 and 0.03 <= widest.weight <= 0.07
    moved = min(comps, key=lambda c: c.tau_per_radial)
    assert -8.5 <= moved.tau_per_radial <= -7.5
    likely = {free: log_likelihood(m, fresh)["LEO"] for free, m in fits.items()}
    assert likely[True] >= likely[False] - 0.01


@pytest.mark.slow
def test_calibrate_command_writes_a_model_the_correlator_loads(tmp_path, capsys):
    """``aposos correlate calibrate OLDER NEWER --out`` on the real 2020 pair."""
    from aposos.cli import main

    out = tmp_path / "model.json"
    assert main(["correlate", "calibrate", str(OLDER), str(NEWER), "--out", str(out)]) == 0
    model = ErrorModel.load(out)
    assert "LEO" in model.components and model.components["LEO"][0].weight > 0.5
    assert any(c.tau_per_radial < 0 for c in model.components["LEO"])


def _tle_checksum(line: str) -> str:
    total = sum(int(c) if c.isdigit() else (c == "-") for c in line[:68])
    return line[:68] + str(total % 10)


def _moved(line1: str, line2: str, days: float, rev_per_day: float) -> tuple[str, str]:
    """The element set ``days`` later (epoch field) with its mean motion changed."""
    epoch = float(line1[20:32]) + days
    n = float(line2[52:63]) + rev_per_day
    line1 = line1[:20] + f"{epoch:012.8f}" + line1[32:]
    line2 = line2[:52] + f"{n:11.8f}" + line2[63:]
    return _tle_checksum(line1), _tle_checksum(line2)


def test_history_rate_and_drift_follow_keplers_third_law():
    """An orbit whose mean motion rose between two snapshots a day apart is being
    lowered: its rate is |a1 - a0| per day with ``a = (mu / n^2)^(1/3)`` (computed here
    from the TLE fields), an unchanged orbit's is 0, and the drift it predicts after
    three days is (3/4) (da/dt / a) age^2."""
    from aposos.correlate.errors import history_drift_seconds, semi_major_axis_rate

    _, l1, l2 = next(t for t in _series_3le("17") if t[0].startswith("ISS"))
    _, q1, q2 = next(t for t in _series_3le("17") if t[0].startswith("HST"))
    older = Catalogue.from_tle(["ISS", l1, l2, "HST", q1, q2])
    newer = Catalogue.from_tle(
        ["ISS", *_moved(l1, l2, 1.0, 0.01)] + ["HST", *_moved(q1, q2, 1.0, 0.0)]
    )
    rate = semi_major_axis_rate(older, newer)

    def axis(rev_per_day):
        n = rev_per_day * 2 * math.pi / 86400.0
        return (398600.4418 / n**2) ** (1 / 3)

    n0 = float(l2[52:63])
    expected = abs(axis(n0 + 0.01) - axis(n0))  # km over one day
    iss = int(np.flatnonzero(newer.norad_id == 25544)[0])
    assert rate[iss] == pytest.approx(expected, rel=1e-3)
    assert expected > 0.4  # about 0.45 km/day: a lowering a fleet would do
    assert rate[1 - iss] == 0.0
    drift = history_drift_seconds(rate[iss], n0 + 0.01, 3.0)
    assert float(drift) == pytest.approx(0.75 * expected / axis(n0 + 0.01) * 9 * 86400, rel=1e-9)


def _series_3le(day: str):
    from truthset import read_3le

    return read_3le(CATALOGUES / f"celestrak-active-2026-03-{day}.3le.xz")


def test_a_changing_orbit_gets_the_wide_components_and_the_correlator_takes_history():
    """With the previous snapshot, an object whose orbit changed gets more weight in
    the wide components than without it; the correlator and the worker's engine accept
    the history (the same element sets: an object that did not change is not touched)."""
    _, l1, l2 = next(t for t in _series_3le("17") if t[0].startswith("ISS"))
    _, q1, q2 = next(t for t in _series_3le("17") if t[0].startswith("HST"))
    before = Catalogue.from_tle(["ISS", *_moved(l1, l2, -1.0, -0.02), "HST", q1, q2])
    now = Catalogue.from_tle(["ISS", l1, l2, "HST", q1, q2])
    model = ErrorModel.default()
    jd, fr = float(now.epoch_jd[0]) + 3, float(now.epoch_fr[0])
    plain, _ = model.table(now).weights(jd, fr)
    told, _ = model.table(now, before).weights(jd, fr)
    iss = int(np.flatnonzero(now.norad_id == 25544)[0])
    assert told[iss, 0] < 0.5 * plain[iss, 0]  # the core gives way
    assert told[iss, 2:].sum() > 2 * plain[iss, 2:].sum()
    np.testing.assert_allclose(told[1 - iss], plain[1 - iss])
    correlator = SGP4Correlator(now, {}, previous_catalogue=before)
    assert correlator([]) == []
