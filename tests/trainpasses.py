"""Passes of trains as a station sees them: the members of a train within minutes.

A train is a set of satellites in one orbit plane at one height, flying one behind the
other (Starlink and OneWeb planes, a launch's batch raising its orbit). A station that
watches one member pass also sees its neighbours pass the same stretch of sky a few
minutes before or after it: one tracklet of each, from the same site, in the same pass.

Tracklets are made as :mod:`truthset` makes them (python-sgp4 + astropy, 1-3" noise,
timing jitter), from the element sets of ``tle_path`` observed exactly (their own
errors against the older catalogue are the real ones), near their epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sgp4.api import Satrec, SatrecArray
from truthset import (
    ARCSEC_DEG,
    COLOCATED_KM,
    OBS_COUNTS,
    SPANS,
    STATIONS,
    TIMING_JITTER_S,
    TruthSet,
    TruthTracklet,
    _astrometric,
    _configure_astropy_offline,
    _elevation_deg,
    _jd_split,
    orbit_class,
    read_3le,
)

from aposos.model import Tracklet

# neighbours: orbit normals within this angle, heights within this, this far along track
PLANE_DEG = 0.3
HEIGHT_KM = 20.0


def train_neighbours(sats, at_jd: float, lag_s: float) -> dict[int, list[tuple[int, float]]]:
    """For each near-circular LEO object, ``[(other, lag_s)]`` of its train neighbours at
    UTC ``at_jd`` (``lag`` > 0: the other flies ahead by that many seconds)."""
    leo = [i for i, s in enumerate(sats) if orbit_class(s) == "LEO" and s.ecco < 0.01]
    jd, fr = _jd_split(np.array([at_jd]))
    e, r, v = SatrecArray([sats[i] for i in leo]).sgp4(jd, fr)
    ok = e[:, 0] == 0
    leo = np.array(leo)[ok]
    r, v = r[ok, 0], v[ok, 0]
    h = np.cross(r, v)
    h /= np.linalg.norm(h, axis=1)[:, None]
    speed = np.linalg.norm(v, axis=1)
    radius = np.linalg.norm(r, axis=1)
    out = {}
    cos_max = np.cos(np.radians(PLANE_DEG))
    for k in range(leo.size):
        near = (h @ h[k] > cos_max) & (np.abs(radius - radius[k]) < HEIGHT_KM)
        # docked vehicles and tight formations are co-located, not a train
        near &= np.linalg.norm(r - r[k], axis=1) > COLOCATED_KM
        idx = np.flatnonzero(near)
        lag = (r[idx] - r[k]) @ (v[k] / speed[k]) / speed[k]
        keep = np.abs(lag) <= lag_s
        if keep.any():
            out[int(leo[k])] = [(int(leo[j]), float(x)) for j, x in zip(idx[keep], lag[keep])]
    return out


def build_train_passes(
    tle_path,
    *,
    catalogue_path,
    night_jd: float,
    n_passes: int,
    seed: int = 0,
    lag_s: float = 400.0,
    max_members: int = 8,
    max_epoch_offset_days: float = 0.5,
    members_of: Sequence[int] | None = None,
) -> TruthSet:
    """Tracklets of ``n_passes`` train passes (about): each a member chosen at random
    and its neighbours within ``lag_s`` along track, seen from one station as they pass
    the same stretch of sky (only those above 20 degrees). ``members_of``: passes of the
    trains of these objects (NORAD numbers) only."""
    _configure_astropy_offline()
    rng = np.random.default_rng(seed)
    records = read_3le(tle_path)
    sats = [Satrec.twoline2rv(l1, l2) for _, l1, l2 in records]
    cat_records = read_3le(catalogue_path)
    cat_ids = {Satrec.twoline2rv(l1, l2).satnum for _, l1, l2 in cat_records}
    trains = train_neighbours(sats, night_jd + 0.5, lag_s)
    seeds = rng.permutation(sorted(trains))
    if members_of is not None:
        wanted = {int(n) for n in members_of}
        seeds = [s for s in seeds if sats[s].satnum in wanted]
    minutes = night_jd + np.arange(0, 1440, 2) / 1440.0
    used: set[int] = set()
    picks = []  # (object, station, start JD)
    n_done = 0
    for s in seeds:
        if n_done >= n_passes:
            break
        if s in used:
            continue
        members = [m for m in trains[s] if m[0] not in used]
        members = sorted(members, key=lambda m: abs(m[1]))[: max_members - 1]
        group = [(int(s), 0.0)] + members
        epoch = sats[s].jdsatepoch + sats[s].jdsatepochF
        jd, fr = _jd_split(minutes)
        e, r, _ = sats[s].sgp4_array(jd, fr)
        options = []
        for st, (_, lat, lon, alt) in enumerate(STATIONS):
            solar_h = np.mod((minutes - night_jd) * 24.0 + lon / 15.0, 24.0)
            dark = (solar_h > 19.5) | (solar_h < 4.5)
            ok = dark & (_elevation_deg(r, minutes, (lat, lon, alt)) > 25.0) & (e == 0)
            ok &= np.abs(minutes - epoch) <= max_epoch_offset_days
            options += [(st, m) for m in np.flatnonzero(ok)]
        if not options:
            continue
        st, m = options[rng.integers(len(options))]
        start = minutes[m] + rng.uniform(0, 60) / 86400.0
        seen = []
        for obj, lag in group:
            t = np.array([start - lag / 86400.0])
            e1, r1, _ = sats[obj].sgp4_array(*_jd_split(t))
            other_epoch = sats[obj].jdsatepoch + sats[obj].jdsatepochF
            if e1[0] or abs(t[0] - other_epoch) > max_epoch_offset_days + lag_s / 86400.0:
                continue
            if _elevation_deg(r1, t, STATIONS[st][1:])[0] > 20.0:
                seen.append((obj, st, t[0]))
        if len(seen) >= 2:
            picks += seen
            used.update(obj for obj, _, _ in seen)
            n_done += 1
    return _observe(sats, picks, cat_records, cat_ids, rng)


def _observe(sats, picks, cat_records, cat_ids, rng) -> TruthSet:
    times, stations = [], []
    for obj, st, start in picks:
        n_obs = int(rng.choice([c for c, _ in OBS_COUNTS], p=[p for _, p in OBS_COUNTS]))
        lo, hi = SPANS[orbit_class(sats[obj])]
        steps = np.sort(rng.uniform(0.0, 1.0, n_obs - 2)) if n_obs > 2 else np.zeros(0)
        times.append(start + np.concatenate([[0.0], steps, [1.0]]) * rng.uniform(lo, hi) / 86400)
        stations.append(st)
    true_times = [t + rng.normal(0.0, TIMING_JITTER_S, t.size) / 86400.0 for t in times]
    ra, dec = [None] * len(picks), [None] * len(picks)
    for st, station in enumerate(STATIONS):
        members = [k for k in range(len(picks)) if stations[k] == st]
        if members:
            r_, d_ = _astrometric(
                [sats[picks[k][0]] for k in members], [true_times[k] for k in members], station[1:]
            )
            for k, a, b in zip(members, r_, d_, strict=True):
                ra[k], dec[k] = a, b
    out = []
    for k, (obj, st, _) in enumerate(picks):
        sigma = rng.uniform(1.0, 3.0)
        n = times[k].size
        d_dec = rng.normal(0.0, 1.0, n) * sigma * ARCSEC_DEG
        d_ra = rng.normal(0.0, 1.0, n) * sigma * ARCSEC_DEG / np.cos(np.radians(dec[k]))
        jd, fr = _jd_split(times[k])
        us = np.round((jd - 2440587.5 + fr) * 86400e6).astype(np.int64)
        trk = Tracklet(
            station=STATIONS[st][0], utc=us.astype("datetime64[us]"),
            ra_deg=ra[k] + d_ra, dec_deg=dec[k] + d_dec, sigma_arcsec=sigma,
        )  # fmt: skip
        norad = int(sats[obj].satnum)
        out.append(TruthTracklet(trk, norad, norad in cat_ids, orbit_class(sats[obj]), 0.0))
    lines = [x for rec in cat_records for x in rec]
    sites = {code: (lat, lon, alt) for code, lat, lon, alt in STATIONS}
    return TruthSet(lines, out, sites)
