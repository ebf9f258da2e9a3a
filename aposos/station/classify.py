"""Stars vs streaks vs points: classification of the sources of one frame.

Classification is relative to the frame's own star population: the shape most
bright sources share is "a star" (round in sidereal tracking, a trail of one length
and angle in rate tracking or staring); sources whose shape differs are satellite
candidates, as streaks (long) or points (PSF-like). Sources sharper than the PSF
(hot pixels, cosmic rays), saturated sources and their artefacts (blooming columns,
diffraction spikes: thin features pointing at a saturated star) are not candidates.
Used by :class:`aposos.station.extract.SourceExtractor`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import prange
from scipy import ndimage

from aposos.orbit.jit import parallel_kernel

if TYPE_CHECKING:
    from aposos.station.extract import Extraction, SourceTable

__all__ = [
    "KIND_NAMES", "OTHER", "POINT", "SATURATED", "SHARP", "STAR", "STREAK", "classify",
    "short_trail_px", "trail_level",
]  # fmt: skip

# source kinds
STAR, STREAK, POINT, SATURATED, SHARP, OTHER = 0, 1, 2, 3, 4, 5
KIND_NAMES = ("star", "streak", "point", "saturated", "sharp", "other")


@parallel_kernel
def _windowed_centroids(sub, x, y, sigma0, niter):  # pragma: no cover - numba
    """Gaussian-windowed centroid and adaptive size (SExtractor XWIN-like).

    Returns x, y, sigma (Gaussian-equivalent PSF sigma from adaptive moments) and
    the windowed flux ratio peak/sum in the central 3 x 3 (sharpness).
    """
    ny, nx = sub.shape
    n = x.size
    ox = x.copy()
    oy = y.copy()
    osig = np.full(n, sigma0)
    sharp = np.zeros(n)
    for s in prange(n):
        cx = x[s]
        cy = y[s]
        sw = max(sigma0, 0.7)
        est = sigma0
        for _ in range(niter):
            r = int(4.0 * sw + 1.5)
            i0 = max(int(cy) - r, 0)
            i1 = min(int(cy) + r + 1, ny)
            j0 = max(int(cx) - r, 0)
            j1 = min(int(cx) + r + 1, nx)
            sw2 = 0.0
            sx = 0.0
            sy = 0.0
            sxx = 0.0
            syy = 0.0
            for i in range(i0, i1):
                dy = i - cy
                for j in range(j0, j1):
                    dx = j - cx
                    g = math.exp(-0.5 * (dx * dx + dy * dy) / (sw * sw)) * sub[i, j]
                    sw2 += g
                    sx += g * dx
                    sy += g * dy
                    sxx += g * dx * dx
                    syy += g * dy * dy
            if sw2 <= 0:
                break
            ncx = cx + 2.0 * sx / sw2
            ncy = cy + 2.0 * sy / sw2
            if abs(ncx - x[s]) > 3 * sigma0 + 2 or abs(ncy - y[s]) > 3 * sigma0 + 2:
                break
            cx = ncx
            cy = ncy
            m2 = 0.5 * (sxx + syy) / sw2  # = s^2 sw^2 / (s^2 + sw^2) for a Gaussian
            if m2 > 0 and m2 < sw * sw:
                # the size estimate only: the window stays at the PSF's, so a
                # neighbour cannot pull a bright star's centroid
                est = min(max(math.sqrt(m2 * sw * sw / (sw * sw - m2)), 0.5), 4.0 * sigma0)
        ox[s] = cx
        oy[s] = cy
        osig[s] = est
        ic = int(round(cy))
        jc = int(round(cx))
        tot = 0.0
        pk = 0.0
        for i in range(max(ic - 1, 0), min(ic + 2, ny)):
            for j in range(max(jc - 1, 0), min(jc + 2, nx)):
                tot += sub[i, j]
                pk = max(pk, sub[i, j])
        sharp[s] = pk / tot if tot > 0 else 1.0
    return ox, oy, osig, sharp


def _angle_diff(a, b):
    """Difference of axis angles (period pi), in [0, pi/2]."""
    d = np.abs((np.asarray(a) - b) % np.pi)
    return np.minimum(d, np.pi - d)


def classify(ext: Extraction, sigma_k: float, detect_sigma: float = 5.0) -> None:
    """Set ``kind`` of every source, and the frame's star shape, in place."""
    s = ext.sources
    if len(s) == 0:
        return
    sat = s.nsat > 0
    s.kind[:] = OTHER
    s.kind[sat] = SATURATED
    bright = (~sat) & (s.snr > 15)
    if bright.sum() < 5:
        bright = ~sat
    # the shared shape: median length; stars are trails if most bright sources are long
    med_len = float(np.median(s.length[bright])) if bright.any() else 0.0
    trailed = med_len > 3.0 * sigma_k + 2.0
    if trailed:
        ang = s.theta[bright]
        # axis-angle median via doubled angles
        star_theta = 0.5 * math.atan2(np.median(np.sin(2 * ang)), np.median(np.cos(2 * ang)))
        aligned = _angle_diff(s.theta, star_theta) < 0.1
        med_len = _trail_length(s.length[bright & aligned], med_len)
        long = bright & (np.abs(s.length - med_len) < 0.25 * med_len + 3)
        near = long & aligned
        if near.sum() >= 3:
            med_len = float(np.median(s.length[near]))
            star_theta = 0.5 * math.atan2(
                np.median(np.sin(2 * s.theta[near])), np.median(np.cos(2 * s.theta[near]))
            )
        width_ref = float(np.median(s.width[near])) if near.sum() >= 3 else sigma_k
        if med_len < short_trail_px(width_ref):
            # stars elongated by a few PSF widths: no point-on-trail test can tell a
            # point from a star this short (a step of a PSF width along the trail
            # already leaves it), so they are stars of an elongated PSF, and a
            # tracked satellite is a source at no star's place (the round-star path)
            ext.star_elongation_px, ext.star_theta = med_len, star_theta
            trailed = False
    if trailed:
        ext.star_length_px, ext.star_theta = med_len, star_theta
        # a star trail: matching angle and length (faint trails look shorter)
        len_tol = 0.3 * med_len + 4.0
        star = (
            ~sat
            & (_angle_diff(s.theta, star_theta) < np.maximum(0.12, 6.0 / np.maximum(s.length, 1)))
            & (s.length > med_len - len_tol - 2.0 * np.maximum(0, 8 - s.snr))
            & (s.length < med_len + len_tol)
        )
        s.kind[star] = STAR
        # trails the frame's edge cuts short: stars, but their centres are not the
        # stars' places (no reference star, no candidate)
        ny, nx = ext.subtracted.shape
        b = s.bbox
        cut = (b[:, 0] <= 1) | (b[:, 2] <= 1) | (b[:, 1] >= nx - 2) | (b[:, 3] >= ny - 2)
        cut &= ~sat & ~star & (_angle_diff(s.theta, star_theta) < 0.12)
        cut &= s.length < med_len + len_tol
        psf_sigma = max(width_ref, 0.5)
        # a point is round; short pieces along the trails are fragments of faint trails
        round_ = s.length < 2.3548 * psf_sigma * 1.5 + 1.0
        along = _angle_diff(s.theta, star_theta) < 0.2
        s.kind[~star & round_] = POINT  # saturated ones too: a bright tracked satellite
        # a point merged with a star trail: its peak falls off along the trail direction
        merged = np.zeros(len(s), bool)
        for i in np.nonzero(~star & ~round_)[0]:
            if _peak_is_point(ext.snr_image, s.px[i], s.py[i], star_theta, med_len, psf_sigma):
                s.kind[i] = POINT
                s.x[i], s.y[i] = s.px[i], s.py[i]
                merged[i] = True
        # (a point merged with a piece of a faint trail is still a point)
        fragment = ~sat & ~star & ~round_ & ~merged & along & (s.length < med_len - len_tol)
        # a bump of noise on a faint trail: its S/N above the trail's own is no detection
        for i in np.nonzero((s.kind == POINT) & ~sat)[0]:
            level = trail_level(ext.snr_image, s.px[i], s.py[i], star_theta, med_len, psf_sigma)
            if s.snr[i] - level < detect_sigma:
                s.kind[i] = OTHER
        s.kind[fragment | cut] = OTHER
        long_other = ~sat & ~star & ~round_ & ~(merged & along) & ~fragment & ~cut
        long_other &= s.length > max(0.5 * med_len, 6.0)
        s.kind[long_other] = STREAK
    else:
        psf_sigma = None
        s.kind[~sat] = STAR
    # adaptive moments for compact sources: PSF size and sharpness
    compact = (~sat) & (s.length < 3.0 * sigma_k + 3.0 + ext.star_elongation_px)
    # windowed centroids for every unsaturated source of a frame of round stars (a
    # bright star's segment may have swallowed a neighbour); compact ones otherwise
    idx = np.nonzero(compact if trailed else ~sat)[0]
    if idx.size:
        guess = sigma_k if psf_sigma is None else psf_sigma
        x, y, sg, sh = _windowed_centroids(ext.subtracted, s.x[idx], s.y[idx], guess, 8)
        s.sigma[idx], s.sharpness[idx] = sg, sh
        if not trailed:
            s.x[idx], s.y[idx] = x, y
    expected = _gaussian_peak_fraction(psf_sigma if psf_sigma else sigma_k)
    spread = 0.03
    if not trailed:
        ref = compact & (s.snr > 20)
        if ref.sum() < 3:
            ref = compact
        psf_sigma = _fit_psf_sigma(ext.subtracted, s, ref, sigma_k)
        ext.fwhm_px = 2.3548 * psf_sigma
        long = ~sat & (s.length > _length_threshold(s, sat, ext.fwhm_px))
        # bright ones by their light's own length: a bright star's footprint reaches
        # far and ragged (the bright bins' percentiles, a few streaks among them, set
        # the threshold above a short streak's footprint: Peru lost its GEOs this way)
        long |= ~sat & (s.snr >= BRIGHT_SNR) & (s.flux_length > max(6.0 * ext.fwhm_px, 12.0))
        s.kind[long] = STREAK
        if ref.sum() >= 5:  # the stars' own sharpness, whatever the sampling
            sh = s.sharpness[ref]
            expected = float(np.nanmedian(sh))
            spread = float(np.nanmedian(np.abs(sh - expected))) * 1.4826
    # too sharp for the PSF: hot pixels, cosmic rays
    limit = expected + max(0.12, 5.0 * spread)
    if trailed or ext.star_elongation_px > 0:
        # no point stars to learn the PSF from (elongated stars are less sharp than a
        # tracked satellite: a Pakistan rate night lost its target as a hot pixel):
        # only the sharpest are artefacts
        limit = max(limit, 0.8)
    sharp = (~sat) & compact & (s.sharpness > limit)
    s.kind[sharp] = SHARP
    for i in np.nonzero(s.kind == STREAK)[0]:
        if not _is_plateau(ext.snr_image, s, i):
            s.kind[i] = OTHER  # blended stars, not a uniform trail
    _reject_artefacts(ext)


