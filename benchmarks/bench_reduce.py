"""Time per 4096 x 4096 frame for the whole station reduction, against photutils defaults.

The frame is rendered by the sky simulator for the Iran station (4096 x 4096,
1.49"/px: catalogue stars, faint field stars, a satellite streak, noise, hot pixels,
cosmic rays) and written as FITS. Measured, in one process:

* ours: ``Reducer.reduce_path`` = read FITS + calibrate + extract + classify +
  plate-solve + fit and place the satellites (median of several runs; the first,
  which compiles numba kernels and loads the catalogue, is not counted). "ours, cold
  solve" forgets the previous frame's solution; "ours, sequence" keeps it, as in a
  run of frames of one field.
* baseline: photutils as its documentation shows it (Background2D with 128-px boxes
  and a 3 x 3 filter, convolution with a Gaussian kernel of the seeing FWHM,
  detect_sources, SourceCatalog with centroids) — extraction alone, no solve.

Run: ``python benchmarks/bench_reduce.py [--repeat 5]``. Goal (issue 3): <= 1.5 s per
frame on 2 cores for the whole reduction.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_frame(folder: Path) -> Path:
    from astropy.io import fits

    from aposos.orbit.catalogue import Catalogue
    from aposos.station.config import StationConfig
    from aposos.station.simulator.fits import write_fits
    from aposos.station.simulator.night import SkySimulator
    from aposos.station.stars import StarCatalogue

    root = Path(__file__).resolve().parents[1]
    cfg = StationConfig.load(root / "stations" / "iran.toml")
    sats = Catalogue.from_tle(
        root / "tests" / "data" / "shared" / "catalogues" / "celestrak-active-2020-10-02.3le"
    )
    sim = SkySimulator(cfg, StarCatalogue.load("both"), sats, seed=7)
    # a rich field near the galactic plane (Cygnus), an hour after dark in Iran
    spec = sim.frame_spec(np.datetime64("2020-10-02T16:30:00"), 305.0, 40.0, mode="sidereal")
    data, header, _ = sim.render(spec)
    path = folder / "bench.fits"
    write_fits(path, data, header)
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (4096, 4096)
    return path


def photutils_baseline(data: np.ndarray, fwhm_px: float) -> int:
    from astropy.convolution import convolve
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import SourceCatalog, detect_sources, make_2dgaussian_kernel

    bkg = Background2D(
        data, (128, 128), filter_size=(3, 3), sigma_clip=SigmaClip(3.0),
        bkg_estimator=MedianBackground(),
    )  # fmt: skip
    sub = data - bkg.background
    kernel = make_2dgaussian_kernel(fwhm_px, size=5)
    conv = convolve(sub, kernel)
    segm = detect_sources(conv, 1.5 * bkg.background_rms, n_pixels=5)
    cat = SourceCatalog(sub, segm, convolved_data=conv)
    _ = cat.x_centroid, cat.y_centroid, cat.segment_flux
    return len(cat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import numba

    from aposos.station.config import StationConfig
    from aposos.station.fitsframe import read_frame
    from aposos.station.reduce import Reducer

    print(f"numba threads: {numba.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_frame(Path(tmp))
        root = Path(__file__).resolve().parents[1]
        reducer = Reducer(StationConfig.load(root / "stations" / "iran.toml"))
        report, _ = reducer.reduce_path(path)  # warm-up: compile kernels, load catalogue
        info = report.info
        print(
            f"frame: {report.status}, {info.get('stars_matched')} stars matched, "
            f"RMS {info.get('astrometric_rms_px')} px, FWHM {info.get('fwhm_px')} px, "
            f"sources {info.get('sources')}, detections {len(report.detections)}"
        )
        cold, warm = [], []
        for _ in range(args.repeat):
            reducer._last = None
            t = time.perf_counter()
            reducer.reduce_path(path)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            reducer.reduce_path(path)
            warm.append(time.perf_counter() - t)
        data = read_frame(path).data
        fwhm = float(info.get("fwhm_px") or 3.0)
        base = []
        n_base = 0
        for _ in range(max(2, args.repeat // 2)):
            t = time.perf_counter()
            n_base = photutils_baseline(data, fwhm)
            base.append(time.perf_counter() - t)
    c, w, b = statistics.median(cold), statistics.median(warm), statistics.median(base)
    print(f"ours, whole reduction, cold solve : {c:6.3f} s/frame")
    print(f"ours, whole reduction, sequence   : {w:6.3f} s/frame")
    print(f"photutils defaults, extraction only ({n_base} sources): {b:6.3f} s/frame")
    print(f"ratio photutils-extraction / ours-whole (cold): {b / c:5.2f}x")
    print(f"ratio photutils-extraction / ours-whole (sequence): {b / w:5.2f}x")
    print(f"goal <= 1.5 s/frame: {'met' if w <= 1.5 else 'not met'} (sequence)")


if __name__ == "__main__":
    main()
