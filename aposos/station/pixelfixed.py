"""Detector features that survive calibration: found by staying on the same pixels.

Hot pixels too weak for the bad-pixel map, warm columns, glow and other artefacts sit
on the same detector pixels in every frame, whatever the telescope points at. A
satellite does not follow the pointing: a GEO in stare mode stays on the same pixels
for the frames of one field, and a tracked LEO for the frames of one rate-tracking
sequence, but not across fields. So a candidate is a detector feature when sources
sit on its pixels in the other fields (all of them, or two thirds when there are more
than three fields), in two and a third or more of each field's frames: a feature is
in most frames, while a chance star or noise peak on those pixels is in one (with a
few thousand sources a frame, one of a field's fifteen frames has a source within a
pixel of any given place about three times in a hundred).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["flag_pixel_fixed"]

NOTE = "static: on the same pixels in other fields (a detector feature)"


def flag_pixel_fixed(groups: list[list], *, radius_px: float = 1.0) -> int:
    """Note candidates of each field that sit on sources' pixels in other fields.

    Parameters
    ----------
    groups : solved :class:`~aposos.station.reduce.FrameReport` lists, one per field
        (frames of one pointing or one tracking sequence).
    radius_px : how close counts as the same pixels.

    Returns the number of candidates flagged.
    """
    if len(groups) < 2:
        return 0
    fields = []  # per field: one tree per frame with sources
    for g in groups:
        xy = [r.sources_table[:, :2] for r in g if r.sources_table is not None]
        fields.append([cKDTree(p) for p in xy if len(p)])
    flagged = 0
    for i, g in enumerate(groups):
        others = [f for j, f in enumerate(fields) if j != i]
        # a detector feature is in every field; a chance star at the same pixels in
        # one other field is not rare in crowded fields (0.5 % a field in 4096^2)
        need = len(others) if len(others) <= 2 else math.ceil(2 * len(others) / 3)
        for r in g:
            for d in r.detections:
                if d.notes and any(n.startswith("static") for n in d.notes):
                    continue
                hits = sum(_on_pixels(f, d.x, d.y, radius_px) for f in others)
                if hits >= need:
                    d.notes.append(NOTE)
                    flagged += 1
    return flagged


def _on_pixels(trees, x, y, radius_px) -> bool:
    """Whether two or more of a field's frames (``trees``, one per frame), and a third
    of them or more, have a source within ``radius_px`` of (x, y); a field of one frame
    has to have it there."""
    if not trees:
        return False
    n = sum(np.isfinite(t.query([x, y], distance_upper_bound=radius_px)[0]) for t in trees)
    return n >= max(min(2, len(trees)), math.ceil(len(trees) / 3))
