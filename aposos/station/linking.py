"""Solved frames -> tracklets: grouping frames by field, linking, and assembly.

Frames follow one another in one field while their centres stay within a degree and
the gaps stay short; within a field :func:`aposos.station.tracklets.link` joins the
detections, tracks that could be chance alignments are dropped (:func:`_credible`),
and each track becomes a :class:`~aposos.model.Tracklet` with streak ends at the
shutter times and midpoints at mid-exposure.
"""

from __future__ import annotations

import math

import numpy as np

from aposos.model import Tracklet
from aposos.station.identity import assign_uuids
from aposos.station.pixelfixed import flag_pixel_fixed
from aposos.station.tracklets import LONE_SNR, link

__all__ = ["FAP_MAX", "false_alarm_probability", "link_frames"]

GATE = 20.0  # arcsec: how far a member may sit from the fitted motion
RATE_CHANGE = 0.015  # per second: fastest relative change of a LEO's angular rate
RATE_TRACK_DEG_S = 1.5  # fastest mount rate of a tracked LEO (near the zenith)
FAP_MAX = 0.01  # tracks likelier than this to be chance alignments are dropped


def link_frames(
    reports, station_code: str, *, max_gap_s: float, min_points: int, max_fap: float = FAP_MAX
):
    """Tracklets from the solved frames' detections, field by field.

    Returns (tracklets, members, faps): the :class:`~aposos.model.Tracklet` list and,
    for each, the detections it was made of and its false-alarm probability
    (:func:`false_alarm_probability`); tracks above ``max_fap`` are dropped.
    """
    groups = field_groups(reports, max_gap_s=max_gap_s)
    flag_pixel_fixed(groups)
    tracklets, members, faps = [], [], []
    for g in groups:
        dets = [
            d for r in g for d in r.detections if not any(n.startswith("static") for n in d.notes)
        ]
        times = np.array([r.mid_utc for r in g])
        snr = np.sort([d.snr for d in dets])
        area = sum(_area_arcsec2(r) for r in g) / len(g)
        pixels = sum(np.prod(r.info.get("shape", (2048, 2048))) for r in g) / len(g)
        for track in link(dets, max_gap_s=max_gap_s, min_points=min_points, gate_arcsec=GATE):
            if not _credible(track, times):
                continue
            fap = false_alarm_probability(track, snr, len(g), area, pixels)
            if fap > max_fap:
                continue
            t = _to_tracklet(station_code, track)
            if t is not None:
                tracklets.append(t)
                members.append(track.members)
                faps.append(fap)
    return assign_uuids(tracklets), members, faps


def field_groups(reports, *, max_gap_s: float) -> list[list]:
    """Solved frames in time order, grouped by field: consecutive frames whose centres
    stay within a degree (five along a rate-tracking sequence) and whose gaps stay
    short."""
    solved = [r for r in reports if r.status == "solved"]
    solved.sort(key=lambda r: r.mid_utc)
    groups: list[list] = []
    for r in solved:
        g = groups[-1] if groups else None
        gap = (r.mid_utc - g[-1].mid_utc) / np.timedelta64(1, "s") if g else np.inf
        # a mount tracking a LEO moves a degree or more between frames (more across
        # frames that were not solved): one field while it keeps tracking
        step = 1.0
        if g and _mode(g[-1]) == _mode(r) == "rate":
            step = max(5.0, RATE_TRACK_DEG_S * gap)
        if g and _separation(g[-1].centre_deg, r.centre_deg) < step and gap < max_gap_s:
            g.append(r)
        else:
            groups.append([r])
    return groups


