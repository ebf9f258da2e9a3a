"""Pixel-level kernels of the sky simulator: PSF rendering, shot noise, blooming, ADC.

All images are ``(rows, columns)`` = ``(y, x)`` arrays; a pixel ``[i, j]`` has its centre
at ``x = j, y = i`` and covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``.

The PSF is a sum of concentric circular Gaussians (core, halo, aureole: a seeing
profile close to a Moffat with beta ~ 3-4). Static point sources are integrated
exactly over each pixel (products of erf differences); moving sources (streaks,
trailed stars, diffraction spikes) are rendered as straight segments of uniform
brightness, each Gaussian widened by the pixel box (``sigma**2 + 1/12``) and
sampled at pixel centres, with the along-track profile integrated exactly (erf).

Kernels split the image into bands of rows, one task per band, so threads never
write the same pixel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from aposos.orbit.jit import kernel, parallel_kernel

__all__ = [
    "PsfModel",
    "add_points",
    "add_segments",
    "bloom_columns",
    "digitise",
    "photon_noise",
    "standard_normals",
]

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
# faintest surface brightness (electrons per pixel) a source's footprint extends to
FOOTPRINT_FLOOR_E = 0.05
MAX_RADIUS_PX = 400
# Poisson: exact inversion below this mean, Cornish-Fisher normal expansion above
EXACT_POISSON_BELOW = 25.0


class PsfModel:
    """Seeing PSF: Gaussian core, halo and aureole, in pixels.

    Parameters
    ----------
    fwhm_px : full width at half maximum of the core, pixels.
    """

    WEIGHTS = (0.80, 0.17, 0.03)
    WIDTH_RATIOS = (1.0, 2.0, 6.0)

    def __init__(self, fwhm_px: float):
        if not fwhm_px > 0:
            raise ValueError(f"PSF FWHM must be positive, got {fwhm_px}")
        self.fwhm_px = float(fwhm_px)
        core = self.fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        self.sigma_px = np.array([core * r for r in self.WIDTH_RATIOS])
        self.weight = np.array(self.WEIGHTS)

    def core(self) -> PsfModel:
        """The Gaussian core alone (diffraction features: spikes)."""
        out = PsfModel.__new__(PsfModel)
        out.fwhm_px = self.fwhm_px
        out.sigma_px = self.sigma_px[:1].copy()
        out.weight = np.ones(1)
        return out

    def peak_fraction(self) -> float:
        """Fraction of a point source's flux in its brightest pixel (source centred)."""
        total = 0.0
        for w, s in zip(self.weight, self.sigma_px, strict=True):
            total += w * math.erf(0.5 / (_SQRT2 * s)) ** 2
        return total

    def effective_pixels(self) -> float:
        """Noise-equivalent area (pixels) of a centred point source: 1 / sum(p_i**2)."""
        r = int(math.ceil(4 * self.sigma_px[1])) + 1
        edges = np.arange(-r, r + 2) - 0.5
        prof = np.zeros((2 * r + 1, 2 * r + 1))
        for w, s in zip(self.weight, self.sigma_px, strict=True):
            e = np.diff(0.5 * np.array([math.erf(x / (_SQRT2 * s)) for x in edges]))
            prof += w * np.outer(e, e)
        return float(1.0 / np.sum(prof**2))


def _n_bands(height: int) -> int:
    return max(1, min(height, 8 * numba.get_num_threads()))


@kernel
def _footprint_radius(peak, sigma):
    """Radius (px) out to which a Gaussian of this peak stays above the floor."""
    r = sigma * math.sqrt(2.0 * math.log(peak / FOOTPRINT_FLOOR_E)) + 1.0
    return min(r, MAX_RADIUS_PX)


@kernel
def _component_fluxes(f, weight, peak_norm, out):
    """Split flux ``f`` over the components, folding those whose peak is below the floor
    into the next narrower one (flux is kept; only invisible wings are simplified)."""
    carry = 0.0
    for k in range(weight.size - 1, -1, -1):
        fk = f * weight[k] + carry
        if k > 0 and fk * peak_norm[k] <= FOOTPRINT_FLOOR_E:
            carry = fk
            out[k] = 0.0
        else:
            carry = 0.0
            out[k] = fk


