"""One satellite candidate in one frame: what the reduction measured and placed.

Which endpoint of a streak is the start is unknown within one frame. Every detection
carries an in-frame sky velocity known up to its sign (a streak: along its length; a
point in a frame with trailed stars: against the star trails; a point among round
stars: about zero); linking across frames takes each sign from the motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Detection"]


@dataclass
class Detection:
    """One satellite candidate in one frame (pixels 0-based; times UTC)."""

    frame: int
    kind: str  # "streak" | "point"
    x: float  # midpoint
    y: float
    sigma_px: float  # 1-sigma position error of the midpoint (per axis)
    flux: float
    snr: float
    width_px: float
    # streak endpoints (a, b unordered), their errors and clipping
    xa: float = float("nan")
    ya: float = float("nan")
    xb: float = float("nan")
    yb: float = float("nan")
    sigma_end_px: float = float("nan")
    clipped_a: bool = False
    clipped_b: bool = False
    # filled by the reduction once the frame is solved
    t_open: np.datetime64 | None = None
    t_close: np.datetime64 | None = None
    radec_mid: tuple[float, float] | None = None
    # streak ends; for a point in a frame of trailed stars, where it was against the
    # stars at the ends of the exposure (in some order)
    radec_a: tuple[float, float] | None = None
    radec_b: tuple[float, float] | None = None
    velocity_sigma: float = 0.0  # error of the in-frame velocity, deg/s
    psf_sigma_px: float = float("nan")  # the frame's PSF (across the trails if trailed)
    scale_arcsec: float = float("nan")  # the frame's pixel scale
    uneven_sigma: float = 0.0  # a streak's faintest third below the mean (candidates.py)
    mag: float = float("nan")
    sigma_arcsec: float = float("nan")
    sigma_end_arcsec: float = float("nan")
    # where it is on the sky relative to the commanded pointing (the header's, at shutter
    # open): standard coordinates in the frame's pixels. A point the mount holds stays
    # put there even when the mount re-points between frames (a fresh pointing error)
    mount_xy: tuple[float, float] | None = None
    # the frame's solved centre relative to the commanded pointing, in the same units:
    # where two frames' differ, the mount re-pointed with a new pointing error
    pointing_error_xy: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def t_mid(self) -> np.datetime64:
        return self.t_open + (self.t_close - self.t_open) / 2

    @property
    def drift_px(self) -> float:
        """How far a point among trailed stars may have moved on the detector in the
        exposure: its FWHM (at least a pixel), or, when it is wider than the frame's
        PSF, the motion that widens a round Gaussian fit that much (a segment of length
        L adds L**2 / 24 to the fitted variance), with a fifth to spare. A GEO-synchronous
        object on an inclined orbit drifts a few pixels in a stare exposure and is still
        a point."""
        psf = self.psf_sigma_px if np.isfinite(self.psf_sigma_px) else self.width_px
        smear = np.sqrt(24.0 * max(self.width_px**2 - psf**2, 0.0))
        return float(max(1.0, 2.3548 * self.width_px, 1.2 * smear))

    @property
    def exptime_s(self) -> float:
        return float((self.t_close - self.t_open) / np.timedelta64(1, "us")) * 1e-6
