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
from aposos.station.tracklets import link

__all__ = ["link_frames"]


def link_frames(reports, station_code: str, *, max_gap_s: float, min_points: int):
    """Tracklets from the solved frames' detections, field by field.

    Returns (tracklets, members): the :class:`~aposos.model.Tracklet` list and, for
    each, the detections it was made of.
    """
    solved = [r for r in reports if r.status == "solved"]
    solved.sort(key=lambda r: r.mid_utc)
    groups: list[list] = []
    for r in solved:
        g = groups[-1] if groups else None
        if (
            g
            and _separation(g[-1].centre_deg, r.centre_deg) < 1.0
            and (r.mid_utc - g[-1].mid_utc) / np.timedelta64(1, "s") < max_gap_s
        ):
            g.append(r)
        else:
            groups.append([r])
    tracklets, members = [], []
    for g in groups:
        dets = [
            d for r in g for d in r.detections if not any(n.startswith("static") for n in d.notes)
        ]
        times = np.array([r.mid_utc for r in g])
        for track in link(dets, max_gap_s=max_gap_s, min_points=min_points):
            if not _credible(track, times):
                continue
            t = _to_tracklet(station_code, track)
            if t is not None:
                tracklets.append(t)
                members.append(track.members)
    return assign_uuids(tracklets), members


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
    if len(track.members) > 1 and track.rate_deg_s * 3600.0 < 1.0:
        return False  # fixed on the sky (a star trail taken for a streak): no satellite
    snr = float(np.median([d.snr for d in track.members]))
    return len(track.members) >= 0.6 * spanned and snr >= 7.0


def _to_tracklet(code: str, track) -> Tracklet | None:
    utc, ra, dec, sig, mag = [], [], [], [], []
    lone = len(track.members) == 1
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


def _separation(a, b) -> float:
    ra1, d1, ra2, d2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))