def _trail_length(lengths: np.ndarray, fallback: float) -> float:
    """The stars' common trail length: the largest group of lengths that agree within
    3 % and 2 px. Whole trails share one length; trails cut short by the frame's edges
    and pieces of faint ones spread below it, and where trails are long they can be
    most of the bright sources (their median then falls far short). ``fallback``
    when fewer than five lengths or no group of three."""
    lengths = np.sort(np.asarray(lengths, float))
    if lengths.size < 5:
        return fallback
    tol = 0.03 * lengths + 2.0
    lo = np.searchsorted(lengths, lengths - tol, side="left")
    hi = np.searchsorted(lengths, lengths + tol, side="right")
    count = hi - lo
    if count.max() < 3:
        return fallback
    best = np.flatnonzero(count == count.max())[-1]  # of equal groups, the longest
    return float(np.median(lengths[lo[best] : hi[best]]))


def short_trail_px(psf_sigma: float) -> float:
    """Star trails shorter than this (px) are elongated stars, not trails: the
    point-on-trail test looks ``2 sigma + 2`` px along the trail on both sides of a
    peak, beyond the PSF, so a trail must reach that far and a PSF more."""
    return 6.0 * max(psf_sigma, 0.5) + 4.0


def _peak_is_point(snr, px, py, theta, trail, psf_sigma) -> bool:
    """Whether the S/N peak at (px, py) drops on both sides along the trail direction
    (a point) rather than running on (a star trail)."""
    ny, nx = snr.shape
    peak = snr[int(py), int(px)]
    if peak <= 0:
        return False
    d = max(3.0 * psf_sigma + 1.0, min(0.25 * trail, 8.0))
    c, s = math.cos(theta), math.sin(theta)
    vals = []
    for sign in (-1.0, 1.0):
        x, y = px + sign * d * c, py + sign * d * s
        if not (0 <= x < nx - 1 and 0 <= y < ny - 1):
            return False
        vals.append(ndimage.map_coordinates(snr, [[y], [x]], order=1)[0])
    return max(vals) < 0.3 * peak


