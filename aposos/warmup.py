"""Compile every cached numba kernel once, before many processes need them.

``python -m aposos.warmup [part ...]`` (parts: orbit, correlate, station, tasking; all by
default) runs each layer's public entry points on tiny inputs of the dtypes the real work
passes, so the kernels compile for those signatures and land in numba's on-disk cache
(``cache=True``, :mod:`aposos.orbit.jit`). Processes started afterwards (test workers, a
center's correlation worker, a station agent) load them in a fraction of a second instead
of each compiling the same kernels (about a minute of CPU on a clean checkout). The
command compiles the station part in a second process beside the others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

# Three element sets from CelesTrak's active catalogue of 2020-10-02 (shared test data):
# a low orbit, a 12-hour resonant and a geosynchronous deep-space orbit.
_TLE = """\
ISS (ZARYA)
1 25544U 98067A   20276.69712104  .00002479  00000-0  53433-4 0  9991
2 25544  51.6443 176.5008 0001252 105.3576 344.9043 15.48824738248684
NAVSTAR 43 (USA 132)
1 24876U 97035A   20276.13540782  .00000006  00000-0  00000-0 0  9994
2 24876  55.4576 179.9910 0043954  58.4850 301.9962  2.00561604170150
LES-5
1 02866U 67066E   20276.81944455 -.00000110  00000-0  00000+0 0  9996
2 02866   2.6280 270.8825 0055658 358.9011 140.5923  1.09425820108228
"""
_START = np.datetime64("2020-10-02T18:00:00", "us")
PARTS = ("orbit", "correlate", "station", "tasking")
# needs no other part's kernels: the command compiles it in a second process beside the
# others (numba compiles on one core; the correlation part needs the orbit kernels, so
# those two stay together)
BESIDE = "station"


def _catalogue():
    from aposos.orbit.catalogue import Catalogue

    return Catalogue.from_tle(_TLE.splitlines(), strict=True)


def _site():
    from aposos.model import Site

    return Site(48.0, 11.0, 600.0)


def _times(n: int, step_s: float = 10.0) -> np.ndarray:
    return _START + (np.arange(n) * step_s * 1e6).astype("timedelta64[us]")


def _orbit() -> None:
    from aposos.model import datetime64_to_jd_fr
    from aposos.orbit import frames
    from aposos.orbit.ephemeris import HermiteEphemeris
    from aposos.orbit.propagation import propagate_packed

    cat, site = _catalogue(), _site()
    for n in (4, frames._SERIAL_BELOW_POINTS // len(cat) + 1):  # serial and parallel drivers
        jd, fr = datetime64_to_jd_fr(_times(n))
        _, r, v = cat.propagate(jd, fr)  # the SIMD kernel
        frames.radec_from_teme(r, v, jd, fr, site)
        frames.azel_from_teme(r, jd, fr, site)
        frames.sunlit(r, jd, fr)
    jd, fr = jd[:4], fr[:4]
    propagate_packed(cat.params, np.tile(jd, (len(cat), 1)), np.tile(fr, (len(cat), 1)))
    propagate_packed(cat.params, jd, fr + [0.0, 0.0, 0.0, np.nan])  # NaN: reference kernel
    HermiteEphemeris(cat, step_s=60)(jd, fr)


def _correlate() -> None:
    from aposos.correlate.correlator import SGP4Correlator
    from aposos.model import Tracklet, datetime64_to_jd_fr

    cat, site = _catalogue(), _site()
    utc = _times(6, 2.0)
    ra, dec, _ = cat.radec(site, *datetime64_to_jd_fr(utc))
    tracklets = [Tracklet("WARM", utc, ra[i], dec[i], sigma_arcsec=2.0) for i in range(len(cat))]
    SGP4Correlator(cat, {"WARM": site})(tracklets)


def _station() -> None:
    from aposos.station.blindsolve import BlindIndex
    from aposos.station.calibrate import MasterCalibration
    from aposos.station.extract import SourceExtractor
    from aposos.station.fitsframe import Frame
    from aposos.station.simulator import render
    from aposos.station.stars import StarCatalogue

    rng = np.random.default_rng(1)
    shape = (96, 128)
    psf = render.PsfModel(3.0)
    charge = np.full(shape, 200.0, np.float32)
    xy = rng.uniform(10.0, 86.0, (2, 12))
    render.add_points(charge, xy[0], xy[1], rng.uniform(2e3, 5e4, 12), psf)
    render.add_segments(charge, [5.0], [8.0], [60.0], [40.0], [3e4], psf)
    z = render.standard_normals(rng, shape, 2)
    charge = render.photon_noise(charge, z[0])
    charge[40, 50] = 1e6
    render.bloom_columns(charge, 1e5)
    raw = render.digitise(
        charge, z[1], read_noise_e=5.0, gain_e_per_adu=1.5,
        bias_col_adu=np.full(shape[1], 100.0), bias_offset_adu=0.0, adc_max_adu=65535,
    )  # fmt: skip
    frame = Frame("warm.fits", raw.astype(np.float32), None, "light", _START, 1.0)
    bias = np.full(shape, 100.0, np.float32)
    image = MasterCalibration(bias=bias, dark_rate=bias * 0, flat=bias / 100).apply(frame)
    SourceExtractor(box=32, saturation=65535.0)(image)
    n = 400
    ra, dec = rng.uniform(0.0, 20.0, n), rng.uniform(-10.0, 10.0, n)
    zero = np.zeros(n)
    stars = StarCatalogue("warm", np.arange(n), ra, dec, zero, zero, zero + 2016.0,
                          rng.uniform(5.0, 10.0, n), 10.0)  # fmt: skip
    BlindIndex.build(stars, 2.0, 2020.0)


def _tasking() -> None:
    from aposos.center.tasking_fields import Tracks, members

    n_rows, n_t, fields = 3, 4, 2
    times = _times(n_t, 60.0)
    u = np.tile([1.0, 0.0, 0.0], (n_rows, n_t, 1))
    night = SimpleNamespace(
        step_s=60.0, times=times, row_of=np.arange(n_rows),
        visible=np.ones((n_rows, n_t), bool), mag=np.full((n_rows, n_t), 8.0),
    )  # fmt: skip
    tracks = Tracks(night, None, np.arange(n_rows), times, u=u)
    setup = SimpleNamespace(exposure_s=1.0, duration_s=10.0)
    station = SimpleNamespace(
        modes={"sidereal": setup}, field_deg=2.0, seeing_fwhm_arcsec=3.0,
        limiting_mag={"sidereal": 12.0},
    )  # fmt: skip
    centres = np.tile([1.0, 0.0, 0.0], (fields, 2, 3, 1))
    tidx = np.zeros((fields, 2, 3), np.int64)
    members(tracks, centres, tidx, station, "sidereal")


def _check(parts) -> None:
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}: choose from {', '.join(PARTS)}")


_RUN = {"orbit": _orbit, "correlate": _correlate, "station": _station, "tasking": _tasking}


def warm_up(parts=PARTS) -> dict[str, float]:
    """Compile (or load from numba's cache) the kernels of ``parts``; seconds per part."""
    _check(parts)
    took = {}
    for part in parts:
        t0 = time.perf_counter()
        _RUN[part]()
        took[part] = time.perf_counter() - t0
    return took


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aposos.warmup",
        description="Compile aposos's numba kernels once into numba's on-disk cache, so "
        "processes started afterwards load them instead of compiling.",
        epilog="example: python -m aposos.warmup correlate station",
    )
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"what to compile: {', '.join(PARTS)} (default: all)")  # fmt: skip
    parts = parser.parse_args(argv).parts or list(PARTS)
    try:
        _check(parts)
    except ValueError as error:  # an unknown part
        parser.error(str(error))
    beside = None
    if BESIDE in parts and len(set(parts)) > 1:
        beside = subprocess.Popen([sys.executable, "-m", "aposos.warmup", BESIDE])
        parts = [p for p in parts if p != BESIDE]
    try:
        for part, seconds in warm_up(parts).items():
            print(f"numba kernels of {part}: {seconds:.1f} s", flush=True)
    finally:
        status = beside.wait() if beside is not None else 0
    return status


if __name__ == "__main__":
    raise SystemExit(main())
