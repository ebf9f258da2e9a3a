"""The joint stage: the tracklets of one pass of a train decided together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aposos.correlate.joint import TauPrior, identify_jointly, pass_groups
from aposos.correlate.model import ErrorModel
from aposos.model import Candidate, Correlation, Tracklet

HERE = Path(__file__).resolve().parent


def _tracklet(station: str, start_s: float) -> Tracklet:
    us = (np.array([0.0, 30.0, 60.0]) + start_s) * 1e6 + 1.8e15
    return Tracklet(
        station=station, utc=us.astype(np.int64).astype("datetime64[us]"),
        ra_deg=np.array([10.0, 10.1, 10.2]), dec_deg=np.array([5.0, 5.1, 5.2]), sigma_arcsec=2.0,
    )  # fmt: skip


def _call(*cands: tuple[int, float, float], unlisted: float | None = None) -> Correlation:
    """A single-tracklet call from ``(norad, score, time offset s)`` candidates; what they
    leave is "not in the catalogue" unless ``unlisted`` says less (the rest: a catalogued
    object whose element set is lost)."""
    candidates = [
        Candidate(norad_id=n, score=p, rms_arcsec=1.0, time_offset_s=tau, cross_track_km=0.1)
        for n, p, tau in cands
    ]
    status = "correlated" if candidates[0].score >= 0.9 else "ambiguous"
    if unlisted is None:
        unlisted = 1.0 - sum(c.score for c in candidates)
    return Correlation(
        status=status, norad_id=candidates[0].norad_id if status == "correlated" else None,
        score=candidates[0].score, candidates=candidates, p_unlisted=unlisted, reason="alone",
    )  # fmt: skip


def _wide_prior(i, norad_ids):
    return [TauPrior(np.array([1.0]), np.array([0.0]), np.array([150.0]), 3.0) for _ in norad_ids]


def test_pass_groups_need_one_station_one_pass_and_distinct_fits():
    train = [_call((1, 0.55, 100.0), (2, 0.44, 70.0)), _call((1, 0.5, 130.0), (2, 0.49, 100.0))]
    assert pass_groups([_tracklet("IRN1", 0), _tracklet("IRN1", 30)], train) == [[0, 1]]
    # another station, or an hour later: another pass
    assert pass_groups([_tracklet("IRN1", 0), _tracklet("PAK1", 30)], train) == []
    assert pass_groups([_tracklet("IRN1", 0), _tracklet("IRN1", 3600)], train) == []
    # one candidate fits both with the same offset: maybe one object's track cut in two
    split = [_call((1, 0.55, 100.0), (2, 0.44, 70.0)), _call((1, 0.5, 100.3), (3, 0.49, 10.0))]
    assert pass_groups([_tracklet("IRN1", 0), _tracklet("IRN1", 90)], split) == []
    # nothing in common: nothing to decide together
    apart = [_call((1, 0.99, 1.0)), _call((2, 0.99, 1.0))]
    assert pass_groups([_tracklet("IRN1", 0), _tracklet("IRN1", 30)], apart) == []


def test_one_object_per_tracklet_and_a_common_offset_decide_a_pair():
    """Alone, each tracklet of two members 30 s apart fits either; together, only
    "first = 1, second = 2" gives both the same offset (+100 s) and one object each."""
    tracklets = [_tracklet("IRN1", 0), _tracklet("IRN1", 30), _tracklet("PER1", 0)]
    single = [
        _call((1, 0.55, 100.0), (2, 0.44, 70.0)),
        _call((1, 0.52, 130.0), (2, 0.47, 100.0)),
        _call((1, 0.55, 100.0), (2, 0.44, 70.0)),  # alone at another station
    ]
    joint = identify_jointly(tracklets, single, _wide_prior, ErrorModel.default())
    assert [(r.status, r.norad_id) for r in joint[:2]] == [("correlated", 1), ("correlated", 2)]
    assert joint[0].reason.startswith("joint with 1 other tracklet(s) of the same pass")
    assert "train offset +100 s" in joint[1].reason
    assert joint[2] is single[2]
    for r in joint[:2]:
        assert abs(sum(c.score for c in r.candidates) + r.p_unlisted - 1.0) < 1e-9


def test_joint_calls_of_train_mates_are_tempered():
    """The joint posterior of a confident call is tempered over the best candidate's
    launch mates as a single call's is (score^(1/T) shared, total and order kept);
    candidates of other launches are left as they are."""
    tracklets = [_tracklet("IRN1", 0), _tracklet("IRN1", 30)]
    single = [
        _call((1, 0.55, 100.0), (2, 0.44, 70.0)),
        _call((1, 0.52, 130.0), (2, 0.47, 100.0)),
    ]
    model = ErrorModel.default()
    assert model.mate_temperature > 1.0
    plain = identify_jointly(tracklets, single, _wide_prior, model)
    apart = identify_jointly(tracklets, single, _wide_prior, model, {1: 7, 2: 8})
    mates = identify_jointly(tracklets, single, _wide_prior, model, {1: 7, 2: 7})
    assert apart == plain
    for p, m in zip(plain, mates, strict=True):
        top, runner = p.candidates[0].score, p.candidates[1].score
        assert top >= model.min_score
        assert [c.norad_id for c in m.candidates] == [c.norad_id for c in p.candidates]
        share = np.array([top, runner]) ** (1 / model.mate_temperature)
        want = (top + runner) * share / share.sum()
        got = [m.candidates[0].score, m.candidates[1].score]
        np.testing.assert_allclose(got, want, rtol=1e-9)
        assert m.p_unlisted == p.p_unlisted


def test_a_member_that_fits_no_one_stays_honest():
    """Both tracklets want object 1 and nothing else fits the second: the second cannot
    be object 1 as well, so it is not called 1 (left for "not in the catalogue")."""
    tracklets = [_tracklet("IRN1", 0), _tracklet("IRN1", 30)]
    single = [_call((1, 0.999, 5.0), unlisted=0.001), _call((1, 0.95, 35.0), unlisted=0.05)]
    joint = identify_jointly(tracklets, single, _wide_prior, ErrorModel.default())
    assert (joint[0].status, joint[0].norad_id) == ("correlated", 1)
    assert joint[1].status == "uncorrelated" and joint[1].norad_id is None


@pytest.mark.slow
def test_a_real_train_is_identified_jointly(tmp_path):
    """Real 2026 elements: the two members of a newly launched Starlink batch flying
    23 s apart (67631, 67634), seen in one pass from one station, with their element
    sets two days old (2026-03-16 against tracklets from the 18th's elements). Alone each
    tracklet fits both members about equally (``ambiguous``); together they are both
    right, with the common train offset in the record."""
    import sys

    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from bench_identification import night_of, snapshot
    from trainpasses import build_train_passes

    from aposos.correlate.correlator import SGP4Correlator
    from aposos.model import Site
    from aposos.orbit.catalogue import Catalogue

    ts = build_train_passes(
        snapshot("18"), catalogue_path=snapshot("16"), night_jd=night_of(snapshot("18")),
        n_passes=1, seed=0, members_of=[67631],
    )  # fmt: skip
    correlator = SGP4Correlator(
        Catalogue.from_tle(ts.catalogue_lines),
        {code: Site(*where) for code, where in ts.sites.items()}, cube_dir=tmp_path,
    )  # fmt: skip
    tracklets = [t.tracklet for t in ts.tracklets]
    truth = [t.norad_id for t in ts.tracklets]
    assert {67631, 67634} <= set(truth)
    single = correlator(tracklets, joint=False)
    joint = correlator(tracklets)
    members = [k for k, n in enumerate(truth) if n in (67631, 67634)]
    assert any(single[k].status != "correlated" for k in members)
    for k in members:
        assert (joint[k].status, joint[k].norad_id) == ("correlated", truth[k])
        assert "of the same pass: train offset" in joint[k].reason
    for r, n in zip(joint, truth, strict=True):
        assert r.status != "correlated" or r.norad_id == n
    # the joint stage decides from the scores before train mates are tempered (it
    # weighs the mates itself); the tracklets it leaves keep their tempered call. At a
    # threshold of 0.5 the members' single calls are tempered
    from dataclasses import replace

    model = replace(correlator.error_model, min_score=0.5)
    correlator = SGP4Correlator(
        correlator.catalogue, correlator.sites, cube_dir=tmp_path, error_model=model
    )
    results, untempered = correlator.correlate_single(tracklets)
    assert any(untempered[k].score > results[k].score for k in members)
    alone = identify_jointly(
        tracklets, untempered, correlator._tau_prior(tracklets), model, correlator._launch_of()
    )
    joint = correlator(tracklets)
    for r, u, a, j in zip(results, untempered, alone, joint, strict=True):
        assert u.score >= r.score
        assert j == (r if a is u else a)
    for k in members:
        assert (joint[k].status, joint[k].norad_id) == ("correlated", truth[k])


def test_a_lost_element_set_keeps_its_share_of_the_unnamed_posterior():
    """What a single call's candidates leave beyond "not in the catalogue" (a catalogued
    object whose element set is lost) weighs in the joint call as before, and the joint
    "not in the catalogue" keeps its share of what the candidates leave."""
    tracklets = [_tracklet("IRN1", 0), _tracklet("IRN1", 30)]
    single = [
        _call((1, 0.55, 100.0), (2, 0.35, 70.0), unlisted=0.01),
        _call((1, 0.52, 130.0), (2, 0.47, 100.0)),
    ]
    joint = identify_jointly(tracklets, single, _wide_prior, ErrorModel.default())
    first = joint[0]
    assert first is not single[0] and first.reason.startswith("joint with 1 other")
    unnamed = 1.0 - sum(c.score for c in first.candidates)
    assert first.p_unlisted == pytest.approx(0.1 * unnamed, rel=1e-9)
    lumped = identify_jointly(
        tracklets, [_call((1, 0.55, 100.0), (2, 0.35, 70.0)), single[1]], _wide_prior,
        ErrorModel.default(),
    )  # fmt: skip
    assert [c.score for c in lumped[0].candidates] == pytest.approx(
        [c.score for c in first.candidates], rel=1e-12
    )
