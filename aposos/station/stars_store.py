"""The deep star store: reference stars fainter than the packaged catalogues.

A folder (``$APOSOS_STAR_STORE``, else ``$XDG_DATA_HOME/aposos/stars``, else
``~/.local/share/aposos/stars``) with two files:

* ``stars.npy``: one row per star, sorted by declination (so a cone reads one band):
  ``ra``, ``dec`` (degrees, ICRS at ``epoch``), ``pmra`` (times cos Dec), ``pmdec``
  (mas/yr), ``epoch`` (Julian years), ``mag`` (the broad G-like band of
  :mod:`aposos.station.stars`), ``origin`` (row of ``sources`` in ``store.json``);
* ``store.json``: what each origin is (name, file, count, band, epoch, note).

The store holds only stars the packaged catalogues (``both``: Gaia DR3 to G 10 and
Hipparcos 2) do not: a star within ``PACKAGED_MATCH_ARCSEC`` of a packaged star is
left out, so it keeps the packaged astrometry and proper motion.

Fillers:

* :func:`build_tycho2` from Debian's astrometry.net Tycho-2 index (see
  :mod:`aposos.station.stars_tycho2`): positions at J2000.0, no proper motion (the
  index has none; Tycho-2 stars move 10-30 mas/yr typically, so by 2026 a position is
  off by 0.3-0.8 arcsec, rarely several). VT is put on the G-like band by the median
  VT - G of the 465,000 stars common with Gaia (``VT_MINUS_G``, spread 0.04-0.89 mag
  from 10 % to 90 % with colour).
* :func:`import_table`: any CSV / VOTable / FITS table of RA, Dec, magnitude [, proper
  motions, epoch], e.g. a Gaia archive extract or UCAC4 rows. Imported stars replace
  store stars within ``REPLACE_ARCSEC`` (they are assumed better: Gaia, with motion).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aposos.station.stars import unit_vectors

__all__ = [
    "STORE_ENV",
    "StarStore",
    "build_tycho2",
    "default_store_dir",
    "import_table",
]

STORE_ENV = "APOSOS_STAR_STORE"
STARS_FILE = "stars.npy"
META_FILE = "store.json"
ROW = np.dtype(
    [
        ("ra", "<f8"),
        ("dec", "<f8"),
        ("pmra", "<f4"),
        ("pmdec", "<f4"),
        ("epoch", "<f4"),
        ("mag", "<f4"),
        ("origin", "u1"),
    ]
)
PACKAGED_MATCH_ARCSEC = 2.0  # a store star this close to a packaged star is that star
REPLACE_ARCSEC = 1.5  # an imported star replaces a store star this close
VT_MINUS_G = 0.35  # median Tycho VT - Gaia G over the stars common to both
STORE_ID_BASE = 1_000_000_000  # store rows get source_id -(base + row)


def default_store_dir() -> Path:
    """``$APOSOS_STAR_STORE``, else the user's data folder ``aposos/stars``."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(base) / "aposos" / "stars"


