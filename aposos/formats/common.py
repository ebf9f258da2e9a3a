"""What the exchange-format readers share: the result type, source handling, sniffing.

Every reader (:func:`aposos.formats.tdm.read_tdm`, :func:`aposos.formats.iod.read_iod`;
:func:`aposos.formats.readers.read_tracklets` picks one by content) returns a list of
:class:`ParsedTracklet`, one per tracklet or per bad segment/line, in
file order. A bad piece never aborts the file; a file that is not in the format at all
raises ``ValueError``.
"""

from __future__ import annotations

import os
import re
import uuid as uuid_module
from dataclasses import dataclass
from pathlib import Path

from aposos.model import Tracklet

__all__ = ["ParsedTracklet", "read_source", "stable_uuid", "tracklets_of"]

# Namespace of the deterministic tracklet UUIDs made by the readers: re-reading the
# same observations gives the same UUID, so uploads stay idempotent.
_TRACKLET_NAMESPACE = uuid_module.uuid5(uuid_module.NAMESPACE_URL, "aposos:tracklet")


@dataclass
class ParsedTracklet:
    """One tracklet read from a file, or the reason a piece of the file was rejected.

    Attributes
    ----------
    index : 0-based position of this entry (tracklet, segment or rejected line) in the file.
    line : 1-based line where the tracklet, segment or rejected line starts.
    tracklet : the tracklet, or None when ``error`` is set.
    error : one line naming the file, segment/line and what is wrong; None if fine.
    norad_id : the NORAD catalogue number the observer wrote (IOD columns 1-5), if any.
        Not an identification, like ``Tracklet.object``.
    """

    index: int
    line: int
    tracklet: Tracklet | None
    error: str | None
    norad_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def read_source(source: str | os.PathLike) -> tuple[str, str]:
    """Text and a label for messages, from a path or from the text itself.

    A ``PathLike`` is always a path. A ``str`` is a path when it has no line break and
    names an existing file; a single word of file-name characters that names no file
    is a missing file (``FileNotFoundError``); anything else is the text.
    """
    if isinstance(source, bytes):
        raise TypeError("give a path or a str, not bytes")
    if isinstance(source, os.PathLike) or ("\n" not in source and _is_file(source)):
        path = Path(source)
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8/ASCII text (byte {exc.start})") from None
        return text, str(path)
    if re.fullmatch(r"[\w.~:/\\-]+", source):  # looks like a file name, names no file
        raise FileNotFoundError(f"no such file: {source}")
    return source.removeprefix("\ufeff"), "<text>"


def _is_file(name: str) -> bool:
    try:
        return len(name) < 4096 and Path(name).is_file()
    except (OSError, ValueError):
        return False


def stable_uuid(*parts: object) -> str:
    """A UUID derived from ``parts``: the same observations always get the same UUID."""
    return str(uuid_module.uuid5(_TRACKLET_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def tracklets_of(parsed: list[ParsedTracklet]) -> list[Tracklet]:
    """The good tracklets of a reader's result, in file order."""
    return [p.tracklet for p in parsed if p.tracklet is not None]
