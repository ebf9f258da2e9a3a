"""Correlation: every tracklet against the whole catalogue.

>>> from aposos.correlate.sites import load_sites
>>> correlator = SGP4Correlator(catalogue, load_sites("stations"), cube_dir="cubes")  # doctest: +SKIP
>>> results = correlator(tracklets)          # list[Correlation], same order   # doctest: +SKIP
>>> correlator.correlate_one(tracklet)       # one Correlation                 # doctest: +SKIP

Steps (see ``shared/ARCHITECTURE.md``):

1. Ephemeris cube (:class:`aposos.orbit.ephemeris.HermiteEphemeris`): the catalogue on
   a time grid, one cube per orbit-class step (LEO 180 s, HEO 120 s, MEO 300 s, GEO
   600 s: Hermite error below 0.1 km for all), built once per catalogue snapshot and
   hour of time and kept in zarr under ``cube_dir``.
2. Coarse gate (:mod:`aposos.correlate.gate`) at each tracklet's middle
   observation: every object, sliding along its track by the time its element set may
   be off.
   Rank (:mod:`aposos.correlate.rank`): far along the track the straight line lets many
   objects pass; each passing object is looked at on its curved track (the cube, two
   Newton steps on the offset) and scored under the error mixture; the first
   ``N_FIT_MIN`` of each tracklet go on, and up to ``N_FIT`` of those scored within
   ``RANK_GAP`` of its best (:func:`fit_worthy`).
3. Fine fit (:mod:`aposos.correlate.fit`): exact SGP4 at every observation time,
   a fitted time offset (along track) and small position offsets (a tilt of the orbit
   plane, a radial shift), residuals, marginal chi-square.
4. Score and classification against a stated error model
   (:mod:`aposos.correlate.model`): every pair is fitted four times, under the
   nominal and the manoeuvre component of the element-set error mixture and under both
   spread along track by a cluster width (the density of uncatalogued objects flying
   with the candidate); the score is the posterior probability of each candidate
   against the others and "not in the catalogue". The gate allows for the wider
   component. A pair whose data alone leave a chi-square too large to hold 1e-12 of
   the posterior under any prior (:func:`~aposos.correlate.fit.chi2_floor`) is left
   out before the priors are weighed.

Batches run on a Dask cluster with :meth:`SGP4Correlator.run_distributed`, cut into the
same time-ordered chunks as a local run: the results are identical, bit for bit.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from aposos.correlate.decide import (
    LOST_WORDS,
    chi2_sf_even,
    decide,
    score_pairs,
    temper_mates,
)
from aposos.correlate.fit import (
    ObservationBatch,
    PairFit,
    chi2_floor,
    evaluate_priors,
    fit_pairs,
)
from aposos.correlate.gate import gate_block
from aposos.correlate.model import ARCSEC, ErrorModel, unseen_mate_odds
from aposos.correlate.rank import (
    MAX_STEP_S,
    block_priors,
    rank_order,
    rank_scores,
)
from aposos.correlate.sites import resolve_site
from aposos.model import Candidate, Correlation, Tracklet, datetime64_to_jd_fr
from aposos.orbit.ephemeris import HermiteEphemeris, hermite_weights

__all__ = ["DEFAULT_STEPS_S", "SGP4Correlator"]

log = logging.getLogger(__name__)

DEFAULT_STEPS_S = {"LEO": 180, "HEO": 120, "MEO": 300, "GEO": 600}
N_CANDIDATES = 5
# the gate passes at most GATE_PASS_CAP objects per tracklet and orbit-class group; a
# look along each one's track on the cube ranks them (a score, -2 ln likelihood) and the
# best go on to the fit: the first N_FIT_MIN, and up to N_FIT of those whose score is
# within RANK_GAP of the best (benchmarks/rank_of_truth.py: the true object's worst gap
# was 22.6 on the fitting pairs 16-17, 18-19, 16-18, 16-20, 19-23; 1-day pairs fit 14-22
# pairs per tracklet, 4-day pairs 49-53: trains and shells give dozens within the gap)
GATE_PASS_CAP = 1024
N_FIT = 64
# N_FIT_MIN 8 (then 16) with RANK_GAP 30 cut fitted pairs 64 -> 14-53 per tracklet and kept
# every true object, but left out an object the fine fit accepts by chi-square
# (tests/test_correlate.py::test_gate_loses_nothing_the_fit_accepts): not used until the
# rank score bounds that too
N_FIT_MIN = 64
RANK_GAP = 30.0
# a fitted pair is left out when it cannot hold this share of its tracklet's posterior
# under any prior (:meth:`SGP4Correlator._negligible_deviance`): the others' scores move
# by less than this, and no listed score of 1e-6 or more changes
NEGLIGIBLE_SHARE = 1e-12
GATE_MARGIN_S = 0.2  # light time (GEO 0.13 s) and interpolation
GATE_MARGIN_KM = 0.5
GATE_MARGIN_ARCSEC = 10.0
# below this many tracklets, kernels run on the calling thread: a parallel launch
# costs more than the work (and far more on a busy machine)
SMALL_BATCH = 16
# tracklets whose pairs are fitted together (:meth:`SGP4Correlator._fit_in_parts`)
FIT_PART = 128
# cube blocks (hours) kept in memory per orbit-class group; older ones reload from zarr
MAX_BLOCKS = 48


@contextmanager
def _numba_threads(n: int | None):
    if n is None:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, previous))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


_PAGES_LOCK = threading.Lock()
_pages_users = [0, True]  # batches running, numpy's hugepage advice before the first


@contextmanager
def _small_pages():
    """No transparent-hugepage advice on numpy's arrays while batches run (numpy gives
    it to arrays of 4 MB and more). A batch's arrays live for a moment: a fresh huge
    page costs the kernel a 2 MB zeroing, and a compaction when memory is fragmented
    (1.5 s of system time on the bench's 2026 night after the cold run, 0.2 s without
    the advice). Process-wide while any batch runs; restored by the last one out."""
    switch = _hugepage_switch()
    if switch is None:
        yield
        return
    with _PAGES_LOCK:
        if _pages_users[0] == 0:
            _pages_users[1] = switch(False)
        _pages_users[0] += 1
    try:
        yield
    finally:
        with _PAGES_LOCK:
            _pages_users[0] -= 1
            if _pages_users[0] == 0:
                switch(_pages_users[1])


def _hugepage_switch():
    """numpy's setter of its hugepage advice (returns the previous setting), or ``None``
    where this numpy has none (numpy 2 keeps it in ``numpy._core``, 1.x in
    ``numpy.core``)."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "_set_madvise_hugepage"):
            return module._set_madvise_hugepage
    return None