def false_alarm_probability(
    track, snr_sorted: np.ndarray, n_frames: int, area_arcsec2: float, pixels: float
) -> float:
    """Chance that noise and artefacts line up into this track (an upper estimate).

    Detections at least as strong as the track's weakest member are the ones it could
    be made of by chance: ``m`` per frame. Any two of them in two frames make a seed
    (``n_frames * m**2`` tries); each further member must fall within the gate around
    the fitted motion (probability ``m * pi * g**2 / area``, ``g`` the gate that the
    track's own residuals justify), and a member with its own measured velocity must
    also agree in velocity (one chance in five, conservatively). A lone streak is a
    false alarm when noise makes one: a Gaussian tail at its S/N over the frame's pixels;
    a track with streaks is no likelier to be false than its strongest streak alone.
    """
    from scipy.special import log_ndtr

    members = track.members
    n = len(members)
    if n == 1:
        return float(min(1.0, pixels * math.exp(log_ndtr(-members[0].snr))))
    weakest = min(d.snr for d in members)
    count = snr_sorted.size - np.searchsorted(snr_sorted, weakest)
    m = max(count - n, 1) / n_frames
    gate = min(GATE, max(3.0 * track.rms_arcsec, 3.0))
    p = min(1.0, m * math.pi * gate**2 / area_arcsec2)
    with_velocity = sum(
        d.radec_a is not None and d.velocity_sigma < 1.0 for d in members[2:]
    )  # fmt: skip
    log_fap = math.log(n_frames * m * m) + (n - 2) * math.log(max(p, 1e-300))
    log_fap += with_velocity * math.log(0.2)
    # a track is false only if all its members are: no likelier than its strongest
    # streak (two streaks in two frames would otherwise never pass, m >= 1 / n_frames)
    # (at the S/N a lone streak needs: fainter ones may be artefacts, not noise)
    streak_snr = [d.snr for d in members if d.kind == "streak" and d.radec_a is not None]
    if streak_snr and max(streak_snr) >= LONE_SNR:
        log_fap = min(log_fap, math.log(pixels) + float(log_ndtr(-max(streak_snr))))
    return float(min(1.0, math.exp(min(log_fap, 0.0))))


def _area_arcsec2(report) -> float:
    ny, nx = report.info.get("shape", (2048, 2048))
    scale = report.info.get("pixel_scale_arcsec", 1.5)
    return float(nx * ny * scale * scale)


def _credible(track, frame_times: np.ndarray) -> bool:
    """Tracks made only of points must show up in most frames they span, clearly.

    Noise peaks and cosmic rays line up by chance across a long sequence now and
    then, but not in most consecutive frames at a good S/N.
    """
    t0, t1 = track.members[0].t_mid, track.members[-1].t_mid
    spanned = int(np.sum((frame_times >= t0) & (frame_times <= t1)))
    if len(track.members) == 2:  # two streaks: in consecutive frames, along one line
        a, b = track.members
        ta = math.atan2(a.yb - a.ya, a.xb - a.xa)
        tb = math.atan2(b.yb - b.ya, b.xb - b.xa)
        turn = abs((ta - tb + math.pi / 2) % math.pi - math.pi / 2)
        return spanned <= 2 and turn < 0.15
    if any(d.kind == "streak" and d.radec_a is not None for d in track.members):
        return True  # streaks with ends: their lengths and directions already agreed
    if len(track.members) > 1 and _fixed_on_sky(track):
        return False
    snr = float(np.median([d.snr for d in track.members]))
    return len(track.members) >= 0.6 * spanned and snr >= 7.0


def _fixed_on_sky(track) -> bool:
    """A star, not a satellite. Where stars trail, points and streaks along the trails
    line up at any slow rate: below 1"/s is fixed. Among round stars the points were
    found where the neighbour frames have no star (:class:`TransientState`): fixed is
    moving less than two FWHM over the track (a HEO near apogee, tracked, at 0.8"/s
    moved 12 FWHM in a minute)."""
    members = track.members
    if not all(d.kind == "point" and d.radec_a is None for d in members):
        return track.rate_deg_s * 3600.0 < 1.0
    moved = _separation(members[0].radec_mid, members[-1].radec_mid) * 3600.0
    fwhm = max(2.3548 * d.width_px * d.scale_arcsec for d in members)
    return not moved >= 2.0 * fwhm


