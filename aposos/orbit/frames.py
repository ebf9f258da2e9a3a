"""TEME -> ITRS / GCRS, topocentric RA/Dec and Az/El, light time, sunlit and darkness tests.

Per-time quantities (rotation matrices, station position, Earth velocity, Sun) come from
erfa at the Python boundary, vectorised over the time axis; the per-point work (objects x
times) runs in numba kernels. Times are UTC ``(jd, fr)`` splits as python-sgp4 takes them,
or, where ``fr`` is left out, any time :func:`aposos.timeutil.to_jd_fr` takes (datetime64,
ISO text, astropy or skyfield ``Time``); absurd dates are refused there with a clear message.
UT1 and polar motion come from the IERS tables through :mod:`aposos.timeutil`.

Conventions
-----------
- TEME -> ITRS as in Vallado et al. (2006) ``teme2ecef`` and astropy: rotation by GMST 1982
  of UT1, then polar motion ``W(xp, yp, s'=0)``.
- ITRS -> GCRS with the IAU 2006/2000A CIO-based chain (``pnm06a``, ``s06``, ERA of UT1,
  ``W(xp, yp, s')``), as astropy does; the IERS celestial-pole offsets dX, dY (< 0.5 mas)
  are left out, as astropy leaves them out.
- Precession-nutation and the Earth's barycentric state change slowly: for many closely
  spaced times they are computed exactly on knots 10 minutes apart and interpolated
  linearly (error below 1 micro-arcsecond; the tests compare both ways).

Kernels: the (object, time) points are processed in blocks of 256 (see ``_blocks``) so that
the inner loops run over contiguous rows and vectorise; ``atan2`` is a branch-free
polynomial for the same reason. Each driver exists serial and parallel; small batches take
the serial one.
"""

from __future__ import annotations

import math

import erfa
import numpy as np
from numba import prange

from aposos.model import Site
from aposos.orbit.jit import inline_kernel, kernel, parallel_kernel
from aposos.timeutil import as_jd_fr, polar_motion_rad, utc_to_tt, utc_to_ut1

__all__ = [
    "azel_from_teme",
    "earth_velocity_bcrs_kms",
    "gcrs_to_itrs_matrices",
    "observation_frames",
    "radec_from_teme",
    "site_gcrs_posvel_km",
    "station_dark",
    "sun_altitude_deg",
    "sun_gcrs_km",
    "sunlit",
    "teme_to_gcrs_matrices",
    "teme_to_itrs_matrices",
]

C_KMS = 299792.458
AU_KM = 149597870.700
SECONDS_PER_DAY = 86400.0
OMEGA_EARTH_RAD_S = 2.0 * math.pi * 1.00273781191135448 / 86400.0  # rate of the ERA (UT1)
EARTH_RADIUS_KM = 6378.137  # WGS84 equatorial; the shadow test treats the Earth as a sphere
KNOT_SPACING_DAYS = 10.0 / 1440.0
_DEG = 180.0 / math.pi


# --- per-time quantities (erfa, vectorised over times) ---------------------------------


def _sampled(func, jd: np.ndarray, fr: np.ndarray) -> np.ndarray:
    """``func(jd, fr) -> (n, k)``, computed on 10-minute knots when that is much cheaper."""
    n = jd.size
    if n < 8:
        return func(jd, fr)
    jd0 = jd[0]
    days = (jd - jd0) + fr
    lo, hi = float(days.min()), float(days.max())
    n_knots = max(int(math.ceil((hi - lo) / KNOT_SPACING_DAYS)) + 1, 2)
    if 2 * n_knots >= n:
        return func(jd, fr)
    knots = np.linspace(lo, hi, n_knots)
    values = func(np.full(n_knots, jd0), knots)
    return np.stack([np.interp(days, knots, values[:, k]) for k in range(values.shape[1])], 1)


def _cip_xys(tt_jd: np.ndarray, tt_fr: np.ndarray) -> np.ndarray:
    x, y = erfa.bpn2xy(erfa.pnm06a(tt_jd, tt_fr))
    return np.stack([x, y, erfa.s06(tt_jd, tt_fr, x, y)], 1)


