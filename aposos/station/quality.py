"""The night's quality as a station sees it, for the heartbeat.

From each solved frame's reduction (``reduction.json``'s fields): the stars' FWHM
(arcsec), the limiting magnitude (5 sigma point source, from the background noise and
the frame's zero point) and the sky's surface brightness in mag/arcsec^2, from the
calibrated background level and the same zero point:
``sky = zp - 2.5 log10(background_adu / pixel_scale_arcsec**2)``.
The zero point comes from the frame's own stars, dimmed by the same air as the sky, so
this sky is brighter by the extinction (k times the air mass) than one calibrated
above the atmosphere: on simulated Pakistan frames (k = 0.22, air mass 1.03) it reads
0.23 mag/arcsec^2 brighter than the simulator's sky at that air mass, as expected; on
simulated Peru frames (k = 0.15, air mass 1.15) 0.40 brighter, 0.23 more than the
extinction explains (not understood yet).
The heartbeat carries the medians over the last solved frames, and how many frames
were not solved, by reason.
"""

from __future__ import annotations

import math
import re
import statistics

__all__ = ["frame_quality", "quality_summary", "reason_key", "reasons_summary"]

MAX_TRAIL_PX = 1.0  # stars trailing more than this: no FWHM or depth from the frame
RECENT_FRAMES = 20  # the heartbeat's figures: medians over the last solved frames
MAX_REASONS = 20  # the heartbeat names the commonest reasons, the rest as "other"
FIELDS = ("fwhm_arcsec", "limiting_mag", "sky_mag_arcsec2")
# what the center accepts (a value outside is left out, so the heartbeat still goes)
RANGES = {"fwhm_arcsec": (0.05, 600.0), "limiting_mag": (-5.0, 30.0),
          "sky_mag_arcsec2": (5.0, 30.0)}  # fmt: skip


def _finite(x) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def frame_quality(info: dict) -> tuple[float | None, float | None, float | None]:
    """``(fwhm_arcsec, limiting_mag, sky_mag_arcsec2)`` of one solved frame's report.

    FWHM and limiting magnitude only where the stars are points: on a frame whose stars
    trail (tracking at a satellite's rate, or staring) the reduction measures the trail's
    width, 6 times the seeing on simulated Peru frames."""
    fwhm, lim = _finite(info.get("fwhm_arcsec")), _finite(info.get("limiting_mag"))
    if (_finite(info.get("star_trail_px")) or 0.0) > MAX_TRAIL_PX:
        fwhm = lim = None
    zp, bg = _finite(info.get("zero_point_mag")), _finite(info.get("background_adu"))
    scale = _finite(info.get("pixel_scale_arcsec"))
    sky = None
    if zp is not None and bg is not None and bg > 0 and scale:
        sky = zp - 2.5 * math.log10(bg / scale**2)
    return fwhm, lim, sky


def quality_summary(rows: list[tuple]) -> dict:
    """Medians of ``(fwhm, lim, sky)`` rows as heartbeat fields (FWHM to 0.01 arcsec,
    magnitudes to 0.01), with ``quality_frames``; empty when there is no row."""
    if not rows:
        return {}
    out: dict = {"quality_frames": len(rows)}
    for k, name in enumerate(FIELDS):
        lo, hi = RANGES[name]
        values = [r[k] for r in rows if r[k] is not None and lo <= r[k] <= hi]
        out[name] = round(statistics.median(values), 2) if values else None
    return out


def reason_key(reason: str | None) -> str:
    """A frame's reason with its numbers taken out, so alike reasons count together:
    ``"only 3 stars matched"`` -> ``"only N stars matched"``."""
    if not reason:
        return "no reason given"
    text = reason.split("; ")[-1].strip()  # the last attempt's reason says most
    text = re.sub(r"[-+]?\d+(\.\d+)?", "N", text)
    return " ".join(text.split())[:120] or "no reason given"


def reasons_summary(counts: list[tuple[str | None, int]]) -> dict[str, int]:
    """``{reason: frames}`` from ``(reason, frames)`` rows, the commonest first."""
    merged: dict[str, int] = {}
    for reason, n in counts:
        key = reason_key(reason)
        merged[key] = merged.get(key, 0) + int(n)
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(ranked[:MAX_REASONS])
    rest = sum(n for _, n in ranked[MAX_REASONS:])
    if rest:
        out["other"] = out.get("other", 0) + rest
    return out
