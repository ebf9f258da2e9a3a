"""aposos.orbit.frames against outside authorities: astropy/erfa, python-sgp4 and skyfield.

TEME states come from python-sgp4 for real element sets (CelesTrak snapshot of 2020-09-30 in
tests/data/shared). Each numba kernel is also compared with a plain-numpy naive version.
"""

from __future__ import annotations

import logging
from pathlib import Path

import astropy.units as u
import astropy_iers_data
import erfa
import numpy as np
import pytest
from astropy.coordinates import (
    GCRS,
    ITRS,
    TEME,
    AltAz,
    CartesianRepresentation,
    EarthLocation,
    get_body_barycentric,
    get_body_barycentric_posvel,
    get_sun,
)
from astropy.time import Time
from astropy.utils import iers
from sgp4.api import Satrec

from aposos import timeutil
from aposos.model import Site
from aposos.orbit import frames

pytestmark = pytest.mark.kernel  # also run with NUMBA_DISABLE_JIT=1 by make test

one_arcsec = 1.0 / 3600.0
one_mas_rad = np.radians(1e-3 / 3600.0)
one_metre_km = 1e-3
C_KMS = 299792.458

CATALOGUE = (
    Path(__file__).resolve().parent
    / "data"
    / "shared"
    / "catalogues"
    / "celestrak-active-2020-09-30.3le"
)
LEO, GEO, HEO = 25544, 26824, 37398  # ISS, INTELSAT 901, MERIDIAN 4
TEHRAN = Site(35.67, 51.42, 1200.0)
AREQUIPA = Site(-16.4656, -71.4930, 2450.0)


@pytest.fixture(scope="module")
def satellites() -> dict[int, Satrec]:
    lines = CATALOGUE.read_text().splitlines()
    found = {}
    for i in range(0, len(lines) - 2, 3):
        norad = int(lines[i + 1][2:7])
        if norad in (LEO, GEO, HEO):
            found[norad] = Satrec.twoline2rv(lines[i + 1], lines[i + 2])
    assert sorted(found) == sorted((LEO, GEO, HEO))
    return found


def epoch_times(sat: Satrec, n: int, span_days: float):
    """n UTC (jd, fr) times from the element set's epoch on."""
    fr = sat.jdsatepochF + np.linspace(0.0, span_days, n)
    return np.full(n, sat.jdsatepoch), fr


def location(site: Site) -> EarthLocation:
    return EarthLocation.from_geodetic(
        site.longitude_deg * u.deg, site.latitude_deg * u.deg, site.altitude_m * u.m
    )


def angle_rad(a, b):
    """Angle between vectors along the last axis, precise at small angles."""
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    return np.arctan2(cross, np.sum(a * b, axis=-1))


def astropy_teme_to(frame_cls, r_km, t):
    teme = TEME(CartesianRepresentation(np.asarray(r_km).T * u.km), obstime=t)
    return teme.transform_to(frame_cls(obstime=t)).cartesian.xyz.to_value(u.km).T


# --- rotation matrices and per-time quantities -----------------------------------------


@pytest.mark.parametrize("target", ["gcrs", "itrs"])
def test_teme_matrices_match_astropy(target):
    jd, fr = np.full(9, 2459123.5), np.linspace(0.0, 700.0, 9)  # 2020 to 2022
    x = np.random.default_rng(3).normal(size=(9, 3)) * 7000.0
    t = Time(jd, fr, format="jd", scale="utc")
    if target == "gcrs":
        m, reference = frames.teme_to_gcrs_matrices(jd, fr), astropy_teme_to(GCRS, x, t)
    else:
        m, reference = frames.teme_to_itrs_matrices(jd, fr), astropy_teme_to(ITRS, x, t)
    assert np.allclose(m @ np.swapaxes(m, 1, 2), np.eye(3), atol=1e-15)
    assert angle_rad(np.einsum("tij,tj->ti", m, x), reference).max() < one_mas_rad


def test_gcrs_to_itrs_matches_astropy():
    jd, fr = np.full(5, 2459123.5), np.linspace(0.0, 3.0, 5)
    x = np.random.default_rng(4).normal(size=(5, 3)) * 7000.0
    t = Time(jd, fr, format="jd", scale="utc")
    gcrs = GCRS(CartesianRepresentation(x.T * u.km), obstime=t)
    reference = gcrs.transform_to(ITRS(obstime=t)).cartesian.xyz.to_value(u.km).T
    ours = np.einsum("tij,tj->ti", frames.gcrs_to_itrs_matrices(jd, fr), x)
    assert angle_rad(ours, reference).max() < one_mas_rad