@dataclass
class StarStore:
    """Rows of the store (``ROW`` dtype, sorted by Dec) and where they came from."""

    folder: Path
    rows: np.ndarray
    sources: list[dict]

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None) -> StarStore | None:
        """The store in ``folder`` (default :func:`default_store_dir`), or None if there is none."""
        folder = Path(folder) if folder is not None else default_store_dir()
        path, meta = folder / STARS_FILE, folder / META_FILE
        if not (path.is_file() and meta.is_file()):
            return None
        try:
            rows = np.load(path, mmap_mode="r", allow_pickle=False)
            sources = json.loads(meta.read_text())["sources"]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"star store {folder} is damaged ({exc}); build it again") from None
        if rows.dtype != ROW:
            raise ValueError(f"star store {folder} has rows of another layout; build it again")
        return cls(folder, rows, sources)

    @classmethod
    def empty(cls, folder: str | os.PathLike | None = None) -> StarStore:
        folder = Path(folder) if folder is not None else default_store_dir()
        return cls(folder, np.zeros(0, ROW), [])

    def __len__(self) -> int:
        return int(self.rows.size)

    def describe(self) -> str:
        """One line: where, how many stars, from what."""
        parts = [f"{s['name']} {s['count']:,}" for s in self.sources]
        return f"{self.folder}: {len(self):,} stars ({'; '.join(parts) or 'empty'})"

    def save(self) -> None:
        """Write both files (the rows first, each through a temporary name)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        order = np.argsort(self.rows["dec"], kind="stable")
        rows = np.ascontiguousarray(self.rows[order])
        tmp = self.folder / (STARS_FILE + ".tmp.npy")
        np.save(tmp, rows, allow_pickle=False)
        os.replace(tmp, self.folder / STARS_FILE)
        counts = np.bincount(rows["origin"], minlength=len(self.sources))
        for i, s in enumerate(self.sources):
            s["count"] = int(counts[i])
        meta = self.folder / (META_FILE + ".tmp")
        meta.write_text(json.dumps({"format": 1, "sources": self.sources}, indent=1) + "\n")
        os.replace(meta, self.folder / META_FILE)
        self.rows = rows

    def add(self, rows: np.ndarray, source: dict, *, replace_arcsec: float) -> int:
        """Add rows from a new source; store rows within ``replace_arcsec`` of them go.

        A source with the same name replaces its earlier rows whole. Returns how many
        old rows were replaced.
        """
        names = [s["name"] for s in self.sources]
        old = np.asarray(self.rows)
        if source["name"] in names:
            code = names.index(source["name"])
            old = old[old["origin"] != code]
        else:
            code = len(self.sources)
            if code > 255:
                raise ValueError("the store holds 256 sources already")
            self.sources.append({})
        self.sources[code] = dict(source)
        rows = rows.copy()
        rows["origin"] = code
        replaced = 0
        if old.size and rows.size and replace_arcsec > 0:
            near = _within(  # for each old row
                unit_vectors(old["ra"], old["dec"]),
                unit_vectors(rows["ra"], rows["dec"]),
                replace_arcsec,
            )
            replaced = int(near.sum())
            old = old[~near]
        self.rows = np.concatenate([old, rows])
        return replaced


def build_tycho2(store: StarStore, index_path, packaged, *, progress=None) -> dict:
    """Fill ``store`` with the Tycho-2 stars of an index file the packaged catalogue lacks.

    ``packaged``: the packaged :class:`~aposos.station.stars.StarCatalogue` (``both``),
    or a function that loads it. Returns counts: read, kept, matched to packaged stars.
    """
    from aposos.station.stars_tycho2 import TYCHO2_EPOCH_JYEAR, read_index

    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    ra, dec, vt = read_index(index_path)
    say(f"read {ra.size:,} Tycho-2 stars from {index_path} in {time.perf_counter() - t0:.1f} s")
    unit = unit_vectors(ra, dec)
    packaged = packaged() if callable(packaged) else packaged
    matched = _within(unit, packaged.positions_at(TYCHO2_EPOCH_JYEAR), PACKAGED_MATCH_ARCSEC)
    say(f"{int(matched.sum()):,} are packaged stars (Gaia/Hipparcos, with motion where known)")
    keep = ~matched
    rows = np.zeros(int(keep.sum()), ROW)
    rows["ra"], rows["dec"] = ra[keep], dec[keep]
    rows["epoch"] = TYCHO2_EPOCH_JYEAR
    rows["mag"] = vt[keep] - VT_MINUS_G
    source = {
        "name": "tycho2",
        "file": str(index_path),
        "band": f"Tycho VT - {VT_MINUS_G} (G-like)",
        "epoch": "J2000.0 (Tycho-2 mean positions), no proper motion",
        "note": "Tycho-2 (Hog et al. 2000) via Debian's astrometry.net index; BSD-2-Clause",
    }
    store.add(rows, source, replace_arcsec=0.0)
    return {"read": int(ra.size), "kept": int(rows.size), "packaged": int(matched.sum())}


# ----------------------------------------------------------------- table import
RA_NAMES = ("ra", "ra_deg", "radeg", "raj2000", "ra_icrs", "_raj2000", "ra_j2000")
DEC_NAMES = (
    "dec",
    "dec_deg",
    "dedeg",
    "decdeg",
    "dej2000",
    "de_icrs",
    "_dej2000",
    "dec_j2000",
    "de",
)
MAG_NAMES = ("phot_g_mean_mag", "gmag", "g", "mag", "magnitude", "vmag", "v", "vtmag", "f.mag",
             "f_mag", "fmag", "rmag", "r")  # fmt: skip
PMRA_NAMES = ("pmra", "pmra_masyr", "pmrac", "pm_ra", "pmracosdec")
PMDEC_NAMES = ("pmdec", "pmde", "pmdec_masyr", "pm_dec", "pmd")
EPOCH_NAMES = ("ref_epoch", "epoch", "epoch_jyear")


def import_table(
    store: StarStore,
    path,
    packaged,
    *,
    name: str | None = None,
    epoch_jyear: float | None = None,
    mag_offset: float = 0.0,
    progress=None,
) -> dict:
    """Add the stars of a CSV / VOTable / FITS table to ``store``.

    Columns are found by name (case-insensitive): RA and Dec in degrees, a magnitude,
    optionally proper motions (mas/yr, RA times cos Dec) and an epoch column; without
    an epoch column ``epoch_jyear`` must be given. Stars of the packaged catalogue
    (``packaged``, or a function that loads it once the file is found usable; within
    ``PACKAGED_MATCH_ARCSEC``) are left out. Raises ``ValueError`` (one line)
    for a file that cannot be used.
    """
    say = progress or (lambda msg: None)
    path = Path(path)
    table = _read_table(path)
    say(f"read {len(table):,} rows from {path.name}")
    cols = {c.lower(): c for c in table.colnames}

    def column(names, what, required=True):
        for n in names:
            if n in cols:
                return _float_column(table[cols[n]], path, cols[n])
        if required:
            raise ValueError(
                f"{path}: no {what} column (looked for {', '.join(names[:6])}; "
                f"the file has {', '.join(table.colnames[:12])})"
            )
        return None

    ra = column(RA_NAMES, "RA")
    dec = column(DEC_NAMES, "Dec")
    mag = column(MAG_NAMES, "magnitude")
    pmra = column(PMRA_NAMES, "pmra", required=False)
    pmdec = column(PMDEC_NAMES, "pmdec", required=False)
    epoch = column(EPOCH_NAMES, "epoch", required=False)
    if epoch is None:
        if epoch_jyear is None:
            raise ValueError(f"{path}: no epoch column; give the positions' epoch with --epoch")
        epoch = np.full(ra.size, float(epoch_jyear))
    if (pmra is None) != (pmdec is None):
        raise ValueError(f"{path}: one proper-motion column without the other")
    good = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(mag) & np.isfinite(epoch)
    good &= (dec >= -90.0) & (dec <= 90.0)
    if not good.any():
        raise ValueError(f"{path}: no row has a finite RA, Dec (within +-90) and magnitude")
    if np.any((epoch[good] < 1900) | (epoch[good] > 2100)):
        raise ValueError(f"{path}: epochs outside 1900-2100 (Julian years expected)")
    rows = np.zeros(int(good.sum()), ROW)
    rows["ra"] = ra[good] % 360.0
    rows["dec"] = dec[good]
    rows["mag"] = mag[good] + mag_offset
    rows["epoch"] = epoch[good]
    if pmra is not None:
        rows["pmra"] = np.nan_to_num(pmra[good])
        rows["pmdec"] = np.nan_to_num(pmdec[good])
    dropped_bad = int((~good).sum())
    # positions at the packaged epoch for the match (motion applied when given)
    from aposos.station.stars import GAIA_EPOCH_JYEAR, StarCatalogue

    mine = StarCatalogue("import", np.zeros(rows.size), rows["ra"], rows["dec"], rows["pmra"],
                         rows["pmdec"], rows["epoch"], rows["mag"], complete_mag=0.0)  # fmt: skip
    packaged = packaged() if callable(packaged) else packaged
    say(f"matching {rows.size:,} stars with the packaged catalogue")
    packaged_hit = _within(
        mine.positions_at(GAIA_EPOCH_JYEAR),
        packaged.positions_at(GAIA_EPOCH_JYEAR),
        PACKAGED_MATCH_ARCSEC,
    )
    rows = rows[~packaged_hit]
    source = {
        "name": name or path.stem,
        "file": str(path.resolve()),
        "band": f"column {_first(MAG_NAMES, cols)}" + (f" {mag_offset:+g}" if mag_offset else ""),
        "epoch": "per row" if _first(EPOCH_NAMES, cols) else f"J{epoch_jyear}",
        "note": "imported" + (" with proper motions" if pmra is not None else ", no motion"),
    }
    replaced = store.add(rows, source, replace_arcsec=REPLACE_ARCSEC)
    return {
        "read": len(table),
        "unusable": dropped_bad,
        "packaged": int(packaged_hit.sum()),
        "added": int(rows.size),
        "replaced": replaced,
    }


def _first(names, cols) -> str | None:
    return next((cols[n] for n in names if n in cols), None)


def _read_table(path: Path):
    from astropy.table import Table

    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    suffix = "".join(path.suffixes[-2:]).lower()
    fmt = None
    if suffix.endswith((".csv", ".csv.gz")):
        fmt = "ascii.csv"
    elif suffix.endswith((".vot", ".xml", ".votable", ".vot.gz")):
        fmt = "votable"
    elif suffix.endswith((".fits", ".fit", ".fits.gz")):
        fmt = "fits"
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable CSV / VOTable / FITS table ({first})") from None
    if len(table) == 0:
        raise ValueError(f"{path}: the table has no rows")
    return table


def _float_column(col, path: Path, name: str) -> np.ndarray:
    try:
        data = np.ma.filled(np.ma.asarray(col).astype(np.float64), np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column {name} is not numeric") from None
    return np.asarray(data, dtype=np.float64).ravel()


def _within(points: np.ndarray, others: np.ndarray, arcsec: float) -> np.ndarray:
    """For each of ``points``, whether one of ``others`` lies within ``arcsec``."""
    from scipy.spatial import cKDTree

    if points.shape[0] == 0 or others.shape[0] == 0:
        return np.zeros(points.shape[0], bool)
    chord = 2.0 * math.sin(math.radians(arcsec / 3600.0) / 2.0)
    dist, _ = cKDTree(others).query(points, k=1, distance_upper_bound=chord)
    return np.isfinite(dist)
