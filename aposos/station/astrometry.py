"""Plate solving: match extracted stars to a catalogue and fit a WCS with distortion.

The solve starts from the header pointing and the nominal plate scale. Star pairs
vote for a rotation and offset: every image pair is compared with every catalogue
pair of the same separation (the scale is known to a few per cent), each agreeing
pair implies one rotation and one offset, and the true solution collects the votes
of all true pairs while false ones scatter. The best few vote peaks are verified by
counting stars that land on catalogue stars, both image parities are tried, and the
winner is refined by iterated matching and least squares. This tolerates pointing
errors of several field widths (the cone searched is the field plus
``pointing_tolerance_deg``) and any camera rotation.

The model is a gnomonic (TAN) projection with a linear CD matrix and SIP polynomial
distortion: a radial cubic term (one coefficient, about the optical axis) when few
stars are matched, the full third-order SIP polynomial when many are. Pixel
coordinates are 0-based (x = column); the astropy WCS returned uses FITS 1-based
``CRPIX`` as usual, so ``wcs.all_pix2world(x, y, 0)`` gives RA/Dec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial import cKDTree

from aposos.station.known_geometry import MAX_ZERO_POINT_SPREAD_MAG, zero_point_spread

__all__ = [
    "PlateSolution",
    "PlateSolver",
    "TanSipModel",
    "estimate_radial_k",
    "fit_model",
    "model_from_wcs",
    "refit",
    "tan_deproject",
    "tan_project",
]

FEW_STARS = 8  # a solution on fewer matched stars must fit them all within:
FEW_STARS_MAX_RESIDUAL_PX = 1.0
# a similarity fitted to 3 stars (2 degrees of freedom) shows about a third of one star's
# error in its residuals and carries about twice that error to the corners: past this the
# corners may be a pixel off (bench_small_fields seed 4242: a blend 0.69 px off, worst
# residual 0.21 px, corners 1.3 px off; the right 3-star solutions' worst 0.04 px)
THREE_STARS_MAX_RESIDUAL_PX = 0.15
# a saturated star's footprint spans several PSF widths: a catalogue star this near
# (px) merges with it (bench_small_fields seed 5151, 0.3 deg field 95: mags 5.5 and 6.0
# 8.3 px apart, one blob 3.6 and 4.7 px from them, a corner 2.3 px off in a fit of 9)
SATURATED_BLEND_PX = 10.0
SIP_TERMS = [(p, q) for n in (2, 3) for p in range(n + 1) for q in range(n + 1) if p + q == n]


def tan_project(ra_deg, dec_deg, ra0_deg: float, dec0_deg: float):
    """Gnomonic standard coordinates (xi, eta) in degrees about (ra0, dec0)."""
    ra = np.radians(ra_deg) - math.radians(ra0_deg)
    dec = np.radians(dec_deg)
    d0 = math.radians(dec0_deg)
    cosc = math.sin(d0) * np.sin(dec) + math.cos(d0) * np.cos(dec) * np.cos(ra)
    xi = np.cos(dec) * np.sin(ra) / cosc
    eta = (math.cos(d0) * np.sin(dec) - math.sin(d0) * np.cos(dec) * np.cos(ra)) / cosc
    return np.degrees(xi), np.degrees(eta), cosc


def tan_deproject(xi_deg, eta_deg, ra0_deg: float, dec0_deg: float):
    """Inverse of :func:`tan_project`: RA, Dec in degrees."""
    xi = np.radians(xi_deg)
    eta = np.radians(eta_deg)
    d0 = math.radians(dec0_deg)
    den = math.cos(d0) - eta * math.sin(d0)
    ra = math.radians(ra0_deg) + np.arctan2(xi, den)
    dec = np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, den))
    return np.degrees(ra) % 360.0, np.degrees(dec)


@dataclass
class TanSipModel:
    """TAN + CD + SIP forward model about ``crpix`` (0-based pixel of the optical axis).

    ``a`` and ``b`` hold the SIP coefficients for :data:`SIP_TERMS` (orders 2 and 3).
    """

    crval: tuple[float, float]
    crpix: tuple[float, float]
    cd: np.ndarray  # 2 x 2, degrees per pixel
    a: np.ndarray = field(default_factory=lambda: np.zeros(len(SIP_TERMS)))
    b: np.ndarray = field(default_factory=lambda: np.zeros(len(SIP_TERMS)))

    def _distort(self, u, v):
        fu = np.zeros_like(u)
        fv = np.zeros_like(v)
        for (p, q), ca, cb in zip(SIP_TERMS, self.a, self.b, strict=True):
            if ca == 0.0 and cb == 0.0:
                continue
            t = u**p * v**q
            fu = fu + ca * t
            fv = fv + cb * t
        return u + fu, v + fv

    def pixel_to_world(self, x, y):
        u = np.asarray(x, dtype=np.float64) - self.crpix[0]
        v = np.asarray(y, dtype=np.float64) - self.crpix[1]
        uu, vv = self._distort(u, v)
        xi = self.cd[0, 0] * uu + self.cd[0, 1] * vv
        eta = self.cd[1, 0] * uu + self.cd[1, 1] * vv
        return tan_deproject(xi, eta, *self.crval)

    def world_to_pixel(self, ra_deg, dec_deg):
        xi, eta, _ = tan_project(ra_deg, dec_deg, *self.crval)
        inv = np.linalg.inv(self.cd)
        uu = inv[0, 0] * xi + inv[0, 1] * eta
        vv = inv[1, 0] * xi + inv[1, 1] * eta
        u, v = uu.copy(), vv.copy()
        for _ in range(20):  # fixed point: u + f(u, v) = uu
            du, dv = self._distort(u, v)
            ru, rv = uu - du, vv - dv
            u, v = u + ru, v + rv
            if np.max(np.abs(ru), initial=0) < 1e-7 and np.max(np.abs(rv), initial=0) < 1e-7:
                break
        return u + self.crpix[0], v + self.crpix[1]

    def pixel_scale_arcsec(self) -> float:
        return math.sqrt(abs(np.linalg.det(self.cd))) * 3600.0

    def to_astropy(self, shape: tuple[int, int] | None = None):
        """An ``astropy.wcs.WCS`` (RA---TAN-SIP) equal to this model."""
        from astropy.wcs import WCS, Sip

        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        w.wcs.crval = list(self.crval)
        w.wcs.crpix = [self.crpix[0] + 1.0, self.crpix[1] + 1.0]
        w.wcs.cd = self.cd
        w.wcs.radesys = "ICRS"
        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        for (p, q), ca, cb in zip(SIP_TERMS, self.a, self.b, strict=True):
            a[p, q], b[p, q] = ca, cb
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
        w.wcs.set()
        if shape is not None:
            w.pixel_shape = (shape[1], shape[0])
        return w


def model_from_wcs(wcs, shape, axis_px) -> TanSipModel | None:
    """A header WCS (any projection astropy reads, cutout ``CRPIX`` included) as a
    TAN model about ``axis_px``: the hypothesis the stars then confirm or refute.

    Returns None when the WCS cannot place the frame's pixels on the sky.
    """
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 7), np.linspace(0, ny - 1, 7))
    gx, gy = gx.ravel(), gy.ravel()
    try:
        ra, dec = wcs.all_pix2world(gx, gy, 0)
        ra0, dec0 = wcs.all_pix2world([axis_px[0]], [axis_px[1]], 0)
    except Exception:  # astropy raises several kinds for a bad WCS
        return None
    ra0, dec0 = float(ra0[0]), float(dec0[0])
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec)) and math.isfinite(ra0)):
        return None
    if not (math.isfinite(dec0) and abs(dec0) < 90.0):
        return None
    xi, eta, cosc = tan_project(ra, dec, ra0, dec0)
    if np.any(cosc <= 0.1):
        return None
    a = np.column_stack([gx - axis_px[0], gy - axis_px[1]])
    sol, *_ = np.linalg.lstsq(a, np.column_stack([xi, eta]), rcond=None)
    cd = sol.T
    if not np.all(np.isfinite(cd)) or abs(np.linalg.det(cd)) <= 0:
        return None
    return TanSipModel((ra0 % 360.0, dec0), (float(axis_px[0]), float(axis_px[1])), cd)


@dataclass
class PlateSolution:
    """Result of one solve. ``model`` is None when ``solved`` is False."""

    solved: bool
    reason: str = ""
    model: TanSipModel | None = None
    n_matched: int = 0
    rms_px: float = float("nan")
    rms_arcsec: float = float("nan")
    image_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    catalogue_mag: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    n_catalogue_in_field: int = 0
    distortion: str = ""
    star_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # matched, pixels
    star_radec: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # catalogue

    def wcs(self, shape=None):
        return None if self.model is None else self.model.to_astropy(shape)


def _similarity(theta: float, scale: float, parity: int) -> np.ndarray:
    c, s = math.cos(theta) * scale, math.sin(theta) * scale
    return np.array([[c, -s], [s, c]]) @ np.diag([float(parity), 1.0])


class PlateSolver:
    """Solve frames against a star catalogue.

    Parameters
    ----------
    catalogue : an object with ``cone(ra_deg, dec_deg, radius_deg, *, epoch_jyear,
        mag_limit)`` returning ``(ra_deg, dec_deg, mag)`` brightest first
        (:class:`aposos.station.stars.StarCatalogue`).
    pointing_tolerance_deg : how far the true field centre may be from the header.
    scale_tolerance : relative uncertainty of the nominal plate scale.
    match_radius_px : final star-matching radius.
    min_matches : fewest matched stars for a solution.
    geometry_min_matches : fewest for a known-geometry solution (offset, rotation and
        scale fitted: three stars leave two degrees of freedom), when its false-match
        chance is small enough.
    sip_min_stars : matched stars needed for a full third-order SIP fit.
    radial_min_stars : matched stars needed to fit the radial term per frame; with
        fewer (or when ``radial_k`` is set) the radial term is held at ``radial_k``.
    radial_k : a radial distortion coefficient known for this camera (px^-2).
    stars_per_field : depth by field size: of the cone searched, only the brightest
        stars are kept, as many as ``stars_per_field`` per field area (a deep catalogue
        gives a small field enough stars and a wide one not millions).
    edge_px : stars whose centroid lies within this many pixels of the frame's edge
        take no part: a star cut by the edge has its centroid pulled inwards by up to
        a couple of pixels, which a fit on a few stars absorbs and turns into a WCS
        wrong by as much at the far corner.
    deep_stars_per_field : with the ``deep`` catalogue, the deep store's stars (Tycho-2:
        J2000.0 places without motion, 0.3-0.8 arcsec off by 2026) fill the cone only up
        to this many stars per field area; a field rich in packaged stars (Gaia, with
        motion) is solved on those alone.
    """

    def __init__(
        self,
        catalogue,
        *,
        pointing_tolerance_deg: float = 1.5,
        scale_tolerance: float = 0.03,
        match_radius_px: float = 2.5,
        min_matches: int = 4,
        geometry_min_matches: int = 3,
        sip_min_stars: int = 60,
        radial_min_stars: int = 25,
        radial_k: float | None = None,
        stars_per_field: int = 300,
        deep_stars_per_field: int = 60,
        edge_px: float = 4.0,
    ):
        self.catalogue = catalogue
        self.stars_per_field = int(stars_per_field)
        self.deep_stars_per_field = int(deep_stars_per_field)
        self.pointing_tolerance_deg = float(pointing_tolerance_deg)
        self.scale_tolerance = float(scale_tolerance)
        self.match_radius_px = float(match_radius_px)
        self.min_matches = int(min_matches)
        self.geometry_min_matches = max(3, int(geometry_min_matches))
        self.sip_min_stars = int(sip_min_stars)
        self.radial_min_stars = int(radial_min_stars)
        self.radial_k = radial_k
        self.edge_px = float(edge_px)

    # -------------------------------------------------------------- entry point
    def __call__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        flux: np.ndarray,
        *,
        shape: tuple[int, int],
        pointing_deg: tuple[float, float],
        scale_arcsec: float,
        axis_px: tuple[float, float] | None = None,
        epoch_jyear: float = 2026.9,
        prior: TanSipModel | None = None,
        saturated: np.ndarray | None = None,
        vote: bool = True,
        geometry_cd: np.ndarray | None = None,
    ) -> PlateSolution:
        """Solve one frame.

        Parameters
        ----------
        x, y, flux : star positions (0-based pixels) and fluxes (brightness order).
        shape : (rows, columns) of the frame.
        pointing_deg : approximate RA/Dec of the optical axis.
        scale_arcsec : nominal plate scale.
        axis_px : pixel of the optical axis (detector centre; for cutouts, shifted).
        prior : a model from an earlier frame or a header WCS, tried first.
        saturated : flags of saturated stars: they help to find the match (catalogues
            are mostly bright stars) but leave the final fit when 15 others remain, and
            so do those with a catalogue neighbour (``SATURATED_BLEND_PX``).
        vote : search around the pointing when there is no prior or it fails; with
            ``False`` only the prior is refined (the blind solver checks its hypotheses so).
        geometry_cd : the camera's known pixel-to-sky matrix (degrees per pixel: scale,
            rotation and parity, from the last solved frame or a header WCS). When the
            vote finds nothing, an offset search with this geometry solves fields with
            too few stars for pair voting (:mod:`aposos.station.known_geometry`).
        """
        ny, nx = shape
        if axis_px is None:
            axis_px = ((nx - 1) / 2.0, (ny - 1) / 2.0)
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        e = self.edge_px
        usable = (x >= e) & (x <= nx - 1 - e) & (y >= e) & (y <= ny - 1 - e)
        least = self.min_matches  # stars needed (fewer with a known geometry)
        if geometry_cd is not None:
            least = min(least, self.geometry_min_matches)
        if usable.sum() < least:
            return PlateSolution(
                False, f"only {usable.sum()} stars extracted (of {x.size}) clear of the edges"
            )
        order = np.argsort(-np.asarray(flux, float))
        order = order[usable[order]]
        scale_deg = scale_arcsec / 3600.0
        half_diag_deg = 0.5 * math.hypot(nx, ny) * scale_deg
        radius = half_diag_deg + (self.pointing_tolerance_deg if vote else 0.1)
        fields = max(1.0, (radius / half_diag_deg) ** 2 * math.pi / 2)  # cone / field area
        extra = {}
        if getattr(self.catalogue, "name", "") == "deep":  # store stars only where needed
            extra["fill_to"] = int(self.deep_stars_per_field * fields)
        ra_c, dec_c, mag_c = self.catalogue.cone(
            pointing_deg[0], pointing_deg[1], min(radius, 90.0), epoch_jyear=epoch_jyear, **extra
        )
        ra_c, dec_c, mag_c = (np.asarray(a, float) for a in (ra_c, dec_c, mag_c))
        n_max = int(self.stars_per_field * fields)
        ra_c, dec_c, mag_c = ra_c[:n_max], dec_c[:n_max], mag_c[:n_max]  # brightest first
        if ra_c.size < least:
            return PlateSolution(False, f"only {ra_c.size} catalogue stars within {radius:.2f} deg")
        sat = np.zeros(x.size, bool) if saturated is None else np.asarray(saturated, bool)
        ctx = _Context(x, y, order, ra_c, dec_c, mag_c, axis_px, shape, scale_deg, epoch_jyear, sat)
        ctx.usable = usable
        ctx.flux = np.asarray(flux, float)
        model = None
        if prior is not None:
            model = self._refine(ctx, prior, initial_radius=12.0)
        if model is None and not vote:
            return PlateSolution(False, "the prior did not fit")
        if model is not None:
            return self._finish(ctx, model)
        seed = self._vote(ctx, pointing_deg)
        if seed is None:
            sol = PlateSolution(
                False,
                f"no match between {x.size} stars and {ra_c.size} catalogue stars "
                f"(pointing tolerance {self.pointing_tolerance_deg} deg)",
            )
        else:
            model = self._refine(ctx, seed, initial_radius=8.0)
            if model is None:
                sol = PlateSolution(False, "match found but the fit did not converge")
            else:
                sol = self._finish(ctx, model)
        if sol.solved or geometry_cd is None:
            return sol
        known = self._known_geometry(ctx, pointing_deg, np.asarray(geometry_cd, float))
        if known.solved:
            return known
        sol.reason = f"{sol.reason}; known geometry: {known.reason}"
        return sol

    def _few_stars_doubt(self, ctx: _Context, model: TanSipModel, ii, kk) -> str:
        """Why a match of fewer than ``FEW_STARS`` is not believed, or "": its plate scale
        outside the searched tolerance (a fit drifted there), or its stars' brightnesses
        contradicting their magnitudes (bench_small_fields seed 5151, 0.3 deg field 97: 5
        stars within 0.23 px, 1,240 px off, a mag 6.7 star on a detection of 830 ADU)."""
        if ii.size >= FEW_STARS:
            return ""
        scale = math.sqrt(abs(np.linalg.det(model.cd))) / ctx.scale_deg
        if abs(scale - 1.0) > self.scale_tolerance:
            return (
                f"{ii.size} stars matched at a plate scale {100 * (scale - 1):+.1f}% off the "
                "nominal: not confirmed"
            )
        spread = zero_point_spread(ii, kk, ctx.flux, ctx.saturated, ctx.mag)
        if spread > MAX_ZERO_POINT_SPREAD_MAG:
            return (
                f"{ii.size} stars matched, their brightness {spread:.1f} mag off their "
                "catalogue magnitudes: not confirmed"
            )
        return ""

    # -------------------------------------------------------------- known geometry
    def _known_geometry(self, ctx: _Context, pointing, cd) -> PlateSolution:
        from aposos.station.known_geometry import match_known_geometry

        xi, eta, cosc = tan_project(ctx.ra, ctx.dec, *pointing)
        front = np.flatnonzero(cosc > 0.1)
        cat = np.stack([xi[front], eta[front]], axis=1) / ctx.scale_deg
        img = np.stack([ctx.x, ctx.y], axis=1)[ctx.order] - np.asarray(ctx.axis)
        flux = None if ctx.flux is None else ctx.flux[ctx.order]
        gm = match_known_geometry(
            img, cat, cd / ctx.scale_deg, shape=ctx.shape, axis=ctx.axis,
            search_px=self.pointing_tolerance_deg / ctx.scale_deg,
            img_flux=flux, img_saturated=ctx.saturated[ctx.order], cat_mag=ctx.mag[front],
            min_matches=self.geometry_min_matches,
        )  # fmt: skip
        if gm is None:
            return PlateSolution(False, "no offset explains the stars better than chance")
        ra0, dec0 = tan_deproject(gm.t[0] * ctx.scale_deg, gm.t[1] * ctx.scale_deg, *pointing)
        model = TanSipModel((float(ra0), float(dec0)), ctx.axis, gm.m * ctx.scale_deg)
        ii = ctx.order[gm.image_index]
        kk = front[gm.catalogue_index]
        if ii.size >= 12:  # enough stars for the usual fit and its clipping
            return self._finish(ctx, model)
        model, resid = _fit_similarity(ctx, ii, kk, model)
        worst = float(np.max(np.hypot(resid[:, 0], resid[:, 1])))
        if ii.size == 3 and worst > THREE_STARS_MAX_RESIDUAL_PX:
            return PlateSolution(
                False, f"3 stars matched with a residual of {worst:.2f} px: too loose to place"
            )
        distortion = f"none (known geometry, false-match chance {gm.false_alarm:.1g})"
        return _solved(ctx, model, ii, kk, resid, distortion)

    # -------------------------------------------------------------- voting
    def _vote(self, ctx: _Context, pointing) -> TanSipModel | None:
        ny, nx = ctx.shape
        xi, eta, cosc = tan_project(ctx.ra, ctx.dec, *pointing)
        front = cosc > 0.1
        cat = np.stack([xi, eta], axis=1)[front] / ctx.scale_deg  # catalogue "pixels"
        ncat_all = cat.shape[0]
        field_area = nx * ny
        cone_area = math.pi * (np.max(np.hypot(cat[:, 0], cat[:, 1])) + 1) ** 2
        n_img = min(ctx.order.size, 25)
        # keep the catalogue about twice as dense as the image list we use
        n_keep = int(min(ncat_all, max(2 * n_img * cone_area / field_area, 40)))
        cat = cat[:n_keep]  # brightest first
        all_img = np.stack([ctx.x, ctx.y], axis=1)[ctx.order] - np.asarray(ctx.axis)
        img = all_img[:n_img]
        max_sep = math.hypot(nx, ny)
        ci, cj = np.triu_indices(cat.shape[0], 1)
        dc = cat[cj] - cat[ci]
        sc = np.hypot(dc[:, 0], dc[:, 1])
        ok = sc < max_sep * (1 + self.scale_tolerance)
        ci, cj, dc, sc = ci[ok], cj[ok], dc[ok], sc[ok]
        srt = np.argsort(sc)
        ci, cj, dc, sc = ci[srt], cj[srt], dc[srt], sc[srt]
        ac = np.arctan2(dc[:, 1], dc[:, 0])
        ii, ij = np.triu_indices(n_img, 1)
        best = None
        for parity in (1, -1):
            pim = img * np.array([parity, 1.0])
            di = pim[ij] - pim[ii]
            si = np.hypot(di[:, 0], di[:, 1])
            ai = np.arctan2(di[:, 1], di[:, 0])
            tol = self.scale_tolerance * si + 2.0
            lo = np.searchsorted(sc, si - tol)
            hi = np.searchsorted(sc, si + tol)
            cnt = hi - lo
            if cnt.sum() == 0:
                continue
            rep = np.repeat(np.arange(si.size), cnt)
            offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            kc = np.repeat(lo, cnt) + offs
            # both orientations of the catalogue pair
            th = np.concatenate([ac[kc] - ai[rep], ac[kc] + np.pi - ai[rep]])
            src = np.concatenate([ii[rep], ii[rep]])
            dst = np.concatenate([ci[kc], cj[kc]])
            scl = np.concatenate([sc[kc] / si[rep]] * 2)
            c, s = np.cos(th) * scl, np.sin(th) * scl
            px, py = pim[src, 0], pim[src, 1]
            tx = cat[dst, 0] - (c * px - s * py)
            ty = cat[dst, 1] - (s * px + c * py)
            nb_t = 2.0 * math.radians(1.0) * max_sep / 2 + 8.0  # translation bin (px)
            nb_th = math.radians(2.0)
            for shift in (0.0, 0.5):  # two grids offset by half a bin: no split peaks
                key_th = np.floor((th % (2 * np.pi)) / nb_th + shift).astype(np.int64)
                key_x = np.floor(tx / nb_t + shift).astype(np.int64)
                key_y = np.floor(ty / nb_t + shift).astype(np.int64)
                keys = (key_th * 100003 + key_x) * 100019 + key_y
                _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
                for top in np.argsort(-counts)[:12]:
                    if counts[top] < 3:
                        break
                    sel = inv == top
                    t0 = float(np.angle(np.mean(np.exp(1j * th[sel]))))
                    m = _similarity(t0, float(np.median(scl[sel])), parity)
                    t = np.array([np.median(tx[sel]), np.median(ty[sel])])
                    n, m2, t2 = _verify(all_img, cat, m, t, ctx.shape, ctx.axis)
                    if best is None or n > best[0]:
                        best = (n, m2, t2)
        if best is None or best[0] < self.min_matches:
            return None
        _, m, t = best
        cd = m * ctx.scale_deg
        # pixel (axis) maps to catalogue-plane point t: that is the new reference
        ra0, dec0 = tan_deproject(t[0] * ctx.scale_deg, t[1] * ctx.scale_deg, *pointing)
        return TanSipModel((float(ra0), float(dec0)), ctx.axis, cd)

    # -------------------------------------------------------------- refinement
    def _kind(self, n: int) -> tuple[str, float | None]:
        if n >= self.sip_min_stars:
            return "sip3", None
        if n >= self.radial_min_stars and self.radial_k is None:
            return "radial", None
        return "radial", (self.radial_k or 0.0)

    def _refine(self, ctx: _Context, model: TanSipModel, initial_radius: float):
        radius = max(initial_radius, self.match_radius_px)
        for it in range(8):
            pairs = _match(ctx, model, radius)
            if pairs[0].size < self.min_matches:
                return None
            kind, k = self._kind(pairs[0].size) if it >= 2 else ("radial", self.radial_k or 0.0)
            model, resid = _fit(ctx, pairs, model, kind, k)
            if model is None:
                return None
            r = np.hypot(resid[:, 0], resid[:, 1])
            rms = math.sqrt(np.mean(r**2))
            new_radius = max(self.match_radius_px, min(radius, 4.0 * rms + 1.0))
            if it >= 3 and new_radius == radius:
                break
            radius = new_radius
        return model

    def _finish(self, ctx: _Context, model: TanSipModel) -> PlateSolution:
        img_idx, cat_idx = _match(ctx, model, self.match_radius_px)
        if img_idx.size < self.min_matches:
            return PlateSolution(False, f"only {img_idx.size} stars matched after the fit")
        unsat = ~ctx.saturated[img_idx]
        if unsat.sum() >= 15 and not unsat.all():
            img_idx, cat_idx = img_idx[unsat], cat_idx[unsat]
        # a saturated blend of two catalogue stars sits off both: it leaves a fit that
        # keeps FEW_STARS (fewer: one fit on 5 stars of bench_small_fields was then degenerate)
        blend = ctx.saturated[img_idx] & _has_neighbour(ctx, model, cat_idx, SATURATED_BLEND_PX)
        if blend.any() and (~blend).sum() >= FEW_STARS:
            img_idx, cat_idx = img_idx[~blend], cat_idx[~blend]
        kind, k = self._kind(img_idx.size)
        model, resid = _fit(ctx, (img_idx, cat_idx), model, kind, k)
        if model is None:
            return PlateSolution(False, "degenerate fit")
        # iterative clipping on a robust scale: blends and saturated stars with bled or
        # merged footprints have centroids off by a pixel or more
        # (few stars: one gentle pass, the fit needs them all)
        least = max(self.min_matches, int(math.ceil(0.6 * img_idx.size)))
        for _ in range(5 if img_idx.size >= 20 else 1):
            r = np.hypot(resid[:, 0], resid[:, 1])
            if img_idx.size >= 20:
                sigma = float(np.median(r)) / 1.1774  # per axis, from the radial median
                keep = r < max(3.5 * sigma, 0.25)
            else:
                keep = r < max(3.0 * math.sqrt(np.mean(r**2)), 0.5)
            if keep.all() or keep.sum() < least:
                break
            img_idx, cat_idx = img_idx[keep], cat_idx[keep]
            kind, k = self._kind(img_idx.size)
            refit_model, refit_resid = _fit(ctx, (img_idx, cat_idx), model, kind, k)
            if refit_model is None:
                return PlateSolution(False, "degenerate fit")
            model, resid = refit_model, refit_resid
        worst = float(np.max(np.hypot(resid[:, 0], resid[:, 1])))
        doubt = self._few_stars_doubt(ctx, model, img_idx, cat_idx)
        if doubt:
            return PlateSolution(False, doubt)
        if img_idx.size < FEW_STARS and worst > FEW_STARS_MAX_RESIDUAL_PX:
            # an affine fit to a handful of stars bends to fit chance coincidences:
            # true matches of a few stars sit well within a pixel
            return PlateSolution(
                False,
                f"{img_idx.size} stars matched with a residual of {worst:.1f} px: not confirmed",
            )
        distortion = kind if k is None else "radial (fixed k)"
        return _solved(ctx, model, img_idx, cat_idx, resid, distortion)


@dataclass
class _Context:
    x: np.ndarray
    y: np.ndarray
    order: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray
    axis: tuple[float, float]
    shape: tuple[int, int]
    scale_deg: float
    epoch: float
    saturated: np.ndarray
    flux: np.ndarray | None = None
    usable: np.ndarray | None = None  # stars clear of the frame's edges


def _verify(img, cat, m, t, shape, axis):
    """Score a hypothesis ``cat ~ m @ img + t``: catalogue stars predicted in the field
    that find an image star (among the brightest few times as many) within 3 px after
    an affine refit. Returns (count, m, t); the count is 0 when under 40% of the
    predicted stars are found.
    """
    ny, nx = shape
    try:
        minv = np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return 0, m, t
    pred = (cat - t) @ minv.T + np.asarray(axis)
    infield = (pred[:, 0] > 2) & (pred[:, 0] < nx - 3) & (pred[:, 1] > 2) & (pred[:, 1] < ny - 3)
    n_in = int(infield.sum())
    if n_in < 3:
        return 0, m, t
    cat_in = cat[infield]
    pool = img[: max(3 * n_in, 20)]
    tree = cKDTree(pool)
    n = 0
    for radius in (25.0, 8.0, 3.0):
        proj = (cat_in - t) @ np.linalg.inv(m).T
        d, k = tree.query(proj, distance_upper_bound=radius)
        ok = np.isfinite(d)
        n = int(ok.sum())
        if n < 3:
            return 0, m, t
        src = pool[k[ok]]
        a = np.column_stack([src, np.ones(n)])
        sol, *_ = np.linalg.lstsq(a, cat_in[ok], rcond=None)
        m_new, t_new = sol[:2].T, sol[2]
        sv = np.linalg.svd(m_new, compute_uv=False)
        if sv[1] < 0.9 or sv[0] > 1.1 or sv[0] / sv[1] > 1.02:
            return 0, m, t  # a pixel grid is not sheared or squashed: not a real match
        m, t = m_new, t_new
    return (n if n >= 0.4 * n_in else 0), m, t


def _match(ctx: _Context, model: TanSipModel, radius: float):
    """Mutual nearest neighbours within ``radius`` px: (image index, catalogue index)."""
    px, py = model.world_to_pixel(ctx.ra, ctx.dec)
    ny, nx = ctx.shape
    pad = radius + 2
    inside = (px > -pad) & (px < nx + pad) & (py > -pad) & (py < ny + pad)
    cidx = np.nonzero(inside)[0]
    if cidx.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cpts = np.stack([px[cidx], py[cidx]], axis=1)
    ipts = np.stack([ctx.x, ctx.y], axis=1)
    d, k = cKDTree(cpts).query(ipts, distance_upper_bound=radius)
    ok = np.isfinite(d)
    if ctx.usable is not None:
        ok &= ctx.usable
    ii = np.nonzero(ok)[0]
    kk = k[ok]
    if ii.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # keep each catalogue star's closest image star only
    order = np.lexsort((d[ok], kk))
    ii, kk = ii[order], kk[order]
    first = np.r_[True, kk[1:] != kk[:-1]]
    # and drop catalogue stars that have a second image star almost as close (blends)
    return ii[first], cidx[kk[first]]


def _has_neighbour(ctx: _Context, model: TanSipModel, cat_idx, radius_px: float):
    """Whether each catalogue star ``cat_idx`` has another within ``radius_px`` (pixels
    of ``model``) no more than 2.5 mag fainter: light enough to move a merged centroid."""
    px, py = model.world_to_pixel(ctx.ra, ctx.dec)
    ny, nx = ctx.shape
    near = np.flatnonzero((px > -radius_px) & (px < nx + radius_px) & (py > -radius_px)
                          & (py < ny + radius_px))  # fmt: skip
    tree = cKDTree(np.stack([px[near], py[near]], axis=1))
    out = np.zeros(len(cat_idx), bool)
    for n, k in enumerate(cat_idx):
        for j in tree.query_ball_point((px[k], py[k]), radius_px):
            other = near[j]
            out[n] |= other != k and ctx.mag[other] < ctx.mag[k] + 2.5
    return out


def _design(u, v, kind):
    cols = [np.ones_like(u), u, v]
    if kind == "sip3":
        cols += [u**p * v**q for p, q in SIP_TERMS]
    return np.column_stack(cols)


def _radial_coefficients(k: float):
    """SIP coefficients of u' = u (1 + k r^2), v' = v (1 + k r^2)."""
    a = np.zeros(len(SIP_TERMS))
    b = np.zeros(len(SIP_TERMS))
    a[SIP_TERMS.index((3, 0))] = a[SIP_TERMS.index((1, 2))] = k
    b[SIP_TERMS.index((2, 1))] = b[SIP_TERMS.index((0, 3))] = k
    return a, b


def radial_k(model: TanSipModel) -> float:
    return float(model.a[SIP_TERMS.index((3, 0))])


def fit_model(x, y, ra, dec, model: TanSipModel, kind: str, k_fixed: float | None = None):
    """Least squares of pixel -> standard coordinates about ``model.crpix``.

    ``kind``: ``"linear"`` (TAN + CD), ``"radial"`` (plus one cubic radial term, fitted
    unless ``k_fixed`` is given) or ``"sip3"`` (full SIP to order 3). The reference
    point moves to absorb the constant terms. Returns (model, residuals in px) or
    (None, None) for a degenerate fit.
    """
    crval = model.crval
    cx, cy = model.crpix
    u, v = x - cx, y - cy
    k_rad = radial_k(model) if k_fixed is None else float(k_fixed)
    new = None
    for _ in range(4):
        xi, eta, _ = tan_project(ra, dec, *crval)
        if kind == "radial":
            f = 1.0 + k_rad * (u * u + v * v)
            a = _design(u * f, v * f, "linear")
        else:
            a = _design(u, v, kind)
        if a.shape[0] < a.shape[1] + 2:
            return None, None
        sx, *_ = np.linalg.lstsq(a, xi, rcond=None)
        sy, *_ = np.linalg.lstsq(a, eta, rcond=None)
        cd = np.array([[sx[1], sx[2]], [sy[1], sy[2]]])
        if abs(np.linalg.det(cd)) < 1e-20:
            return None, None
        inv = np.linalg.inv(cd)
        sip_a = np.zeros(len(SIP_TERMS))
        sip_b = np.zeros(len(SIP_TERMS))
        if kind == "sip3":
            pix = inv @ np.stack([sx[3:], sy[3:]])  # world-space terms -> pixel-space SIP
            sip_a, sip_b = pix[0], pix[1]
        elif kind == "radial":
            if k_fixed is None:
                # residual in pixels ~ dk * r^2 * (u, v): solve for the increment of k
                rx = inv[0, 0] * (xi - a @ sx) + inv[0, 1] * (eta - a @ sy)
                ry = inv[1, 0] * (xi - a @ sx) + inv[1, 1] * (eta - a @ sy)
                r2 = u * u + v * v
                g = np.concatenate([u * r2, v * r2])
                den = float(g @ g)
                if den > 0:
                    k_rad += float(g @ np.concatenate([rx, ry])) / den
            sip_a, sip_b = _radial_coefficients(k_rad)
        crval = tuple(float(c) for c in tan_deproject(sx[0], sy[0], *crval))
        new = TanSipModel(crval, (cx, cy), cd, sip_a, sip_b)
    px, py = new.world_to_pixel(ra, dec)
    return new, np.stack([x - px, y - py], axis=1)


def _fit_similarity(ctx: _Context, ii, kk, model: TanSipModel):
    """Offset, rotation and scale from a few stars (the CD's shape kept): (model, residuals).

    Fitted in the tangent plane about the model's reference point, moved there twice.
    """
    u = ctx.x[ii] - model.crpix[0]
    v = ctx.y[ii] - model.crpix[1]
    base = model.cd / math.sqrt(abs(np.linalg.det(model.cd)))  # unit scale, known shape
    for _ in range(3):
        xi, eta, _ = tan_project(ctx.ra[kk], ctx.dec[kk], *model.crval)
        p = np.stack([u, v], axis=1) @ base.T
        z = p[:, 0] + 1j * p[:, 1]
        w = xi + 1j * eta
        (a, b), *_ = np.linalg.lstsq(np.column_stack([z, np.ones_like(z)]), w, rcond=None)
        rot = np.array([[a.real, -a.imag], [a.imag, a.real]])
        crval = tan_deproject(b.real, b.imag, *model.crval)
        model = TanSipModel((float(crval[0]), float(crval[1])), model.crpix, rot @ base)
    px, py = model.world_to_pixel(ctx.ra[kk], ctx.dec[kk])
    return model, np.stack([ctx.x[ii] - px, ctx.y[ii] - py], axis=1)


def _fit(ctx: _Context, pairs, model: TanSipModel, kind: str, k_fixed=None):
    ii, kk = pairs
    return fit_model(ctx.x[ii], ctx.y[ii], ctx.ra[kk], ctx.dec[kk], model, kind, k_fixed)


def estimate_radial_k(solutions, *, k_max: float) -> float | None:
    """One radial distortion coefficient shared by many frames of one camera.

    Each frame keeps its own pointing, scale and rotation (a linear fit); ``k`` is
    chosen to minimise the summed squared residuals of all frames. Returns None when
    the frames hold fewer than 20 matched stars between them.
    """
    data = [s for s in solutions if s.solved and s.n_matched >= 4]
    if sum(s.n_matched for s in data) < 20:
        return None

    def cost(k):
        total = 0.0
        for s in data:
            model, resid = fit_model(
                s.star_xy[:, 0], s.star_xy[:, 1], s.star_radec[:, 0], s.star_radec[:, 1],
                s.model, "radial", k,
            )  # fmt: skip
            total += float(np.sum(resid**2)) if model is not None else 1e9
        return total

    ks = np.linspace(-k_max, k_max, 41)
    costs = np.array([cost(k) for k in ks])
    i = int(np.clip(np.argmin(costs), 1, ks.size - 2))
    c0, c1, c2 = costs[i - 1 : i + 2]
    den = c0 - 2 * c1 + c2
    step = ks[1] - ks[0]
    k = ks[i] + (0.5 * step * (c0 - c2) / den if den > 0 else 0.0)
    return float(np.clip(k, -k_max, k_max))


def refit(solution: PlateSolution, k: float) -> PlateSolution:
    """The same matches refitted with a fixed radial distortion ``k`` (radial model)."""
    if not solution.solved or solution.distortion == "sip3":
        return solution
    xy, radec = solution.star_xy, solution.star_radec
    model, resid = fit_model(xy[:, 0], xy[:, 1], radec[:, 0], radec[:, 1], solution.model,
                             "radial", k)  # fmt: skip
    if model is None:
        return solution
    rms = float(np.sqrt(np.mean(np.sum(resid**2, axis=1)) / 2.0))
    return replace(
        solution,
        model=model,
        rms_px=rms,
        rms_arcsec=rms * model.pixel_scale_arcsec(),
        residual_px=resid,
        distortion="radial (shared k)",
    )


def _solved(ctx, model, ii, kk, resid, distortion: str) -> PlateSolution:
    """The solution from image stars ``ii`` matched to catalogue stars ``kk``."""
    rms = float(math.sqrt(np.mean(np.sum(resid**2, axis=1)) / 2.0))  # per axis
    px, py = model.world_to_pixel(ctx.ra, ctx.dec)
    ny, nx = ctx.shape
    infield = int(np.sum((px > 0) & (px < nx - 1) & (py > 0) & (py < ny - 1)))
    return PlateSolution(
        solved=True,
        model=model,
        n_matched=int(ii.size),
        rms_px=rms,
        rms_arcsec=rms * model.pixel_scale_arcsec(),
        image_index=ii,
        catalogue_mag=ctx.mag[kk],
        residual_px=resid,
        n_catalogue_in_field=infield,
        distortion=distortion,
        star_xy=np.stack([ctx.x[ii], ctx.y[ii]], axis=1),
        star_radec=np.stack([ctx.ra[kk], ctx.dec[kk]], axis=1),
    )
