"""Source extraction and classification on synthetic frames of real catalogue stars.

Star positions come from astropy's TAN-SIP projection of Gaia/Hipparcos stars;
centroids are also compared with photutils' (an outside implementation).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from station_synth import make_frame

from aposos.station import extract as ex
from aposos.station.extract import POINT, SHARP, STAR, STREAK, SourceExtractor
from aposos.station.fitsframe import read_frame


@pytest.fixture(scope="module")
def sidereal(tmp_path_factory):
    path = tmp_path_factory.mktemp("ex") / "sidereal.fits"
    truth = make_frame(
        path,
        zero_point=19.5,
        fwhm_px=2.8,
        streaks=[(100, 200, 400, 300, 60000)],
        hot_pixels=6,
        cosmic_rays=6,
        faint_stars=300,
        seed=11,
    )
    frame = read_frame(path)
    return truth, frame, SourceExtractor(fwhm_px=3.0, saturation=59000)(frame.data)


def test_kernels_match_scipy():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(67, 91)).astype(np.float32)
    k = ex._gaussian_kernel(1.3)
    rows = np.empty_like(img)
    ex._convolve_rows(img, k, rows)
    np.testing.assert_allclose(rows, ndimage.correlate1d(img, k, axis=1, mode="mirror"), atol=1e-5)
    # the vertical pass divides by knorm * rms: give it a flat rms of 1 / knorm
    rms = np.full((2, 2), 1.0, np.float32)
    iy, wy = ex._axis_weights(67, 64, 2)
    ix, wx = ex._axis_weights(91, 64, 2)
    out = np.empty_like(img)
    mask = np.empty(img.shape, bool)
    ex._convolve_cols_threshold(rows, k, rms, iy, wy, ix, wx, 1.0, 0.5, out, mask)
    ref = ndimage.correlate1d(rows, k, axis=0, mode="mirror")
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_array_equal(mask, ref > 0.5)


def _naive_box_stats(v):
    """The mesh statistic written plainly: 3-sigma clipped median/MAD, then the mode."""
    v = v[np.isfinite(v)].astype(np.float64)
    if v.size < 16:
        return np.nan, np.nan
    for _ in range(5):
        med = np.median(v)
        sd = 1.4826 * np.median(np.abs(v - med))
        keep = np.abs(v - med) < 3.0 * sd
        if keep.all() or keep.sum() < 16:
            break
        v = v[keep]
    if sd > 0 and abs(v.mean() - med) < 0.3 * sd:
        med = 2.5 * med - 1.5 * v.mean()
    return med, max(sd, 1e-6)


def test_mesh_kernel_matches_naive():
    """Every box, every call, the same as the plain version (the parallel kernel once
    shared a counter between boxes and varied from call to call)."""
    rng = np.random.default_rng(4)
    img = (100 + rng.normal(0, 5, (300, 420)) + rng.exponential(3, (300, 420))).astype(np.float32)
    img[rng.random(img.shape) < 0.01] = np.nan
    img[:40, :40] = np.nan  # a box with too few pixels
    box, step = 64, 2
    my, mx = -(-300 // box), -(-420 // box)
    for _ in range(3):
        bkg, rms = np.empty((my, mx)), np.empty((my, mx))
        ex._mesh_stats(img, box, step, bkg, rms)
        for by in range(my):
            for bx in range(mx):
                v = img[by * box : (by + 1) * box : step, bx * box : (bx + 1) * box : step]
                med, sd = _naive_box_stats(v.ravel())
                np.testing.assert_allclose([bkg[by, bx], rms[by, bx]], [med, sd], rtol=1e-12)


def test_background_and_noise(sidereal):
    truth, frame, ext = sidereal
    # synth: sky 400 ADU (+10 % / -5 % gradient) on a 1000 ADU bias; gain 1.5, 9 e- read noise
    expected_noise = np.sqrt(400 * 1.05 * 1.5 + 81) / 1.5
    assert ext.noise_median == pytest.approx(expected_noise, rel=0.05)
    assert ext.background_median == pytest.approx(1000 + 400 * 1.025, abs=5)
    # the background taken off follows the synthetic sky model (bias + gradient)
    ny, nx = frame.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    model = 1000 + 400 * (1.0 + 0.1 * (xx / nx) - 0.05 * (yy / ny))
    background = frame.data - ext.subtracted
    assert np.median(np.abs(background - model)) < 0.15 * expected_noise


def test_stars_centroids_and_fwhm(sidereal):
    truth, frame, ext = sidereal
    s = ext.sources
    assert ext.fwhm_px == pytest.approx(2.8, rel=0.08)
    stars = s.subset(s.kind == STAR)
    bright = (truth.star_mag > 9.0) & (truth.star_mag < 11.0)  # brighter ones saturate
    tx, ty = truth.star_xy[bright].T
    inside = (tx > 10) & (tx < 1013) & (ty > 10) & (ty < 1013)
    d = np.hypot(stars.x[:, None] - tx[inside], stars.y[:, None] - ty[inside])
    nearest = d.min(axis=0)
    assert np.mean(nearest < 1.0) > 0.85  # a few blend with brighter neighbours
    good = nearest[nearest < 1.0]
    assert np.median(good) < 0.05 and np.percentile(good, 90) < 0.15


def test_centroids_agree_with_photutils(sidereal):
    from photutils.centroids import centroid_2dg

    truth, frame, ext = sidereal
    s = ext.sources
    inner = (s.x > 10) & (s.x < 1013) & (s.y > 10) & (s.y < 1013)
    near = np.hypot(s.x[:, None] - s.x, s.y[:, None] - s.y)
    np.fill_diagonal(near, np.inf)
    isolated = near.min(axis=1) > 10  # centroid_2dg fits one star per cutout
    sel = np.nonzero((s.kind == STAR) & (s.snr > 50) & (s.nsat == 0) & inner & isolated)[0][:15]
    assert sel.size >= 8
    for i in sel:
        xi, yi = int(round(s.x[i])), int(round(s.y[i]))
        cut = ext.subtracted[yi - 5 : yi + 6, xi - 5 : xi + 6].astype(float)
        cx, cy = centroid_2dg(cut)
        assert abs(cx + xi - 5 - s.x[i]) < 0.05 and abs(cy + yi - 5 - s.y[i]) < 0.05


def test_classification(sidereal):
    truth, frame, ext = sidereal
    s = ext.sources
    streaks = np.nonzero(s.kind == STREAK)[0]
    mid = np.array([250.0, 250.0])
    hit = [i for i in streaks if np.hypot(s.fx[i] - mid[0], s.fy[i] - mid[1]) < 10]
    assert len(hit) == 1
    assert s.length[hit[0]] == pytest.approx(np.hypot(300, 100), rel=0.05)
    # hot pixels and cosmic rays are never satellite candidates
    cand = (s.kind == STREAK) | (s.kind == POINT)
    assert int(cand.sum()) == 1
    assert (s.kind == SHARP).sum() >= 6


def test_streak_near_a_detector_axis_with_an_undersampled_psf(tmp_path):
    """A bright MEO streak, 106 px nearly along the rows, with stars of 0.8 px FWHM
    (a wide-field camera): the ridge's peak halves where it crosses from one pixel row
    to the next, its sum across does not; it is a streak (it was taken for blended
    stars in every frame of a Peru night)."""
    path = tmp_path / "undersampled.fits"
    make_frame(path, zero_point=19.5, fwhm_px=0.8,
               streaks=[(600.3, 500.4, 706.1, 503.6, 2.0e6)], seed=3)  # fmt: skip
    ext = SourceExtractor(fwhm_px=0.8, saturation=59000)(read_frame(path).data)
    s = ext.sources
    near = np.nonzero(np.hypot(s.fx - 653.2, s.fy - 502.0) < 10)[0]
    assert [s.kind[i] for i in near] == [STREAK]


def test_trailed_stars_and_a_point(tmp_path):
    path = tmp_path / "stare.fits"
    make_frame(
        path,
        zero_point=19.5,
        fwhm_px=2.5,
        star_trail=(24.0, 6.0),
        points=[(512.3, 600.7, 8000.0)],
        seed=5,
    )
    ext = SourceExtractor(fwhm_px=2.5, saturation=59000)(read_frame(path).data)
    # footprint length: the trail plus the PSF wings above the threshold
    assert ext.star_length_px == pytest.approx(np.hypot(24, 6) + 2.5, rel=0.1)
    assert np.degrees(ext.star_theta) % 180 == pytest.approx(np.degrees(np.arctan2(6, 24)), abs=2)
    s = ext.sources
    pts = np.nonzero(s.kind == POINT)[0]
    near = [i for i in pts if np.hypot(s.x[i] - 512.3, s.y[i] - 600.7) < 1.0]
    assert len(near) == 1


def test_empty_and_flat_frames():
    flat = np.full((300, 300), 500.0, np.float32)
    ext = SourceExtractor()(
        flat + np.random.default_rng(0).normal(0, 5, flat.shape).astype(np.float32)
    )
    assert len(ext.sources) < 3
    ext = SourceExtractor()(np.full((64, 64), np.nan, np.float32))
    assert len(ext.sources) == 0


def test_short_bright_streaks_among_bright_stars(tmp_path):
    """Short streaks (14-32 px) with an undersampled PSF (1.45 px FWHM, as Peru's
    camera) among bright stars: the light's own second moments give the streak's
    length, and a star's is about nil (no bright star becomes a streak). The case the
    footprint threshold missed is in test_short_streaks.py (the simulator's stars)."""
    path = tmp_path / "geo.fits"
    streaks = [(300.0, 300.0, 314.0, 300.0), (700.0, 520.0, 732.0, 520.5),
               (520.0, 820.0, 534.0, 820.2), (150.0, 700.0, 165.0, 701.0)]  # fmt: skip
    make_frame(path, zero_point=21.5, fwhm_px=1.45, mag_limit=13.5, faint_stars=400,
               streaks=[(*s, 2.0e4) for s in streaks], seed=7)  # fmt: skip
    ext = SourceExtractor(fwhm_px=1.45, saturation=59000)(read_frame(path).data)
    s = ext.sources
    for x0, y0, x1, y1 in streaks:
        i = int(np.argmin(np.hypot(s.fx - (x0 + x1) / 2, s.fy - (y0 + y1) / 2)))
        assert s.kind[i] == STREAK, (x0, y0)
        assert s.flux_length[i] == pytest.approx(np.hypot(x1 - x0, y1 - y0), abs=2.0)
    # bright stars' own light is round: none of them is a streak
    assert int(np.sum(s.kind == STREAK)) == len(streaks)
    bright = (s.kind == STAR) & (s.snr > 100)
    assert bright.sum() >= 10
    assert np.median(s.flux_length[bright]) < 3.0
