"""Uncatalogued pieces of a fresh launch: launch kinds, their learned odds, the score."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

from aposos.correlate.calibrate import launch_odds
from aposos.correlate.decide import score_pairs
from aposos.correlate.errors import launch_kinds
from aposos.correlate.model import ErrorModel
from aposos.orbit.catalogue import Catalogue

SERIES = Path(__file__).resolve().parent / "data" / "shared" / "catalogues"


@functools.cache  # the 16th serves two tests: parsed once (0.8 CPU-s), read-only
def _snapshot(day: int) -> Catalogue:
    cat = Catalogue.from_tle(SERIES / f"celestrak-active-2026-03-{day:02d}.3le.xz")
    for value in vars(cat).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # a test that changed it would fail, not leak
    return cat


def test_launch_kinds_mark_the_newest_launches_by_size():
    designators = [
        "2026-047A", "2026-047B", "2026-052A", "2026-052B", "2026-052C", "2026-052D",
        "98067A", "2026-051A", "2026-050A", "2026-049A", "2026-048A", "",
    ]  # fmt: skip
    kinds = launch_kinds(designators, fresh_launches=5, small_group=3)
    # the five newest launches are 052, 051, 050, 049 and 048; 047 is older
    assert list(kinds) == [
        "", "", "fresh", "fresh", "fresh", "fresh", "", "fresh_small", "fresh_small",
        "fresh_small", "fresh_small", "",
    ]  # fmt: skip
    # a two-digit year of the last century is older than any of this one
    assert list(launch_kinds(["98067A", "00001A"], fresh_launches=1)) == ["", "fresh_small"]
    assert list(launch_kinds([], fresh_launches=5)) == []


def test_launch_odds_on_real_snapshots():
    """2026-03-16 -> 17: the GUOWANG GROUP 20 launch (2026-047) had 2 pieces catalogued
    on the 16th and 7 more appeared by the 17th; the other small groups of the five
    newest launches (4 pieces) had none: odds 7/6 per catalogued piece."""
    older, newer = _snapshot(16), _snapshot(17)
    kinds = launch_kinds(older.intl_designator)
    guowang = np.char.startswith(older.intl_designator, "2026-047")
    assert guowang.sum() == 2 and set(kinds[guowang]) == {"fresh_small"}
    odds = launch_odds([(older, newer)])
    assert odds["fresh_small"] == pytest.approx(7 / 6, abs=1e-6)
    assert odds.get("fresh", 0.0) < 0.05
    assert "other" not in odds
    # the nine others new on the 17th are of launches not in the 16th's catalogue
    assert launch_odds([(older, newer)], other=True)["other"] == 0.0


def test_launch_odds_of_older_launches_on_real_snapshots():
    """2026-03-18 -> 19: two objects of older launches appear (62225 of 2024-231 and
    68261 of 2025-241), one of a fresh launch: the rest of the catalogue has odds of
    2 per its 14,700-odd objects, far below the share of new objects."""
    older, newer = _snapshot(18), _snapshot(19)
    odds = launch_odds([(older, newer)], other=True)
    others = np.sum(launch_kinds(older.intl_designator) == "")
    assert odds["other"] == pytest.approx(2 / others, abs=1e-6)


def test_cluster_odds_per_candidate_in_the_posterior():
    """Per-candidate odds replace ``f / (1 - f)`` in each candidate's cluster term."""
    model = ErrorModel.default()
    rng = np.random.default_rng(11)
    pair_trk = np.array([0, 0, 1, 1, 1])
    k_max = 2
    dev = rng.uniform(20.0, 40.0, (pair_trk.size, k_max))
    cdev = rng.uniform(20.0, 40.0, (pair_trk.size, k_max))
    w = rng.uniform(0.05, 0.5, (pair_trk.size, k_max))
    lost = np.zeros(pair_trk.size)
    free = rng.uniform(25.0, 45.0, 2)
    odds = np.array([3.5, 0.001, 0.001, 0.8, 0.001])
    got = score_pairs(model, pair_trk, dev, cdev, w, lost, free, None, odds)
    f = model.uncatalogued_fraction
    r = f / (1 - f)
    for t in range(2):
        mine = np.flatnonzero(pair_trk == t)
        like = [sum(w[k, c] * math.exp(-dev[k, c] / 2) for c in range(k_max)) for k in mine]
        kern = [
            odds[k] * sum(w[k, c] * math.exp(-cdev[k, c] / 2) for c in range(k_max)) for k in mine
        ]
        unlisted = sum(kern) - (1 - model.self_cluster_weight) * max(kern)
        unlisted += r * math.exp(-free[t] / 2)
        total = sum(like) + unlisted
        assert got.unlisted[t] == pytest.approx(unlisted / total, rel=1e-9)
        for k, lk in zip(mine, like, strict=True):
            assert got.score[k] == pytest.approx(lk / total, rel=1e-9)
    # the same odds for all is the model's global prior
    same = score_pairs(model, pair_trk, dev, cdev, w, lost, free, None, np.full(5, r))
    plain = score_pairs(model, pair_trk, dev, cdev, w, lost, free, None)
    np.testing.assert_allclose(same.score, plain.score, rtol=1e-12)


