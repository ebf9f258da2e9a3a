"""Blind plate solving: find where on the sky a frame looks, with no pointing at all.

The plate scale is known from the station (focal length and pixel size), so the
search is over position and rotation only. The index is built once per field size
from the same star catalogue as the ordinary solve:

1. The sky is cut into cells a quarter of the field wide and the brightest few stars
   of each cell are kept, so bright stars are spread evenly, as the brightest stars of
   any frame are.
2. Each kept star A is paired with the brightest kept star B between 0.2 and 0.6 field
   widths away; the two brightest stars inside the circle on AB as diameter are C and
   D. The quad ABCD, seen in a frame where A is (0, 0) and B is (1, 1), gives a code
   (C and D's coordinates) that does not change with position, rotation or scale;
   A/B and C/D are ordered by a fixed rule so each quad has one code.
3. A frame's brightest stars give quads the same way; codes close to an index code
   (and with a side length that fits the plate scale) are hypotheses. Hypotheses that
   agree on the field centre and rotation are pooled, and the best pools are checked
   by the ordinary refinement (matching all catalogue stars, distortion fit).

A solution needs at least ``min_matched`` stars (6 in a sparse field where they are
three fifths of the catalogue stars), so random dots and a wrong sky give
no solution rather than a wrong one. The same idea is behind astrometry.net (Lang et
al. 2010, AJ 139, 1782); this is a smaller, scale-aware version that needs no index
files beyond the packaged catalogues.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from aposos.orbit.jit import kernel
from aposos.station.astrometry import PlateSolution, TanSipModel, tan_deproject, tan_project

__all__ = ["BlindIndex", "blind_solve"]

log = logging.getLogger(__name__)

QUAD_MIN, QUAD_MAX = 0.2, 0.6  # quad diameter AB, in field widths
CELL = 0.25  # uniformisation cell side, in field widths
STARS_PER_CELL = 3
QUADS_PER_STAR = 4
CODE_TOLERANCE = 0.012
SCALE_TOLERANCE = 0.05

_cache: dict[tuple, BlindIndex] = {}
_cache_lock = threading.Lock()


@dataclass
class BlindIndex:
    """Quads of catalogue stars for one field width.

    ``ra_deg``, ``dec_deg``: the kept stars; ``quads``: (n, 4) star rows in code order
    A, B, C, D; ``codes``: (n, 4) codes; ``ab_deg``: the side AB of each quad.
    """

    field_deg: float
    epoch_jyear: float
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    quads: np.ndarray
    codes: np.ndarray
    ab_deg: np.ndarray
    tree: cKDTree  # of the codes
    star_tree: cKDTree  # of the stars' unit vectors

    @classmethod
    def build(cls, catalogue, field_deg: float, epoch_jyear: float) -> BlindIndex:
        """Index ``catalogue`` (a :class:`~aposos.station.stars.StarCatalogue`)."""
        t0 = time.perf_counter()
        unit = catalogue.positions_at(epoch_jyear)
        keep = _brightest_per_cell(unit, np.asarray(catalogue.mag), CELL * field_deg)
        unit = unit[keep]  # brightest first
        dmin, dmax = (math.radians(f * field_deg) for f in (QUAD_MIN, QUAD_MAX))
        pairs = cKDTree(unit).query_pairs(2.0 * math.sin(dmax / 2.0), output_type="ndarray")
        start, nbr = _neighbour_lists(pairs, unit.shape[0])
        quads = _make_quads(unit, start, nbr, math.cos(dmin), QUADS_PER_STAR)
        # the same four stars found from two ends: keep the first
        s = np.sort(quads, axis=1)
        n = np.int64(unit.shape[0])
        k1, k2 = s[:, 0] * n + s[:, 1], s[:, 2] * n + s[:, 3]
        order = np.lexsort((k2, k1))
        dup = np.zeros(order.size, bool)
        dup[1:] = (k1[order][1:] == k1[order][:-1]) & (k2[order][1:] == k2[order][:-1])
        quads = quads[np.sort(order[~dup])]
        xy = _tangent(unit, quads)
        codes, order = quad_codes(xy)
        quads = np.take_along_axis(quads, order, axis=1)
        ab = np.degrees(np.arccos(np.clip(np.sum(unit[quads[:, 0]] * unit[quads[:, 1]], 1), -1, 1)))
        ra = np.degrees(np.arctan2(unit[:, 1], unit[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(np.clip(unit[:, 2], -1.0, 1.0)))
        log.info(
            "blind index for a %.2f deg field: %d stars, %d quads in %.1f s",
            field_deg, unit.shape[0], quads.shape[0], time.perf_counter() - t0,
        )  # fmt: skip
        return cls(field_deg, epoch_jyear, ra, dec, quads, codes, ab, cKDTree(codes), cKDTree(unit))

    @classmethod
    def cached(cls, catalogue, field_deg: float, epoch_jyear: float) -> BlindIndex:
        """One index per catalogue, field width (to 1%) and year, kept in memory."""
        key = (id(catalogue), round(math.log(field_deg) / 0.01), round(epoch_jyear))
        with _cache_lock:
            if key not in _cache:
                _cache[key] = cls.build(catalogue, field_deg, round(epoch_jyear))
            return _cache[key]


def quad_codes(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of quads given as (n, 4) complex points A, B, C, D.

    In the frame where A is 0 and B is 1+1j, C and D's coordinates are the code.
    A and B are swapped when C and D lie on B's side (xc + xd > 1), C and D when
    xc > xd. Returns the codes (n, 4) and each quad's point order (n, 4).
    """
    a, b, c, d = (xy[:, i] for i in range(4))
    s = (1 + 1j) / (b - a)
    zc, zd = (c - a) * s, (d - a) * s
    swap_ab = (zc.real + zd.real) > 1.0
    zc = np.where(swap_ab, (1 + 1j) - zc, zc)
    zd = np.where(swap_ab, (1 + 1j) - zd, zd)
    swap_cd = zc.real > zd.real
    zc, zd = np.where(swap_cd, zd, zc), np.where(swap_cd, zc, zd)
    order = np.empty((xy.shape[0], 4), np.int64)
    order[:, 0] = np.where(swap_ab, 1, 0)
    order[:, 1] = np.where(swap_ab, 0, 1)
    order[:, 2] = np.where(swap_cd, 3, 2)
    order[:, 3] = np.where(swap_cd, 2, 3)
    return np.stack([zc.real, zc.imag, zd.real, zd.imag], axis=1), order


