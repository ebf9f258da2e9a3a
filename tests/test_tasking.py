"""Joint observation planning: the rules of a plan, checked against Skyfield.

The plan is made for the repository's three stations and the real CelesTrak catalogue
of 2020-09-30 on the night of 2020-10-01. Skyfield (with JPL DE421 from
``skyfield-data``) is the outside authority for the geometry: Sun altitude at the
station, the object's elevation, whether it is sunlit, and the Moon.
"""

from __future__ import annotations

import numpy as np
import pytest
from centerserver import CAT_0930, STATIONS, read_3le

from aposos.center.tasking import plan_night, replan, task_id
from aposos.center.tasking_schedule import RowPriorities, schedule
from aposos.center.tasking_stations import load_planning_stations
from aposos.orbit.catalogue import Catalogue

NIGHT = "2020-10-01"
ONE_ARCMIN_DEG = 1 / 60


@pytest.fixture(scope="module")
def stations():
    return load_planning_stations(STATIONS)


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.from_tle(CAT_0930)


@pytest.fixture(scope="module")
def plan(stations, catalogue):
    """The night's plan (about 20 s of CPU), kept in the on-disk test cache
    (tests/diskcache.py) under every aposos source file, the catalogue and station files
    and the computing packages' versions: made again when any of them changes."""
    import diskcache

    digest = diskcache.key(
        "tasking-plan",
        sources=[__file__, *diskcache.package_sources()],
        inputs=[CAT_0930, *sorted(STATIONS.glob("*.toml"))],
        packages=("numpy", "numba", "scipy", "sgp4", "astropy", "astropy-iers-data", "pyerfa"),
        args=(NIGHT,),
    )
    return diskcache.cached(digest, lambda: plan_night(stations, catalogue, NIGHT))


@pytest.fixture(scope="module")
def sky():
    import warnings

    from skyfield.api import Loader
    from skyfield_data import get_skyfield_data_path

    with warnings.catch_warnings():
        # skyfield-data warns that its own finals2000A.all has expired; unused here.
        warnings.filterwarnings("ignore", "The file finals2000A.all has expired")
        load = Loader(get_skyfield_data_path(), verbose=False)
    ephemeris = load("de421.bsp")
    yield load.timescale(builtin=True), ephemeris
    ephemeris.close()


def _skyfield_time(ts, t: np.datetime64):
    s = np.datetime_as_string(np.datetime64(t, "us"), unit="us")
    day, clock = s.split("T")
    y, m, d = (int(x) for x in day.split("-"))
    hh, mm, ss = clock.split(":")
    return ts.utc(y, m, d, int(hh), int(mm), float(ss))


