"""Linking pieces: the motion model, the false-alarm probability, pixel-fixed features,
the direction of a lone streak."""

from __future__ import annotations

import math

import numpy as np

from aposos.station.detection import Detection
from aposos.station.linking import false_alarm_probability
from aposos.station.pixelfixed import NOTE, flag_pixel_fixed
from aposos.station.tracklets import LinkedTrack, Motion, _tangent, eastward

one_arcsec = 1 / 3600


def _leo_track(n=13, cadence=4.0, times=None):
    """Topocentric RA/Dec of a circular 550 km orbit from a site (numpy geometry): a
    path that bends off the great circle through parallax, at a changing rate."""
    r_earth, h = 6378.137, 550.0
    r = r_earth + h
    w = math.sqrt(398600.4418 / r**3)  # rad/s
    inc = math.radians(53.0)
    t = np.arange(n) * cadence if times is None else np.asarray(times, float)
    u = w * t + 0.3
    pos = r * np.stack([np.cos(u), np.sin(u) * math.cos(inc), np.sin(u) * math.sin(inc)], 1)
    site = r_earth * np.array([math.cos(0.45), 0.25, math.sin(0.45)])
    site = site / np.linalg.norm(site) * r_earth
    rel = pos - site
    rel /= np.linalg.norm(rel, axis=1, keepdims=True)
    ra = np.degrees(np.arctan2(rel[:, 1], rel[:, 0])) % 360
    dec = np.degrees(np.arcsin(rel[:, 2]))
    return t, ra, dec


def test_motion_model_follows_a_leo_arc():
    t, ra, dec = _leo_track()
    p = np.stack(_tangent(ra, dec, ra[0], dec[0]), 1)
    ends = np.radians([[ra[0], dec[0]], [ra[-1], dec[-1]]])
    xyz = np.stack([np.cos(ends[:, 1]) * np.cos(ends[:, 0]),
                    np.cos(ends[:, 1]) * np.sin(ends[:, 0]), np.sin(ends[:, 1])], 1)  # fmt: skip
    sweep = math.degrees(math.acos(float(xyz[0] @ xyz[1])))
    assert sweep > 5.0  # degrees: far beyond a tangent-plane line's reach
    m = Motion.fit(t, p)
    err = np.hypot(*(m.position(t) - p).T) / one_arcsec
    assert err.max() < 2.0  # a tenth of the linking gate
    # a straight tangent-plane line at a steady rate is off by far more
    coef = np.polynomial.polynomial.polyfit(t, p, 1)
    line = np.polynomial.polynomial.polyval(t, coef).T
    assert np.hypot(*(line - p).T).max() / one_arcsec > 30.0


def _det(frame, snr, *, radec_a=None, vsig=3.0):
    d = Detection(frame=frame, kind="point", x=10.0, y=10.0, sigma_px=0.1, flux=1.0,
                  snr=snr, width_px=1.0)  # fmt: skip
    d.radec_a = radec_a
    d.velocity_sigma = vsig
    d.sigma_arcsec = 0.2
    return d


def test_false_alarm_probability():
    area = (2048 * 1.6) ** 2
    noise = np.sort(np.concatenate([np.full(2000, 5.5), [4000.0] * 13]))
    weak = LinkedTrack([_det(k, 5.4) for k in range(3)], [True] * 3, 0.1, 10.0)
    bright = LinkedTrack([_det(k, 4000.0) for k in range(13)], [True] * 13, 0.25, 1.1)
    assert false_alarm_probability(weak, noise, 15, area, 2048**2) > 0.5
    assert false_alarm_probability(bright, noise, 15, area, 2048**2) < 1e-20
    lone = LinkedTrack([_det(0, 12.0)], [True], 0.01, 0.0)
    assert false_alarm_probability(lone, noise, 15, area, 2048**2) < 1e-20


class _Report:
    def __init__(self, dets, sources):
        self.detections = dets
        self.sources_table = np.array(sources, float).reshape(-1, 6)


