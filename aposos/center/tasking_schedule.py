"""The network scheduler: who observes what, when, on one night.

A greedy, event-driven scheduler over all stations at once. Each station has a clock
(the end of its last task); the station whose clock is earliest picks its next task,
so every choice knows what the network has already planned before it. A choice:

1. candidates are what the station can observe from its clock on, through the whole
   task (slew and settle, then the frames): catalogue objects (rate tracking; GEO
   objects as stare fields that also take in their neighbours), field targets
   (uncorrelated-track follow-ups, analyst fields, GEO-belt survey cells) and, in the
   network plan, multi-object fields: sidereal fields placed on the path of a
   low-orbit object not yet observed, worth the objects that cross them during the
   frames (at least two new ones; :mod:`aposos.center.tasking_fields` says when an
   object counts as observed);
2. the score is ``1000 x priority`` plus a value per catalogue object newly observed
   tonight (more when no other station can see the object for the rest of the
   night, more when this station is about to lose it), minus the slew time;
3. the best candidate becomes a task; the objects it observes count as covered (for
   rate-tracked and multi-object fields, counted at the exposures: every low-orbit
   object in the field long enough and bright enough, trailing loss included); an
   object being observed by one station is not given to another at the same time
   (unless a request asks for simultaneous observations). After a rate-tracked task
   the mount points where the target is at the task's end.

Simultaneous requests are placed first, on every station that sees the target at the
earliest common moment of the request's window; the greedy pass plans around them,
as it plans around tasks kept from an earlier version of the plan (executed, or
already under way).

``network=False`` gives the baseline the benchmark compares against: each station
planned on its own by the same greedy rule, knowing nothing of the others, one target
per pointing (``multi=True`` adds the multi-object fields to it); its tasks' objects
are counted exactly as the network plan's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aposos.center.tasking_fields import TrackCache, exposure_offsets_s, members
from aposos.center.tasking_visibility import StationNight, _unit, _unit1

__all__ = ["FieldTarget", "Planned", "RowPriorities", "schedule"]

SECOND = np.timedelta64(1, "s")
ONE_US = np.timedelta64(1, "us")
US_PER_S = 1e6
BASE_PRIORITY = 100  # catalogue upkeep and the GEO-belt survey
SURVEY_PRIORITY = 50  # empty GEO-belt cells, when nothing else is left
VALUE_NEW_OBJECT = 300.0
VALUE_LAST_CHANCE = 200.0  # no other station can see it for the rest of the night
VALUE_SCARCE = 600.0  # an object with little visibility left tonight
SCARCE_MINUTES = 20.0
SLEW_PENALTY_PER_S = 2.0
MAX_IDLE_STEPS = 1  # grid steps a station waits when it has nothing to do
FIELD_STEP_S = 0.5  # exact directions for multi-object fields, this often
FIELD_MAX_SLEW_S = 40.0  # multi-object fields further away are not considered
FIELD_ANCHORS = tuple(np.linspace(0.02, 0.98, 15))
FIELD_MIN_NEW = 2  # a sidereal field must take in this many objects not yet observed


@dataclass
class FieldTarget:
    """A target that is a direction, not a catalogue object.

    The pointing at time ``t`` is ``(ra, dec) + rate * (t - epoch)`` (rates in arcsec/s
    of RA and of Dec), valid from ``valid_from`` to ``valid_until``.
    """

    key: str
    priority: int
    reason: str
    ra_deg: float
    dec_deg: float
    epoch: np.datetime64
    tracking: str  # sidereal | rate | stare
    rate_ra_arcsec_s: float = 0.0
    rate_dec_arcsec_s: float = 0.0
    valid_from: np.datetime64 | None = None
    valid_until: np.datetime64 | None = None
    name: str | None = None
    simultaneous: bool = False
    request_id: int | None = None

    def radec(self, t: np.datetime64) -> tuple[float, float]:
        dt = (t - self.epoch) / SECOND
        ra = (self.ra_deg + self.rate_ra_arcsec_s * dt / 3600.0) % 360.0
        dec = max(-90.0, min(90.0, self.dec_deg + self.rate_dec_arcsec_s * dt / 3600.0))
        return ra, dec

    def valid(self, t0: np.datetime64, t1: np.datetime64) -> bool:
        return (self.valid_from is None or t0 >= self.valid_from) and (
            self.valid_until is None or t1 <= self.valid_until
        )


@dataclass
class RowPriorities:
    """Catalogue objects that need a dedicated observation, with priority and window."""

    priority: np.ndarray  # (n_obj,) int, BASE_PRIORITY for plain upkeep
    reason: list  # (n_obj,) str or None
    window_start: np.ndarray  # (n_obj,) datetime64[us], NaT: none
    window_end: np.ndarray
    simultaneous: np.ndarray  # (n_obj,) bool
    request_id: np.ndarray  # (n_obj,) int, -1 none

    @classmethod
    def plain(cls, n_obj: int) -> RowPriorities:
        nat = np.full(n_obj, np.datetime64("NaT"), dtype="datetime64[us]")
        return cls(
            np.full(n_obj, BASE_PRIORITY, dtype=np.int64), [None] * n_obj, nat, nat.copy(),
            np.zeros(n_obj, bool), np.full(n_obj, -1, np.int64),
        )  # fmt: skip

    def set(self, row, priority, reason, start=None, end=None, simultaneous=False, request=-1):
        """Raise a row's priority; a request on a row already higher keeps the higher
        priority but brings its window, its ``simultaneous`` wish and its id."""
        if priority <= self.priority[row]:
            if request >= 0 and self.priority[row] > BASE_PRIORITY:
                self.reason[row] = f"{self.reason[row]}; {reason}"
                self.window_start[row] = np.datetime64("NaT") if start is None else start
                self.window_end[row] = np.datetime64("NaT") if end is None else end
                self.simultaneous[row] |= simultaneous
                self.request_id[row] = request
            return
        self.priority[row] = priority
        self.reason[row] = reason
        self.window_start[row] = np.datetime64("NaT") if start is None else start
        self.window_end[row] = np.datetime64("NaT") if end is None else end
        self.simultaneous[row] = simultaneous
        self.request_id[row] = request


@dataclass
class Planned:
    """One planned pointing (before exact pointing and wire form)."""

    station: str
    start: np.datetime64
    end: np.datetime64
    tracking: str
    priority: int
    reason: str
    row: int | None = None  # catalogue row of the target object
    target: FieldTarget | None = None
    ra_deg: float = float("nan")
    dec_deg: float = float("nan")
    covers: list = field(default_factory=list)  # catalogue rows observed
    kept: bool = False  # carried over from an earlier plan
    task_id: str | None = None
    request_id: int | None = None


def _seconds(td) -> float:
    return float(td / np.timedelta64(1, "us")) / US_PER_S


def _us(seconds: float) -> np.timedelta64:
    return np.timedelta64(int(round(seconds * US_PER_S)), "us")


def _angle_deg(ra0, dec0, ra1, dec1) -> np.ndarray:
    u0, u1 = _unit(ra0, dec0), _unit(ra1, dec1)
    return np.degrees(np.arccos(np.clip(np.sum(u0 * u1, -1), -1.0, 1.0)))


def _angle1_deg(ra0: float, dec0: float, ra1: float, dec1: float) -> float:
    """:func:`_angle_deg` of one pair of directions, in plain floats."""
    x0, y0, z0 = _unit1(ra0, dec0)
    x1, y1, z1 = _unit1(ra1, dec1)
    return math.degrees(math.acos(max(-1.0, min(1.0, x0 * x1 + y0 * y1 + z0 * z1))))


class _FieldVisibility:
    """Elevation and Moon test of field targets on each station's grid."""

    def __init__(self, nights: dict[str, StationNight]):
        from aposos.model import datetime64_to_jd_fr
        from aposos.orbit import frames

        self.up = {}
        for code, night in nights.items():
            jd, fr = datetime64_to_jd_fr(night.times)
            m = frames.gcrs_to_itrs_matrices(jd, fr)  # (n_t, 3, 3)
            site = night.station.site
            lat, lon = math.radians(site.latitude_deg), math.radians(site.longitude_deg)
            zen = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon),
                            math.sin(lat)])  # fmt: skip
            self.up[code] = np.einsum("tij,i->tj", m, zen)  # zenith in GCRS per sample

    def ok(self, night: StationNight, ra, dec, k) -> bool:
        x, y, z = _unit1(float(ra), float(dec))
        up = self.up[night.station.code][k]
        el = math.degrees(math.asin(max(-1.0, min(1.0, x * up[0] + y * up[1] + z * up[2]))))
        if el < night.station.min_elevation_deg:
            return False
        return bool(night.moon_ok(ra, dec, k))


