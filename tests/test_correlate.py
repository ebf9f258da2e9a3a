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
from pathlib import Path

import numpy as np
import pytest
from truthset import build_truth_set, score_truth

from aposos.center.correlate import SGP4Correlator
from aposos.center.correlate_fit import N_GEO, _pair_fit
from aposos.center.correlate_gate import _miss_ratios
from aposos.center.correlate_model import (
    COMPONENTS,
    ErrorModel,
    chi2_sf_even,
    decide,
    score_pairs,
)
from aposos.center.sites import load_sites, read_station_sites
from aposos.model import Tracklet
from aposos.orbit.catalogue import Catalogue
from aposos.orbit.site import Site

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


@pytest.fixture(scope="module")
def correlator(truth, catalogue, tmp_path_factory):
    return SGP4Correlator(catalogue, _sites(truth), cube_dir=tmp_path_factory.mktemp("cubes"))


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
        assert res.status == "correlated" and res.norad_id == t.norad_id
        assert abs(res.time_offset_s) < (1e-3 if t.orbit_class == "LEO" else 2e-3)  # s
        assert res.rms_arcsec < (0.3 if t.orbit_class == "LEO" else 0.02)


# --------------------------------------------------------------------- truth set


def test_truth_set_identities(truth, results):
    stats = score_truth(results, truth.tracklets)
    _report("truth set (300)", stats)
    # 300 tracklets resolve the goals only coarsely; test_truth_set_goals_large checks them
    assert stats["correct_rate"] >= 0.985
    assert stats["confidently_wrong"] <= 1
    assert stats["missing_uncorrelated_rate"] >= 0.93
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
    """1,450 tracklets per seed, against the issue's goals: >= 99.5 % correct identities,
    <= 0.1 % confidently wrong, >= 99 % of missing-object tracklets uncorrelated.

    Measured (correct / wrong / missing uncorrelated): seed 2 99.85 % / 1 / 99.3 %,
    seed 3 99.68 % / 1 / 99.3 %, seed 4 99.61 % / 1 / 99.3 %, seed 5 99.76 % / 0 / 100 %.
    What is left: near ties inside fresh Starlink trains and deployment swarms (reported
    ambiguous), and missing objects whose catalogued twin flies seconds from them on
    the same orbit (the one wrong call per seed)."""
    ts = build_truth_set(NEWER, n_tracklets=1500, seed=seed)
    cat = Catalogue.from_tle(ts.catalogue_lines)
    out = SGP4Correlator(cat, _sites(ts), cube_dir=tmp_path)([t.tracklet for t in ts.tracklets])
    stats = score_truth(out, ts.tracklets)
    _report(f"truth set seed {seed}", stats)
    assert stats["correct_rate"] >= 0.995
    assert stats["wrong_rate"] <= 0.001
    assert stats["missing_uncorrelated_rate"] >= 0.99
    assert stats["colocated_ambiguous_or_right"] == stats["colocated"]


@pytest.mark.slow
def test_real_element_set_errors(tmp_path):
    """Observations from the 2020-10-02 element sets, correlated against 2020-09-30's.

    Real errors: most objects are found; manoeuvred ones (Starlink and OneWeb orbit
    raising, GEO station keeping, HEO) are reported uncorrelated or ambiguous unless the
    manoeuvre component makes them nearly certain, and never wrongly. Measured on 599
    tracklets: 91.3 % correct, 0 wrong (on 998 with seed 1: 91.0 %, 0 wrong).
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
    res = SGP4Correlator(cat, _sites(truth), cube_dir=tmp_path).correlate_one(pick.tracklet)
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
    corr = SGP4Correlator(catalogue, sites, cube_dir=tmp_path)
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
    small = SGP4Correlator(catalogue, _sites(truth), cube_dir=correlator.cube_dir, chunk_size=7)
    again = small([t.tracklet for t in truth.tracklets[:60]])
    for a, b in zip(again, results[:60], strict=False):
        assert (a.status, a.norad_id) == (b.status, b.norad_id)
        assert a.score == pytest.approx(b.score, abs=1e-6, nan_ok=True)


def test_gate_loses_nothing_the_fit_accepts(truth, catalogue, correlator):
    """Fine-fit every catalogued object (no gate) for some tracklets: all that pass the
    chi-square test under either mixture component are among the gate's candidates."""
    from aposos.center.correlate_fit import ObservationBatch, fit_pairs

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
    for component in ("nominal", "manoeuvre"):
        priors = table.priors(batch.jd[rows], batch.fr[rows], pair_obj, component)
        fit = fit_pairs(
            batch, catalogue.params[pair_obj], pair_trk, priors[:, 0], priors,
            table.reference_sigmas(pair_obj), correlator.error_model.timing_sigma_s,
        )  # fmt: skip
        accepted |= chi2_sf_even(fit.chi2, 2 * fit.n_obs) >= correlator.error_model.p_min
    accepted = np.flatnonzero(accepted)
    assert accepted.size >= len(picks) - 1
    for k in accepted:
        assert (int(pair_trk[k]), int(pair_obj[k])) in gated