def trail_level(snr, px, py, theta, trail, psf_sigma) -> float:
    """Filtered S/N of a star trail running through (px, py) at angle ``theta``: the
    smaller of the medians along the trail on either side, beyond the point's own PSF
    (0 where no trail runs on, or where one ends). Most compact sources of a frame of
    trailed stars are noise bumps on faint trails; a point's own S/N is its peak above
    this level."""
    ny, nx = snr.shape
    c, s = math.cos(theta), math.sin(theta)
    d0 = 2.0 * psf_sigma + 3.0
    t = np.arange(d0, d0 + max(min(0.5 * trail, 40.0), 6.0), 1.0)
    sides = []
    for sign in (-1.0, 1.0):
        xs, ys = px + sign * t * c, py + sign * t * s
        ok = (xs >= 0) & (xs <= nx - 1) & (ys >= 0) & (ys <= ny - 1)
        if ok.sum() >= 3:  # (a side off the frame says nothing)
            sides.append(float(np.median(ndimage.map_coordinates(snr, [ys[ok], xs[ok]], order=1))))
    return max(min(sides), 0.0) if sides else 0.0


def _is_plateau(snr, s: SourceTable, i: int) -> bool:
    """Whether the filtered profile along the source's axis is a plateau, not two peaks.

    A streak is about uniformly bright along its length (a star merged into it only
    adds a bump); two blended stars dip between their peaks. The profile is the S/N
    summed across the axis (within 2 px, in half-pixel steps): with an undersampled
    PSF the ridge's own peak rises and falls as it crosses pixel rows (a streak near a
    detector axis fell to half its median every few tens of pixels), its sum across
    does not.
    """
    ny, nx = snr.shape
    length = s.length[i]
    if s.snr[i] >= BRIGHT_SNR and s.flux_length[i] > 0:  # the wings lengthen a footprint
        length = min(length, s.flux_length[i])
    half = 0.4 * length
    n = max(int(2 * half), 5)
    t = np.linspace(-half, half, n)
    c, sn = math.cos(s.theta[i]), math.sin(s.theta[i])
    x0, y0 = s.fx[i], s.fy[i]  # the footprint centre lies on the axis
    step = 0.5
    prof = np.zeros(n)
    for off in np.arange(-2.0, 2.0 + step / 2, step):  # the ridge and its wings
        xs = np.clip(x0 + t * c - off * sn, 0, nx - 1)
        ys = np.clip(y0 + t * sn + off * c, 0, ny - 1)
        prof += step * ndimage.map_coordinates(snr, [ys, xs], order=1)
    # the S/N image has unit noise, correlated over about a pixel: the sum over 4 px
    # across has a noise of about 2; allow a few sigma of it in the tests
    med = float(np.median(prof))
    mid = prof[n // 4 : n - n // 4]
    return bool(
        med > 0
        and float(np.percentile(prof, 10)) > 0.45 * med
        and float(mid.min()) > 0.8 * med - 6.0
    )


BRIGHT_SNR = 30.0  # filtered S/N above which a source's flux-weighted moments are clean
_SNR_BINS = np.array([0.0, 8.0, 12.0, 20.0, 35.0, 60.0, 100.0, 200.0, 500.0, np.inf])


def _length_threshold(s: SourceTable, sat: np.ndarray, fwhm: float) -> np.ndarray:
    """Footprint length above which a source is a streak, per source.

    Footprints of faint stars are ragged, so the threshold follows the S/N: twice the
    95th percentile of the lengths of sources of similar S/N (most of them stars), and
    at least three FWHM and 4 px.
    """
    floor = max(3.0 * fwhm, 4.0)
    b = np.clip(np.searchsorted(_SNR_BINS, s.snr, side="right") - 1, 0, _SNR_BINS.size - 2)
    pooled = s.length[~sat]
    if pooled.size < 20:
        return np.full(len(s), max(floor, 8.0))
    # bins too thin for statistics (the bright end) take the bright sources' spread
    bright = s.length[~sat & (s.snr >= 20.0)]
    fallback = np.percentile(bright if bright.size >= 20 else pooled, 95)
    ref = np.full(_SNR_BINS.size - 1, 2.0 * fallback)
    for k in range(ref.size):
        sel = (b == k) & ~sat
        if sel.sum() >= 50:  # enough sources that a few streaks cannot move it
            ref[k] = 2.0 * np.percentile(s.length[sel], 95)
    return np.maximum(floor, ref[b])


def _integrated_gaussian(p, jj, ii):
    """Pixel-integrated circular Gaussian and its Jacobian (x0, y0, flux, sigma, bkg)."""
    from scipy.special import ndtr

    x0, y0, flux, sigma, _ = p
    sigma = max(abs(sigma), 0.15)
    ax = ((jj + 0.5 - x0) / sigma, (jj - 0.5 - x0) / sigma)
    ay = ((ii + 0.5 - y0) / sigma, (ii - 0.5 - y0) / sigma)
    px = ndtr(ax[0]) - ndtr(ax[1])
    py = ndtr(ay[0]) - ndtr(ay[1])

    def phi(a):
        return np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)

    dpx_dx = -(phi(ax[0]) - phi(ax[1])) / sigma
    dpy_dy = -(phi(ay[0]) - phi(ay[1])) / sigma
    dpx_ds = -(ax[0] * phi(ax[0]) - ax[1] * phi(ax[1])) / sigma
    dpy_ds = -(ay[0] * phi(ay[0]) - ay[1] * phi(ay[1])) / sigma
    model = flux * px * py + p[4]
    jac = np.stack(
        [flux * dpx_dx * py, flux * px * dpy_dy, px * py,
         flux * (dpx_ds * py + px * dpy_ds), np.ones_like(px)],
        axis=-1,
    )  # fmt: skip
    return model, jac


