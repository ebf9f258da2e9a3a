"""The truth set's own machinery (tests/truthset.py), against python-sgp4 directly."""

from pathlib import Path

import numpy as np
from sgp4.api import WGS72, Satrec, SatrecArray
from truthset import COLOCATED_KM, _colocated, _jd_split, read_3le

NEWER = Path(__file__).resolve().parent / "data/shared/catalogues/celestrak-active-2020-10-02.3le"
# docked to the ISS (Soyuz MS-16, Progress MS-14, MS-15); flying in pairs (Cosmos 2535-6
# always within 2 km over these nights, Tianhui 2-01 A/B in and out of it)
MATES = {25544: (45476, 45595, 45937), 44421: (44424,), 44207: (44209,)}


def _every_propagation(truth_sats, mid_jd, catalogue_sats):
    """The flags by brute force: every catalogued object at every time."""
    jd, fr = _jd_split(mid_jd)
    e, r, _ = SatrecArray(catalogue_sats).sgp4(jd, fr)
    r = np.where((e == 0)[..., None], r, np.nan)
    ids = np.array([s.satnum for s in catalogue_sats])
    out = []
    for k, sat in enumerate(truth_sats):
        d = np.linalg.norm(r[:, k] - np.asarray(sat.sgp4(jd[k], fr[k])[1]), axis=1)
        d[ids == sat.satnum] = np.inf
        out.append(bool(np.nanmin(d, initial=np.inf) < COLOCATED_KM))
    return np.array(out)


def test_colocated_flags_those_every_propagation_flags():
    """Docked vehicles and pairs flying together are flagged when within 2 km, others
    not, and an object whose mates are not catalogued is not: the grid shortcut
    gives exactly the flags of propagating every catalogued object at every time."""
    sats = [Satrec.twoline2rv(l1, l2) for _, l1, l2 in read_3le(NEWER)]
    by_id = {s.satnum: s for s in sats}
    rng = np.random.default_rng(1)
    truth = [by_id[i] for i in MATES for _ in range(4)]
    truth += [sats[i] for i in rng.choice(len(sats), 60, replace=False)]
    times = 2459125.5 + rng.uniform(0.0, 2.0, len(truth))
    flags = _colocated(truth, times, sats)
    assert np.array_equal(flags, _every_propagation(truth, times, sats))
    assert flags[:8].all() and 0 < flags[8:12].sum() < 4 and not flags.all()

    docked = {m for mates in MATES.values() for m in mates}
    alone = [s for s in sats if s.satnum not in docked]
    assert not _colocated(truth[: 4 * len(MATES)], times[: 4 * len(MATES)], alone).any()


def _circular(satnum, inclination_deg, epoch_jd):
    sat = Satrec()
    sat.sgp4init(
        WGS72, "i", satnum, epoch_jd - 2433281.5, 0.0, 0.0, 0.0, 1e-4, 0.0,
        np.radians(inclination_deg), 0.0, 15.05 * 2 * np.pi / 1440, 0.0,
    )  # fmt: skip
    return sat


def test_colocated_catches_objects_crossing_between_grid_times():
    """Two orbits 10 degrees apart that cross within 2 km for under 2 s (1.70 km at 1.67 s
    after their common epoch, at the node), the crossing a sixth into a grid step (the
    grid alone puts them 5.5 km apart there): flagged at the crossing only. Without the
    grid's bound on the interpolation error this fails."""
    epoch = 2459125.8
    one, other = _circular(90001, 53.0, epoch), _circular(90002, 63.0, epoch)
    times = epoch + np.array([-100.0, 1.67, 3000.0]) / 86400
    flags = _colocated([one] * 3, times, [one, other])
    assert flags.tolist() == [False, True, False]
    assert np.array_equal(flags, _every_propagation([one] * 3, times, [one, other]))
