"""Paths taken for speed give the numbers of the plain ones (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

from aposos.model import Site
from aposos.orbit import frames


def test_observation_frames_are_the_three_frame_functions_called_apart():
    """One set of time scales for a batch: the matrices, the Earth's velocity and each
    station's position equal, bit for bit, what the three functions give on their own
    (one station seeing every time shares them; two stations get their own)."""
    rng = np.random.default_rng(3)
    jd = np.full(40, 2461117.5)
    fr = np.sort(rng.uniform(0.1, 0.4, 40))  # over 8 times: the sampled path too
    a, b = Site(33.674, 51.318, 3600.0), Site(-17.08, -70.87, 3000.0)
    for sites in ([(a, np.arange(40))], [(a, np.arange(0, 40, 2)), (b, np.arange(1, 40, 2))]):
        m, earth, site_km = frames.observation_frames(jd, fr, sites)
        assert np.array_equal(m, frames.teme_to_gcrs_matrices(jd, fr))
        assert np.array_equal(earth, frames.earth_velocity_bcrs_kms(jd, fr))
        for site, rows in sites:
            alone, _ = frames.site_gcrs_posvel_km(site, jd[rows], fr[rows])
            assert np.array_equal(site_km[rows], alone)


def test_propagating_packed_rows_by_index_is_propagating_their_copies():
    """The fit's propagation reads each pair's element set from the catalogue's rows
    (no copy per pair): the same numbers, bit for bit, as the copied rows give, for
    near-earth, deep-space and resonant sets of Vallado's verification file, rows that
    recur, and times that fail (codes and NaN included)."""
    from importlib.resources import files

    from sgp4.api import WGS72
    from sgp4.model import Satrec as PySatrec

    from aposos.orbit.propagation import propagate_packed, propagate_packed_rows
    from aposos.orbit.sgp4 import P_JD, P_JDF, pack_satrecs

    lines = [ln[:69] for ln in files("sgp4").joinpath("SGP4-VER.TLE").read_text().splitlines()]
    sats = [
        PySatrec.twoline2rv(a, b, WGS72)
        for a, b in zip(lines, lines[1:])
        if a.startswith("1 ") and b.startswith("2 ")
    ]
    params = pack_satrecs(sats)
    rng = np.random.default_rng(5)
    rows = rng.integers(0, len(sats), 300)  # every set several times, out of order
    minutes = rng.uniform(-2000.0, 5000.0, (rows.size, 4))
    minutes[::37, 1] = 1e9  # beyond any epoch's reach: code 7
    jd = params[rows, P_JD][:, None] + np.floor(minutes / 1440.0)
    fr = params[rows, P_JDF][:, None] + minutes / 1440.0 - np.floor(minutes / 1440.0)
    e, r, v = propagate_packed_rows(params, rows, jd, fr)
    e0, r0, v0 = propagate_packed(params[rows], jd, fr)
    assert np.array_equal(e, e0) and (e != 0).any() and (e == 0).any()
    assert np.array_equal(r, r0, equal_nan=True) and np.array_equal(v, v0, equal_nan=True)


def _all_pairs_pass_groups(tracklets, results):
    """pass_groups as first written: every pair of one station within the window."""
    from aposos.correlate.joint import MAX_GROUP, MIN_SCORE, PASS_WINDOW_S, _possibly_same

    def middle(i):
        utc = tracklets[i].utc.astype(np.int64)
        return float(utc[len(utc) // 2]) * 1e-6

    def ids(i):
        return {c.norad_id for c in results[i].candidates if c.score >= MIN_SCORE}

    n = len(tracklets)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            same_pass = tracklets[i].station == tracklets[j].station and (
                abs(middle(i) - middle(j)) <= PASS_WINDOW_S
            )
            if same_pass and ids(i) & ids(j) and not _possibly_same(results[i], results[j]):
                parent[root(j)] = root(i)
    groups = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        kept = []
        for i in sorted(members, key=middle):
            if not any(_possibly_same(results[j], results[i]) for j in kept):
                kept.append(i)
        out += [kept[lo : lo + MAX_GROUP] for lo in range(0, len(kept), MAX_GROUP)]
    return [part for part in out if len(part) >= 2]


def test_pass_groups_found_through_candidates_are_those_of_every_pair():
    """The joint stage pairs tracklets through their common candidates: the groups are
    those of looking at every pair of a station within the pass window (random passes
    of a few trains, split tracks and candidates under the score floor included)."""
    from aposos.correlate.joint import pass_groups
    from aposos.model import Candidate, Correlation, Tracklet

    rng = np.random.default_rng(11)
    tracklets, results = [], []
    for _ in range(160):
        start = rng.uniform(0.0, 4000.0)
        us = ((np.array([0.0, 20.0, 40.0]) + start) * 1e6 + 1.8e15).astype(np.int64)
        tracklets.append(
            Tracklet(str(rng.choice(["IRN1", "PAK1"])), us.astype("datetime64[us]"),
                     np.array([1.0, 1.1, 1.2]), np.array([2.0, 2.1, 2.2]), sigma_arcsec=2.0)
        )  # fmt: skip
        ids = rng.choice(25, rng.integers(1, 4), replace=False)
        cands = [
            Candidate(norad_id=int(k), score=float(rng.choice([0.5, 0.3, 5e-5])),
                      rms_arcsec=1.0, time_offset_s=float(rng.choice([0.0, 0.4, 50.0])),
                      cross_track_km=float(rng.choice([0.1, 5.0])))
            for k in ids
        ]  # fmt: skip
        results.append(Correlation(status="ambiguous", score=0.5, candidates=cands))
    results[3] = Correlation(status="uncorrelated", error="refused")
    groups = pass_groups(tracklets, results)
    assert groups == _all_pairs_pass_groups(tracklets, results)
    assert len(groups) > 5 and any(len(g) > 2 for g in groups)


def test_batches_run_without_hugepage_advice_and_leave_numpy_as_found():
    """Batches turn numpy's transparent-hugepage advice off while they run (their
    arrays live for a moment) and the last one out restores it, whatever it was, also
    when batches overlap (threads) or fail."""
    import threading

    from aposos.correlate.correlator import _hugepage_switch, _small_pages

    _set_madvise_hugepage = _hugepage_switch()
    if _set_madvise_hugepage is None:
        pytest.skip("this numpy gives no hugepage advice")

    def advice():
        now = _set_madvise_hugepage(False)
        _set_madvise_hugepage(now)
        return now

    before = advice()
    try:
        for setting in (True, False):
            _set_madvise_hugepage(setting)
            inside, release, started = [], threading.Event(), threading.Event()

            def batch(inside, release, started):
                with _small_pages():
                    started.set()
                    release.wait(10)
                    inside.append(advice())

            other = threading.Thread(target=batch, args=(inside, release, started))
            other.start()
            started.wait(10)
            with _small_pages():  # overlaps the other thread's batch, and leaves first
                inside.append(advice())
            release.set()
            other.join(10)
            assert inside == [False, False] and advice() is setting
            with pytest.raises(RuntimeError), _small_pages():
                raise RuntimeError("a failing batch")
            assert advice() is setting
    finally:
        _set_madvise_hugepage(before)


def test_pairs_fitted_a_few_tracklets_at_a_time_give_the_records_of_one_fit(monkeypatch):
    """The correlator fits a batch's pairs a few tracklets at a time (memory reused):
    the records are those of fitting them all at once, on real element sets and
    tracklets of 3 to 9 observations (parts of one tracklet each against one part)."""
    from pathlib import Path

    from aposos.correlate import correlator as module
    from aposos.model import Tracklet, datetime64_to_jd_fr
    from aposos.orbit.catalogue import Catalogue

    path = Path(__file__).parent / "data/shared/catalogues/celestrak-active-2020-10-02.3le"
    cat = Catalogue.from_tle(path.read_text().splitlines()).subset(slice(0, 400))
    site = Site(33.674, 51.318, 3600.0)
    rng = np.random.default_rng(2)
    tracklets = []
    for k, obj in enumerate(rng.choice(len(cat), 40, replace=False)):
        start = np.datetime64("2020-10-02T18:00:00") + np.timedelta64(int(k * 37), "s")
        utc = start + (np.arange(3 + k % 7) * 8e6).astype("timedelta64[us]")
        ra, dec, _ = cat.subset([obj]).radec(site, *datetime64_to_jd_fr(utc))
        tracklets.append(Tracklet("IRN1", utc, ra[0], dec[0], sigma_arcsec=2.0))

    correlate = module.SGP4Correlator(cat, {"IRN1": site})  # reads FIT_PART at each call

    def records(part):
        monkeypatch.setattr(module, "FIT_PART", part)
        return [c.to_wire() for c in correlate(tracklets)]

    whole = records(10**6)
    assert records(1) == whole and records(7) == whole
    assert sum(c["status"] == "correlated" for c in whole) > 30