def _fit_psf_sigma(sub, s: SourceTable, ref: np.ndarray, guess: float, n_max: int = 15) -> float:
    """PSF sigma (px) from pixel-integrated Gaussian fits to bright stars.

    Works for undersampled images too, where moments of pixel values fail.
    """
    idx = np.nonzero(ref & (s.nsat == 0))[0]
    idx = idx[np.argsort(-s.snr[idx])][:n_max]
    ny, nx = sub.shape
    sigmas = []
    r = 3
    for i in idx:
        jc, ic = int(round(s.x[i])), int(round(s.y[i]))
        if jc < r or ic < r or jc >= nx - r or ic >= ny - r:
            continue
        stamp = sub[ic - r : ic + r + 1, jc - r : jc + r + 1].astype(np.float64)
        ii, jj = np.mgrid[ic - r : ic + r + 1, jc - r : jc + r + 1]
        p = np.array([s.x[i], s.y[i], max(float(stamp.sum()), 1.0), 1.0, 0.0])
        lam = 1e-3
        model, jac = _integrated_gaussian(p, jj, ii)
        res = (stamp - model).ravel()
        cost = float(res @ res)
        for _ in range(30):
            j2 = jac.reshape(-1, 5)
            a = j2.T @ j2
            try:
                step = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), j2.T @ res)
            except np.linalg.LinAlgError:
                break
            q = p + step
            q[3] = min(max(abs(q[3]), 0.15), 3.0 * r)
            m2, jac2 = _integrated_gaussian(q, jj, ii)
            res2 = (stamp - m2).ravel()
            c2 = float(res2 @ res2)
            if c2 < cost:
                p, jac, res, lam = q, jac2, res2, lam * 0.3
                done = cost - c2 < 1e-9 * cost
                cost = c2
                if done:
                    break
            else:
                lam *= 10.0
                if lam > 1e8:
                    break
        if np.all(np.isfinite(p)) and abs(p[0] - s.x[i]) < 2 and abs(p[1] - s.y[i]) < 2:
            sigmas.append(p[3])
    if len(sigmas) < 3:
        return max(guess, 0.4)
    return float(np.median(sigmas))