def test_site_gcrs_posvel_matches_astropy():
    jd, fr = np.full(6, 2459123.5), np.linspace(0.0, 1.0, 6)
    r, v = frames.site_gcrs_posvel_km(AREQUIPA, jd, fr)
    r_ref, v_ref = location(AREQUIPA).get_gcrs_posvel(Time(jd, fr, format="jd", scale="utc"))
    assert np.abs(r - r_ref.xyz.to_value(u.km).T).max() < one_metre_km / 1000.0
    assert np.abs(v - v_ref.xyz.to_value(u.km / u.s).T).max() < 1e-9


def test_earth_velocity_and_sun_match_astropy():
    jd, fr = np.full(5, 2459123.5), np.linspace(0.0, 200.0, 5)
    t = Time(jd, fr, format="jd", scale="utc")
    earth_p, earth_v = get_body_barycentric_posvel("earth", t)
    sun = (get_body_barycentric("sun", t) - earth_p).xyz.to_value(u.km).T
    v = frames.earth_velocity_bcrs_kms(jd, fr)
    assert np.abs(v - earth_v.xyz.to_value(u.km / u.s).T).max() < 1e-6  # 1 mm/s
    assert np.abs(frames.sun_gcrs_km(jd, fr) - sun).max() < 1.0


def test_knot_interpolation_matches_exact_per_time_values():
    # 120 times in 2 h take the interpolated path; one time at a time is exact.
    jd, fr = np.full(120, 2459123.5), np.linspace(0.1, 0.1 + 2.0 / 24.0, 120)
    m = frames.teme_to_gcrs_matrices(jd, fr)
    v, sun = frames.earth_velocity_bcrs_kms(jd, fr), frames.sun_gcrs_km(jd, fr)
    for k in range(0, 120, 7):
        exact = frames.teme_to_gcrs_matrices(jd[k : k + 1], fr[k : k + 1])[0]
        assert np.abs(m[k] - exact).max() < one_mas_rad / 1000.0  # 1 micro-arcsecond
        assert np.abs(v[k] - frames.earth_velocity_bcrs_kms(jd[k], fr[k])[0]).max() < 1e-6
        assert np.abs(sun[k] - frames.sun_gcrs_km(jd[k], fr[k])[0]).max() < 1.0  # 0.0014" at 1 au


# --- RA/Dec and Az/El against astropy -------------------------------------------------


def astropy_astrometric_radec(sat: Satrec, jd, fr, site: Site):
    """Our definition computed with astropy, erfa and python-sgp4 (re-propagating for the
    light time rather than extrapolating)."""
    t = Time(jd, fr, format="jd", scale="utc")
    station, _ = location(site).get_gcrs_posvel(t)
    station = station.xyz.to_value(u.km).T
    tau = np.zeros(len(jd))
    for _ in range(3):
        t_emit = t - tau * u.s
        _, r_emit, _ = sat.sgp4_array(jd, fr - tau / 86400.0)
        rho = astropy_teme_to(GCRS, r_emit, t_emit) - station
        tau = np.linalg.norm(rho, axis=1) / C_KMS
    earth_p, earth_v = get_body_barycentric_posvel("earth", t)
    sun_distance_au = (get_body_barycentric("sun", t) - earth_p).norm().to_value(u.au)
    beta = -earth_v.xyz.to_value(u.km / u.s).T / C_KMS  # reversed: take out the stars' share
    bm1 = np.sqrt(1.0 - np.sum(beta**2, axis=1))
    direction = rho / np.linalg.norm(rho, axis=1)[:, None]
    apparent = erfa.ab(direction, beta, sun_distance_au, bm1)
    return apparent, direction, np.linalg.norm(rho, axis=1)


def unit_vectors(ra_deg, dec_deg):
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


