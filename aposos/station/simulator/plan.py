"""Observing plan of the sky simulator: frame times, fields, targets and conditions.

A night is cut into visits (``simulator.visit_s`` each, or one per row of a pointings
file); every visit has one mode, one field or target, and its own seeing, sky
brightness, sky gradient, field rotation and pointing error. Frames open every
``cadence_s`` while the station is dark (Sun below -12 degrees: satellite observers
work through nautical twilight).

Field choice, where no pointings are given:

* ``sidereal`` - of fields centred on sunlit, well-placed LEO objects at mid-visit, the
  one (fixed RA/Dec) that most such objects cross during the visit's exposures (MEO
  and HEO objects count a half, GEO a third: sidereal fields are for LEO streaks);
* ``rate`` - a sunlit object (LEO if any) above the elevation limit through most of
  the visit, tracked at its predicted rate (the prediction is off by a fraction of a second, as a
  real ephemeris is);
* ``stare`` - a field on the GEO belt with the most sunlit GEO objects, the mount
  parked (hour angle and declination fixed: RA advances at the sidereal rate).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from aposos.model import datetime64_to_jd_fr
from aposos.orbit import frames
from aposos.station.config import StationConfig
from aposos.station.simulator.sky import (
    SIDEREAL_RATE_DEG_S,
    offset_pointing,
)

__all__ = ["FrameSpec", "MODES", "SatelliteEphemeris", "plan_night", "read_pointings"]

log = logging.getLogger(__name__)

MODES = ("sidereal", "rate", "stare")
DARK_SUN_ALTITUDE_DEG = -12.0
GEO_WEIGHT = 1.0 / 3.0
MAX_FIELD_CANDIDATES = 400
US = np.timedelta64(1, "us")


@dataclass(frozen=True)
class FrameSpec:
    """Everything that decides one light frame.

    ``t_open`` is the true moment the shutter opens (UTC). The commanded pointing is
    where the mount was told to point at ``t_open``; the true optical axis is that
    pointing moved by the pointing error (``offset_xi_deg``, ``offset_eta_deg``:
    standard coordinates about the commanded pointing) and the field is rotated by
    ``rotation_deg``. ``target`` is the catalogue row tracked in rate mode.
    """

    index: int
    t_open: np.datetime64
    exposure_s: float
    mode: str
    commanded_ra_deg: float
    commanded_dec_deg: float
    offset_xi_deg: float = 0.0
    offset_eta_deg: float = 0.0
    rotation_deg: float = 0.0
    seeing_fwhm_arcsec: float = 2.0
    sky_mag_arcsec2: float = 20.5
    sky_gradient: tuple[float, float] = (0.0, 0.0)  # fractional change across x and y
    target: int | None = None
    track_time_error_s: float = 0.0
    visit: int = 0
    object: str = "FIELD"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown tracking mode {self.mode!r}; choose {', '.join(MODES)}")
        if self.mode == "rate" and self.target is None:
            raise ValueError("rate tracking needs a target")


class SatelliteEphemeris:
    """Positions of catalogue objects seen from the station at given UTC times.

    Attributes, each (n_objects, n_times): ``ra_deg``, ``dec_deg`` (astrometric, as
    :meth:`aposos.orbit.catalogue.Catalogue.radec` gives them), ``range_km``,
    ``elevation_deg``, ``sunlit``; ``ok`` where SGP4 succeeded; ``r_teme_km``.
    """

    def __init__(self, catalogue, site, times: np.ndarray):
        self.times = np.asarray(times, dtype="datetime64[us]").reshape(-1)
        jd, fr = datetime64_to_jd_fr(self.times)
        self.jd, self.fr = jd, fr
        e, r, v = catalogue.propagate(jd, fr)
        self.ok = (e == 0) & np.isfinite(r[..., 0])
        self.r_teme_km = r
        self.ra_deg, self.dec_deg, self.range_km = frames.radec_from_teme(r, v, jd, fr, site)
        _, self.elevation_deg, _ = frames.azel_from_teme(r, jd, fr, site)
        self.sunlit = frames.sunlit(r, jd, fr) & self.ok


def _plan_rows(doc: dict, station: str | None) -> list[dict]:
    """Pointings of one station from a data-center plan (``{"tasks": [Task wire]}``)."""
    tasks = doc.get("tasks")
    if not isinstance(tasks, list):
        raise ValueError("expected a JSON list of pointings or a plan with 'tasks'")
    rows = []
    for t in tasks:
        if not isinstance(t, dict):
            raise ValueError("a plan's tasks must be objects")
        if station is not None and t.get("station") != station:
            continue
        target = t.get("target") or {}
        rows.append({"utc": t.get("start"), "ra_deg": t.get("ra_deg"), "dec_deg": t.get("dec_deg"),
                     "mode": t.get("tracking"), "norad_id": target.get("norad_id")})  # fmt: skip
    return rows


def read_pointings(path: str | Path, *, station: str | None = None) -> list[dict]:
    """Read a pointings file: CSV with a header, a JSON list of objects, or a plan.

    Columns / keys: ``utc`` (ISO time the visit starts), ``ra_deg``, ``dec_deg`` (the
    commanded pointing; may be empty for rate mode), and optional ``mode``
    (sidereal|rate|stare) and ``norad_id`` (the target in rate mode). A visit lasts
    until the next row's time. A data-center plan (JSON with ``tasks``, as written by
    ``aposos center plan --out`` or served by ``GET /api/v1/tasks``) gives one visit per
    task of ``station``, starting at the task's start. Raises ``ValueError`` naming the
    file and row.
    """
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if isinstance(rows, dict):
            try:
                rows = _plan_rows(rows, station)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of pointings")
    else:
        rows = list(csv.DictReader(line for line in text.splitlines() if line.strip()))
    out = []
    for n, row in enumerate(rows, start=1 if path.suffix.lower() == ".json" else 2):
        where = f"{path}: {'item' if path.suffix.lower() == '.json' else 'line'} {n}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object")
        try:
            t = np.datetime64(str(row["utc"]).strip().rstrip("Z"), "us")
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{where}: bad or missing 'utc': {exc}") from None
        mode = str(row.get("mode") or "").strip() or None
        if mode is not None and mode not in MODES:
            raise ValueError(f"{where}: mode {mode!r} is not one of {', '.join(MODES)}")

        def number(key, lo, hi, row=row, where=where):
            value = row.get(key)
            if value is None or str(value).strip() == "":
                return None
            try:
                x = float(value)
            except ValueError:
                raise ValueError(f"{where}: {key} {value!r} is not a number") from None
            if not lo <= x <= hi:
                raise ValueError(f"{where}: {key} {x} is outside [{lo}, {hi}]")
            return x

        ra, dec = number("ra_deg", -360, 360), number("dec_deg", -90, 90)
        norad = number("norad_id", 1, 999999999)
        if norad is None and (ra is None or dec is None):
            raise ValueError(f"{where}: needs ra_deg and dec_deg (or a norad_id to track)")
        out.append({"utc": t, "ra_deg": ra, "dec_deg": dec, "mode": mode,
                    "norad_id": None if norad is None else int(norad)})  # fmt: skip
    if not out:
        raise ValueError(f"{path}: no pointings")
    out.sort(key=lambda p: p["utc"])
    return out


def frame_open_times(config: StationConfig, start: np.datetime64, minutes: float) -> np.ndarray:
    """Shutter-open times while the station is dark (UTC datetime64[us])."""
    sim = config.simulator
    start = np.datetime64(start, "us")
    end = start + np.timedelta64(int(round(minutes * 60e6)), "us")
    step = np.timedelta64(int(round(sim.cadence_s * 1e6)), "us")
    longest = max(sim.exposure_s, sim.rate_exposure_s)
    exp = np.timedelta64(int(round(longest * 1e6)), "us")
    n = int((end - start - exp) // step) + 1 if end - start >= exp else 0
    times = start + step * np.arange(max(n, 0))
    if times.size == 0:
        raise ValueError(f"{minutes} minutes is too short for one {longest} s exposure")
    jd, fr = datetime64_to_jd_fr(times)
    dark = frames.sun_altitude_deg(config.site, jd, fr) < DARK_SUN_ALTITUDE_DEG
    if not dark.any():
        raise ValueError(
            f"station {config.code} is not dark (Sun above {DARK_SUN_ALTITUDE_DEG:g} deg) "
            f"between {start} and {end} UTC"
        )
    return times[dark]


def _visits(times: np.ndarray, visit_s: float, pointings: list[dict] | None):
    """Split frame times into visits: lists of indices (and the pointing row, if any)."""
    if pointings:
        starts = np.array([p["utc"] for p in pointings], dtype="datetime64[us]")
        which = np.searchsorted(starts, times, side="right") - 1
        out = []
        for k, p in enumerate(pointings):
            idx = np.flatnonzero(which == k)
            if idx.size:
                out.append((idx, p))
        return out
    span = np.timedelta64(int(round(visit_s * 1e6)), "us")
    out, first = [], 0
    for i in range(1, times.size + 1):
        if i == times.size or times[i] - times[first] >= span:
            out.append((np.arange(first, i), None))
            first = i
    return out


def _conditions(config: StationConfig, rng: np.random.Generator) -> dict:
    sim = config.simulator
    error = sim.pointing_error_deg * math.sqrt(rng.random())
    angle = rng.uniform(0.0, 2 * math.pi)
    grad = rng.uniform(0.02, 0.2)
    gangle = rng.uniform(0.0, 2 * math.pi)
    return {
        "offset_xi_deg": error * math.cos(angle),
        "offset_eta_deg": error * math.sin(angle),
        "rotation_deg": float(rng.normal(0.0, 0.3)),
        "seeing_fwhm_arcsec": float(rng.uniform(*sim.seeing_fwhm_arcsec)),
        "sky_mag_arcsec2": float(rng.uniform(*sim.sky_mag_arcsec2)),
        "sky_gradient": (grad * math.cos(gangle), grad * math.sin(gangle)),
    }


def _exposure_samples(open_times: np.ndarray, exposure_s: float) -> np.ndarray:
    """Times at the start, middle and end of each exposure, (n_frames, 3)."""
    exp = np.timedelta64(int(round(exposure_s * 1e6)), "us")
    return open_times[:, None] + np.array([0, 1, 2]) * (exp // 2)


def _field_radius_deg(config: StationConfig) -> float:
    return 0.45 * min(config.field_of_view_deg)


def _unit(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _choose_sidereal(config, eph: SatelliteEphemeris, classes: np.ndarray, rng):
    geo, leo = classes == "GEO", classes == "LEO"
    n_t = eph.times.size
    visible = eph.sunlit & (eph.elevation_deg > config.simulator.min_elevation_deg)
    mid = n_t // 2
    # fields are centred on a LEO object if any is up (sidereal fields are for streaks)
    cand = np.flatnonzero(visible[:, mid] & leo)
    if cand.size == 0:
        cand = np.flatnonzero(visible[:, mid] & ~geo)
    if cand.size == 0:
        cand = np.flatnonzero(visible[:, mid])
    if cand.size == 0:
        return (*_overhead_field(config, eph, rng), "FIELD")
    if cand.size > MAX_FIELD_CANDIDATES:
        cand = rng.choice(cand, MAX_FIELD_CANDIDATES, replace=False)
    rows = np.flatnonzero(visible.any(axis=1))
    u = _unit(eph.ra_deg[rows], eph.dec_deg[rows])  # (n_rows, n_t, 3)
    u[~visible[rows]] = 0.0
    centres = _unit(eph.ra_deg[cand, mid], eph.dec_deg[cand, mid])  # (n_cand, 3)
    inside = (u @ centres.T) > math.cos(math.radians(_field_radius_deg(config)))
    weight = np.where(geo[rows], GEO_WEIGHT, np.where(leo[rows], 1.0, 0.5))
    score = weight @ inside.any(axis=1) + rng.random(cand.size) * 1e-3  # (n_cand,)
    best = cand[int(np.argmax(score))]
    return float(eph.ra_deg[best, mid]), float(eph.dec_deg[best, mid]), "FIELD"


def _overhead_field(config, eph: SatelliteEphemeris, rng) -> tuple[float, float]:
    """A field well above the horizon when no object offers itself."""
    jd, fr = eph.jd[:1], eph.fr[:1]
    m = frames.gcrs_to_itrs_matrices(jd, fr)[0]
    lat, lon = math.radians(config.site.latitude_deg), math.radians(config.site.longitude_deg)
    up = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    v = m.T @ up
    ra = math.degrees(math.atan2(v[1], v[0])) % 360.0
    dec = math.degrees(math.asin(v[2]))
    ra2, dec2 = offset_pointing(ra, dec, rng.uniform(-20, 20), rng.uniform(-20, 20))
    return float(ra2), float(dec2)


def _choose_target(config, eph: SatelliteEphemeris, geo: np.ndarray, rng, catalogue) -> int | None:
    visible = eph.sunlit & (eph.elevation_deg > config.simulator.min_elevation_deg)
    frac = visible.mean(axis=1)
    leo = np.asarray(catalogue.orbit_class) == "LEO"
    cand = np.flatnonzero((frac >= 0.8) & leo)
    if cand.size == 0:
        cand = np.flatnonzero((frac >= 0.8) & ~geo)
    if cand.size == 0:
        cand = np.flatnonzero(frac >= 0.8)
    if cand.size == 0:
        return None
    mean_el = np.mean(np.where(visible[cand], eph.elevation_deg[cand], 0.0), axis=1)
    top = cand[np.argsort(-mean_el)][:15]
    return int(rng.choice(top))


def _choose_stare(
    config, eph: SatelliteEphemeris, geo: np.ndarray, rng
) -> tuple[float, float, str]:
    visible = eph.sunlit[:, 0] & (eph.elevation_deg[:, 0] > config.simulator.min_elevation_deg)
    cand = np.flatnonzero(visible & geo)
    if cand.size == 0:
        log.warning("no sunlit GEO object above the elevation limit; staring at an empty field")
        return (*_overhead_field(config, eph, rng), "GEO-BELT")
    u = _unit(eph.ra_deg[cand, 0], eph.dec_deg[cand, 0])
    near = (u @ u.T) > math.cos(math.radians(_field_radius_deg(config)))
    best = cand[int(np.argmax(near.sum(axis=1) + rng.random(cand.size) * 1e-3))]
    best = (float(eph.ra_deg[best, 0]), float(eph.dec_deg[best, 0]))
    radius = _field_radius_deg(config)
    # put the group off-centre a little, as an operator's field would be
    ra, dec = offset_pointing(*best, *(rng.uniform(-0.25, 0.25, 2) * radius))
    return float(ra), float(dec), "GEO-BELT"


def plan_night(
    config: StationConfig,
    catalogue,
    start: np.datetime64,
    minutes: float,
    *,
    mode: str = "sidereal",
    seed: int = 0,
    pointings: list[dict] | None = None,
) -> list[FrameSpec]:
    """Frames for one run of the simulator (see the module notes).

    ``mode`` is one of :data:`MODES` or ``"mixed"`` (visits cycle through the three).
    Raises ``ValueError`` if the station is never dark in the window.
    """
    if mode not in (*MODES, "mixed"):
        raise ValueError(f"unknown mode {mode!r}; choose {', '.join(MODES)} or mixed")
    sim = config.simulator
    rng = np.random.default_rng([seed, 2])
    times = frame_open_times(config, start, minutes)
    classes = np.asarray(catalogue.orbit_class)
    geo = classes == "GEO"
    specs: list[FrameSpec] = []
    for v, (idx, row) in enumerate(_visits(times, sim.visit_s, pointings)):
        visit_mode = (row or {}).get("mode") or (MODES[v % 3] if mode == "mixed" else mode)
        open_times = times[idx]
        cond = _conditions(config, rng)
        samples = _exposure_samples(open_times, sim.exposure_s)
        target, obj = None, "FIELD"
        ra = dec = None
        if row is not None and row.get("norad_id") is not None:
            hits = np.flatnonzero(np.asarray(catalogue.norad_id) == row["norad_id"])
            if hits.size == 0:
                raise ValueError(f"pointings: NORAD {row['norad_id']} is not in the catalogue")
            target = int(hits[0])
            visit_mode = row.get("mode") or "rate"
        if row is not None and row.get("ra_deg") is not None:
            ra, dec = row["ra_deg"] % 360.0, row["dec_deg"]
        need_eph = (ra is None and visit_mode != "rate") or (
            visit_mode == "rate" and target is None
        )
        if need_eph:
            eph = SatelliteEphemeris(catalogue, config.site, samples.reshape(-1))
            if visit_mode == "sidereal":
                ra, dec, obj = _choose_sidereal(config, eph, classes, rng)
            elif visit_mode == "stare":
                ra, dec, obj = _choose_stare(config, eph, geo, rng)
            else:
                target = _choose_target(config, eph, geo, rng, catalogue)
                if target is None:
                    log.warning("visit %d: no object to track; observing sidereal instead", v)
                    visit_mode = "sidereal"
                    ra, dec, obj = _choose_sidereal(config, eph, classes, rng)
        if visit_mode == "rate" and target is None:
            raise ValueError("rate mode needs a target (norad_id in the pointings file)")
        track_error = float(rng.normal(0.0, 0.3)) if visit_mode == "rate" else 0.0
        if visit_mode == "rate":
            obj = (
                str(np.asarray(catalogue.name)[target]).strip()
                or f"NORAD {catalogue.norad_id[target]}"
            )
            t_cmd = open_times + np.timedelta64(int(round(track_error * 1e6)), "us")
            teph = SatelliteEphemeris(catalogue.subset([target]), config.site, t_cmd)
            cmd_ra, cmd_dec = teph.ra_deg[0], teph.dec_deg[0]
        elif visit_mode == "stare":
            dt = (open_times - open_times[0]) / np.timedelta64(1, "s")
            cmd_ra, cmd_dec = (ra + SIDEREAL_RATE_DEG_S * dt) % 360.0, np.full(dt.shape, dec)
        else:
            cmd_ra, cmd_dec = np.full(idx.shape, ra), np.full(idx.shape, dec)
        # tracking drift: a random walk of about an arcsecond per frame
        drift = np.cumsum(rng.normal(0.0, 1.0 / 3600.0, (idx.size, 2)), axis=0)
        exposure_s = sim.rate_exposure_s if visit_mode == "rate" else sim.exposure_s
        for k, i in enumerate(idx):
            spec = FrameSpec(
                index=len(specs),
                t_open=times[i],
                exposure_s=exposure_s,
                mode=visit_mode,
                commanded_ra_deg=float(cmd_ra[k]),
                commanded_dec_deg=float(cmd_dec[k]),
                target=target,
                track_time_error_s=track_error,
                visit=v,
                object=obj,
                **cond,
            )
            spec = replace(
                spec,
                seeing_fwhm_arcsec=spec.seeing_fwhm_arcsec * float(rng.uniform(0.95, 1.05)),
                offset_xi_deg=spec.offset_xi_deg + float(drift[k, 0]),
                offset_eta_deg=spec.offset_eta_deg + float(drift[k, 1]),
            )
            specs.append(spec)
    return specs
