"""Joint observation planning: the data center tasks the whole network each night.

>>> plan = plan_night(stations, catalogue, "2026-03-19")            # doctest: +SKIP
>>> plan.tasks[0].to_wire()["tracking"]                             # doctest: +SKIP
'stare'

The pieces, by duty:

- :mod:`aposos.center.tasking_stations` - what each station file says planning needs;
- :mod:`aposos.center.tasking_visibility` - dark hours, and which catalogue objects
  each station can observe when (sunlit, elevation, Moon, brightness);
- :mod:`aposos.center.tasking_priorities` - UCT follow-ups, suspects, stale element
  sets, analyst requests, GEO-belt survey cells;
- :mod:`aposos.center.tasking_schedule` - the network scheduler (and the per-station
  baseline);
- :mod:`aposos.center.tasking_fields` - which objects a pointing takes in during its
  frames (multi-object fields, objects crossing a rate-tracked field);
- :mod:`aposos.center.tasking_store` - plans, tasks, reports and requests in the
  center database; :func:`replan` here ties it all together.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np

from aposos.center.tasking_priorities import (
    geo_belt_cells,
    open_requests,
    request_targets,
    stale_rows,
    suspect_rows,
    uct_targets,
)
from aposos.center.tasking_schedule import FieldTarget, Planned, RowPriorities, schedule
from aposos.center.tasking_stations import StationPlanning, load_planning_stations
from aposos.center.tasking_visibility import StationNight, night_window, station_night
from aposos.model import Task, datetime64_to_jd_fr

__all__ = ["NightPlan", "parse_night", "plan_night", "replan", "task_id"]

log = logging.getLogger(__name__)
US = np.timedelta64(1, "us")


def parse_night(text) -> np.datetime64:
    """``YYYY-MM-DD`` (the date the night starts on, local evening) -> datetime64[D]."""
    try:
        day = np.datetime64(str(text).strip(), "D")
    except ValueError:
        raise ValueError(f"night {text!r} is not a date YYYY-MM-DD") from None
    if not np.datetime64("1990-01-01") <= day <= np.datetime64("2100-01-01"):
        raise ValueError(f"night {text!r} is outside 1990-2100")
    return day


def task_id(night: str, planned: Planned, norad_id: int | None) -> str:
    """A stable id: the same pointing in a re-made plan keeps its id."""
    what = f"n{norad_id}" if norad_id is not None else planned.target.key
    t = np.datetime_as_string(planned.start.astype("datetime64[s]"))
    digest = hashlib.sha256(f"{night}|{planned.station}|{t}|{what}".encode()).hexdigest()[:12]
    return f"{night.replace('-', '')}-{planned.station}-{digest}"


@dataclass
class NightPlan:
    """A night's plan: the tasks, and what went into it."""

    night: str
    tasks: list[Task]
    planned: list[Planned]
    nights: dict[str, StationNight]
    windows: dict[str, tuple[str, str] | None]
    observable: np.ndarray  # catalogue rows some station can observe tonight
    covered: set[int] = field(default_factory=set)
    counts: dict = field(default_factory=dict)

    def coverage(self) -> float:
        """Share of the observable catalogue objects observed by at least one task."""
        if self.observable.size == 0:
            return 0.0
        return len(self.covered & set(self.observable.tolist())) / self.observable.size

    def summary(self) -> dict:
        by_station = {}
        for t in self.tasks:
            by_station[t.station] = by_station.get(t.station, 0) + 1
        return {
            "night": self.night,
            "windows": self.windows,
            "tasks": len(self.tasks),
            "by_station": by_station,
            "observable_objects": int(self.observable.size),
            "observed_objects": len(self.covered),
            "coverage": round(self.coverage(), 4),
            **self.counts,
        }

    def to_wire(self) -> dict:
        return {**self.summary(), "tasks": [t.to_wire() for t in self.tasks]}