@pytest.mark.parametrize(
    ("norad", "site", "span_days"),
    [(LEO, TEHRAN, 0.25), (LEO, AREQUIPA, 0.25), (GEO, TEHRAN, 1.0), (HEO, AREQUIPA, 0.5)],
)
def test_radec_matches_astropy_definition(satellites, norad, site, span_days):
    sat = satellites[norad]
    jd, fr = epoch_times(sat, 12, span_days)
    e, r, v = sat.sgp4_array(jd, fr)
    assert not e.any()
    ra, dec, rng = frames.radec_from_teme(r[None], v[None], jd, fr, site)
    apparent, geometric, rng_ref = astropy_astrometric_radec(sat, jd, fr, site)
    ours = unit_vectors(ra[0], dec[0])
    assert np.degrees(angle_rad(ours, apparent)).max() < 0.1 * one_arcsec
    assert np.abs(rng[0] - rng_ref).max() < one_metre_km
    # The test can tell: leaving out the aberration would fail it by ~20".
    assert np.degrees(angle_rad(ours, geometric)).max() > 5.0 * one_arcsec


@pytest.mark.parametrize(("norad", "site"), [(LEO, TEHRAN), (GEO, AREQUIPA), (HEO, TEHRAN)])
def test_azel_matches_astropy_altaz(satellites, norad, site):
    # Apples to apples: astropy's AltAz from a topocentric ITRS vector is geometric (no
    # aberration, and no refraction with pressure=0); from GCRS it would add aberration.
    sat = satellites[norad]
    jd, fr = epoch_times(sat, 15, 0.5)
    _, r, _ = sat.sgp4_array(jd, fr)
    az, el, rng = frames.azel_from_teme(r[None], jd, fr, site)
    t = Time(jd, fr, format="jd", scale="utc")
    loc = location(site)
    geocentric = TEME(CartesianRepresentation(r.T * u.km), obstime=t).transform_to(ITRS(obstime=t))
    topocentric = ITRS(geocentric.cartesian - loc.get_itrs(t).cartesian, obstime=t, location=loc)
    altaz = topocentric.transform_to(AltAz(obstime=t, location=loc, pressure=0.0 * u.hPa))
    d_az = (az[0] - altaz.az.deg + 180.0) % 360.0 - 180.0
    assert np.abs(d_az * np.cos(altaz.alt.rad)).max() < one_arcsec
    assert np.abs(el[0] - altaz.alt.deg).max() < one_arcsec
    assert np.abs(rng[0] - altaz.distance.to_value(u.km)).max() < one_metre_km


# --- sunlit and darkness -------------------------------------------------------------


@pytest.fixture(scope="module")
def skyfield_de421():
    """skyfield's loader on the DE421 file of skyfield-data (offline) and its timescale."""
    import warnings

    from skyfield.api import Loader
    from skyfield_data import get_skyfield_data_path

    with warnings.catch_warnings():
        # skyfield-data warns that its own finals2000A.all has expired; unused here.
        warnings.filterwarnings("ignore", "The file finals2000A.all has expired")
        load = Loader(get_skyfield_data_path(), verbose=False)
    ephemeris = load("de421.bsp")
    yield ephemeris, load.timescale(builtin=True)
    ephemeris.close()


@pytest.mark.parametrize("norad", [LEO, GEO])
def test_sunlit_matches_skyfield(satellites, skyfield_de421, norad):
    from skyfield.api import EarthSatellite
    from skyfield.positionlib import ERAD

    ephemeris, ts = skyfield_de421
    sat = satellites[norad]
    jd, fr = epoch_times(sat, 1441, 1.0)  # a day, every minute
    _, r, _ = sat.sgp4_array(jd, fr)
    ours = frames.sunlit(r[None], jd, fr)[0]

    t = ts.tt_jd(*timeutil.utc_to_tt(jd, fr))
    position = EarthSatellite.from_satrec(sat, ts).at(t)
    reference = position.is_sunlit(ephemeris)
    # Margin of the Sun's centre above the Earth's limb, seen from the satellite.
    sat_m = position.xyz.m.T
    sun_m = (ephemeris["sun"] - ephemeris["earth"]).at(t).xyz.m.T
    margin = angle_rad(sun_m - sat_m, -sat_m) - np.arcsin(ERAD / np.linalg.norm(sat_m, axis=1))
    clear = np.abs(np.degrees(margin)) > 0.01
    assert np.array_equal(ours[clear], reference[clear])
    assert ours.mean() > 0.5 and (~ours).sum() >= 10  # both states occur (eclipse season)


