"""The known-geometry offset search on planted star patterns (no catalogue needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aposos.station.known_geometry import _refine, match_known_geometry

SHAPE = (480, 480)
AXIS = (239.5, 239.5)


def _sky(seed, n_field=5, offset=(130.0, -85.0), turn_deg=0.6, n_cat=150):
    """``n_cat`` catalogue stars over the searched area; the frame sees ``n_field`` more
    (and 40 fainter detections) through a camera turned by ``turn_deg`` from the known m0."""
    rng = np.random.default_rng(seed)
    cat = rng.uniform(-900, 900, (n_cat, 2))
    a = math.radians(turn_deg)
    m_true = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    img_field = rng.uniform(-220, 220, (n_field, 2))
    cat = np.vstack([img_field @ m_true.T + offset, cat])  # brightest first
    img = np.vstack([img_field, rng.uniform(-239, 239, (40, 2))])
    return img, cat


def test_a_planted_offset_is_found_with_five_stars():
    img, cat = _sky(1)
    gm = match_known_geometry(img, cat, np.eye(2), shape=SHAPE, axis=AXIS, search_px=900)
    assert gm is not None
    assert np.hypot(*(gm.t - (130.0, -85.0))) < 0.5
    assert set(range(5)) <= set(gm.catalogue_index.tolist())
    assert gm.false_alarm < 1e-3


@pytest.mark.slow  # 50 skies, 23 s of CPU: the quick loop leaves it out; make test runs it
def test_random_stars_are_refused():
    """No planted pattern: whatever lines up by chance is not accepted (50 skies; the
    detections have fluxes, so chance is judged on the brightest ones, three may do)."""
    for seed in range(50):
        img, cat = _sky(100 + seed, n_field=0)
        flux = _fluxes(0, img.shape[0])
        gm = match_known_geometry(
            img, cat, np.eye(2), shape=SHAPE, axis=AXIS, search_px=900, img_flux=flux
        )
        assert gm is None, seed


def test_refine_with_no_star_near_any_prediction():
    """Catalogue stars in the frame but no image star near them: None, not an IndexError."""
    img = np.array([[-230.0, -230.0], [230.0, -230.0], [-230.0, 230.0], [230.0, 230.0]])
    cat = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0], [40.0, 40.0]])
    assert _refine(img, cat, np.eye(2), np.zeros(2), SHAPE, AXIS, 1.0, 1.2, 4) is None


def _fluxes(n_bright, n_faint, bright_first=True):
    """Detections' fluxes: the planted stars bright (or, with ``bright_first`` False,
    fainter than every other detection)."""
    bright = np.geomspace(5e4, 5e3, n_bright)
    faint = np.geomspace(2e3, 300, n_faint)
    if bright_first:
        return np.r_[bright, faint]
    return np.r_[faint[-1] * np.geomspace(0.9, 0.5, n_bright), faint]


def test_three_stars_that_are_the_brightest_detections_are_accepted():
    """Three matches among 43 detections, the only catalogue stars in the frame:
    likely by chance against all of them, not when the three are the frame's brightest."""
    img, cat = _sky(2, n_field=3, n_cat=10)
    flux = _fluxes(3, 40)
    gm = match_known_geometry(
        img, cat, np.eye(2), shape=SHAPE, axis=AXIS, search_px=900, img_flux=flux
    )
    assert gm is not None
    assert gm.image_index.size == 3
    assert np.hypot(*(gm.t - (130.0, -85.0))) < 0.5
    assert gm.false_alarm < 1e-3
    # the same three matches among the faintest detections are not told from chance
    faint = _fluxes(3, 40, bright_first=False)
    assert match_known_geometry(
        img, cat, np.eye(2), shape=SHAPE, axis=AXIS, search_px=900, img_flux=faint
    ) is None  # fmt: skip


def test_two_stars_are_never_enough():
    img, cat = _sky(3, n_field=2, n_cat=10)
    flux = _fluxes(2, 40)
    for least in (2, 3):
        assert match_known_geometry(
            img, cat, np.eye(2), shape=SHAPE, axis=AXIS, search_px=900, img_flux=flux,
            min_matches=least,
        ) is None  # fmt: skip


def test_three_stars_are_found_among_a_dense_catalogue_of_the_searched_area():
    """A frame holding three catalogue stars (its three brightest detections) while the
    1800 px searched about it holds 300 more: chance peaks of three votes from the 43
    detections are then many, and the true one must not be lost among them (seed 5151
    of bench_small_fields: 8 of 93 fields of 0.4 deg with 3+ stars failed so)."""
    rng = np.random.default_rng(7)
    offset = np.array([700.0, -1100.0])
    field = rng.uniform(-220, 220, (3, 2))
    cat = rng.uniform(-2100, 2100, (900, 2))
    cat = cat[(np.abs(cat - offset) > 245).any(axis=1)][:300]  # none other in the frame
    cat = np.vstack([field + offset, cat])
    img = np.vstack([field, rng.uniform(-239, 239, (40, 2))])
    gm = match_known_geometry(
        img, cat, np.eye(2), shape=SHAPE, axis=AXIS, search_px=1800, img_flux=_fluxes(3, 40)
    )
    assert gm is not None
    assert sorted(gm.catalogue_index.tolist()) == [0, 1, 2]
    assert np.hypot(*(gm.t - offset)) < 0.5
    assert gm.false_alarm < 1e-3
