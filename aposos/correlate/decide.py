"""Posterior probabilities of the candidates and of "not in the catalogue", and the call.

Decisions come from the posterior alone (see :mod:`aposos.correlate.model` for the
hypotheses): ``correlated`` when the best candidate's posterior reaches ``min_score``;
``ambiguous`` when no candidate does but two or more share the probability (each at
least ``tie_min_score``, together at least half: co-orbiting trains, co-located GEO
satellites, docked vehicles); otherwise ``uncorrelated`` ("not in the catalogue" wins,
or nothing came through the gate). A poor chi-square is reported in the reason, never a
veto on its own: the mixture already weighs how far each candidate had to be moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "LOST_WORDS",
    "Scores",
    "chi2_isf_even",
    "chi2_sf_even",
    "decide",
    "score_pairs",
    "temper_mates",
]

# how a record names the lost hypothesis: a lost element set, or a train mate whose
# element set errs beyond the gate's window (never a candidate)
LOST_WORDS = "a catalogued object whose element set is lost or beyond the gate"


@dataclass
class Scores:
    """Posterior probabilities of the (tracklet, candidate) pairs of a batch."""

    score: np.ndarray  # (n_pairs,) posterior probability of the candidate
    component: np.ndarray  # (n_pairs,) the mixture component that explains it best
    unlisted: np.ndarray  # (n_trk,) posterior probability of "not in the catalogue"
    lost: np.ndarray | None = None  # (n_trk,) of "a catalogued object, its element set lost"


def score_pairs(
    model, pair_trk, deviance, cluster_deviance, weight, lost, free_deviance, lost_deviance=None,
    cluster_odds=None, lost_elsewhere=0.0, unseen=None,
) -> Scores:  # fmt: skip
    """Posterior probabilities of every candidate, of "not in the catalogue" and of "a
    catalogued object whose element set is lost".

    The last two both leave the tracklet unnamed, but only the first is an object the
    catalogue lacks: counted together as "not in the catalogue" they were overconfident
    (fitting pairs 16-17 18-19 16-18 16-20 19-23 17-23 of the 2026 series, 1,000
    tracklets each, seed 5: of the 142 tracklets scored 0.1-0.9, 10 % were absent from
    the older snapshot; apart, 33 tracklets scored 0.1-0.9 and 24 % of them absent, 45 %
    of those at 0.5-0.9 against a mean score of 0.73; log-likelihood of absence -349 ->
    -295). Most of that weight was the lost term: a manoeuvred object a few hundred
    seconds off its element set, which is the candidate itself.

    Parameters
    ----------
    model : the :class:`~aposos.correlate.model.ErrorModel` (its prior and weights).
    pair_trk : ``(n_pairs,)`` tracklet of each pair (``0 .. n_trk - 1``).
    deviance : ``(n_pairs, K)`` ``chi2 + ln det`` of the fit under each mixture
        component (``inf``: no fit).
    cluster_deviance : ``(n_pairs, K)`` the same with the cluster-widened priors.
    weight : ``(n_pairs, K)`` mixture weights of the candidate.
    lost : ``(n_pairs,)`` share of the candidate's class and age beyond every component:
        a catalogued object whose element set no longer predicts it (``Scores.lost``).
    free_deviance : ``(n_trk,)`` deviance of the diffuse "nobody catalogued it" background.
    lost_deviance : ``(n_pairs,)`` deviance with the candidate spread over the whole gate
        window along track: an object of its kind whose own element set is lost.
    cluster_odds : ``(n_pairs,)`` odds of an uncatalogued object flying with the
        candidate (default ``f / (1 - f)`` for all; higher near a fresh launch, see
        :attr:`~aposos.correlate.model.PriorTable.cluster_odds`).
    lost_elsewhere : odds (scalar or ``(n_trk,)``) of a catalogued object whose element set
        is lost and which is none of the candidates (the catalogue's mean lost share):
        it flies anywhere, scored by the diffuse background as an uncatalogued one is.
    unseen : ``(n_pairs,)`` odds of the candidate's train and plane mates that are not
        among the candidates (:func:`~aposos.correlate.model.unseen_mate_odds`), scored
        as its lost term is; per tracklet the largest counts (candidates of one plane
        share their mates), with the lost ones.
    """
    free_deviance = np.asarray(free_deviance, dtype=np.float64)
    n_trk = free_deviance.size
    pair_trk = np.asarray(pair_trk, dtype=np.int64)
    deviance = np.where(np.isfinite(deviance), deviance, np.inf)
    cluster_deviance = np.where(np.isfinite(cluster_deviance), cluster_deviance, np.inf)
    base = np.full(n_trk, np.inf)
    np.minimum.at(base, pair_trk, np.minimum(deviance, cluster_deviance).min(axis=1))
    if lost_deviance is not None:
        np.minimum.at(base, pair_trk, np.where(np.isfinite(lost_deviance), lost_deviance, np.inf))
    base = np.minimum(base, free_deviance)
    base = np.where(np.isfinite(base), base, 0.0)
    w = np.asarray(weight, dtype=np.float64)
    parts = w * np.exp(-0.5 * (deviance - base[pair_trk, None]))
    like = parts.sum(axis=1)
    f = model.uncatalogued_fraction
    r = f / (1.0 - f)
    # density of objects without a usable element set near the candidates
    odds = r if cluster_odds is None else np.asarray(cluster_odds, dtype=np.float64)
    cluster = (w * np.exp(-0.5 * (cluster_deviance - base[pair_trk, None]))).sum(axis=1) * odds
    cluster_sum = np.bincount(pair_trk, cluster, minlength=n_trk)
    cluster_max = np.zeros(n_trk)
    np.maximum.at(cluster_max, pair_trk, cluster)
    background = r * np.exp(-0.5 * (free_deviance - base))
    unlisted = cluster_sum - (1.0 - model.self_cluster_weight) * cluster_max + background
    lost_sum = np.asarray(lost_elsewhere, dtype=np.float64) * np.exp(-0.5 * (free_deviance - base))
    if lost_deviance is not None:
        lost_deviance = np.where(np.isfinite(lost_deviance), lost_deviance, np.inf)
        spread = np.asarray(lost, dtype=np.float64) * np.exp(
            -0.5 * (lost_deviance - base[pair_trk])
        )
        lost_sum = lost_sum + np.bincount(pair_trk, spread, minlength=n_trk)
        if unseen is not None:
            mates = np.zeros(n_trk)
            np.maximum.at(
                mates,
                pair_trk,
                np.asarray(unseen) * np.exp(-0.5 * (lost_deviance - base[pair_trk])),
            )
            lost_sum = lost_sum + mates
    total = np.bincount(pair_trk, like, minlength=n_trk) + unlisted + lost_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(total[pair_trk] > 0, like / total[pair_trk], 0.0)
        p_unlisted = np.where(total > 0, unlisted / total, 1.0)
        p_lost = np.where(total > 0, lost_sum / total, 0.0)
    return Scores(score, np.argmax(parts, axis=1), p_unlisted, p_lost)


def temper_mates(
    scores: Scores, pair_trk, launch, temperature: float, min_score: float = 0.0
) -> Scores:
    """Scores with each tracklet's best candidate and the candidates of its launch
    (``launch``: an integer per pair, -1 for none; a train's mates) sharing their total
    as ``score ** (1 / temperature)``: a calibrated ceiling on the best one's posterior
    when a mate is near it. The order of the candidates and every other share stay;
    only tracklets whose best score reaches ``min_score`` (confident calls) are tempered,
    so none that was ``uncorrelated`` becomes ``ambiguous``.

    Members of one train err together (lowered or raised as a fleet), which the
    candidates' independent priors leave out, so a posterior that puts the tracklet on
    one member rather than its neighbour is overconfident: on the fitting pairs of the
    2026 series the calls whose runner-up was a mate were wrong about 1 in 4 times at
    scores of 0.9-0.999. Over the 1,486 tracklets of the fitting pairs 16-17, 18-19,
    16-20 and 19-23 (1,000 a pair, seed 5) whose best candidate had a mate among the
    candidates, the log-likelihood of the best one being right is -231 untempered,
    -195 at temperature 1.5, -179 at 2 and -177 at 2.5 (the maximum). The packaged
    model takes 1.5: at 2 the synthetic truth set (independent errors, no fleets) falls
    from 99.2 to 98.3 % right (seed 3), below its bound. On the fitting pairs 16-17,
    18-19, 16-18 and 16-20 (3,959 listed tracklets) each step of temperature trades
    about four right calls for one wrong one (T 1 / 1.5 / 2 / 2.5 / 3: right 3790 / 3767
    / 3742 / 3703 / 3682, confidently wrong 28 / 23 / 16 / 13 / 8); a temperature that
    grows with the best candidate's time offset, ``1 + k ln(1 + |tau| / s0)`` (k 0.25-1,
    s0 1-10 s), lies on the same frontier, no better.
    """
    pair_trk = np.asarray(pair_trk, dtype=np.int64)
    launch = np.asarray(launch, dtype=np.int64)
    if temperature == 1.0 or pair_trk.size == 0:
        return scores
    n_trk = scores.unlisted.size
    best = np.full(n_trk, -1, dtype=np.int64)
    order = np.lexsort((-scores.score, pair_trk))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pair_trk[order][1:] != pair_trk[order][:-1]
    best[pair_trk[order][first]] = order[first]
    top = best[pair_trk]
    group = (np.arange(pair_trk.size) == top) | ((launch >= 0) & (launch == launch[top]))
    group &= scores.score[top] >= min_score
    share = np.where(group, scores.score, 0.0)
    total = np.bincount(pair_trk, share, minlength=n_trk)
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = np.where(
            group, (share / np.maximum(total[pair_trk], 1e-300)) ** (1.0 / temperature), 0.0
        )
        flat_total = np.bincount(pair_trk, flat, minlength=n_trk)
        tempered = total[pair_trk] * flat / np.maximum(flat_total[pair_trk], 1e-300)
    score = np.where(group, tempered, scores.score)
    return Scores(score, scores.component, scores.unlisted, scores.lost)


def decide(model, score) -> str:
    """Status of one tracklet from its candidates' scores, best first."""
    score = np.asarray(score, dtype=np.float64)
    if score.size == 0:
        return "uncorrelated"
    if score[0] >= model.min_score:
        return "correlated"
    named = score[score >= model.tie_min_score]
    if named.size >= 2 and named.sum() >= 0.5:
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
