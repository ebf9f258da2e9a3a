"""Joint identification of the tracklets of one pass (a train seen by one station).

A station sees a train (Starlink, OneWeb: satellites launched together and flying one
behind the other in one plane) as several tracklets within minutes. One at a time, each
tracklet may fit two neighbouring members about equally: the train's element sets err
along track by as much as the spacing between members. Two facts decide them together:

- Coherence: the members' element sets err together (the same launch, the same
  manoeuvres, fitted from the same observations), so their along-track offsets share a
  common part ``delta`` (the "train offset"): ``tau_t = mu_t + delta + e_t`` with a
  small ``e_t`` (core sigma :func:`coherent_sigma_s`, measured between neighbouring
  Starlinks of the 2026 series), except for a share of members that moved on their own
  (weight ``1 - COHERENT_WEIGHT``, which keep their single-tracklet prior).
- Exclusion: two tracklets of one pass whose fits to a candidate need different time
  offsets cannot both be that object: one tracklet per object per pass.

For each candidate train offset the best assignment of tracklets to objects (or to "not
in the catalogue") is found by :func:`scipy.optimize.linear_sum_assignment` over the
log-likelihoods; each option's score is its max-marginal (the best joint hypothesis
that contains it), normalised over the tracklet's options. The single-tracklet
likelihoods come from the correlator's posteriors divided by each candidate's own
along-track prior, which the train prior replaces.

A tracklet with no companions keeps its single-tracklet result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from aposos.correlate.decide import LOST_WORDS, Scores, decide, temper_mates
from aposos.model import Candidate, Correlation, Tracklet

__all__ = ["COHERENT_WEIGHT", "coherent_sigma_s", "identify_jointly", "pass_groups"]

# tracklets of one station whose middle times are this close may be one pass of a train
PASS_WINDOW_S = 600.0
# two tracklets fit one candidate with time offsets this close: possibly the same object
# (a track split in two), so neither excludes the other and they are not joined
SAME_OBJECT_S = 1.0
SAME_OBJECT_KM = 2.0
# candidates below this score are not options of the joint hypothesis
MIN_SCORE = 1e-4
# a group is cut in time order into parts of at most this many tracklets
MAX_GROUP = 16
# share of a train's members whose along-track error is the common one (the rest moved
# on their own). Between neighbouring Starlinks (one plane, one height, within 300 s) of
# the fitting pairs 16-17, 18-19, 16-18, 16-20, 19-23 the offsets differ by 1.5-4 s
# (1 day), 9 s (2 days), 21-27 s (4 days) at the 68 % level, and 87-97 % of the pairs
# differ by less than 3 sqrt(2) coherent_sigma_s: 0.75 leaves room for launch batches
# that raise their orbits member by member
COHERENT_WEIGHT = 0.75
_NO = 1e9  # cost of a forbidden cell


def coherent_sigma_s(age_days) -> np.ndarray:
    """Sigma (s) of a member's along-track offset about its train's common offset."""
    age = np.abs(np.asarray(age_days, dtype=np.float64))
    return 0.5 + 1.5 * age + 0.5 * age**2


@dataclass
class TauPrior:
    """A candidate's own along-track prior: mixture weights, means and sigmas (s)."""

    weight: np.ndarray  # (K,)
    mean: np.ndarray  # (K,)
    sigma: np.ndarray  # (K,)
    age_days: float

    def component(self, tau: float) -> int:
        """The mixture component most responsible for an offset ``tau``."""
        z = (tau - self.mean) / self.sigma
        return int(
            np.argmax(np.log(np.maximum(self.weight, 1e-300)) - 0.5 * z**2 - np.log(self.sigma))
        )

    def log_density(self, tau, less_s: float = 0.0) -> np.ndarray:
        """Log density at ``tau``; ``less_s``: of the part left when a member's own
        scatter (sigma ``less_s``) is taken out of every component (the train offset's)."""
        tau = np.asarray(tau, dtype=np.float64)[..., None]
        sigma = np.sqrt(np.maximum(self.sigma**2 - less_s**2, 0.25 * self.sigma**2))
        z = (tau - self.mean) / sigma
        terms = np.log(np.maximum(self.weight, 1e-300)) - 0.5 * z**2
        terms -= np.log(np.sqrt(2.0 * np.pi) * sigma)
        top = terms.max(axis=-1)
        return top + np.log(np.exp(terms - top[..., None]).sum(axis=-1))