MIN_STARS = 4  # a quad's


def too_few_stars(n: int) -> PlateSolution:
    """Why a frame of ``n`` < MIN_STARS stars has no blind solution (no index needed)."""
    return PlateSolution(False, f"blind solve: only {n} stars extracted")


def blind_solve(
    solver,
    index: BlindIndex,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    shape: tuple[int, int],
    scale_arcsec: float,
    axis_px: tuple[float, float] | None = None,
    epoch_jyear: float = 2026.9,
    saturated: np.ndarray | None = None,
    n_stars: int = 40,
    max_checks: int = 8,
    min_matched: int = 8,
) -> PlateSolution:
    """Solve a frame with no pointing.

    Parameters
    ----------
    solver : the :class:`~aposos.station.astrometry.PlateSolver` that checks and refines
        each hypothesis (its catalogue should be the one ``index`` was built from).
    index : :class:`BlindIndex` for this field width.
    x, y, flux : star positions (0-based pixels) and fluxes.
    n_stars : how many of the brightest stars form quads.
    max_checks : how many hypotheses are refined at most (best first, by how many index
        stars each puts on an image star).
    min_matched : stars a solution needs (in a sparse field, 6 when they are three fifths
        of the catalogue stars there).
    """
    ny, nx = shape
    if axis_px is None:
        axis_px = ((nx - 1) / 2.0, (ny - 1) / 2.0)
    x, y, flux = (np.asarray(a, float) for a in (x, y, flux))
    if x.size < MIN_STARS:
        return too_few_stars(x.size)
    top = np.argsort(-flux)[:n_stars]
    scale_deg = scale_arcsec / 3600.0
    hyps = []
    for parity in (1, -1):
        z = parity * (x[top] - axis_px[0]) + 1j * (y[top] - axis_px[1])
        quads = _image_quads(z, index.field_deg / scale_deg)
        if quads.shape[0] == 0:
            continue
        codes, order = quad_codes(z[quads])
        quads = np.take_along_axis(quads, order, axis=1)
        for qi, hits in enumerate(index.tree.query_ball_point(codes, CODE_TOLERANCE)):
            for h in hits:
                hyp = _hypothesis(index, h, z[quads[qi]], scale_deg, parity)
                if hyp is not None:
                    hyps.append(hyp)
    if not hyps:
        return PlateSolution(
            False, f"blind solve: no quad of the {top.size} brightest stars is in the index"
        )
    pools = list(_pools(hyps, scale_deg * max(nx, ny)))
    image = cKDTree(np.column_stack([x, y])[np.argsort(-flux)[: 3 * n_stars]])
    score = [_stars_found(index, image, h, shape, axis_px) for h in pools]
    best = None
    for i in np.argsort(score, kind="stable")[::-1][:max_checks]:
        if score[i] < 4:
            break
        ra0, dec0, cd = pools[i]
        prior = TanSipModel((ra0, dec0), tuple(axis_px), cd)
        sol = solver(
            x, y, flux, shape=shape, pointing_deg=(ra0, dec0), scale_arcsec=scale_arcsec,
            axis_px=axis_px, epoch_jyear=epoch_jyear, prior=prior, saturated=saturated,
            vote=False,
        )  # fmt: skip
        if _confirmed(sol, min_matched):
            if best is None or sol.n_matched > best.n_matched:
                best = sol
            if sol.n_matched >= 2 * min_matched:
                break
    if best is None:
        return PlateSolution(
            False, f"blind solve: {len(hyps)} quad matches, none confirmed by enough stars"
        )
    return best


