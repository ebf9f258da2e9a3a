"""Sky-side models of the simulator: the camera's projection, photometry, faint stars.

Projection (the truth the reduction is scored against): a gnomonic (TAN) projection
about ``crval``, a linear map ``cd`` (degrees of standard coordinates per pixel) and a
radial distortion about ``crpix``:

    (xi, eta) = TAN(ra, dec; crval)            standard coordinates, degrees
    u = cd^-1 (xi, eta)                         undistorted pixel offset
    (x, y) = crpix + u * (1 + k1 * |u|**2)      pixel, 0-based (x column, y row)

Photometry: a source of magnitude ``m`` (the catalogue band, see
:mod:`aposos.station.stars`) gives ``F0 * 10**(-0.4 (m + k X))`` electrons per second,
with ``F0 = PHOTON_FLUX_MAG0 * collecting area * throughput``, ``k`` the extinction
per airmass and ``X`` the airmass (Kasten & Young 1989).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aposos.station.stars import StarCatalogue, is_store_star

__all__ = [
    "TanProjection",
    "airmass",
    "diffuse_sphere_phase",
    "offset_pointing",
    "standard_magnitude",
    "FaintStars",
    "sky_catalogue",
]

# photons s^-1 cm^-2 from a magnitude-0 star across a broad unfiltered band; from the
# Gaia G zero point (25.69 mag for 1 e-/s through 0.7 m^2 at ~0.7 efficiency)
PHOTON_FLUX_MAG0 = 4.0e6
# slope of cumulative star counts, d log10 N(<m) / dm: about 0.33 for V ~ 10-14 and
# flatter beyond (Bahcall & Soneira-like counts at mid and high galactic latitude)
STAR_COUNT_SLOPE = 0.33
STAR_COUNT_SLOPE_FAINT = 0.22
STAR_COUNT_KNEE_MAG = 14.0
SIDEREAL_RATE_DEG_S = 360.98564736629 / 86400.0


@dataclass(frozen=True)
class TanProjection:
    """Gnomonic projection with a linear map and a radial distortion (see module notes).

    Parameters
    ----------
    crval_ra_deg, crval_dec_deg : tangent point (the true optical axis).
    crpix : tangent point in pixels (x, y), 0-based.
    cd : 2x2 matrix, degrees per pixel: ``(xi, eta) = cd @ (u_x, u_y)``.
    k1_per_px2 : radial distortion coefficient (pixels^-2).
    """

    crval_ra_deg: float
    crval_dec_deg: float
    crpix: tuple[float, float]
    cd: tuple[tuple[float, float], tuple[float, float]]
    k1_per_px2: float = 0.0

    def with_crval(self, ra_deg: float, dec_deg: float) -> TanProjection:
        return TanProjection(ra_deg, dec_deg, self.crpix, self.cd, self.k1_per_px2)

    def world_to_pixel(self, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` of sky positions; NaN for points 90 degrees or more away."""
        xi, eta = gnomonic(ra_deg, dec_deg, self.crval_ra_deg, self.crval_dec_deg)
        inv = np.linalg.inv(np.array(self.cd))
        ux = inv[0, 0] * xi + inv[0, 1] * eta
        uy = inv[1, 0] * xi + inv[1, 1] * eta
        f = 1.0 + self.k1_per_px2 * (ux * ux + uy * uy)
        return self.crpix[0] + ux * f, self.crpix[1] + uy * f

    def pixel_to_world(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Sky position (ra_deg, dec_deg) of pixels (inverse of :meth:`world_to_pixel`)."""
        dx = np.asarray(x, dtype=np.float64) - self.crpix[0]
        dy = np.asarray(y, dtype=np.float64) - self.crpix[1]
        rd = np.hypot(dx, dy)
        ru = rd.copy()
        for _ in range(8):  # Newton on ru (1 + k1 ru^2) = rd
            g = ru * (1.0 + self.k1_per_px2 * ru * ru) - rd
            ru = ru - g / (1.0 + 3.0 * self.k1_per_px2 * ru * ru)
        scale = np.where(rd > 0, ru / np.where(rd > 0, rd, 1.0), 1.0)
        ux, uy = dx * scale, dy * scale
        cd = np.array(self.cd)
        xi = cd[0, 0] * ux + cd[0, 1] * uy
        eta = cd[1, 0] * ux + cd[1, 1] * uy
        return inverse_gnomonic(xi, eta, self.crval_ra_deg, self.crval_dec_deg)

    def to_dict(self) -> dict:
        return {
            "crval_deg": [float(self.crval_ra_deg), float(self.crval_dec_deg)],
            "crpix": [float(self.crpix[0]), float(self.crpix[1])],
            "cd_deg_per_px": [[float(v) for v in row] for row in self.cd],
            "k1_per_px2": float(self.k1_per_px2),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TanProjection:
        cd = d["cd_deg_per_px"]
        return cls(
            float(d["crval_deg"][0]),
            float(d["crval_deg"][1]),
            (float(d["crpix"][0]), float(d["crpix"][1])),
            ((float(cd[0][0]), float(cd[0][1])), (float(cd[1][0]), float(cd[1][1]))),
            float(d.get("k1_per_px2", 0.0)),
        )


def cd_matrix(scale_deg: float, rotation_deg: float) -> tuple[tuple[float, float], ...]:
    """CD matrix of a sky image (east left when north is up) rotated by ``rotation_deg``."""
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    return ((-scale_deg * c, scale_deg * s), (scale_deg * s, scale_deg * c))


def gnomonic(ra_deg, dec_deg, ra0_deg, dec0_deg) -> tuple[np.ndarray, np.ndarray]:
    """Standard coordinates (xi east, eta north; degrees) about (ra0, dec0); NaN behind."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    ra0 = np.radians(np.asarray(ra0_deg, dtype=np.float64))
    dec0 = np.radians(np.asarray(dec0_deg, dtype=np.float64))
    dra = ra - ra0
    cd, sd = np.cos(dec), np.sin(dec)
    cd0, sd0 = np.cos(dec0), np.sin(dec0)
    cosc = sd0 * sd + cd0 * cd * np.cos(dra)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(cosc > 1e-9, 1.0 / cosc, np.nan)
    xi = cd * np.sin(dra) * inv
    eta = (cd0 * sd - sd0 * cd * np.cos(dra)) * inv
    return np.degrees(xi), np.degrees(eta)


def inverse_gnomonic(xi_deg, eta_deg, ra0_deg, dec0_deg) -> tuple[np.ndarray, np.ndarray]:
    """Sky position of standard coordinates (degrees) about (ra0, dec0)."""
    xi = np.radians(np.asarray(xi_deg, dtype=np.float64))
    eta = np.radians(np.asarray(eta_deg, dtype=np.float64))
    ra0 = np.radians(np.asarray(ra0_deg, dtype=np.float64))
    dec0 = np.radians(np.asarray(dec0_deg, dtype=np.float64))
    cd0, sd0 = np.cos(dec0), np.sin(dec0)
    denom = cd0 - eta * sd0
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(sd0 + eta * cd0, np.hypot(xi, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def offset_pointing(ra_deg, dec_deg, xi_deg, eta_deg) -> tuple[np.ndarray, np.ndarray]:
    """The sky position at standard coordinates (xi, eta) about (ra, dec)."""
    return inverse_gnomonic(xi_deg, eta_deg, ra_deg, dec_deg)


def separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular separation (degrees), haversine form."""
    ra1, dec1, ra2, dec2 = (
        np.radians(np.asarray(a, dtype=np.float64)) for a in (ra1, dec1, ra2, dec2)
    )
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def airmass(elevation_deg) -> np.ndarray:
    """Relative air mass at a (true) elevation, Kasten & Young (1989); inf below -1 deg."""
    h = np.asarray(elevation_deg, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = 1.0 / (
            np.sin(np.radians(h)) + 0.50572 * np.power(np.maximum(h, -6.0) + 6.07995, -1.6364)
        )
    return np.where(h > -1.0, x, np.inf)


def diffuse_sphere_phase(phase_deg) -> np.ndarray:
    """Diffuse (Lambertian) sphere phase law, 1 at 90 degrees, pi at full phase."""
    p = np.radians(np.clip(np.asarray(phase_deg, dtype=np.float64), 0.0, 180.0))
    return (np.pi - p) * np.cos(p) + np.sin(p)


def standard_magnitude(norad_id, orbit_class) -> np.ndarray:
    """Illustrative standard magnitude (1000 km range, 90 deg phase) of each object.

    Drawn reproducibly from the catalogue number, uniform in class-dependent ranges:
    LEO 4-10 (large platforms to cubesats), MEO 3-6, GEO 2-6, HEO 3-7 (real objects
    span more; this is a simulator).
    """
    ids = np.asarray(norad_id, dtype=np.uint64)
    u = ((ids * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    ranges = {"LEO": (4.0, 10.0), "MEO": (3.0, 6.0), "GEO": (2.0, 6.0), "HEO": (3.0, 7.0)}
    lo = np.array([ranges.get(str(c), ranges["LEO"])[0] for c in np.asarray(orbit_class)])
    hi = np.array([ranges.get(str(c), ranges["LEO"])[1] for c in np.asarray(orbit_class)])
    return lo + (hi - lo) * u


# per-axis proper motion given to store stars that have none (Tycho-2 from the index):
# typical of Tycho-2 stars of V 10-12 (median total motion about 14 mas/yr)
STORE_PM_SIGMA_MASYR = 12.0
_sky_cache: dict = {}


def sky_catalogue(stars: StarCatalogue) -> StarCatalogue:
    """The stars a simulated sky shows.

    The packaged ``both`` grows into ``deep`` when the deep star store is installed, so
    a frame never lacks a star the solver looks for. The store's stars without proper
    motion (Tycho-2's J2000.0 places) get one drawn for each star (seeded by its row,
    ``STORE_PM_SIGMA_MASYR`` per axis): the real sky has moved by 2026 while the
    catalogue the solver reads has not.
    """
    if stars.name == "both":
        stars = StarCatalogue.load("auto")
    if stars.name != "deep":
        return stars
    key = id(stars)
    if key not in _sky_cache:
        _sky_cache.clear()
        still = is_store_star(stars.source_id) & (stars.pmra_masyr == 0) & (stars.pmdec_masyr == 0)
        rng = np.random.default_rng(20260)
        pm = rng.normal(0.0, STORE_PM_SIGMA_MASYR, (stars.source_id.size, 2))
        moved = StarCatalogue(
            "deep", stars.source_id, stars.ra_deg, stars.dec_deg,
            np.where(still, pm[:, 0], stars.pmra_masyr), np.where(still, pm[:, 1], stars.pmdec_masyr),
            stars.epoch_jyear, stars.mag, stars.complete_mag,
        )  # fmt: skip
        moved.store_description = getattr(stars, "store_description", "")
        _sky_cache[key] = (stars, moved)  # the source kept alive: its id stays its own
    return _sky_cache[key][1]


class FaintStars:
    """Stars fainter than the catalogue, fixed on the sky, as a real frame shows them.

    The sky is cut into tiles (1-degree declination bands, about 1-degree RA steps);
    each tile's stars are drawn from a generator seeded by (seed, tile), so the same
    faint stars appear in every frame of a field. The density follows the catalogue's
    own count of complete stars within 3 degrees of the tile (so it follows galactic
    latitude), extended to fainter magnitudes with a broken power law (slope 0.33 to
    magnitude 14, 0.22 beyond).

    With a ``deep`` catalogue (the deep star store's real stars are in it) each tile
    keeps its drawn count but gives up one synthetic star brighter than the store's
    faintest star there for each real store star fainter than ``bright_mag``: real
    stars take the place of drawn ones, and the counts (crowding) stay as drawn where
    the store is sparser than the model.
    """

    COUNT_RADIUS_DEG = 3.0

    def __init__(self, catalogue: StarCatalogue, faint_limit_mag: float, seed: int = 0):
        self.catalogue = catalogue
        self.bright_mag = catalogue.complete_mag
        self.faint_limit_mag = float(faint_limit_mag)
        self.seed = int(seed)
        self._tiles: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def relative_counts(self, mag):
        """N(<mag) / N(<bright_mag): a broken power law (see STAR_COUNT_*)."""
        m = np.asarray(mag, dtype=np.float64)
        knee = max(STAR_COUNT_KNEE_MAG, self.bright_mag)
        steep = STAR_COUNT_SLOPE * (np.minimum(m, knee) - self.bright_mag)
        flat = STAR_COUNT_SLOPE_FAINT * np.maximum(m - knee, 0.0)
        return 10 ** (steep + flat)

    def magnitude_of_counts(self, ratio):
        """Inverse of :meth:`relative_counts`."""
        log_r = np.log10(np.asarray(ratio, dtype=np.float64))
        knee = max(STAR_COUNT_KNEE_MAG, self.bright_mag)
        at_knee = STAR_COUNT_SLOPE * (knee - self.bright_mag)
        return np.where(
            log_r <= at_knee,
            self.bright_mag + log_r / STAR_COUNT_SLOPE,
            knee + (log_r - at_knee) / STAR_COUNT_SLOPE_FAINT,
        )

    @staticmethod
    def _n_ra(band: int) -> int:
        dec_mid = band - 89.5
        return max(1, int(round(360.0 * math.cos(math.radians(dec_mid)))))

    def _tile(self, band: int, i: int):
        key = (band, i)
        if key in self._tiles:
            return self._tiles[key]
        n_ra = self._n_ra(band)
        ra_lo, ra_hi = 360.0 * i / n_ra, 360.0 * (i + 1) / n_ra
        dec_lo, dec_hi = band - 90.0, band - 89.0
        area = (
            math.radians(ra_hi - ra_lo)
            * (math.sin(math.radians(dec_hi)) - math.sin(math.radians(dec_lo)))
            * (180.0 / math.pi) ** 2
        )
        idx, _ = self.catalogue.cone_index(
            (ra_lo + ra_hi) / 2,
            (dec_lo + dec_hi) / 2,
            self.COUNT_RADIUS_DEG,
            epoch_jyear=2016.0,
            mag_limit=self.bright_mag,
        )
        cap = (
            2 * math.pi * (1 - math.cos(math.radians(self.COUNT_RADIUS_DEG))) * (180 / math.pi) ** 2
        )
        store = is_store_star(self.catalogue.source_id[idx])
        n_bright = int(np.sum(~store))  # the packaged stars set the density
        density = max(n_bright, 1) / cap  # stars per deg^2 brighter than bright_mag
        grow = self.relative_counts(self.faint_limit_mag) - 1.0
        rng = np.random.default_rng([self.seed, 7919, band, i])
        n = rng.poisson(density * area * grow)
        mag = self.magnitude_of_counts(1.0 + rng.random(n) * grow)
        ra = rng.uniform(ra_lo, ra_hi, n)
        sin_dec = rng.uniform(math.sin(math.radians(dec_lo)), math.sin(math.radians(dec_hi)), n)
        dec = np.degrees(np.arcsin(sin_dec))
        if self.catalogue.name == "deep":
            keep = self._make_room(rng, mag, ra_lo, ra_hi, dec_lo, dec_hi)
            ra, dec, mag = ra[keep], dec[keep], mag[keep]
        tile = (ra, dec, mag)
        self._tiles[key] = tile
        return tile

    def _make_room(self, rng, mag, ra_lo, ra_hi, dec_lo, dec_hi) -> np.ndarray:
        """Synthetic stars to keep in a tile once its real store stars are in place."""
        widest = math.cos(math.radians(min(abs(dec_lo), abs(dec_hi))))
        reach = 0.5 * math.hypot(dec_hi - dec_lo, (ra_hi - ra_lo) * widest) + 0.5
        idx, _ = self.catalogue.cone_index(
            (ra_lo + ra_hi) / 2, (dec_lo + dec_hi) / 2, min(reach, 180.0), epoch_jyear=2016.0
        )
        cat = self.catalogue
        ra, dec, m = cat.ra_deg[idx], cat.dec_deg[idx], cat.mag[idx]
        real = (
            is_store_star(cat.source_id[idx])
            & (m > self.bright_mag)
            & (ra >= ra_lo) & (ra < ra_hi) & (dec >= dec_lo) & (dec < dec_hi)
        )  # fmt: skip
        keep = np.ones(mag.size, bool)
        if not real.any():
            return keep
        covered = np.flatnonzero(mag <= float(m[real].max()))
        k = min(int(real.sum()), covered.size)
        keep[rng.choice(covered, size=k, replace=False)] = False
        return keep

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, mag_limit: float):
        """Synthetic stars (ra_deg, dec_deg, mag) within the cone, brighter than ``mag_limit``."""
        parts = []
        dec_lo = max(-90.0, dec_deg - radius_deg)
        dec_hi = min(90.0, dec_deg + radius_deg)
        for band in range(
            int(math.floor(dec_lo + 90.0)), min(179, int(math.floor(dec_hi + 90.0))) + 1
        ):
            n_ra = self._n_ra(band)
            band_dec = max(abs(band - 90.0), abs(band - 89.0))
            cosd = math.cos(math.radians(min(89.9, band_dec)))
            if dec_hi >= 89.0 or dec_lo <= -89.0 or radius_deg / cosd >= 180.0:
                tiles = range(n_ra)
            else:
                half = (
                    math.degrees(math.asin(min(1.0, math.sin(math.radians(radius_deg)) / cosd)))
                    + 360.0 / n_ra
                )
                lo = int(math.floor((ra_deg - half) / 360.0 * n_ra))
                hi = int(math.floor((ra_deg + half) / 360.0 * n_ra))
                tiles = sorted({t % n_ra for t in range(lo, hi + 1)})
            for i in tiles:
                parts.append(self._tile(band, i))
        if not parts:
            return np.empty(0), np.empty(0), np.empty(0)
        ra = np.concatenate([p[0] for p in parts])
        dec = np.concatenate([p[1] for p in parts])
        mag = np.concatenate([p[2] for p in parts])
        keep = (mag <= mag_limit) & (separation_deg(ra, dec, ra_deg, dec_deg) <= radius_deg)
        return ra[keep], dec[keep], mag[keep]
