"""An on-disk cache for costly, deterministic test inputs (truth sets, star indexes).

A value is stored under a key made of everything it is computed from: the source files
of the code that makes it, the bytes of its input files, the versions of the packages
that compute it, and its arguments. Change any of them and the value is made again, so
a warm cache never hides a change; a clean clone (CI) makes everything once.

The cache lives in ``.test-cache/`` at the repository's top (``APOSOS_TEST_CACHE=DIR``
to move it, ``APOSOS_TEST_CACHE=off`` to make every value afresh). xdist workers may
race: each writes a whole file under a temporary name and renames it into place.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def folder() -> Path | None:
    where = os.environ.get("APOSOS_TEST_CACHE", "")
    if where.lower() == "off":
        return None
    return Path(where) if where else REPO / ".test-cache"


def package_sources() -> list[Path]:
    """Every source file of the aposos package: the ``sources`` of a value that much of
    the package computes (any change there makes it again)."""
    return sorted((REPO / "aposos").rglob("*.py"))


def key(name: str, *, sources=(), inputs=(), packages=(), args=()) -> str:
    """Hex digest of the code (``sources``: paths), data (``inputs``: paths), package
    versions and arguments (``repr``) a value depends on."""
    h = hashlib.sha256(name.encode())
    for path in (*sources, *inputs):
        h.update(str(path).encode() + b"\0" + Path(path).read_bytes())
    for package in packages:
        h.update(f"{package}={importlib.metadata.version(package)}".encode())
    h.update(repr(args).encode())
    return f"{name}-{h.hexdigest()[:24]}"


def cached(digest: str, make):
    """The value stored under ``digest`` (from :func:`key`), or ``make()`` stored there."""
    top = folder()
    if top is None:
        return make()
    path = top / f"{digest}.pickle"
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        pass  # absent, or written by other code: make it again
    value = make()
    top.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return value