# ---------------------------------------------------------------------- internals
def _confirmed(sol: PlateSolution, min_matched: int) -> bool:
    """Enough stars to rule out chance: ``min_matched``, or in a sparse field (few
    catalogue stars) three fifths of them, at least 6, fitted to 0.3 px."""
    if not sol.solved or sol.rms_px >= 1.0:
        return False
    if sol.n_matched >= min_matched:
        return True
    sparse = sol.n_matched >= 0.6 * sol.n_catalogue_in_field
    return sol.n_matched >= 6 and sparse and sol.rms_px < 0.3


def _brightest_per_cell(unit: np.ndarray, mag: np.ndarray, cell_deg: float) -> np.ndarray:
    """Rows of the ``STARS_PER_CELL`` brightest stars of each sky cell, brightest first."""
    dec = np.degrees(np.arcsin(np.clip(unit[:, 2], -1.0, 1.0)))
    ra = np.degrees(np.arctan2(unit[:, 1], unit[:, 0])) % 360.0
    band = np.floor((dec + 90.0) / cell_deg).astype(np.int64)
    mid = np.radians(-90.0 + (band + 0.5) * cell_deg)
    n_ra = np.maximum(1, np.floor(360.0 * np.cos(mid) / cell_deg)).astype(np.int64)
    cell = band * 1_000_000 + np.floor(ra / 360.0 * n_ra).astype(np.int64)
    order = np.lexsort((mag, cell))
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell)
    rank = np.arange(order.size) - first
    keep = order[rank < STARS_PER_CELL]
    return keep[np.argsort(mag[keep], kind="stable")]


@kernel
def _neighbour_lists(pairs, n):
    """Neighbour lists (CSR: ``start``, ``nbr``) from pairs, each list in row order."""
    count = np.zeros(n + 1, np.int64)
    for p in range(pairs.shape[0]):
        count[pairs[p, 0] + 1] += 1
        count[pairs[p, 1] + 1] += 1
    start = np.cumsum(count)
    fill = start[:-1].copy()
    nbr = np.empty(2 * pairs.shape[0], np.int64)
    for p in range(pairs.shape[0]):
        i, j = pairs[p, 0], pairs[p, 1]
        nbr[fill[i]] = j
        fill[i] += 1
        nbr[fill[j]] = i
        fill[j] += 1
    for i in range(n):
        nbr[start[i] : start[i + 1]].sort()
    return start, nbr


