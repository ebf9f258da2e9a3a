"""Element-set catalogues: TLE / 3LE and OMM (JSON, XML, CSV) into a structure of arrays.

>>> cat = Catalogue.from_tle("active.3le")                  # doctest: +SKIP
>>> e, r, v = cat.propagate(jd, fr)                         # doctest: +SKIP
>>> ra, dec, rng = cat.radec(Site(33.67, 51.32, 3600), jd, fr)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aposos.model import Site
from aposos.orbit import sgp4 as _sgp4
from aposos.orbit.omm import read_omm_records
from aposos.orbit.propagation import propagate_packed
from aposos.orbit.tle import TleRecord, iter_tle_records
from aposos.timeutil import as_jd_fr

__all__ = ["Catalogue", "CatalogueError", "CatalogueProblem"]

log = logging.getLogger(__name__)

ORBIT_CLASSES = ("LEO", "MEO", "GEO", "HEO")
JD_1949_DEC_31 = 2433281.5  # sgp4init counts epoch days from 1949 December 31 00:00 UT


class CatalogueError(ValueError):
    """A catalogue record that cannot be read (raised in strict mode)."""


@dataclass(frozen=True)
class CatalogueProblem:
    """A record that was skipped or replaced, and why."""

    source: str
    location: str  # "line 12" or "record 3"
    reason: str

    def __str__(self) -> str:
        return f"{self.source}, {self.location}: {self.reason}"


def classify_orbits(mean_motion_rev_per_day, eccentricity) -> np.ndarray:
    """LEO (period under 225 min), GEO (about one revolution a day), HEO (e >= 0.25), else MEO."""
    n = np.asarray(mean_motion_rev_per_day, dtype=float)
    e = np.asarray(eccentricity, dtype=float)
    out = np.full(n.shape, "MEO", dtype="U3")
    out[(n >= 6.4)] = "LEO"
    out[(n >= 0.9) & (n <= 1.1)] = "GEO"
    out[e >= 0.25] = "HEO"
    return out


class Catalogue:
    """Element sets as a structure of numpy arrays, ready for SGP4.

    Build with :meth:`from_tle`, :meth:`from_omm` or :meth:`load_zarr`; apply with
    :meth:`propagate` and :meth:`radec`.

    Attributes (one entry per object): ``norad_id``, ``name``, ``intl_designator``,
    ``epoch_jd`` + ``epoch_fr`` (UTC Julian date split), ``inclination_deg``,
    ``raan_deg``, ``eccentricity``, ``arg_perigee_deg``, ``mean_anomaly_deg``,
    ``mean_motion_rev_per_day`` (Kozai), ``bstar``, ``orbit_class``; ``params`` holds
    the SGP4 constants (:data:`aposos.orbit.sgp4.PARAM_NAMES`). ``problems`` lists the
    records that were skipped or replaced.
    """

    _ARRAYS = (
        "norad_id", "epoch_jd", "epoch_fr", "inclination_deg", "raan_deg", "eccentricity",
        "arg_perigee_deg", "mean_anomaly_deg", "mean_motion_rev_per_day", "bstar",
        "ndot", "nddot", "params",
    )  # fmt: skip

    def __init__(self, *, norad_id, name, intl_designator, params, elements, problems=()):
        self.norad_id = np.asarray(norad_id, dtype=np.int64)
        self.name = np.asarray(name, dtype=str)
        self.intl_designator = np.asarray(intl_designator, dtype=str)
        self.params = np.ascontiguousarray(params, dtype=np.float64)
        for key, value in elements.items():
            setattr(self, key, np.asarray(value, dtype=np.float64))
        self.problems: list[CatalogueProblem] = list(problems)
        self.orbit_class = classify_orbits(self.mean_motion_rev_per_day, self.eccentricity)
        self._index = None
        self._plan = None

    # ----------------------------------------------------------------- building
    @classmethod
    def _from_satrecs(cls, satrecs, names, designators, problems, source):
        """Keep the newest epoch per catalogue number; report replaced duplicates."""
        problems = list(problems)
        keep: dict[int, int] = {}
        for k, s in enumerate(satrecs):
            prev = keep.get(s.satnum)
            if prev is None:
                keep[s.satnum] = k
                continue
            older, newer = sorted(
                (prev, k), key=lambda j: (satrecs[j].jdsatepoch + satrecs[j].jdsatepochF, j)
            )
            keep[s.satnum] = newer
            problems.append(
                CatalogueProblem(
                    source,
                    f"object {s.satnum}",
                    "duplicate catalogue number: kept the newest epoch, dropped the older",
                )
            )
        order = sorted(keep.values())
        sats = [satrecs[k] for k in order]
        rad = np.rad2deg
        elements = dict(
            epoch_jd=[s.jdsatepoch for s in sats],
            epoch_fr=[s.jdsatepochF for s in sats],
            inclination_deg=[rad(s.inclo) for s in sats],
            raan_deg=[rad(s.nodeo) for s in sats],
            eccentricity=[s.ecco for s in sats],
            arg_perigee_deg=[rad(s.argpo) for s in sats],
            mean_anomaly_deg=[rad(s.mo) for s in sats],
            mean_motion_rev_per_day=[s.no_kozai * 1440.0 / (2 * np.pi) for s in sats],
            bstar=[s.bstar for s in sats],
            ndot=[s.ndot for s in sats],
            nddot=[s.nddot for s in sats],
        )
        cat = cls(
            norad_id=[s.satnum for s in sats],
            name=[names[k] for k in order],
            intl_designator=[designators[k] for k in order],
            params=_sgp4.pack_satrecs(sats) if sats else np.zeros((0, _sgp4.N_PARAMS)),
            elements=elements,
            problems=problems,
        )
        if problems:
            log.warning("%s: %d record(s) skipped or replaced", source, len(problems))
        return cat

    @classmethod
    def from_tle(cls, source: str | os.PathLike | Iterable[str], *, strict: bool = False):
        """Read 2-line or 3-line (named) element sets; Alpha-5 numbers are accepted.

        ``source`` is a path or an iterable of lines. Bad records (checksum, truncated
        line, bad field) are skipped and listed in ``problems`` with their line number;
        with ``strict=True`` the first one raises :class:`CatalogueError`.
        """
        label, lines = _lines_of(source)
        satrecs, names, designators, problems = [], [], [], []
        for rec in iter_tle_records(lines):
            if isinstance(rec, TleRecord):
                satrecs.append(rec.satrec)
                names.append(rec.name)
                designators.append(rec.intl_designator)
            else:
                line_no, reason = rec
                problem = CatalogueProblem(label, f"line {line_no}", reason)
                if strict:
                    raise CatalogueError(str(problem))
                problems.append(problem)
        return cls._from_satrecs(satrecs, names, designators, problems, label)

    @classmethod
    def from_omm(cls, path: str | os.PathLike, *, strict: bool = False):
        """Read OMM as CelesTrak publishes it: JSON, XML (CCSDS NDM) or CSV.

        The format is told by content, not by the file name. Bad records are skipped
        and listed in ``problems`` with their record number (``strict`` raises).
        """
        label = str(path)
        satrecs, names, designators, problems = [], [], [], []
        for number, rec in read_omm_records(path):
            if isinstance(rec, str):
                problem = CatalogueProblem(label, f"record {number}", rec)
                if strict:
                    raise CatalogueError(str(problem))
                problems.append(problem)
                continue
            satrec, name, designator = rec
            satrecs.append(satrec)
            names.append(name)
            designators.append(designator)
        return cls._from_satrecs(satrecs, names, designators, problems, label)

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return int(self.norad_id.size)

    def __repr__(self) -> str:
        return f"<Catalogue of {len(self)} objects>"

    def subset(self, selection) -> Catalogue:
        """A catalogue of the objects picked by a boolean mask or index array."""
        idx = np.arange(len(self))[selection]
        return Catalogue(
            norad_id=self.norad_id[idx],
            name=self.name[idx],
            intl_designator=self.intl_designator[idx],
            params=self.params[idx],
            elements={k: getattr(self, k)[idx] for k in self._element_names()},
        )

    def index_of(self, norad_id: int) -> int:
        """Row of a catalogue number (KeyError if absent)."""
        if self._index is None:
            self._index = {int(n): k for k, n in enumerate(self.norad_id)}
        return self._index[int(norad_id)]

    def fingerprint(self) -> str:
        """A short hash of the element sets, to key caches (ephemeris cubes)."""
        h = hashlib.sha256()
        h.update(self.norad_id.tobytes())
        h.update(self.params.tobytes())
        return h.hexdigest()[:16]

    def epoch_range(self) -> tuple[float, float]:
        """Oldest and newest epoch as UTC Julian dates (NaN for an empty catalogue)."""
        if not len(self):
            return float("nan"), float("nan")
        jd = self.epoch_jd + self.epoch_fr
        return float(jd.min()), float(jd.max())

    def summary(self) -> dict:
        """Counts by orbit class, epoch range, problems: what ``catalog info`` shows."""
        classes = {c: int((self.orbit_class == c).sum()) for c in ORBIT_CLASSES}
        lo, hi = self.epoch_range()
        return {
            "objects": len(self),
            "by_orbit_class": classes,
            "epoch_oldest_jd": lo,
            "epoch_newest_jd": hi,
            "problems": [str(p) for p in self.problems],
        }

    # ----------------------------------------------------------------- computing
    def propagate(self, jd, fr=None, *, out=None):
        """SGP4/SDP4 to UTC Julian dates ``jd + fr`` (1-D arrays split as python-sgp4).

        With ``fr`` left out, ``jd`` is any time :func:`aposos.timeutil.to_jd_fr` takes
        (``datetime64``, ISO text, astropy or skyfield ``Time``, ...); times that are not
        UTC dates between 1900 and 2100 raise ``ValueError`` naming the first one.

        Returns ``e`` uint8 (n_objects, n_times) error codes (python-sgp4 meanings, see
        :data:`aposos.orbit.sgp4.ERROR_MESSAGES`), ``r`` km and ``v`` km/s in TEME,
        shape (n_objects, n_times, 3). Failed rows are NaN.
        """
        jd, fr = _times(jd, fr)
        if self._plan is None:
            from aposos.orbit.sgp4_vector import BlockPlan

            self._plan = BlockPlan(self.params)
        return propagate_packed(self.params, jd, fr, out=out, plan=self._plan)

    def radec(self, site: Site, jd, fr=None):
        """Astrometric RA/Dec and range of every object from ``site`` at UTC ``jd + fr``.

        Times as :meth:`propagate` takes them.

        The direction an observer measures against catalogue stars: from the station
        at the observation time to where the object was when the light left it (light
        time), in GCRS axes, with the annual aberration that reference stars carry
        taken out (no diurnal aberration: it cancels between stars and satellite).
        See :func:`aposos.orbit.frames.radec_from_teme` for the exact steps.

        Returns ``ra_deg, dec_deg, range_km``, each (n_objects, n_times); NaN where
        propagation failed.
        """
        from aposos.orbit.frames import radec_from_teme

        jd, fr = _times(jd, fr)
        _, r, v = self.propagate(jd, fr)
        return radec_from_teme(r, v, jd, fr, site)

    # ----------------------------------------------------------------- snapshots
    def save_zarr(self, path: str | os.PathLike) -> None:
        """Write a snapshot to a zarr store (round trip is exact)."""
        import zarr

        group = zarr.open_group(str(path), mode="w")
        for key in self._ARRAYS:
            group.create_array(key, data=np.asarray(getattr(self, key)))
        group.attrs.update(
            {
                "format": "aposos-catalogue",
                "version": 1,
                "param_names": list(_sgp4.PARAM_NAMES),
                "name": self.name.tolist(),
                "intl_designator": self.intl_designator.tolist(),
                "problems": [[p.source, p.location, p.reason] for p in self.problems],
            }
        )

    @classmethod
    def load_zarr(cls, path: str | os.PathLike) -> Catalogue:
        """Read a snapshot written by :meth:`save_zarr`."""
        import zarr

        if not Path(path).exists():
            raise FileNotFoundError(f"no catalogue snapshot at {path}")
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        if attrs.get("format") != "aposos-catalogue":
            raise CatalogueError(f"{path} is not an aposos catalogue snapshot")
        if list(attrs["param_names"]) != list(_sgp4.PARAM_NAMES):
            raise CatalogueError(f"{path} was written by an incompatible aposos version")
        arrays = {key: group[key][...] for key in cls._ARRAYS}
        return cls(
            norad_id=arrays.pop("norad_id"),
            name=attrs["name"],
            intl_designator=attrs["intl_designator"],
            params=arrays.pop("params"),
            elements=arrays,
            problems=[CatalogueProblem(*p) for p in attrs.get("problems", [])],
        )

    @classmethod
    def _element_names(cls):
        return [k for k in cls._ARRAYS if k not in ("norad_id", "params")]


def _times(jd, fr):
    """Any time input as 1-D (jd, fr), absurd dates refused (the kernels have their own guard)."""
    return as_jd_fr(jd, fr)


def read_maybe_compressed(path: Path) -> bytes:
    """The bytes of a file, decompressed when it is xz, gzip or bzip2 (told by content)."""
    data = path.read_bytes()
    if data[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.decompress(data)
    if data[:2] == b"\x1f\x8b":
        import gzip

        return gzip.decompress(data)
    if data[:3] == b"BZh":
        import bz2

        return bz2.decompress(data)
    return data


def _lines_of(source) -> tuple[str, list[str]]:
    if isinstance(source, (str, os.PathLike)) and not (isinstance(source, str) and "\n" in source):
        path = Path(source)
        try:
            text = read_maybe_compressed(path).decode("ascii", errors="replace")
        except FileNotFoundError:
            raise FileNotFoundError(f"no such catalogue file: {path}") from None
        return str(path), text.splitlines()
    if isinstance(source, str):
        return "<text>", source.splitlines()
    return "<lines>", [str(line) for line in source]
