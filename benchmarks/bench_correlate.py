"""Correlation of a night's tracklets: SGP4Correlator against brute force, same process.

Catalogue: 25,000 realistic element sets (``catalogue25k.py``: the real 2020-10-02
CelesTrak snapshot, replicated with the node and mean anomaly turned by random angles and
new catalogue numbers, so the class mix, drag terms and epochs are those of real sets).

Tracklets: 10,000 over one night (2020-10-03 UTC) from the three network stations, each
in its own darkness (Sun below -12 degrees), objects above 20 degrees elevation, a
LEO/MEO/GEO mix of about 60/15/25 %, 5 observations each (LEO over 10-60 s, MEO over
2-6 min, GEO over 4-12 min), 1.5" noise. Directions come from our own catalogue
propagation and frames (this is a timing benchmark; correctness is the tests' business).

Brute force (the baseline): python-sgp4 ``SatrecArray`` for every
object at every observation time, numpy topocentric directions (TEME -> GCRS matrices and
station positions from erfa), nearest match by mean angular distance. Its cost is linear
in the number of tracklets, so it is timed on ``--brute`` tracklets and scaled.

With ``--catalogue FILE`` a real snapshot replaces the replicated one (TLE or 3LE, read
xz/gzip-compressed as it is, e.g. the 2026 CelesTrak series in ``shared/data/catalogues``:
about 15,000 objects, Starlink and OneWeb trains, GEO clusters), and the night is the UTC
day of its median element-set epoch.

Ours: :class:`aposos.correlate.correlator.SGP4Correlator` on all tracklets, cold (empty cube
folder: the cube is built and written to zarr) and warm (blocks already in zarr, new
correlator), and ``correlate_one`` latency with the cube in memory.

    .venv/bin/python benchmarks/bench_correlate.py [--tracklets N] [--objects M] [--brute K]
    .venv/bin/python benchmarks/bench_correlate.py \\
        --catalogue tests/data/shared/catalogues/celestrak-active-2026-03-18.3le.xz
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sgp4.api import Satrec, SatrecArray

sys.path.insert(0, os.path.dirname(__file__))
from catalogue25k import realistic_tle_lines  # noqa: E402

from aposos.correlate.correlator import SGP4Correlator  # noqa: E402
from aposos.model import (  # noqa: E402
    Site,  # noqa: E402
    Tracklet,
    jd_fr_to_datetime64,
)
from aposos.orbit import frames  # noqa: E402
from aposos.orbit.catalogue import Catalogue, read_maybe_compressed  # noqa: E402

NIGHT_JD = 2459125.5  # 2020-10-03 00:00 UTC
STATIONS = {
    "IRN1": Site(33.674, 51.318, 3600.0),
    "PAK1": Site(34.073, 73.387, 2450.0),
    "PER1": Site(-17.08, -70.87, 3000.0),
}
CLASS_MIX = {"LEO": 0.60, "MEO": 0.15, "GEO": 0.25}
SPAN_S = {"LEO": (10.0, 60.0), "MEO": (120.0, 360.0), "GEO": (240.0, 720.0)}
ARCSEC_DEG = 1.0 / 3600.0


def make_tracklets(cat: Catalogue, n_tracklets: int, seed: int = 7, night_jd: float = NIGHT_JD):
    """Tracklets of visible objects over the night starting at UTC ``night_jd`` (0 h), and
    the true NORAD ids."""
    rng = np.random.default_rng(seed)
    per_station = -(-n_tracklets // len(STATIONS))
    epochs_per_station = max(1, per_station // 12)
    tracklets, truth = [], []
    for code, site in STATIONS.items():
        minutes = night_jd + np.arange(0, 1440, 5) / 1440.0
        jd_m = np.full(minutes.size, night_jd)
        fr_m = minutes - night_jd
        dark = frames.station_dark(site, jd_m, fr_m, sun_altitude_deg=-12.0)
        starts = np.sort(rng.choice(fr_m[dark], epochs_per_station, replace=True))
        starts = starts + rng.uniform(0, 300, starts.size) / 86400.0
        jd0 = np.full(starts.size, night_jd)
        _, r, _ = cat.propagate(jd0, starts)
        _, el, _ = frames.azel_from_teme(r, jd0, starts, site)
        quota = per_station // epochs_per_station + 1
        for e, fr0 in enumerate(starts):
            visible = np.flatnonzero(el[:, e] > 20.0)
            for cls, share in CLASS_MIX.items():
                pool = visible[cat.orbit_class[visible] == cls]
                take = min(pool.size, int(round(share * quota)))
                if take == 0:
                    continue
                objs = rng.choice(pool, take, replace=False)
                span = rng.uniform(*SPAN_S[cls])
                fr = fr0 + np.linspace(0.0, span, 5) / 86400.0
                jd = np.full(5, night_jd)
                ra, dec, _ = cat.subset(objs).radec(site, jd, fr)
                utc = jd_fr_to_datetime64(jd, fr)
                for k, obj in enumerate(objs):
                    d_dec = rng.normal(0, 1.5, 5) * ARCSEC_DEG
                    d_ra = rng.normal(0, 1.5, 5) * ARCSEC_DEG / np.cos(np.radians(dec[k]))
                    tracklets.append(
                        Tracklet(code, utc, ra[k] + d_ra, dec[k] + d_dec, sigma_arcsec=1.5)
                    )
                    truth.append(int(cat.norad_id[obj]))
    order = rng.permutation(len(tracklets))[:n_tracklets]
    return [tracklets[i] for i in order], [truth[i] for i in order]


def real_snapshot(path: str):
    """3-line records of a real snapshot (those the catalogue reads, in its order), the
    catalogue, and the UTC day (JD at 0 h) of its median epoch."""
    text = read_maybe_compressed(Path(path)).decode("ascii", errors="replace")
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    cat = Catalogue.from_tle(lines)
    by_id = {}
    for name, l1, l2 in zip(lines[0::3], lines[1::3], lines[2::3], strict=True):
        by_id[Satrec.twoline2rv(l1, l2).satnum] = [name, l1, l2]
    kept = [line for n in cat.norad_id for line in by_id[int(n)]]
    epoch = np.median(np.asarray(cat.epoch_jd) + np.asarray(cat.epoch_fr))
    return kept, cat, float(np.floor(epoch - 0.5) + 0.5)


class BruteForce:
    """Every object at every observation time with python-sgp4, nearest mean distance."""

    def __init__(self, lines, norad_ids):
        self.satrecs = SatrecArray(
            [Satrec.twoline2rv(a, b) for a, b in zip(lines[1::3], lines[2::3])]
        )
        self.norad_id = np.asarray(norad_ids)

    def __call__(self, tracklet: Tracklet, site: Site) -> int:
        jd, fr = tracklet.jd_fr()
        e, r, _ = self.satrecs.sgp4(jd, fr)  # (n_obj, n_t, 3) TEME
        m = frames.teme_to_gcrs_matrices(jd, fr)
        site_km, _ = frames.site_gcrs_posvel_km(site, jd, fr)
        topo = np.einsum("tij,ntj->nti", m, r) - site_km[None]
        topo /= np.linalg.norm(topo, axis=2, keepdims=True)
        ra, dec = np.radians(tracklet.ra_deg), np.radians(tracklet.dec_deg)
        obs = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)
        cos_sep = np.einsum("nti,ti->nt", topo, obs)
        score = np.where(e == 0, cos_sep, -2.0).mean(axis=1)
        return int(self.norad_id[int(np.argmax(score))])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tracklets", type=int, default=10_000)
    ap.add_argument("--objects", type=int, default=25_000)
    ap.add_argument("--brute", type=int, default=60, help="tracklets timed with brute force")
    ap.add_argument("--latency", type=int, default=300, help="tracklets timed one by one")
    ap.add_argument("--catalogue", help="a real TLE/3LE snapshot (may be xz-compressed)")
    args = ap.parse_args(argv)

    if args.catalogue:
        lines, cat, night_jd = real_snapshot(args.catalogue)
        source = os.path.basename(args.catalogue)
    else:
        lines = realistic_tle_lines(args.objects)
        cat, night_jd, source = Catalogue.from_tle(lines), NIGHT_JD, "replicated 2020-10-02"
    classes = {c: int((cat.orbit_class == c).sum()) for c in ("LEO", "MEO", "GEO", "HEO")}
    print(f"catalogue ({source}): {len(cat)} objects {classes}")
    # a loaded machine: OpenMP threads that spin between parallel regions (the default
    # wait policy) take the cores from the others; OMP_WAIT_POLICY=passive does not
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset: spin)')}")
    t0 = time.perf_counter()
    tracklets, truth = make_tracklets(cat, args.tracklets, night_jd=night_jd)
    mix = {c: sum(cat.orbit_class[cat.index_of(n)] == c for n in truth) for c in CLASS_MIX}
    print(f"tracklets: {len(tracklets)} {mix} made in {time.perf_counter() - t0:.1f} s")

    # warm-up: compile the kernels (numba caches them on disk) outside the timings
    with tempfile.TemporaryDirectory() as warm_dir:
        SGP4Correlator(cat.subset(slice(0, 200)), STATIONS, cube_dir=warm_dir)(tracklets[:20])

    with tempfile.TemporaryDirectory() as cube_dir:
        correlator = SGP4Correlator(cat, STATIONS, cube_dir=cube_dir)
        t0 = time.perf_counter()
        ours = correlator(tracklets)
        t_cold = time.perf_counter() - t0
        fresh = SGP4Correlator(cat, STATIONS, cube_dir=cube_dir)
        t0, c0 = time.perf_counter(), time.process_time()
        ours_warm = fresh(tracklets)
        t_warm, c_warm = time.perf_counter() - t0, time.process_time() - c0
    assert [c.to_wire() for c in ours] == [c.to_wire() for c in ours_warm]
    status = {
        s: sum(c.status == s for c in ours) for s in ("correlated", "ambiguous", "uncorrelated")
    }
    right = sum(
        c.status == "correlated" and c.norad_id == n for c, n in zip(ours, truth, strict=True)
    )
    print(
        f"ours, cold cube (built and written to zarr): {t_cold:.2f} s for {len(tracklets)} tracklets"
    )
    print(
        f"ours, warm cube (blocks read from zarr):     {t_warm:.2f} s "
        f"({t_warm / len(tracklets) * 1e3:.2f} ms wall, {c_warm / len(tracklets) * 1e3:.2f} ms "
        f"CPU per tracklet; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"ours: {status}; correlated with the true object: {right} ({right / len(tracklets):.2%})"
    )

    # one at a time, cube in memory
    rng = np.random.default_rng(1)
    picks = rng.choice(len(tracklets), min(args.latency, len(tracklets)), replace=False)
    latencies = []
    for i in picks:
        t0 = time.perf_counter()
        one = correlator.correlate_one(tracklets[i])
        latencies.append(time.perf_counter() - t0)
        assert one.status == ours[i].status and one.norad_id == ours[i].norad_id
    lat = np.array(latencies) * 1e3
    print(
        f"correlate_one, warm cube: median {np.median(lat):.2f} ms, "
        f"90% {np.percentile(lat, 90):.2f} ms, max {lat.max():.2f} ms ({lat.size} tracklets)"
    )

    brute = BruteForce(lines, cat.norad_id)
    subset = rng.choice(len(tracklets), min(args.brute, len(tracklets)), replace=False)
    brute(tracklets[subset[0]], STATIONS[tracklets[subset[0]].station])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    brute_ids = [brute(tracklets[i], STATIONS[tracklets[i].station]) for i in subset]
    t_brute_each = (time.perf_counter() - t0) / subset.size
    c_brute_each = (time.process_time() - c0) / subset.size
    t_brute = t_brute_each * len(tracklets)
    brute_right = [i for i, b in zip(subset, brute_ids, strict=True) if b == truth[i]]
    agree = sum(
        ours[i].status == "correlated" and ours[i].norad_id == truth[i] for i in brute_right
    )
    print(
        f"brute force: {t_brute_each * 1e3:.1f} ms per tracklet on {subset.size}, "
        f"scaled to {len(tracklets)}: {t_brute:.0f} s"
    )
    print(
        f"brute force right on {len(brute_right)} of {subset.size}; ours agrees on {agree} of them"
    )
    print(
        f"speed-up, whole night: {t_brute / t_cold:.0f}x cold cube, {t_brute / t_warm:.0f}x warm cube"
    )
    # on a loaded machine the wall ratio follows the load of the moment; CPU time is
    # steadier (ours counts both cores' time, so on a quiet machine wall does better)
    print(
        f"CPU time, warm cube: brute force {c_brute_each * 1e3:.1f} ms, ours "
        f"{c_warm / len(tracklets) * 1e3:.2f} ms per tracklet: "
        f"{c_brute_each * len(tracklets) / c_warm:.0f}x"
    )


if __name__ == "__main__":
    main()
