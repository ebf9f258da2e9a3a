"""Where each station can look on a night: dark hours, and catalogue objects in reach.

For one station and one night the planner samples the station's dark hours (Sun's
centre below -12 degrees, geometric) on a regular grid and asks, for every catalogue
object at every sample, whether the station could observe it:

- the object is sunlit (:func:`aposos.orbit.frames.sunlit`);
- it stands at least ``min_elevation_deg`` above the horizon (geometric elevation);
- it is at least ``moon_separation_deg`` from the Moon, unless the Moon is below the
  horizon (Moon: ERFA ``moon98``, topocentric);
- its expected magnitude is within the station's limiting magnitude for the tracking
  mode it would be observed in (GEO objects: stare, others: rate tracking).

Expected magnitude: a standard magnitude (at 1000 km and 90 degrees phase) by object
type when the size is unknown (always, with TLE catalogues), plus ``5 log10(range /
1000 km)``, minus ``2.5 log10`` of the diffuse-sphere phase law (1 at 90 degrees), plus
extinction at the object's air mass.

Propagation, directions and the shadow test reuse the orbit layer's numba kernels; the
objects are processed in chunks so that memory stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import erfa
import numpy as np

from aposos.center.tasking_stations import StationPlanning
from aposos.model import datetime64_to_jd_fr
from aposos.orbit import frames
from aposos.timeutil import utc_to_tt

__all__ = [
    "DARK_SUN_ALTITUDE_DEG",
    "StationNight",
    "moon_radec_deg",
    "night_window",
    "standard_magnitude",
    "station_night",
]

DARK_SUN_ALTITUDE_DEG = -12.0
AU_KM = 149597870.700
CHUNK_OBJECTS = 2048
US = np.timedelta64(1, "us")

# Standard magnitude (1000 km, 90 degrees phase) by object type when the size is
# unknown: typical values of optical survey practice (a 1 m^2 diffuse object of albedo
# 0.2 is about 7.5 at 1000 km; large GEO and GNSS buses are 3-5; Starlink and OneWeb
# as measured by amateur campaigns, before and after brightness mitigation).
STANDARD_MAG = {
    ("payload", "LEO"): 6.5,
    ("payload", "MEO"): 5.0,
    ("payload", "GEO"): 4.5,
    ("payload", "HEO"): 5.0,
    ("rocket body", ""): 5.0,
    ("debris", ""): 9.0,
    ("starlink", ""): 6.0,
    ("oneweb", ""): 7.5,
}


def object_types(names) -> np.ndarray:
    """``payload``, ``rocket body``, ``debris``, ``starlink`` or ``oneweb``, from the name."""
    out = []
    for name in np.asarray(names, dtype=str):
        upper = name.upper()
        if upper.startswith("STARLINK"):
            out.append("starlink")
        elif upper.startswith("ONEWEB"):
            out.append("oneweb")
        elif " R/B" in upper or upper.endswith("R/B"):
            out.append("rocket body")
        elif " DEB" in upper or upper.endswith("DEB"):
            out.append("debris")
        else:
            out.append("payload")
    return np.array(out)


def standard_magnitude(names, orbit_class) -> np.ndarray:
    """Standard magnitude of each object by type and orbit class (see :data:`STANDARD_MAG`)."""
    kinds = object_types(names)
    classes = np.asarray(orbit_class, dtype=str)
    out = np.empty(kinds.size)
    for k, (kind, cls) in enumerate(zip(kinds, classes)):
        out[k] = STANDARD_MAG.get((kind, cls), STANDARD_MAG.get((kind, ""), 7.0))
    return out


def _diffuse_sphere(phase_rad):
    p = np.clip(phase_rad, 0.0, math.pi)
    return np.maximum((math.pi - p) * np.cos(p) + np.sin(p), 1e-6)


def _airmass(el_deg):
    h = np.maximum(np.asarray(el_deg, dtype=np.float64), 0.5)
    return 1.0 / (np.sin(np.radians(h)) + 0.50572 * (h + 6.07995) ** -1.6364)


def _unit(ra_deg, dec_deg):
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def _unit1(ra_deg: float, dec_deg: float) -> tuple[float, float, float]:
    """:func:`_unit` of one direction, in plain floats (the scheduler asks one at a time)."""
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)


def local_noon_utc(longitude_deg: float, night: np.datetime64) -> np.datetime64:
    """Mean-solar noon at a longitude on the date that starts the night, in UTC."""
    day = np.datetime64(night, "D").astype("datetime64[us]")
    return (
        day
        + np.timedelta64(12 * 3600, "s")
        - np.timedelta64(int(round(longitude_deg / 15.0 * 3600e6)), "us")
    )


def night_window(
    station: StationPlanning, night, *, sun_altitude_deg: float = DARK_SUN_ALTITUDE_DEG
) -> tuple[np.datetime64, np.datetime64] | None:
    """Start and end (UTC) of the station's dark hours in the night starting on ``night``.

    The night runs from local mean noon of that date to the next; dark while the Sun's
    centre is below ``sun_altitude_deg``. Times to about a second; ``None`` when it never
    gets dark (polar summer).
    """
    noon = local_noon_utc(station.site.longitude_deg, night)
    times = noon + np.arange(0, 24 * 60 + 1) * np.timedelta64(60, "s")
    jd, fr = datetime64_to_jd_fr(times)
    alt = frames.sun_altitude_deg(station.site, jd, fr) - sun_altitude_deg
    dark = np.flatnonzero(alt < 0)
    if dark.size == 0:
        return None

    def crossing(k_before: int, k_after: int) -> np.datetime64:
        a, b = alt[k_before], alt[k_after]
        frac = a / (a - b) if a != b else 0.0
        return times[k_before] + np.timedelta64(int(round(frac * 60e6)), "us")

    first, last = dark[0], dark[-1]
    start = crossing(first - 1, first) if first > 0 else times[0]
    end = crossing(last, last + 1) if last + 1 < times.size else times[-1]
    return start.astype("datetime64[s]").astype("datetime64[us]"), end.astype(
        "datetime64[s]"
    ).astype("datetime64[us]")


def moon_radec_deg(station: StationPlanning, jd, fr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Topocentric RA/Dec of the Moon (GCRS axes) and its elevation, degrees."""
    jd, fr = np.asarray(jd, dtype=float), np.asarray(fr, dtype=float)
    tt_jd, tt_fr = utc_to_tt(jd, fr)
    moon_km = erfa.moon98(tt_jd, tt_fr)["p"] * AU_KM
    site_km, _ = frames.site_gcrs_posvel_km(station.site, jd, fr)
    d = moon_km - site_km
    ra = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(d[:, 2] / np.linalg.norm(d, axis=1)))
    up_gcrs = site_km / np.linalg.norm(site_km, axis=1)[:, None]  # geocentric zenith
    el = np.degrees(np.arcsin(np.sum(up_gcrs * d, 1) / np.linalg.norm(d, axis=1)))
    return ra, dec, el