@parallel_kernel
def _points_kernel(img, x, y, flux, sigma, weight, n_bands):
    h, w = img.shape
    n = x.size
    nk = sigma.size
    rows_per_band = (h + n_bands - 1) // n_bands
    peak_norm = 1.0 / (2.0 * math.pi * sigma * sigma)
    for b in prange(n_bands):
        r0 = b * rows_per_band
        r1 = min(h, r0 + rows_per_band)
        fk_all = np.empty(nk)
        ex = np.empty(2 * MAX_RADIUS_PX + 4)
        for i in range(n):
            f = flux[i]
            if not f > 0.0:
                continue
            # cheap rejection: the widest possible footprint misses this band
            if y[i] + MAX_RADIUS_PX < r0 or y[i] - MAX_RADIUS_PX > r1 - 1:
                continue
            _component_fluxes(f, weight, peak_norm, fk_all)
            for k in range(nk):
                fk = fk_all[k]
                if fk <= 0.0:
                    continue
                radius = _footprint_radius(max(fk * peak_norm[k], 2 * FOOTPRINT_FLOOR_E), sigma[k])
                ylo = max(r0, int(math.floor(y[i] - radius)))
                yhi = min(r1 - 1, int(math.ceil(y[i] + radius)))
                xlo = max(0, int(math.floor(x[i] - radius)))
                xhi = min(w - 1, int(math.ceil(x[i] + radius)))
                if ylo > yhi or xlo > xhi:
                    continue
                nx = xhi - xlo + 1
                s = _SQRT2 * sigma[k]
                prev = math.erf((xlo - 0.5 - x[i]) / s)
                for m in range(nx):
                    cur = math.erf((xlo + m + 0.5 - x[i]) / s)
                    ex[m] = 0.5 * (cur - prev)
                    prev = cur
                prev = math.erf((ylo - 0.5 - y[i]) / s)
                for row in range(ylo, yhi + 1):
                    cur = math.erf((row + 0.5 - y[i]) / s)
                    ey = 0.5 * (cur - prev) * fk
                    prev = cur
                    for m in range(nx):
                        img[row, xlo + m] += ey * ex[m]