def test_pixel_fixed_features_are_flagged_and_a_staring_geo_is_kept():
    def src(x, y):
        return [x, y, 100.0, 10.0, 0.0, 0.0]

    hot_a, geo = _det(0, 8.0), _det(0, 9.0)
    hot_a.x, hot_a.y = 500.2, 300.1
    geo.x, geo.y = 800.0, 700.0
    field1 = [_Report([hot_a, geo], [src(500.2, 300.1), src(800.0, 700.0)]) for _ in range(3)]
    # other fields: the hot pixel is on the same pixels, the GEO is not there
    field2 = [_Report([], [src(500.0, 300.3), src(30.0, 40.0)]) for _ in range(3)]
    field3 = [_Report([], [src(500.5, 300.0)]) for _ in range(3)]
    assert flag_pixel_fixed([field1, field2, field3]) >= 1
    assert NOTE in hot_a.notes
    assert NOTE not in geo.notes
    # a source on the GEO's pixels in one frame of each other field is chance (a star
    # or a noise peak), not a feature
    geo.notes.clear()
    field2[0].sources_table = np.array([src(800.3, 700.2)])
    field3[1].sources_table = np.array([src(799.8, 699.9)])
    flag_pixel_fixed([field1, field2, field3])
    assert NOTE not in geo.notes
    # a single field cannot tell (the dark frames' bad-pixel map does that)
    lone = _det(0, 8.0)
    assert flag_pixel_fixed([[_Report([lone], [src(10.0, 10.0)])]]) == 0


def test_eastward_prior():
    assert eastward(np.array([1e-3, 1e-4])) is True
    assert eastward(np.array([-1e-3, 2e-4])) is False
    assert eastward(np.array([1e-5, 1e-3])) is None  # north-south: the prior cannot tell


def _rate_sequence(
    frames, *, noise_per_frame, noise_snr, seed=5, drift_px_s=0.3, exposure=0.4, psf=0.5
):
    """Detections of a rate-tracking sequence: the tracked LEO held near one detector
    pixel (drifting ``drift_px_s``) in the frames given (the others not solved), and
    noise points at random pixels; the sky moves with the mount, 1.6"/px, 0.4 s
    exposures. A drift smears the target's point: its round fit widens (a segment of
    length L adds L**2 / 24 to the variance)."""
    rng = np.random.default_rng(seed)
    half_us = int(exposure * 5e5)
    t = np.arange(max(frames) + 1) * 4.0
    scale = 1.6 / 3600
    t0 = np.datetime64("2020-10-03T00:36:00", "us")
    dets, target = [], []
    for f in frames:

        def radec(dx, dy, dt=0.0, f=f):  # sky at pixel offset (dx, dy) from the target
            _, r0, d0 = _leo_track(times=[t[f] + dt])
            r0, d0 = float(r0[0]), float(d0[0])
            return (r0 + dx * scale / math.cos(math.radians(d0))) % 360, d0 + dy * scale

        def det(x, y, snr, f=f, width=psf):
            d = _det(f, snr, vsig=1.2 * scale / 0.4)
            d.x, d.y, d.width_px = x, y, width
            d.psf_sigma_px = psf
            d.t_open = t0 + np.timedelta64(int(t[f] * 1e6) - half_us, "us")
            d.t_close = d.t_open + np.timedelta64(2 * half_us, "us")
            dx, dy = x - 1000.0, y - 1000.0
            d.radec_mid = radec(dx, dy)
            d.radec_a, d.radec_b = radec(dx, dy, -exposure / 2), radec(dx, dy, exposure / 2)
            return d

        smear = drift_px_s * exposure
        width = math.sqrt(psf**2 + smear**2 / 24.0)
        target.append(det(1000.0 + drift_px_s * t[f], 1000.0, 5000.0, width=width))
        dets.append(target[-1])
        for _ in range(noise_per_frame):
            dets.append(det(*rng.uniform(0, 2048, 2), noise_snr))
    return dets, target


