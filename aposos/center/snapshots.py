"""Catalogue snapshots: an uploaded TLE / OMM file becomes a zarr snapshot.

A snapshot is written under a temporary name and renamed into place, so a crash
never leaves a half-written snapshot registered in the database.

A catalogue that looks implausible next to the newest snapshot (far fewer objects,
or element sets much older) is refused with its bad records named, unless an admin
forces it: a valid TLE followed by garbage must not become the catalogue that every
tracklet is correlated against.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aposos.center.config import CenterConfig
from aposos.center.store import Store
from aposos.model import jd_fr_to_datetime64

__all__ = ["SnapshotResult", "create_snapshot", "sniff_catalogue_kind"]

MAX_PROBLEMS_SHOWN = 20


class SnapshotError(ValueError):
    """The uploaded catalogue cannot be used (nothing is stored); ``extra`` holds
    details for the error answer (the bad records)."""

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.extra = extra


@dataclass
class SnapshotResult:
    snapshot: dict
    new: bool
    problems: list[str]


def sniff_catalogue_kind(payload: bytes) -> str:
    """``omm`` (JSON, XML or CSV) or ``tle`` (2- or 3-line element sets), by content."""
    head = payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:200]
    if head[:1] in (b"[", b"{", b"<"):
        return "omm"
    first_line = head.split(b"\n", 1)[0].upper()
    if b"OBJECT_NAME" in first_line or b"NORAD_CAT_ID" in first_line:
        return "omm"
    return "tle"


def _stray_lines(lines: list[str]) -> list[str]:
    """Lines of a TLE/3LE file that belong to no element set (a name must be
    followed by a line 1)."""
    problems = []
    for i, line in enumerate(lines):
        text = line.strip()
        if not text or text.startswith(("1 ", "2 ")):
            continue
        following = lines[i + 1].lstrip() if i + 1 < len(lines) else ""
        if not following.startswith("1 "):
            problems.append(f"line {i + 1}: {text[:40]!r} is not part of an element set")
    return problems


def _epochs(cat) -> tuple:
    times = jd_fr_to_datetime64(cat.epoch_jd, cat.epoch_fr).astype("datetime64[us]")
    ordered = np.sort(times)
    median = ordered[(len(ordered) - 1) // 2]
    return ordered[0].tolist(), median.tolist(), ordered[-1].tolist()


def _implausible(store: Store, config: CenterConfig, n: int, epochs: tuple) -> str | None:
    """Why a catalogue does not fit after the newest snapshot, or None."""
    snapshots = store.list_snapshots()
    if not snapshots:
        return None
    last = snapshots[-1]
    if n < config.snapshot_min_fraction * last["n_objects"]:
        return (
            f"{n} element set(s) where the newest snapshot ({last['id']}) has "
            f"{last['n_objects']}: implausibly small"
        )
    last_median = np.datetime64(last["epoch_median"][:-1], "us")
    regress = (last_median - np.datetime64(epochs[1], "us")) / np.timedelta64(1, "D")
    if regress > config.snapshot_max_epoch_regress_days:
        return (
            f"its median epoch is {regress:.1f} days older than that of the newest "
            f"snapshot ({last['id']}): the epochs do not fit"
        )
    return None


def create_snapshot(
    store: Store,
    config: CenterConfig,
    payload: bytes,
    source_name: str,
    *,
    force: bool = False,
) -> SnapshotResult:
    """Read a TLE/OMM payload, save it as a zarr snapshot and register it.

    The same element sets put twice give the existing snapshot (``new`` is False).

    Raises
    ------
    SnapshotError
        When no element set in the payload can be read, or (unless ``force``) when
        the catalogue is implausible next to the newest snapshot.
    """
    from aposos.orbit.catalogue import Catalogue, CatalogueError

    kind = sniff_catalogue_kind(payload)
    stray: list[str] = []
    config.catalogue_dir.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "omm":
            with tempfile.TemporaryDirectory(dir=config.catalogue_dir) as tmp:
                path = Path(tmp) / "upload.omm"
                path.write_bytes(payload)
                cat = Catalogue.from_omm(path)
        else:
            lines = payload.decode("ascii", errors="replace").splitlines()
            cat = Catalogue.from_tle(lines)
            stray = _stray_lines(lines)
    except (CatalogueError, ValueError) as exc:
        raise SnapshotError(f"{source_name}: {exc}") from None
    problems = [str(p) for p in cat.problems] + stray
    if len(cat) == 0:
        shown = "; ".join(problems[:5]) or "no element sets found"
        raise SnapshotError(f"{source_name}: no usable element set ({shown})")
    shown = problems[:MAX_PROBLEMS_SHOWN]
    if len(problems) > len(shown):
        shown.append(f"... and {len(problems) - len(shown)} more")
    epochs = _epochs(cat)
    why = None if force else _implausible(store, config, len(cat), epochs)
    if why is not None:
        raise SnapshotError(
            f"{source_name}: refused: {why}; {len(problems)} bad record(s); "
            "put it again with force=true if it is right",
            problems=shown,
        )
    fingerprint = f"{cat.fingerprint()}-{len(cat)}"
    final = config.catalogue_dir / f"snapshot-{fingerprint}.zarr"
    if not final.exists():
        tmp_dir = Path(tempfile.mkdtemp(dir=config.catalogue_dir, prefix=".incoming-"))
        try:
            cat.save_zarr(tmp_dir / "snapshot.zarr")
            try:
                os.replace(tmp_dir / "snapshot.zarr", final)
            except OSError:
                if not final.exists():  # else a concurrent put of the same catalogue won
                    raise
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    snapshot_id, new = store.add_snapshot(
        fingerprint=fingerprint,
        source_name=source_name,
        n_objects=len(cat),
        epochs=epochs,
        path=str(final),
    )
    return SnapshotResult(snapshot=store.snapshot(snapshot_id), new=new, problems=shown)