def test_station_dark_matches_astropy_sun():
    jd, fr = np.full(145, 2459123.5), np.linspace(0.0, 1.0, 145)
    t = Time(jd, fr, format="jd", scale="utc")
    loc = location(TEHRAN)
    # astropy's get_sun is apparent (light time, aberration: ~20"); ours geometric.
    reference = get_sun(t).transform_to(AltAz(obstime=t, location=loc, pressure=0.0 * u.hPa))
    altitude = frames.sun_altitude_deg(TEHRAN, jd, fr)
    assert np.abs(altitude - reference.alt.deg).max() < 60.0 * one_arcsec
    dark = frames.station_dark(TEHRAN, jd, fr)
    clear = np.abs(reference.alt.deg + 18.0) > 0.02
    assert np.array_equal(dark[clear], (reference.alt.deg < -18.0)[clear])
    assert 0 < dark.sum() < dark.size
    civil = frames.station_dark(TEHRAN, jd, fr, sun_altitude_deg=-6.0)
    assert civil.sum() > dark.sum()


# --- IERS predictions ------------------------------------------------------------------


@pytest.fixture
def fresh_iers_table():
    coverage = timeutil.refresh_iers(astropy_iers_data.IERS_A_FILE)  # re-arms the warnings
    yield coverage
    iers.earth_orientation_table.set(None)


def test_frame_past_the_measured_iers_range_uses_predictions(fresh_iers_table, caplog):
    mjd = fresh_iers_table.last_measured_mjd + 40.0
    jd, fr = np.full(3, 2400000.5 + mjd), np.array([0.1, 0.2, 0.3])
    x = np.random.default_rng(5).normal(size=(3, 3)) * 7000.0
    with caplog.at_level(logging.WARNING, logger="aposos.timeutil"):
        m = frames.teme_to_gcrs_matrices(jd, fr)
        frames.teme_to_gcrs_matrices(jd, fr)
        frames.radec_from_teme(x[None], np.zeros((1, 3, 3)), jd, fr, TEHRAN)
    warned = [rec for rec in caplog.records if rec.name == "aposos.timeutil"]
    assert len(warned) == 1 and "predictions" in warned[0].getMessage()
    reference = astropy_teme_to(GCRS, x, Time(jd, fr, format="jd", scale="utc"))
    assert angle_rad(np.einsum("tij,tj->ti", m, x), reference).max() < one_mas_rad


# --- kernels against naive numpy versions ------------------------------------------------


def naive_radec(r, v, jd, fr, site):
    m = frames.teme_to_gcrs_matrices(jd, fr)
    station, _ = frames.site_gcrs_posvel_km(site, jd, fr)
    beta = -frames.earth_velocity_bcrs_kms(jd, fr) / C_KMS
    r_g, v_g = np.einsum("tij,otj->oti", m, r), np.einsum("tij,otj->oti", m, v)
    rho = r_g - station
    for _ in range(2):
        tau = np.linalg.norm(rho, axis=-1, keepdims=True) / C_KMS
        rho = r_g - v_g * tau - station
    distance = np.linalg.norm(rho, axis=-1)
    bm1 = np.sqrt(1.0 - np.sum(beta**2, axis=-1))
    q = erfa.ab(rho / distance[..., None], beta, 1e30, bm1)  # no solar term
    ra = np.degrees(np.arctan2(q[..., 1], q[..., 0])) % 360.0
    return ra, np.degrees(np.arcsin(q[..., 2])), distance


def naive_azel(r, jd, fr, site):
    r_itrs = np.einsum("tij,otj->oti", frames.teme_to_itrs_matrices(jd, fr), r)
    d = r_itrs - site.itrs_km()
    lat, lon = np.radians(site.latitude_deg), np.radians(site.longitude_deg)
    east = -np.sin(lon) * d[..., 0] + np.cos(lon) * d[..., 1]
    north = (
        -np.sin(lat) * np.cos(lon) * d[..., 0]
        - np.sin(lat) * np.sin(lon) * d[..., 1]
        + np.cos(lat) * d[..., 2]
    )
    up = np.cos(lat) * (np.cos(lon) * d[..., 0] + np.sin(lon) * d[..., 1]) + np.sin(lat) * d[..., 2]
    az = np.degrees(np.arctan2(east, north)) % 360.0
    return az, np.degrees(np.arctan2(up, np.hypot(east, north))), np.linalg.norm(d, axis=-1)


