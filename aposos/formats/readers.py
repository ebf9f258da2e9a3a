"""Which reader reads a file: the format told from the content, then a registry of readers.

>>> parsed = read_tracklets("night.tdm")                      # doctest: +SKIP
>>> tracklets = tracklets_of(parsed)                          # doctest: +SKIP

A new exchange format adds a ``sniff_format`` answer and a :data:`READERS` entry here; the
readers themselves (:mod:`aposos.formats.tdm`, :mod:`aposos.formats.iod`) build on
:mod:`aposos.formats.common` and know nothing of each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from aposos.formats.common import ParsedTracklet, read_source, tracklets_of
from aposos.formats.iod import read_iod
from aposos.formats.tdm import read_tdm

__all__ = ["READERS", "read_tracklets", "sniff_format", "tracklets_of"]

StationCodes = dict[int | str, str] | None


def _tdm(text: str, label: str, station_codes: StationCodes, strict: bool):
    return read_tdm(text, strict=strict, name=label)  # a TDM names its stations itself


def _iod(text: str, label: str, station_codes: StationCodes, strict: bool):
    return read_iod(text, station_codes=station_codes, strict=strict, name=label)


# format name -> reader(text, label, station_codes, strict) -> list[ParsedTracklet]
READERS: dict[str, Callable[[str, str, StationCodes, bool], list[ParsedTracklet]]] = {
    "tdm-kvn": _tdm,
    "tdm-xml": _tdm,
    "iod": _iod,
}


def sniff_format(text: str) -> str:
    """``"tdm-kvn"``, ``"tdm-xml"`` or ``"iod"``, judged from the content alone."""
    head = text.lstrip()
    if head.startswith("<"):
        return "tdm-xml"
    first = head.split("\n", 1)[0].strip()
    if first.startswith("CCSDS_"):
        return "tdm-kvn"
    return "iod"


def read_tracklets(
    path: str | os.PathLike,
    *,
    station_codes: StationCodes = None,
    strict: bool = False,
) -> list[ParsedTracklet]:
    """Read a TDM (KVN or XML) or IOD file, whichever it is.

    Parameters
    ----------
    path : file (or text) to read.
    station_codes : IOD station number -> our station code (see
        :func:`aposos.formats.iod.read_iod`); not used for TDM, which names stations.
    strict : raise ``ValueError`` on the first bad segment or line.

    Raises
    ------
    ValueError
        If the file is neither a TDM nor IOD observations.
    """
    text, label = read_source(path)
    return READERS[sniff_format(text)](text, label, station_codes, strict)
