"""The error model the correlator scores against, learned from real catalogue history.

What a correct identification looks like
----------------------------------------
An object observed at UTC ``t`` is where its element set predicts at ``t + tau``
(``tau`` > 0: the object is ahead of its prediction), displaced a little along its orbit
normal and its radius, and each measured direction carries noise.

Real element-set errors are heavy-tailed (station keeping, orbit raising and lowering,
decay, poor orbit determinations), so the error of an object of orbit class ``c`` whose
element set is ``age`` days old is a mixture of Gaussian *components* ``k`` with weights
``w_ck``; in each,

- ``tau ~ N(-g d, s_tau^2 + s_d^2)`` with ``s_tau^2 = a^2 + (b age)^2 + (q age^2)^2``:
  along-track error grows linearly (a mean-motion error) and quadratically (an error
  in the decay rate). ``d = n_dot age^2 / (2 n)`` is the drift the element set's own
  mean-motion derivative predicts (SGP4 leaves ``n_dot`` out; real objects follow it
  ``g`` times, with a scatter ``s_d = drift_scatter |d|``, trusted up to
  ``drift_fade_s`` and beyond that not at all: sigma ``drift_unknown_s``);
- offsets along the orbit normal and along the radius, ``N(0, a^2 + (b age)^2)`` km;
  ``tau`` depends on the radial offset (a lower orbit is a faster one), see
  :class:`ErrorComponent`.

The numbers come from :func:`aposos.correlate.calibrate.fit_error_model` on snapshot
pairs of a real catalogue (``aposos correlate calibrate``); the packaged default
(``aposos/correlate/data/error_model.json``) is fitted on the 2026 CelesTrak series.
A share ``lost`` of element sets is off by more than any component covers (another
revolution, a re-entry): those objects cannot be identified from their element set.

Hypotheses and score
--------------------
For each candidate the time offset and the two position offsets are marginalised
analytically (linear-Gaussian) under each component, giving a deviance
``D_k = chi2_k + ln det_k``; the candidate's likelihood is ``sum_k w_k exp(-D_k / 2)``.
The alternative is an object that is not in the catalogue. Uncatalogued objects fly
where catalogued ones fly (launch trains, swarms, co-located GEO slots), so their density
near the tracklet is estimated from the candidates, each spread along its own track by
a cluster width (``K_j``), plus a diffuse background scored by the tracklet's own
smooth-motion fit (``B``, see :func:`aposos.correlate.fit.smooth_motion_fit`):
``L_0 = r (sum_j K_j - (1 - e) max_j K_j + B)`` with ``r = f / (1 - f)`` for a share
``f`` of uncatalogued tracklets. A third hypothesis names no one either: a catalogued
object whose element set is lost (each candidate's ``lost`` share spread over the gate
window, and the catalogue's mean lost share, times ``lost_visible_share``, scored by
``B``); it is reported apart (``Scores.lost``), so ``p_unlisted`` is the probability that
the object is really missing from the catalogue. With it count the candidates' train and
plane mates whose element sets err by more than the gate's window, never candidates
themselves (:func:`unseen_mate_odds`). The score of a candidate is its
posterior probability; see :mod:`aposos.correlate.decide` for the decision.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "ARCSEC",
    "ErrorComponent",
    "ErrorModel",
    "PriorTable",
    "default_model_path",
    "unseen_mate_odds",
]

MU_KM3_S2 = 398600.4418
ARCSEC = math.pi / (180.0 * 3600.0)
ORBIT_CLASSES = ("LEO", "MEO", "GEO", "HEO")
LAUNCH_KINDS = ("fresh", "fresh_small", "other")  # see ErrorModel.launch_odds


@dataclass(frozen=True)
class ErrorComponent:
    """One Gaussian of an orbit class's element-set error mixture.

    ``weight`` is its share at an age of one day and ``weight_slope`` how that share's
    log-odds grow with the log of the age (manoeuvres accumulate), ``weight_drift_slope``
    with the :func:`activity` of the element set (the drift its own ``n_dot`` or its
    train's predicts, :func:`aposos.correlate.errors.train_ndot`, or, larger, the drift
    its orbit's change since the previous snapshot predicts,
    :func:`aposos.correlate.errors.history_drift_seconds`); ``along_s`` =
    ``(a, b, q)``: time-offset sigma (s) at epoch, per day and per day² of age;
    ``normal_km``, ``radial_km`` = ``(a, b)``: offset sigma (km) at epoch and per day.
    ``tau_per_radial``: the time offset's dependence on the radial offset, seconds per
    km per day of age; ``along_s`` is then the sigma of the rest. An object lowered (or
    decaying faster than its element set says) runs ahead of its prediction, one raised
    falls behind, the more so the longer ago it moved: ``tau ~ -k (3/2) (dr / a) age``
    with ``0 < k < 1`` by when it moved (in the wide components of real LEO errors the
    correlation is about -0.85). Components with different slopes cover the spread of
    ``k``.
    ``drift_gain`` and ``drift_scatter``: in this component the object follows its
    element set's own ``n_dot`` drift ``d`` (signed, see
    :func:`aposos.correlate.errors.drift_seconds`): ``tau = -drift_gain d + ...`` with a
    further sigma ``drift_scatter |d|``. Real LEO errors split into objects that follow
    it (``tau / d`` near -2.5 in the 2026 series) and objects whose ``n_dot`` says
    nothing; components with and without a gain cover both.
    """

    weight: float
    along_s: tuple[float, float, float]
    normal_km: tuple[float, float]
    radial_km: tuple[float, float]
    weight_slope: float = 0.0
    tau_per_radial: float = 0.0
    weight_drift_slope: float = 0.0
    drift_gain: float = 0.0
    drift_scatter: float = 0.0

    def sigmas(self, age_days) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        age = np.asarray(age_days, dtype=np.float64)
        a, b, q = self.along_s
        tau = np.sqrt(a * a + (b * age) ** 2 + (q * age * age) ** 2)
        normal = np.hypot(self.normal_km[0], self.normal_km[1] * age)
        radial = np.hypot(self.radial_km[0], self.radial_km[1] * age)
        return tau, normal, radial


def _fallback_components() -> dict[str, list[ErrorComponent]]:
    # used only when no fitted model is at hand: a core and a wide component by class
    def pair(core_t, core_x, wide_t, wide_x, w):
        return [
            ErrorComponent(1.0 - w, core_t, core_x, core_x),
            ErrorComponent(w, wide_t, wide_x, wide_x),
        ]

    return {
        "LEO": pair((0.2, 0.3, 0.1), (0.2, 0.2), (3.0, 10.0, 5.0), (1.0, 5.0), 0.15),
        "MEO": pair((0.1, 0.1, 0.0), (0.1, 0.05), (1.0, 1.0, 0.2), (0.5, 0.2), 0.05),
        "GEO": pair((0.5, 0.8, 0.0), (0.6, 0.5), (4.0, 8.0, 0.5), (4.0, 4.0), 0.2),
        "HEO": pair((1.0, 1.5, 0.0), (1.0, 1.5), (10.0, 30.0, 5.0), (10.0, 20.0), 0.3),
    }


def _cluster_along() -> dict[str, float]:
    # along-track spread (s) of the objects that fly together: trains and deployments
    # over minutes; a GEO co-location slot of about 0.1 deg (90 km, 30 s)
    return {"LEO": 240.0, "MEO": 240.0, "GEO": 30.0, "HEO": 240.0}


def _cluster_normal() -> dict[str, float]:
    # co-located GEO satellites are kept apart by inclination, some 10-20 km
    return {"GEO": 15.0}


def _cluster_radial() -> dict[str, float]:
    # GEO eccentricity separation; LEO trains raise their orbits one after another
    return {"LEO": 2.0, "GEO": 15.0}


def _lost() -> dict[str, tuple[float, float]]:
    # (log-odds at one day, slope per unit log age) of the share beyond every component
    return {"LEO": (-9.0, 2.0), "MEO": (-9.0, 2.0), "GEO": (-9.0, 2.0), "HEO": (-6.0, 2.0)}


MIN_AGE_DAYS = 0.05


def activity(drift_s) -> np.ndarray:
    """How hard an object is being pushed: ``ln(1 + |drift| / 1 s)`` of the drift its
    element set's (or train's) ``n_dot`` predicts or, larger, that of its orbit's change
    since the previous snapshot. Manoeuvring and decaying objects carry a large ``n_dot``
    and real errors many times the quiet objects' (2026 series, LEO at three days: median
    along-track error 0.6 s for a drift under 1 s, 86 s for 15-50 s; 1 s for orbits that
    changed under 0.05 km/day the day before, 190 s above 1.5 km/day)."""
    return np.log1p(np.abs(np.asarray(drift_s, dtype=np.float64)))


def mixture_weights(base, slope, age_days, drift_slope=0.0, drift_s=0.0) -> np.ndarray:
    """``(..., K)`` component weights at ``age_days`` (softmax in the log of the age and
    the :func:`activity` of the element set's drift ``drift_s``)."""
    x = np.log(np.maximum(np.asarray(age_days, dtype=np.float64), MIN_AGE_DAYS))[..., None]
    y = activity(drift_s)[..., None]
    with np.errstate(divide="ignore"):
        logits = np.log(np.asarray(base, dtype=np.float64)) + np.asarray(slope) * x
    logits = logits + np.asarray(drift_slope, dtype=np.float64) * y
    logits = logits - logits.max(axis=-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(axis=-1, keepdims=True)


def lost_share(logit, slope, age_days, drift_slope=0.0, drift_s=0.0) -> np.ndarray:
    x = np.log(np.maximum(np.asarray(age_days, dtype=np.float64), MIN_AGE_DAYS))
    z = np.asarray(logit) + np.asarray(slope) * x + np.asarray(drift_slope) * activity(drift_s)
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class ErrorModel:
    """Element-set and measurement uncertainties, and the decision thresholds.

    Parameters
    ----------
    components : per orbit class, the mixture components (:class:`ErrorComponent`).
    lost : per orbit class, ``(log-odds at one day, slope in log age[, slope in
        activity])`` of the share of element sets beyond every component (another
        revolution, a re-entry): their objects count with the uncatalogued ones.
    drift_gain, drift_scatter, drift_fade_s, drift_unknown_s : how far the element
        set's own ``n_dot`` drift is followed (see the module docstring).
    heo_reference_rev_per_day : HEO objects slower than this get their along-track
        sigma scaled by ``reference / mean motion``.
    uncatalogued_fraction : prior share of tracklets from objects not in the catalogue
        (a deployment setting: how complete the catalogue is for what the stations see).
    cluster_along_s, cluster_normal_km, cluster_radial_km : spread of an uncatalogued
        object around a catalogued one it flies with (classes not listed keep the
        component's own sigmas across track). Checked by the log-likelihood of absence
        on the fitting pairs 16-17 18-19 16-18 16-20 19-23 17-23 (1,000 tracklets each,
        seed 5, 69 absent; lost element sets apart): -294.5 as they are; LEO along
        60 / 120 / 600 s: -340 / -309 / -296; LEO radial 0.5 / 5 km: -361 / -298; all
        cluster odds x0.3 / x3: -296 / -304; ``f`` x0.3 / x3: -301 / -290;
        ``self_cluster_weight`` 0 / 1: -405 / -296. Kept: no change is clear of the
        noise of 69 objects.
    launch_odds : odds, per catalogued object of a kind of launch group (``"fresh"``,
        ``"fresh_small"``: see :func:`aposos.correlate.errors.launch_kinds`; ``"other"``:
        the rest), of an uncatalogued object flying with it; the fresh kinds' replace
        ``f / (1 - f)`` in that candidate's cluster term when larger (a fresh launch's
        pieces not yet in the catalogue fly along its catalogued ones), ``"other"``
        replaces it (2026 series: new objects of older launches are 15 times rarer
        than ``f``, which the new launches make). Learned by
        :func:`aposos.correlate.calibrate.launch_odds`.
    fresh_launches, small_launch_group : which launch groups are fresh (the catalogue's
        newest this many launches) and small (at most this many catalogued objects).
    mate_temperature : the best candidate and those of its launch (its train's mates)
        share their posterior as ``score ** (1 / mate_temperature)``: members of a train
        err together, which independent priors leave out (see
        :func:`aposos.correlate.decide.temper_mates`; 1: off).
    lost_visible_share : share of the catalogue's lost element sets (its mean ``lost``
        share at the tracklet's time) whose objects may be the one a tracklet shows when
        none of its candidates is: scored by the diffuse background as uncatalogued
        objects are, and counted with the catalogued (``Scores.lost``), not in
        ``p_unlisted``. Maximum likelihood of absence on the fitting pairs 16-17 18-19
        16-18 16-20 19-23 17-23 (1,000 tracklets each, seed 5; 69 absent objects): share
        0 / 0.2 / 0.5 / 1 / 3: log-likelihood -295 / -161 / -175 / -189 / -218, no
        decision changed below 1 (at 1 one ambiguous call became uncorrelated). Without
        it, tracklets scored 0.99 or more were 16 % objects of the older snapshot.
    unseen_mate_scale : weight of the candidates' unseen plane mates (see
        :func:`unseen_mate_odds`; 0: off): a catalogued object of the candidate's train
        and plane whose element set errs by more than the gate's window, so that it is
        never a candidate, counts with the lost ones (``Scores.lost``).
    self_cluster_weight : ``e``: weight of the best candidate's own neighbourhood in the
        density of uncatalogued objects.
    background_log_volume : uncatalogued objects that fly with nothing catalogued are
        spread uniformly over this volume of directions and angular velocities (natural
        log of steradian times (rad/s)^2; default the visible hemisphere and rates up to
        1 deg/s): the tracklet's own smooth-motion fit then scores that hypothesis, so a
        candidate that fits badly loses to it whatever the others do.
    timing_sigma_s : observation timing jitter (s), 1 sigma.
    min_score : posterior probability needed to call a tracklet correlated.
    tie_min_score : score of the second candidate that makes a near tie (ambiguous).
    p_min : chi-square p-value below which a fit is flagged as poor (reported, never a
        veto on its own).
    gate_sigma : half-width of the coarse gate in sigmas of the widest gated component.
    gate_max_along_s, gate_max_cross_km : the gate never opens wider than this (s, km);
        components wider than the cap are still scored but can be missed by the gate.
        (Opening it to 1,800 or 3,000 s did not help: on the fitting pair 17-23 the
        tracklets whose object was not among the candidates went from 68 to 71 and 76 of
        1,000, confident errors from 13 to 14; almost all of them are LEO objects
        680-2,500 s off after 6 days, most of a fleet being lowered, see
        :func:`aposos.correlate.errors.history_drift_seconds`. Those within the window
        are lost to the gate's straight-line slide, not to its cap of passes per
        tracklet (4,096 instead of 1,024: unchanged): a ±900 s window lets up to about
        1,000 LEO objects through by its bend allowance and not these. Sliding in ±300 s
        sub-windows at 0 and ±600 s, true objects not through the gate 72 -> 45 on
        17-23, right calls unchanged (85.6 -> 85.3 %), at 3.2 CPU-ms per tracklet
        instead of 2.0 (``bench_correlate.py`` on 2026-03-18, 3,000 tracklets, same
        minutes); with the window at 1,500 s as well, true objects not among the candidates 75 -> 30,
        right 85.6 -> 85.6 %, ambiguous 42 -> 59, wrong 5 -> 4 (16-20: right 90.4 ->
        90.5 %, wrong 11 -> 11): once gated, a fleet member shares its posterior with
        its plane mates. Windows following the mixture's tail (each component opened
        to where at most 1e-3 of it lies beyond, at its weight for the age and
        activity) stay at the cap for most LEO objects from 3 days (the 114 s/day
        component): right on 16-18 16-20 19-23 17-23 95.0 / 90.4 / 89.3 / 85.6 ->
        95.3 / 90.4 / 89.2 / 85.5 %, wrong unchanged.)
    fitted_on : a note of the data the model was fitted on.
    """

    components: dict[str, list[ErrorComponent]] = field(default_factory=_fallback_components)
    lost: dict[str, tuple[float, float]] = field(default_factory=_lost)
    drift_gain: float = 1.3
    drift_scatter: float = 0.7
    drift_fade_s: tuple[float, float] = (8.0, 15.0)
    drift_unknown_s: float = 10.0
    heo_reference_rev_per_day: float = 2.0
    uncatalogued_fraction: float = 0.05
    cluster_along_s: dict[str, float] = field(default_factory=_cluster_along)
    cluster_normal_km: dict[str, float] = field(default_factory=_cluster_normal)
    cluster_radial_km: dict[str, float] = field(default_factory=_cluster_radial)
    launch_odds: dict[str, float] = field(default_factory=dict)
    fresh_launches: int = 5
    small_launch_group: int = 3
    mate_temperature: float = 1.0
    lost_visible_share: float = 0.2
    unseen_mate_scale: float = 0.0
    self_cluster_weight: float = 0.5
    background_log_volume: float = math.log(2.0 * math.pi * math.pi * math.radians(1.0) ** 2)
    timing_sigma_s: float = 0.005
    min_score: float = 0.9
    tie_min_score: float = 0.05
    p_min: float = 1e-4
    gate_sigma: float = 5.0
    gate_max_along_s: float = 900.0
    gate_max_cross_km: float = 300.0
    fitted_on: str = "fallback values (no fitted model)"

    # ------------------------------------------------------------------ persistence
    @classmethod
    def default(cls) -> ErrorModel:
        """The packaged model, fitted on the 2026 CelesTrak series."""
        return cls.load(default_model_path())

    @classmethod
    def load(cls, path) -> ErrorModel:
        """A model saved by :meth:`save` (``aposos correlate calibrate --out``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no such error model file: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not an error model (JSON): {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<dict>") -> ErrorModel:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: an error model is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown error model keys: {', '.join(unknown)}")
        kwargs = dict(data)
        try:
            if "components" in kwargs:
                kwargs["components"] = {
                    str(c): [
                        ErrorComponent(
                            float(k["weight"]),
                            tuple(float(x) for x in k["along_s"]),
                            tuple(float(x) for x in k["normal_km"]),
                            tuple(float(x) for x in k["radial_km"]),
                            float(k.get("weight_slope", 0.0)),
                            float(k.get("tau_per_radial", 0.0)),
                            float(k.get("weight_drift_slope", 0.0)),
                            float(k.get("drift_gain", 0.0)),
                            float(k.get("drift_scatter", 0.0)),
                        )
                        for k in comps
                    ]
                    for c, comps in kwargs["components"].items()
                }
            for key in ("drift_fade_s",):
                if key in kwargs:
                    kwargs[key] = tuple(float(x) for x in kwargs[key])
            if "lost" in kwargs:
                kwargs["lost"] = {
                    str(c): tuple(float(x) for x in v) for c, v in kwargs["lost"].items()
                }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: bad error model components: {exc}") from None
        model = cls(**kwargs)
        model.validate(source)
        return model

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    def validate(self, source: str = "error model") -> None:
        for name, comps in self.components.items():
            if not comps:
                raise ValueError(f"{source}: class {name} has no components")
            for k in comps:
                if len(k.along_s) != 3 or len(k.normal_km) != 2 or len(k.radial_km) != 2:
                    raise ValueError(f"{source}: class {name}: wrong number of coefficients")
                values = (
                    k.weight, *k.along_s, *k.normal_km, *k.radial_km, abs(k.weight_slope),
                    abs(k.weight_drift_slope), k.drift_scatter,
                )  # fmt: skip
                if not all(math.isfinite(v) and v >= 0 for v in values):
                    raise ValueError(f"{source}: class {name}: coefficients must be >= 0")
                if max(k.along_s[0], *k.normal_km[:1], *k.radial_km[:1]) <= 0:
                    raise ValueError(f"{source}: class {name}: a component has zero sigma")
                if not (math.isfinite(k.tau_per_radial) and math.isfinite(k.drift_gain)):
                    raise ValueError(
                        f"{source}: class {name}: tau_per_radial and drift_gain must be numbers"
                    )
        for name, lost in self.lost.items():
            if len(lost) not in (2, 3) or not all(math.isfinite(x) for x in lost):
                raise ValueError(f"{source}: lost share of {name}: two or three numbers")
        for name, odds in self.launch_odds.items():
            if name not in LAUNCH_KINDS or not (math.isfinite(odds) and odds >= 0):
                raise ValueError(
                    f"{source}: launch_odds: kinds {', '.join(LAUNCH_KINDS)}, odds >= 0 ({name})"
                )
        if not (math.isfinite(self.mate_temperature) and self.mate_temperature >= 1.0):
            raise ValueError(f"{source}: mate_temperature must be >= 1")
        if not 0.0 <= self.lost_visible_share <= 1.0:
            raise ValueError(f"{source}: lost_visible_share must be in [0, 1]")
        if not (math.isfinite(self.unseen_mate_scale) and self.unseen_mate_scale >= 0.0):
            raise ValueError(f"{source}: unseen_mate_scale must be >= 0")
        if not 0.0 < self.uncatalogued_fraction < 1.0:
            raise ValueError(f"{source}: uncatalogued_fraction must be in (0, 1)")
        if not 0.5 <= self.min_score < 1.0:
            raise ValueError(f"{source}: min_score must be in [0.5, 1)")

    # ------------------------------------------------------------------ use
    @property
    def n_components(self) -> int:
        return max(len(c) for c in self.components.values())

    def table(self, catalogue, previous=None) -> PriorTable:
        """The per-object constants of the model for a catalogue (compute once, reuse);
        ``previous``: the catalogue's snapshot before this one, whose differences tell
        which orbits are being changed (see :func:`aposos.correlate.errors.semi_major_axis_rate`)."""
        return PriorTable(self, catalogue, previous)


def default_model_path() -> Path:
    return Path(str(resources.files("aposos.correlate") / "data" / "error_model.json"))


def _per_class(classes: np.ndarray, table: dict, fallback: str | None = "LEO") -> np.ndarray:
    out = np.full(classes.size, np.nan)
    for name in np.unique(classes) if classes.size else ():
        value = table.get(str(name), table.get(fallback) if fallback else None)
        out[classes == name] = np.nan if value is None else value
    return out


class PriorTable:
    """An :class:`ErrorModel` applied to one catalogue: per-object constants as arrays.

    Components are indexed ``0 .. K-1`` (classes with fewer get zero-weight padding).
    """

    def __init__(self, model: ErrorModel, catalogue, previous=None):
        self.model = model
        classes = np.asarray(catalogue.orbit_class).astype(str)
        self.classes = classes
        n = classes.size
        k_max = model.n_components
        self.weight = np.zeros((n, k_max))
        self.weight_slope = np.zeros((n, k_max))
        self.weight_drift_slope = np.zeros((n, k_max))
        self.lost = np.zeros((n, 3))
        self.lost[:, 0] = -30.0
        self.coef = np.zeros((n, k_max, 7))  # along a b q, normal a b, radial a b
        self.tau_per_radial = np.zeros((n, k_max))  # s per km per day
        self.drift_gain = np.zeros((n, k_max))
        self.drift_scatter = np.zeros((n, k_max))
        self.coef[:, :, 0] = 1.0
        self.coef[:, :, 3] = 1.0
        self.coef[:, :, 5] = 1.0
        for name in np.unique(classes) if n else ():
            comps = model.components.get(str(name)) or model.components.get("LEO")
            rows = classes == name
            lost = tuple(model.lost.get(str(name), (-30.0, 0.0)))
            self.lost[rows] = lost + (0.0,) * (3 - len(lost))
            for k, c in enumerate(comps):
                self.weight[rows, k] = c.weight
                self.weight_slope[rows, k] = c.weight_slope
                self.weight_drift_slope[rows, k] = c.weight_drift_slope
                self.coef[rows, k] = (*c.along_s, *c.normal_km, *c.radial_km)
                self.tau_per_radial[rows, k] = c.tau_per_radial
                self.drift_gain[rows, k] = c.drift_gain
                self.drift_scatter[rows, k] = c.drift_scatter
        self.epoch_jd = np.asarray(catalogue.epoch_jd, dtype=np.float64)
        self.epoch_fr = np.asarray(catalogue.epoch_fr, dtype=np.float64)
        rev_per_day = np.asarray(catalogue.mean_motion_rev_per_day, dtype=np.float64)
        self.n_rad_min = rev_per_day * (2.0 * math.pi / 1440.0)
        self.ndot = np.asarray(catalogue.ndot, dtype=np.float64)
        from aposos.correlate.errors import semi_major_axis_rate, train_ndot

        self.train_ndot = train_ndot(catalogue.intl_designator, self.ndot, rev_per_day)
        self.rev_per_day = rev_per_day
        self.history_rate = (
            np.zeros(n) if previous is None else semi_major_axis_rate(previous, catalogue)
        )
        self.cluster_odds = self._cluster_odds(model, catalogue)
        from aposos.correlate.errors import launch_index

        self.launch = launch_index(catalogue.intl_designator)
        from aposos.correlate.errors import plane_mates

        self.plane_mates = plane_mates(
            catalogue.intl_designator, rev_per_day, catalogue.raan_deg, catalogue.inclination_deg
        )
        self.cluster_along_s = _per_class(classes, model.cluster_along_s)
        self.cluster_normal_km = _per_class(classes, model.cluster_normal_km, fallback=None)
        self.cluster_radial_km = _per_class(classes, model.cluster_radial_km, fallback=None)
        ref = model.heo_reference_rev_per_day
        self.along_scale = np.where(
            (classes == "HEO") & (rev_per_day < ref), ref / np.maximum(rev_per_day, 1e-3), 1.0
        )
        self.speed_kms = np.cbrt(MU_KM3_S2 * np.maximum(self.n_rad_min, 1e-6) / 60.0)

    @staticmethod
    def _cluster_odds(model: ErrorModel, catalogue) -> np.ndarray:
        """Per object, the odds of an uncatalogued object flying with it: ``f / (1 - f)``,
        or its launch group's :attr:`ErrorModel.launch_odds` (fresh kinds: when
        larger)."""
        f = model.uncatalogued_fraction
        odds = np.full(len(catalogue.norad_id), f / (1.0 - f))
        if not model.launch_odds:
            return odds
        from aposos.correlate.errors import launch_kinds

        kinds = launch_kinds(
            catalogue.intl_designator,
            fresh_launches=model.fresh_launches,
            small_group=model.small_launch_group,
        )
        for kind, value in model.launch_odds.items():
            if kind == "other":
                odds[kinds == ""] = value
            else:
                odds[kinds == kind] = np.maximum(odds[kinds == kind], value)
        return odds

    @property
    def n_components(self) -> int:
        return self.weight.shape[1]

    def age_days(self, jd, fr, index=None) -> np.ndarray:
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        return np.abs(
            (np.asarray(jd, dtype=np.float64) - self.epoch_jd[idx])
            + (np.asarray(fr, dtype=np.float64) - self.epoch_fr[idx])
        )

    def own_drift(self, jd, fr, index=None) -> np.ndarray:
        """The ``n_dot`` drift (s, signed) of each element set at UTC ``jd + fr``."""
        from aposos.correlate.errors import drift_seconds

        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        return drift_seconds(self.ndot[idx], self.n_rad_min[idx], self.age_days(jd, fr, index))

    def drift(self, jd, fr, index=None) -> tuple[np.ndarray, np.ndarray]:
        """The model-wide prior mean time offset (s) and the drift's own sigma (s)."""
        return drift_prior(self.model, self.own_drift(jd, fr, index))

    def priors(self, jd, fr, index=None, component: int = 0, cluster: bool = False):
        """Priors at UTC ``jd + fr``, ``(..., 5)``: mean time offset (s), time offset sigma
        (s), normal offset sigma (km), radial offset sigma (km) and the correlation of time
        and radial offsets, for mixture component ``component``; ``cluster``: the same
        spread by the cluster width (the density of uncatalogued objects flying with the
        candidate), uncorrelated. Many components: :meth:`component_priors`."""
        if not 0 <= int(component) < self.n_components:
            raise ValueError(f"no prior component {component}; 0 .. {self.n_components - 1}")
        out = self.component_priors(jd, fr, index)
        if cluster:
            out = self.clustered(out, index)
        return np.ascontiguousarray(out[..., int(component), :])

    def component_priors(self, jd, fr, index=None) -> np.ndarray:
        """:meth:`priors` of every component at once, ``(..., K, 5)`` (the element set's
        age and drift worked out once)."""
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        age = self.age_days(jd, fr, index)[..., None]
        own = self.own_drift(jd, fr, index)
        mean_tau, sigma_drift = drift_prior(self.model, own)
        own = own[..., None]
        mean_tau = mean_tau[..., None] - self.drift_gain[idx] * own
        sigma_drift = np.hypot(sigma_drift[..., None], self.drift_scatter[idx] * own)
        c = self.coef[idx]
        sigma_tau = np.sqrt(c[..., 0] ** 2 + (c[..., 1] * age) ** 2 + (c[..., 2] * age**2) ** 2)
        sigma_normal = np.hypot(c[..., 3], c[..., 4] * age)
        sigma_radial = np.hypot(c[..., 5], c[..., 6] * age)
        # tau = beta radial + rest: variance and covariance with the radial offset
        scale = self.along_scale[idx][..., None]
        slope = self.tau_per_radial[idx] * age * scale
        covariance = slope * sigma_radial**2
        sigma_tau = np.sqrt((sigma_tau * scale) ** 2 + sigma_drift**2 + (slope * sigma_radial) ** 2)
        corr = covariance / np.maximum(sigma_tau * sigma_radial, 1e-300)
        return np.stack(
            np.broadcast_arrays(mean_tau, sigma_tau, sigma_normal, sigma_radial, corr), axis=-1
        )

    def clustered(self, priors, index=None) -> np.ndarray:
        """:meth:`component_priors` ``priors`` spread by the cluster width (see
        :meth:`priors`)."""
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        out = priors.copy()
        along = self.cluster_along_s[idx] * self.along_scale[idx]
        out[..., 1] = along[..., None]
        normal, radial = self.cluster_normal_km[idx], self.cluster_radial_km[idx]
        out[..., 2] = np.where(np.isnan(normal)[..., None], priors[..., 2], normal[..., None])
        out[..., 3] = np.where(np.isnan(radial)[..., None], priors[..., 3], radial[..., None])
        out[..., 4] = 0.0
        return out

    def gate_priors(self, jd, fr, index=None, components=None) -> np.ndarray:
        """Priors whose sigmas are the widest of the components with weight (the gate),
        capped at the model's ``gate_max_*``, uncorrelated (``components``: their
        :meth:`component_priors`, when already worked out)."""
        model = self.model
        g = model.gate_sigma
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        used = self.weight[idx] > 0
        if components is None:
            components = self.component_priors(jd, fr, index)
        parts = np.where(used[..., None], components, np.nan)
        # centred between the components' means, wide enough for each one's window
        lo, hi = np.nanmin(parts[..., 0], axis=-1), np.nanmax(parts[..., 0], axis=-1)
        mid = 0.5 * (lo + hi)
        out = np.nanmax(parts, axis=-2)
        out[..., 0] = mid
        out[..., 1] = np.nanmax(parts[..., 1] + np.abs(parts[..., 0] - mid[..., None]) / g, -1)
        out[..., 4] = 0.0
        out[..., 1] = np.minimum(out[..., 1], model.gate_max_along_s / g)
        cross = np.hypot(out[..., 2], out[..., 3])
        scale = np.minimum(1.0, model.gate_max_cross_km / g / np.maximum(cross, 1e-9))
        out[..., 2] *= scale
        out[..., 3] *= scale
        return out

    def weights(self, jd, fr, index=None) -> tuple[np.ndarray, np.ndarray]:
        """``(..., K)`` mixture weights of each object at UTC ``jd + fr`` (they sum to
        ``1 - lost``), and the ``lost`` share."""
        idx = slice(None) if index is None else np.asarray(index, dtype=np.int64)
        from aposos.correlate.errors import drift_seconds, history_drift_seconds

        age = self.age_days(jd, fr, index)
        drift = np.maximum(
            drift_seconds(self.train_ndot[idx], self.n_rad_min[idx], age),
            history_drift_seconds(self.history_rate[idx], self.rev_per_day[idx], age),
        )
        lost = lost_share(self.lost[idx, 0], self.lost[idx, 1], age, self.lost[idx, 2], drift)
        w = mixture_weights(
            self.weight[idx], self.weight_slope[idx], age, self.weight_drift_slope[idx], drift
        )
        return w * (1.0 - lost)[..., None], lost


def drift_prior(model: ErrorModel, drift_s) -> tuple[np.ndarray, np.ndarray]:
    """Prior mean time offset and its sigma (s) from the ``n_dot`` drift ``drift_s``."""
    drift = np.asarray(drift_s, dtype=np.float64)
    lo, hi = model.drift_fade_s
    trust = np.clip((hi - np.abs(drift)) / (hi - lo), 0.0, 1.0)
    mean_tau = -model.drift_gain * drift * trust
    sigma = np.hypot(
        model.drift_scatter * np.abs(drift) * trust, model.drift_unknown_s * (1 - trust)
    )
    return mean_tau, sigma


def unseen_mate_odds(mates, weight, lost, tau_mean, tau_sigma, rev_per_day, window_s):
    """Per candidate, the odds (relative to its own ``lost`` term, which spreads it over
    the gate's ``window_s`` along track) that the tracklet is one of ``mates`` objects of
    its train and plane that are not among the candidates because their element sets err
    by more than ``window_s``: each lies beyond the window with the mixture's tail
    probability there (``weight``, ``tau_mean``, ``tau_sigma``: ``(..., K)``) or is lost
    (``lost``) and then anywhere along the orbit; spread evenly along the orbit, their
    density at the tracklet is their number over the period.

    A fleet being lowered errs that far (2026 series, fitting pair 17-23: LEO objects
    whose orbit's change predicts a drift over 500 s are a median 860 s off their
    predictions after six days, half of them outside the 900 s window), and a train
    mate that happens to lie near the tracklet was then named, confidently and wrongly.
    """
    from scipy.special import ndtr

    sigma = np.maximum(np.asarray(tau_sigma, dtype=np.float64), 1e-9)
    mean = np.asarray(tau_mean, dtype=np.float64)
    tail = ndtr((mean - window_s) / sigma) + ndtr((-window_s - mean) / sigma)
    beyond = (np.asarray(weight, dtype=np.float64) * tail).sum(axis=-1)
    period_s = 86400.0 / np.maximum(np.asarray(rev_per_day, dtype=np.float64), 1e-6)
    outside = np.clip(1.0 - 2.0 * window_s / period_s, 0.0, 1.0)
    density = math.sqrt(2.0 * math.pi) * window_s / period_s
    return np.asarray(mates, dtype=np.float64) * (beyond + np.asarray(lost) * outside) * density