def station_nights(stations, catalogue, night, *, step_s: float = 60.0) -> dict:
    out = {}
    for st in stations:
        out[st.code] = station_night(st, catalogue, night_window(st, night), step_s=step_s)
    return out


def plan_night(
    stations: list[StationPlanning],
    catalogue,
    night,
    *,
    store=None,
    now=None,
    kept: list[Planned] = (),
    covered: set[int] = frozenset(),
    network: bool = True,
    multi: bool | None = None,
    nights: dict[str, StationNight] | None = None,
    step_s: float = 60.0,
    extra_fields: list[FieldTarget] = (),
) -> NightPlan:
    """Plan one night for the network (or, ``network=False``, each station on its own).

    Parameters
    ----------
    stations : the stations to task.
    catalogue : :class:`aposos.orbit.catalogue.Catalogue` for the night.
    night : the date the night starts on (``YYYY-MM-DD``).
    store : the center database, for UCTs, suspects and requests (None: catalogue only).
    now : plan only from this UTC time on (re-plans during the night).
    kept, covered : tasks kept from an earlier plan, and catalogue rows already observed.
    nights : precomputed station nights (the benchmark shares them between plans).
    multi : plan sidereal fields that take in several objects (default: as ``network``).
    """
    day = parse_night(night)
    name = str(day)
    if nights is None:
        nights = station_nights(stations, catalogue, day, step_s=step_s)
    windows = {
        c: None if n.rows.size == 0 and n.times.size <= 1 else
        (np.datetime_as_string(n.start, unit="s") + "Z", np.datetime_as_string(n.end, unit="s") + "Z")
        for c, n in nights.items()
    }  # fmt: skip
    starts = [n.start for n in nights.values() if n.times.size > 1]
    ends = [n.end for n in nights.values() if n.times.size > 1]
    rows = RowPriorities.plain(len(catalogue))
    fields = list(extra_fields)
    counts = {}
    if starts:
        first, last = min(starts), max(ends)
        counts["stale"] = stale_rows(rows, catalogue, first)
        if store is not None:
            recent = (first - np.timedelta64(48, "h")).tolist()
            upto = last.tolist() if now is None else min(last, np.datetime64(now, "us")).tolist()
            counts["suspects"] = suspect_rows(store, rows, catalogue, recent, upto)
            ucts = uct_targets(store, recent, upto, min(s.field_deg for s in stations))
            requests = open_requests(store, first.tolist(), last.tolist())
            fields += ucts + request_targets(requests, rows, catalogue)
            counts["uct_followups"] = len(ucts)
            counts["requests"] = len(requests)
    cells = {st.code: geo_belt_cells(st, nights[st.code].start) for st in stations
             if nights[st.code].times.size > 1}  # fmt: skip
    planned = schedule(nights, catalogue, rows=rows, fields=fields, survey_cells=cells,
                       kept=list(kept), covered=set(covered), now=now, network=network,
                       multi=multi)  # fmt: skip
    observable = np.unique(np.concatenate(
        [n.rows[n.visible.any(axis=1)] for n in nights.values()] or [np.zeros(0, np.int64)]
    ))  # fmt: skip
    all_covered = set(covered)
    for p in [*kept, *planned]:
        all_covered.update(p.covers)
    tasks = finalize(name, planned, catalogue, stations)
    return NightPlan(name, tasks, planned, nights, windows, observable, all_covered, counts)