def naive_sunlit_margin(r, jd, fr):
    """Angle of the Sun's centre above the Earth's limb seen from the object (rad)."""
    r_g = np.einsum("tij,otj->oti", frames.teme_to_gcrs_matrices(jd, fr), r)
    sun = frames.sun_gcrs_km(jd, fr)
    radius = np.arcsin(frames.EARTH_RADIUS_KM / np.linalg.norm(r_g, axis=-1))
    return angle_rad(sun - r_g, -r_g) - radius


def random_states(n_obj, n_t, seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(n_obj, n_t, 3))
    r *= (rng.uniform(6600.0, 45000.0, size=(n_obj, n_t)) / np.linalg.norm(r, axis=-1))[..., None]
    v = rng.normal(size=(n_obj, n_t, 3)) * 4.0
    if n_obj > 1 and n_t > 0:
        r[1, n_t // 2] = np.nan  # a propagation error
    return r, v


SHAPES = [(37, 1), (5, 7), (3, 64), (2, 300), (0, 4), (3, 0)]  # both block layouts, runs > 256


@pytest.mark.parametrize("driver", ["serial", "parallel"])
@pytest.mark.parametrize(("n_obj", "n_t"), SHAPES)
def test_kernels_match_naive_numpy(n_obj, n_t, driver, monkeypatch):
    threshold = 0 if driver == "parallel" else 10**9  # batch size that picks the driver
    monkeypatch.setattr(frames, "_SERIAL_BELOW_POINTS", threshold)
    r, v = random_states(n_obj, n_t, seed=n_obj * 1000 + n_t)
    jd, fr = np.full(n_t, 2459123.5), np.linspace(0.0, 0.3, n_t)
    for ours, naive, tolerance in (
        (frames.radec_from_teme(r, v, jd, fr, TEHRAN), naive_radec(r, v, jd, fr, TEHRAN), 1e-9),
        (frames.azel_from_teme(r, jd, fr, AREQUIPA), naive_azel(r, jd, fr, AREQUIPA), 1e-9),
    ):
        for a, b in zip(ours, naive, strict=True):
            assert a.shape == (n_obj, n_t)
            assert np.array_equal(np.isnan(a), np.isnan(b))
            diff = np.abs(a - b)
            diff = np.minimum(diff, 360.0 - diff)  # angles wrap
            assert np.nan_to_num(diff).max(initial=0.0) < tolerance
    lit = frames.sunlit(r, jd, fr)
    margin = naive_sunlit_margin(r, jd, fr)
    assert lit.shape == (n_obj, n_t)
    decided = np.abs(np.nan_to_num(margin, nan=1.0)) > 1e-9
    assert np.array_equal(lit[decided], (np.nan_to_num(margin, nan=-1.0) > 0.0)[decided])
    if n_obj > 1 and n_t > 0:
        assert np.isnan(frames.radec_from_teme(r, v, jd, fr, TEHRAN)[0][1, n_t // 2])
        assert not lit[1, n_t // 2]


def test_atan2_matches_numpy():
    rng = np.random.default_rng(7)
    y = np.concatenate([rng.normal(size=4000), [0.0, 1.0, -1.0, 0.0, -0.0, 1e-300, 3.0, -2.0]])
    x = np.concatenate([rng.normal(size=4000), [1.0, 0.0, 0.0, -1.0, -1.0, 1.0, 3.0, -2.0]])
    ours = np.array([frames._atan2(a, b) for a, b in zip(y, x, strict=True)])
    error = (ours - np.arctan2(y, x) + np.pi) % (2.0 * np.pi) - np.pi  # -0.0 gives +pi, not -pi
    assert np.abs(error).max() < 2e-15
    assert frames._atan2(0.0, 0.0) == 0.0


def test_bad_input_is_named():
    jd, fr = np.full(3, 2459123.5), np.zeros(3)
    with pytest.raises(ValueError, match=r"r_teme_km must have shape \(n_obj, 3, 3\)"):
        frames.radec_from_teme(np.zeros((2, 4, 3)), np.zeros((2, 3, 3)), jd, fr, TEHRAN)
    with pytest.raises(ValueError, match=r"v_teme_kms"):
        frames.radec_from_teme(np.zeros((2, 3, 3)), np.zeros((2, 3)), jd, fr, TEHRAN)
    with pytest.raises(ValueError, match="not finite"):
        frames.sunlit(np.zeros((1, 3, 3)), jd, [0.0, np.inf, 0.0])
