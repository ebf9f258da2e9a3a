"""Ephemeris cube: Hermite interpolation against python-sgp4, zarr blocks and their reuse.

The authority is python-sgp4 (Vallado's C++ SGP4) evaluated at the very times we
interpolate to; tolerances are in metres.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from sgp4.api import Satrec, SatrecArray

from aposos.orbit.catalogue import Catalogue
from aposos.orbit.ephemeris import GRID_ORIGIN_JD, HermiteEphemeris, hermite_weights

CATALOGUE = Path(__file__).resolve().parent / "data" / "shared" / "catalogues"
SNAPSHOT = CATALOGUE / "celestrak-active-2020-10-02.3le"
one_metre_km = 1e-3


@pytest.fixture(scope="module")
def sample():
    """Real element sets: every 10th object of the snapshot (LEO, MEO, GEO and HEO)."""
    lines = [line for line in SNAPSHOT.read_text().splitlines() if line.strip()]
    picked = []
    for k in range(0, len(lines) // 3, 10):
        picked += lines[3 * k : 3 * k + 3]
    cat = Catalogue.from_tle(picked)
    sats = SatrecArray([Satrec.twoline2rv(a, b) for a, b in zip(picked[1::3], picked[2::3])])
    return cat, sats


def _random_times(rng, n, day=2459125.5):
    fr = rng.uniform(0.2, 0.35, n)
    return np.full(n, day), fr


@pytest.mark.parametrize(
    ("step_s", "tolerance_m"),
    [(60, 5.0), (180, 150.0)],  # worst case over LEO/MEO/GEO, float32 storage included
)
def test_hermite_matches_python_sgp4(sample, step_s, tolerance_m):
    cat, sats = sample
    eph = HermiteEphemeris(cat, step_s=step_s)
    rng = np.random.default_rng(1)
    jd, fr = _random_times(rng, 40)
    r, v = eph(jd, fr)
    e, r_ref, v_ref = sats.sgp4(jd, fr)
    good = (e == 0) & (cat.orbit_class != "HEO")[:, None]
    err_km = np.linalg.norm(r - r_ref, axis=2)[good]
    assert err_km.max() < tolerance_m * one_metre_km
    err_v = np.linalg.norm(v - v_ref, axis=2)[good]
    assert err_v.max() < tolerance_m * one_metre_km / 10.0  # km/s


def test_hermite_heo_at_120_s(sample):
    cat, sats = sample
    heo = np.flatnonzero(cat.orbit_class == "HEO")
    sub = cat.subset(heo)
    eph = HermiteEphemeris(sub, step_s=120)
    jd, fr = _random_times(np.random.default_rng(2), 40)
    r, _ = eph(jd, fr)
    lines = [line for line in SNAPSHOT.read_text().splitlines() if line.strip()]
    by_id = {int(lines[i + 1][2:7]): (lines[i + 1], lines[i + 2]) for i in range(0, len(lines), 3)}
    ref = SatrecArray([Satrec.twoline2rv(*by_id[int(n)]) for n in sub.norad_id])
    e, r_ref, _ = ref.sgp4(jd, fr)
    err_km = np.linalg.norm(r - r_ref, axis=2)[e == 0]
    # float32 keeps about 1e-7 of the distance; TESS is 300,000 km out
    scale = np.maximum(np.linalg.norm(r_ref, axis=2)[e == 0] * 1e-6, 0.03)
    assert np.all(err_km < scale)


def test_grid_is_exact_and_global(sample):
    cat, _ = sample
    eph = HermiteEphemeris(cat, step_s=180)
    jd, fr = eph.sample_times(12345 * 20, 21)
    assert np.all(jd == np.floor(jd - 0.5) + 0.5)
    block, k, s = eph.locate(jd[:-1], fr[:-1])
    assert np.all(block == 12345)
    assert np.array_equal(k, np.arange(20))
    assert np.all(s == 0.0)
    # mid-interval, and the grid origin
    block, k, s = eph.locate(np.array([GRID_ORIGIN_JD]), np.array([90.0 / 86400.0]))
    assert block[0] == 0 and k[0] == 0 and s[0] == pytest.approx(0.5, abs=1e-9)


def test_weights_reproduce_a_cubic():
    # a cubic through the end points with the given slopes is reproduced exactly
    s = np.linspace(0, 1, 7)
    w = hermite_weights(s)
    p0, v0, p1, v1, h = 2.0, -1.0, 5.0, 3.0, 4.0
    value = w[:, 0] * p0 + w[:, 1] * h * v0 + w[:, 2] * p1 + w[:, 3] * h * v1
    assert value[0] == pytest.approx(p0) and value[-1] == pytest.approx(p1)
    slope = (w[:, 4] * p0 + w[:, 5] * h * v0 + w[:, 6] * p1 + w[:, 7] * h * v1) / h
    assert slope[0] == pytest.approx(v0) and slope[-1] == pytest.approx(v1)


def test_blocks_are_written_and_reused(sample, tmp_path):
    cat, _ = sample
    jd, fr = _random_times(np.random.default_rng(3), 10)
    first = HermiteEphemeris(cat, step_s=300, cube_dir=tmp_path)
    r1, v1 = first(jd, fr)
    stored = sorted(p.name for p in first.store_dir.iterdir())
    assert stored and all(name.endswith(".zarr") for name in stored)
    assert first.store_dir.name == f"{cat.fingerprint()}-300s"

    second = HermiteEphemeris(cat, step_s=300, cube_dir=tmp_path)
    counts = second.ensure(second.blocks_for(jd, fr))
    assert counts == {"memory": 0, "loaded": len(stored), "built": 0}
    r2, v2 = second(jd, fr)
    assert np.array_equal(r1, r2, equal_nan=True) and np.array_equal(v1, v2, equal_nan=True)

    # another catalogue (one element set fewer) never reads these blocks
    other = HermiteEphemeris(cat.subset(np.arange(1, len(cat))), step_s=300, cube_dir=tmp_path)
    assert other.ensure(other.blocks_for(jd, fr))["built"] == len(stored)


def test_mismatched_block_is_rebuilt(sample, tmp_path):
    import zarr

    cat, _ = sample
    eph = HermiteEphemeris(cat, step_s=600, cube_dir=tmp_path)
    jd, fr = np.array([2459125.5]), np.array([0.3])
    eph(jd, fr)
    path = next(eph.store_dir.iterdir())
    zarr.open_array(str(path), mode="r+").attrs["fingerprint"] = "something-else"
    again = HermiteEphemeris(cat, step_s=600, cube_dir=tmp_path)
    assert again.ensure(again.blocks_for(jd, fr))["built"] == 1


def test_failed_propagation_is_nan():
    # a real element set with its drag term raised to B* = 0.5: gone within days
    decayed = [
        "1 88888U 64063C   20274.95388704  .00000217  00000-0  50000-0 0  9993",
        "2 88888  90.1603  30.0967 0029383 100.7142   7.3777 16.20000000784937",
    ]
    good = [
        "1 00900U 64063C   20274.95388704  .00000217  00000-0  22188-3 0  9991",
        "2 00900  90.1603  30.0967 0029383 100.7142   7.3777 13.73420809784934",
    ]
    cat = Catalogue.from_tle(good + decayed)
    eph = HermiteEphemeris(cat, step_s=120)
    r, v = eph(np.array([2459125.5]), np.array([0.3]))
    row = int(np.flatnonzero(cat.norad_id == 88888)[0])
    assert np.all(np.isnan(r[row])) and np.all(np.isnan(v[row]))
    assert np.all(np.isfinite(r[1 - row]))


def test_pickle_drops_loaded_blocks(sample, tmp_path):
    cat, _ = sample
    eph = HermiteEphemeris(cat, step_s=600, cube_dir=tmp_path)
    eph(np.array([2459125.5]), np.array([0.3]))
    assert eph.loaded_blocks()
    copy = pickle.loads(pickle.dumps(eph))
    assert copy.loaded_blocks() == [] and copy.cube_dir == eph.cube_dir


@pytest.mark.parametrize("step", [0, 7, 59.5, 7200])
def test_bad_step_is_refused(sample, step):
    with pytest.raises(ValueError, match="step_s"):
        HermiteEphemeris(sample[0], step_s=step)


def test_least_recently_used_blocks_are_dropped(sample, tmp_path):
    cat, _ = sample
    eph = HermiteEphemeris(cat, step_s=600, cube_dir=tmp_path, max_blocks=2)
    jd = np.full(4, 2459125.5)
    fr = (np.arange(4) + 0.5) / 24.0  # four different hours
    first, _ = eph(jd, fr)
    assert len(eph.loaded_blocks()) == 2
    again, _ = eph(jd, fr)  # dropped blocks come back from zarr, unchanged
    assert np.array_equal(first, again, equal_nan=True)