def _object_directions(planned: list[Planned], catalogue, stations) -> dict[int, tuple]:
    """RA/Dec of each object task's target at its start and one second later, by station
    in one propagation (each object at its own two times)."""
    from aposos.orbit.frames import radec_from_teme
    from aposos.orbit.propagation import propagate_packed

    by_code = {s.code: s for s in stations}
    out = {}
    for code in {p.station for p in planned}:
        mine = [k for k, p in enumerate(planned) if p.station == code and p.row is not None]
        if not mine:
            continue
        rows = np.array([planned[k].row for k in mine], dtype=np.int64)
        starts = np.array([planned[k].start for k in mine], dtype="datetime64[us]")
        times = np.stack([starts, starts + np.timedelta64(1_000_000, "us")], axis=1)
        jd, fr = datetime64_to_jd_fr(times.ravel())
        _, r, v = propagate_packed(catalogue.params[rows], jd.reshape(-1, 2), fr.reshape(-1, 2))
        ra, dec, _ = radec_from_teme(r.reshape(1, -1, 3), v.reshape(1, -1, 3), jd, fr,
                                     by_code[code].site)  # fmt: skip
        ra, dec = ra.reshape(-1, 2), dec.reshape(-1, 2)
        for j, k in enumerate(mine):
            out[k] = (ra[j], dec[j])
    return out


def finalize(night: str, planned: list[Planned], catalogue, stations) -> list[Task]:
    """Exact pointing at each task's start (and rates for rate tracking); wire tasks."""
    by_code = {s.code: s for s in stations}
    directions = _object_directions(planned, catalogue, stations)
    tasks = []
    for k, p in enumerate(planned):
        st = by_code[p.station]
        setup = st.modes[p.tracking]
        norad = name = None
        rate_ra = rate_dec = None
        ra, dec = p.ra_deg, p.dec_deg
        if p.row is not None:
            norad = int(catalogue.norad_id[p.row])
            name = str(catalogue.name[p.row]).strip() or None
            r_ra, r_dec = directions[k]
            if np.all(np.isfinite(r_ra)):
                ra, dec = float(r_ra[0]), float(r_dec[0])
                if p.tracking == "rate":
                    d_ra = (r_ra[1] - r_ra[0] + 180.0) % 360.0 - 180.0
                    rate_ra, rate_dec = d_ra * 3600.0, (r_dec[1] - r_dec[0]) * 3600.0
        elif p.target is not None:
            ra, dec = p.target.radec(p.start)
            name = p.target.name
            if p.tracking == "rate":
                rate_ra, rate_dec = p.target.rate_ra_arcsec_s, p.target.rate_dec_arcsec_s
        p.ra_deg, p.dec_deg = ra, dec
        p.task_id = p.task_id or task_id(night, p, norad)
        tasks.append(Task(
            task_id=p.task_id, station=p.station, start=p.start, end=p.end,
            kind="object" if norad is not None else "field", norad_id=norad, name=name,
            ra_deg=ra, dec_deg=dec, tracking=p.tracking, rate_ra_arcsec_s=rate_ra,
            rate_dec_arcsec_s=rate_dec, exposure_s=setup.exposure_s, frames=setup.frames,
            priority=p.priority, reason=p.reason,
        ))  # fmt: skip
    return tasks


def replan(store, config, night, *, now=None, trigger: str = "command", catalogue=None,
           snapshot: dict | None = None) -> NightPlan:  # fmt: skip
    """Make (or re-make) the plan of ``night`` and store it.

    Tasks that were reported, or that start before ``now`` (already under way), are
    kept; everything later is planned again, around them. Objects observed by the
    executed or still-running tasks count as observed.
    """
    from aposos.center import tasking_store as TS

    day = parse_night(night)
    stations = load_planning_stations(config.stations_dir)
    if catalogue is None:
        catalogue, snapshot = TS.catalogue_for_night(store, day)
    now64 = None if now is None else np.datetime64(now, "us")
    kept_rows = TS.kept_tasks(store, str(day), now64)
    kept, covered = [], set()
    for row in kept_rows:
        p = TS.planned_from_row(row, catalogue)
        kept.append(p)
        if row["state"] in ("executed", "planned"):
            covered.update(p.covers)
    plan = plan_night(stations, catalogue, day, store=store, now=now64, kept=kept,
                      covered=covered)  # fmt: skip
    TS.save_plan(store, plan, now=now64, trigger=trigger, snapshot=snapshot, catalogue=catalogue)
    return plan