def test_a_rate_tracked_leo_links_across_unsolved_frames():
    """A tracked LEO seen in 7 of 15 frames (gaps of up to 16 s while its rate changes)
    is one track; noise among the trailed stars, as bright as a faint object, makes
    none (a point among trailed stars stays on the mount's pixels)."""
    from aposos.station.tracklets import link

    frames = [0, 3, 5, 9, 12, 13, 14]
    dets, target = _rate_sequence(frames, noise_per_frame=40, noise_snr=8.0)
    tracks = link(dets, min_points=3)
    assert len(tracks) == 1
    assert [id(d) for d in tracks[0].members] == [id(d) for d in target]


def test_a_point_drifting_on_the_detector_in_stare_mode_links():
    """A GEO-synchronous object on an inclined orbit drifts 3 px/s across the detector
    of a staring telescope: 4.5 px in a 1.5 s exposure, still a point (only wider than
    the PSF). It is one track; the noise points around it make none."""
    from aposos.station.tracklets import link

    sharp = _det(0, 10.0)
    sharp.width_px, sharp.psf_sigma_px = 0.5, 0.5
    assert sharp.drift_px == 2.3548 * 0.5  # a point as sharp as the PSF: its FWHM
    sharp.width_px = math.sqrt(0.25 + 4.5**2 / 24)
    assert sharp.drift_px > 4.5  # smeared by 4.5 px
    frames = list(range(15))
    dets, target = _rate_sequence(
        frames, noise_per_frame=40, noise_snr=8.0, drift_px_s=3.0, exposure=1.5
    )
    tracks = link(dets, min_points=3)
    assert len(tracks) == 1
    assert [id(d) for d in tracks[0].members] == [id(d) for d in target]


def test_a_lone_streak_must_be_as_sharp_as_the_psf():
    """A 17 px streak at S/N 10 in one frame stands alone when it is as sharp across as
    the frame's stars; 1.6 times wider it is a row of faint stars (Iran seed 31's one
    false tracklet), not a satellite."""
    from aposos.station.tracklets import link

    scale = 1.485 / 3600
    t0 = np.datetime64("2020-10-02T18:25:00", "us")

    def streak(width):
        d = Detection(frame=0, kind="streak", x=1240.0, y=3287.0, sigma_px=0.3, flux=1.0,
                      snr=10.1, width_px=width, xa=1233.0, ya=3292.0, xb=1247.0, yb=3283.0,
                      sigma_end_px=0.5)  # fmt: skip
        d.psf_sigma_px = 0.74
        d.t_open, d.t_close = t0, t0 + np.timedelta64(2_000_000, "us")
        d.radec_mid = (300.0, 10.0)
        d.radec_a = (300.0 - 7.0 * scale, 10.0 + 5.0 * scale)
        d.radec_b = (300.0 + 7.0 * scale, 10.0 - 4.0 * scale)
        d.velocity_sigma = 1e-5
        return d

    assert len(link([streak(0.8)])) == 1
    assert link([streak(1.2)]) == []


def _streak(frame, snr):
    d = _det(frame, snr, radec_a=(10.0, 0.0), vsig=1e-4)
    d.kind = "streak"
    return d


def test_two_streaks_are_no_likelier_false_than_one():
    """Two streaks of one object in two frames: the chain estimate alone never goes
    below one over the number of frames (a Peru sidereal pair at S/N 1,100 was
    dropped at 0.1); a track is false only if its strongest streak is."""
    area = (2048 * 1.3) ** 2
    snr = np.sort(np.concatenate([np.full(2000, 6.0), [1100.0, 1200.0]]))
    pair = LinkedTrack([_streak(0, 1200.0), _streak(1, 1100.0)], [True] * 2, 0.005, 1.0)
    assert false_alarm_probability(pair, snr, 10, area, 2048**2) < 1e-20
    faint = LinkedTrack([_streak(0, 6.0), _streak(1, 6.0)], [True] * 2, 0.005, 1.0)
    assert false_alarm_probability(faint, snr, 10, area, 2048**2) > 0.01
