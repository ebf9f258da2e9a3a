"""The camera of the sky simulator: fixed-pattern defects, exposure, noise and read-out.

A :class:`CameraModel` holds what belongs to one physical camera and stays the same
from frame to frame (drawn from the station code, so every run of a station sees the
same camera): the flat field (vignetting about a slightly decentred optical axis,
pixel response non-uniformity, dust donuts, a few dead pixels), hot pixels, warm
(bad) columns from charge traps, amplifier glow in the read-out corner, and the bias
column pattern.

:meth:`CameraModel.expose` turns expected photo-electrons into a uint16 frame:
flat field, dark current and hot pixels, Poisson noise, cosmic rays, full well
(blooming along columns for a CCD, clipping for CMOS), read noise, gain, bias,
rounding and the ADC ceiling.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from aposos.station.config import StationConfig
from aposos.station.simulator.render import (
    bloom_columns,
    digitise,
    photon_noise,
    standard_normals,
)

__all__ = ["CameraModel", "Exposure"]

HOT_PIXEL_FRACTION = 2e-4
DEAD_PIXEL_FRACTION = 2e-5
PRNU_RMS = 0.01
VIGNETTING_AT_CORNER = 0.2  # fraction of light lost in the corners
# sea-level cosmic-ray (muon) flux, events per cm^2 per minute, growing with altitude
COSMIC_RATE_CM2_MIN = 1.0
COSMIC_SCALE_HEIGHT_M = 1500.0
COSMIC_CLUSTER_PROBABILITY = 0.15  # per frame: an air-shower cluster of hits
DEPLETION_DEPTH_UM = 45.0
BAD_COLUMNS = (1, 4)  # warm columns per camera (a charge trap: from its row to the end)
AMP_GLOW_E_PER_S = (3.0, 15.0)  # dark rate at the read-out corner
AMP_GLOW_SCALE = 0.04  # e-folding length as a fraction of the detector width


@dataclass
class Exposure:
    """One read-out frame and the false-positive makers it holds."""

    data: np.ndarray  # uint16 (rows, columns)
    features: list[dict]
    bias_offset_adu: float


def station_seed(code: str) -> int:
    """A stable seed for things that belong to a station (its camera, its optics)."""
    return zlib.crc32(code.encode())


class CameraModel:
    """Fixed pattern and read-out of one station's camera (see module notes)."""

    def __init__(self, config: StationConfig):
        self.config = config
        cam = config.camera
        self.shape = (cam.height_px, cam.width_px)
        rng = np.random.default_rng([station_seed(config.code), 1])
        h, w = self.shape
        self.pixel_area_cm2 = (cam.pixel_size_um * 1e-4) ** 2
        # hot pixels: log-normal dark rates around 1 e-/s, one in fifty very hot
        n_hot = max(1, int(round(HOT_PIXEL_FRACTION * h * w)))
        flat_index = rng.choice(h * w, size=n_hot, replace=False)
        self.hot_y, self.hot_x = np.divmod(flat_index, w)
        rate = rng.lognormal(math.log(1.0), 1.2, n_hot)
        very = rng.random(n_hot) < 0.02
        rate[very] = rng.uniform(50.0, 500.0, very.sum())
        self.hot_rate_e_s = rate
        # bias: per-column pattern around the configured level
        self.bias_col_adu = (cam.bias_adu + rng.normal(0.0, 1.5, w)).astype(np.float32)
        # optics and dust: decentred vignetting, dust donuts
        self.axis_xy = (
            (w - 1) / 2 + rng.normal(0.0, 0.02 * w),
            (h - 1) / 2 + rng.normal(0.0, 0.02 * h),
        )
        n_dust = int(rng.integers(3, 7))
        self.dust = [
            (
                rng.uniform(0.05 * w, 0.95 * w),
                rng.uniform(0.05 * h, 0.95 * h),
                rng.uniform(0.006, 0.015) * max(h, w),  # ring radius
                rng.uniform(0.02, 0.06),  # depth
            )
            for _ in range(n_dust)
        ]
        self._flat_seed = int(rng.integers(2**31))
        n_dead = int(round(DEAD_PIXEL_FRACTION * h * w))
        self.dead_index = rng.choice(h * w, size=n_dead, replace=False)
        self._flat: np.ndarray | None = None
        # warm columns: extra dark current from a trap row to the read-out end
        n_bad = int(rng.integers(*BAD_COLUMNS, endpoint=True))
        self.bad_columns = [
            (int(rng.integers(0, w)), int(rng.integers(0, h // 2)), float(rng.uniform(0.3, 3.0)))
            for _ in range(n_bad)
        ]  # (column, first row, e-/s per pixel)
        corner = int(rng.integers(4))
        self.amp_glow = (
            0.0 if corner in (0, 3) else w - 1.0,
            0.0 if corner in (0, 1) else h - 1.0,
            float(rng.uniform(*AMP_GLOW_E_PER_S)),
            AMP_GLOW_SCALE * w,
        )  # (x, y, e-/s at the corner, scale px)
        self._dark_pattern: np.ndarray | None = None

    # ------------------------------------------------------------------ fixed pattern
    @property
    def flat(self) -> np.ndarray:
        """Relative response of each pixel (vignetting x PRNU x dust), float32, mean ~0.9."""
        if self._flat is None:
            self._flat = self._make_flat()
        return self._flat

    def vignetting(self, x, y) -> np.ndarray:
        """Vignetting factor (no PRNU or dust) at pixel positions."""
        h, w = self.shape
        corner = math.hypot(
            max(self.axis_xy[0], w - self.axis_xy[0]), max(self.axis_xy[1], h - self.axis_xy[1])
        )
        r0 = corner / math.sqrt(1.0 / math.sqrt(1.0 - VIGNETTING_AT_CORNER) - 1.0)
        r2 = (np.asarray(x) - self.axis_xy[0]) ** 2 + (np.asarray(y) - self.axis_xy[1]) ** 2
        return 1.0 / (1.0 + r2 / (r0 * r0)) ** 2

    def _make_flat(self) -> np.ndarray:
        h, w = self.shape
        rng = np.random.default_rng(self._flat_seed)
        ys = np.arange(h, dtype=np.float64)[:, None]
        xs = np.arange(w, dtype=np.float64)[None, :]
        flat = self.vignetting(xs, ys).astype(np.float32)
        flat *= 1.0 + PRNU_RMS * rng.standard_normal(self.shape, dtype=np.float32)
        for cx, cy, radius, depth in self.dust:
            half = int(radius * 1.6) + 2
            y0, y1 = max(0, int(cy) - half), min(h, int(cy) + half)
            x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            r = np.hypot(xx - cx, yy - cy)
            width = 0.25 * radius
            donut = depth * (np.exp(-(((r - radius) / width) ** 2)) + 0.4 * (r < radius))
            flat[y0:y1, x0:x1] *= (1.0 - donut).astype(np.float32)
        flat.reshape(-1)[self.dead_index] *= 0.05
        return flat

    @property
    def dark_pattern(self) -> np.ndarray:
        """Extra dark rate (e-/s) of the warm columns and the amplifier glow, float32."""
        if self._dark_pattern is None:
            h, w = self.shape
            pattern = np.zeros(self.shape, np.float32)
            for col, first, rate in self.bad_columns:
                pattern[first:, col] += rate
            gx, gy, peak, scale = self.amp_glow
            n = int(min(10 * scale, h, w))  # the glow is negligible beyond
            r0 = 0 if gy == 0 else h - n
            c0 = 0 if gx == 0 else w - n
            dy = np.abs(np.arange(r0, r0 + n) - gy)[:, None]
            dx = np.abs(np.arange(c0, c0 + n) - gx)[None, :]
            glow = peak * np.exp(-np.hypot(dx, dy) / scale)
            pattern[r0 : r0 + n, c0 : c0 + n] += glow.astype(np.float32)
            self._dark_pattern = pattern
        return self._dark_pattern

    def detector_features(self) -> list[dict]:
        """The warm columns and the amplifier glow, as truth records."""
        out = [
            {"kind": "bad_column", "x": col, "y_min": first, "dark_e_per_s": round(rate, 3)}
            for col, first, rate in self.bad_columns
        ]
        gx, gy, peak, scale = self.amp_glow
        out.append({"kind": "amp_glow", "x": gx, "y": gy, "dark_e_per_s": round(peak, 2),
                    "scale_px": round(scale, 1)})  # fmt: skip
        return out

    def hot_pixels(self) -> list[dict]:
        """The camera's hot pixels: position and dark rate."""
        return [
            {"x": int(x), "y": int(y), "dark_e_per_s": round(float(r), 3)}
            for x, y, r in zip(self.hot_x, self.hot_y, self.hot_rate_e_s, strict=True)
        ]

    # ------------------------------------------------------------------ exposing
    def cosmic_rays(self, exposure_s: float, rng: np.random.Generator):
        """Cosmic-ray hits for one exposure: (rows, cols, electrons) and feature records."""
        h, w = self.shape
        cam = self.config.camera
        area_cm2 = h * w * self.pixel_area_cm2
        rate = COSMIC_RATE_CM2_MIN * math.exp(
            self.config.site_info.altitude_m / COSMIC_SCALE_HEIGHT_M
        )
        # the sensor collects hits while exposed and while it is read out (~1 s)
        n = rng.poisson(rate * area_cm2 * (exposure_s + 1.0) / 60.0)
        starts = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(n)]
        features = []
        if rng.random() < COSMIC_CLUSTER_PROBABILITY:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            radius = rng.uniform(20.0, 80.0)
            m = int(rng.integers(4, 13))
            for _ in range(m):
                a, r = rng.uniform(0, 2 * math.pi), radius * math.sqrt(rng.random())
                starts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
            features.append(
                {"kind": "cosmic_ray_cluster", "x": round(cx, 2), "y": round(cy, 2),
                 "radius_px": round(radius, 1), "n_hits": m}
            )  # fmt: skip
        rows, cols, charge = [], [], []
        pitch_um = cam.pixel_size_um
        for x0, y0 in starts:
            # track length on the sensor: depletion depth times tan(zenith angle); muon
            # zenith angles follow cos^2, i.e. cos(angle) = u**(1/3)
            tan_i = math.tan(min(1.45, math.acos(rng.random() ** (1 / 3))))
            length = max(0.5, DEPLETION_DEPTH_UM * tan_i / pitch_um)
            angle = rng.uniform(0, 2 * math.pi)
            n_steps = max(2, int(length * 2))
            per_step = rng.lognormal(math.log(900.0), 0.5) / 2.0  # e- per half pixel of track
            xs = x0 + np.linspace(0, length, n_steps) * math.cos(angle)
            ys = y0 + np.linspace(0, length, n_steps) * math.sin(angle)
            ix = np.round(xs).astype(int)
            iy = np.round(ys).astype(int)
            ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
            if not ok.any():
                continue
            rows.append(iy[ok])
            cols.append(ix[ok])
            charge.append(np.full(ok.sum(), per_step))
            features.append(
                {"kind": "cosmic_ray", "x": round(float(xs[ok].mean()), 2),
                 "y": round(float(ys[ok].mean()), 2), "length_px": round(length, 2),
                 "charge_e": round(float(per_step * ok.sum()), 1)}
            )  # fmt: skip
        if rows:
            return np.concatenate(rows), np.concatenate(cols), np.concatenate(charge), features
        empty = np.empty(0, dtype=int)
        return empty, empty, np.empty(0), features

    def expose(
        self,
        photo_e: np.ndarray | None,
        exposure_s: float,
        rng: np.random.Generator,
        *,
        cosmic_rays: bool = True,
    ) -> Exposure:
        """Read out one frame.

        Parameters
        ----------
        photo_e : expected photo-electrons reaching each pixel before the flat field
            (float32, modified in place), or None for a bias or dark frame.
        exposure_s : integration time (dark current, cosmic rays).
        rng : random generator of this frame.
        """
        cam = self.config.camera
        if photo_e is None:
            lam = np.zeros(self.shape, dtype=np.float32)
        else:
            lam = photo_e
            lam *= self.flat
        lam += np.float32(cam.dark_current_e_per_s * exposure_s)
        lam += self.dark_pattern * np.float32(exposure_s)
        np.add.at(
            lam, (self.hot_y, self.hot_x), (self.hot_rate_e_s * exposure_s).astype(np.float32)
        )
        z_shot, z_read = standard_normals(rng, self.shape, 2)
        charge = photon_noise(lam, z_shot, out=z_shot)
        features: list[dict] = self.detector_features() if exposure_s > 0 else []
        if cosmic_rays and exposure_s >= 0.0:
            r, c, q, cr_features = self.cosmic_rays(exposure_s, rng)
            np.add.at(charge, (r, c), q.astype(np.float32))
            features += cr_features
        full_well = cam.full_well
        if cam.sensor == "ccd":
            for col, first, last in _group_columns(bloom_columns(charge, full_well)):
                features.append(
                    {"kind": "blooming_column", "x": col[0], "x_last": col[1],
                     "y_min": first, "y_max": last}
                )  # fmt: skip
        else:
            np.minimum(charge, np.float32(full_well), out=charge)
        offset = float(rng.normal(0.0, 0.5))
        data = digitise(
            charge,
            z_read,
            read_noise_e=cam.read_noise_e,
            gain_e_per_adu=cam.gain_e_per_adu,
            bias_col_adu=self.bias_col_adu,
            bias_offset_adu=offset,
            adc_max_adu=cam.saturation_adu,
        )
        return Exposure(data, features, offset)


def _group_columns(cols: list[tuple[int, int, int]]) -> list[tuple[tuple[int, int], int, int]]:
    """Merge adjacent bloomed columns into ((first_col, last_col), first_row, last_row)."""
    groups = []
    for col, first, last in cols:
        if (
            groups
            and col == groups[-1][0][1] + 1
            and first <= groups[-1][2]
            and last >= groups[-1][1]
        ):
            (c0, _), f0, l0 = groups[-1]
            groups[-1] = ((c0, col), min(f0, first), max(l0, last))
        else:
            groups.append(((col, col), first, last))
    return groups
