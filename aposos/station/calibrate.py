"""Master bias, dark and flat frames, and applying them.

Masters are median stacks: bias of the bias frames; dark *current* (ADU/s) of the
bias-subtracted darks divided by their exposure times, so darks of any length
serve any light frame; flat of the bias- and dark-subtracted flats, each
normalised to its median before stacking, then normalised to median 1. Hot pixels
(dark current far above the rest) and dead pixels (flat response under 20%) are
masked: they come out as NaN in calibrated frames and the extractor ignores them.

Light frames that are sub-frame cutouts (``LTV1``/``LTV2``) are calibrated with the
matching part of full-frame masters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import prange

from aposos.orbit.jit import parallel_kernel
from aposos.station.fitsframe import Frame, FrameError, read_frame

__all__ = ["MasterCalibration", "find_fits"]

log = logging.getLogger(__name__)
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fit.fz", ".fits.gz")
HOT_SIGMA = 10.0
DEAD_FLAT = 0.2


def find_fits(path) -> list[Path]:
    """FITS files in a folder (sorted), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return sorted(p for p in path.iterdir() if p.name.lower().endswith(FITS_SUFFIXES))


@parallel_kernel
def _apply(raw, bias, dark, t, invflat, bad, out):  # pragma: no cover - numba
    ny, nx = raw.shape
    for i in prange(ny):
        for j in range(nx):
            if bad[i, j]:
                out[i, j] = np.nan
            else:
                out[i, j] = (raw[i, j] - bias[i, j] - dark[i, j] * t) * invflat[i, j]


def _median_stack(arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0].astype(np.float32)
    return np.median(np.stack(arrays), axis=0).astype(np.float32)


