"""The known-geometry offset search on planted star patterns (no catalogue needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aposos.station.known_geometry import _refine, match_known_geometry

SHAPE = (480, 480)
AXIS = (239.5, 239.5)


def _sky(seed, n_field=5, offset=(130.0, -85.0), turn_deg=0.6):
    """Catalogue stars over the searched area; the frame sees ``n_field`` of them (and
    40 fainter detections) through a camera turned by ``turn_deg`` from the known m0."""
    rng = np.random.default_rng(seed)
    cat = rng.uniform(-900, 900, (150, 2))
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
    """No planted pattern: whatever lines up by chance is not accepted (50 skies)."""
    for seed in range(50):
        img, cat = _sky(100 + seed, n_field=0)
        gm = match_known_geometry(img, cat, np.eye(2), shape=SHAPE, axis=AXIS, search_px=900)
        assert gm is None, seed


def test_refine_with_no_star_near_any_prediction():
    """Catalogue stars in the frame but no image star near them: None, not an IndexError."""
    img = np.array([[-230.0, -230.0], [230.0, -230.0], [-230.0, 230.0], [230.0, 230.0]])
    cat = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0], [40.0, 40.0]])
    assert _refine(img, cat, np.eye(2), np.zeros(2), SHAPE, AXIS, 1.0, 1.2, 4) is None
