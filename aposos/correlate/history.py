"""Catalogue history: where an object's previous element set put it, as a prior for tonight.

A data center downloads the catalogue every day, so when it correlates a night against
snapshot ``S`` it also holds the snapshot ``P`` before. The along-track offset ``tau_P``
(s) of the object, as ``S`` has it at its epoch, against ``P``'s prediction there (``P``
``age_P`` days older) is an ongoing manoeuvre's or decay's signature: if the object keeps
being pushed the same way, ``S``'s prediction errs by ``h = tau_P (age / age_P)^2`` after
``age`` days (constant acceleration along track).

Measured on the fitting pairs of the 2026 series (``benchmarks/bench_history.py``;
Starlink, history from the snapshot before the older one), ``h`` says little of where
an object will be: among the objects at risk of being taken for a launch mate (``|tau|
>= 10 s``), the best gain brings 41 % within 10 s at one day (18-19; median ``|tau|``
16 -> 12 s), 28 % at four days, 19 % at six (median 45 -> 34 s), correlation -0.07 to
0.31; thrusting stops and starts and many active objects' element sets are poor fits.
Over launch mates in one plane where one is at risk and the other quiet, ``|h|`` ranks
the one at risk higher 72-75 % of the time, the model's activity already 75-80 %.

What it does tell is which objects are steady. So the error model can get, per orbit
class, one further mixture component (:class:`HistoryComponent`): the time offset
``N(gain h, a^2 + (b age)^2 + (scatter h)^2)``, offsets across track ``N(0, a^2 + (b
age)^2)`` km, its share ``sigmoid(logit + slope ln(1 + |h|) + age_slope ln(age))``
taken from the class's components in proportion, fitted by :func:`fit_history` (EM, the
class's components kept). On the fitting pairs with a snapshot before them it comes out
as a narrow core for steady objects, not as a follower of the drift (LEO: gain -0.38,
sigma ``1.1 |h|``, share 0.6 at ``h = 0`` and one day), +0.14 nat per LEO error;
leaving one of the three pairs out: +0.02, +0.05, +0.07 on it (without the age terms
-0.25, +0.07, +0.08). Identification does not follow: without the age terms, held out
(eight pairs, 1,000 tracklets each, seed 5) 2 right calls more and 1 confident error
fewer in 8,000; with them, on the fitting pair 17-23, 8 right calls fewer. Not in the
packaged model.

Objects without history (no previous snapshot, absent from it, element sets less than
``MIN_HISTORY_DAYS`` apart, or an offset beyond ``MAX_HISTORY_S``) keep the model
without it, exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from aposos.correlate.errors import MIN_HISTORY_DAYS

__all__ = [
    "HistoryComponent",
    "catalogue_history_errors",
    "class_history_logpdf",
    "fit_history",
    "history_errors",
    "history_rate",
]

log = logging.getLogger(__name__)

MAX_HISTORY_S = 1200.0  # an offset beyond this is another revolution or a poor fit
MIN_ROWS = 200  # a class gets a history component only with this many errors with history
MIN_AGE_DAYS = 0.05
GAIN_BOUNDS = (-3.0, 3.0)
SLOPE_BOUNDS = ((-5.0, 5.0), (-5.0, 5.0))  # of the share in ln(1 + |h|) and in ln(age)


@dataclass(frozen=True)
class HistoryComponent:
    """The mixture component of an orbit class that follows the catalogue history.

    Its share is ``sigmoid(logit + slope ln(1 + |h|) + age_slope ln(age))`` (``h``: the
    history's predicted time offset, s; ``age``: days); its mean time offset ``gain h``;
    ``along_s`` = ``(a, b, scatter)``: time-offset sigma ``sqrt(a^2 + (b age)^2 +
    (scatter h)^2)``; ``normal_km``, ``radial_km`` = ``(a, b)``: offset sigma (km) at
    epoch and per day of age."""

    logit: float
    slope: float
    age_slope: float
    gain: float
    along_s: tuple[float, float, float]
    normal_km: tuple[float, float]
    radial_km: tuple[float, float]

    @classmethod
    def from_dict(cls, d: dict) -> HistoryComponent:
        numbers = {k: float(d[k]) for k in ("logit", "slope", "age_slope", "gain")}
        sigmas = {k: tuple(float(x) for x in d[k]) for k in ("along_s", "normal_km", "radial_km")}
        return cls(**numbers, **sigmas)

    def problem(self) -> str | None:
        """What is wrong with the numbers, or None."""
        sizes = (len(self.along_s), len(self.normal_km), len(self.radial_km))
        if sizes != (3, 2, 2):
            return "along_s takes three numbers, normal_km and radial_km two"
        values = (self.logit, self.slope, self.age_slope, self.gain, *self.along_s,
                  *self.normal_km, *self.radial_km)  # fmt: skip
        if not all(math.isfinite(v) for v in values):
            return "its coefficients must be numbers"
        if (
            min(*self.along_s, *self.normal_km, *self.radial_km) < 0
            or min(self.along_s[0], self.normal_km[0], self.radial_km[0]) <= 0
        ):
            return "its sigmas must be > 0 at epoch and >= 0 in their growth"
        return None

    def share(self, predicted_s, age_days) -> np.ndarray:
        z = self.logit + self.slope * np.log1p(np.abs(np.asarray(predicted_s, dtype=np.float64)))
        z = z + self.age_slope * np.log(np.maximum(np.asarray(age_days), MIN_AGE_DAYS))
        return 1.0 / (1.0 + np.exp(-z))


def history_rate(previous, current) -> np.ndarray:
    """Per object of ``current``: ``tau_P / age_P^2`` (s/day²), its along-track offset
    at ``current``'s epoch against the ``previous`` snapshot's prediction over the days
    between the two; NaN where there is no usable history (see the module docstring)."""
    from aposos.correlate.errors import element_set_errors

    out = np.full(len(current), np.nan)
    errors = element_set_errors(previous, current, min_age_days=MIN_HISTORY_DAYS)
    keep = np.abs(errors.tau_s) <= MAX_HISTORY_S
    rows = np.searchsorted(current.norad_id, errors.norad_id[keep], sorter=_order(current))
    rows = _order(current)[rows]
    out[rows] = errors.tau_s[keep] / errors.age_days[keep] ** 2
    return out


def _order(catalogue) -> np.ndarray:
    return np.argsort(catalogue.norad_id, kind="stable")


def history_errors(older, newer, previous, *, pair: int = 0):
    """Element-set errors of ``older`` at ``newer``'s epochs and, per error, the time
    offset ``h`` (s) the history from ``previous`` predicts (NaN: none)."""
    from aposos.correlate.errors import element_set_errors

    errors = element_set_errors(older, newer, pair=pair, previous=previous)
    rate = history_rate(previous, older)
    rows = _order(older)[np.searchsorted(older.norad_id, errors.norad_id, sorter=_order(older))]
    return errors, rate[rows] * errors.age_days**2


def catalogue_history_errors(catalogues, *, max_age_days: float = 8.0):
    """:func:`history_errors` of every pair of snapshots up to ``max_age_days`` apart
    whose older one has a snapshot before it (see
    :func:`aposos.correlate.calibrate.snapshot_pairs`), concatenated."""
    from aposos.correlate.calibrate import snapshot_pairs
    from aposos.correlate.errors import ElementSetErrors

    cats, pairs = snapshot_pairs(catalogues, max_age_days)
    parts = [history_errors(cats[i], cats[j], cats[i - 1], pair=n) for n, i, j in pairs if i > 0]
    if not parts:
        raise ValueError("no pair of snapshots with one before it: give at least three")
    errors = ElementSetErrors.concatenate([e for e, _ in parts])
    return errors, np.concatenate([h for _, h in parts])


def _normal_logpdf(x, var):
    return -0.5 * (x * x / var + np.log(2.0 * math.pi * var))


def _component_logpdf(p, z, h, age, drift_var):
    """Log density of the errors ``z`` (time less the drift prior, normal, radial) under
    the history component with packed parameters ``p`` (gain, log a, b and scatter of
    the time offset, log normal a, b, log radial a, b)."""
    e = np.exp(p[1:])
    var_t = e[0] ** 2 + (e[1] * age) ** 2 + (e[2] * h) ** 2 + drift_var
    var_n = e[3] ** 2 + (e[4] * age) ** 2
    var_r = e[5] ** 2 + (e[6] * age) ** 2
    return (
        _normal_logpdf(z[:, 0] - p[0] * h, var_t)
        + _normal_logpdf(z[:, 1], var_n)
        + _normal_logpdf(z[:, 2], var_r)
    )


def _fit_class(z, h, age, drift_var, base_logp, iterations):
    """EM for one class's history component, the class's own mixture (``base_logp``, per
    error) kept: ``(logit, slope, packed component parameters, log-likelihood)``."""
    from scipy.optimize import minimize

    x = np.column_stack([np.log1p(np.abs(h)), np.log(np.maximum(age, MIN_AGE_DAYS))])
    share = np.array([-3.0, 0.0, 0.0])
    med = np.maximum(np.median(np.abs(z), axis=0) / 0.6745, 0.05)
    p = np.array([0.0, math.log(1.0), math.log(0.3), math.log(0.3),
                  *np.log([med[1], med[1]]), *np.log([med[2], med[2]])])  # fmt: skip
    bounds = [GAIN_BOUNDS] + [(math.log(1e-3), math.log(1e4))] * 7
    ll_old = -np.inf
    for _ in range(iterations):
        w = 1.0 / (1.0 + np.exp(-(share[0] + x @ share[1:])))
        own = np.log(np.maximum(w, 1e-300)) + _component_logpdf(p, z, h, age, drift_var)
        rest = np.log(np.maximum(1.0 - w, 1e-300)) + base_logp
        total = np.logaddexp(own, rest)
        resp = np.exp(own - total)
        ll = float(total.sum())

        def share_nll(s, resp=resp):
            q = s[0] + x @ s[1:]
            return float(np.sum(np.logaddexp(0.0, q) - resp * q))

        share = minimize(share_nll, share, method="L-BFGS-B", bounds=[(-20, 10), *SLOPE_BOUNDS]).x
        p = minimize(
            lambda q, resp=resp: -float(np.sum(resp * _component_logpdf(q, z, h, age, drift_var))),
            p, method="L-BFGS-B", bounds=bounds, options={"maxiter": 80},
        ).x  # fmt: skip
        if abs(ll - ll_old) <= 1e-7 * abs(ll):
            break
        ll_old = ll
    return share, p, ll


def class_history_logpdf(model, name, errors, predicted, rows) -> np.ndarray:
    """Log density of the errors ``rows`` (all of class ``name``, with history
    ``predicted``) under the class's mixture with its history component."""
    from aposos.correlate.calibrate import _prepare, class_logpdf

    base = class_logpdf(model, name, errors, rows)
    c = model.history.get(name)
    if c is None:
        return base
    z, drift_var, _ = _prepare(model, errors)
    h = np.asarray(predicted, dtype=np.float64)[rows]
    p = np.array([c.gain, *np.log([*c.along_s, *c.normal_km, *c.radial_km])])
    age = errors.age_days[rows]
    own = _component_logpdf(p, z[rows], h, age, drift_var[rows])
    share = c.share(h, age)
    return np.logaddexp(np.log(share) + own, np.log1p(-share) + base)


def fit_history(model, errors, predicted, *, iterations: int = 60):
    """``model`` with a :class:`HistoryComponent` fitted per orbit class on ``errors``
    (:class:`~aposos.correlate.errors.ElementSetErrors`) whose history predicted the
    time offsets ``predicted`` (s; NaN: no history), its own components kept."""
    from dataclasses import replace

    from aposos.correlate.calibrate import LOST_ALONG_S, LOST_CROSS_KM, _prepare, class_logpdf

    z_all, drift_var, _ = _prepare(model, errors)
    predicted = np.asarray(predicted, dtype=np.float64)
    fitted, notes = {}, []
    for name in model.components:
        if name == "HEO":  # its time offsets are scaled by its period, and it has few
            continue
        rows = np.flatnonzero((errors.orbit_class == name) & np.isfinite(predicted))
        far = (np.abs(z_all[rows, 0]) > LOST_ALONG_S) | (
            np.hypot(z_all[rows, 1], z_all[rows, 2]) > LOST_CROSS_KM
        )
        rows = rows[~far]
        if rows.size < MIN_ROWS:
            log.info("class %s: %d errors with history, no history component", name, rows.size)
            continue
        base = class_logpdf(model, name, errors, rows)
        share, p, ll = _fit_class(
            z_all[rows], predicted[rows], errors.age_days[rows], drift_var[rows], base, iterations
        )
        fitted[name] = HistoryComponent(
            logit=round(float(share[0]), 6), slope=round(float(share[1]), 6),
            age_slope=round(float(share[2]), 6), gain=round(float(p[0]), 6),
            along_s=tuple(round(float(x), 6) for x in np.exp(p[1:4])),
            normal_km=tuple(round(float(x), 6) for x in np.exp(p[4:6])),
            radial_km=tuple(round(float(x), 6) for x in np.exp(p[6:8])),
        )  # fmt: skip
        gain = ll - float(base.sum())
        notes.append(f"{name} {rows.size} (log-likelihood +{gain:.0f})")
        log.info("class %s: history component on %d errors, log-likelihood +%.1f", name,
                 rows.size, gain)  # fmt: skip
    note = "history components fitted per class: " + (", ".join(notes) or "none")
    return replace(model, history=fitted, fitted_on=f"{model.fitted_on}; {note}")