def test_every_task_lies_in_dark_hours_of_its_station(plan, stations, sky):
    ts, eph = sky
    by_code = {s.code: s for s in stations}
    from skyfield.api import wgs84

    assert plan.tasks, "a plan with no task"
    for t in plan.tasks[:: max(1, len(plan.tasks) // 60)]:
        site = by_code[t.station].site
        where = eph["earth"] + wgs84.latlon(site.latitude_deg, site.longitude_deg,
                                            elevation_m=site.altitude_m)  # fmt: skip
        for moment in (t.start, t.end):
            alt, _, _ = where.at(_skyfield_time(ts, moment)).observe(eph["sun"]).apparent().altaz()
            # geometric -12 deg vs Skyfield's apparent (aberration, no refraction): 0.02 deg
            assert alt.degrees < -12.0 + 0.05, (t.task_id, moment, alt.degrees)


def test_object_tasks_respect_elevation_sunlight_and_moon(plan, stations, sky):
    from skyfield.api import EarthSatellite, wgs84

    ts, eph = sky
    by_code = {s.code: s for s in stations}
    objects = [t for t in plan.tasks if t.norad_id is not None]
    assert len(objects) > 50
    sample = objects[:: max(1, len(objects) // 80)]
    tles = read_3le(CAT_0930, {t.norad_id for t in sample})
    for t in sample:
        st = by_code[t.station]
        name, l1, l2 = tles[t.norad_id]
        sat = EarthSatellite(l1, l2, name, ts)
        place = wgs84.latlon(st.site.latitude_deg, st.site.longitude_deg,
                             elevation_m=st.site.altitude_m)  # fmt: skip
        for moment in (t.start, t.end):
            when = _skyfield_time(ts, moment)
            alt, _, _ = (sat - place).at(when).altaz()
            assert alt.degrees >= st.min_elevation_deg - 0.05, (t.task_id, alt.degrees)
            assert sat.at(when).is_sunlit(eph), (t.task_id, moment, "in shadow")
            observer = (eph["earth"] + place).at(when)
            moon = observer.observe(eph["moon"]).apparent()
            moon_alt = moon.altaz()[0].degrees
            target = (sat - place).at(when)
            ra_m, dec_m, _ = moon.radec()
            ra_t, dec_t, _ = target.radec()
            u_m = _unit(ra_m.hours * 15, dec_m.degrees)
            u_t = _unit(ra_t.hours * 15, dec_t.degrees)
            sep = np.degrees(np.arccos(np.clip(u_m @ u_t, -1, 1)))
            assert moon_alt < 0.5 or sep >= st.moon_separation_deg - 0.5, (t.task_id, sep)
        # the pointing is where Skyfield sees the object at the start (within 1')
        ra_t, dec_t, _ = (sat - place).at(_skyfield_time(ts, t.start)).radec()
        off = np.degrees(np.arccos(np.clip(
            _unit(t.ra_deg, t.dec_deg) @ _unit(ra_t.hours * 15, dec_t.degrees), -1, 1)))  # fmt: skip
        assert off < ONE_ARCMIN_DEG, (t.task_id, off * 3600)
        assert t.exposure_s == st.modes[t.tracking].exposure_s
        assert t.frames == st.modes[t.tracking].frames


def _unit(ra_deg, dec_deg):
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _double_booked(tasks):
    pairs = []
    by_obj = {}
    for t in tasks:
        if t.norad_id is not None:
            by_obj.setdefault(t.norad_id, []).append(t)
    for ts in by_obj.values():
        for i, a in enumerate(ts):
            for b in ts[i + 1 :]:
                if a.station != b.station and a.start < b.end and b.start < a.end:
                    pairs.append((a.task_id, b.task_id))
    return pairs


def test_no_object_is_booked_on_two_stations_at_once(plan):
    assert _double_booked(plan.tasks) == []
    # and no station is asked to do two things at once
    for code in {t.station for t in plan.tasks}:
        mine = sorted((t for t in plan.tasks if t.station == code), key=lambda t: t.start)
        for a, b in zip(mine, mine[1:]):
            assert a.end <= b.start, (a.task_id, b.task_id)


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_network_plan_covers_more_than_stations_planning_alone(plan, stations, catalogue):
    base = plan_night(stations, catalogue, NIGHT, nights=plan.nights, network=False)
    assert plan.coverage() > base.coverage()
    # objects only one station can see are observed at least as well as in the baseline
    only = np.zeros(len(catalogue), int)
    for night in plan.nights.values():
        only[night.rows[night.visible.any(axis=1)]] += 1
    exclusive = set(np.flatnonzero(only == 1).tolist())
    assert len(plan.covered & exclusive) >= len(base.covered & exclusive)


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_priorities_are_honoured(plan, stations, catalogue):
    """A higher-priority object is observed at the first chance, before upkeep work."""
    geo_rows = [r for r in plan.nights["IRN1"].rows if catalogue.orbit_class[r] == "GEO"]
    row = int(geo_rows[0])
    rows = RowPriorities.plain(len(catalogue))
    night = plan.nights["IRN1"]
    j = night.row_of[row]
    first_seen = night.times[np.flatnonzero(night.visible[j])[0]]
    start = first_seen + np.timedelta64(2, "h")
    rows.set(row, 260, "analyst request 1", start, start + np.timedelta64(3, "h"))
    stale = int(np.flatnonzero(np.asarray(catalogue.orbit_class) == "MEO")[0])
    planned = schedule(plan.nights, catalogue, rows=rows)
    mine = [p for p in planned if p.row == row and p.priority == 260]
    assert len(mine) == 1
    task = mine[0]
    assert start <= task.start and task.end <= start + np.timedelta64(3, "h")
    # nothing of lower priority started on that station between the window and the task
    same = [p for p in planned if p.station == task.station and start <= p.start < task.start]
    assert len(same) <= 1, "the request waited behind lower-priority work"
    del stale


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_simultaneous_request_books_two_stations_together(plan, catalogue):
    iran, pak = plan.nights["IRN1"], plan.nights["PAK1"]
    both = [r for r in iran.rows if pak.row_of[r] >= 0 and catalogue.orbit_class[r] == "GEO"]
    row = int(both[0])
    rows = RowPriorities.plain(len(catalogue))
    rows.set(row, 250, "analyst request 2", simultaneous=True, request=2)
    planned = schedule(plan.nights, catalogue, rows=rows)
    mine = [p for p in planned if p.row == row and p.priority == 250]
    assert len({p.station for p in mine}) >= 2
    assert len({p.start for p in mine}) == 1


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_replan_keeps_executed_tasks(tmp_path, stations, catalogue):
    from aposos.center import tasking_store as TS
    from aposos.center.config import CenterConfig
    from aposos.center.store import Store
    from aposos.model import TaskReport

    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.upgrade()
    config = CenterConfig(data_dir=tmp_path, stations_dir=STATIONS)
    first = replan(store, config, NIGHT, catalogue=catalogue)
    iran = [t for t in first.tasks if t.station == "IRN1"]
    done = iran[: len(iran) // 3]
    for t in done:
        TS.report_task(store, t.task_id, TaskReport("executed", frames=10, tracklets=1))
    now = done[-1].end + np.timedelta64(5, "m")
    second = replan(store, config, NIGHT, catalogue=catalogue, now=now, trigger="report")
    current = TS.list_tasks(store, station="IRN1", night=NIGHT, with_state=True)["tasks"]
    states = {t["task_id"]: t["state"] for t in current}
    for t in done:
        assert states[t.task_id] == "executed"
    later = [t for t in second.tasks if t.start >= now]
    assert later and all(t.start >= now for t in second.tasks)
    observed = {t.norad_id for t in done if t.norad_id is not None}
    assert not observed & {t.norad_id for t in later if t.priority <= 100}
    # ids are stable: the same pointing has the same id in both versions
    assert first.tasks[0].task_id == task_id(NIGHT, first.planned[0], first.tasks[0].norad_id)
    store.close()


def test_schema_v1_database_gains_the_planning_tables(tmp_path):
    from sqlalchemy import inspect

    from aposos.center import schema as S
    from aposos.center.store import Store

    store = Store(f"sqlite:///{tmp_path / 'old.sqlite'}")
    v1 = [t for t in S.metadata.sorted_tables if t not in S.TASKING_TABLES]
    with store.write() as conn:  # a database as version 1 made it
        S.metadata.create_all(conn, tables=v1)
        conn.execute(S.schema_info.insert().values(id=1, version=1))
    with store.read() as conn:
        assert "tasks" not in inspect(conn).get_table_names()
    assert store.upgrade() == S.SCHEMA_VERSION
    with store.read() as conn:
        assert {"tasks", "task_plans", "task_requests"} <= set(inspect(conn).get_table_names())
    store.close()


def test_the_simulator_points_where_the_plan_says(plan, catalogue, tmp_path):
    """A simulated night follows the tasking: each visit is a task, in its mode and place."""
    import json

    from aposos.station.config import StationConfig
    from aposos.station.simulator.plan import plan_night as simulate_night
    from aposos.station.simulator.plan import read_pointings

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.to_wire()))
    config = StationConfig.load(STATIONS / "iran.toml")
    mine = [t for t in plan.tasks if t.station == "IRN1"][:6]
    pointings = read_pointings(path, station="IRN1")
    assert len(pointings) == len([t for t in plan.tasks if t.station == "IRN1"])
    minutes = float((mine[-1].end - mine[0].start) / np.timedelta64(60, "s"))
    specs = simulate_night(config, catalogue, mine[0].start, minutes, pointings=pointings)
    assert specs
    for spec in specs:
        task = [t for t in mine if t.start <= spec.t_open][-1]
        assert spec.mode == task.tracking
        if spec.t_open < task.end:  # a frame of the task itself (not of the slew after it)
            first = min(s.t_open for s in specs if s.visit == spec.visit)
            if task.tracking == "rate":  # the simulator tracks the task's object
                assert catalogue.norad_id[spec.target] == task.norad_id
            elif spec.t_open == first:  # first frame within one cadence of the start
                off = np.degrees(np.arccos(np.clip(
                    _unit(spec.commanded_ra_deg, spec.commanded_dec_deg)
                    @ _unit(task.ra_deg, task.dec_deg), -1, 1)))  # fmt: skip
                assert off < 0.1, (task.task_id, off)


def _multi_object_tasks(plan):
    return [
        p for p in plan.planned
        if p.reason.startswith("multi-object field") or (p.tracking == "rate" and len(p.covers) > 1)
    ]  # fmt: skip


def test_multi_object_fields_contain_each_object_they_claim(plan, stations, catalogue, sky):
    """Every object a field claims beyond its target is, by Skyfield, inside the field
    (the inscribed circle of the square field) at two of the three samples (start, middle,
    end) of one exposure, above the station's minimum elevation and sunlit then."""
    from skyfield.api import EarthSatellite, wgs84

    from aposos.center.tasking_fields import exposure_offsets_s

    ts, eph = sky
    by_code = {s.code: s for s in stations}
    tasks = _multi_object_tasks(plan)
    assert len([p for p in tasks if p.tracking == "sidereal"]) >= 5
    norads = {int(catalogue.norad_id[r]) for p in tasks for r in p.covers}
    norads |= {int(catalogue.norad_id[p.row]) for p in tasks if p.row is not None}
    tles = read_3le(CAT_0930, norads)
    sats = {n: EarthSatellite(tles[n][1], tles[n][2], tles[n][0], ts) for n in tles}
    midnight = np.datetime64(NIGHT, "us")
    checked = 0
    for p in tasks:
        st = by_code[p.station]
        place = wgs84.latlon(st.site.latitude_deg, st.site.longitude_deg,
                             elevation_m=st.site.altitude_m)  # fmt: skip
        offsets = exposure_offsets_s(st.modes[p.tracking])
        secs = (p.start - midnight) / np.timedelta64(1, "us") / 1e6 + offsets.ravel()
        y, m, d = (int(x) for x in NIGHT.split("-"))
        when = ts.utc(y, m, d, 0, 0, secs)

        def directions(norad, place=place, when=when, shape=offsets.shape):
            ra, dec, _ = (sats[norad] - place).at(when).radec()
            return _unit(ra.hours * 15, dec.degrees).T.reshape(*shape, 3)

        if p.tracking == "rate":
            centre = directions(int(catalogue.norad_id[p.row]))
        else:
            centre = np.broadcast_to(_unit(p.ra_deg, p.dec_deg), (*offsets.shape, 3))
        for r in p.covers:
            if r == p.row:
                continue
            norad = int(catalogue.norad_id[r])
            sep = np.degrees(np.arccos(np.clip(np.sum(directions(norad) * centre, -1), -1, 1)))
            inside = (sep < 0.5 * st.field_deg).sum(axis=1)
            assert inside.max() >= 2, (p.station, p.start, norad, sep.min())
            f = int(np.argmax(inside))
            moment = when[f * offsets.shape[1] + 1]
            alt, _, _ = (sats[norad] - place).at(moment).altaz()
            assert alt.degrees >= st.min_elevation_deg - 0.05, (norad, alt.degrees)
            assert sats[norad].at(moment).is_sunlit(eph), (norad, "in shadow")
            checked += 1
    assert checked >= 10


def test_interpolated_directions_agree_with_propagation(plan, catalogue):
    """The 4 s grid, interpolated, against SGP4 at the exact times: within 30 arcsec
    (measured: 11 arcsec at most), far inside the 0.05 field sides of margin the
    planner keeps to the edge of the field (2.8 arcmin for the smallest field, PER1)."""
    from aposos.center.tasking_fields import TrackCache, Tracks

    night = plan.nights["IRN1"]
    leo = np.asarray(catalogue.orbit_class) == "LEO"
    cache = TrackCache(night, catalogue.params, leo)
    t0 = night.times[30] + np.timedelta64(7_300_000, "us")
    times = t0 + np.arange(0, 90_000_000, 1_700_000).astype("timedelta64[us]")
    k = night.index_at(t0)
    rows = night.rows[night.visible[:, k] & leo[night.rows]]
    assert rows.size > 10
    fast = cache.tracks(rows, times)
    exact = Tracks(night, catalogue.params, fast.rows, times)
    sep = np.degrees(np.arccos(np.clip(np.sum(fast.u * exact.u, -1), -1, 1)))
    assert np.nanmax(sep) < 30 * ONE_ARCMIN_DEG / 60, np.nanmax(sep) * 3600


def _naive_members(tr, centres, tidx, station, mode):
    """The rule of aposos.center.tasking_fields, written plainly."""
    from aposos.center.tasking_fields import FIELD_RADIUS_FRACTION

    setup = station.modes[mode]
    e = setup.exposure_s
    radius = np.radians(FIELD_RADIUS_FRACTION * station.field_deg)
    out = np.zeros((tidx.shape[0], tr.u.shape[0]), bool)
    for g in range(tidx.shape[0]):
        for b in range(tr.u.shape[0]):
            for f in range(tidx.shape[1]):
                ti = tidx[g, f]
                ang = np.arccos(np.clip(np.sum(centres[g, f] * tr.u[b, ti], -1), -1, 1))
                inside = np.flatnonzero((ang < radius) & tr.ok[b, ti])
                if inside.size < 2:
                    continue
                t_in = e * (inside.size - 1) / (tidx.shape[2] - 1)
                a, z = inside[0], inside[-1]
                moved = (tr.u[b, ti[z]] - centres[g, f, z]) - (tr.u[b, ti[a]] - centres[g, f, a])
                trail = np.degrees(np.linalg.norm(moved)) * 3600
                loss = 2.5 * np.log10(e / t_in * np.sqrt(1 + trail / station.seeing_fwhm_arcsec))
                if tr.mag[b, ti[(a + z) // 2]] + loss <= station.limiting_mag[mode]:
                    out[g, b] = True
                    break
    return out


def test_field_membership_kernel_matches_the_plain_rule(stations):
    """Objects crossing a sidereal field: the kernel against the plain rule, and the
    trailing loss at work (the same crossing, fast, is lost when faint)."""
    from types import SimpleNamespace

    from aposos.center.tasking_fields import exposure_offsets_s, members

    st = stations[0]
    setup = st.modes["sidereal"]
    offsets = exposure_offsets_s(setup)
    times = np.datetime64("2026-03-19T16:00", "us") + (offsets.ravel() * 1e6).astype(
        "timedelta64[us]")  # fmt: skip
    rng = np.random.default_rng(5)
    n = 60
    # straight paths through the sky near RA 0, Dec 0, at 0.01 to 1 deg/s
    start = rng.uniform(-8, 8, (n, 2))
    speed = rng.uniform(0.01, 1.0, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    secs = offsets.ravel()
    ra = start[:, :1] + speed[:, None] * np.cos(angle)[:, None] * (secs - secs.mean())
    dec = start[:, 1:] + speed[:, None] * np.sin(angle)[:, None] * (secs - secs.mean())
    u = _unit(ra, dec).transpose(1, 2, 0)
    mag = np.repeat(rng.uniform(5, 20, n)[:, None], secs.size, axis=1)
    tr = SimpleNamespace(rows=np.arange(n), times=times, u=u, ok=np.ones((n, secs.size), bool),
                         mag=mag)  # fmt: skip
    centres_radec = rng.uniform(-3, 3, (40, 2))
    tidx = np.broadcast_to(np.arange(secs.size).reshape(offsets.shape), (40, *offsets.shape))
    c = _unit(centres_radec[:, 0], centres_radec[:, 1]).T
    centres = np.broadcast_to(c[:, None, None, :], (*tidx.shape, 3))
    fast = members(tr, centres, tidx, st, "sidereal")
    assert fast.any()
    np.testing.assert_array_equal(fast, _naive_members(tr, centres, tidx, st, "sidereal"))
    # one object through the centre at 0.5 deg/s mid-exposure: seen at magnitude 10,
    # lost at the point-source limit (the trail spreads its light)
    one = SimpleNamespace(rows=np.arange(1), times=times, ok=np.ones((1, secs.size), bool),
                          u=_unit(0.5 * (secs - offsets[4, 1]), 0 * secs).T[None], mag=None)  # fmt: skip
    centre = np.broadcast_to(_unit(0.0, 0.0), (1, *offsets.shape, 3))
    one.mag = np.full((1, secs.size), 10.0)
    assert members(one, centre, tidx[:1], st, "sidereal")[0, 0]
    one.mag = np.full((1, secs.size), st.limiting_mag["sidereal"] - 0.1)
    assert not members(one, centre, tidx[:1], st, "sidereal")[0, 0]


def test_the_timeline_draws_every_task_where_and_as_long_as_it_is(plan):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from aposos.center.tasking_plot import CLASSES, TIMELINE_ROWS, _class, timeline_bars

    code = max(plan.nights, key=lambda c: sum(t.station == c for t in plan.tasks))
    tasks = [t for t in plan.tasks if t.station == code]
    t0 = plan.nights[code].times[0]

    def hours(t):
        return (np.asarray(t, "datetime64[us]") - t0) / np.timedelta64(3600, "s")

    fig, ax = plt.subplots()
    try:
        drawn = timeline_bars(ax, tasks, hours)
        assert sum(len(c.get_paths()) for c in drawn.values()) == len(tasks) > 100
        for mode, coll in drawn.items():
            mine = [t for t in tasks if t.tracking == mode]
            for t, path, face in zip(mine, coll.get_paths(), coll.get_facecolors()):
                (x0, y0), (x1, y1) = path.vertices.min(0), path.vertices.max(0)
                assert x0 == pytest.approx(hours(t.start), abs=1e-9)  # 3.6 us
                assert x1 == pytest.approx(hours(t.end), abs=1e-9)
                assert (y0, y1) == pytest.approx(
                    (TIMELINE_ROWS[mode] - 0.3, TIMELINE_ROWS[mode] + 0.3)
                )
                assert tuple(face) == to_rgba(CLASSES[_class(t.priority)][2])
    finally:
        plt.close(fig)