def _gaussian_peak_fraction(sigma: float) -> float:
    """Peak pixel over the 3 x 3 sum for a centred Gaussian PSF."""
    from math import erf, sqrt

    c = erf(0.5 / (sqrt(2) * sigma))
    t = erf(1.5 / (sqrt(2) * sigma))
    return (c * c) / (t * t)


def _reject_artefacts(ext: Extraction) -> None:
    """Candidates that radiate from a saturated star become OTHER.

    Diffraction spikes and bleed trails start at a saturated star and run outwards, so
    such a candidate lies on a line through the star, with the star at or beyond one
    of its ends (a satellite passing across a bright star has the star between its
    ends). Bleed trails run along columns.
    """
    s = ext.sources
    sat = np.nonzero(s.kind == SATURATED)[0]
    cand = np.nonzero((s.kind == STREAK) | (s.kind == POINT))[0]
    if sat.size == 0 or cand.size == 0:
        return
    for c in cand:
        dx = s.x[sat] - s.fx[c]
        dy = s.y[sat] - s.fy[c]
        reach = 40.0 + 2.0 * np.sqrt(s.npix[sat]) + 0.5 * s.length[c]
        ux, uy = math.cos(s.theta[c]), math.sin(s.theta[c])
        along = np.abs(dx * ux + dy * uy)
        perp = np.abs(dx * uy - dy * ux)
        on_line = perp < 3.0 + 1.5 * s.width[c]
        beyond_end = along > 0.5 * s.length[c] - 3.0
        vertical = abs(abs(math.degrees(s.theta[c])) - 90.0) < 5.0
        column = vertical & (np.abs(dx) < 3.0)
        near = np.hypot(dx, dy) < reach
        if np.any(near & ((on_line & beyond_end) | column)):
            s.kind[c] = OTHER