# --------------------------------------------------------------------- kernels vs naive


def test_fit_kernel_matches_naive_least_squares():
    rng = np.random.default_rng(4)
    n = 6
    geo = np.zeros((n, N_GEO))
    geo[:, 0:2] = rng.normal(0, 2e-5, (n, 2))  # residuals, rad
    geo[:, 2] = rng.uniform(1e-3, 1e-2, n)  # rate, rad/s
    geo[:, 3] = rng.uniform(500, 2000, n)  # range, km
    geo[:, 4:10] = rng.normal(0, 1e-3, (n, 6))  # offsets, rad per km
    sig = rng.uniform(1, 3, n) * math.radians(one_arcsec)
    tau, tau_mean, timing = 0.3, -0.2, 0.004
    var = np.array([0.5, 0.2, 0.3]) ** 2
    ref = np.array([0.2, 0.1, 0.1]) ** 2
    out = np.zeros(9)
    _pair_fit(geo, sig, n, tau, tau_mean, var, ref, timing, out)
    # naive: weighted least squares with the priors as extra rows
    sa = np.sqrt(sig**2 + (geo[:, 2] * timing) ** 2)
    ja = np.column_stack([geo[:, 2], geo[:, 4], geo[:, 6], geo[:, 8]]) / sa[:, None]
    jc = np.column_stack([np.zeros(n), geo[:, 5], geo[:, 7], geo[:, 9]]) / sig[:, None]
    prior_sd = np.sqrt([var[0], var[1], var[1], var[2]])
    design = np.vstack([ja, jc, np.diag(1.0 / prior_sd)])
    target = np.concatenate(
        [geo[:, 0] / sa, geo[:, 1] / sig, [(tau_mean - tau) / prior_sd[0], 0, 0, 0]]
    )
    theta, *_ = np.linalg.lstsq(design, target, rcond=None)
    chi2 = np.sum((design @ theta - target) ** 2)
    assert out[:4] == pytest.approx(theta, rel=1e-8, abs=1e-12)
    assert out[4] == pytest.approx(chi2, rel=1e-9)
    info = design[: 2 * n].T @ design[: 2 * n]
    occam = np.linalg.slogdet(np.eye(4) + np.diag(prior_sd**2) @ info)[1]
    ref_sd = np.sqrt([ref[0], ref[1], ref[1], ref[2]])
    occam_ref = np.linalg.slogdet(np.eye(4) + np.diag(ref_sd**2) @ info)[1]
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
    model = ErrorModel()
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
    assert np.median(at_epoch[geo, 1]) > np.median(at_epoch[leo, 1])
    assert np.all(table.reference_sigmas(idx) <= at_epoch[:, 1:] + 1e-12)


def test_prior_components(catalogue):
    """The manoeuvre component is wider than the nominal one on every axis; the cluster
    components spread the same along track by the stated widths; the gate takes the
    widest; every component shares the drift-predicted mean offset."""
    model = ErrorModel()
    table = model.table(catalogue)
    idx = np.arange(len(catalogue))
    jd = np.full(idx.size, 2459129.5)
    fr = np.full(idx.size, 0.25)
    p = {c: table.priors(jd, fr, idx, c) for c in COMPONENTS}
    assert np.all(p["manoeuvre"][:, 1:] >= p["nominal"][:, 1:])
    for c in COMPONENTS:
        assert np.array_equal(p[c][:, 0], p["nominal"][:, 0])
    cls = catalogue.orbit_class
    along = np.array([model.cluster_along_s[c] for c in cls]) * table.along_scale
    assert np.allclose(p["cluster_nominal"][:, 1], along)
    assert np.allclose(p["cluster_manoeuvre"][:, 1], along)
    geo = cls == "GEO"
    assert np.allclose(p["cluster_nominal"][geo, 2:], model.cluster_normal_km["GEO"])
    leo = cls == "LEO"
    assert np.allclose(p["cluster_nominal"][leo, 2], p["nominal"][leo, 2])  # same plane
    assert np.allclose(p["cluster_nominal"][leo, 3], model.cluster_radial_km["LEO"])
    gate = table.gate_priors(jd, fr, idx)
    assert np.array_equal(gate[:, 1:], np.maximum(p["nominal"], p["manoeuvre"])[:, 1:])
    assert np.allclose(table.weights(idx), [model.manoeuvre_weight[c] for c in cls])
    with pytest.raises(ValueError, match="unknown prior component 'tail'"):
        table.priors(jd, fr, idx, "tail")