class SGP4Correlator:
    """Identify tracklets against a catalogue.

    Parameters
    ----------
    catalogue : :class:`aposos.orbit.catalogue.Catalogue`.
    sites : station name (code or 4-digit IOD number) -> :class:`~aposos.model.Site`,
        e.g. :func:`aposos.correlate.sites.load_sites`.
    cube_dir : where ephemeris cube blocks are kept (zarr); ``None``: memory only.
    error_model : :class:`~aposos.correlate.model.ErrorModel` (defaults stated there).
    steps_s : cube grid step per orbit class (seconds, dividing 3600).
    chunk_size : tracklets per batch, in time order (memory bound). Distributed runs
        use the same chunks, so their results are identical to a local run.
    previous_catalogue : the catalogue's snapshot before ``catalogue`` (optional): orbits
        that changed between the two (fleets being lowered or raised) get the wide error
        components they need; without it only the element sets' own ``n_dot`` says so.

    Calling the correlator on a list of tracklets returns one
    :class:`~aposos.model.Correlation` per tracklet, in the same order. A tracklet that
    cannot be processed (fewer than 2 observations, unknown station) gets status
    ``uncorrelated`` with ``error`` saying why; the others carry on.
    """

    def __init__(
        self,
        catalogue,
        sites: dict,
        *,
        cube_dir: str | os.PathLike | None = None,
        error_model: ErrorModel | None = None,
        steps_s: dict[str, int] | None = None,
        chunk_size: int = 1000,
        previous_catalogue=None,
    ):
        self.catalogue = catalogue
        self.sites = dict(sites)
        self.cube_dir = cube_dir
        self.error_model = error_model or ErrorModel.default()
        self.steps_s = dict(DEFAULT_STEPS_S if steps_s is None else steps_s)
        self.chunk_size = int(chunk_size)
        classes = np.asarray(catalogue.orbit_class)
        by_step: dict[int, list[np.ndarray]] = {}
        for name in np.unique(classes):
            step = int(self.steps_s.get(str(name), self.steps_s.get("LEO", 180)))
            by_step.setdefault(step, []).append(np.flatnonzero(classes == name))
        self._priors = self.error_model.table(catalogue, previous_catalogue)
        self._allowance_cache: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self._rank_prior_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._lost_share_cache: dict[int, float] = {}
        self._gate_prior_cache: dict[tuple[int, int], np.ndarray] = {}
        self._launch_by_norad: dict[int, int] | None = None
        self._negligible: float | None = None
        self._row_by_norad: dict[int, int] | None = None
        self._groups: list[tuple[np.ndarray, HermiteEphemeris]] = []
        for step in sorted(by_step):
            index = np.sort(np.concatenate(by_step[step]))
            eph = HermiteEphemeris(
                catalogue.subset(index), step_s=step, cube_dir=cube_dir, max_blocks=MAX_BLOCKS
            )
            self._groups.append((index, eph))

    def __getstate__(self):
        # pickled (to Dask workers) without the NORAD id look-ups: they are rebuilt
        state = self.__dict__.copy()
        state["_launch_by_norad"] = state["_row_by_norad"] = None
        return state

    def __repr__(self) -> str:
        return f"<SGP4Correlator: {len(self.catalogue)} objects, {len(self.sites)} station names>"

    @property
    def ephemerides(self) -> list[HermiteEphemeris]:
        return [eph for _, eph in self._groups]

    # ------------------------------------------------------------------ public API
    def __call__(
        self, tracklets: Sequence[Tracklet], *, progress: bool = False, joint: bool = True
    ) -> list[Correlation]:
        """Correlate ``tracklets``; ``joint``: decide the tracklets of one pass that share
        candidates (a train seen by one station) together (:mod:`aposos.correlate.joint`)."""
        tracklets = list(tracklets)
        results, untempered = self.correlate_single(tracklets, progress=progress)
        return self.joint(tracklets, results, untempered) if joint else results

    def correlate_single(
        self, tracklets: Sequence[Tracklet], *, progress: bool = False
    ) -> tuple[list[Correlation], list[Correlation]]:
        """Each tracklet on its own: the results, and the same with train mates' scores
        untempered (what :meth:`joint` decides from)."""
        tracklets = list(tracklets)
        results: list = [None] * len(tracklets)
        chunks = self._time_ordered_chunks(tracklets, results)
        done = (
            (chunk, _paired(self._correlate_valid([tracklets[i] for i in chunk], sites)))
            for chunk, sites in chunks
        )
        return _unpaired(_collect(results, done, sum(len(c) for c, _ in chunks), progress))

    def joint(self, tracklets: Sequence[Tracklet], results: list[Correlation], untempered=None):
        """The single-tracklet ``results`` with each pass group decided jointly, from
        the ``untempered`` results where given (see :meth:`correlate_single`): the joint
        stage weighs train mates' common offset itself, then tempers its own calls
        (:mod:`aposos.correlate.joint`)."""
        from aposos.correlate.joint import identify_jointly

        source = results if untempered is None else untempered
        decided = identify_jointly(
            tracklets, source, self._tau_prior(tracklets), self.error_model, self._launch_of()
        )
        return [r if d is s else d for r, d, s in zip(results, decided, source, strict=True)]

    def _launch_of(self) -> dict[int, int]:
        """Each catalogued object's launch (see :func:`~aposos.correlate.errors.launch_index`;
        made once: one tracklet at a time, it cost more than the correlation)."""
        if self._launch_by_norad is None:
            norad = np.asarray(self.catalogue.norad_id).tolist()
            self._launch_by_norad = dict(zip(norad, self._priors.launch.tolist(), strict=True))
        return self._launch_by_norad

    def _row_of(self) -> dict[int, int]:
        """Catalogue row of each NORAD id (made once, as :meth:`_launch_of`)."""
        if self._row_by_norad is None:
            norad = np.asarray(self.catalogue.norad_id).tolist()
            self._row_by_norad = {int(n): i for i, n in enumerate(norad)}
        return self._row_by_norad

    def _tau_prior(self, tracklets):
        """``(tracklet index, norad ids) -> [TauPrior]``: the candidates' own along-track
        priors at the tracklet's middle time."""
        from aposos.correlate.joint import TauPrior

        row_of = self._row_of()
        table = self._priors

        def prior(i: int, norad_ids: list[int]) -> list[TauPrior]:
            if not norad_ids:
                return []
            index = np.array([row_of[int(n)] for n in norad_ids], dtype=np.int64)
            jd, fr = self._reference_times([tracklets[i]])
            jd, fr = np.full(index.size, jd[0]), np.full(index.size, fr[0])
            weight, _ = table.weights(jd, fr, index)
            parts = table.component_priors(jd, fr, index).transpose(1, 0, 2)
            age = table.age_days(jd, fr, index)
            used = np.maximum(weight, 0.0)
            return [
                TauPrior(used[j] / max(used[j].sum(), 1e-300), parts[:, j, 0], parts[:, j, 1],
                         float(age[j]))
                for j in range(index.size)
            ]  # fmt: skip

        return prior

    def _time_ordered_chunks(self, tracklets, results) -> list[tuple[list[int], list]]:
        """Validate (the refused get their result in ``results``), then cut the rest into
        chunks in time order: ``(indices, sites)`` each, ``chunk_size`` long at most."""
        good, sites = self._validate(tracklets, results)
        order = self._time_order([tracklets[i] for i in good])
        good = [good[i] for i in order]
        sites = [sites[i] for i in order]
        size = self.chunk_size
        return [(good[lo : lo + size], sites[lo : lo + size]) for lo in range(0, len(good), size)]

    def correlate_one(self, tracklet: Tracklet) -> Correlation:
        """Correlate one tracklet (the service's per-upload path)."""
        return self([tracklet])[0]

    def warm(self, jd, fr, *, progress: bool = False) -> None:
        """Build or load the cube blocks covering UTC ``(jd, fr)`` ahead of use."""
        jd = np.atleast_1d(np.asarray(jd, dtype=np.float64))
        fr = np.atleast_1d(np.asarray(fr, dtype=np.float64))
        for _, eph in self._groups:
            eph.ensure(eph.blocks_for(jd, fr), progress=progress)

    def blocks_needed(self, tracklets: Sequence[Tracklet]) -> list[tuple[int, int]]:
        """``(group, block)`` cube blocks the tracklets' reference times fall in."""
        jd, fr = self._reference_times([t for t in tracklets if len(t) >= 1])
        needed = []
        for g, (_, eph) in enumerate(self._groups):
            needed += [(g, int(b)) for b in eph.blocks_for(jd, fr)]
        return needed

    def ensure_blocks(self, blocks: Sequence[tuple[int, int]]) -> None:
        for g, (_, eph) in enumerate(self._groups):
            eph.ensure([b for gg, b in blocks if gg == g])

    # ------------------------------------------------------------------ steps
    def _validate(self, tracklets, results):
        good, sites = [], []
        for i, trk in enumerate(tracklets):
            error = None
            site = None
            if not isinstance(trk, Tracklet):
                error = f"not a Tracklet: {type(trk).__name__}"
            elif len(trk) < 2:
                error = f"tracklet has {len(trk)} observation(s); at least 2 are needed"
            elif not (np.all(np.isfinite(trk.ra_deg)) and np.all(np.isfinite(trk.dec_deg))):
                error = "tracklet has non-finite RA/Dec"
            else:
                site = resolve_site(self.sites, str(trk.station))
                if site is None:
                    error = f"unknown station {trk.station!r} (not in the stations' [site] tables)"
            if error is None:
                good.append(i)
                sites.append(site)
            else:
                results[i] = Correlation(status="uncorrelated", error=error)
        return good, sites

    @staticmethod
    def _reference_times(tracklets):
        """UTC ``(jd, fr)`` of each tracklet's middle observation."""
        if not tracklets:
            return np.zeros(0), np.zeros(0)
        middle = np.array([trk.utc[len(trk) // 2] for trk in tracklets])
        jd, fr = datetime64_to_jd_fr(middle)
        return np.asarray(jd, dtype=np.float64), np.asarray(fr, dtype=np.float64)

    def _time_order(self, tracklets) -> np.ndarray:
        jd, fr = self._reference_times(tracklets)
        return np.lexsort((fr, jd)) if len(tracklets) else np.zeros(0, dtype=np.int64)

    def _allowances(self, group: int, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gate allowances of a group's objects for one cube block (cached).

        Taken at the end of the block, so that they depend on the block only (never on
        which tracklets share a batch) and are conservative for element sets older than it.
        """
        key = (group, block)
        if key not in self._allowance_cache:
            model = self.error_model
            n = self._groups[group][1].samples_per_block
            # the prior mean moves within the block; widen by its change over the block
            start = self._gate_priors_at(group, block * n)
            prior = self._gate_priors_at(group, (block + 1) * n)
            tau_mid = prior[:, 0]
            tau_max = (
                model.gate_sigma * prior[:, 1] + np.abs(prior[:, 0] - start[:, 0]) + GATE_MARGIN_S
            )
            cross = model.gate_sigma * np.hypot(prior[:, 2], prior[:, 3]) + GATE_MARGIN_KM
            if len(self._allowance_cache) > 256:
                self._allowance_cache.clear()
            self._allowance_cache[key] = (
                tau_mid.astype(np.float32),
                tau_max.astype(np.float32),
                cross.astype(np.float32),
            )
        return self._allowance_cache[key]

    def _gate_priors_at(self, group: int, sample: int) -> np.ndarray:
        """Gate priors of a group's objects at a grid sample (cached: a block's end is
        the next block's start)."""
        key = (group, sample)
        if key not in self._gate_prior_cache:
            index, eph = self._groups[group]
            jd, fr = eph.sample_times(sample, 1)
            if len(self._gate_prior_cache) > 256:
                self._gate_prior_cache.clear()
            self._gate_prior_cache[key] = self._priors.gate_priors(jd[0], fr[0], index)
        return self._gate_prior_cache[key]

    def _gate(self, batch: ObservationBatch):
        """Candidates of every tracklet: (tracklet, catalogue index, tau0) arrays, those
        :func:`fit_worthy` keeps of each (:mod:`aposos.correlate.rank`)."""
        pair_trk, pair_obj, tau, score, rank, _ = self._gate_ranked(batch)
        keep = fit_worthy(pair_trk, score, rank, batch.n_tracklets)
        return pair_trk[keep], pair_obj[keep], tau[keep]

    def _gate_ranked(self, batch: ObservationBatch):
        """Every gate pair, by tracklet and best first: tracklet, catalogue index, tau0,
        rank score, rank (0: the likeliest of its tracklet), and the place the gate
        gave it in its orbit-class group (0: the closest to its line of sight)."""
        rows = batch.reference_rows()
        jd, fr = batch.jd[rows], batch.fr[rows]
        site_teme, u_teme = batch.reference_teme()
        sigma = batch.sigma_rad[rows]
        theta = self.error_model.gate_sigma * sigma + GATE_MARGIN_ARCSEC * ARCSEC
        pair_trk, pair_obj, pair_tau, pair_score, pair_place = [], [], [], [], []
        for g, (index, eph) in enumerate(self._groups):
            block, k, s = eph.locate(jd, fr)
            w = hermite_weights(s)
            for b in np.unique(block):
                members = np.flatnonzero(block == b)
                tau_mid, tau_max, cross = self._allowances(g, int(b))
                counts, obj, tau = gate_block(
                    eph.block(int(b)), eph.step_s, k[members], w[members], site_teme[members],
                    u_teme[members], tau_mid, tau_max, cross, theta[members],
                    cap=GATE_PASS_CAP,
                )  # fmt: skip
                if counts.sum() == 0:
                    continue
                trk = np.repeat(members, counts)
                tau, score = self._rank_block(g, int(b), trk, obj, jd, fr, site_teme, u_teme,
                                              sigma, tau)  # fmt: skip
                pair_trk.append(trk)
                pair_obj.append(index[obj])
                pair_tau.append(tau)
                pair_score.append(score)
                pair_place.append(
                    np.arange(trk.size) - np.repeat(np.cumsum(counts) - counts, counts)
                )
        if not pair_trk:
            none = np.zeros(0, np.int64)
            return none, none, np.zeros(0), np.zeros(0), none, none
        pair_trk, pair_obj = np.concatenate(pair_trk), np.concatenate(pair_obj)
        tau, score = np.concatenate(pair_tau), np.concatenate(pair_score)
        order, starts = rank_order(pair_trk, score, batch.n_tracklets)
        pair_trk, pair_obj, tau, score = pair_trk[order], pair_obj[order], tau[order], score[order]
        rank = np.arange(pair_trk.size) - starts[pair_trk]
        return pair_trk, pair_obj, tau, score, rank, np.concatenate(pair_place)[order]

    def _rank_block(self, g, b, trk, obj, jd, fr, site, u, sigma, tau):
        """Refined offsets and likelihood scores of one block's gate pairs
        (:func:`aposos.correlate.rank.rank_scores`), on the cube around the block."""
        _, eph = self._groups[g]
        start_jd, start_fr = eph.sample_times(b * eph.samples_per_block, 1)
        t0 = ((jd - start_jd[0]) + (fr - start_fr[0])) * 86400.0  # per tracklet
        reach = 2 * MAX_STEP_S + 1.0
        n = eph.samples_per_block
        stand_in = np.zeros((1, 6, 0), dtype=np.float32)
        before = eph.block(b - 1) if (t0[trk] + tau).min() - reach < 0 else stand_in
        after = eph.block(b + 1) if (t0[trk] + tau).max() + reach >= n * eph.step_s else stand_in
        blocks = (before, eph.block(b), after)
        tau, _, score = rank_scores(
            blocks, eph.step_s, obj, t0, tau, site, u, sigma, self._rank_priors(g, b, obj),
            trk=trk,
        )  # fmt: skip
        return tau, score

    def _rank_priors(self, g: int, b: int, obj: np.ndarray) -> np.ndarray:
        """:func:`aposos.correlate.rank.block_priors` of a group's objects at the middle
        of cube block ``b``: a row per object of the group, set for the objects ``obj``
        at least (a fifth of a block's objects pass the gate; the others' rows are NaN
        until a batch needs them). Cached like the allowances."""
        index, eph = self._groups[g]
        cache = self._rank_prior_cache
        if (g, b) not in cache:
            if len(cache) > 256:
                cache.clear()
            shape = (index.size, self._priors.n_components, 4)
            cache[g, b] = (np.full(shape, np.nan), np.zeros(index.size, dtype=bool))
        priors, known = cache[g, b]
        wanted = np.zeros(index.size, dtype=bool)
        wanted[obj] = True
        need = np.flatnonzero(wanted & ~known)
        if need.size:
            jd, fr = eph.sample_times(b * eph.samples_per_block + eph.samples_per_block // 2, 1)
            priors[need] = block_priors(self._priors, jd[0], fr[0], index[need])
            known[need] = True
        return priors

    def _correlate_valid(self, tracklets, sites) -> tuple[list, list]:
        with _numba_threads(1 if len(tracklets) < SMALL_BATCH else None), _small_pages():
            return self._correlate_batch(tracklets, sites)

    def _correlate_batch(self, tracklets, sites) -> tuple[list, list]:
        batch = ObservationBatch.build(
            tracklets, sites, log_volume=self.error_model.background_log_volume
        )
        pair_trk, pair_obj, tau0 = self._gate(batch)
        order = np.lexsort((pair_obj, pair_trk))
        pair_trk, pair_obj, tau0 = pair_trk[order], pair_obj[order], tau0[order]
        fits, live = self._fit_components(batch, pair_trk, pair_obj, tau0)
        return self._classify(
            fits, pair_trk[live], pair_obj[live], batch.free_deviance,
            self._lost_elsewhere(batch), (pair_trk[~live], pair_obj[~live]),
        )  # fmt: skip

    def _lost_elsewhere(self, batch) -> np.ndarray:
        """Per tracklet, the odds of a catalogued object whose element set is lost flying
        anywhere (none of the candidates): the catalogue's mean lost share at the
        tracklet's time (cached by the hour) times the model's
        ``lost_visible_share``."""
        rows = batch.reference_rows()
        jd, fr = batch.jd[rows], batch.fr[rows]
        key = np.round((jd - 2451545.0 + fr) * 24.0).astype(np.int64)
        cache = self._lost_share_cache
        for k in set(key.tolist()) - set(cache):
            if len(cache) > 256:
                cache.clear()
            n = self._priors.epoch_jd.size
            day = 2451545.0 + k / 24.0
            _, lost = self._priors.weights(np.full(n, np.floor(day)), np.full(n, day % 1.0))
            cache[k] = float(lost.mean()) if n else 0.0
        share = self.error_model.lost_visible_share
        return share * np.array([cache[k] for k in key.tolist()])

    def _fit_components(self, batch, pair_trk, pair_obj, tau0):
        """Fit every pair once (SGP4 iterated, under the gate's wide prior) and leave out
        those that cannot matter (their chi-square floor,
        :func:`~aposos.correlate.fit.chi2_floor`, beyond :meth:`_negligible_deviance`
        above the tracklet's "nobody catalogued it" deviance, save each tracklet's
        least); then the others' marginal deviance under each mixture component and
        each cluster-widened one from the same geometry (no more SGP4).

        Returns, for the pairs kept, the fit, ``(n_pairs, K)`` deviances and cluster
        deviances, the weights, the lost shares, the deviances of the lost spread and,
        per pair, the odds of one unseen plane mate
        (:func:`~aposos.correlate.model.unseen_mate_odds`); and which pairs those are.
        """
        rows = batch.reference_rows()[pair_trk]
        jd, fr = batch.jd[rows], batch.fr[rows]
        table = self._priors
        plain, wide, fit = self._fit_in_parts(batch, pair_trk, pair_obj, tau0, jd, fr)
        floor = chi2_floor(fit)
        live = ~(floor - batch.free_deviance[pair_trk] > self._negligible_deviance())
        # each tracklet's pair of least floor stays: an uncorrelated record names its
        # nearest candidate, with residuals, whatever the others' shares
        by_floor = np.lexsort((floor, pair_trk))
        first = np.ones(by_floor.size, dtype=bool)
        first[1:] = pair_trk[by_floor[1:]] != pair_trk[by_floor[:-1]]
        live[by_floor[first]] = True
        if not live.all():
            fit, plain, wide = fit.take(live), plain[live], wide[live]
            pair_obj, jd, fr = pair_obj[live], jd[live], fr[live]
        k_max = table.n_components
        deviance = np.full((pair_obj.size, k_max), np.inf)
        cluster = np.full((pair_obj.size, k_max), np.inf)
        weights, lost = table.weights(jd, fr, pair_obj)
        used = [k for k in range(k_max) if np.any(weights[:, k] > 0)]
        spread = wide.copy()  # the gate's widest sigmas across track, the window along
        spread[:, 1] = self.error_model.gate_max_along_s
        clustered = table.clustered(plain, pair_obj)
        priors = [p[:, k] for k in used for p in (plain, clustered)]
        chi2, occam = evaluate_priors(fit, np.stack(priors + [spread]))
        for m, k in enumerate(used):
            deviance[:, k] = chi2[2 * m] + occam[2 * m]
            cluster[:, k] = chi2[2 * m + 1] + occam[2 * m + 1]
        lost_deviance = chi2[-1] + occam[-1]
        per_mate = None
        if self.error_model.unseen_mate_scale > 0:
            along = np.stack([priors[2 * m][:, :2] for m in range(len(used))], axis=1)
            per_mate = unseen_mate_odds(
                1.0, weights[:, used], lost, along[..., 0], along[..., 1],
                table.rev_per_day[pair_obj], self.error_model.gate_max_along_s,
            )  # fmt: skip
        return (fit, deviance, cluster, weights, lost, lost_deviance, per_mate), live

    def _fit_in_parts(self, batch, pair_trk, pair_obj, tau0, jd, fr):
        """Priors (each component's and the gate's) and fits of the pairs (in tracklet
        order), ``FIT_PART`` tracklets at a time, in arrays as wide as the batch's (the
        same numbers, bit for bit): each tracklet's pairs are fitted on their own
        anyway, and parts this small reuse the memory of the last one (fresh arrays of
        a whole batch's pairs cost page faults)."""
        table, timing = self._priors, self.error_model.timing_sigma_s
        cuts = np.searchsorted(pair_trk, np.arange(FIT_PART, batch.n_tracklets, FIT_PART))
        edges = np.unique(np.concatenate([[0], cuts, [pair_trk.size]])).tolist()
        n_max = int(batch.counts[pair_trk].max()) if pair_trk.size else 0
        parts = []
        for lo, hi in list(zip(edges[:-1], edges[1:])) or [(0, 0)]:
            plain = table.component_priors(jd[lo:hi], fr[lo:hi], pair_obj[lo:hi])
            wide = table.gate_priors(jd[lo:hi], fr[lo:hi], pair_obj[lo:hi], plain)
            fit = fit_pairs(
                batch, self.catalogue.params, pair_trk[lo:hi], tau0[lo:hi], wide, timing,
                obj=pair_obj[lo:hi], n_max=n_max,
            )  # fmt: skip
            parts.append((plain, wide, fit))
        return (
            np.concatenate([p for p, _, _ in parts]),
            np.concatenate([w for _, w, _ in parts]),
            PairFit.concatenate([f for _, _, f in parts]),
        )

    def _negligible_deviance(self) -> float:
        """How far above its tracklet's "nobody catalogued it" deviance a pair's
        chi-square floor must lie for it to hold less than :data:`NEGLIGIBLE_SHARE` of
        the posterior, with every other pair of the tracklet left out too.

        Each pair adds to the posterior's total at most ``C exp(-d / 2)``, ``d`` its
        least deviance (never below its floor): its likelihood (weights at most 1), its
        cluster odds, its lost share (at most 1) and its unseen plane mates (at most
        ``unseen_mate_scale`` times its plane mates plus one, each at most twice the
        density of one orbit's worth of the gate window); the "nobody catalogued it"
        term alone is ``r exp(-d_free / 2)``, ``r`` the odds of an uncatalogued object."""
        if self._negligible is None:
            model, table = self.error_model, self._priors
            r = model.uncatalogued_fraction / (1.0 - model.uncatalogued_fraction)
            rev = float(np.max(table.rev_per_day, initial=0.0))
            density = np.sqrt(2.0 * np.pi) * model.gate_max_along_s * rev / 86400.0
            mates = float(np.max(table.plane_mates, initial=0)) + 1.0
            odds = float(np.max(table.cluster_odds, initial=0.0))
            c = 2.0 + odds + model.unseen_mate_scale * mates * 2.0 * density
            self._negligible = 2.0 * np.log(N_FIT * c / (r * NEGLIGIBLE_SHARE))
        return self._negligible

    def _classify(
        self, fit_deviance, pair_trk, pair_obj, free_deviance, lost_elsewhere=0.0, left_out=None
    ):
        """Scores, candidates, status and reason of every tracklet from its pairs' fits:
        the records with train mates tempered (:func:`temper_mates`) and, for the joint
        stage, untempered (the same record where tempering changed nothing).
        ``left_out``: ``(tracklet, object)`` of the pairs found negligible before the
        fit; they still count as seen train and plane mates (:meth:`_unseen_mates`)."""
        fit, deviance, cluster, weights, lost, lost_deviance, per_mate = fit_deviance
        n_trk = free_deviance.size
        model = self.error_model
        keep = np.flatnonzero(np.isfinite(fit.chi2))
        if keep.size == 0:
            r = model.uncatalogued_fraction / (1.0 - model.uncatalogued_fraction)
            share = r / (r + np.broadcast_to(lost_elsewhere, (n_trk,)))
            out = [_nothing_in_gate(float(p)) for p in share]
            return out, list(out)
        trk = pair_trk[keep]
        obj = pair_obj[keep]
        unseen = None
        if per_mate is not None:
            mates = self._unseen_mates(trk, obj, left_out)
            unseen = model.unseen_mate_scale * mates * per_mate[keep]
        raw = score_pairs(
            model, trk, deviance[keep], cluster[keep], weights[keep], lost[keep], free_deviance,
            lost_deviance[keep], self._priors.cluster_odds[obj], lost_elsewhere, unseen,
        )  # fmt: skip
        tempered = temper_mates(
            raw, trk, self._priors.launch[obj], model.mate_temperature, model.min_score
        )
        out = self._records(tempered, fit, keep, trk, obj, n_trk)
        changed = np.zeros(n_trk, dtype=bool)
        changed[trk[tempered.score != raw.score]] = True
        if not changed.any():
            return out, list(out)
        untempered = self._records(raw, fit, keep, trk, obj, n_trk, only=changed)
        return out, [u if c else o for o, u, c in zip(out, untempered, changed, strict=True)]

    def _unseen_mates(self, trk, obj, also=None) -> np.ndarray:
        """Per pair, the candidate's plane mates that are not candidates of the tracklet
        (its plane mates, less the tracklet's other candidates of its launch, counting
        the ``(tracklet, object)`` pairs ``also``)."""
        n = np.size(trk)
        if also is not None:
            trk, obj = np.concatenate([trk, also[0]]), np.concatenate([obj, also[1]])
        launch = self._priors.launch[obj]
        key = (np.asarray(trk, dtype=np.int64) << 32) | (launch + 1)
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        fitted = np.where(launch >= 0, counts[inverse], 1)
        return np.maximum(self._priors.plane_mates[obj] + 1 - fitted, 0)[:n]

    def _records(self, scores, fit, keep, trk, obj, n_trk, only=None) -> list[Correlation]:
        """One record per tracklet from its candidates' ``scores`` (``only``: of the
        tracklets where true, ``None`` for the others)."""
        model = self.error_model
        order = np.lexsort((obj, -scores.score, trk))  # by tracklet, best first
        starts = np.searchsorted(trk[order], np.arange(n_trk + 1))
        # every number the records need, as Python lists in candidate order (one
        # conversion for the batch instead of one per field and candidate)
        row = keep[order]
        score_sorted = scores.score[order]
        norad = np.asarray(self.catalogue.norad_id)[obj[order]].tolist()
        score = score_sorted.tolist()
        rms = fit.rms_arcsec[row].tolist()
        tau = fit.tau_s[row].tolist()
        along = fit.along_track_km[row].tolist()
        across = fit.cross_track_km[row].tolist()
        cross_arcsec = fit.cross_track_arcsec[row].tolist()
        has = starts[1:] > starts[:-1]
        top = row[np.minimum(starts[:-1], row.size - 1)]
        fit_p = np.where(has, chi2_sf_even(fit.chi2[top], 2 * fit.n_obs[top]), 1.0).tolist()
        unlisted = scores.unlisted.tolist()
        lost = (np.zeros(n_trk) if scores.lost is None else scores.lost).tolist()
        out = []
        for t in range(n_trk):
            lo, hi = int(starts[t]), int(starts[t + 1])
            if only is not None and not only[t]:
                out.append(None)
                continue
            if hi == lo:
                out.append(_nothing_in_gate(unlisted[t]))
                continue
            candidates = [
                Candidate(
                    norad_id=norad[c], score=score[c], rms_arcsec=rms[c], time_offset_s=tau[c],
                    along_track_km=along[c], cross_track_km=across[c],
                )
                for c in range(lo, min(hi, lo + N_CANDIDATES))
            ]  # fmt: skip
            status = decide(model, score_sorted[lo:hi])
            p_unlisted = unlisted[t]
            out.append(
                Correlation(
                    status=status,
                    norad_id=candidates[0].norad_id if status == "correlated" else None,
                    score=score[lo],
                    rms_arcsec=rms[lo],
                    time_offset_s=tau[lo],
                    cross_track_arcsec=cross_arcsec[lo],
                    candidates=candidates,
                    reason=_reason(status, candidates, p_unlisted, fit_p[t], model, lost[t]),
                    p_unlisted=p_unlisted,
                )
            )
        return out

    # ------------------------------------------------------------------ Dask
    def run_distributed(
        self,
        tracklets: Sequence[Tracklet],
        client,
        *,
        progress: bool = False,
        joint: bool = True,
    ) -> list[Correlation]:
        """Correlate on a Dask cluster; the same results as calling the correlator locally.

        Tracklets are cut into the same time-ordered chunks as a local run and every chunk
        is computed the same way, so the results are identical, bit for bit.

        The cube blocks are built first, spread over the workers, into ``cube_dir`` (a
        temporary folder if none was given: the workers must see the same filesystem);
        then chunks of tracklets, in time order so each worker reads few blocks, are
        correlated on the workers.
        """
        from dask.distributed import as_completed

        if self.cube_dir is None:
            self._set_cube_dir(tempfile.mkdtemp(prefix="aposos-cube-"))
        tracklets = list(tracklets)
        results: list[Correlation | None] = [None] * len(tracklets)
        chunks = [chunk for chunk, _ in self._time_ordered_chunks(tracklets, results)]
        good = [i for chunk in chunks for i in chunk]
        remote = client.scatter(self, broadcast=True)
        needed = self.blocks_needed([tracklets[i] for i in good])
        block_tasks = [client.submit(_ensure_blocks, remote, [blk], pure=False) for blk in needed]
        for future in as_completed(block_tasks):
            future.result()
        futures = {
            client.submit(
                _correlate_chunk, remote, [tracklets[i] for i in chunk], pure=False
            ): chunk
            for chunk in chunks
        }
        done = ((futures[future], future.result()) for future in as_completed(futures))
        results, untempered = _unpaired(_collect(results, done, len(good), progress))
        return self.joint(tracklets, results, untempered) if joint else results

    def _set_cube_dir(self, cube_dir) -> None:
        self.cube_dir = cube_dir
        for _, eph in self._groups:
            eph.cube_dir = None if cube_dir is None else Path(cube_dir)


def fit_worthy(pair_trk, score, rank, n_tracklets: int) -> np.ndarray:
    """Which ranked gate pairs go on to the fit (see ``N_FIT``, ``N_FIT_MIN``,
    ``RANK_GAP``); pairs are by tracklet, best first, as ``_gate_ranked`` gives them."""
    best = np.full(n_tracklets, np.inf)
    first = rank == 0
    best[pair_trk[first]] = score[first]
    near = score <= best[pair_trk] + RANK_GAP
    return np.isfinite(score) & (rank < N_FIT) & ((rank < N_FIT_MIN) | near)


def _collect(results: list, done, total: int, progress: bool) -> list:
    """Put each finished chunk's correlations in place (``done`` yields ``(indices,
    correlations)``), with a progress bar over ``total`` tracklets when asked."""
    bar = None
    if progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="correlate", unit="tracklet")
    try:
        for chunk, out in done:
            for i, corr in zip(chunk, out, strict=True):
                results[i] = corr
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return results


def _nothing_in_gate(p_unlisted: float = 1.0) -> Correlation:
    return Correlation(
        status="uncorrelated",
        score=0.0,
        p_unlisted=p_unlisted,
        reason="not in the catalogue: no catalogued object passes the gate",
    )


def _describe(c: Candidate) -> str:
    return (
        f"{c.norad_id} (p {c.score:.3g}; {c.time_offset_s:+.1f} s = "
        f"{c.along_track_km:+.1f} km along track, {c.cross_track_km:+.1f} km across)"
    )


def _reason(status, candidates, p_unlisted, fit_p, model, p_lost=0.0) -> str:
    """Which hypothesis won and the runner-up, in words and physical units (``p_lost``:
    a catalogued object whose element set is lost, said when it outweighs the best)."""
    best = candidates[0]
    runner = candidates[1] if len(candidates) > 1 else None
    if status == "correlated":
        text = f"correlated with {_describe(best)}"
        if runner is not None and runner.score >= p_unlisted:
            text += f"; runner-up {runner.norad_id} (p {runner.score:.3g})"
        else:
            text += f"; runner-up: not in the catalogue (p {p_unlisted:.3g})"
    elif status == "ambiguous":
        named = [c for c in candidates if c.score >= model.tie_min_score]
        text = "ambiguous between " + ", ".join(f"{c.norad_id} (p {c.score:.3g})" for c in named)
        text += f"; not in the catalogue p {p_unlisted:.3g}"
    elif p_lost >= max(best.score, p_unlisted):
        text = (
            f"{LOST_WORDS} (p {p_lost:.3g}); not in the catalogue p {p_unlisted:.3g}; "
            f"nearest {_describe(best)}"
        )
    elif p_unlisted >= best.score:
        text = f"not in the catalogue (p {p_unlisted:.3g}); nearest {_describe(best)}"
    else:
        text = (
            f"no candidate reaches p {model.min_score:g}: best {_describe(best)}; "
            f"not in the catalogue p {p_unlisted:.3g}"
        )
    if fit_p < model.p_min:
        text += f"; the best fit is poor (chi-square p {fit_p:.2g})"
    return text


def _ensure_blocks(correlator: SGP4Correlator, blocks) -> int:
    correlator.ensure_blocks(blocks)
    return len(blocks)


def _correlate_chunk(correlator: SGP4Correlator, tracklets) -> list:
    return _paired(correlator.correlate_single(tracklets))


def _paired(results_untempered: tuple[list, list]) -> list[tuple[Correlation, Correlation]]:
    return list(zip(*results_untempered, strict=True))


def _unpaired(items: list) -> tuple[list[Correlation], list[Correlation]]:
    """The results and the untempered ones from ``(result, untempered)`` pairs (a record
    refused before the fit stands for both)."""
    pairs = [item if isinstance(item, tuple) else (item, item) for item in items]
    return [a for a, _ in pairs], [b for _, b in pairs]