def schedule(
    nights: dict[str, StationNight],
    catalogue,
    *,
    rows: RowPriorities | None = None,
    fields: list[FieldTarget] = (),
    survey_cells: dict[str, list[FieldTarget]] | None = None,
    kept: list[Planned] = (),
    covered: set[int] = frozenset(),
    now: np.datetime64 | None = None,
    network: bool = True,
    multi: bool | None = None,
) -> list[Planned]:
    """Plan the night (see the module notes); returns the new tasks, kept ones excluded.

    ``multi`` (default: as ``network``) lets the planner choose sidereal fields that take
    in several objects at once; every object task's catalogue rows are counted exactly
    either way (:mod:`aposos.center.tasking_fields`).
    """
    return _Scheduler(nights, catalogue, rows, fields, survey_cells, kept, covered, now,
                      network, network if multi is None else multi).run()  # fmt: skip


class _Scheduler:
    def __init__(self, nights, catalogue, rows, fields, survey_cells, kept, covered, now, network,
                 multi=False):  # fmt: skip
        self.nights = {c: n for c, n in nights.items() if n.rows.size or n.times.size > 1}
        self.codes = sorted(self.nights)
        self.catalogue = catalogue
        n_obj = len(catalogue)
        self.rows = rows or RowPriorities.plain(n_obj)
        self.fields = list(fields)
        self.survey = survey_cells or {}
        self.network = network
        self.multi = multi
        self.params = catalogue.params
        self.geo = np.asarray(catalogue.orbit_class) == "GEO"
        self.leo = np.asarray(catalogue.orbit_class) == "LEO"
        self.track_cache = {c: TrackCache(n, self.params, self.leo) for c, n in self.nights.items()}
        self.fieldvis = _FieldVisibility(self.nights) if (self.fields or self.survey) else None
        # coverage: network-wide, or per station in the baseline
        self.covered = {c: set(covered) for c in self.codes} if not network else None
        self.net_covered = np.zeros(n_obj, bool)
        self.net_covered[list(covered)] = True
        self.st_covered = {c: self.net_covered.copy() for c in self.codes}
        self.need_done = np.zeros(n_obj, bool)  # dedicated observation made
        self.field_done: set[str] = set()
        self.survey_count: dict[str, int] = {}
        self.busy_until = np.full(n_obj, np.datetime64("NaT"), dtype="datetime64[us]")
        self.busy_station = np.full(n_obj, "", dtype=object)
        # how many stations see each object tonight; samples left at each station
        self.n_stations = np.zeros(n_obj, np.int64)
        self.remaining = {}
        for c, night in self.nights.items():
            seen = night.visible.any(axis=1)
            self.n_stations[night.rows[seen]] += 1
            self.remaining[c] = np.cumsum(night.visible[:, ::-1], axis=1, dtype=np.int32)[:, ::-1]
        self.blocks = {c: [] for c in self.codes}  # reserved (start, end, Planned)
        self.out: list[Planned] = []
        start = {c: n.start for c, n in self.nights.items()}
        if now is not None:
            start = {c: max(t, np.datetime64(now, "us")) for c, t in start.items()}
        self.clock = start
        self.pointing = {c: None for c in self.codes}
        for task in kept:
            if task.station in self.blocks:
                self.blocks[task.station].append((task.start - _us(60), task.end, task))
            self._mark(task, count_need=True)

    # ------------------------------------------------------------------ bookkeeping

    def _mark(self, task: Planned, count_need: bool = True) -> None:
        for r in task.covers:
            self.net_covered[r] = True
            if task.station in self.st_covered:
                self.st_covered[task.station][r] = True
            if self.busy_until[r] != self.busy_until[r] or task.end > self.busy_until[r]:
                self.busy_until[r] = task.end
                self.busy_station[r] = task.station
        if task.row is not None and count_need:
            self.need_done[task.row] = True
        if task.target is not None:
            self.field_done.add(task.target.key)
            self.survey_count[task.target.key] = self.survey_count.get(task.target.key, 0) + 1

    def _covered_view(self, code) -> np.ndarray:
        return self.net_covered if self.network else self.st_covered[code]

    # ------------------------------------------------------------------ main loop

    def run(self) -> list[Planned]:
        self._place_simultaneous()
        for c in self.codes:
            self.blocks[c].sort(key=lambda b: b[0])
        active = set(self.codes)
        while active:
            code = min(active, key=lambda c: self.clock[c])
            night = self.nights[code]
            t = self.clock[code]
            block = self._block_at(code, t)
            if block is not None:
                self.clock[code] = max(t, block[1])
                self.pointing[code] = (block[2].ra_deg, block[2].dec_deg)
                continue
            if t >= night.end:
                active.discard(code)
                continue
            limit = self._next_block_start(code, t, night.end)
            task = self._best(code, night, t, limit)
            if task is None:
                self.clock[code] = t + _us(night.step_s * MAX_IDLE_STEPS)
                continue
            end_pointing = self._exact_covers(night, task)
            self.out.append(task)
            self._mark(task)
            self.clock[code] = task.end
            self.pointing[code] = end_pointing
        return sorted(self.out, key=lambda p: (p.start, p.station))

    def _block_at(self, code, t):
        for b in self.blocks[code]:
            if b[0] <= t < b[1]:
                return b
        return None

    def _next_block_start(self, code, t, end):
        for b in self.blocks[code]:
            if b[0] > t:
                return min(b[0], end)
        return end

    # ------------------------------------------------------------------ choices

    def _slew_s(self, code, ra, dec) -> np.ndarray:
        st = self.nights[code].station
        if self.pointing[code] is None:
            return np.full(np.shape(ra), st.settle_s + 30.0 / st.slew_deg_per_s)
        if np.ndim(ra) == 0:  # one target (fields): plain floats, no arrays
            ang = _angle1_deg(*self.pointing[code], float(ra), float(dec))
            return np.float64(ang / st.slew_deg_per_s + st.settle_s)
        ang = _angle_deg(self.pointing[code][0], self.pointing[code][1], ra, dec)
        return ang / st.slew_deg_per_s + st.settle_s

    def _best(self, code, night: StationNight, t, limit) -> Planned | None:
        best = None
        for cand in (
            self._best_field(code, night, t, limit),
            self._best_object(code, night, t, limit),
            self._best_multi(code, night, t, limit) if self.multi else None,
        ):
            if cand is not None and (best is None or cand[0] > best[0]):
                best = cand
        return None if best is None else best[1]

    def _window(self, night, t, slew_s, mode):
        setup = night.station.modes[mode]
        start = t + _us(slew_s)
        end = start + _us(setup.duration_s)
        return start, end

    def _object_values(self, code, night, cand_rows, k) -> np.ndarray:
        """Value of newly covering each catalogue row (0 when already covered).

        Scarce objects first: the fewer minutes of visibility an object has left
        tonight (at this station, and in the network plan at every station), the more
        it is worth now; an object no other station can see any more is worth more.
        """
        covered = self._covered_view(code)[cand_rows]
        idx = night.row_of[cand_rows]
        left = self.remaining[code][idx, k].astype(np.float64)
        others = np.zeros(cand_rows.size)
        if self.network:
            for c2, n2 in self.nights.items():
                if c2 == code:
                    continue
                k2 = n2.index_at(night.times[k])
                j = n2.row_of[cand_rows]
                seen = j >= 0
                others[seen] += self.remaining[c2][j[seen], min(k2 + 1, n2.times.size - 1)]
        value = VALUE_NEW_OBJECT + VALUE_SCARCE * np.exp(-(left + others) / SCARCE_MINUTES)
        value += np.where(others > 0, 0.0, VALUE_LAST_CHANCE) if self.network else 0.0
        value = np.where(covered, 0.0, value)
        return value

    def _best_object(self, code, night: StationNight, t, limit):
        k0 = night.index_at(t)
        rows = night.rows
        vis0 = night.visible[:, k0]
        if not vis0.any():
            return None
        idx = np.flatnonzero(vis0)
        g = rows[idx]
        ra, dec = night.ra_deg[idx, k0].astype(float), night.dec_deg[idx, k0].astype(float)
        slew = self._slew_s(code, ra, dec)
        geo = self.geo[g]
        dur = np.where(geo, night.station.modes["stare"].duration_s,
                       night.station.modes["rate"].duration_s)  # fmt: skip
        start_s = slew
        end_s = slew + dur
        t_end = t + ONE_US * np.round(end_s * US_PER_S).astype(np.int64)
        ok = t_end <= limit
        step_us = int(round(night.step_s * US_PER_S))
        k1 = ((t_end - night.times[0]) // np.timedelta64(step_us, "us")).astype(np.int64)
        k1 = np.clip(k1 + 1, 0, night.times.size - 1)
        ok &= night.visible[idx, k1]
        if night.times.size > 1:
            kmid = np.minimum(k0 + 1, night.times.size - 1)
            ok &= night.visible[idx, kmid] | (k1 == k0)
        # not while another station observes it (unless simultaneous is asked)
        if self.network:
            busy = (self.busy_until[g] > t) & (self.busy_station[g] != code)
            ok &= ~busy | self.rows.simultaneous[g]
        if not ok.any():
            return None
        idx, g, ra, dec, slew, geo, start_s, end_s = (
            a[ok] for a in (idx, g, ra, dec, slew, geo, start_s, end_s)
        )
        value = self._object_values(code, night, g, k0)
        # priorities: dedicated observations asked for, within their windows
        pri = self.rows.priority[g].copy()
        ws, we = self.rows.window_start[g], self.rows.window_end[g]
        t_start = t + ONE_US * np.round(start_s * US_PER_S).astype(np.int64)
        t_stop = t + ONE_US * np.round(end_s * US_PER_S).astype(np.int64)
        in_window = (np.isnat(ws) | (t_start >= ws)) & (np.isnat(we) | (t_stop <= we))
        wanted = (pri > BASE_PRIORITY) & in_window & ~self.need_done[g]
        pri = np.where(wanted, pri, BASE_PRIORITY)
        # GEO objects: a stare field centred on each also takes in its neighbours
        field_of = np.full(value.size, -1)  # row of ``inside`` for a GEO candidate
        if geo.any():
            gi = np.flatnonzero(geo)
            allgeo = np.flatnonzero(vis0 & self.geo[rows])
            u_all = _unit(night.ra_deg[allgeo, k0], night.dec_deg[allgeo, k0])
            u_c = _unit(ra[gi], dec[gi])
            inside = (u_c @ u_all.T) > math.cos(math.radians(0.45 * night.station.field_deg))
            all_rows = rows[allgeo]
            all_value = self._object_values(code, night, all_rows, k0)
            value[gi] = np.where(inside, all_value, 0.0).sum(1)
            field_of[gi] = np.arange(gi.size)
        score = pri * 1000.0 + value - SLEW_PENALTY_PER_S * slew
        score = np.where((value <= 0) & ~wanted, -np.inf, score)
        j = int(np.argmax(score))
        if not np.isfinite(score[j]):
            return None
        row = int(g[j])
        tracking = "stare" if geo[j] else "rate"
        start = t + _us(float(start_s[j]))
        end = t + _us(float(end_s[j]))
        f = int(field_of[j])
        covers = [int(x) for x in all_rows[inside[f]]] if f >= 0 else [row]
        if row not in covers:
            covers.append(row)
        if wanted[j]:
            reason = self.rows.reason[row]
            priority = int(pri[j])
        elif geo[j]:
            n_more = len(covers) - 1
            reason = "GEO-belt survey" + (
                f": {n_more} more catalogued object(s) in the field" if n_more else ""
            )
            priority = BASE_PRIORITY
        else:
            reason = "catalogue upkeep: not yet observed tonight"
            if self.network and self.n_stations[row] == 1:
                reason += " (only this station can see it)"
            priority = BASE_PRIORITY
        task = Planned(
            code, start, end, tracking, priority, reason, row=row,
            ra_deg=float(ra[j]), dec_deg=float(dec[j]), covers=covers,
            request_id=int(self.rows.request_id[row]) if wanted[j] and self.rows.request_id[row] >= 0 else None,
        )  # fmt: skip
        return float(score[j]), task

    def _best_field(self, code, night: StationNight, t, limit):
        best = None
        for target in self.fields:
            if target.key in self.field_done:
                continue
            cand = self._field_task(code, night, t, limit, target, target.priority)
            if cand is not None and (best is None or cand[0] > best[0]):
                best = cand
        if best is None and code in self.survey:
            # the GEO-belt survey fills what is left: the least surveyed cell in reach
            cells = sorted(self.survey[code], key=lambda c: self.survey_count.get(c.key, 0))
            for cell in cells:
                cand = self._field_task(code, night, t, limit, cell, SURVEY_PRIORITY)
                if cand is not None:
                    best = (cand[0] - 1000.0 * self.survey_count.get(cell.key, 0), cand[1])
                    break
        return best

    def _field_task(self, code, night, t, limit, target: FieldTarget, priority):
        ra0, dec0 = target.radec(t)
        slew = float(self._slew_s(code, np.array(ra0), np.array(dec0)))
        start, end = self._window(night, t, slew, target.tracking)
        if end > limit or not target.valid(start, end):
            return None
        for x in (start, end):
            k = night.index_at(x)
            ra, dec = target.radec(x)
            if not self.fieldvis.ok(night, ra, dec, k):
                return None
        ra, dec = target.radec(start)
        task = Planned(
            code, start, end, target.tracking, int(priority), target.reason, target=target,
            ra_deg=ra, dec_deg=dec, request_id=target.request_id,
        )  # fmt: skip
        return priority * 1000.0 - SLEW_PENALTY_PER_S * slew, task

    # ------------------------------------------------------------------ multi-object fields

    def _passing_rows(self, night, k0) -> np.ndarray:
        """Low-orbit catalogue rows the station can observe around sample ``k0``."""
        k1 = min(k0 + 1, night.times.size - 1)
        near = night.visible[:, k0] | night.visible[:, k1]
        return night.rows[near & self.leo[night.rows]]

    def _best_multi(self, code, night: StationNight, t, limit):
        """The best sidereal field on the path of an object not yet observed, counting
        every object that crosses it during the frames (at least FIELD_MIN_NEW new)."""
        st = night.station
        k0 = night.index_at(t)
        rows_b = self._passing_rows(night, k0)
        if rows_b.size < FIELD_MIN_NEW:
            return None
        value_b = self._object_values(code, night, rows_b, k0)
        if np.count_nonzero(value_b > 0) < FIELD_MIN_NEW:
            return None
        setup = st.modes["sidereal"]
        n_s = int((FIELD_MAX_SLEW_S + setup.duration_s) / FIELD_STEP_S) + 2
        times = t + np.arange(n_s) * _us(FIELD_STEP_S)
        rows_b = rows_b[value_b > 0]
        value_b = value_b[value_b > 0]
        tracks = self.track_cache[code].tracks(rows_b, times, ~self._covered_view(code))
        cand = np.flatnonzero(value_b > 0)
        if cand.size == 0:
            return None
        # the field: where the object is early, midway or late in the frames; the slew to it
        anchor = np.repeat(FIELD_ANCHORS, cand.size) * setup.duration_s
        cand = np.tile(cand, len(FIELD_ANCHORS))
        s_used = np.full(cand.size, st.settle_s + 5.0)
        for _ in range(2):
            i_mid = np.clip(np.round((s_used + anchor) / FIELD_STEP_S), 0, n_s - 1)
            centre = tracks.u[cand, i_mid.astype(np.int64)]
            slew = self._slew_u(code, centre)
            s_prev, s_used = s_used, slew
        s_used = s_prev
        good = np.isfinite(centre[:, 0]) & (slew <= FIELD_MAX_SLEW_S)
        i_start = np.ceil(np.maximum(slew, 0.0) / FIELD_STEP_S).astype(np.int64)
        offsets = np.round(exposure_offsets_s(setup) / FIELD_STEP_S).astype(np.int64)
        good &= i_start + offsets[-1, -1] < n_s
        if not good.any():
            return None
        cand, centre, slew, i_start = cand[good], centre[good], slew[good], i_start[good]
        tidx = i_start[:, None, None] + offsets[None]
        centres = np.broadcast_to(centre[:, None, None, :], (*tidx.shape, 3))
        mem = members(tracks, centres, tidx, st, "sidereal")
        n_new = (mem & (value_b > 0)[None, :]).sum(axis=1)
        score = (
            BASE_PRIORITY * 1000.0 + mem.astype(np.float64) @ value_b - SLEW_PENALTY_PER_S * slew
        )
        score = np.where(n_new >= FIELD_MIN_NEW, score, -np.inf)
        for j in np.argsort(-score)[:5]:
            if not np.isfinite(score[j]):
                return None
            start = times[i_start[j]]
            end = start + _us(setup.duration_s)
            if end > limit:
                continue
            ra = math.degrees(math.atan2(centre[j, 1], centre[j, 0])) % 360.0
            dec = math.degrees(math.asin(max(-1.0, min(1.0, centre[j, 2]))))
            if not all(self.fieldvis_ok(night, ra, dec, night.index_at(x)) for x in (start, end)):
                continue
            stamp = np.datetime_as_string(start, unit="s")
            target = FieldTarget(
                key=f"multi:{code}:{stamp}", priority=BASE_PRIORITY,
                reason="multi-object field", ra_deg=ra, dec_deg=dec, epoch=start,
                tracking="sidereal", name=f"field {ra:.2f} {dec:+.2f}",
            )  # fmt: skip
            covers = [int(r) for r in rows_b[mem[j]]]
            task = Planned(code, start, end, "sidereal", BASE_PRIORITY,
                           f"multi-object field: {len(covers)} catalogued object(s) cross it",
                           target=target, ra_deg=ra, dec_deg=dec, covers=covers)  # fmt: skip
            return float(score[j]), task
        return None

    def fieldvis_ok(self, night, ra, dec, k) -> bool:
        if self.fieldvis is None:
            self.fieldvis = _FieldVisibility(self.nights)
        return self.fieldvis.ok(night, ra, dec, k)

    def _slew_u(self, code, u) -> np.ndarray:
        st = self.nights[code].station
        if self.pointing[code] is None:
            return np.full(u.shape[0], st.settle_s + 30.0 / st.slew_deg_per_s)
        p = _unit(*self.pointing[code])
        ang = np.degrees(np.arccos(np.clip(u @ p, -1.0, 1.0)))
        return np.where(np.isfinite(ang), ang / st.slew_deg_per_s + st.settle_s, np.inf)

    def _exact_covers(self, night, task: Planned):
        """Count exactly what a rate-tracked or sidereal task observes; the pointing after it.

        Objects other than GEO that cross the field during the frames are added to (or,
        for multi-object fields, make up) the task's rows; returns the mount's (RA, Dec)
        at the end of the task.
        """
        end_pointing = (task.ra_deg, task.dec_deg)
        if task.tracking not in ("rate", "sidereal") or (
            task.tracking == "sidereal" and not str(task.reason).startswith("multi")
        ):
            return end_pointing
        setup = night.station.modes[task.tracking]
        offsets = exposure_offsets_s(setup)
        times = task.start + np.array([_us(x) for x in offsets.ravel()])
        times = np.concatenate([times, [task.end]])
        rows_b = self._passing_rows(night, night.index_at(task.start))
        if task.row is not None and task.tracking == "rate":
            if not self.leo[task.row]:
                return end_pointing
            rows_b = np.concatenate([[task.row], rows_b[rows_b != task.row]])
        code = night.station.code
        if task.tracking == "rate":  # objects not yet observed, and the target itself
            keep = ~self._covered_view(code)[rows_b]
            keep[0] = True
            rows_b = rows_b[keep]
        else:
            rows_b = rows_b[~self._covered_view(code)[rows_b]]
        tracks = self.track_cache[code].tracks(rows_b, times, ~self._covered_view(code))
        tidx = np.arange(offsets.size).reshape(1, *offsets.shape)
        if task.tracking == "rate":
            if rows_b.size == 0 or rows_b[0] != task.row or not np.all(np.isfinite(tracks.u[0])):
                return end_pointing
            centres = tracks.u[0][tidx]
            u_end = tracks.u[0, -1]
            end_pointing = (math.degrees(math.atan2(u_end[1], u_end[0])) % 360.0,
                            math.degrees(math.asin(max(-1.0, min(1.0, u_end[2])))))  # fmt: skip
        else:
            c = _unit(task.ra_deg, task.dec_deg)
            centres = np.broadcast_to(c, (*tidx.shape, 3))
        mem = members(tracks, centres, tidx, night.station, task.tracking)[0]
        seen = [int(r) for r in rows_b[mem]]
        if task.tracking == "sidereal":
            task.covers = seen
            task.reason = f"multi-object field: {len(seen)} catalogued object(s) cross it"
        else:
            task.covers = list(dict.fromkeys([*task.covers, *seen]))
        return end_pointing

    # ------------------------------------------------------------------ simultaneous

    def _place_simultaneous(self) -> None:
        """Reserve, for each simultaneous request, the earliest moment two stations share."""
        wanted = np.flatnonzero(self.rows.simultaneous & (self.rows.priority > BASE_PRIORITY))
        for row in wanted:
            ws, we = self.rows.window_start[row], self.rows.window_end[row]
            seen = {}
            for code, night in self.nights.items():
                j = night.row_of[row]
                if j < 0:
                    continue
                ok = night.visible[j].copy()
                ok[:-1] &= night.visible[j, 1:]  # through the next sample too
                ok[-1] = False
                if not np.isnat(ws):
                    ok &= night.times >= ws
                if not np.isnat(we):
                    ok &= night.times + _us(120) <= we
                ok &= night.times >= self.clock[code]
                seen[code] = set(night.times[ok].tolist())
            if len(seen) < 2:
                continue
            counts: dict = {}
            for times in seen.values():
                for x in times:
                    counts[x] = counts.get(x, 0) + 1
            shared = sorted(x for x, n in counts.items() if n >= 2)
            if not shared:
                continue
            t0 = np.datetime64(shared[0], "us")
            mode = "stare" if self.geo[row] else "rate"
            for code, times in seen.items():
                if shared[0] not in times:
                    continue
                night = self.nights[code]
                k = night.index_at(t0)
                end = t0 + _us(night.station.modes[mode].duration_s)
                task = Planned(
                    code, t0, end, mode, int(self.rows.priority[row]),
                    (self.rows.reason[row] or "analyst request") + " (simultaneous)",
                    row=int(row), ra_deg=float(night.ra_deg[night.row_of[row], k]),
                    dec_deg=float(night.dec_deg[night.row_of[row], k]), covers=[int(row)],
                    request_id=int(self.rows.request_id[row]) if self.rows.request_id[row] >= 0 else None,
                )  # fmt: skip
                self.blocks[code].append((t0 - _us(60), end, task))
                self.out.append(task)
                self._mark(task)