def test_mixture_is_calibrated_on_real_element_sets():
    """The two-component error model against real element-set errors, measured with
    python-sgp4 alone: every object in both CelesTrak snapshots, the older element set
    propagated to the newer one's epoch (about two days), the difference taken along
    track (as a time), along the orbit normal and along the radius.

    The nominal component leaves out about the share of objects the manoeuvre weight
    gives (measured: LEO 9.4 %, MEO 3.5 %, GEO 21.9 % beyond 3 sigma on some axis); the
    manoeuvre component covers nearly all (measured: 2.4 %, 0.7 %, 2.6 % beyond). HEO
    (38 objects, several with element sets far off) is left out."""
    from sgp4.api import Satrec

    model = ErrorModel()

    def read(path):
        lines = [x for x in Path(path).read_text().splitlines() if x.strip()]
        return {int(b[2:7]): (a, b, c) for a, b, c in zip(lines[::3], lines[1::3], lines[2::3])}

    older, newer = read(OLDER), read(NEWER)
    common = sorted(set(older) & set(newer))
    cat = Catalogue.from_tle([x for k in common for x in older[k]])
    table = model.table(cat)
    rows, jd, fr, offsets = [], [], [], []
    for i, k in enumerate(cat.norad_id):
        old_sat = Satrec.twoline2rv(*older[int(k)][1:])
        new_sat = Satrec.twoline2rv(*newer[int(k)][1:])
        e1, r1, v1 = new_sat.sgp4(new_sat.jdsatepoch, new_sat.jdsatepochF)
        e0, r0, _ = old_sat.sgp4(new_sat.jdsatepoch, new_sat.jdsatepochF)
        if e0 or e1:
            continue
        r1, v1, d = np.array(r1), np.array(v1), np.array(r1) - np.array(r0)
        radial = r1 / np.linalg.norm(r1)
        normal = np.cross(r1, v1) / np.linalg.norm(np.cross(r1, v1))
        along = np.cross(normal, radial)
        rows.append(i)
        jd.append(new_sat.jdsatepoch)
        fr.append(new_sat.jdsatepochF)
        offsets.append((d @ along / np.linalg.norm(v1), d @ normal, d @ radial))
    rows, offsets = np.array(rows), np.array(offsets)
    classes = cat.orbit_class[rows]
    for component, bound in (("nominal", None), ("manoeuvre", 0.03)):
        p = table.priors(np.array(jd), np.array(fr), rows, component)
        z = np.abs(offsets - np.column_stack([p[:, 0], np.zeros((rows.size, 2))])) / p[:, 1:]
        beyond = np.any(z > 3.0, axis=1)
        for name in ("LEO", "MEO", "GEO"):
            share = beyond[classes == name].mean()
            if bound is None:
                w = model.manoeuvre_weight[name]
                assert 0.5 * w <= share <= 1.5 * w, (name, share)
            else:
                assert share <= bound, (name, share)


