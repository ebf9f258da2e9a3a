"""The error model the correlator scores against, and its decision rules.

What a correct identification looks like
----------------------------------------
An object observed at UTC ``t`` is where its element set predicts at ``t + tau``
(``tau`` > 0: the object is ahead of its prediction), displaced a little along its orbit
normal and its radius, and each measured direction carries noise:

- ``tau ~ N(-g d, sigma_tau)``, ``sigma_tau^2 = a0^2 + (a1 age)^2 + (s d)^2`` by orbit
  class. ``age`` is ``|t - epoch|`` in days; ``d = n_dot age^2 / (2 n)`` is the
  along-track drift (seconds) that the element set's own mean-motion derivative
  predicts. SGP4 ignores ``n_dot``, but real objects follow it: in the snapshot pair the
  observed offset is ``-1.3 d`` with a scatter of about ``0.7 |d|`` for ``|d|`` of 1 to
  10 s, and no relation beyond (decaying objects, orbit raising): the drift is trusted
  fully up to 8 s and not at all from 15 s, where the sigma is 10 s.
- offsets along the orbit normal and the radius, ``N(0, c0^2 + (c1 age)^2)`` km each
  by orbit class (the radial one may also get ``f v sigma_tau``, ``v`` the orbital speed).
- measurement: ``sigma_i`` per observation (the tracklet's ``sigma_arcsec``) on both
  axes, plus timing jitter ``sigma_t`` times the angular rate on the along-track axis.

Real element-set errors are heavy-tailed, so each object's error is a mixture of two
such Gaussians: a *nominal* one and, with weight ``w`` by class, a *manoeuvre* one
several times wider (station keeping, orbit raising, a poor orbit determination). The
numbers come from the two real CelesTrak snapshots in ``shared/data/catalogues``
(2020-09-30 propagated to the epochs of 2020-10-02, about two days). A two-component
fit per class and axis gives, for GEO, 80 % of normal offsets with a sigma of 1.2 km
and 20 % with 13 km; for LEO, 90-95 % of along-track offsets within a second and the
rest at tens of seconds; LEO objects in orbit raising have radial errors of about
1.4 km. So the nominal component has no radial error tied to the along-track one
(``f = 0``: the radial error a mean-motion error brings is some 30 m per second of
along-track error after two days) and GEO normal errors that grow by 0.4 km a day
(1.1 km at two days); the nominal component leaves out 9 % of LEO, 4 % of MEO and 22 %
of GEO objects (beyond 3 sigma on some axis), the manoeuvre component 2-3 %.

Hypotheses and score
--------------------
For each candidate ``k`` the time offset and the two position offsets are marginalised
analytically (a linear-Gaussian model), giving a deviance ``D = chi2 + ln det`` per
mixture component (chi-square with ``2 n`` degrees of freedom for ``n`` observations,
plus the Occam term of the priors); the candidate's likelihood is
``L_k = (1 - w) exp(-D_nominal / 2) + w exp(-D_manoeuvre / 2)``.

The alternative is an object that is not in the catalogue. Uncatalogued objects are not
spread evenly over the sky: they fly where catalogued ones fly (launch trains, swarms,
co-located GEO slots). Their density near the tracklet is estimated from the catalogued
candidates, each spread along its own track by a cluster width: ``K_j`` is candidate
``j``'s likelihood with the time-offset prior widened to four minutes (LEO, MEO, HEO;
a train or a deployment) and the radial one to 2 km (LEO: train members raise their
orbits one after another), or, for GEO, to a co-location box of 30 s (90 km) along
track and 15 km across. With ``r = f / (1 - f)`` for an uncatalogued fraction ``f`` of
tracklets, ``L_0 = r (sum_j K_j - (1 - e) max_j K_j)``: the largest term, in practice
the best candidate's own neighbourhood, counts ``e`` < 1 times (an object alone in its
orbit rarely has an uncatalogued twin). The score of candidate ``k`` is its posterior
probability ``L_k / (sum_j L_j + L_0)``.

Classification: a candidate is *acceptable* when its fit passes the chi-square test
(``p >= p_min`` for either component) and the nominal component explains at least
``min_nominal_share`` of its likelihood, or its score reaches ``manoeuvre_min_score``:
a match that needs a manoeuvre must be nearly certain, because the manoeuvre component
is the least known part of the model. ``correlated`` when the best candidate is
acceptable and its score reaches ``min_score``; ``ambiguous`` when two or more
acceptable candidates together carry at least half the probability and the second
carries ``tie_min_score`` (near ties: co-orbiting trains, co-located GEO satellites,
docked vehicles); otherwise ``uncorrelated``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "COMPONENTS",
    "ErrorModel",
    "PriorTable",
    "Scores",
    "chi2_isf_even",
    "chi2_sf_even",
    "decide",
    "score_pairs",
]

MU_KM3_S2 = 398600.4418
ARCSEC = math.pi / (180.0 * 3600.0)
# the fits made for every (tracklet, candidate) pair: the two mixture components, and
# the same spread along track by the cluster width (the "not in the catalogue" density)
COMPONENTS = ("nominal", "manoeuvre", "cluster_nominal", "cluster_manoeuvre")


def _default_along() -> dict[str, tuple[float, float]]:
    # (a0 s, a1 s/day) per orbit class
    return {"LEO": (0.2, 0.2), "MEO": (0.1, 0.08), "GEO": (0.8, 1.0), "HEO": (1.0, 1.5)}


def _default_normal() -> dict[str, tuple[float, float]]:
    # (c0 km, c1 km/day) per orbit class: shift along the orbit normal
    return {"LEO": (0.15, 0.1), "MEO": (0.1, 0.05), "GEO": (0.8, 0.4), "HEO": (1.0, 1.5)}


def _default_radial() -> dict[str, tuple[float, float]]:
    # (r0 km, r1 km/day) per orbit class: shift along the radius
    return {"LEO": (0.2, 0.1), "MEO": (0.1, 0.05), "GEO": (0.6, 0.5), "HEO": (1.0, 1.5)}


def _manoeuvre_along() -> dict[str, tuple[float, float]]:
    return {"LEO": (2.0, 0.6), "MEO": (0.5, 0.2), "GEO": (4.0, 2.0), "HEO": (5.0, 3.0)}


def _manoeuvre_normal() -> dict[str, tuple[float, float]]:
    return {"LEO": (0.6, 0.2), "MEO": (0.5, 0.2), "GEO": (6.0, 2.0), "HEO": (5.0, 2.0)}


def _manoeuvre_radial() -> dict[str, tuple[float, float]]:
    return {"LEO": (0.6, 0.3), "MEO": (0.5, 0.2), "GEO": (3.0, 1.0), "HEO": (5.0, 2.0)}


def _manoeuvre_weight() -> dict[str, float]:
    return {"LEO": 0.1, "MEO": 0.05, "GEO": 0.2, "HEO": 0.2}


def _cluster_along() -> dict[str, float]:
    # along-track spread (s) of the objects that fly together: trains and deployments
    # over minutes; a GEO co-location slot of about 0.1 deg (90 km, 30 s)
    return {"LEO": 240.0, "MEO": 240.0, "GEO": 30.0, "HEO": 240.0}


def _cluster_normal() -> dict[str, float]:
    # along the orbit normal (km): co-located GEO satellites are kept apart by
    # inclination, some 10-20 km; elsewhere objects that fly together share a plane
    return {"GEO": 15.0}


def _cluster_radial() -> dict[str, float]:
    # along the radius (km): GEO eccentricity separation; LEO trains raise their orbits
    # one object after another, tens of km apart
    return {"LEO": 2.0, "GEO": 15.0}


@dataclass(frozen=True)
class ErrorModel:
    """Element-set and measurement uncertainties, and the decision rules.

    Parameters
    ----------
    along_s : per orbit class ``(a0, a1)``: along-track timing sigma at epoch (s) and its
        growth per day of element-set age (s/day); the nominal component.
    normal_km, radial_km : per orbit class ``(c0, c1)``: sigma of the offset along the
        orbit normal and along the radius at epoch (km), and their growth (km/day).
    drift_gain, drift_scatter : the along-track drift the element set's own mean-motion
        derivative predicts, ``d = n_dot age^2 / 2n`` (SGP4 leaves ``n_dot`` out), sets
        the prior mean ``-drift_gain d`` and adds ``drift_scatter |d|`` to the sigma.
    drift_fade_s, drift_unknown_s : from ``|d|`` = the first value the drift is trusted
        less, and beyond the second not at all (mean 0, ``drift_unknown_s`` sigma):
        decaying objects and orbit raising have ``n_dot`` that predicts nothing.
    radial_fraction : ``f``: radial km added per km of along-track sigma.
    heo_reference_rev_per_day : HEO objects slower than this (long periods) get their
        along-track sigma scaled by ``reference / mean motion``: the same error in mean
        anomaly is a longer time.
    manoeuvre_weight : per orbit class, the share ``w`` of element sets whose error is
        of the manoeuvre kind.
    manoeuvre_along_s, manoeuvre_normal_km, manoeuvre_radial_km,
    manoeuvre_drift_unknown_s, manoeuvre_radial_fraction : the same as the nominal
        ones, for the manoeuvre component.
    uncatalogued_fraction : prior share of tracklets from objects not in the catalogue.
    cluster_along_s : per orbit class, along-track spread (s) of an uncatalogued object
        around a catalogued one it flies with.
    cluster_normal_km, cluster_radial_km : per orbit class, its spread along the orbit
        normal and the radius (km); classes not listed keep the component's own priors.
    self_cluster_weight : ``e``: weight of the best-fitting candidate's own neighbourhood
        in the density of uncatalogued objects, relative to its neighbours'.
    timing_sigma_s : observation timing jitter (s), 1 sigma.
    p_min : chi-square p-value below which a candidate is inconsistent.
    min_score : posterior probability needed to call a tracklet correlated.
    min_nominal_share : share of a candidate's likelihood its nominal component must
        explain, unless its score reaches ``manoeuvre_min_score``.
    manoeuvre_min_score : posterior probability needed for a match that only the
        manoeuvre component explains.
    tie_min_score : score of the second candidate that makes a near tie.
    gate_sigma : half-width of the coarse gate in sigmas of the widest component.
    """

    along_s: dict[str, tuple[float, float]] = field(default_factory=_default_along)
    normal_km: dict[str, tuple[float, float]] = field(default_factory=_default_normal)
    radial_km: dict[str, tuple[float, float]] = field(default_factory=_default_radial)
    drift_gain: float = 1.3
    drift_scatter: float = 0.7
    drift_fade_s: tuple[float, float] = (8.0, 15.0)
    drift_unknown_s: float = 10.0
    radial_fraction: float = 0.0
    heo_reference_rev_per_day: float = 2.0
    manoeuvre_weight: dict[str, float] = field(default_factory=_manoeuvre_weight)
    manoeuvre_along_s: dict[str, tuple[float, float]] = field(default_factory=_manoeuvre_along)
    manoeuvre_normal_km: dict[str, tuple[float, float]] = field(default_factory=_manoeuvre_normal)
    manoeuvre_radial_km: dict[str, tuple[float, float]] = field(default_factory=_manoeuvre_radial)
    manoeuvre_drift_unknown_s: float = 20.0
    manoeuvre_radial_fraction: float = 0.01
    uncatalogued_fraction: float = 0.12
    cluster_along_s: dict[str, float] = field(default_factory=_cluster_along)
    cluster_normal_km: dict[str, float] = field(default_factory=_cluster_normal)
    cluster_radial_km: dict[str, float] = field(default_factory=_cluster_radial)
    self_cluster_weight: float = 0.5
    timing_sigma_s: float = 0.005
    p_min: float = 1e-4
    min_score: float = 0.9
    min_nominal_share: float = 0.1
    manoeuvre_min_score: float = 0.99
    tie_min_score: float = 0.05
    gate_sigma: float = 6.0

    def table(self, catalogue) -> PriorTable:
        """The per-object constants of the model for a catalogue (compute once, reuse)."""
        return PriorTable(self, catalogue)

    def priors(self, catalogue, jd, fr, index=None, component: str = "nominal") -> np.ndarray:
        """Priors of catalogue objects at UTC ``jd + fr``; see :meth:`PriorTable.priors`."""
        return self.table(catalogue).priors(jd, fr, index, component)


def _per_class(classes: np.ndarray, table: dict, fallback: str = "LEO") -> np.ndarray:
    """``table[class]`` for every object (a class missing from ``table``: ``fallback``'s)."""
    first = next(iter(table.values()), None)
    width = len(first) if isinstance(first, tuple | list) else 1
    out = np.full((classes.size, width), np.nan)
    for name in np.unique(classes) if classes.size else ():
        value = table.get(str(name), table.get(fallback))
        out[classes == name] = np.nan if value is None else value
    return out if width > 1 else out[:, 0]


class PriorTable:
    """An :class:`ErrorModel` applied to one catalogue: per-object constants as arrays."""

    def __init__(self, model: ErrorModel, catalogue):
        self.model = model
        classes = np.asarray(catalogue.orbit_class)
        self.epoch_jd = np.asarray(catalogue.epoch_jd, dtype=np.float64)
        self.epoch_fr = np.asarray(catalogue.epoch_fr, dtype=np.float64)
        rev_per_day = np.asarray(catalogue.mean_motion_rev_per_day, dtype=np.float64)
        self.n_rad_min = rev_per_day * (2.0 * math.pi / 1440.0)
        self.ndot = np.asarray(catalogue.ndot, dtype=np.float64)
        self.coef = {
            "nominal": np.hstack(
                [_per_class(classes, t) for t in (model.along_s, model.normal_km, model.radial_km)]
            ),
            "manoeuvre": np.hstack(
                [
                    _per_class(classes, t)
                    for t in (
                        model.manoeuvre_along_s,
                        model.manoeuvre_normal_km,
                        model.manoeuvre_radial_km,
                    )
                ]
            ),
        }
        self.drift_unknown_s = {
            "nominal": model.drift_unknown_s,
            "manoeuvre": model.manoeuvre_drift_unknown_s,
        }
        self.radial_fraction = {
            "nominal": model.radial_fraction,
            "manoeuvre": model.manoeuvre_radial_fraction,
        }
        self.manoeuvre_weight = _per_class(classes, model.manoeuvre_weight)
        self.cluster_along_s = _per_class(classes, model.cluster_along_s)
        self.cluster_normal_km = _per_class(classes, model.cluster_normal_km, fallback="")
        self.cluster_radial_km = _per_class(classes, model.cluster_radial_km, fallback="")
        # long-period HEO: the same error in mean anomaly is a longer time
        ref = model.heo_reference_rev_per_day
        self.along_scale = np.where(
            (classes == "HEO") & (rev_per_day < ref), ref / np.maximum(rev_per_day, 1e-3), 1.0
        )
        self.speed_kms = np.cbrt(MU_KM3_S2 * np.maximum(self.n_rad_min, 1e-6) / 60.0)

    def priors(self, jd, fr, index=None, component: str = "nominal") -> np.ndarray:
        """Priors at UTC ``jd + fr``, ``(..., 4)``: mean time offset (s), time offset sigma
        (s), normal offset sigma (km), radial offset sigma (km).

        ``index`` picks objects (default: all); ``jd`` and ``fr`` broadcast against it.
        ``component`` is one of :data:`COMPONENTS`: a mixture component, or the same
        spread along track (and for some classes across it) by the cluster width.
        """
        if component not in COMPONENTS:
            raise ValueError(f"unknown prior component {component!r}; one of {COMPONENTS}")
        model = self.model
        base = component.removeprefix("cluster_")
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        age_days = np.abs(
            (np.asarray(jd, dtype=np.float64) - self.epoch_jd[idx])
            + (np.asarray(fr, dtype=np.float64) - self.epoch_fr[idx])
        )
        n_rad_min = self.n_rad_min[idx]
        age_min = age_days * 1440.0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            drift = np.where(
                n_rad_min > 0, 0.5 * self.ndot[idx] * age_min**2 / n_rad_min * 60.0, np.inf
            )
        drift = np.nan_to_num(drift, nan=np.inf, posinf=1e9, neginf=-1e9)
        lo, hi = model.drift_fade_s
        trust = np.clip((hi - np.abs(drift)) / (hi - lo), 0.0, 1.0)
        mean_tau = -model.drift_gain * drift * trust
        sigma_drift = np.hypot(
            model.drift_scatter * np.abs(drift) * trust,
            self.drift_unknown_s[base] * (1.0 - trust),
        )
        coef = self.coef[base][idx]
        along_scale = self.along_scale[idx]
        sigma_tau = np.hypot(coef[..., 0], coef[..., 1] * age_days) * along_scale
        sigma_tau = np.hypot(sigma_tau, sigma_drift)
        sigma_normal = np.hypot(coef[..., 2], coef[..., 3] * age_days)
        sigma_radial = np.hypot(
            np.hypot(coef[..., 4], coef[..., 5] * age_days),
            self.radial_fraction[base] * self.speed_kms[idx] * sigma_tau,
        )
        if component.startswith("cluster_"):
            sigma_tau = np.broadcast_to(self.cluster_along_s[idx] * along_scale, mean_tau.shape)
            normal, radial = self.cluster_normal_km[idx], self.cluster_radial_km[idx]
            sigma_normal = np.where(np.isnan(normal), sigma_normal, normal)
            sigma_radial = np.where(np.isnan(radial), sigma_radial, radial)
        return np.stack(
            np.broadcast_arrays(mean_tau, sigma_tau, sigma_normal, sigma_radial), axis=-1
        )

    def gate_priors(self, jd, fr, index=None) -> np.ndarray:
        """Priors whose sigmas are the widest of the two mixture components (the gate)."""
        nominal = self.priors(jd, fr, index, "nominal")
        manoeuvre = self.priors(jd, fr, index, "manoeuvre")
        return np.concatenate([nominal[..., :1], np.maximum(nominal, manoeuvre)[..., 1:]], -1)

    def reference_sigmas(self, index=None) -> np.ndarray:
        """The nominal sigmas of a fresh element set (age 0, no drag drift) of each
        object's class: time offset (s), normal and radial offsets (km)."""
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        return self.coef["nominal"][idx][..., [0, 2, 4]]

    def weights(self, index=None) -> np.ndarray:
        """The manoeuvre-component weight ``w`` of each object."""
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        return self.manoeuvre_weight[idx]


@dataclass
class Scores:
    """Posterior probabilities of the (tracklet, candidate) pairs of a batch."""

    score: np.ndarray  # (n_pairs,) posterior probability of the candidate
    nominal_share: np.ndarray  # (n_pairs,) share of its likelihood the nominal part explains
    consistent: np.ndarray  # (n_pairs,) passes the chi-square test (either component)
    acceptable: np.ndarray  # (n_pairs,) may be named: consistent, and nominal or near certain
    unlisted: np.ndarray  # (n_trk,) posterior probability of "not in the catalogue"


def score_pairs(model: ErrorModel, pair_trk, deviance, chi2, n_obs, weight, n_trk) -> Scores:
    """Posterior probabilities of every candidate and of "not in the catalogue".

    Parameters
    ----------
    model : the decision parameters.
    pair_trk : ``(n_pairs,)`` tracklet of each pair (``0 .. n_trk - 1``).
    deviance : ``(n_pairs, 4)`` ``chi2 + ln det`` of each fit, in the order of
        :data:`COMPONENTS` (``inf``: no fit).
    chi2 : ``(n_pairs, 2)`` chi-square of the nominal and manoeuvre fits.
    n_obs : ``(n_pairs,)`` observations of the tracklet (``2 n`` degrees of freedom).
    weight : ``(n_pairs,)`` manoeuvre weight ``w`` of the candidate.
    n_trk : number of tracklets.
    """
    pair_trk = np.asarray(pair_trk, dtype=np.int64)
    deviance = np.where(np.isfinite(deviance), deviance, np.inf)
    base = np.full(n_trk, np.inf)
    np.minimum.at(base, pair_trk, deviance.min(axis=1))
    base = np.where(np.isfinite(base), base, 0.0)
    rel = np.exp(-0.5 * (deviance - base[pair_trk, None]))
    w = np.asarray(weight, dtype=np.float64)
    nominal = (1.0 - w) * rel[:, 0]
    like = nominal + w * rel[:, 1]
    cluster = (1.0 - w) * rel[:, 2] + w * rel[:, 3]
    cluster_sum = np.bincount(pair_trk, cluster, minlength=n_trk)
    cluster_max = np.zeros(n_trk)
    np.maximum.at(cluster_max, pair_trk, cluster)
    f = model.uncatalogued_fraction
    unlisted = (f / (1.0 - f)) * (cluster_sum - (1.0 - model.self_cluster_weight) * cluster_max)
    total = np.bincount(pair_trk, like, minlength=n_trk) + unlisted
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(total[pair_trk] > 0, like / total[pair_trk], 0.0)
        share = np.where(like > 0, nominal / like, 0.0)
        p_unlisted = np.where(total > 0, unlisted / total, 1.0)
    dof = 2 * np.asarray(n_obs, dtype=np.int64)
    consistent = (chi2_sf_even(chi2[:, 0], dof) >= model.p_min) | (
        chi2_sf_even(chi2[:, 1], dof) >= model.p_min
    )
    acceptable = consistent & (
        (share >= model.min_nominal_share) | (score >= model.manoeuvre_min_score)
    )
    return Scores(score, share, consistent, acceptable, p_unlisted)


def decide(model: ErrorModel, score, acceptable) -> str:
    """Status of one tracklet from its candidates' scores (best first) and acceptability."""
    score = np.asarray(score)
    acceptable = np.asarray(acceptable, dtype=bool)
    if score.size == 0:
        return "uncorrelated"
    if acceptable[0] and score[0] >= model.min_score:
        return "correlated"
    named = np.sort(score[acceptable])[::-1]
    if named.size >= 2 and named.sum() >= 0.5 and named[1] >= model.tie_min_score:
        return "ambiguous"
    return "uncorrelated"


def chi2_sf_even(x, dof) -> np.ndarray:
    """Chi-square survival function for even degrees of freedom (closed form).

    ``P(X >= x) = exp(-x/2) sum_{k < dof/2} (x/2)^k / k!``: the Poisson tail, exact for
    the ``2 n`` degrees of freedom of an ``n``-observation tracklet.
    """
    x = np.asarray(x, dtype=np.float64)
    half_dof = np.asarray(dof, dtype=np.int64) // 2
    half = 0.5 * np.maximum(x, 0.0)
    term = np.ones(np.broadcast(x, half_dof).shape)
    total = term.copy()
    for k in range(1, int(np.max(half_dof, initial=1))):
        term = term * half / k
        total = total + np.where(k < half_dof, term, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.exp(-half) * total
    return np.where(np.isfinite(out), np.minimum(out, 1.0), 0.0)


@lru_cache(maxsize=1024)
def chi2_isf_even(p: float, dof: int) -> float:
    """The chi-square value exceeded with probability ``p`` at ``dof`` degrees of freedom."""
    from scipy.stats import chi2

    return float(chi2.isf(p, dof))
