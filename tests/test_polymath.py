"""Our branch-free sin/cos/atan2 against the C library (numpy), in radians."""

import numba
import numpy as np
import pytest

from aposos.orbit.polymath import atan2, cfmod, sincos

pytestmark = pytest.mark.kernel


@numba.njit
def _apply(x, y, s, c, a, m):
    for i in range(x.shape[0]):
        s[i], c[i] = sincos(x[i])
        a[i] = atan2(y[i], x[i])
        m[i] = cfmod(x[i], 2.0 * np.pi)


def test_against_libm():
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [rng.uniform(-1e4, 1e4, 20000), rng.normal(0, 2, 20000), [0.0, np.pi, -np.pi / 2]]
    )
    y = np.concatenate([rng.normal(0, 1e3, 20000), rng.normal(0, 2, 20000), [1.0, 0.0, 0.0]])
    s, c, a, m = (np.empty_like(x) for _ in range(4))
    _apply(x, y, s, c, a, m)
    assert np.abs(s - np.sin(x)).max() < 1e-15 * max(1.0, np.abs(x).max() / 1e3)
    assert np.abs(c - np.cos(x)).max() < 1e-15 * max(1.0, np.abs(x).max() / 1e3)
    assert np.abs(a - np.arctan2(y, x)).max() < 1e-15
    assert np.abs(m - np.fmod(x, 2 * np.pi)).max() < 1e-11