def _earth_state(tt_jd: np.ndarray, tt_fr: np.ndarray) -> np.ndarray:
    # epv00 takes TDB; TT differs by < 2 ms, nothing at this precision.
    helio, bary = erfa.epv00(tt_jd, tt_fr)
    return np.concatenate([bary["v"] * (AU_KM / SECONDS_PER_DAY), -helio["p"] * AU_KM], 1)


class _Times:
    """One set of UTC times with its UT1, TT and polar motion, and what derives from them."""

    def __init__(self, jd, fr):
        self.jd, self.fr = as_jd_fr(jd, fr)
        self.n = self.jd.size
        self.ut1 = utc_to_ut1(self.jd, self.fr)
        self.tt = utc_to_tt(self.jd, self.fr)
        self.xp, self.yp = polar_motion_rad(self.jd, self.fr)
        self._c2i = None
        self._earth = None

    def teme_to_itrs(self) -> np.ndarray:
        gmst = erfa.gmst82(*self.ut1)
        return erfa.c2tcio(np.eye(3), gmst, erfa.pom00(self.xp, self.yp, 0.0))

    def gcrs_to_cirs(self) -> np.ndarray:
        if self._c2i is None:
            xys = _sampled(_cip_xys, *self.tt)
            self._c2i = erfa.c2ixys(xys[:, 0], xys[:, 1], xys[:, 2])
        return self._c2i

    def gcrs_to_itrs(self) -> np.ndarray:
        era = erfa.era00(*self.ut1)
        polar = erfa.pom00(self.xp, self.yp, erfa.sp00(*self.tt))
        return erfa.c2tcio(self.gcrs_to_cirs(), era, polar)

    def teme_to_gcrs(self) -> np.ndarray:
        return np.swapaxes(self.gcrs_to_itrs(), -1, -2) @ self.teme_to_itrs()

    def earth_velocity_kms(self) -> np.ndarray:
        if self._earth is None:
            self._earth = _sampled(_earth_state, *self.tt)
        return self._earth[:, :3]

    def sun_gcrs_km(self) -> np.ndarray:
        self.earth_velocity_kms()
        return self._earth[:, 3:]


def teme_to_itrs_matrices(jd, fr=None) -> np.ndarray:
    """Rotation matrices TEME -> ITRS, shape ``(n_t, 3, 3)``: ``r_itrs = M @ r_teme``.

    GMST 1982 of UT1, then polar motion (Vallado's ``teme2ecef``; astropy's TEME frame).
    """
    return _Times(jd, fr).teme_to_itrs()


def gcrs_to_itrs_matrices(jd, fr=None) -> np.ndarray:
    """Rotation matrices GCRS -> ITRS (IAU 2006/2000A, CIO based), shape ``(n_t, 3, 3)``."""
    return _Times(jd, fr).gcrs_to_itrs()


def teme_to_gcrs_matrices(jd, fr=None) -> np.ndarray:
    """Rotation matrices TEME -> GCRS, shape ``(n_t, 3, 3)``: ``r_gcrs = M @ r_teme``.

    TEME -> ITRS followed by ITRS -> GCRS; polar motion cancels but for ``s'``. Agrees with
    astropy's ``TEME -> GCRS`` to well under 1 mas.

    Examples
    --------
    >>> m = teme_to_gcrs_matrices([2459123.5], [0.25])
    >>> m.shape, bool(np.allclose(m[0] @ m[0].T, np.eye(3)))
    ((1, 3, 3), True)
    """
    return _Times(jd, fr).teme_to_gcrs()


def _site_gcrs_posvel(site: Site, times: _Times) -> tuple[np.ndarray, np.ndarray]:
    itrs_to_gcrs = np.swapaxes(times.gcrs_to_itrs(), -1, -2)
    r_km = itrs_to_gcrs @ site.itrs_km()
    pole = times.gcrs_to_cirs()[:, 2, :]  # the CIP (Earth's rotation axis) in GCRS
    v_kms = OMEGA_EARTH_RAD_S * np.cross(pole, r_km)
    return r_km, v_kms


