"""Paths taken for speed give the numbers of the plain ones (issue 9)."""

from __future__ import annotations

import numpy as np

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
