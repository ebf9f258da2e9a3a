"""Tycho-2 stars from Debian's astrometry.net index files (``astrometry-data-tycho2-*``).

An astrometry.net index FITS file holds a star kd-tree: the unit vectors of its stars
as 3 unsigned 32-bit codes each (``kdtree_data_stars``, scaled by
``kdtree_range_stars``: low bounds, high bounds, scale), and a tag-along table with
one magnitude per star in the same order (``MAG_VT``, Tycho VT). Level 07 (22'-30'
quads) holds the most stars: 1,871,011 of Tycho-2's 2.54 million (the index keeps at
most 10 stars per 0.14 deg^2 HEALPix cell, brightest first, so the densest Milky Way
fields are cut near VT 11; elsewhere it reaches VT 12-13).

Positions: Tycho-2's mean ICRS positions at epoch J2000.0 (checked against Hipparcos 2
propagated to J2000.0: median 0.026 arcsec over 116,552 common stars, 0.04 arcsec for
stars moving faster than 200 mas/yr; against J1991.25 the median is 0.2 arcsec). The
index carries no proper motions; see :mod:`aposos.station.stars_store` for how they
are filled in.

Licence: the Debian package states BSD-2-Clause for the catalogue (Høg et al. 2000,
permission of E. Høg, 2015) and for the index files built from it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["DEBIAN_PACKAGE", "TYCHO2_EPOCH_JYEAR", "find_index", "fetch_index", "read_index"]

DEBIAN_PACKAGE = "astrometry-data-tycho2-07-littleendian"
INDEX_NAME = "index-tycho2-07*.fits"
INDEX_DIRS = ("/usr/share/astrometry", "/usr/local/share/astrometry")
TYCHO2_EPOCH_JYEAR = 2000.0
APT_TIMEOUT_S = 900


def read_index(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RA, Dec (degrees, ICRS, J2000.0) and VT magnitude of every star of an index file."""
    from astropy.io import fits

    path = Path(path)
    try:
        with fits.open(path, memmap=True) as hdus:
            tables = {h.columns.names[0]: h for h in hdus[1:] if getattr(h, "columns", None)}
            need = ("kdtree_range_stars", "kdtree_data_stars", "MAG_VT")
            missing = [n for n in need if n not in tables]
            if missing:
                raise ValueError(
                    f"{path}: not an astrometry.net index with VT magnitudes "
                    f"(no {', '.join(missing)})"
                )
            if hdus[0].header.get("ENDIAN", "04:03:02:01") != "04:03:02:01":
                raise ValueError(f"{path}: big-endian index; use the -littleendian package")
            rng = np.frombuffer(tables["kdtree_range_stars"].data.tobytes(), "<f8")
            codes = np.frombuffer(tables["kdtree_data_stars"].data.tobytes(), "<u4")
            mag = np.asarray(tables["MAG_VT"].data.field(0), dtype=np.float32)
    except OSError as exc:
        raise ValueError(f"{path}: unreadable FITS file ({exc})") from None
    if rng.size < 7 or codes.size != 3 * mag.size:
        raise ValueError(f"{path}: star tree and magnitudes disagree in size")
    lo, scale = rng[:3], rng[6]
    xyz = lo + codes.reshape(-1, 3) / scale
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    ra = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(xyz[:, 2], -1.0, 1.0)))
    return ra, dec, mag


def find_index() -> Path | None:
    """The level-07 index file where Debian's package puts it, or None."""
    for folder in INDEX_DIRS:
        hits = sorted(glob.glob(os.path.join(folder, INDEX_NAME)))
        if hits:
            return Path(hits[0])
    return None


def fetch_index(workdir: str | os.PathLike) -> Path:
    """Fetch Debian's package with ``apt-get download`` and unpack it into ``workdir``.

    Needs apt-get and dpkg-deb (not root: nothing is installed system-wide). Raises
    ``RuntimeError`` with one line saying what failed.
    """
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"no {tool}: install the Debian package {DEBIAN_PACKAGE} by hand, or "
                "import a catalogue file with `aposos station stars import`"
            )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = _run(["apt-get", "download", "-q", DEBIAN_PACKAGE], workdir, env)
    if done.returncode != 0 and os.geteuid() == 0:  # stale package lists: refresh once
        _run(["apt-get", "update", "-q"], workdir, env)
        done = _run(["apt-get", "download", "-q", DEBIAN_PACKAGE], workdir, env)
    debs = sorted(workdir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if done.returncode != 0 or not debs:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"apt-get download {DEBIAN_PACKAGE} failed: {tail[0]}")
    unpacked = workdir / "unpacked"
    done = _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], workdir, env)
    if done.returncode != 0:
        raise RuntimeError(f"dpkg-deb -x {debs[0].name} failed: {done.stderr.strip()}")
    hits = sorted(unpacked.rglob(INDEX_NAME))
    if not hits:
        raise RuntimeError(f"{debs[0].name} holds no {INDEX_NAME}")
    return hits[0]


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 1, "", str(exc))


def temporary_folder() -> tempfile.TemporaryDirectory:
    """A scratch folder for :func:`fetch_index` (removed when closed)."""
    return tempfile.TemporaryDirectory(prefix="aposos-tycho2-")
