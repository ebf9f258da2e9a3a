"""The error model the correlator scores against, and its decision thresholds.

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
  by orbit class; the radial one also gets ``(f v sigma_tau)^2`` (``v`` the orbital
  speed: radial error comes with along-track error).
- measurement: ``sigma_i`` per observation (the tracklet's ``sigma_arcsec``) on both
  axes, plus timing jitter ``sigma_t`` times the angular rate on the along-track axis.

The default numbers come from the two real CelesTrak snapshots in
``shared/data/catalogues`` (2020-09-30 propagated to the epochs of 2020-10-02):
with them about 95 % of LEO and GEO objects fall within 3 sigma along track; the rest
had manoeuvred (Starlink and OneWeb orbit raising, GEO station keeping), and
tracklets of such objects are reported uncorrelated, as they should be until the
catalogue has a fresh element set.

Score
-----
``tau`` and the two offsets are marginalised analytically (a linear-Gaussian model), so each
candidate has a chi-square with ``2 n`` degrees of freedom for ``n`` observations and
an Occam factor ``ln det`` that penalises wide priors. The score of candidate ``k`` is
its posterior probability among the candidates and one more hypothesis, "an object not
in the catalogue", whose likelihood is that of the best candidate at the consistency
limit (chi-square p-value ``p_min``). So a lone candidate that fits well scores near 1,
two that fit equally share the probability, and a poor fit scores below one half.

Classification: ``correlated`` when the best score reaches ``min_score`` and its fit
passes the chi-square test; ``ambiguous`` when the catalogued candidates that pass
together reach one half but none alone reaches ``min_score`` (near ties, co-located
objects, or a fit at the limit); otherwise ``uncorrelated``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = ["ErrorModel", "PriorTable", "chi2_isf_even", "chi2_sf_even"]

MU_KM3_S2 = 398600.4418
ARCSEC = math.pi / (180.0 * 3600.0)


def _default_along() -> dict[str, tuple[float, float]]:
    # (a0 s, a1 s/day) per orbit class
    return {"LEO": (0.2, 0.2), "MEO": (0.1, 0.08), "GEO": (0.8, 1.0), "HEO": (1.0, 1.5)}


def _default_normal() -> dict[str, tuple[float, float]]:
    # (c0 km, c1 km/day) per orbit class: shift along the orbit normal
    return {"LEO": (0.15, 0.1), "MEO": (0.1, 0.05), "GEO": (0.8, 0.8), "HEO": (1.0, 1.5)}


def _default_radial() -> dict[str, tuple[float, float]]:
    # (r0 km, r1 km/day) per orbit class: shift along the radius
    return {"LEO": (0.2, 0.1), "MEO": (0.1, 0.05), "GEO": (0.6, 0.5), "HEO": (1.0, 1.5)}


@dataclass(frozen=True)
class ErrorModel:
    """Element-set and measurement uncertainties, and the decision thresholds.

    Parameters
    ----------
    along_s : per orbit class ``(a0, a1)``: along-track timing sigma at epoch (s) and its
        growth per day of element-set age (s/day).
    normal_km, radial_km : per orbit class ``(c0, c1)``: sigma of the offset along the
        orbit normal and along the radius at epoch (km), and their growth (km/day).
    drift_gain, drift_scatter : the along-track drift the element set's own mean-motion
        derivative predicts, ``d = n_dot age^2 / 2n`` (SGP4 leaves ``n_dot`` out), sets
        the prior mean ``-drift_gain d`` and adds ``drift_scatter |d|`` to the sigma.
    drift_fade_s, drift_unknown_s : from ``|d|`` = the first value the drift is trusted
        less, and beyond the second not at all (mean 0, ``drift_unknown_s`` sigma):
        decaying objects and orbit raising have ``n_dot`` that predicts nothing.
    radial_fraction : ``f``: radial km added per km of along-track sigma.
    max_drag_s : cap on ``t_drag``: real along-track errors follow ``t_drag`` up to about
        15 s; beyond (decaying objects, orbit raising) they stop growing with it.
    heo_reference_rev_per_day : HEO objects slower than this (long periods) get their
        along-track sigma scaled by ``reference / mean motion``: the same error in mean
        anomaly is a longer time.
    timing_sigma_s : observation timing jitter (s), 1 sigma.
    p_min : chi-square p-value below which a candidate is inconsistent.
    min_score : posterior probability needed to call a tracklet correlated.
    gate_sigma : half-width of the coarse gate in sigmas of the priors.
    """

    along_s: dict[str, tuple[float, float]] = field(default_factory=_default_along)
    normal_km: dict[str, tuple[float, float]] = field(default_factory=_default_normal)
    radial_km: dict[str, tuple[float, float]] = field(default_factory=_default_radial)
    drift_gain: float = 1.3
    drift_scatter: float = 0.7
    drift_fade_s: tuple[float, float] = (8.0, 15.0)
    drift_unknown_s: float = 10.0
    radial_fraction: float = 0.01
    heo_reference_rev_per_day: float = 2.0
    timing_sigma_s: float = 0.005
    p_min: float = 1e-4
    min_score: float = 0.9
    gate_sigma: float = 6.0

    def table(self, catalogue) -> PriorTable:
        """The per-object constants of the model for a catalogue (compute once, reuse)."""
        return PriorTable(self, catalogue)

    def priors(self, catalogue, jd, fr, index=None) -> np.ndarray:
        """Priors of catalogue objects at UTC ``jd + fr``; see :meth:`PriorTable.priors`."""
        return self.table(catalogue).priors(jd, fr, index)


class PriorTable:
    """An :class:`ErrorModel` applied to one catalogue: per-object constants as arrays."""

    def __init__(self, model: ErrorModel, catalogue):
        self.model = model
        classes = np.asarray(catalogue.orbit_class)
        n = classes.size
        self.epoch_jd = np.asarray(catalogue.epoch_jd, dtype=np.float64)
        self.epoch_fr = np.asarray(catalogue.epoch_fr, dtype=np.float64)
        self.n_rad_min = np.asarray(catalogue.mean_motion_rev_per_day, dtype=np.float64) * (
            2.0 * math.pi / 1440.0
        )
        self.ndot = np.asarray(catalogue.ndot, dtype=np.float64)
        self.coef = np.empty((n, 6))
        for name in np.unique(classes) if n else ():
            mask = classes == name
            self.coef[mask] = (
                *model.along_s.get(name, model.along_s["LEO"]),
                *model.normal_km.get(name, model.normal_km["LEO"]),
                *model.radial_km.get(name, model.radial_km["LEO"]),
            )
        # long-period HEO: the same error in mean anomaly is a longer time
        rev_per_day = np.asarray(catalogue.mean_motion_rev_per_day, dtype=np.float64)
        ref = model.heo_reference_rev_per_day
        self.along_scale = np.where(
            (classes == "HEO") & (rev_per_day < ref), ref / np.maximum(rev_per_day, 1e-3), 1.0
        )
        self.speed_kms = np.cbrt(MU_KM3_S2 * np.maximum(self.n_rad_min, 1e-6) / 60.0)

    def priors(self, jd, fr, index=None) -> np.ndarray:
        """Priors at UTC ``jd + fr``, ``(..., 4)``: mean time offset (s), time offset sigma
        (s), normal offset sigma (km), radial offset sigma (km).

        ``index`` picks objects (default: all); ``jd`` and ``fr`` broadcast against it.
        """
        model = self.model
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
            model.drift_scatter * np.abs(drift) * trust, model.drift_unknown_s * (1.0 - trust)
        )
        coef = self.coef[idx]
        sigma_tau = np.hypot(coef[..., 0], coef[..., 1] * age_days) * self.along_scale[idx]
        sigma_tau = np.hypot(sigma_tau, sigma_drift)
        sigma_normal = np.hypot(coef[..., 2], coef[..., 3] * age_days)
        sigma_radial = np.hypot(
            np.hypot(coef[..., 4], coef[..., 5] * age_days),
            model.radial_fraction * self.speed_kms[idx] * sigma_tau,
        )
        return np.stack([mean_tau, sigma_tau, sigma_normal, sigma_radial], axis=-1)

    def reference_sigmas(self, index=None) -> np.ndarray:
        """The sigmas of a fresh element set (age 0, no drag drift) of each object's class.

        They set the scale of the "object not in the catalogue" alternative: an element
        set that is old or drag-dominated (wide priors) must fit better to beat it.
        """
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        return self.coef[idx][..., [0, 2, 4]]


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
