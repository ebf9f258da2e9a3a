"""Real element-set errors, measured between two snapshots of one catalogue.

For every object in both snapshots, the older element set is propagated to the epoch
of the newer one and compared with the newer one there (where it is at its best). The
difference is split in the newer state's orbit frame: along track, as a time (``tau``
> 0: the object is ahead of the older prediction), along the orbit normal and along
the radius (km). ``age`` is the time from the older epoch to the newer (days); ``drift``
is the along-track offset the older element set's own ``n_dot`` predicts over that age
(SGP4 leaves ``n_dot`` out), ``n_dot age^2 / 2n`` in seconds; ``train_drift`` the
*activity* the error model's weights follow: the larger of that drift from
:func:`train_ndot` (objects of one launch flying together manoeuvre together) and, when
the snapshot before the older one is given, the :func:`history_drift_seconds` of the
semi-major axis change between the two (2026 series, LEO at three days: median
along-track error 1 s for objects whose orbit changed under 0.05 km/day the day before,
190 s above 1.5 km/day, the fleets being lowered).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ElementSetErrors",
    "element_set_errors",
    "history_drift_seconds",
    "launch_index",
    "launch_kinds",
    "plane_mates",
    "semi_major_axis_rate",
    "train_ndot",
]

TRAIN_REV_PER_DAY = 0.1  # one launch's objects within this of each other fly together
MU_KM3_S2 = 398600.4418
MIN_HISTORY_DAYS = 0.2  # element sets closer than this in time say nothing of a change
PLANE_RAAN_DEG = 2.0  # one launch's objects this close in node and inclination share a plane
PLANE_INCLINATION_DEG = 0.3


@dataclass
class ElementSetErrors:
    """Errors of one or more snapshot pairs; arrays of one length (one row per object)."""

    norad_id: np.ndarray
    orbit_class: np.ndarray
    age_days: np.ndarray
    drift_s: np.ndarray
    train_drift_s: np.ndarray
    tau_s: np.ndarray
    normal_km: np.ndarray
    radial_km: np.ndarray
    rev_per_day: np.ndarray  # mean motion of the older element set
    pair: np.ndarray  # which snapshot pair a row came from (0, 1, ...)

    def __len__(self) -> int:
        return int(self.norad_id.size)

    def select(self, mask) -> ElementSetErrors:
        return ElementSetErrors(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    @classmethod
    def concatenate(cls, parts) -> ElementSetErrors:
        parts = list(parts)
        return cls(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__}
        )


def drift_seconds(ndot, n_rad_min, age_days) -> np.ndarray:
    """Along-track drift ``n_dot age^2 / 2n`` (s) an element set's ``n_dot`` predicts."""
    age_min = np.asarray(age_days, dtype=np.float64) * 1440.0
    n_rad_min = np.asarray(n_rad_min, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        drift = np.where(n_rad_min > 0, 0.5 * np.asarray(ndot) * age_min**2 / n_rad_min * 60.0, 0)
    return np.nan_to_num(drift, nan=0.0, posinf=1e9, neginf=-1e9)


def _launch(designator: str) -> str:
    """The launch part of an international designator (``23010A`` -> ``23010``)."""
    return designator.strip().replace("-", "").rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ ")


def _launch_order(key: str) -> int:
    """A launch key (``2026047``, or ``98067`` with a two-digit year) as ``year * 1000 +
    number`` (two-digit years 57-99 are 19xx, the rest 20xx); -1 when it is not one."""
    if not key.isdigit() or len(key) not in (5, 7):
        return -1
    year, number = (int(key[:-3]), int(key[-3:]))
    if len(key) == 5:
        year += 1900 if year >= 57 else 2000
    return year * 1000 + number


def launch_index(designators) -> np.ndarray:
    """An integer per object naming its launch (``year * 1000 + number``), -1 for none."""
    return np.array([_launch_order(_launch(str(d))) for d in designators], dtype=np.int64)


def launch_kinds(designators, *, fresh_launches: int = 5, small_group: int = 3) -> np.ndarray:
    """Each object's kind of launch group: ``"fresh_small"`` for one of the catalogue's
    ``fresh_launches`` newest launches with at most ``small_group`` objects catalogued
    (its other pieces are still being catalogued), ``"fresh"`` for one of those with more,
    ``""`` for the rest. Near a fresh launch's catalogued pieces fly its uncatalogued
    ones (2026 series: 3.5 new objects a day later per catalogued GUOWANG GROUP 20 piece,
    against 0.0001 near older launches)."""
    keys = np.array([_launch(str(d)) for d in designators])
    out = np.full(keys.size, "", dtype="<U11")
    if keys.size == 0:
        return out
    launches, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.array([_launch_order(str(k)) for k in launches])
    valid = np.flatnonzero(order >= 0)
    fresh = np.zeros(launches.size, dtype=bool)
    fresh[valid[np.argsort(order[valid])][-fresh_launches:]] = fresh_launches > 0
    kind = np.where(fresh, np.where(counts <= small_group, "fresh_small", "fresh"), "")
    out[:] = kind[inverse]
    return out


def train_ndot(designators, ndot, rev_per_day) -> np.ndarray:
    """``|n_dot|`` of each object or, if larger, the median over its train: the objects
    of its launch within ``TRAIN_REV_PER_DAY`` of its mean motion. A train lowered or
    raised together shows it in most members' ``n_dot`` even when one member's element
    set was fitted before its manoeuvre began."""
    return train_level(designators, np.abs(np.asarray(ndot, dtype=np.float64)), rev_per_day)


def semi_major_axis_rate(previous, current) -> np.ndarray:
    """``|da/dt|`` (km/day) of each object of ``current`` since the ``previous`` snapshot
    of the same catalogue (0 where it is absent there or its element sets are less than
    ``MIN_HISTORY_DAYS`` apart), raised to its train's median (see :func:`train_level`)."""
    rate = np.zeros(len(current))
    common, i_prev, i_cur = np.intersect1d(previous.norad_id, current.norad_id, return_indices=True)
    days = (current.epoch_jd[i_cur] - previous.epoch_jd[i_prev]) + (
        current.epoch_fr[i_cur] - previous.epoch_fr[i_prev]
    )
    a_prev = _semi_major_axis(previous.mean_motion_rev_per_day[i_prev])
    a_cur = _semi_major_axis(current.mean_motion_rev_per_day[i_cur])
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(a_cur - a_prev) / days
    rate[i_cur] = np.where((days >= MIN_HISTORY_DAYS) & np.isfinite(change), change, 0.0)
    return train_level(current.intl_designator, rate, current.mean_motion_rev_per_day)


def _semi_major_axis(rev_per_day) -> np.ndarray:
    n = np.maximum(np.asarray(rev_per_day, dtype=np.float64), 1e-6) * (2.0 * np.pi / 86400.0)
    return np.cbrt(MU_KM3_S2 / (n * n))


def history_drift_seconds(rate_km_day, rev_per_day, age_days) -> np.ndarray:
    """Along-track drift (s) after ``age_days`` of an orbit whose semi-major axis keeps
    changing at ``rate_km_day``: ``(3/4) (da/dt / a) age^2``, a day in seconds.

    Only its size says anything: signed, as a predicted time offset, it does not tell
    which way an object went (LEO of the fitting pairs 18-19, 19-23 and 17-23 with a
    predicted 1-100 s: the signs agree 27-55 % of the time). Above 100 s, at the train
    level, they agree 70-80 %: on the fitting pairs 17-23 and 19-23 a third of the fleet
    being lowered in March 2026 (2023 Starlink launches, da/dt near -3.3 km/day; 1,500 of
    13,900 LEO objects 700-2,500 s ahead after 6 days) runs 0.6-0.9 times the signed
    drift ahead. A mixture component centred there (weight 0.3-0.6, sigma 0.1-0.4 of the
    drift) did not pay: right calls 86.3 -> 85.8-86.1 % (17-23), 90.0 -> 89.0-89.8 %
    (19-23), confident errors 18 -> 13-17; held out 17-20: 6 right and 2 errors fewer.
    The fleet's members lie within that width of each other, so it tells which way the
    fleet went, not which member a tracklet is."""
    a = _semi_major_axis(rev_per_day)
    age = np.asarray(age_days, dtype=np.float64)
    return 0.75 * np.asarray(rate_km_day, dtype=np.float64) / a * age * age * 86400.0


def _launch_groups(designators, smallest: int):
    """The indices of each launch's objects (launches of ``smallest`` objects or more;
    objects without a designator belong to none)."""
    launches = np.array([_launch(str(d)) for d in designators])
    order = np.argsort(launches, kind="stable")
    keys, starts = np.unique(launches[order], return_index=True)
    bounds = np.append(starts, order.size)
    for key, lo, hi in zip(keys, bounds[:-1], bounds[1:], strict=True):
        if key and hi - lo >= smallest:
            yield order[lo:hi]


def train_level(designators, magnitude, rev_per_day) -> np.ndarray:
    """Each object's ``magnitude`` or, if larger, the median over its train (the objects
    of its launch within ``TRAIN_REV_PER_DAY`` of its mean motion, three or more)."""
    value = np.asarray(magnitude, dtype=np.float64)
    rev = np.asarray(rev_per_day, dtype=np.float64)
    out = value.copy()
    for members in _launch_groups(designators, 3):
        near = np.abs(rev[members][:, None] - rev[members][None, :]) <= TRAIN_REV_PER_DAY
        mates = np.where(near, value[members][None, :], np.nan)
        train = np.nanmedian(mates, axis=1)
        enough = near.sum(axis=1) >= 3
        out[members] = np.where(enough, np.maximum(out[members], train), out[members])
    return out


def plane_mates(designators, rev_per_day, raan_deg, inclination_deg) -> np.ndarray:
    """How many other objects fly in each object's train and plane: of its launch, within
    ``TRAIN_REV_PER_DAY`` of its mean motion, ``PLANE_RAAN_DEG`` of its node and
    ``PLANE_INCLINATION_DEG`` of its inclination. Such a mate whose element set errs by
    more than the gate's window is nowhere among the candidates, yet fits a tracklet of
    the train as well as any member does."""
    rev = np.asarray(rev_per_day, dtype=np.float64)
    raan = np.asarray(raan_deg, dtype=np.float64)
    incl = np.asarray(inclination_deg, dtype=np.float64)
    out = np.zeros(rev.size, dtype=np.int64)
    for m in _launch_groups(designators, 2):
        node = np.abs((raan[m][:, None] - raan[m][None, :] + 180.0) % 360.0 - 180.0)
        near = (
            (np.abs(rev[m][:, None] - rev[m][None, :]) <= TRAIN_REV_PER_DAY)
            & (node <= PLANE_RAAN_DEG)
            & (np.abs(incl[m][:, None] - incl[m][None, :]) <= PLANE_INCLINATION_DEG)
        )
        out[m] = near.sum(axis=1) - 1
    return out


def element_set_errors(older, newer, *, pair: int = 0, min_age_days: float = 0.2, previous=None):
    """Errors of the ``older`` catalogue's element sets at the ``newer`` one's epochs.

    Objects in both catalogues whose newer epoch is at least ``min_age_days`` after the
    older one (an unchanged element set tells nothing) and that both propagate without
    an error code. ``previous``: the snapshot before ``older``, for the activity.
    """
    from aposos.orbit.propagation import propagate_packed

    common, i_old, i_new = np.intersect1d(older.norad_id, newer.norad_id, return_indices=True)
    jd = newer.epoch_jd[i_new]
    fr = newer.epoch_fr[i_new]
    age = (jd - older.epoch_jd[i_old]) + (fr - older.epoch_fr[i_old])
    keep = age >= min_age_days
    common, i_old, i_new, jd, fr, age = (x[keep] for x in (common, i_old, i_new, jd, fr, age))
    e0, r0, _ = propagate_packed(older.params[i_old], jd[:, None], fr[:, None])
    e1, r1, v1 = propagate_packed(newer.params[i_new], jd[:, None], fr[:, None])
    ok = (e0[:, 0] == 0) & (e1[:, 0] == 0)
    r0, r1, v1 = r0[:, 0], r1[:, 0], v1[:, 0]
    # curvilinear: the angle from the prediction to the object in the object's orbit
    # plane, as a time at its angular rate; the radius difference; the distance of the
    # prediction from the plane
    h = np.cross(r1, v1)
    h_norm = np.linalg.norm(h, axis=1)
    normal = h / h_norm[:, None]
    out_of_plane = np.einsum("ij,ij->i", r0, normal)
    in_plane = r0 - out_of_plane[:, None] * normal
    angle = np.arctan2(
        np.einsum("ij,ij->i", np.cross(in_plane, r1), normal),
        np.einsum("ij,ij->i", in_plane, r1),
    )
    r1_norm = np.linalg.norm(r1, axis=1)
    tau = angle / (h_norm / r1_norm**2)
    d = r1 - r0
    n_rad_min = older.mean_motion_rev_per_day[i_old] * (2.0 * np.pi / 1440.0)
    drift = drift_seconds(older.ndot[i_old], n_rad_min, age)
    train = train_ndot(older.intl_designator, older.ndot, older.mean_motion_rev_per_day)
    train_drift = drift_seconds(train[i_old], n_rad_min, age)
    if previous is not None:
        rate = semi_major_axis_rate(previous, older)[i_old]
        history = history_drift_seconds(rate, older.mean_motion_rev_per_day[i_old], age)
        train_drift = np.maximum(train_drift, history)
    out = ElementSetErrors(
        norad_id=common.astype(np.int64),
        orbit_class=np.asarray(older.orbit_class)[i_old],
        age_days=age,
        drift_s=drift,
        train_drift_s=train_drift,
        tau_s=tau,
        normal_km=-out_of_plane,
        radial_km=r1_norm - np.linalg.norm(r0, axis=1),
        rev_per_day=older.mean_motion_rev_per_day[i_old].astype(np.float64),
        pair=np.full(common.size, pair, dtype=np.int64),
    )
    return out.select(ok & np.all(np.isfinite(d), axis=1))