def site_gcrs_posvel_km(site: Site, jd, fr=None) -> tuple[np.ndarray, np.ndarray]:
    """GCRS position (km) and velocity (km/s) of a station, each ``(n_t, 3)``.

    The velocity is the Earth's rotation about the CIP at the rate of the Earth rotation
    angle, as astropy's ``EarthLocation.get_gcrs_posvel``.
    """
    return _site_gcrs_posvel(site, _Times(jd, fr))


def observation_frames(jd, fr, sites) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a batch of observations needs of the frames, time scales worked out once:
    :func:`teme_to_gcrs_matrices`, :func:`earth_velocity_bcrs_kms` and the GCRS position
    (km) of each observation's station, ``(n_t, 3, 3)``, ``(n_t, 3)``, ``(n_t, 3)``.

    ``sites``: ``(site, rows)`` pairs, the rows of the times seen from each site; a site
    seen at all of them shares their time scales, so the numbers are those of the three
    functions called apart.
    """
    jd, fr = np.asarray(jd), np.asarray(fr)
    times = _Times(jd, fr)
    site_km = np.empty((times.n, 3))
    for site, rows in sites:
        rows = np.asarray(rows, dtype=np.int64)
        everywhere = rows.size == times.n and np.array_equal(rows, np.arange(times.n))
        own = times if everywhere else _Times(jd[rows], fr[rows])
        site_km[rows] = _site_gcrs_posvel(site, own)[0]
    return times.teme_to_gcrs(), times.earth_velocity_kms().copy(), site_km


def earth_velocity_bcrs_kms(jd, fr=None) -> np.ndarray:
    """Barycentric velocity of the geocentre, km/s, ``(n_t, 3)`` (erfa ``epv00``).

    BCRS and GCRS axes are parallel, so the vector serves in GCRS axes too.
    """
    return _Times(jd, fr).earth_velocity_kms().copy()


def sun_gcrs_km(jd, fr=None) -> np.ndarray:
    """Geometric geocentric position of the Sun (GCRS axes), km, ``(n_t, 3)`` (``epv00``)."""
    return _Times(jd, fr).sun_gcrs_km().copy()


# --- per-point kernels ------------------------------------------------------------------

# atan2 by table and polynomial: branch-free, so loops vectorise (libm atan2 costs ~22 ns,
# this ~1.5 ns), error below 1e-15 rad. The angle atan(t), t in [0, 1], is split into three
# sectors of width pi/12 centred on a_k, and atan(t) = a_k + atan(u), |u| <= tan(pi/24),
# summed by the alternating series to u**17.
_TAN_PI_12 = math.tan(math.pi / 12.0)
_TAN_PI_6 = math.tan(math.pi / 6.0)
_SECTOR_ANGLE = tuple((2 * k + 1) * math.pi / 24.0 for k in range(3))
_SECTOR_TAN = tuple(math.tan(a) for a in _SECTOR_ANGLE)


@inline_kernel
def _atan2(y, x):
    ax, ay = abs(x), abs(y)
    swap = ay > ax
    small = ax if swap else ay
    large = ay if swap else ax
    t = small / (large if large > 0.0 else 1.0)
    low, mid = t <= _TAN_PI_12, t <= _TAN_PI_6
    c = _SECTOR_TAN[0] if low else (_SECTOR_TAN[1] if mid else _SECTOR_TAN[2])
    a = _SECTOR_ANGLE[0] if low else (_SECTOR_ANGLE[1] if mid else _SECTOR_ANGLE[2])
    u = (t - c) / (1.0 + t * c)
    z = u * u
    p = 1.0 / 17.0
    p = p * z - 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z - 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z - 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z - 1.0 / 3.0
    r = a + (u + u * z * p)
    r = 0.5 * math.pi - r if swap else r
    r = math.pi - r if x < 0.0 else r
    return -r if y < 0.0 else r


# Point functions, shared by the loop drivers below.


@inline_kernel
def _astrometric_vector(rx, ry, rz, vx, vy, vz, p, j):
    """Light-time-corrected topocentric GCRS direction with aberration applied, and range.

    ``p[:, j]`` holds for time j: station TEME km (rows 0-2), TEME->GCRS matrix by rows
    (3-11), aberration velocity / c (12-14), sqrt(1 - beta**2) (15), 1 / (1 + that) (16).
    """
    ox, oy, oz = p[0, j], p[1, j], p[2, j]
    dx, dy, dz = rx - ox, ry - oy, rz - oz
    rho = math.sqrt(dx * dx + dy * dy + dz * dz)
    for _ in range(2):  # light time: the object at t - tau, tau = rho / c
        tau = rho * (1.0 / 299792.458)
        dx, dy, dz = rx - vx * tau - ox, ry - vy * tau - oy, rz - vz * tau - oz
        rho = math.sqrt(dx * dx + dy * dy + dz * dz)
    inv_rho = 1.0 / rho
    ux = (p[3, j] * dx + p[4, j] * dy + p[5, j] * dz) * inv_rho  # GCRS unit vector
    uy = (p[6, j] * dx + p[7, j] * dy + p[8, j] * dz) * inv_rho
    uz = (p[9, j] * dx + p[10, j] * dy + p[11, j] * dz) * inv_rho
    # Aberration (special relativity) for velocity beta (the Earth's, reversed).
    bx, by, bz, bm1 = p[12, j], p[13, j], p[14, j], p[15, j]
    w1 = 1.0 + (ux * bx + uy * by + uz * bz) * p[16, j]
    return bm1 * ux + w1 * bx, bm1 * uy + w1 * by, bm1 * uz + w1 * bz, rho


@inline_kernel
def _topocentric_enu(rx, ry, rz, p, j):
    """``p[:, j]``: station TEME km (rows 0-2), TEME->ENU matrix by rows (3-11)."""
    dx, dy, dz = rx - p[0, j], ry - p[1, j], rz - p[2, j]
    east = p[3, j] * dx + p[4, j] * dy + p[5, j] * dz
    north = p[6, j] * dx + p[7, j] * dy + p[8, j] * dz
    up = p[9, j] * dx + p[10, j] * dy + p[11, j] * dz
    return east, north, up


@inline_kernel
def _longitude_latitude_deg(x, y, z):
    """Angles of a vector: longitude in [0, 360) from x towards y, latitude from the xy-plane."""
    lon = _DEG * _atan2(y, x)
    lon = lon + 360.0 if lon < 0.0 else lon
    lon = lon - 360.0 if lon >= 360.0 else lon
    return lon, _DEG * _atan2(z, math.sqrt(x * x + y * y))


# Loop drivers. The (object, time) points are cut into blocks of consecutive points; prange
# runs over blocks. Each block copies its states into contiguous rows, computes, then writes
# out: loops over contiguous rows vectorise, loops over interleaved xyz do not (4x slower).
# Block b reads the per-time table ``tables[chunk[b]]``, column k for its point k.
_BLOCK_POINTS = 256


def _blocks(n_obj: int, n_t: int, per_time: np.ndarray):
    """Per-time tables for the blocks, and each block's start, length and table index.

    Few times: each block holds whole objects, so one tiled table serves every block. Many
    times: each block is a run of up to 256 times of one object, with a table per run.
    """
    n_rows = per_time.shape[0]
    if n_obj == 0 or n_t == 0:
        none = np.zeros(0, dtype=np.int64)
        return np.zeros((1, n_rows, 1)), none, none, none
    if n_t < _BLOCK_POINTS // 4:
        per_block = max(1, _BLOCK_POINTS // n_t)
        size = per_block * n_t
        start = np.arange(0, n_obj * n_t, size, dtype=np.int64)
        length = np.minimum(size, n_obj * n_t - start)
        tables = np.tile(per_time, (1, per_block)).reshape(1, n_rows, size)
        return tables, start, length, np.zeros_like(start)
    n_runs = -(-n_t // _BLOCK_POINTS)
    padded = np.zeros((n_rows, n_runs * _BLOCK_POINTS))
    padded[:, :n_t] = per_time
    tables = np.ascontiguousarray(padded.reshape(n_rows, n_runs, _BLOCK_POINTS).swapaxes(0, 1))
    j0 = np.arange(n_runs, dtype=np.int64) * _BLOCK_POINTS
    start = (np.arange(n_obj, dtype=np.int64)[:, None] * n_t + j0).ravel()
    length = np.tile(np.minimum(_BLOCK_POINTS, n_t - j0), n_obj)
    return tables, start, length, np.tile(np.arange(n_runs, dtype=np.int64), n_obj)


@inline_kernel
def _radec_block(r_km, v_kms, tables, start, length, chunk, ra_deg, dec_deg, range_km, b):
    # C-contiguous views, so that every index below is a range() variable over unit
    # strides: numba drops its negative-index test and the loops vectorise.
    k0, n = start[b], length[b]
    r, v, p = r_km[k0 : k0 + n], v_kms[k0 : k0 + n], tables[chunk[b]]
    ra, dec, rng = ra_deg[k0 : k0 + n], dec_deg[k0 : k0 + n], range_km[k0 : k0 + n]
    rows = np.empty((6, n))
    q = np.empty((4, n))
    for k in range(n):
        rows[0, k], rows[1, k], rows[2, k] = r[k, 0], r[k, 1], r[k, 2]
        rows[3, k], rows[4, k], rows[5, k] = v[k, 0], v[k, 1], v[k, 2]
    for k in range(n):
        q[0, k], q[1, k], q[2, k], q[3, k] = _astrometric_vector(
            rows[0, k], rows[1, k], rows[2, k], rows[3, k], rows[4, k], rows[5, k], p, k
        )
    for k in range(n):
        ra[k], dec[k] = _longitude_latitude_deg(q[0, k], q[1, k], q[2, k])
        rng[k] = q[3, k]


@inline_kernel
def _azel_block(r_km, tables, start, length, chunk, az_deg, el_deg, range_km, b):
    k0, n = start[b], length[b]
    r, p = r_km[k0 : k0 + n], tables[chunk[b]]
    az, el, rng = az_deg[k0 : k0 + n], el_deg[k0 : k0 + n], range_km[k0 : k0 + n]
    enu = np.empty((3, n))
    for k in range(n):
        enu[0, k], enu[1, k], enu[2, k] = r[k, 0], r[k, 1], r[k, 2]
    for k in range(n):
        enu[0, k], enu[1, k], enu[2, k] = _topocentric_enu(enu[0, k], enu[1, k], enu[2, k], p, k)
    for k in range(n):
        east, north, up = enu[0, k], enu[1, k], enu[2, k]
        az[k], el[k] = _longitude_latitude_deg(north, east, up)
        rng[k] = math.sqrt(east * east + north * north + up * up)


@inline_kernel
def _sunlit_row(r_km, sun_teme_km, earth_radius_km, out, i):
    r2_earth = earth_radius_km * earth_radius_km
    for j in range(out.shape[1]):
        rx, ry, rz = r_km[i, j, 0], r_km[i, j, 1], r_km[i, j, 2]
        sx, sy, sz = sun_teme_km[j, 0], sun_teme_km[j, 1], sun_teme_km[j, 2]
        r2 = rx * rx + ry * ry + rz * rz
        # Object -> Sun is d = s - r; the Sun's centre is hidden when the ray r + k d
        # (k >= 0) passes within one Earth radius of the geocentre.
        dx, dy, dz = sx - rx, sy - ry, sz - rz
        d2 = dx * dx + dy * dy + dz * dz
        toward = -(rx * dx + ry * dy + rz * dz)  # > 0: the ray heads towards the Earth
        hidden = toward > 0.0 and toward * toward > d2 * (r2 - r2_earth)
        out[i, j] = r2 > r2_earth and not hidden  # False for NaN positions too


# Each driver twice: parallel for big batches, serial below ~1.5 ms of work, where waking
# the worker threads can cost more than the work (0.1 ms idle, several ms on a busy host).
_SERIAL_BELOW_POINTS = 100_000


@kernel
def _radec_serial(r_km, v_kms, tables, start, length, chunk, ra_deg, dec_deg, range_km):
    for b in range(start.size):
        _radec_block(r_km, v_kms, tables, start, length, chunk, ra_deg, dec_deg, range_km, b)


@parallel_kernel
def _radec_parallel(r_km, v_kms, tables, start, length, chunk, ra_deg, dec_deg, range_km):
    for b in prange(start.size):
        _radec_block(r_km, v_kms, tables, start, length, chunk, ra_deg, dec_deg, range_km, b)


@kernel
def _azel_serial(r_km, tables, start, length, chunk, az_deg, el_deg, range_km):
    for b in range(start.size):
        _azel_block(r_km, tables, start, length, chunk, az_deg, el_deg, range_km, b)


@parallel_kernel
def _azel_parallel(r_km, tables, start, length, chunk, az_deg, el_deg, range_km):
    for b in prange(start.size):
        _azel_block(r_km, tables, start, length, chunk, az_deg, el_deg, range_km, b)


@kernel
def _sunlit_serial(r_km, sun_teme_km, earth_radius_km, out):
    for i in range(out.shape[0]):
        _sunlit_row(r_km, sun_teme_km, earth_radius_km, out, i)


@parallel_kernel
def _sunlit_parallel(r_km, sun_teme_km, earth_radius_km, out):
    for i in prange(out.shape[0]):
        _sunlit_row(r_km, sun_teme_km, earth_radius_km, out, i)


_RADEC = (_radec_serial, _radec_parallel)
_AZEL = (_azel_serial, _azel_parallel)
_SUNLIT = (_sunlit_serial, _sunlit_parallel)


def _pick(drivers, n_points: int):
    return drivers[n_points >= _SERIAL_BELOW_POINTS]


# --- public per-point functions ---------------------------------------------------------


def _as_states(name: str, value, n_t: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (n_t, 3):
        raise ValueError(
            f"{name} must have shape (n_obj, {n_t}, 3) for {n_t} times; got {array.shape}"
        )
    return np.ascontiguousarray(array)


def _enu_matrix(site: Site) -> np.ndarray:
    """Rows: east, north, up unit vectors of the site's geodetic horizon, in ITRS."""
    lat, lon = math.radians(site.latitude_deg), math.radians(site.longitude_deg)
    sl, cl, so, co = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
    return np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])