def add_points(img: np.ndarray, x, y, flux_e, psf: PsfModel) -> None:
    """Add static point sources (``flux_e`` electrons each), pixel-integrated, into ``img``."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    f = np.ascontiguousarray(flux_e, dtype=np.float64)
    if x.size:
        _points_kernel(img, x, y, f, psf.sigma_px, psf.weight, _n_bands(img.shape[0]))


@kernel
def _row_span(yc, ax, ay, ux, uy, length, radius, xlo, xhi):
    """Columns of row ``yc`` within ``radius`` of the segment A + s*u, s in [0, length]."""
    lo = float(xlo)
    hi = float(xhi)
    dy = yc - ay
    # |perpendicular distance| <= radius
    if abs(uy) > 1e-12:
        c = ax + dy * ux / uy
        half = radius / abs(uy)
        lo = max(lo, c - half)
        hi = min(hi, c + half)
    elif abs(dy) > radius:
        return 1, 0
    # along-track coordinate within [-radius, length + radius]
    if abs(ux) > 1e-12:
        a = ax + (-radius - dy * uy) / ux
        b = ax + (length + radius - dy * uy) / ux
        lo = max(lo, min(a, b))
        hi = min(hi, max(a, b))
    else:
        s = dy * uy
        if s < -radius or s > length + radius:
            return 1, 0
    return int(math.floor(lo)), int(math.ceil(hi))


@parallel_kernel
def _segments_kernel(img, x0, y0, x1, y1, flux, sigma, weight, n_bands):
    h, w = img.shape
    n = x0.size
    nk = sigma.size
    rows_per_band = (h + n_bands - 1) // n_bands
    sk_all = np.sqrt(sigma * sigma + 1.0 / 12.0)  # Gaussian widened by the pixel box
    peak_norm = 1.0 / (2.0 * math.pi * sk_all * sk_all)
    for b in prange(n_bands):
        r0 = b * rows_per_band
        r1 = min(h, r0 + rows_per_band)
        fk_all = np.empty(nk)
        for i in range(n):
            f = flux[i]
            if not f > 0.0:
                continue
            if max(y0[i], y1[i]) + MAX_RADIUS_PX < r0 or min(y0[i], y1[i]) - MAX_RADIUS_PX > r1 - 1:
                continue
            dx = x1[i] - x0[i]
            dy = y1[i] - y0[i]
            length = math.sqrt(dx * dx + dy * dy)
            if length < 1e-6:
                ux, uy, length = 1.0, 0.0, 0.0
            else:
                ux, uy = dx / length, dy / length
            # peak surface brightness of a component: a point's, diluted along the track
            _component_fluxes(f, weight, peak_norm, fk_all)
            for k in range(nk):
                fk = fk_all[k]
                if fk <= 0.0:
                    continue
                sk = sk_all[k]
                dilute = min(1.0, _SQRT2PI * sk / max(length, 1e-9))
                if fk * peak_norm[k] * dilute <= FOOTPRINT_FLOOR_E:
                    continue  # a faint trail spread thinner than the floor: sky-like, dropped
                radius = _footprint_radius(
                    max(fk * peak_norm[k] * dilute, 2 * FOOTPRINT_FLOOR_E), sk
                )
                ylo = max(r0, int(math.floor(min(y0[i], y1[i]) - radius)))
                yhi = min(r1 - 1, int(math.ceil(max(y0[i], y1[i]) + radius)))
                xmin = max(0, int(math.floor(min(x0[i], x1[i]) - radius)))
                xmax = min(w - 1, int(math.ceil(max(x0[i], x1[i]) + radius)))
                inv2s2 = 0.5 / (sk * sk)
                s2 = _SQRT2 * sk
                edge = 5.0 * sk
                if length > 0.0:
                    amp = fk / (_SQRT2PI * sk * length)
                else:
                    amp = fk / (2.0 * math.pi * sk * sk)
                for row in range(ylo, yhi + 1):
                    ca, cb = _row_span(row, x0[i], y0[i], ux, uy, length, radius, xmin, xmax)
                    ca = max(ca, xmin)
                    cb = min(cb, xmax)
                    py = row - y0[i]
                    for col in range(ca, cb + 1):
                        px = col - x0[i]
                        along = px * ux + py * uy
                        perp = -px * uy + py * ux
                        g = math.exp(-perp * perp * inv2s2)
                        if length > 0.0:
                            if along > edge and along < length - edge:
                                a = 1.0
                            else:
                                a = 0.5 * (math.erf(along / s2) - math.erf((along - length) / s2))
                        else:
                            a = math.exp(-along * along * inv2s2)
                        img[row, col] += amp * g * a


def add_segments(img: np.ndarray, x0, y0, x1, y1, flux_e, psf: PsfModel) -> None:
    """Add straight segments of uniform brightness (``flux_e`` electrons each) into ``img``."""
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (x0, y0, x1, y1, flux_e)]
    if arrays[0].size:
        _segments_kernel(img, *arrays, psf.sigma_px, psf.weight, _n_bands(img.shape[0]))


@parallel_kernel
def _photon_noise_kernel(lam, z, out):
    h, w = lam.shape
    for i in prange(h):
        for j in range(w):
            mean = lam[i, j]
            if mean <= 0.0:
                out[i, j] = 0.0
            elif mean < EXACT_POISSON_BELOW:
                # exact Poisson by inversion of the CDF at u = Phi(z)
                u = 0.5 * math.erfc(-z[i, j] / _SQRT2)
                p = math.exp(-mean)
                cdf = p
                k = 0
                while u > cdf and k < 200:
                    k += 1
                    p *= mean / k
                    cdf += p
                out[i, j] = k
            else:
                zz = z[i, j]
                out[i, j] = mean + math.sqrt(mean) * zz + (zz * zz - 1.0) / 6.0


def photon_noise(lam_e: np.ndarray, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Poisson-distributed electrons with means ``lam_e``, driven by standard normals ``z``.

    Exact (CDF inversion at ``Phi(z)``) for means below 25 e-; above, the Cornish-Fisher
    expansion ``mean + sqrt(mean) z + (z**2 - 1)/6`` of the Poisson quantile (mean,
    variance and skewness right; error in the distribution well below 1%).
    """
    if out is None:
        out = np.empty(lam_e.shape, dtype=np.float32)
    _photon_noise_kernel(lam_e, z, out)
    return out