def _middle_s(trk: Tracklet) -> float:
    utc = np.asarray(trk.utc).astype("datetime64[us]").astype(np.int64)
    return float(utc[len(utc) // 2]) * 1e-6


def _possibly_same(a: Correlation, b: Correlation) -> bool:
    """Whether one candidate fits both tracklets with the same offsets (a split track)."""
    theirs = {c.norad_id: c for c in b.candidates if c.score >= MIN_SCORE}
    for c in a.candidates:
        d = theirs.get(c.norad_id)
        if d is None or c.score < MIN_SCORE:
            continue
        if abs(c.time_offset_s - d.time_offset_s) < SAME_OBJECT_S:
            cross = abs(c.cross_track_km - d.cross_track_km)
            if not cross >= SAME_OBJECT_KM:  # NaN counts as close
                return True
    return False


def _shared_pairs(stations, middles, candidates) -> list[tuple[int, int]]:
    """``(i, j)`` pairs (``i < j``) of one station, middle times within
    ``PASS_WINDOW_S``, with a common candidate; ``candidates[i]``: tracklet ``i``'s
    NORAD ids (scores of ``MIN_SCORE`` or more)."""
    by_key: dict[tuple[str, int], list[int]] = {}
    for i, ids in candidates.items():
        for norad in ids:
            by_key.setdefault((stations[i], norad), []).append(i)
    pairs = set()
    for members in by_key.values():
        if len(members) < 2:
            continue
        members.sort(key=middles.__getitem__)
        for k, i in enumerate(members):
            for j in members[k + 1 :]:
                if middles[j] - middles[i] > PASS_WINDOW_S:
                    break
                pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def pass_groups(tracklets: Sequence[Tracklet], results: Sequence[Correlation]) -> list[list[int]]:
    """Groups (two or more, time-ordered) of tracklets of one pass that share candidates.

    Joined: the same station, middle times within ``PASS_WINDOW_S``, a common candidate,
    and no common candidate that could be the same object in both (a split track).
    Only tracklets that list one candidate are looked at as pairs (through each
    candidate's tracklets), not every pair of a pass.
    """
    usable = [
        i
        for i, (t, r) in enumerate(zip(tracklets, results, strict=True))
        if r is not None and r.error is None and r.candidates and isinstance(t, Tracklet)
    ]
    parent = {i: i for i in usable}

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    middles = {i: _middle_s(tracklets[i]) for i in usable}
    stations = {i: str(tracklets[i].station) for i in usable}
    candidates = {
        i: {c.norad_id for c in results[i].candidates if c.score >= MIN_SCORE} for i in usable
    }
    for i, j in _shared_pairs(stations, middles, candidates):
        if not _possibly_same(results[i], results[j]):
            parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in usable:
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        members.sort(key=middles.__getitem__)
        # one object seen twice (joined through others) cannot be excluded from itself:
        # the later tracklet keeps its single call
        kept: list[int] = []
        for i in members:
            if not any(_possibly_same(results[j], results[i]) for j in kept):
                kept.append(i)
        members = kept
        if len(members) < 2:
            continue
        for lo in range(0, len(members), MAX_GROUP):
            part = members[lo : lo + MAX_GROUP]
            if len(part) >= 2:
                out.append(part)
    return out


def identify_jointly(
    tracklets: Sequence[Tracklet],
    results: Sequence[Correlation],
    tau_prior: Callable[[int, list[int]], list[TauPrior]],
    model,
    launch: dict[int, int] | None = None,
) -> list[Correlation]:
    """The results with every pass group decided jointly (others unchanged).

    ``tau_prior(i, norad_ids)`` gives the along-track priors of tracklet ``i``'s
    candidates at its time (the correlator's error model). ``launch``: each candidate's
    launch (NORAD number to an integer): the joint posteriors of a confident call's
    train mates are then tempered as the single calls are
    (:func:`aposos.correlate.decide.temper_mates`): the joint stage takes the mates'
    common offset and exclusion into account, not how far each one's own prior is off.
    """
    out = list(results)
    for group in pass_groups(tracklets, results):
        decided = _decide_group(
            tracklets, [results[i] for i in group], group, tau_prior, model, launch or {}
        )
        for i, corr in zip(group, decided, strict=True):
            out[i] = corr
    return out


@dataclass
class _Option:
    row: int
    col: int  # object column; the row's own "not in the catalogue" column after them
    log_single: float  # log posterior of the single-tracklet call
    log_own: float  # log of the candidate's own along-track prior at its offset
    d: float  # offset from the candidate's nominal mean (s)
    sigma: float  # coherent sigma (s)
    prior: TauPrior | None = None
    candidate: Candidate | None = None  # None: not in the catalogue


def _decide_group(tracklets, results, index, tau_prior, model, launch) -> list[Correlation]:
    n = len(results)
    col_of: dict[int, int] = {}
    options: list[_Option] = []
    for r, corr in enumerate(results):
        picked = [c for c in corr.candidates if c.score >= MIN_SCORE]
        priors = tau_prior(index[r], [c.norad_id for c in picked])
        for c, prior in zip(picked, priors, strict=True):
            col = col_of.setdefault(c.norad_id, len(col_of))
            # a member's own scatter about the train is a part of its own prior: of the
            # component that explains its offset best
            own = prior.sigma[prior.component(c.time_offset_s)]
            sigma = min(float(coherent_sigma_s(prior.age_days)), 0.7 * float(own))
            options.append(
                _Option(
                    r, col, np.log(c.score), float(prior.log_density(c.time_offset_s)),
                    c.time_offset_s - float(prior.mean[0]), sigma, prior, c,
                )
            )  # fmt: skip
    n_obj = len(col_of)
    for r, corr in enumerate(results):
        unnamed, _ = _unnamed(corr)
        options.append(_Option(r, n_obj + r, np.log(max(unnamed, 1e-300)), 0.0, 0.0, 1.0))
    at = {(o.row, o.col): k for k, o in enumerate(options)}
    deltas = np.unique(np.round([o.d for o in options if o.prior is not None], 1))
    best = np.full(len(options), -np.inf)
    best_delta = np.zeros(len(options))
    for delta in deltas:
        weight = np.array([_log_weight(o, delta) for o in options])
        coherent = np.array([_is_coherent(o, delta) for o in options])
        cost = np.full((n, n_obj + n), _NO)
        for k, o in enumerate(options):
            cost[o.row, o.col] = -weight[k]
        for k, o in enumerate(options):
            rest, used = _best_rest(cost, o.row, o.col)
            if not np.isfinite(rest):
                continue
            members = [options[at[cell]] for cell in used if coherent[at[cell]]]
            if coherent[k]:
                members.append(o)
            total = weight[k] + rest + _delta_prior(members, delta)
            if total > best[k]:
                best[k], best_delta[k] = total, float(delta)
    return [
        _result(results[r], [k for k, o in enumerate(options) if o.row == r], options, best,
                best_delta, n, model, launch)
        for r in range(n)
    ]  # fmt: skip


def _tempered(p: np.ndarray, candidates: list, launch: dict[int, int], model) -> np.ndarray:
    """The options' probabilities ``p`` with the best candidate's train mates tempered
    (``None`` candidates, "not in the catalogue", are left as they are)."""
    listed = np.array([c is not None for c in candidates])
    if model.mate_temperature == 1.0 or not listed.any():
        return p
    ids = [c.norad_id for c in candidates if c is not None]
    scores = Scores(p[listed], np.zeros(len(ids), dtype=np.int64), np.array([p[~listed].sum()]))
    tempered = temper_mates(
        scores, np.zeros(len(ids), dtype=np.int64), [launch.get(i, -1) for i in ids],
        model.mate_temperature, model.min_score,
    )  # fmt: skip
    out = p.copy()
    out[listed] = tempered.score
    return out


def _core_and_own(o: _Option, delta: float) -> tuple[float, float]:
    z = (o.d - delta) / o.sigma
    core = np.log(COHERENT_WEIGHT) - 0.5 * z * z - np.log(np.sqrt(2.0 * np.pi) * o.sigma)
    return float(core), np.log(1.0 - COHERENT_WEIGHT) + o.log_own


def _is_coherent(o: _Option, delta: float) -> bool:
    if o.prior is None:
        return False
    core, own = _core_and_own(o, delta)
    return core > own


def _log_weight(o: _Option, delta: float) -> float:
    """Log-likelihood of an option under train offset ``delta`` (the single call with
    the candidate's own along-track prior replaced by the train's)."""
    if o.prior is None:
        return o.log_single
    core, own = _core_and_own(o, delta)
    return o.log_single - o.log_own + float(np.logaddexp(core, own))


def _delta_prior(members: list[_Option], delta: float) -> float:
    """Log prior of the train offset ``delta`` given its ``m`` coherent members: their
    own priors less their own scatter, at it (averaged in log), times the width it is
    pinned to by them (``sigma / sqrt(m)``, Laplace's rule), over ``COHERENT_WEIGHT``
    (the share of a lone member's own prior the profile leaves out: one member alone
    weighs as much as in its single call); nothing when no member is coherent."""
    if not members:
        return 0.0
    logs = [float(o.prior.log_density(o.prior.mean[0] + delta, o.sigma)) for o in members]
    sigma = min(o.sigma for o in members) / np.sqrt(len(members))
    width = float(np.log(np.sqrt(2.0 * np.pi) * sigma / COHERENT_WEIGHT))
    return float(np.mean(logs)) + width


def _best_rest(cost: np.ndarray, row: int, col: int) -> tuple[float, list[tuple[int, int]]]:
    """Best total log-weight of the other rows with ``row`` and ``col`` taken, and the
    ``(row, col)`` cells of that assignment."""
    from scipy.optimize import linear_sum_assignment

    rows = np.delete(np.arange(cost.shape[0]), row)
    cols = np.delete(np.arange(cost.shape[1]), col)
    if rows.size == 0:
        return 0.0, []
    rest = cost[np.ix_(rows, cols)]
    r, c = linear_sum_assignment(rest)
    total = rest[r, c].sum()
    if total >= _NO / 2:
        return -np.inf, []
    return -float(total), list(zip(rows[r].tolist(), cols[c].tolist(), strict=True))


def _unnamed(corr: Correlation) -> tuple[float, float]:
    """The posterior no candidate takes ("not in the catalogue", or a catalogued object
    whose element set is lost: what its candidates' scores leave), and the share of it
    that is "not in the catalogue"."""
    unlisted = corr.p_unlisted if np.isfinite(corr.p_unlisted) else 0.0
    unnamed = max(unlisted, 1.0 - sum(c.score for c in corr.candidates))
    return unnamed, (unlisted / unnamed if unnamed > 0 else 1.0)


def _result(single, mine, options, best, best_delta, n, model, launch) -> Correlation:
    """The tracklet's joint call from its options' max-marginals."""
    logs = best[mine]
    top = logs.max()
    if not np.isfinite(top):
        return single
    p = np.exp(logs - top)
    p /= p.sum()
    p = _tempered(p, [options[k].candidate for k in mine], launch, model)
    p_unlisted = p_unnamed = 0.0
    candidates = []
    delta = 0.0
    for k, pk in sorted(zip(mine, p, strict=True), key=lambda item: -item[1]):
        o = options[k]
        if o.candidate is None:
            p_unnamed = float(pk)
            p_unlisted = p_unnamed * _unnamed(single)[1]
            continue
        if not candidates:
            delta = float(best_delta[k])
        candidates.append(replace(o.candidate, score=float(pk)))
    status = decide(model, [c.score for c in candidates])
    head = candidates[0] if candidates else None
    why = f"joint with {n - 1} other tracklet(s) of the same pass: train offset {delta:+.0f} s; "
    if status == "correlated":
        text = f"correlated with {head.norad_id} (p {head.score:.3g}; {head.time_offset_s:+.1f} s)"
    elif status == "ambiguous":
        named = [c for c in candidates if c.score >= model.tie_min_score]
        text = "ambiguous between " + ", ".join(f"{c.norad_id} (p {c.score:.3g})" for c in named)
    else:
        text = f"not in the catalogue (p {p_unlisted:.3g})"
        p_lost = p_unnamed - p_unlisted
        if p_lost > p_unlisted:
            text = f"{LOST_WORDS} (p {p_lost:.3g}); {text}"
        if head is not None:
            text += f"; nearest {head.norad_id} (p {head.score:.3g}; {head.time_offset_s:+.1f} s)"
    alone = f"; alone: {single.reason}" if single.reason else ""
    return replace(
        single,
        status=status,
        norad_id=head.norad_id if status == "correlated" else None,
        score=head.score if head else 0.0,
        time_offset_s=head.time_offset_s if head else single.time_offset_s,
        rms_arcsec=head.rms_arcsec if head else single.rms_arcsec,
        candidates=candidates,
        p_unlisted=p_unlisted,
        reason=why + text + alone,
    )