def radec_from_teme(
    r_teme_km, v_teme_kms, jd, fr, site: Site
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Astrometric RA/Dec and range of objects from a station.

    Definition: the astrometric place an observer measures against catalogue stars: the
    direction from the station at the observation time to where the object was when the
    light left it (light time: object GCRS position at t - tau, using r - v*tau, iterate
    tau = |rho|/c twice), in GCRS axes, with the annual aberration that the reference stars
    carry taken out, i.e. apply the aberration formula with the Earth's barycentric velocity
    reversed (here the exact special-relativistic formula, as erfa ``ab`` without the solar
    term), and no diurnal aberration (it cancels between stars and satellite).
    ``range_km`` is the light-time-corrected topocentric distance.

    Parameters
    ----------
    r_teme_km, v_teme_kms : (n_obj, n_t, 3) TEME states as SGP4 gives them.
    jd, fr : UTC split Julian dates, ``n_t`` each.
    site : the station.

    Returns
    -------
    ra_deg, dec_deg, range_km : (n_obj, n_t) arrays; NaN where the position is NaN.
    """
    times = _Times(jd, fr)
    r = _as_states("r_teme_km", r_teme_km, times.n)
    v = _as_states("v_teme_kms", v_teme_kms, times.n)
    teme_to_gcrs = times.teme_to_gcrs()
    site_gcrs, _ = _site_gcrs_posvel(site, times)
    site_teme = np.einsum("tji,tj->ti", teme_to_gcrs, site_gcrs)
    beta = -times.earth_velocity_kms() / C_KMS
    bm1 = np.sqrt(1.0 - np.sum(beta * beta, axis=1))
    per_time = np.concatenate(
        [site_teme.T, teme_to_gcrs.reshape(-1, 9).T, beta.T, [bm1], [1.0 / (1.0 + bm1)]]
    )
    shape = r.shape[:2]
    ra, dec, rng = np.empty(shape), np.empty(shape), np.empty(shape)
    blocks = _blocks(*shape, per_time)
    _pick(_RADEC, ra.size)(
        r.reshape(-1, 3),
        v.reshape(-1, 3),
        *blocks,
        ra.reshape(-1),
        dec.reshape(-1),
        rng.reshape(-1),
    )
    return ra, dec, rng


def azel_from_teme(r_teme_km, jd, fr, site: Site) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric azimuth (from north through east), elevation and range from a station.

    ITRS topocentric vector on the WGS84 geodetic horizon; no light time, aberration or
    refraction. Inputs as :func:`radec_from_teme`; outputs ``(n_obj, n_t)``, NaN where the
    position is NaN.
    """
    times = _Times(jd, fr)
    r = _as_states("r_teme_km", r_teme_km, times.n)
    teme_to_itrs = times.teme_to_itrs()
    site_teme = np.einsum("tji,j->ti", teme_to_itrs, site.itrs_km())
    teme_to_enu = _enu_matrix(site) @ teme_to_itrs
    per_time = np.ascontiguousarray(np.concatenate([site_teme.T, teme_to_enu.reshape(-1, 9).T]))
    shape = r.shape[:2]
    az, el, rng = np.empty(shape), np.empty(shape), np.empty(shape)
    blocks = _blocks(*shape, per_time)
    _pick(_AZEL, az.size)(
        r.reshape(-1, 3), *blocks, az.reshape(-1), el.reshape(-1), rng.reshape(-1)
    )
    return az, el, rng


def sunlit(r_teme_km, jd, fr=None) -> np.ndarray:
    """Whether each object is in sunlight, ``(n_obj, n_t)`` bool.

    Shadow model: a spherical Earth of radius 6378.137 km and the geometric Sun; an object
    counts as sunlit while the centre of the Sun is above the Earth's limb as seen from it,
    i.e. while about half the solar disc or more is visible (the middle of the conical
    penumbra). False where the position is NaN or inside the Earth.
    """
    times = _Times(jd, fr)
    r = _as_states("r_teme_km", r_teme_km, times.n)
    sun_teme = np.einsum("tji,tj->ti", times.teme_to_gcrs(), times.sun_gcrs_km())
    out = np.empty(r.shape[:2], dtype=np.bool_)
    _pick(_SUNLIT, out.size)(r, sun_teme, EARTH_RADIUS_KM, out)
    return out


def _sun_altitude(site: Site, times: _Times) -> np.ndarray:
    sun_itrs = np.einsum("tij,tj->ti", times.gcrs_to_itrs(), times.sun_gcrs_km())
    enu = (sun_itrs - site.itrs_km()) @ _enu_matrix(site).T
    return np.degrees(np.arctan2(enu[:, 2], np.hypot(enu[:, 0], enu[:, 1])))


def sun_altitude_deg(site: Site, jd, fr=None) -> np.ndarray:
    """Geometric altitude of the Sun's centre above the station's horizon, degrees, ``(n_t,)``."""
    return _sun_altitude(site, _Times(jd, fr))


def station_dark(site: Site, jd, fr, sun_altitude_deg: float = -18.0) -> np.ndarray:
    """Whether the station is dark, ``(n_t,)`` bool.

    Dark while the Sun's centre is below ``sun_altitude_deg`` (default -18 degrees:
    astronomical darkness); geometric altitude, no refraction.
    """
    return _sun_altitude(site, _Times(jd, fr)) < sun_altitude_deg
