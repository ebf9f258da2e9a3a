"""Small synthetic sky frames for the station reduction tests.

Real catalogue stars (Gaia/Hipparcos through ``StarCatalogue``) are placed with an
astropy TAN-SIP WCS (the truth; astropy, not our model code, does the projection),
drawn as pixel-integrated Gaussians, optionally trailed, with sky, shot and read
noise, and written as a camera would (uint16 with BZERO = 32768, no WCS).
Satellites are streaks or points given in pixel coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, Sip
from scipy.special import erf

from aposos.station.stars import StarCatalogue


@dataclass
class SynthTruth:
    wcs: WCS
    star_xy: np.ndarray
    star_mag: np.ndarray
    streaks: list = field(default_factory=list)  # (x0, y0, x1, y1, flux)
    points: list = field(default_factory=list)  # (x, y, flux)


def truth_wcs(ra, dec, shape, scale_arcsec, rotation_deg=0.0, k_radial=0.0, parity=1):
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    s = scale_arcsec / 3600.0
    c, si = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    # RA increases to the left (east left) for parity 1, as on the sky seen from below
    w.wcs.cd = np.array([[-s * c, s * si], [s * si, s * c]]) @ np.diag([parity, 1.0])
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[3, 0] = a[1, 2] = k_radial
    b[0, 3] = b[2, 1] = k_radial
    w.sip = Sip(a, b, None, None, w.wcs.crpix)
    w.wcs.set()
    return w


def _render_gauss(img, x, y, flux, sigma, half=None):
    """Add pixel-integrated Gaussians (vectorised over sources via stamps)."""
    ny, nx = img.shape
    half = half or int(math.ceil(4 * sigma)) + 1
    for xi, yi, fi in zip(x, y, flux, strict=True):
        j0, j1 = int(math.floor(xi)) - half, int(math.floor(xi)) + half + 2
        i0, i1 = int(math.floor(yi)) - half, int(math.floor(yi)) + half + 2
        j0c, j1c, i0c, i1c = max(j0, 0), min(j1, nx), max(i0, 0), min(i1, ny)
        if j0c >= j1c or i0c >= i1c:
            continue
        ex = np.arange(j0c, j1c + 1) - 0.5 - xi
        ey = np.arange(i0c, i1c + 1) - 0.5 - yi
        gx = np.diff(0.5 * erf(ex / (math.sqrt(2) * sigma)))
        gy = np.diff(0.5 * erf(ey / (math.sqrt(2) * sigma)))
        img[i0c:i1c, j0c:j1c] += fi * np.outer(gy, gx)


def render_segment(img, x0, y0, x1, y1, flux, sigma, steps=None):
    n = steps or max(int(math.hypot(x1 - x0, y1 - y0) * 4), 1)
    t = (np.arange(n) + 0.5) / n
    _render_gauss(img, x0 + t * (x1 - x0), y0 + t * (y1 - y0), np.full(n, flux / n), sigma)


def make_frame(
    path,
    *,
    ra=83.8,
    dec=-5.4,
    shape=(1024, 1024),
    scale_arcsec=3.0,
    rotation_deg=1.5,
    k_radial=0.0,
    parity=1,
    pointing_error=(0.3, -0.2),
    fwhm_px=2.8,
    sky_adu=400.0,
    gain=1.5,
    read_noise_e=9.0,
    zero_point=24.0,
    exptime=2.0,
    star_trail=(0.0, 0.0),
    streaks=(),
    points=(),
    date_obs="2026-11-22T01:02:03.250",
    mag_limit=12.5,
    seed=1,
    extra_header=None,
    catalogue="auto",  # the deep star store too when installed, as the solver reads
    saturation=60000.0,
    hot_pixels=0,
    cosmic_rays=0,
    faint_stars=0,
    wcs=None,
    epoch_jyear=2026.9,
):
    """Write a synthetic LIGHT frame; returns :class:`SynthTruth`.

    ``zero_point``: magnitude giving 1 e-/s... here: flux_adu = 10**(-0.4 (m - zp)) * exptime.
    ``streaks``: (x0, y0, x1, y1, flux_adu); ``points``: (x, y, flux_adu).
    ``wcs``: the true WCS (default: a TAN-SIP about the frame centre at ``ra``, ``dec``);
    ``epoch_jyear``: the epoch of the star positions (proper motion).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    w = (
        wcs
        if wcs is not None
        else truth_wcs(ra, dec, shape, scale_arcsec, rotation_deg, k_radial, parity)
    )
    radius = 0.75 * math.hypot(nx, ny) * scale_arcsec / 3600.0
    cat = StarCatalogue.load(catalogue)
    sra, sdec, smag = cat.cone(ra, dec, radius, epoch_jyear=epoch_jyear, mag_limit=mag_limit)
    sx, sy = w.all_world2pix(sra, sdec, 0)
    inside = (sx > -20) & (sx < nx + 20) & (sy > -20) & (sy < ny + 20)
    sx, sy, smag = sx[inside], sy[inside], smag[inside]
    if faint_stars:  # stars below the catalogue limit, the same in every frame
        frng = np.random.default_rng(777)
        sx = np.concatenate([sx, frng.uniform(0, nx - 1, faint_stars)])
        sy = np.concatenate([sy, frng.uniform(0, ny - 1, faint_stars)])
        smag = np.concatenate([smag, mag_limit + frng.exponential(1.2, faint_stars)])
    img = np.zeros(shape)
    sigma = fwhm_px / 2.3548
    flux = 10 ** (-0.4 * (smag - zero_point)) * exptime
    tx, ty = star_trail
    if tx or ty:
        for xs, ys, fs in zip(sx, sy, flux, strict=True):
            render_segment(img, xs - tx / 2, ys - ty / 2, xs + tx / 2, ys + ty / 2, fs, sigma)
    else:
        _render_gauss(img, sx, sy, flux, sigma)
    for x0, y0, x1, y1, f in streaks:
        render_segment(img, x0, y0, x1, y1, f, sigma)
    for x, y, f in points:
        _render_gauss(img, [x], [y], [f], sigma)
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = sky_adu * (1.0 + 0.1 * (xx / nx) - 0.05 * (yy / ny))
    e = rng.poisson(np.clip((img + sky) * gain, 0, None)).astype(float)
    e += rng.normal(0.0, read_noise_e, shape)
    adu = e / gain + 1000.0
    for _ in range(hot_pixels):
        adu[rng.integers(0, ny), rng.integers(0, nx)] += rng.uniform(2000, 20000)
    for _ in range(cosmic_rays):
        i, j = rng.integers(5, ny - 5), rng.integers(5, nx - 5)
        for _ in range(rng.integers(1, 4)):
            adu[i, j] += rng.uniform(1000, 8000)
            i += rng.integers(-1, 2)
            j += rng.integers(-1, 2)
    adu = np.clip(np.round(adu), 0, min(saturation, 65535)).astype(np.uint16)
    h = fits.Header()
    h["IMAGETYP"] = "LIGHT"
    h["DATE-OBS"] = date_obs
    h["EXPTIME"] = exptime
    h["TRACKMOD"] = "sidereal" if not (tx or ty) else "stare"
    h["RA"] = ra + pointing_error[0] / max(math.cos(math.radians(dec)), 0.1)
    h["DEC"] = dec + pointing_error[1]
    h["SITELAT"] = 33.674
    h["SITELONG"] = 51.318
    h["SITEELEV"] = 3600.0
    h["FOCALLEN"] = 1000.0
    px_um = math.radians(scale_arcsec / 3600.0) * 1000.0 * 1000.0
    h["XPIXSZ"] = px_um
    h["YPIXSZ"] = px_um
    h["GAIN"] = gain
    h["RDNOISE"] = read_noise_e
    h["SATURATE"] = saturation
    for k, v in (extra_header or {}).items():
        if v is None:
            h.remove(k, ignore_missing=True)
        else:
            h[k] = v
    fits.PrimaryHDU(adu, h).writeto(path, overwrite=True)
    return SynthTruth(w, np.stack([sx, sy], 1), smag, list(streaks), list(points))


def frame_stars(path):
    """A synthetic frame read back and its star-like sources (stars and saturated stars)."""
    from aposos.station.extract import SATURATED, STAR, SourceExtractor
    from aposos.station.fitsframe import read_frame

    frame = read_frame(path)
    s = SourceExtractor(fwhm_px=2.8, saturation=59000)(frame.data).sources
    return frame, s.subset((s.kind == STAR) | (s.kind == SATURATED))
