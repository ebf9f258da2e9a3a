"""An independent truth set for the correlator: python-sgp4 + astropy, nothing of ours.

Observations are made the way a station would see real objects whose element sets are
off the way real TLEs are off:

- The "true" orbit of an object is its catalogued element set with the mean anomaly
  moved by ``n tau`` (the object runs ``tau`` seconds ahead of its prediction) and the
  inclination and node nudged so the orbit plane shifts by ``x`` km. ``tau`` grows
  with the age of the element set (``|tau| ~ (t0 + t1 age)``) and follows the drift
  ``d = n_dot age^2 / 2n`` that the element set's own mean-motion derivative predicts
  (SGP4 leaves ``n_dot`` out; real objects run about ``-1.4 d`` off), ``x`` is small. The sizes are
  the 50-70 % levels of the real errors seen between two CelesTrak snapshots two days
  apart (``shared/data/catalogues``), with manoeuvres left out.
- Positions: python-sgp4 ``Satrec`` (``sgp4init`` with the perturbed elements) at the
  emission time, iterated for light time; TEME -> GCRS by astropy; the station's GCRS
  position by astropy's ``EarthLocation.get_gcrs_posvel``; the topocentric direction
  made astrometric by astropy's GCRS -> ICRS for a direction (which takes out the annual
  aberration and the solar light bending that reference stars carry; the observer's own
  velocity is left at zero: diurnal aberration cancels between stars and satellite).
- Noise: 1-3 arcsec per coordinate (the tracklet states its sigma), timing jitter of
  2 ms (the time stamp is not the instant of the measurement).
- Some tracklets are of objects left out of the catalogue handed to the correlator.

Visibility is screened with a plain GMST rotation (elevation above 20 degrees, local
night by mean solar time); the screen only picks plausible geometry, it does not enter
the observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sgp4.api import WGS72, Satrec, SatrecArray
from sgp4.earth_gravity import wgs72

from aposos.model import Tracklet

C_KMS = 299792.458
ARCSEC_DEG = 1.0 / 3600.0
TIMING_JITTER_S = 0.002

# (code, latitude, longitude east, altitude m): the three network stations' sites
STATIONS = (
    ("IRN1", 33.674, 51.318, 3600.0),
    ("PAK1", 34.073, 73.387, 2450.0),
    ("PER1", -17.08, -70.87, 3000.0),
)

# along-track truth: |tau| scale = t0 + t1 * age (s, s/day); cross-track x = x0 + x1 * age (km)
TRUTH_ALONG = {"LEO": (0.1, 0.15), "MEO": (0.08, 0.05), "GEO": (0.5, 0.55), "HEO": (0.6, 0.8)}
TRUTH_CROSS = {"LEO": (0.1, 0.05), "MEO": (0.1, 0.05), "GEO": (0.7, 0.4), "HEO": (0.7, 0.4)}
# (min, max) span of a tracklet in seconds by class
SPANS = {"LEO": (5.0, 120.0), "MEO": (30.0, 600.0), "GEO": (60.0, 1800.0), "HEO": (30.0, 900.0)}
# SGP4 leaves out n_dot, but real objects follow it: between the two real snapshots the
# along-track offset is about -1.4 (+-40 %) times the drift d = n_dot age^2 / 2n for
# |d| up to about 10 s; beyond (decaying objects, orbit raising) it is unrelated, ~8 s
DRIFT_GAIN = 1.4
DRIFT_SCATTER = 0.4
DRIFT_TRUSTED_S = 10.0
DRIFT_UNKNOWN_S = 8.0
CLASS_SHARE = {"LEO": 0.55, "MEO": 0.15, "GEO": 0.22, "HEO": 0.08}
OBS_COUNTS = ((2, 0.1), (3, 0.2), (5, 0.5), (8, 0.2))
# objects closer than this (docked vehicles, tight formations) cannot be told apart by
# angles: a correct answer for them is "ambiguous" between the co-located objects
COLOCATED_KM = 2.0
# _colocated's grid (s) and a bound on any object's acceleration under SGP4 (km/s^2):
# gravity at one Earth radius (SGP4 fails below it), with 50 % to spare for J2 and drag
COLOCATED_GRID_S = 600.0
ACCEL_BOUND_KMS2 = 1.5 * wgs72.mu / wgs72.radiusearthkm**2


@dataclass
class TruthTracklet:
    tracklet: Tracklet
    norad_id: int  # the object that made it
    in_catalogue: bool
    orbit_class: str
    tau_s: float  # how far ahead of its catalogued prediction the object ran
    colocated: bool = False  # another catalogued object within COLOCATED_KM: inseparable


@dataclass
class TruthSet:
    catalogue_lines: list[str]  # 3LE lines of the catalogue to correlate against
    tracklets: list[TruthTracklet]
    sites: dict  # station code -> (lat, lon, alt)


def read_3le(path) -> list[tuple[str, str, str]]:
    data = Path(path).read_bytes()
    if str(path).endswith(".xz"):
        import lzma

        data = lzma.decompress(data)
    lines = [line for line in data.decode("ascii").splitlines() if line.strip()]
    return [(lines[i].strip(), lines[i + 1], lines[i + 2]) for i in range(0, len(lines), 3)]


def orbit_class(sat: Satrec) -> str:
    rev_per_day = sat.no_kozai * 1440.0 / (2.0 * math.pi)
    if sat.ecco >= 0.25:
        return "HEO"
    if 0.9 <= rev_per_day <= 1.1:
        return "GEO"
    return "LEO" if rev_per_day >= 6.4 else "MEO"


def _gmst_rad(jd_ut: np.ndarray) -> np.ndarray:
    # IAU 1982 GMST, good to far better than the screen needs
    t = (jd_ut - 2451545.0) / 36525.0
    sec = 67310.54841 + (876600.0 * 3600.0 + 8640184.812866) * t + 0.093104 * t**2
    return np.mod(np.radians(sec / 240.0), 2.0 * math.pi)


def _site_ecef_km(lat, lon, alt_m) -> np.ndarray:
    a, f = 6378.137, 1.0 / 298.257223563
    e2 = f * (2 - f)
    la, lo = math.radians(lat), math.radians(lon)
    n = a / math.sqrt(1 - e2 * math.sin(la) ** 2)
    h = alt_m / 1000.0
    return np.array(
        [
            (n + h) * math.cos(la) * math.cos(lo),
            (n + h) * math.cos(la) * math.sin(lo),
            (n * (1 - e2) + h) * math.sin(la),
        ]
    )


def _elevation_deg(r_teme, jd_ut, site) -> np.ndarray:
    lat, lon, alt = site
    g = _gmst_rad(jd_ut)
    c, s = np.cos(g), np.sin(g)
    x = c * r_teme[..., 0] + s * r_teme[..., 1]
    y = -s * r_teme[..., 0] + c * r_teme[..., 1]
    ecef = np.stack([x, y, r_teme[..., 2]], -1)
    d = ecef - _site_ecef_km(lat, lon, alt)
    la, lo = math.radians(lat), math.radians(lon)
    up = np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])
    return np.degrees(np.arcsin(np.sum(d * up, -1) / np.linalg.norm(d, axis=-1)))


def _perturbed(sat: Satrec, tau_s: float, cross_km: float, rng) -> Satrec:
    """The element set with the object ``tau_s`` ahead and its plane shifted ``cross_km``."""
    a_km = (398600.8 / (sat.no_kozai / 60.0) ** 2) ** (1.0 / 3.0)
    angle = cross_km / a_km  # rotation of the orbit plane, split between i and node
    phi = rng.uniform(0.0, 2.0 * math.pi)
    d_incl = angle * math.cos(phi)
    d_node = angle * math.sin(phi) / max(math.sin(sat.inclo), 0.05)
    # turning the node moves every point along track by r cos(i) d_node: give it back
    d_argp = -d_node * math.cos(sat.inclo)
    out = Satrec()
    out.sgp4init(
        WGS72,
        "i",
        sat.satnum,
        sat.jdsatepoch + sat.jdsatepochF - 2433281.5,
        sat.bstar,
        sat.ndot,
        sat.nddot,
        sat.ecco,
        sat.argpo + d_argp,
        sat.inclo + d_incl,
        math.fmod(sat.mo + sat.no_kozai * tau_s / 60.0, 2.0 * math.pi),
        sat.no_kozai,
        sat.nodeo + d_node,
    )
    return out


def _jd_split(t_jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    whole = np.floor(t_jd - 0.5) + 0.5
    return whole, t_jd - whole


def _astrometric(sats, obs_jd, station):
    """Astrometric RA/Dec (deg) of each satellite at its observation times (astropy)."""
    import astropy.units as u
    from astropy.coordinates import (
        GCRS,
        ICRS,
        TEME,
        CartesianRepresentation,
        EarthLocation,
        SkyCoord,
        UnitSphericalRepresentation,
    )
    from astropy.time import Time

    lat, lon, alt = station
    loc = EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, alt * u.m)
    flat_t = np.concatenate(obs_jd)
    owner = np.concatenate([np.full(len(t), k) for k, t in enumerate(obs_jd)])
    jd_whole = np.floor(flat_t - 0.5) + 0.5
    t_obs = Time(jd_whole, flat_t - jd_whole, format="jd", scale="utc")
    site_pos, _ = loc.get_gcrs_posvel(t_obs)
    site_km = site_pos.get_xyz().to_value(u.km).T
    lt = np.zeros(flat_t.size)
    for _ in range(3):
        t_emit = flat_t - lt / 86400.0
        r = np.empty((flat_t.size, 3))
        for k, sat in enumerate(sats):
            sel = owner == k
            jd, fr = _jd_split(t_emit[sel])
            e, rk, _ = sat.sgp4_array(jd, fr)
            if np.any(e):
                raise RuntimeError(f"truth propagation failed for {sat.satnum}")
            r[sel] = rk
        je, fe = _jd_split(t_emit)
        t_e = Time(je, fe, format="jd", scale="utc")
        teme = TEME(CartesianRepresentation(r.T * u.km), obstime=t_e)
        gcrs = teme.transform_to(GCRS(obstime=t_e))
        topo = gcrs.cartesian.get_xyz().to_value(u.km).T - site_km
        lt = np.linalg.norm(topo, axis=1) / C_KMS
    direction = UnitSphericalRepresentation.from_cartesian(CartesianRepresentation(topo.T))
    observed = SkyCoord(
        GCRS(direction, obstime=t_obs, obsgeoloc=site_pos, obsgeovel=[0, 0, 0] * u.km / u.s)
    )
    icrs = observed.transform_to(ICRS())
    ra, dec = icrs.ra.deg, icrs.dec.deg
    cuts = np.cumsum([len(t) for t in obs_jd])[:-1]
    return np.split(ra, cuts), np.split(dec, cuts)


def _configure_astropy_offline():
    from astropy.utils import data, iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    data.conf.allow_internet = False


def build_truth_set(tle_path, **options) -> TruthSet:
    """:func:`make_truth_set`, kept in the on-disk test cache (``tests/diskcache.py``):
    keyed by this file, ``aposos/model.py``, the 3LE files, the versions of the
    packages that compute it and the options, so it is made again when any changes."""
    import diskcache

    inputs = [tle_path] + ([options["catalogue_path"]] if options.get("catalogue_path") else [])
    digest = diskcache.key(
        "truthset",
        sources=[__file__, Path(__file__).parents[1] / "aposos" / "model.py"],
        inputs=inputs,
        packages=("sgp4", "astropy", "astropy-iers-data", "pyerfa", "numpy"),
        args=sorted(options.items()),
    )
    return diskcache.cached(digest, lambda: make_truth_set(tle_path, **options))


def make_truth_set(
    tle_path,
    *,
    n_tracklets: int = 300,
    missing_fraction: float = 0.12,
    nights=((2459125.5, 0.67), (2459129.5, 0.33)),  # 2020-10-03, 2020-10-07 (UTC days)
    seed: int = 0,
    perturb: bool = True,
    noise: bool = True,
    catalogue_path=None,
    max_epoch_offset_days: float | None = None,
    class_share: dict | None = None,
    include_all_missing: bool = False,
) -> TruthSet:
    """Tracklets of real objects seen from the three stations, with the truth.

    Parameters
    ----------
    tle_path : 3LE file whose element sets the objects follow (perturbed if ``perturb``).
    n_tracklets : how many tracklets (about; objects that never rise are skipped).
    missing_fraction : share of tracklets from objects left out of the catalogue.
    nights : (UTC day start JD, share of tracklets) pairs.
    perturb : perturb the element sets as real TLEs err (else observe them exactly).
    noise : add measurement noise and timing jitter (else exact directions, sigma 1").
    catalogue_path : 3LE of the catalogue to correlate against (default ``tle_path``);
        objects absent from it count as missing.
    max_epoch_offset_days : observe an object only this close to the epoch of its
        element set in ``tle_path`` (where that element set is at its best).
    class_share : share of tracklets by orbit class (default :data:`CLASS_SHARE`).
    include_all_missing : with ``catalogue_path``, try every object absent from that
        catalogue (new launches are few; the goal on them needs them all).
    """
    _configure_astropy_offline()
    rng = np.random.default_rng(seed)
    records = read_3le(tle_path)
    sats = [Satrec.twoline2rv(l1, l2) for _, l1, l2 in records]
    classes = np.array([orbit_class(s) for s in sats])
    cat_records = records if catalogue_path is None else read_3le(catalogue_path)
    cat_ids = {Satrec.twoline2rv(l1, l2).satnum for _, l1, l2 in cat_records}

    # choose objects per class; some are left out of the catalogue
    chosen = []
    for name, share in (class_share or CLASS_SHARE).items():
        pool = np.flatnonzero(classes == name)
        factor = 1.3 if max_epoch_offset_days is None else 3.0
        take = min(pool.size, int(round(factor * share * n_tracklets)))
        chosen += rng.choice(pool, take, replace=False).tolist()
    chosen = np.array(chosen)
    rng.shuffle(chosen)
    if include_all_missing and catalogue_path is not None:
        absent = [i for i, s in enumerate(sats) if s.satnum not in cat_ids]
        chosen = np.concatenate([absent, np.setdiff1d(chosen, absent)]).astype(np.int64)
    missing_ids = set()
    if catalogue_path is None:
        n_missing = int(round(missing_fraction * n_tracklets))
        missing_ids = {sats[i].satnum for i in chosen[:n_missing]}
        cat_ids -= missing_ids

    # candidate observing minutes of each night; station dark by mean solar time
    night_of = rng.choice(len(nights), chosen.size, p=[share for _, share in nights])
    picks = []  # (object index, station, start JD)
    screen = SatrecArray([sats[i] for i in chosen])
    for night, (day_jd, _) in enumerate(nights):
        minutes = day_jd + np.arange(0, 1440, 2) / 1440.0
        jd, fr = _jd_split(minutes)
        e, r, _ = screen.sgp4(jd, fr)
        for k, obj in enumerate(chosen):
            if night_of[k] != night:
                continue
            options = []
            for st, (_, lat, lon, alt) in enumerate(STATIONS):
                solar_h = np.mod((minutes - day_jd) * 24.0 + lon / 15.0, 24.0)
                dark = (solar_h > 19.5) | (solar_h < 4.5)
                el = _elevation_deg(r[k], minutes, (lat, lon, alt))
                ok = dark & (el > 25.0) & (e[k] == 0)
                if max_epoch_offset_days is not None:
                    epoch = sats[obj].jdsatepoch + sats[obj].jdsatepochF
                    ok &= np.abs(minutes - epoch) <= max_epoch_offset_days
                options += [(st, m) for m in np.flatnonzero(ok)]
            if options:
                st, m = options[rng.integers(len(options))]
                picks.append((obj, st, minutes[m] + rng.uniform(0, 60) / 86400.0))
    picks = picks[:n_tracklets]

    # the true orbits and the observation times
    truths, obs_times, stations, taus = [], [], [], []
    for obj, st, start in picks:
        sat, name = sats[obj], classes[obj]
        age = abs(start - (sat.jdsatepoch + sat.jdsatepochF))
        tau = cross = 0.0
        if perturb:
            t0, t1 = TRUTH_ALONG[name]
            x0, x1 = TRUTH_CROSS[name]
            drift_s = 0.5 * sat.ndot * (age * 1440.0) ** 2 / sat.no_kozai * 60.0
            tau = rng.normal(0.0, t0 + t1 * age)
            if abs(drift_s) <= DRIFT_TRUSTED_S:
                tau -= DRIFT_GAIN * drift_s * (1.0 + DRIFT_SCATTER * rng.normal())
            else:
                tau += rng.normal(0.0, DRIFT_UNKNOWN_S)
            cross = rng.normal(0.0, x0 + x1 * age)
        truth_sat = _perturbed(sat, tau, cross, rng) if perturb else sat
        n_obs = int(rng.choice([c for c, _ in OBS_COUNTS], p=[p for _, p in OBS_COUNTS]))
        lo, hi = SPANS[name]
        span = rng.uniform(lo, hi)
        steps = np.sort(rng.uniform(0.0, 1.0, n_obs - 2)) if n_obs > 2 else np.zeros(0)
        offsets = np.concatenate([[0.0], steps, [1.0]]) * span
        truths.append(truth_sat)
        obs_times.append(start + offsets / 86400.0)
        stations.append(st)
        taus.append(tau)

    # observe: timing jitter (the stamp is not the measurement instant), then astropy
    stamp_times = obs_times
    jitter_s = TIMING_JITTER_S if noise else 0.0
    true_times = [t + rng.normal(0.0, jitter_s, t.size) / 86400.0 for t in stamp_times]
    ra = [None] * len(truths)
    dec = [None] * len(truths)
    for st, station in enumerate(STATIONS):
        members = [k for k in range(len(truths)) if stations[k] == st]
        if not members:
            continue
        r_, d_ = _astrometric(
            [truths[k] for k in members], [true_times[k] for k in members], station[1:]
        )
        for k, a, b in zip(members, r_, d_, strict=True):
            ra[k], dec[k] = a, b

    colocated = _colocated(
        [sats[obj] for obj, _, _ in picks],
        np.array([t[t.size // 2] for t in stamp_times]),
        [s for s in sats if s.satnum in cat_ids],
    )
    out = []
    for k, (obj, st, _) in enumerate(picks):
        sigma = rng.uniform(1.0, 3.0) if noise else 1.0
        n = stamp_times[k].size
        scale = sigma * ARCSEC_DEG if noise else 0.0
        d_dec = rng.normal(0.0, 1.0, n) * scale
        d_ra = rng.normal(0.0, 1.0, n) * scale / np.cos(np.radians(dec[k]))
        jd, fr = _jd_split(stamp_times[k])
        us = np.round((jd - 2440587.5 + fr) * 86400e6).astype(np.int64)
        trk = Tracklet(
            station=STATIONS[st][0],
            utc=us.astype("datetime64[us]"),
            ra_deg=ra[k] + d_ra,
            dec_deg=dec[k] + d_dec,
            sigma_arcsec=sigma,
        )
        norad = int(sats[obj].satnum)
        out.append(
            TruthTracklet(
                trk, norad, norad in cat_ids, str(classes[obj]), float(taus[k]), bool(colocated[k])
            )
        )

    lines = []
    for name, l1, l2 in cat_records:
        if Satrec.twoline2rv(l1, l2).satnum in cat_ids:
            lines += [name, l1, l2]
    sites = {code: (lat, lon, alt) for code, lat, lon, alt in STATIONS}
    return TruthSet(lines, out, sites)


def _colocated(truth_sats, mid_jd, catalogue_sats) -> np.ndarray:
    """Whether another catalogued object is within COLOCATED_KM of each object.

    Judged on the catalogued (unperturbed) element sets: objects the catalogue itself
    puts on top of each other. Exact, and cheap: every object is propagated on a grid of
    ``COLOCATED_GRID_S`` only; the separation at a tracklet's time, interpolated from the
    two grid times around it, is off by at most ``h^2 a / 4`` (``a`` bounds each
    object's acceleration), so only objects the grid puts within that much of the
    object are propagated at the tracklet's time.
    """
    mid_jd = np.asarray(mid_jd, dtype=float)
    out = np.zeros(len(truth_sats), dtype=bool)
    if not len(truth_sats):
        return out
    step = COLOCATED_GRID_S / 86400.0
    cell = np.floor((mid_jd - mid_jd.min()) / step).astype(np.int64)
    knots = np.unique(np.concatenate([cell, cell + 1]))
    knot_jd, knot_fr = _jd_split(mid_jd.min() + knots * step)
    e, r, _ = SatrecArray(catalogue_sats).sgp4(knot_jd, knot_fr)
    r = np.where((e == 0)[..., None], r, np.nan)  # failed: no bound, always looked at
    r = np.ascontiguousarray(r.transpose(1, 0, 2))  # grid time, object, xyz
    reach = COLOCATED_KM + COLOCATED_GRID_S**2 * ACCEL_BOUND_KMS2 / 4.0
    ids = np.array([s.satnum for s in catalogue_sats])
    jd, fr = _jd_split(mid_jd)
    for k, sat in enumerate(truth_sats):
        a = np.searchsorted(knots, cell[k])
        f = (mid_jd[k] - (knot_jd[a] + knot_fr[a])) / step
        ends = [np.asarray(sat.sgp4(knot_jd[i], knot_fr[i])[1]) for i in (a, a + 1)]
        sep = (1.0 - f) * r[a] + f * r[a + 1] - ((1.0 - f) * ends[0] + f * ends[1])
        near = ~(np.einsum("ij,ij->i", sep, sep) >= reach**2) & (ids != sat.satnum)
        at = [catalogue_sats[j].sgp4(jd[k], fr[k]) for j in np.flatnonzero(near)]
        rj = np.array([rj if ej == 0 else (np.nan,) * 3 for ej, rj, _ in at]).reshape(-1, 3)
        d = np.linalg.norm(rj - np.asarray(sat.sgp4(jd[k], fr[k])[1]), axis=1)
        out[k] = bool(np.nanmin(d, initial=np.inf) < COLOCATED_KM)
    return out


def score_truth(results, truth: list[TruthTracklet]) -> dict:
    """Counts and rates the goals are stated in (right, wrong, uncorrelated, ambiguous).

    Tracklets of co-located objects (another catalogued object within 2 km: docked
    vehicles, tight formations) are counted apart: angles cannot tell such objects apart,
    and the right answer for them is ``ambiguous``.
    """
    pairs = list(zip(results, truth, strict=True))
    colocated = [(r, t) for r, t in pairs if t.colocated]
    listed = [(r, t) for r, t in pairs if t.in_catalogue and not t.colocated]
    missing = [(r, t) for r, t in pairs if not t.in_catalogue and not t.colocated]
    correct = sum(r.status == "correlated" and r.norad_id == t.norad_id for r, t in listed)
    wrong = sum(r.status == "correlated" and r.norad_id != t.norad_id for r, t in listed + missing)
    missing_uct = sum(r.status == "uncorrelated" for r, _ in missing)
    return {
        "colocated": len(colocated),
        "colocated_ambiguous_or_right": sum(
            r.status == "ambiguous" or (r.status == "correlated" and r.norad_id == t.norad_id)
            for r, t in colocated
        ),
        "listed": len(listed),
        "missing": len(missing),
        "correct": correct,
        "confidently_wrong": wrong,
        "missing_uncorrelated": missing_uct,
        "correct_rate": correct / max(len(listed), 1),
        "wrong_rate": wrong / max(len(results), 1),
        "missing_uncorrelated_rate": missing_uct / max(len(missing), 1),
    }