@dataclass
class MasterCalibration:
    """Masters in full-detector pixels (``origin`` = detector offset of pixel 0, 0)."""

    bias: np.ndarray | None = None
    dark_rate: np.ndarray | None = None  # ADU / s
    flat: np.ndarray | None = None  # median 1
    bad_pixels: np.ndarray | None = None
    origin: tuple[float, float] = (0.0, 0.0)
    counts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.bias is None and self.dark_rate is None and self.flat is None

    @classmethod
    def from_frames(cls, frames: list[Frame]) -> MasterCalibration:
        """Build masters from bias/dark/flat :class:`Frame` objects (others ignored)."""
        groups: dict[str, list[Frame]] = {"bias": [], "dark": [], "flat": []}
        for f in frames:
            if f.image_type in groups:
                groups[f.image_type].append(f)
        out = cls(counts={k: len(v) for k, v in groups.items()})
        shapes = {f.shape for g in groups.values() for f in g}
        if len(shapes) > 1:
            big = max(shapes, key=lambda s: s[0] * s[1])
            for name, g in groups.items():
                keep = [f for f in g if f.shape == big]
                for f in g:
                    if f.shape != big:
                        out.problems.append(f"{f.name}: {name} frame of shape {f.shape} ignored")
                groups[name] = keep
        if any(groups.values()):
            first = next(f for g in groups.values() for f in g)
            out.origin = first.origin_xy
        if groups["bias"]:
            out.bias = _median_stack([f.data for f in groups["bias"]])
        zero = 0.0 if out.bias is None else out.bias
        if groups["dark"]:
            rates = []
            for f in groups["dark"]:
                if f.exptime_s <= 0:
                    out.problems.append(f"{f.name}: dark without exposure time ignored")
                    continue
                rates.append((f.data - zero) / f.exptime_s)
            if rates:
                out.dark_rate = _median_stack(rates)
                if out.bias is None:
                    out.problems.append("darks without a bias: dark current includes the bias")
        if groups["flat"]:
            normed = []
            for f in groups["flat"]:
                d = f.data - zero
                if out.dark_rate is not None:
                    d = d - out.dark_rate * f.exptime_s
                med = float(np.nanmedian(d))
                if not med > 0:
                    out.problems.append(f"{f.name}: flat with median {med:.1f} ignored")
                    continue
                normed.append(d / med)
            if normed:
                flat = _median_stack(normed)
                flat /= np.float32(np.nanmedian(flat))
                out.flat = flat
        out.bad_pixels = out._bad_pixel_mask()
        return out

    @classmethod
    def from_directory(cls, path, *, time_stamp: str = "start") -> MasterCalibration:
        """Masters from the calibration frames in a folder; unreadable files are listed."""
        frames, problems = [], []
        for p in find_fits(path):
            try:
                f = read_frame(p, time_stamp=time_stamp, require_time=False)
            except FrameError as exc:
                problems.append(str(exc))
                continue
            if f.image_type != "light":
                frames.append(f)
        out = cls.from_frames(frames)
        out.problems = problems + out.problems
        return out

    def _bad_pixel_mask(self):
        shape = next(
            (a.shape for a in (self.bias, self.dark_rate, self.flat) if a is not None), None
        )
        if shape is None:
            return None
        bad = np.zeros(shape, bool)
        if self.dark_rate is not None:
            d = self.dark_rate
            med = float(np.median(d))
            mad = float(np.median(np.abs(d - med))) * 1.4826
            bad |= d > med + HOT_SIGMA * max(mad, 1e-3) + 0.05
        if self.flat is not None:
            bad |= ~(self.flat > DEAD_FLAT)
        return bad

    def _window(self, arr: np.ndarray, frame: Frame) -> np.ndarray:
        """The part of a master under ``frame`` (a cutout uses its LTV offset)."""
        ny, nx = frame.shape
        if arr.shape == (ny, nx) and frame.origin_xy == self.origin:
            return arr
        x0 = int(round(frame.origin_xy[0] - self.origin[0]))
        y0 = int(round(frame.origin_xy[1] - self.origin[1]))
        if x0 < 0 or y0 < 0 or y0 + ny > arr.shape[0] or x0 + nx > arr.shape[1]:
            raise FrameError(
                frame.path,
                f"frame {nx}x{ny} at detector offset ({x0}, {y0}) lies outside the "
                f"{arr.shape[1]}x{arr.shape[0]} calibration masters",
            )
        return arr[y0 : y0 + ny, x0 : x0 + nx]

    def apply(self, frame: Frame) -> np.ndarray:
        """Calibrated pixels of a light frame (float32; NaN on bad pixels)."""
        data = frame.data
        if self.empty:
            return data
        shape = data.shape
        zero = np.zeros(shape, np.float32)
        bias = zero if self.bias is None else self._window(self.bias, frame)
        dark = zero if self.dark_rate is None else self._window(self.dark_rate, frame)
        if self.flat is None:
            inv = np.ones(shape, np.float32)
        else:
            flat = self._window(self.flat, frame)
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.where(flat > DEAD_FLAT, 1.0 / flat, 0.0).astype(np.float32)
        bad = (
            np.zeros(shape, bool)
            if self.bad_pixels is None
            else self._window(self.bad_pixels, frame)
        )
        out = np.empty(shape, np.float32)
        _apply(
            np.ascontiguousarray(data),
            np.ascontiguousarray(bias),
            np.ascontiguousarray(dark),
            np.float32(frame.exptime_s),
            np.ascontiguousarray(inv),
            np.ascontiguousarray(bad),
            out,
        )
        return out

    def summary(self) -> dict:
        bad = 0 if self.bad_pixels is None else int(self.bad_pixels.sum())
        return {
            "bias_frames": self.counts.get("bias", 0),
            "dark_frames": self.counts.get("dark", 0),
            "flat_frames": self.counts.get("flat", 0),
            "bad_pixels": bad,
            "dark_median_adu_s": None
            if self.dark_rate is None
            else float(np.median(self.dark_rate)),
            "problems": list(self.problems),
        }
