"""A zarr archive of raw frames and their reduction products.

Layout (zarr v3, a local folder or any store zarr opens)::

    frames/<NNNNNN>_<file stem>    raw pixels, one chunk per frame, Blosc-zstd compressed
                                   (uint16 when the camera wrote integers that fit, else
                                   float32); attributes: "file", "header" (the FITS cards)
                                   and "report" (the frame's entry of reduction.json)
    sources/<same key>             (n, 6) float64: x, y, flux, snr, length_px, kind code
    attrs["reports"]               reports of files that could not be read at all

:meth:`FrameArchive.read` gives back the pixels and an ``astropy.io.fits.Header``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

__all__ = ["FrameArchive"]

SOURCE_COLUMNS = ("x", "y", "flux", "snr", "length_px", "kind")


def _key(n: int, path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(path)).name)
    return f"{n:06d}_{stem}"


def _storage_array(data: np.ndarray) -> np.ndarray:
    """The frame as uint16 when that is lossless, else float32."""
    finite = np.isfinite(data)
    if finite.all():
        lo, hi = float(data.min()), float(data.max())
        if lo >= 0 and hi <= 65535 and np.array_equal(data, np.rint(data)):
            return data.astype(np.uint16)
    return data.astype(np.float32, copy=False)


class FrameArchive:
    """Write and read frames with their headers and reduction reports."""

    def __init__(self, group):
        self.group = group

    @classmethod
    def create(cls, path) -> FrameArchive:
        """Open ``path`` for writing (created if missing; frames are appended)."""
        import zarr

        root = zarr.open_group(str(path), mode="a")
        for name in ("frames", "sources"):
            if name not in root:
                root.create_group(name)
        if "reports" not in root.attrs:
            root.attrs["reports"] = []
        return cls(root)

    @classmethod
    def open(cls, path) -> FrameArchive:
        """Open an existing archive read-only."""
        import zarr

        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such archive")
        return cls(zarr.open_group(str(path), mode="r"))

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self) -> list[str]:
        return sorted(self.group["frames"].array_keys())

    def add(self, path, frame, report) -> str | None:
        """Store one frame (``frame`` may be None for unreadable files: report only)."""
        from zarr.codecs import BloscCodec

        entry = report.to_json() if hasattr(report, "to_json") else dict(report)
        entry = json.loads(json.dumps(entry, default=_jsonable))
        if frame is None:
            reports = list(self.group.attrs.get("reports", []))
            reports.append(entry)
            self.group.attrs["reports"] = reports
            return None
        n = len(self.keys()) + len(self.group.attrs.get("reports", []))
        key = _key(n, path)
        data = _storage_array(frame.data)
        shuffle = "bitshuffle" if data.dtype == np.uint16 else "shuffle"
        arr = self.group["frames"].create_array(
            key,
            shape=data.shape,
            chunks=data.shape,
            dtype=data.dtype,
            compressors=BloscCodec(cname="zstd", clevel=3, shuffle=shuffle),
            fill_value=0,
        )
        arr[...] = data
        arr.attrs["file"] = str(path)
        arr.attrs["header"] = frame.header.tostring(sep="\n", endcard=False, padding=False)
        arr.attrs["report"] = entry
        table = getattr(report, "sources_table", None)
        if table is not None and len(table):
            s = self.group["sources"].create_array(
                key, shape=table.shape, chunks=table.shape, dtype="f8", fill_value=0.0
            )
            s[...] = table
            s.attrs["columns"] = list(SOURCE_COLUMNS)
        return key

    def update_report(self, key: str | None, entry: dict) -> None:
        """Replace a stored frame's report (after the run-wide steps changed it)."""
        if key is None:
            return
        entry = json.loads(json.dumps(entry, default=_jsonable))
        self.group["frames"][key].attrs["report"] = entry

    def read(self, key: str):
        """(pixels, ``astropy.io.fits.Header``, report dict) of one stored frame."""
        from astropy.io import fits

        arr = self.group["frames"][key]
        header = fits.Header.fromstring(arr.attrs["header"], sep="\n")
        return arr[...], header, dict(arr.attrs["report"])

    def sources(self, key: str) -> np.ndarray:
        """The source table of a frame, columns as :data:`SOURCE_COLUMNS`."""
        if key not in self.group["sources"]:
            return np.zeros((0, len(SOURCE_COLUMNS)))
        return self.group["sources"][key][...]

    def unreadable(self) -> list[dict]:
        """Reports of the files that could not be stored (corrupt, truncated...)."""
        return list(self.group.attrs.get("reports", []))


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.datetime64):
        return np.datetime_as_string(v, unit="us") + "Z"
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")