def test_prior_table_raises_the_odds_near_fresh_launches_only():
    cat = _snapshot(16)
    f = 0.003
    model = ErrorModel(uncatalogued_fraction=f, launch_odds={"fresh_small": 0.8, "fresh": 1e-4})
    odds = model.table(cat).cluster_odds
    kinds = launch_kinds(cat.intl_designator)
    assert np.all(odds[kinds == "fresh_small"] == 0.8)
    # never below the global prior
    assert np.all(odds[kinds != "fresh_small"] == pytest.approx(f / (1 - f)))
    assert np.all(ErrorModel(uncatalogued_fraction=f).table(cat).cluster_odds == odds.min())
    # the odds of the rest of the catalogue replace the global prior
    model = ErrorModel(uncatalogued_fraction=f, launch_odds={"fresh_small": 0.8, "other": 2e-4})
    odds = model.table(cat).cluster_odds
    assert np.all(odds[kinds == ""] == 2e-4)
    assert np.all(odds[kinds == "fresh"] == pytest.approx(f / (1 - f)))


def test_launch_odds_are_saved_and_checked(tmp_path):
    model = ErrorModel(launch_odds={"fresh_small": 0.8, "fresh": 0.01})
    path = tmp_path / "model.json"
    model.save(path)
    assert ErrorModel.load(path).launch_odds == {"fresh_small": 0.8, "fresh": 0.01}
    with pytest.raises(ValueError, match="launch_odds"):
        ErrorModel.from_dict({"launch_odds": {"old": 1.0}})
    with pytest.raises(ValueError, match="launch_odds"):
        ErrorModel.from_dict({"launch_odds": {"fresh": -1.0}})


def test_temper_mates_flattens_only_the_best_ones_train():
    """Tracklet 0: best 0.95 with a mate at 0.04 and another launch's candidate at
    0.005; tracklet 1: no mate. At temperature 2 the best and its mate share their 0.99
    as the square roots of their shares; nothing else moves, and the order stays."""
    from aposos.correlate.decide import Scores, temper_mates

    pair_trk = np.array([0, 0, 0, 1, 1])
    score = np.array([0.04, 0.95, 0.005, 0.97, 0.02])
    launch = np.array([2026047, 2026047, 2025241, 2024231, 2025276])
    unlisted = np.array([0.005, 0.01])
    scores = Scores(score, np.zeros(5, dtype=np.int64), unlisted)
    got = temper_mates(scores, pair_trk, launch, 2.0)
    a, b = math.sqrt(0.04 / 0.99), math.sqrt(0.95 / 0.99)
    assert got.score[1] == pytest.approx(0.99 * b / (a + b), rel=1e-12)
    assert got.score[0] == pytest.approx(0.99 * a / (a + b), rel=1e-12)
    assert got.score[1] < 0.9 < score[1]  # no longer a confident call
    np.testing.assert_array_equal(got.score[2:], score[2:])
    np.testing.assert_array_equal(got.unlisted, unlisted)
    assert temper_mates(scores, pair_trk, launch, 1.0) is scores
    # only confident calls are tempered: tracklet 0 is not one at min_score 0.96
    gated = temper_mates(scores, pair_trk, launch, 2.0, min_score=0.96)
    np.testing.assert_array_equal(gated.score, score)
    np.testing.assert_array_equal(
        temper_mates(scores, pair_trk, launch, 2.0, min_score=0.9).score, got.score
    )
    # a candidate with no launch (-1) is nobody's mate
    none = temper_mates(scores, pair_trk, np.array([-1, -1, 5, 6, 6]), 3.0)
    np.testing.assert_allclose(none.score[:3], score[:3])
    assert none.score[3] > none.score[4] and none.score[3] + none.score[4] == pytest.approx(0.99)


def test_mate_temperature_is_saved_and_checked(tmp_path):
    path = tmp_path / "model.json"
    ErrorModel(mate_temperature=2.0).save(path)
    assert ErrorModel.load(path).mate_temperature == 2.0
    with pytest.raises(ValueError, match="mate_temperature"):
        ErrorModel.from_dict({"mate_temperature": 0.5})
    assert ErrorModel.default().mate_temperature > 1.0
