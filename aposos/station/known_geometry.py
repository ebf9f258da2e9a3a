"""Plate solving with a known plate geometry: a 2-D offset search for fields with few stars.

A telescope knows its plate scale and camera rotation (the last solved frame of the
night, a header WCS, the station file) far better than its pointing. With the pixel to
sky matrix known to a degree and a few per cent, the frame is placed by an offset
alone: every (catalogue star, image star) pair votes for the offset that would put the
one on the other, and the true offset collects a vote from every matched star while the
false ones scatter. A small grid of rotations and scales about the known values absorbs
what is not known. The brightest detections vote first (8, then 16, 32 and ``pool``): in
a field of three catalogue stars among tens of detections, chance peaks of three votes
are many when all vote, rare when the eight brightest do. The best peaks are refined
by matching and a similarity fit (offset, rotation, scale: four parameters, so three
stars leave two degrees of freedom to check; two stars, none, and are never accepted:
counted as below, two stars that are a 0.4 deg frame's two brightest detections match
by chance with a probability of about 5 searched over 1.5 deg with this grid, and still
0.01 over 0.25 deg with the rotation known to 0.1 deg and the scale to 0.1 %).

A match is accepted only when chance cannot explain it: the probability that a random
offset in the searched area puts as many catalogue stars on detected stars is below
``max_false_alarm``, every match is within the match radius, and the matched stars'
brightnesses agree with their catalogue magnitudes. The density that chance draws on is
that of the detections as bright as the faintest matched one (saturated ones count as
the brightest): reference stars are among the brightest things in a frame, and a random
offset must land on those, not on any of the faint detections. So three stars that are
the three brightest detections can be told from chance, three faint ones cannot. Chance
is judged at the match radius and at the tightest radius that holds the matches (twice
the worst residual, not under ``TIGHT_RADIUS_PX``), the searched offsets, rotations and
scales counted at that resolution, and the smaller of the two is doubled for the choice.

Coordinates are in "catalogue pixels": the gnomonic plane about the pointing divided by
the nominal scale, as :class:`aposos.station.astrometry.PlateSolver` votes in them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import binom

__all__ = [
    "MAX_ZERO_POINT_SPREAD_MAG",
    "GeometryMatch",
    "match_known_geometry",
    "zero_point_spread",
]


@dataclass
class GeometryMatch:
    """``cat ~ m @ img + t`` in catalogue pixels (``img`` relative to the optical axis)."""

    m: np.ndarray
    t: np.ndarray
    image_index: np.ndarray
    catalogue_index: np.ndarray
    n_predicted: int  # catalogue stars the solution puts in the frame
    false_alarm: float  # chance of as many matches at a random offset of the search
    rms_px: float
    mag_spread: float  # largest zero-point departure among unsaturated matches (mag)


# the largest departure of a few matched stars' zero points from their median (mag):
# colour terms between a catalogue's band and the camera's reach about a magnitude
MAX_ZERO_POINT_SPREAD_MAG = 1.5
TIGHT_RADIUS_PX = 0.3  # the tightest radius chance is judged at (centroids, catalogue)


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _similarity_fit(src: np.ndarray, dst: np.ndarray, parity: float):
    """Least squares ``dst ~ a * (parity x, y) + b`` in complex form: (m, t, residuals)."""
    z = (src[:, 0] * parity) + 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    a_mat = np.column_stack([z, np.ones_like(z)])
    (a, b), *_ = np.linalg.lstsq(a_mat, w, rcond=None)
    m = np.array([[a.real, -a.imag], [a.imag, a.real]]) @ np.diag([parity, 1.0])
    t = np.array([b.real, b.imag])
    return m, t, dst - (src @ m.T + t)


def _false_alarm(k: int, n_pred: int, n_image: int, area_px: float, radius_px, trials):
    """Chance that some offset of ``trials`` puts ``k`` of ``n_pred`` stars on detections."""
    p = min(1.0, n_image * math.pi * radius_px**2 / area_px)
    tail = float(binom.sf(k - 1, n_pred, p))
    return min(1.0, trials * tail)


def match_known_geometry(
    img: np.ndarray,
    cat: np.ndarray,
    m0: np.ndarray,
    *,
    shape: tuple[int, int],
    axis: tuple[float, float],
    search_px: float,
    img_flux: np.ndarray | None = None,
    img_saturated: np.ndarray | None = None,
    cat_mag: np.ndarray | None = None,
    rotation_tolerance_deg: float = 2.0,
    scale_tolerance: float = 0.02,
    match_radius_px: float = 1.2,
    min_matches: int = 3,
    max_false_alarm: float = 1e-3,
    max_mag_spread: float = MAX_ZERO_POINT_SPREAD_MAG,
    pool: int = 60,
) -> GeometryMatch | None:
    """Find the offset that puts catalogue stars on image stars, or None.

    Parameters
    ----------
    img : (n, 2) image stars relative to the optical axis, brightest first.
    cat : (k, 2) catalogue stars in catalogue pixels, brightest first.
    m0 : the known 2 x 2 map image pixels -> catalogue pixels (scale, rotation, parity).
    search_px : how far the true offset may be from zero (the pointing tolerance).
    pool : the brightest image stars that vote (all of them are matched against).
    """
    ny, nx = shape
    img = np.asarray(img, float)
    cat = np.asarray(cat, float)
    if img.shape[0] < min_matches or cat.shape[0] < min_matches:
        return None
    parity = float(np.sign(np.linalg.det(m0)))
    r_max = 0.5 * math.hypot(nx, ny)
    # grid steps that move a corner star by at most ~2 px
    rot_step = 2.0 / r_max
    n_rot = int(math.ceil(math.radians(rotation_tolerance_deg) / rot_step))
    n_scl = int(math.ceil(scale_tolerance / rot_step))
    rots = np.arange(-n_rot, n_rot + 1) * rot_step
    scls = 1.0 + np.arange(-n_scl, n_scl + 1) * rot_step
    # only catalogue stars that can land in the frame at some offset of the search
    reach = search_px + r_max * 1.1
    cat_v = cat[np.hypot(cat[:, 0], cat[:, 1]) < reach]
    if cat_v.shape[0] < min_matches:
        return None
    grid = [(rot, scl) for rot in rots for scl in scls]
    rank = _brightness_rank(img.shape[0], img_flux, img_saturated)
    # independent trials: a star pair matches over a disc of offsets of the match radius
    trials = len(grid) * (math.pi * search_px**2) / (math.pi * match_radius_px**2)
    best = None
    seen = []
    # the brightest detections vote first: with a few voters a chance peak of three
    # votes is rare, so the true one of a field with three stars is not lost among them
    for n_voters in sorted({min(n, pool, img.shape[0]) for n in (8, 16, 32, pool)}):
        peaks = _vote_peaks(img[:n_voters], cat_v, m0, grid, search_px)
        tried = 0
        for _votes, rot, scl, t in peaks:
            if tried == 8:
                break
            if any(np.hypot(*(t - s)) < 3.0 for s in seen):
                continue
            seen.append(t)
            tried += 1
            cand = _candidate(img, cat, scl * _rotation(rot) @ m0, t, shape, axis, parity,
                              match_radius_px, min_matches, rank, trials, img_flux,
                              img_saturated, cat_mag)  # fmt: skip
            if cand is not None and (
                best is None
                or (cand.false_alarm, -cand.image_index.size)
                < (best.false_alarm, -best.image_index.size)
            ):
                best = cand
        if best is not None and best.false_alarm <= max_false_alarm:
            break
    if best is None or best.false_alarm > max_false_alarm or best.mag_spread > max_mag_spread:
        return None
    return best


def _vote_peaks(voters, cat_v, m0, grid, search_px, per_cell=3):
    """Offsets that put three or more catalogue stars on ``voters``: (votes, rotation,
    scale, offset), most votes first; the best ``per_cell`` of each rotation and scale."""
    bin_px = 4.0
    peaks = []
    for rot, scl in grid:
        m = scl * _rotation(rot) @ m0
        off = (cat_v[None, :, :] - (voters @ m.T)[:, None, :]).reshape(-1, 2)
        off = off[np.hypot(off[:, 0], off[:, 1]) <= search_px]
        if off.shape[0] < 3:
            continue
        for shift in (0.0, 0.5):
            cell = np.floor(off / bin_px + shift).astype(np.int64)
            keys = cell[:, 0] * (1 << 32) + cell[:, 1]  # one integer per bin: a fast unique
            _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
            for top in np.argsort(-counts, kind="stable")[:per_cell]:
                if counts[top] < 3:
                    break
                peaks.append((int(counts[top]), rot, scl, np.median(off[inv == top], axis=0)))
    peaks.sort(key=lambda p: -p[0])
    return peaks


def _candidate(img, cat, m, t, shape, axis, parity, match_radius_px, min_matches, rank,
               trials, img_flux, img_saturated, cat_mag):  # fmt: skip
    """A vote peak refined and judged against chance, or None when it does not refine."""
    ny, nx = shape
    found = _refine(img, cat, m, t, shape, axis, parity, match_radius_px, min_matches)
    if found is None:
        return None
    m, t2, ii, kk, n_pred, rms, worst = found
    n_bright = int(np.max(rank[ii])) + 1  # detections as bright as the faintest match
    # the cut is chosen after the fact: one more trial per doubling of it
    cuts = 1 + math.ceil(math.log2(max(1.0, img.shape[0] / ii.size)))
    fap = min(
        _false_alarm(ii.size, n_pred, n_bright, nx * ny, r, trials * cuts * 2 * (match_radius_px / r) ** 4)
        for r in (match_radius_px, min(match_radius_px, max(2.0 * worst, TIGHT_RADIUS_PX)))
    )  # fmt: skip
    spread = zero_point_spread(ii, kk, img_flux, img_saturated, cat_mag)
    return GeometryMatch(m, t2, ii, kk, n_pred, fap, rms, spread)


def _brightness_rank(n: int, flux, saturated) -> np.ndarray:
    """Each detection's place by brightness (0: brightest), saturated ones first; without
    fluxes every detection counts as bright as any."""
    if flux is None:
        return np.full(n, n - 1)
    key = -np.asarray(flux, float)
    if saturated is not None:
        key = np.where(np.asarray(saturated, bool), -np.inf, key)
    rank = np.empty(n, np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(n)
    return rank


def _refine(img, cat, m, t, shape, axis, parity, radius, min_matches):
    """Match and refit a similarity: from a 3 px radius to ``radius``; None if too few."""
    ny, nx = shape
    tree = cKDTree(img)
    for r in (3.0, 2.0, radius, radius):
        pred = (cat - t) @ np.linalg.inv(m).T
        ax, ay = pred[:, 0] + axis[0], pred[:, 1] + axis[1]
        inside = (ax > 0) & (ax < nx - 1) & (ay > 0) & (ay < ny - 1)
        kk = np.flatnonzero((ax > -r) & (ax < nx - 1 + r) & (ay > -r) & (ay < ny - 1 + r))
        if kk.size < min_matches:
            return None
        d, ii = tree.query(pred[kk], distance_upper_bound=r)
        ok = np.isfinite(d)
        kk, ii, d = kk[ok], ii[ok], d[ok]
        if ii.size < min_matches:
            return None
        # one catalogue star per image star (the closer)
        order = np.lexsort((d, ii))
        ii, kk = ii[order], kk[order]
        first = np.r_[True, ii[1:] != ii[:-1]]
        ii, kk = ii[first], kk[first]
        if ii.size < min_matches:
            return None
        m_new, t_new, res = _similarity_fit(img[ii], cat[kk], parity)
        sv = np.linalg.svd(m_new, compute_uv=False)
        if abs(sv[0] / np.linalg.svd(m, compute_uv=False)[0] - 1.0) > 0.05:
            return None
        m, t = m_new, t_new
    # final residuals in image pixels, every match within the radius
    res_px = res @ np.linalg.inv(m).T
    dist = np.hypot(res_px[:, 0], res_px[:, 1])
    if np.max(dist) > radius:
        return None
    rms = float(math.sqrt(np.mean(dist**2) / 2.0))
    return m, t, ii, kk, int(inside.sum()), rms, float(np.max(dist))


def zero_point_spread(ii, kk, flux, saturated, mag) -> float:
    """Largest departure from the median zero point among unsaturated matched stars."""
    if flux is None or mag is None:
        return 0.0
    keep = np.ones(ii.size, bool) if saturated is None else ~np.asarray(saturated)[ii]
    f = np.asarray(flux, float)[ii][keep]
    keep2 = f > 0
    if keep2.sum() < 2:
        return 0.0
    zp = np.asarray(mag, float)[kk][keep][keep2] + 2.5 * np.log10(f[keep2])
    return float(np.max(np.abs(zp - np.median(zp))))