@kernel
def _make_quads(unit, start, nbr, cos_dmin, per_star):
    """Quads ABCD of star rows; rows are in brightness order and so are neighbours."""
    n = unit.shape[0]
    out = np.empty((n * per_star, 4), np.int64)
    m = 0
    for a in range(n):
        made = 0
        for jb in range(start[a], start[a + 1]):
            b = nbr[jb]
            cab = unit[a, 0] * unit[b, 0] + unit[a, 1] * unit[b, 1] + unit[a, 2] * unit[b, 2]
            if cab > cos_dmin:
                continue  # closer than the smallest quad
            c = -1
            d = -1
            for jk in range(start[a], start[a + 1]):
                k = nbr[jk]
                if k == b:
                    continue
                dot = 0.0
                for t in range(3):
                    dot += (unit[a, t] - unit[k, t]) * (unit[b, t] - unit[k, t])
                if dot < 0.0:  # inside the circle on AB as diameter
                    if c < 0:
                        c = k
                    else:
                        d = k
                        break
            if d < 0:
                continue
            out[m, 0] = a
            out[m, 1] = b
            out[m, 2] = c
            out[m, 3] = d
            m += 1
            made += 1
            if made >= per_star:
                break
    return out[:m]


@kernel
def _tangent(unit, quads):
    """Gnomonic coordinates (complex, xi east + i eta north) of each quad about its AB midpoint."""
    out = np.empty(quads.shape, np.complex128)
    for i in range(quads.shape[0]):
        a, b = quads[i, 0], quads[i, 1]
        cx, cy, cz = unit[a, 0] + unit[b, 0], unit[a, 1] + unit[b, 1], unit[a, 2] + unit[b, 2]
        cn = np.sqrt(cx * cx + cy * cy + cz * cz)
        cx, cy, cz = cx / cn, cy / cn, cz / cn
        ex, ey, ez = -cy, cx, 0.0  # (0, 0, 1) x c: east, unless c is a pole
        en = np.sqrt(ex * ex + ey * ey)
        if en > 1e-9:
            ex, ey = ex / en, ey / en
        else:
            ex, ey = 0.0, 1.0
        nx, ny, nz = cy * ez - cz * ey, cz * ex - cx * ez, cx * ey - cy * ex  # c x east
        for k in range(quads.shape[1]):
            j = quads[i, k]
            px, py, pz = unit[j, 0], unit[j, 1], unit[j, 2]
            w = px * cx + py * cy + pz * cz
            out[i, k] = complex(
                (px * ex + py * ey + pz * ez) / w, (px * nx + py * ny + pz * nz) / w
            )
    return out


def _image_quads(z: np.ndarray, field_px: float) -> np.ndarray:
    """Quads of image stars (indices into ``z``, brightest first) sized like the index's."""
    lo = QUAD_MIN * field_px * (1 - SCALE_TOLERANCE)
    hi = QUAD_MAX * field_px * (1 + SCALE_TOLERANCE)
    n = z.size
    ii, jj = np.triu_indices(n, 1)
    sep = np.abs(z[jj] - z[ii])
    ok = (sep >= lo) & (sep <= hi)
    out = []
    for a, b in zip(ii[ok], jj[ok], strict=True):
        inside = np.real((z[a] - z) * np.conj(z[b] - z)) < 0
        inside[[a, b]] = False
        k = np.flatnonzero(inside)[:6]
        for u in range(k.size):
            for v in range(u + 1, k.size):
                out.append((a, b, k[u], k[v]))
    return np.array(out, np.int64).reshape(-1, 4)


