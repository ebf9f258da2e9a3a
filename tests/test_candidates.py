"""Satellite candidates hidden in other sources: points merged with star trails and
with brighter points, fitted jointly (aposos.station.candidates / deblend).

Frames are synthetic (tests/station_synth.py: real catalogue stars, pixel-integrated
Gaussian PSF, shot and read noise); the truth is where the points were drawn.
"""

from __future__ import annotations

import numpy as np
import pytest
from station_synth import make_frame

from aposos.station.candidates import frame_candidates, trail_width
from aposos.station.extract import SourceExtractor
from aposos.station.fitsframe import read_frame

FWHM = 2.5
SIGMA = FWHM / 2.3548
TRAIL = (24.0, 6.0)


def _extract(path):
    frame = read_frame(path)
    return SourceExtractor(fwhm_px=FWHM, saturation=59000)(frame.data.astype(np.float32))


@pytest.fixture(scope="module")
def stare(tmp_path_factory):
    """A frame of trailed stars with points on three trails (end, middle, beside)."""
    base = tmp_path_factory.mktemp("cand")
    probe = make_frame(base / "probe.fits", zero_point=19.5, fwhm_px=FWHM, star_trail=TRAIL)
    xy = probe.star_xy
    inside = (xy[:, 0] > 80) & (xy[:, 0] < 940) & (xy[:, 1] > 80) & (xy[:, 1] < 940)
    # isolated stars: no other star within 40 px
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    hosts = np.nonzero(inside & (d.min(axis=1) > 40))[0][:3]
    assert hosts.size == 3
    tx, ty = TRAIL
    offsets = [(0.5, 0.0), (0.1, 0.0), (-0.25, 1.6)]  # along the trail; across (px)
    points = []
    for h, (a, c) in zip(hosts, offsets, strict=True):
        nx_, ny_ = -ty / np.hypot(tx, ty), tx / np.hypot(tx, ty)
        # a quarter of the star's light: at its peak about six times the trail's
        flux = 0.25 * 10 ** (-0.4 * (probe.star_mag[h] - 19.5)) * 2.0
        points.append((xy[h, 0] + a * tx + c * nx_, xy[h, 1] + a * ty + c * ny_, flux))
    path = base / "stare.fits"
    make_frame(path, zero_point=19.5, fwhm_px=FWHM, star_trail=TRAIL, points=points, seed=3)
    return _extract(path), points


def test_trail_width_is_the_psf(stare):
    ext, _ = stare
    assert ext.star_length_px > 20
    # the profile across bright trails gives the PSF sigma drawn (pixel box removed)
    assert trail_width(ext) == pytest.approx(SIGMA, rel=0.1)


def test_points_on_star_trails(stare):
    ext, points = stare
    dets = frame_candidates(ext, trail_width(ext), edge_margin=3.0)
    for x, y, _ in points:
        # the segmentation merged the point into the star's trail
        lab = ext.labels[int(round(y)), int(round(x))]
        assert lab != 0 and np.sum(ext.labels == lab) > 60
        near = [d for d in dets if np.hypot(d.x - x, d.y - y) < 1.0]
        assert len(near) == 1, (x, y)
        assert np.hypot(near[0].x - x, near[0].y - y) < 0.1
        assert near[0].kind == "point"


def test_no_points_on_plain_trails(stare):
    ext, points = stare
    dets = frame_candidates(ext, trail_width(ext), edge_margin=3.0)
    hidden = [d for d in dets if any("merged" in n for n in d.notes)]
    far = [d for d in hidden if min(np.hypot(d.x - x, d.y - y) for x, y, _ in points) > 3]
    assert len(hidden) == 3 and far == []  # no false point found in the other trails


def test_faint_point_beside_a_saturated_one(tmp_path):
    """Two co-located geostationary satellites: one saturated, one 6 px away."""
    bright, faint = (400.3, 500.6, 4.0e6), (404.1, 505.2, 30000.0)
    path = tmp_path / "pair.fits"
    make_frame(path, zero_point=19.5, fwhm_px=FWHM, star_trail=TRAIL, points=[bright, faint])
    ext = _extract(path)
    s = ext.sources
    # one segment holds both
    lab = ext.labels[int(round(bright[1])), int(round(bright[0]))]
    assert lab != 0 and lab == ext.labels[int(round(faint[1])), int(round(faint[0]))]
    assert ext.saturated is not None and s.nsat[s.label == lab][0] > 0
    dets = frame_candidates(ext, trail_width(ext), edge_margin=3.0)
    near = [d for d in dets if np.hypot(d.x - faint[0], d.y - faint[1]) < 1.0]
    assert len(near) == 1
    assert np.hypot(near[0].x - faint[0], near[0].y - faint[1]) < 0.2
    assert any(np.hypot(d.x - bright[0], d.y - bright[1]) < 1.0 for d in dets)


def test_a_slow_object_longer_than_a_star_is_a_moving_point_candidate():
    """Among round stars an object moving 8 px in the exposure (FWHM 1.5 px) has a
    footprint 11 px long: too short for a streak, longer than a star. Absent from the
    neighbour frame, it is a moving-point candidate (a HEO lost in 2 of 12 Peru frames
    fell between the two); a source three times as long is not."""
    from types import SimpleNamespace

    from aposos.station.candidates import TransientState
    from aposos.station.extract import STAR

    sigma = 1.48 / 2.3548
    model = SimpleNamespace(pixel_to_world=lambda x, y: (x, y), world_to_pixel=lambda r, d: (r, d))

    def state(length):
        src = SimpleNamespace(kind=np.full(2, STAR), snr=np.full(2, 200.0),
                              length=np.array(length, float), x=np.array([184.0, 60.0]),
                              y=np.array([344.0, 90.0]))  # fmt: skip
        ext = SimpleNamespace(sources=src, labels=np.zeros((500, 500), np.int32),
                              snr_image=np.zeros((500, 500), np.float32))  # fmt: skip
        report = SimpleNamespace(solution=SimpleNamespace(model=model), detections=[])
        return TransientState(report, ext, sigma, margin=3.0)

    here = state([10.8, 33.0])
    here.compare(state([3.0, 3.0]))  # the neighbour: nothing at those places
    assert here.absent.tolist() == [True, False]