def _to_tracklet(code: str, track) -> Tracklet | None:
    lone = len(track.members) == 1
    if lone and track.direction == "prior":
        return _lone_streak(code, track.members[0], track.forward[0])
    utc, ra, dec, sig, mag = [], [], [], [], []
    for d, fwd in zip(track.members, track.forward, strict=True):
        clipped = d.clipped_a or d.clipped_b
        if d.kind == "streak" and d.radec_a is not None and not lone:
            ends = [(d.radec_a, d.clipped_a), (d.radec_b, d.clipped_b)]
            if not fwd:
                ends.reverse()
            for (radec, clip), when in zip(ends, (d.t_open, d.t_close), strict=True):
                if not clip:
                    utc.append(when)
                    ra.append(radec[0])
                    dec.append(radec[1])
                    sig.append(d.sigma_end_arcsec)
                    mag.append(d.mag)
        if d.kind == "point" or not clipped:
            utc.append(d.t_mid)
            ra.append(d.radec_mid[0])
            dec.append(d.radec_mid[1])
            sig.append(d.sigma_arcsec)
            mag.append(d.mag)
    if not utc:
        return None
    return Tracklet(code, np.array(utc, "datetime64[us]"), ra, dec, sig, mag)


LONE_NOTE = "single frame: direction from the eastward-motion prior (one frame cannot tell)"


def _lone_streak(code: str, d, forward: bool, n_points: int = 5) -> Tracklet | None:
    """A streak seen in one frame: its ends at the shutter times and points along it
    at times in proportion, the direction taken from the eastward-motion prior. A
    clipped end is not reported (nor, then, the points along: the length is unknown)."""
    start, end = (d.radec_a, d.radec_b) if forward else (d.radec_b, d.radec_a)
    clip_start, clip_end = (d.clipped_a, d.clipped_b) if forward else (d.clipped_b, d.clipped_a)
    if clip_start and clip_end:
        return None
    if clip_start:
        fractions = [1.0]
    elif clip_end:
        fractions = [0.0]
    else:
        fractions = list(np.linspace(0.0, 1.0, n_points))
    u0, u1 = _unit_vector(*start), _unit_vector(*end)
    omega = math.acos(max(-1.0, min(1.0, float(u0 @ u1))))
    utc, ra, dec, sig = [], [], [], []
    span_us = (d.t_close - d.t_open) / np.timedelta64(1, "us")
    for f in fractions:
        if omega < 1e-12:
            u = u0
        else:
            u = (math.sin((1 - f) * omega) * u0 + math.sin(f * omega) * u1) / math.sin(omega)
        utc.append(d.t_open + np.timedelta64(round(f * span_us), "us"))
        ra.append(math.degrees(math.atan2(u[1], u[0])) % 360.0)
        dec.append(math.degrees(math.asin(max(-1.0, min(1.0, u[2])))))
        # times in proportion along: off where the rate changes within the exposure
        # (by up to RATE_CHANGE a second for a LEO): 0.5 A L T f (1 - f)
        along = 0.5 * RATE_CHANGE * math.degrees(omega) * 3600.0 * span_us * 1e-6 * f * (1 - f)
        sig.append(d.sigma_end_arcsec if f in (0.0, 1.0) else math.hypot(d.sigma_arcsec, along))
    if LONE_NOTE not in d.notes:
        d.notes.append(LONE_NOTE)
    return Tracklet(code, np.array(utc, "datetime64[us]"), ra, dec, sig, d.mag)


def _unit_vector(ra_deg: float, dec_deg: float) -> np.ndarray:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])


def _mode(report) -> str | None:
    return report.info.get("track_mode")


def _separation(a, b) -> float:
    ra1, d1, ra2, d2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))