def _hypothesis(index: BlindIndex, h: int, z: np.ndarray, scale_deg: float, parity: int):
    """Field centre and CD matrix implied by image quad ``z`` matching index quad ``h``."""
    ab_img = abs(z[1] - z[0]) * scale_deg
    if abs(index.ab_deg[h] / ab_img - 1.0) > SCALE_TOLERANCE:
        return None
    rows = index.quads[h]
    ra_a, dec_a = index.ra_deg[rows[0]], index.dec_deg[rows[0]]
    xi, eta, _ = tan_project(index.ra_deg[rows], index.dec_deg[rows], ra_a, dec_a)
    w = xi + 1j * eta
    zm, wm = z.mean(), w.mean()
    dz = z - zm
    a = np.sum((w - wm) * np.conj(dz)) / np.sum(np.abs(dz) ** 2)
    resid = np.abs(w - (wm + a * dz)).max() / scale_deg
    if resid > 3.0:
        return None
    b = wm - a * zm  # where the optical axis (z = 0) lands
    ra0, dec0 = tan_deproject(b.real, b.imag, ra_a, dec_a)
    cd = np.array([[a.real, -a.imag], [a.imag, a.real]]) @ np.diag([float(parity), 1.0])
    return float(ra0), float(dec0), cd, math.atan2(a.imag, a.real), parity


def _stars_found(index: BlindIndex, image: cKDTree, hyp, shape, axis_px) -> int:
    """Index stars that the hypothesis puts in the frame on an image star."""
    ra0, dec0, cd = hyp
    ny, nx = shape
    half_diag = 0.5 * math.hypot(nx, ny) * math.sqrt(abs(np.linalg.det(cd)))
    c = math.radians(ra0), math.radians(dec0)
    u = (math.cos(c[1]) * math.cos(c[0]), math.cos(c[1]) * math.sin(c[0]), math.sin(c[1]))
    rows = index.star_tree.query_ball_point(u, 2.0 * math.sin(math.radians(half_diag) / 2.0))
    if len(rows) < 4:
        return 0
    xi, eta, _ = tan_project(index.ra_deg[rows], index.dec_deg[rows], ra0, dec0)
    uv = np.linalg.solve(cd, np.vstack([xi, eta])).T + np.asarray(axis_px)
    inside = (uv[:, 0] > 0) & (uv[:, 0] < nx - 1) & (uv[:, 1] > 0) & (uv[:, 1] < ny - 1)
    uv = uv[inside]
    # a hypothesis from four stars can be several pixels off at the far edge:
    # match loosely, fit a similarity to the pairs, count again tightly
    d, k = image.query(uv, distance_upper_bound=15.0)
    ok = np.isfinite(d)
    if ok.sum() < 3:
        return int(ok.sum())
    p = uv[ok, 0] + 1j * uv[ok, 1]
    q = image.data[k[ok], 0] + 1j * image.data[k[ok], 1]
    pm, qm = p.mean(), q.mean()
    a = np.sum((q - qm) * np.conj(p - pm)) / np.sum(np.abs(p - pm) ** 2)
    w = qm + a * (uv[:, 0] + 1j * uv[:, 1] - pm)
    d, _ = image.query(np.column_stack([w.real, w.imag]), distance_upper_bound=3.0)
    return int(np.isfinite(d).sum())


def _pools(hyps, field_deg: float):
    """Hypotheses pooled by centre (a tenth of the field) and rotation (2 deg), biggest first."""
    ra = np.array([h[0] for h in hyps])
    dec = np.array([h[1] for h in hyps])
    rot = np.array([h[3] for h in hyps])
    par = np.array([h[4] for h in hyps])
    u = np.stack(
        [np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
         np.cos(np.radians(dec)) * np.sin(np.radians(ra)),
         np.sin(np.radians(dec))], axis=1,
    )  # fmt: skip
    tree = cKDTree(u)
    near = tree.query_ball_point(u, math.radians(0.1 * field_deg))
    votes = np.array(
        [
            sum(1 for j in nb if par[j] == par[i] and abs(_wrap(rot[j] - rot[i])) < 0.035)
            for i, nb in enumerate(near)
        ]
    )
    used = np.zeros(len(hyps), bool)
    for i in np.argsort(-votes, kind="stable"):
        if used[i]:
            continue
        used[near[i]] = True
        yield hyps[i][0], hyps[i][1], hyps[i][2]


def _wrap(angle):
    return (angle + math.pi) % (2 * math.pi) - math.pi