def test_score_pairs_matches_naive_posterior():
    """The vectorised posterior against a loop written from the module's formulas."""
    model = ErrorModel()
    rng = np.random.default_rng(3)
    n_trk = 5
    pair_trk = np.array([0, 0, 0, 1, 3, 3, 4])
    dev = rng.uniform(20.0, 40.0, (pair_trk.size, 4))
    dev[2, 0] = np.inf  # the nominal fit failed: the manoeuvre one stands alone
    chi2 = rng.uniform(2.0, 30.0, (pair_trk.size, 2))
    n_obs = np.array([5, 5, 5, 3, 8, 8, 2])
    w = rng.uniform(0.05, 0.3, pair_trk.size)
    got = score_pairs(model, pair_trk, dev, chi2, n_obs, w, n_trk)
    f = model.uncatalogued_fraction
    for t in range(n_trk):
        mine = np.flatnonzero(pair_trk == t)
        if mine.size == 0:
            assert got.unlisted[t] == 1.0
            continue
        like = [
            (1 - w[k]) * math.exp(-dev[k, 0] / 2) + w[k] * math.exp(-dev[k, 1] / 2) for k in mine
        ]
        kern = [
            (1 - w[k]) * math.exp(-dev[k, 2] / 2) + w[k] * math.exp(-dev[k, 3] / 2) for k in mine
        ]
        unlisted = f / (1 - f) * (sum(kern) - (1 - model.self_cluster_weight) * max(kern))
        total = sum(like) + unlisted
        assert got.unlisted[t] == pytest.approx(unlisted / total, rel=1e-9)
        for k, lk in zip(mine, like, strict=True):
            assert got.score[k] == pytest.approx(lk / total, rel=1e-9)
            share = (1 - w[k]) * math.exp(-dev[k, 0] / 2) / lk
            assert got.nominal_share[k] == pytest.approx(share, rel=1e-9)
            p = [chi2_sf_even(x, 2 * n_obs[k]) for x in chi2[k]]
            assert got.consistent[k] == (max(p) >= model.p_min)
            acceptable = got.consistent[k] and (
                share >= model.min_nominal_share or lk / total >= model.manoeuvre_min_score
            )
            assert got.acceptable[k] == acceptable


def test_decision_rules():
    model = ErrorModel()
    yes, no = True, False
    assert decide(model, [], []) == "uncorrelated"
    assert decide(model, [0.95], [yes]) == "correlated"
    assert decide(model, [0.95], [no]) == "uncorrelated"  # manoeuvre-only, not certain
    assert decide(model, [0.85], [yes]) == "uncorrelated"  # one candidate or a new object
    assert decide(model, [0.6, 0.35], [yes, yes]) == "ambiguous"  # a near tie
    assert decide(model, [0.6, 0.35], [yes, no]) == "uncorrelated"
    assert decide(model, [0.85, 0.03], [yes, yes]) == "uncorrelated"  # no second choice
    assert decide(model, [0.3, 0.15, 0.1], [yes, yes, yes]) == "ambiguous"
    assert decide(model, [0.2, 0.15, 0.1], [yes, yes, yes]) == "uncorrelated"  # likely new


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


def test_center_modules_do_not_import_the_station_wing():
    for path in sorted((HERE.parent / "aposos" / "center").glob("*.py")):
        if not (path.name.startswith("correlate") or path.name == "sites.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith("aposos.station") for n in names), path.name


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
            assert rec["status"] == "uncorrelated" and "a.tdm: segment 5" in rec["error"]
        elif t.in_catalogue:
            assert rec["status"] == "correlated" and rec["norad_id"] == t.norad_id, rec
            assert set(rec) >= {"score", "rms_arcsec", "time_offset_s", "cross_track_arcsec"}
            assert set(rec["candidates"][0]) == {"norad_id", "score", "rms_arcsec", "time_offset_s"}
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


@pytest.mark.slow
def test_dask_local_cluster_gives_identical_results(truth, catalogue, tmp_path):
    from dask.distributed import Client, LocalCluster

    tracklets = [t.tracklet for t in truth.tracklets[:120]]
    local = SGP4Correlator(catalogue, _sites(truth), cube_dir=tmp_path, chunk_size=40)(tracklets)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        fresh = SGP4Correlator(catalogue, _sites(truth), cube_dir=tmp_path, chunk_size=40)
        remote = fresh.run_distributed(tracklets, client)
    assert [r.to_wire() for r in remote] == [r.to_wire() for r in local]


@pytest.mark.slow
def test_cli_on_dask_matches_local(truth, tmp_path, capsys, monkeypatch):
    from dask.distributed import LocalCluster

    from aposos.cli import main

    _write_inputs(truth, tmp_path)
    monkeypatch.chdir(tmp_path)
    base = ["correlate", "a.tdm", "b.xml", "c.iod", "--catalog", "cat.3le", "--stations",
            "stations", "--cube-dir", "cubes", "--no-progress"]  # fmt: skip
    main(base)
    local = capsys.readouterr().out
    main([*base, "--workers", "2"])
    assert capsys.readouterr().out == local
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        main([*base, "--scheduler", cluster.scheduler_address])
    assert capsys.readouterr().out == local
