"""Topocentric astrometric RA/Dec: aposos.orbit.frames.radec_from_teme against astropy.

Real element sets (CelesTrak 2020-09-30 snapshot) propagated with python-sgp4 give TEME
states for N objects x M times (default 2,000 x 200, 60 s steps). Both sides do the same
work: TEME -> GCRS, station position, light time (r - v tau, twice), annual aberration
reversed, RA/Dec. astropy runs on a subset and is scaled per point. Also timed: our per-point
part alone (total minus a one-object call) and the coarse-gate shape (25,000 objects, 1 time).

    .venv/bin/python benchmarks/bench_radec.py [--objects N] [--times M] [--astropy-objects K]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import astropy.units as u
import erfa
import numpy as np
from astropy.coordinates import (
    GCRS,
    TEME,
    CartesianDifferential,
    CartesianRepresentation,
    EarthLocation,
    get_body_barycentric_posvel,
)
from astropy.time import Time
from sgp4.api import Satrec, SatrecArray

from aposos.model import Site
from aposos.orbit import frames
from aposos.timeutil import configure_offline

CATALOGUE = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "data"
    / "shared"
    / "catalogues"
    / "celestrak-active-2020-09-30.3le"
)
SITE = Site(35.67, 51.42, 1200.0)
C_KMS = 299792.458


def best_of(repeat, func):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def teme_states(n_obj: int, n_t: int):
    """States of n_obj objects (the catalogue repeated as needed) at n_t times, 60 s apart."""
    lines = CATALOGUE.read_text().splitlines()
    sats = [Satrec.twoline2rv(lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]
    sats = [sats[i % len(sats)] for i in range(n_obj)]
    jd = np.full(n_t, 2459123.5)
    fr = 0.75 + np.arange(n_t) * (60.0 / 86400.0)
    e, r, v = SatrecArray(sats).sgp4(jd, fr)
    r[e != 0] = np.nan
    return jd, fr, r, v


def astropy_radec(r, v, jd, fr, site: Site):
    """The same definition through astropy frames, vectorised over all points."""
    n_obj, n_t = r.shape[:2]
    t = Time(np.tile(jd, n_obj), np.tile(fr, n_obj), format="jd", scale="utc")
    pos = CartesianRepresentation(r.reshape(-1, 3).T * u.km)
    pos = pos.with_differentials(CartesianDifferential(v.reshape(-1, 3).T * u.km / u.s))
    gcrs = TEME(pos, obstime=t).transform_to(GCRS(obstime=t))
    r_g = gcrs.cartesian.xyz.to_value(u.km).T
    v_g = gcrs.velocity.d_xyz.to_value(u.km / u.s).T
    loc = EarthLocation.from_geodetic(
        site.longitude_deg * u.deg, site.latitude_deg * u.deg, site.altitude_m * u.m
    )
    station = loc.get_gcrs_posvel(t)[0].xyz.to_value(u.km).T
    rho = r_g - station
    for _ in range(2):
        tau = np.linalg.norm(rho, axis=1, keepdims=True) / C_KMS
        rho = r_g - v_g * tau - station
    beta = -get_body_barycentric_posvel("earth", t)[1].xyz.to_value(u.km / u.s).T / C_KMS
    bm1 = np.sqrt(1.0 - np.sum(beta**2, axis=1))
    q = erfa.ab(rho / np.linalg.norm(rho, axis=1, keepdims=True), beta, 1.0, bm1)
    ra, dec = erfa.c2s(q)
    return np.degrees(ra).reshape(n_obj, n_t) % 360.0, np.degrees(dec).reshape(n_obj, n_t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=2_000)
    ap.add_argument("--times", type=int, default=200)
    ap.add_argument("--astropy-objects", type=int, default=20)
    ap.add_argument("--gate-objects", type=int, default=25_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    configure_offline()

    jd, fr, r, v = teme_states(args.objects, args.times)
    n = r.shape[0] * r.shape[1]
    print(f"{args.objects} objects x {args.times} times = {n:,} points (real TLEs, python-sgp4)")

    frames.radec_from_teme(r[:2], v[:2], jd, fr, SITE)  # compile or load the kernels
    ours = best_of(args.repeat, lambda: frames.radec_from_teme(r, v, jd, fr, SITE))
    per_time = best_of(args.repeat, lambda: frames.radec_from_teme(r[:1], v[:1], jd, fr, SITE))
    print(f"aposos  radec_from_teme : {n / ours / 1e6:8.1f} M points/s  ({ours * 1e3:.1f} ms)")
    print(
        f"        per-time part   : {per_time * 1e3:8.2f} ms for {args.times} times "
        f"({per_time / args.times * 1e6:.1f} us per time step, erfa + IERS)"
    )
    kernel = max(ours - per_time, 1e-9)
    print(f"        per-point part  : {n / kernel / 1e6:8.1f} M points/s")

    gate_jd, gate_fr, gate_r, gate_v = teme_states(args.gate_objects, 1)
    frames.radec_from_teme(gate_r, gate_v, gate_jd, gate_fr, SITE)
    gate = best_of(
        args.repeat, lambda: frames.radec_from_teme(gate_r, gate_v, gate_jd, gate_fr, SITE)
    )
    print(
        f"        coarse-gate     : {args.gate_objects / gate / 1e6:8.1f} M points/s "
        f"({args.gate_objects} objects x 1 time, {gate * 1e3:.2f} ms)"
    )

    k = min(args.astropy_objects, args.objects)
    astropy_radec(r[:1, :2], v[:1, :2], jd[:2], fr[:2], SITE)  # warm astropy's caches
    t0 = time.perf_counter()
    ra_ref, dec_ref = astropy_radec(r[:k], v[:k], jd, fr, SITE)
    ref = time.perf_counter() - t0
    n_ref = k * args.times
    print(
        f"astropy TEME->GCRS path : {n_ref / ref / 1e3:8.1f} k points/s  "
        f"({n_ref:,} points in {ref:.2f} s)"
    )
    print(f"ratio aposos / astropy  : {(n / ours) / (n_ref / ref):8.0f}x")

    t_k = Time(np.tile(jd, k), np.tile(fr, k), format="jd", scale="utc")
    positions = CartesianRepresentation(r[:k].reshape(-1, 3).T * u.km)
    t0 = time.perf_counter()
    TEME(positions, obstime=t_k).transform_to(GCRS(obstime=t_k))
    floor = time.perf_counter() - t0
    print(
        f"astropy TEME->GCRS alone: {n_ref / floor / 1e3:8.1f} k points/s  "
        f"(positions only, no station, light time or aberration; ratio "
        f"{(n / ours) / (n_ref / floor):.0f}x)"
    )

    ra, dec, _ = frames.radec_from_teme(r[:k], v[:k], jd, fr, SITE)
    d_ra = ((ra - ra_ref + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec))
    worst = np.nanmax(np.hypot(d_ra, dec - dec_ref)) * 3.6e6
    print(f"largest difference      : {worst:8.3f} mas on the astropy subset")


if __name__ == "__main__":
    main()