@dataclass
class StationNight:
    """One station's night on a time grid, with the catalogue objects it can observe.

    ``times`` (n_t,) datetime64[us] UTC every ``step_s`` through the dark hours. For
    the catalogue rows ``rows`` (those observable at some sample): ``visible``,
    ``ra_deg``, ``dec_deg``, ``el_deg``, ``mag`` each (n_rows, n_t). ``row_of`` maps a
    catalogue row to its index in ``rows`` (-1: never observable). ``moon_*`` per time.
    """

    station: StationPlanning
    times: np.ndarray
    step_s: float
    rows: np.ndarray
    row_of: np.ndarray
    visible: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    el_deg: np.ndarray
    mag: np.ndarray
    moon_ra_deg: np.ndarray
    moon_dec_deg: np.ndarray
    moon_el_deg: np.ndarray

    @property
    def start(self) -> np.datetime64:
        return self.times[0]

    @property
    def end(self) -> np.datetime64:
        return self.times[-1]

    def index_at(self, t: np.datetime64) -> int:
        """The grid sample at or before ``t`` (clipped to the grid)."""
        k = int((t - self.times[0]) // np.timedelta64(int(self.step_s * 1e6), "us"))
        return min(max(k, 0), self.times.size - 1)

    def moon_ok(self, ra_deg, dec_deg, k) -> np.ndarray:
        """Whether directions are far enough from the Moon at sample(s) ``k``."""
        if self.station.moon_separation_deg <= 0:
            return np.ones(np.shape(ra_deg), dtype=bool)
        if np.ndim(ra_deg) == 0 and np.ndim(k) == 0:  # one direction: no arrays to build
            x, y, z = _unit1(float(ra_deg), float(dec_deg))
            mx, my, mz = _unit1(float(self.moon_ra_deg[k]), float(self.moon_dec_deg[k]))
            cos_sep = x * mx + y * my + z * mz
            far = cos_sep < math.cos(math.radians(self.station.moon_separation_deg))
            return far or bool(self.moon_el_deg[k] < 0.0)
        cos_sep = np.sum(
            _unit(ra_deg, dec_deg) * _unit(self.moon_ra_deg[k], self.moon_dec_deg[k]), -1
        )
        far = cos_sep < math.cos(math.radians(self.station.moon_separation_deg))
        return far | (self.moon_el_deg[k] < 0.0)


def _grid(start: np.datetime64, end: np.datetime64, step_s: float) -> np.ndarray:
    step = np.timedelta64(int(round(step_s * 1e6)), "us")
    # samples on whole multiples of the step, so that every station shares them
    since_epoch = start - np.datetime64(0, "us")
    start = np.datetime64(0, "us") + -(-since_epoch // step) * step
    n = int((end - start) // step) + 1
    return start + step * np.arange(max(n, 1))


def station_night(
    station: StationPlanning, catalogue, window, *, step_s: float = 60.0, std_mag=None
) -> StationNight:
    """Observability of every catalogue object from ``station`` through ``window``.

    ``window`` is (start, end) UTC of the dark hours (:func:`night_window`), or None
    for a station that stays light (no rows, one sample).
    """
    if window is None:
        t0 = np.datetime64("2000-01-01T00:00:00", "us")
        window = (t0, t0)
    times = _grid(window[0], window[1], step_s)
    jd, fr = datetime64_to_jd_fr(times)
    n_t, n_obj = times.size, len(catalogue)
    moon_ra, moon_dec, moon_el = moon_radec_deg(station, jd, fr)
    if std_mag is None:
        std_mag = standard_magnitude(catalogue.name, catalogue.orbit_class)
    geo = np.asarray(catalogue.orbit_class) == "GEO"
    limit = np.where(geo, station.limiting_mag["stare"], station.limiting_mag["rate"])
    # per-time geometry for the magnitudes: station and Sun in TEME
    teme_to_itrs = frames.teme_to_itrs_matrices(jd, fr)
    site_teme = np.einsum("tji,j->ti", teme_to_itrs, station.site.itrs_km())
    sun_teme = np.einsum(
        "tji,tj->ti", frames.teme_to_gcrs_matrices(jd, fr), frames.sun_gcrs_km(jd, fr)
    )
    keep_rows, parts = [], []
    night = StationNight(
        station, times, step_s, np.zeros(0, np.int64), np.full(n_obj, -1, np.int64),
        *(np.zeros((0, n_t), dt) for dt in (bool, np.float32, np.float32, np.float32, np.float32)),
        moon_ra, moon_dec, moon_el,
    )  # fmt: skip
    if window[0] == window[1]:
        return night
    for lo in range(0, n_obj, CHUNK_OBJECTS):
        sub = catalogue.subset(np.arange(lo, min(lo + CHUNK_OBJECTS, n_obj)))
        e, r, v = sub.propagate(jd, fr)
        ok = (e == 0) & np.isfinite(r[..., 0])
        _, el, _ = frames.azel_from_teme(r, jd, fr, station.site)
        cand = ok & (el >= station.min_elevation_deg)
        cand &= frames.sunlit(r, jd, fr)
        rows = np.flatnonzero(cand.any(axis=1))
        if rows.size == 0:
            continue
        r, v, el, cand = r[rows], v[rows], el[rows], cand[rows]
        ra, dec, rng = frames.radec_from_teme(r, v, jd, fr, station.site)
        cand &= night.moon_ok(ra, dec, np.arange(n_t)[None, :])
        # expected magnitude: range, phase (Sun-object-station angle), extinction
        to_site = site_teme[None] - r
        to_sun = sun_teme[None] - r
        cos_phase = np.sum(to_site * to_sun, -1) / (
            np.linalg.norm(to_site, axis=-1) * np.linalg.norm(to_sun, axis=-1)
        )
        phase = np.arccos(np.clip(cos_phase, -1.0, 1.0))
        g = lo + rows
        mag = (
            std_mag[g][:, None]
            + 5.0 * np.log10(np.maximum(rng, 1.0) / 1000.0)
            - 2.5 * np.log10(_diffuse_sphere(phase))
            + station.extinction_mag_per_airmass * _airmass(el)
        )
        cand &= mag <= limit[g][:, None]
        good = cand.any(axis=1)
        if not good.any():
            continue
        keep_rows.append(g[good])
        parts.append(
            (cand[good], ra[good].astype(np.float32), dec[good].astype(np.float32),
             el[good].astype(np.float32), mag[good].astype(np.float32))
        )  # fmt: skip
    if keep_rows:
        night.rows = np.concatenate(keep_rows)
        night.visible, night.ra_deg, night.dec_deg, night.el_deg, night.mag = (
            np.concatenate([p[k] for p in parts]) for k in range(5)
        )
        night.row_of[night.rows] = np.arange(night.rows.size)
    return night