def standard_normals(rng: np.random.Generator, shape, count: int) -> list[np.ndarray]:
    """``count`` float32 arrays of standard normals, drawn concurrently (one thread each)
    from generators spawned off ``rng`` (reproducible whatever the thread timing)."""
    from concurrent.futures import ThreadPoolExecutor

    gens = rng.spawn(count)
    outs = [np.empty(shape, dtype=np.float32) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda g, o: g.standard_normal(out=o, dtype=np.float32), gens, outs))
    return outs


@parallel_kernel
def _bloom_kernel(charge, full_well, columns, first, last):
    h = charge.shape[0]
    for c in prange(columns.size):
        j = columns[c]
        first[c] = -1
        last[c] = -1
        i = 0
        while i < h:
            if charge[i, j] <= full_well:
                i += 1
                continue
            a = i
            excess = 0.0
            while i < h and charge[i, j] > full_well:
                excess += charge[i, j] - full_well
                charge[i, j] = full_well
                i += 1
            b = i - 1
            lo = a
            hi = b
            up = 0.5 * excess  # towards row 0
            down = excess - up
            r = a - 1
            while up > 0.0 and r >= 0:
                room = full_well - charge[r, j]
                if room > 0.0:
                    take = min(room, up)
                    charge[r, j] += take
                    up -= take
                lo = r
                r -= 1
            down += up  # spill what could not go up
            r = b + 1
            while down > 0.0 and r < h:
                room = full_well - charge[r, j]
                if room > 0.0:
                    take = min(room, down)
                    charge[r, j] += take
                    down -= take
                hi = r
                r += 1
            if first[c] < 0 or lo < first[c]:
                first[c] = lo
            last[c] = max(last[c], hi)


def bloom_columns(charge: np.ndarray, full_well_e: float) -> list[tuple[int, int, int]]:
    """CCD blooming: charge above ``full_well_e`` spills up and down its column (in place).

    Returns ``(column, first_row, last_row)`` for each column where charge spilled.
    """
    full = np.float32(full_well_e)
    columns = np.flatnonzero((charge > full).any(axis=0))
    first = np.empty(columns.size, dtype=np.int64)
    last = np.empty(columns.size, dtype=np.int64)
    if columns.size:
        _bloom_kernel(charge, full, columns, first, last)
    return [(int(c), int(f), int(g)) for c, f, g in zip(columns, first, last, strict=True)]


@parallel_kernel
def _digitise_kernel(charge, z, read_noise, gain, bias_col, offset, adc_max, out):
    h, w = charge.shape
    for i in prange(h):
        for j in range(w):
            adu = bias_col[j] + offset + (charge[i, j] + read_noise * z[i, j]) / gain
            v = math.floor(adu + 0.5)
            if v < 0.0:
                v = 0.0
            elif v > adc_max:
                v = adc_max
            out[i, j] = np.uint16(v)


def digitise(
    charge_e: np.ndarray,
    z: np.ndarray,
    *,
    read_noise_e: float,
    gain_e_per_adu: float,
    bias_col_adu: np.ndarray,
    bias_offset_adu: float,
    adc_max_adu: int,
) -> np.ndarray:
    """Read out: add read noise (``read_noise_e * z``), convert to ADU over the bias, round
    and clip to uint16."""
    out = np.empty(charge_e.shape, dtype=np.uint16)
    _digitise_kernel(
        charge_e,
        z,
        float(read_noise_e),
        float(gain_e_per_adu),
        np.ascontiguousarray(bias_col_adu, dtype=np.float32),
        float(bias_offset_adu),
        float(min(adc_max_adu, 65535)),
        out,
    )
    return out
