"""Satellite candidates in a solved frame, and moving points found across frames.

:func:`frame_candidates` fits the sources the extractor classified as streaks or
points, and looks for points the segmentation hid: a point merged with star trails
(its filtered S/N falls off within a few pixels along the trails, where a trail's
runs on) and a faint point merged with a bright one (a compact peak in the residual
once the bright one is fitted). Both are fitted jointly with what they are merged
with (:mod:`aposos.station.deblend`). The PSF width of a frame of trailed stars comes
from the profiles across bright trails (:func:`trail_width`).

In frames of round stars a satellite tracked too slowly to streak looks like a star;
:class:`TransientState` compares each such frame with its neighbours and
:func:`transient_points` returns the sources found at no star's place there.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from aposos.station.classify import trail_level
from aposos.station.deblend import fit_point_on_trail, fit_two_points
from aposos.station.detection import Detection
from aposos.station.extract import OTHER, POINT, SATURATED, STAR, STREAK
from aposos.station.psffit import cutout, fit_point, fit_streak, gauss_model

__all__ = [
    "TransientState",
    "elongated_star_sigma",
    "frame_candidates",
    "hidden_points",
    "near_edge",
    "plausible_width",
    "trail_width",
    "transient_points",
]


def frame_candidates(ext, psf_sigma: float, *, edge_margin: float) -> list[Detection]:
    """Satellite candidates of a solved frame: fitted streaks and points (``frame=-1``).

    Sources classified as streaks or points are fitted, and so are streaks merged with
    the star trails they cross (long sources at another angle than the trails); then
    points hidden in other sources are looked for: a point merged with a star trail, a
    faint point merged with a bright one (see :func:`hidden_points`).
    """
    src = ext.sources
    noise = max(ext.noise_median, 1e-3)
    ny, nx = ext.subtracted.shape
    out = []
    margin = edge_margin + 2.0 * psf_sigma
    todo = (src.kind == STREAK) | (src.kind == POINT)
    crossing = _streaks_across_trails(ext) if ext.star_length_px > 0 else np.zeros(len(src), bool)
    for i in np.nonzero(todo | crossing)[0]:
        if src.kind[i] == STREAK or crossing[i]:
            fit = fit_streak(
                ext.subtracted,
                ext.labels,
                src.label[i],
                (src.fx[i], src.fy[i]),
                src.theta[i],
                src.length[i],
                psf_sigma,
                noise,
                ext.saturated,
            )
            if crossing[i] and (fit is None or _angle_off(fit["theta"], ext.star_theta) < 0.15):
                continue  # still along the trails: trails merged end to end
            # sharper than the PSF across: a cosmic-ray track (halos widen bright ones)
            if fit is None or not (src.nsat[i] or fit["sigma"] > 0.55 * psf_sigma):
                src.kind[i] = OTHER
                continue
            if fit["length"] < 2.5 * psf_sigma * 2.3548:
                src.kind[i] = OTHER  # too short to time its ends: a moving point, maybe
                continue
            d = _streak_detection(fit, float(src.snr[i]), nx, ny, margin)
            d.uneven_sigma = uneven_sigma(ext, d, src.label[i], psf_sigma, noise)
        else:
            d = _short_streak_among_trails(ext, i, psf_sigma, noise, nx, ny, margin)
            if d is not None:
                out.append(d)
                continue
            fit = fit_point(
                ext.subtracted,
                ext.labels,
                src.label[i],
                src.x[i],
                src.y[i],
                psf_sigma,
                noise,
                ext.saturated,
            )
            if fit is None or not (
                src.nsat[i] or plausible_width(fit["sigma"], psf_sigma, trailed=True)
            ):
                continue
            if near_edge(fit["x"], fit["y"], nx, ny, margin):
                continue
            d = Detection(
                frame=-1,
                kind="point",
                x=fit["x"],
                y=fit["y"],
                sigma_px=fit["sigma_mid"],
                flux=fit["flux"],
                snr=float(src.snr[i]),
                width_px=fit["sigma"],
            )
        out.append(d)
    # a bright streak along the trails and much shorter, taken for a star trail or a
    # saturated star (bright trails' light is 0.8 of their footprint's length or more)
    fwhm = 2.3548 * psf_sigma
    short = (src.kind == SATURATED) | ((src.kind == STAR) & (src.snr >= 50.0))
    short &= (src.flux_length >= 2.5 * fwhm) & (src.flux_length < 0.65 * ext.star_length_px)
    for i in np.nonzero(short)[0]:
        d = _short_streak_among_trails(ext, i, psf_sigma, noise, nx, ny, margin)
        if d is not None:
            out.append(d)
    out += hidden_points(ext, psf_sigma, out, margin=margin)
    return out


def uneven_sigma(ext, d: Detection, label: int, psf_sigma: float, noise: float) -> float:
    """How far the faintest third of a streak's light falls below the mean third, in
    sigma of a third's light (background noise), when it holds under half of it; else 0.

    A streak is evenly bright along its length; two faint stars merged into one
    footprint are bright at its ends only (Pakistan ``mar`` 103's first frame: two
    stars 16 px apart made a lone "streak" of S/N 16, a false tracklet).
    """
    length = math.hypot(d.xb - d.xa, d.yb - d.ya)
    if not length > 0:
        return 0.0
    half_w = 2.0 * psf_sigma + 1.0
    x, y, v, _ = cutout(
        ext.subtracted, min(d.xa, d.xb) - half_w, max(d.xa, d.xb) + half_w,
        min(d.ya, d.yb) - half_w, max(d.ya, d.yb) + half_w, ext.labels, label,
    )  # fmt: skip
    c, s = (d.xb - d.xa) / length, (d.yb - d.ya) / length
    along = ((x - d.xa) * c + (y - d.ya) * s) / length
    band = np.abs(-(x - d.xa) * s + (y - d.ya) * c) < half_w
    band &= (along > -half_w / length) & (along < 1.0 + half_w / length)  # the ends' light
    third = np.clip(np.floor(along * 3.0).astype(int), 0, 2)
    light, sigma = np.zeros(3), np.zeros(3)
    for k in range(3):
        sel = band & (third == k)
        light[k] = v[sel].sum()
        sigma[k] = noise * math.sqrt(max(int(sel.sum()), 1))
    k = int(np.argmin(light))
    mean = float(light.mean())
    if not light[k] < 0.5 * mean:
        return 0.0
    return float((mean - light[k]) / sigma[k])


def _short_streak_among_trails(ext, i, psf_sigma, noise, nx, ny, margin) -> Detection | None:
    """A source taken for a point among star trails that is a streak shorter than the
    trails and along them (often saturated): an object crossing the field along the sky's drift. Peru's
    stare frames of ``mar`` had a GPS satellite streaking 8 px beside 16 px trails, S/N
    250: fitted as a point it sat 2 px off its midpoint and moved like no GEO (its
    velocity is its own, not the mount's). A point merged with a trail fits as the
    whole trail, a point as no length: neither is taken."""
    src = ext.sources
    if ext.star_length_px <= 0 or src.length[i] < 2.3548 * psf_sigma * 1.5 + 1.0:
        return None
    fit = fit_streak(
        ext.subtracted, ext.labels, src.label[i], (src.fx[i], src.fy[i]), src.theta[i],
        src.length[i], psf_sigma, noise, ext.saturated,
    )  # fmt: skip
    fwhm = 2.3548 * psf_sigma
    if fit is None or not 2.5 * fwhm <= fit["length"] < 0.75 * ext.star_length_px:
        return None
    if not 0.7 * psf_sigma < fit["sigma"] < 1.3 * psf_sigma:
        return None
    if near_edge(fit["x"], fit["y"], nx, ny, margin):
        return None
    return _streak_detection(fit, float(src.snr[i]), nx, ny, margin)


def _streak_detection(fit: dict, snr: float, nx: int, ny: int, margin: float) -> Detection:
    """The detection of a fitted streak (:func:`~aposos.station.psffit.fit_streak`)."""
    return Detection(
        frame=-1, kind="streak", x=fit["x"], y=fit["y"], sigma_px=fit["sigma_mid"],
        flux=fit["flux"], snr=snr, width_px=fit["sigma"], xa=fit["xa"], ya=fit["ya"],
        xb=fit["xb"], yb=fit["yb"], sigma_end_px=fit["sigma_end"],
        clipped_a=near_edge(fit["xa"], fit["ya"], nx, ny, margin),
        clipped_b=near_edge(fit["xb"], fit["yb"], nx, ny, margin),
    )  # fmt: skip


def _angle_off(a: float, b: float) -> float:
    d = abs((a - b) % math.pi)
    return min(d, math.pi - d)


def _streaks_across_trails(ext) -> np.ndarray:
    """Unclassified sources much longer than the star trails and at another angle: a
    streak merged with the trails it crosses (the footprint's axis lies between)."""
    s = ext.sources
    off = np.array([_angle_off(t, ext.star_theta) for t in s.theta])
    return (s.kind == OTHER) & (s.nsat == 0) & (s.length > 1.3 * ext.star_length_px) & (off > 0.1)


def transient_points(state: TransientState) -> list[Detection]:
    """Point detections for sources seen at no star's place in the neighbour frames."""
    if state.absent is None:
        return []
    ext = state.ext
    src = ext.sources
    ny, nx = ext.subtracted.shape
    noise = max(ext.noise_median, 1e-3)
    margin = state.margin + 2.0 * state.psf_sigma
    new = []
    for i in np.nonzero(state.absent)[0]:
        fit = fit_point(
            ext.subtracted, ext.labels, src.label[i], src.x[i], src.y[i], state.psf_sigma, noise,
            ext.saturated,
        )  # fmt: skip
        if fit is None or not (src.nsat[i] or plausible_width(fit["sigma"], state.psf_sigma)):
            continue
        if near_edge(fit["x"], fit["y"], nx, ny, margin):
            continue
        d = Detection(
            frame=state.frame_index,
            kind="point",
            x=fit["x"],
            y=fit["y"],
            sigma_px=fit["sigma_mid"],
            flux=fit["flux"],
            snr=float(src.snr[i]),
            width_px=fit["sigma"],
        )
        d.notes.append("moving point: at no star's place in the neighbouring frames")
        new.append(d)
    return new


class TransientState:
    """A solved frame of round stars kept until its neighbours are known.

    ``absent`` marks the frame's star-like sources that no source of any neighbour
    frame covers (at the same place on the sky): moving objects too slow to streak,
    noise peaks, cosmic rays that look like stars. Linking sorts them out.
    """

    def __init__(self, report, ext, psf_sigma, *, margin):
        self.report = report
        self.ext = ext
        self.psf_sigma = psf_sigma
        self.margin = margin
        self.frame_index = -1
        self.absent = None
        src = ext.sources
        # (a slow object moving a few FWHM in the exposure, too short for a streak,
        # is longer than a star: up to the shortest streak, 4 FWHM, and a margin)
        compact = src.length < 4.0 * 2.3548 * psf_sigma + 8.0
        # (a bright tracked satellite saturates as a bright star does: Iran mar 107's
        # Galileo target, S/N 300, was lost in the frames where it did)
        kinds = (src.kind == STAR) | (src.kind == OTHER) | (src.kind == SATURATED)
        self.candidates = kinds & (src.snr >= 5.0) & compact
        ra, dec = report.solution.model.pixel_to_world(src.x, src.y)
        self.radec = np.stack([np.atleast_1d(ra), np.atleast_1d(dec)], axis=1)

    def compare(self, other: TransientState) -> None:
        """Update ``absent`` with the neighbour frame ``other``.

        Present means the neighbour's matched-filter S/N at the same sky position
        (interpolated between pixels) reaches a quarter of this source's S/N and at least
        2.5: a star at the detection limit here is almost always above that there, while
        a moving object has left (its own footprint may still reach the spot, its peak
        does not). The best of the 3 x 3 pixels around the spot would reach 1.5 px away:
        a slow HEO moving 2 px (2 FWHM) between frames was taken for a star.
        """
        model = other.report.solution.model
        px, py = model.world_to_pixel(self.radec[:, 0], self.radec[:, 1])
        labels = other.ext.labels
        snr = other.ext.snr_image
        ny, nx = labels.shape
        inside = (px > 2) & (px < nx - 3) & (py > 2) & (py < ny - 3)
        level = ndimage.map_coordinates(
            snr, [np.clip(py, 0, ny - 1), np.clip(px, 0, nx - 1)], order=1
        )
        covered = level >= np.maximum(2.5, 0.25 * self.ext.sources.snr)
        missing = ~covered & inside & self.candidates
        self.absent = missing if self.absent is None else (self.absent & missing)
        # streaks found at the same place in a neighbour are fixed features (spikes,
        # bleed trails, star chains), not moving objects
        for d in self.report.detections:
            if d.kind != "streak" or d.radec_a is None:
                continue
            pts = np.array([d.radec_a, d.radec_mid, d.radec_b])
            qx, qy = model.world_to_pixel(pts[:, 0], pts[:, 1])
            # pixel centres round to the nearest index: keep them inside the frame
            ok = (qx >= -0.5) & (qx < nx - 0.5) & (qy >= -0.5) & (qy < ny - 0.5)
            hits = sum(
                labels[int(round(b)), int(round(a))] != 0
                for a, b in zip(qx[ok], qy[ok], strict=True)
            )
            if ok.sum() >= 2 and hits >= 2:
                d.notes.append("static: also in a neighbouring frame")


def trail_width(ext) -> float:
    """PSF sigma (px) of a frame of trailed stars, from the profiles across bright trails.

    Each trail's pixels, away from its ends, are fitted with a Gaussian in the distance
    across the trail (the pixel box taken out as for :func:`fit_streak`'s model).
    """
    s = ext.sources
    star = (s.kind == STAR) & (s.nsat == 0) & (s.snr > 20)
    idx = np.nonzero(star)[0]
    idx = idx[np.argsort(-s.snr[idx])][:9]
    guess = float(np.median(s.width[idx])) if idx.size else 1.5
    sig = [w for i in idx if (w := _across_sigma(ext, i)) is not None]
    if len(sig) >= 3:
        return float(np.median(sig))
    return float(np.clip(guess, 0.6, 10.0))


def elongated_star_sigma(ext, guess: float) -> float:
    """PSF sigma (px) across the stars of a frame of elongated stars.

    A circular Gaussian fitted to an elongated star overstates the PSF (its length
    goes into the width); PSF-convolved segment fits to the brightest stars along the
    frame's elongation give the width across. ``guess``: a first guess (px), e.g.
    from the seeing of the last frames; a poor one is refined once.
    """
    s = ext.sources
    idx = np.nonzero((s.kind == STAR) & (s.nsat == 0) & (s.snr > 20))[0]
    idx = idx[np.argsort(-s.snr[idx])][:9]
    noise = max(ext.noise_median, 1e-3)
    guess = float(np.clip(guess, 0.5, 10.0))
    for _ in range(2):
        sig = []
        for i in idx:
            fit = fit_streak(
                ext.subtracted, ext.labels, s.label[i], (s.fx[i], s.fy[i]), ext.star_theta,
                ext.star_elongation_px, guess, noise,
            )  # fmt: skip
            if fit is not None and 0.3 < fit["sigma"] < 3.0 * guess + 1.0:
                sig.append(fit["sigma"])
        if len(sig) < 3:
            return guess
        found = float(np.median(sig))
        if abs(found - guess) < 0.3 * guess:
            return found
        guess = found
    return guess


def trail_length(ext, psf_sigma: float) -> float:
    """Length (px) of the star trails: PSF-convolved segment fits to bright trails.

    The footprint length (``ext.star_length_px``) includes the PSF wings above the
    detection threshold; a joint fit of a point with a trail needs the trail itself.
    """
    s = ext.sources
    idx = np.nonzero((s.kind == STAR) & (s.nsat == 0) & (s.snr > 20))[0]
    idx = idx[np.argsort(-s.snr[idx])][:7]
    noise = max(ext.noise_median, 1e-3)
    lengths = []
    for i in idx:
        fit = fit_streak(
            ext.subtracted, ext.labels, s.label[i], (s.fx[i], s.fy[i]), ext.star_theta,
            ext.star_length_px, psf_sigma, noise,
        )  # fmt: skip
        if fit is not None and 0.5 * ext.star_length_px < fit["length"] < 1.5 * ext.star_length_px:
            lengths.append(fit["length"])
    if len(lengths) >= 3:
        return float(np.median(lengths))
    return max(ext.star_length_px - 2.3548 * psf_sigma, 0.5 * ext.star_length_px)


def _across_sigma(ext, i) -> float | None:
    from scipy.optimize import least_squares

    s = ext.sources
    length, theta = ext.star_length_px, ext.star_theta
    c, sn = math.cos(theta), math.sin(theta)
    x0, x1, y0, y1 = s.bbox[i]
    sub = ext.subtracted[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
    lab = ext.labels[y0 : y1 + 1, x0 : x1 + 1]
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    along = (xx - s.fx[i]) * c + (yy - s.fy[i]) * sn
    perp = -(xx - s.fx[i]) * sn + (yy - s.fy[i]) * c
    use = (lab == s.label[i]) & (np.abs(along) < 0.5 * length - 3.0)
    if use.sum() < 15:
        return None
    p, d = perp[use], sub[use]
    amp0 = float(d.max())

    def resid(q):
        se2 = q[2] ** 2 + 1.0 / 12.0
        return q[0] * np.exp(-0.5 * (p - q[1]) ** 2 / se2) - d

    try:
        r = least_squares(resid, [amp0, 0.0, 1.0], bounds=([0, -3, 0.05], [np.inf, 3, 10]))
    except ValueError:
        return None
    if not r.success:
        return None
    return float(r.x[2])


def plausible_width(sigma: float, psf_sigma: float, trailed: bool = False) -> bool:
    # trails overstate the PSF width a little; keep only the sharpest out
    low = 0.3 if trailed else 0.55 * psf_sigma
    return low < sigma < 2.0 * psf_sigma + 0.5


def near_edge(x, y, nx, ny, margin) -> bool:
    return bool(x < margin or y < margin or x > nx - 1 - margin or y > ny - 1 - margin)


# ------------------------------------------------------------------ hidden points


def hidden_points(ext, psf_sigma: float, found: list[Detection], *, margin: float):
    """Points the segmentation merged into other sources (see the module notes)."""
    noise = max(ext.noise_median, 1e-3)
    ny, nx = ext.subtracted.shape
    out = []
    if ext.star_length_px > 0:
        length = None
        for i, peak, own in _peaks_on_trails(ext, psf_sigma):
            length = length or trail_length(ext, psf_sigma)
            fit = fit_point_on_trail(ext, i, peak, psf_sigma, noise, length)
            how = "fitted jointly"
            if fit is None and own >= 20.0:
                # the joint fit failed (a bright point's halo spoils the trail's first
                # guess): a point far above the trail is fitted alone, the trail under
                # it taken as background
                src = ext.sources
                fit = fit_point(
                    ext.subtracted, ext.labels, src.label[i], *peak, psf_sigma, noise, ext.saturated
                )
                if fit is not None:
                    fit["flux_err"] = math.inf
                    how = "fitted alone, the trail as background"
            if fit is None or not _credible_point(fit, psf_sigma, own):
                continue
            if near_edge(fit["x"], fit["y"], nx, ny, margin):
                continue
            d = _point(fit, ext.sources.snr[i])
            d.notes.append(f"point merged with a star trail: {how}")
            out.append(d)
    for det in found:  # (the residual of a point on a trail is the trail)
        if det.kind != "point":
            continue
        fit = _second_point(ext, det, psf_sigma, noise)
        if fit is None or near_edge(fit["x"], fit["y"], nx, ny, margin):
            continue
        d = _point(fit, fit["snr"])
        d.notes.append("point merged with a brighter point: fitted jointly")
        out.append(d)
    return out


def _point(fit, snr) -> Detection:
    return Detection(
        frame=-1,
        kind="point",
        x=fit["x"],
        y=fit["y"],
        sigma_px=fit["sigma_mid"],
        flux=fit["flux"],
        snr=float(snr),
        width_px=fit["sigma"],
    )


def _credible_point(fit, psf_sigma, own_snr: float = 0.0) -> bool:
    """A fitted point is real when its flux is measured, or when its peak stands 20
    sigma above the trail (then a large flux error says only that the joint fit could
    trade flux between the point and a trail crossing it)."""
    return (
        (fit["flux"] > 5.0 * fit["flux_err"] or own_snr >= 20.0)
        and plausible_width(fit["sigma"], psf_sigma)
        and np.isfinite(fit["sigma_mid"])
    )


def _peaks_on_trails(ext, psf_sigma, detect_sigma: float = 5.0):
    """Sources of a frame of trailed stars whose S/N peak is a point, not a trail.

    Along the trail direction a trail's filtered S/N runs on from its peak; a point
    merged with trails (at an end, in the middle, or where several trails meet) falls
    to the trails' level a few pixels away on both sides. Yields (source index,
    (x, y) of the peak, its S/N above the trail's).
    """
    s = ext.sources
    idx = np.nonzero(((s.kind == STAR) | (s.kind == OTHER)) & (s.snr >= 8.0))[0]
    if idx.size == 0:
        return
    peaks = np.stack([s.px[idx], s.py[idx]], axis=1)
    compact = _compact_along_trails(ext.snr_image, ext.star_theta, peaks, psf_sigma)
    for k in np.nonzero(compact)[0]:
        i = idx[k]
        # the point's own S/N, above the trail it sits on, makes it a detection
        level = trail_level(
            ext.snr_image, s.px[i], s.py[i], ext.star_theta, ext.star_length_px, psf_sigma
        )
        if s.snr[i] - level < detect_sigma:
            continue
        yield i, (float(s.px[i]), float(s.py[i])), float(s.snr[i] - level)


def _compact_along_trails(snr, theta, peaks, psf_sigma) -> np.ndarray:
    """Whether the S/N image ``snr`` at each peak pixel (x, y) falls below 1 / 1.6 of
    the peak a few pixels away on both sides along the star trails (angle ``theta``)."""
    ny, nx = snr.shape
    c, sn = math.cos(theta), math.sin(theta)
    px, py = np.asarray(peaks, float).T
    d = 2.0 * psf_sigma + 2.0
    side = np.zeros(px.size)
    for sign in (-1.0, 1.0):
        for off in (-1.0, 0.0, 1.0):
            xs = px + sign * d * c - off * sn
            ys = py + sign * d * sn + off * c
            v = ndimage.map_coordinates(
                snr, [np.clip(ys, 0, ny - 1), np.clip(xs, 0, nx - 1)], order=1
            )
            side = np.maximum(side, v)
    level = snr[py.astype(np.int64), px.astype(np.int64)]
    return side < level / 1.6


def _second_point(ext, det: Detection, psf_sigma: float, noise: float):
    """A second, fainter point beside a fitted point: the peak of the residual."""
    sub = ext.subtracted
    ny, nx = sub.shape
    r = int(4.0 * psf_sigma + 8.0)
    jc, ic = int(round(det.x)), int(round(det.y))
    if jc < 0 or ic < 0 or jc >= nx or ic >= ny:
        return None
    label = int(ext.labels[ic, jc])
    if label == 0:
        return None
    y0, y1, x0, x1 = max(ic - r, 0), min(ic + r + 1, ny), max(jc - r, 0), min(jc + r + 1, nx)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    g = np.array([det.x, det.y, det.flux, max(det.width_px, 0.3), 0.0])
    res = sub[y0:y1, x0:x1] - _gauss(g, xx, yy)
    lab = ext.labels[y0:y1, x0:x1]
    use = (lab == 0) | (lab == label)
    if ext.saturated is not None:
        use &= ~ndimage.binary_dilation(ext.saturated[y0:y1, x0:x1], iterations=2)
    res = np.where(use, res, 0.0)
    sm = ndimage.gaussian_filter(res, psf_sigma, mode="constant")
    snr = sm * (2.0 * math.sqrt(math.pi) * psf_sigma) / noise
    snr[np.hypot(xx - det.x, yy - det.y) < 2.0 * psf_sigma] = 0.0
    snr[lab != label] = 0.0
    k = int(np.argmax(snr))
    if snr.flat[k] < 10.0:
        return None
    sx, sy = float(xx.flat[k]), float(yy.flat[k])
    if ext.star_length_px > 0:  # a star trail merged with the point runs on: not a point
        local = (sx - x0, sy - y0)
        if not _compact_along_trails(snr, ext.star_theta, [local], psf_sigma)[0]:
            return None
    guess2 = max(float(res.flat[k]) * 2 * math.pi * psf_sigma**2, 1.0)
    fits = fit_two_points(ext, label, (det.x, det.y, det.flux), (sx, sy, guess2), psf_sigma, noise)
    if fits is None:
        return None
    first, second = fits
    if math.hypot(second["x"] - sx, second["y"] - sy) > 2.0 * psf_sigma + 1.0:
        return None
    if math.hypot(second["x"] - first["x"], second["y"] - first["y"]) < 1.5 * psf_sigma:
        return None
    # the joint fit's flux error is inflated by the bright point's misfit (saturation,
    # bleeding): the residual peak's S/N above says the point is real
    if not (second["flux"] > 0 and plausible_width(second["sigma"], psf_sigma)):
        return None
    second["snr"] = float(snr.flat[k])
    return second


def _gauss(p, x, y):
    return gauss_model(p, x.ravel().astype(float), y.ravel().astype(float)).reshape(x.shape)
