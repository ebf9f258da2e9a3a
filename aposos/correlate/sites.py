"""Station sites as the data center knows them: the ``[site]`` tables of ``stations/*.toml``.

The data center reads only the ``[site]`` table of each station file (``code``,
``iod_station``, ``latitude_deg``, ``longitude_deg`` east positive, ``altitude_m``); the
rest of the file belongs to the station agent. A tracklet names its station either by
``code`` (TDM ``PARTICIPANT_1``) or by the 4-digit IOD station number, so
:func:`load_sites` maps both to the same :class:`~aposos.model.Site`.

>>> sites = load_sites("stations")                     # doctest: +SKIP
>>> sites["IRN1"] == sites["2401"]                     # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from aposos.model import Site

__all__ = [
    "StationSite",
    "iod_station_key",
    "load_sites",
    "read_station_site",
    "read_station_sites",
    "resolve_site",
]

_REQUIRED = ("code", "iod_station", "latitude_deg", "longitude_deg", "altitude_m")


@dataclass(frozen=True)
class StationSite:
    """One station's identity and position, from the ``[site]`` table of ``path``."""

    code: str
    iod_station: int | None
    site: Site
    path: str


def iod_station_key(number: int | str) -> str:
    """The 4-digit string form of an IOD station number (``2401`` -> ``"2401"``)."""
    return f"{int(number):04d}"


def read_station_site(path: str | os.PathLike) -> StationSite:
    """The ``[site]`` table of one station file; ``ValueError`` names the file and the fault."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    table = document.get("site")
    if not isinstance(table, dict):
        raise ValueError(f"{path}: no [site] table")
    missing = [key for key in _REQUIRED if key not in table]
    if missing:
        raise ValueError(f"{path}: [site] is missing {', '.join(missing)}")
    code = table["code"]
    if not isinstance(code, str) or not code.strip() or code != code.strip():
        raise ValueError(f"{path}: [site] code must be a non-empty string without spaces")
    iod = table["iod_station"]
    if iod is not None and (
        isinstance(iod, bool) or not isinstance(iod, int) or not 0 <= iod <= 9999
    ):
        raise ValueError(f"{path}: [site] iod_station must be a 4-digit number, got {iod!r}")
    numbers = {}
    for key in ("latitude_deg", "longitude_deg", "altitude_m"):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: [site] {key} must be a number, got {value!r}")
        numbers[key] = float(value)
    try:
        site = Site(**numbers)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return StationSite(code=code, iod_station=iod, site=site, path=str(path))


def read_station_sites(directory: str | os.PathLike) -> list[StationSite]:
    """Read the ``[site]`` table of every ``*.toml`` file in ``directory`` (sorted by name).

    Raises ``ValueError`` naming the file for a bad or incomplete table, and for two files
    that claim the same code or IOD station number; ``FileNotFoundError`` when the folder
    does not exist.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"no stations folder at {folder}")
    stations = [read_station_site(path) for path in sorted(folder.glob("*.toml"))]
    seen: dict[str, str] = {}
    for station in stations:
        keys = [station.code]
        if station.iod_station is not None:
            keys.append(iod_station_key(station.iod_station))
        for key in keys:
            if key in seen:
                raise ValueError(f"{station.path}: station {key} is also defined in {seen[key]}")
            seen[key] = station.path
    return stations


def load_sites(directory: str | os.PathLike = "stations") -> dict[str, Site]:
    """Sites by station code and by 4-digit IOD station number, from ``directory/*.toml``.

    Returns
    -------
    dict mapping ``code`` and ``"%04d" % iod_station`` to the station's
    :class:`~aposos.model.Site`: the ``sites`` argument of
    :class:`aposos.correlate.correlator.SGP4Correlator`.
    """
    sites: dict[str, Site] = {}
    for station in read_station_sites(directory):
        sites[station.code] = station.site
        if station.iod_station is not None:
            sites[iod_station_key(station.iod_station)] = station.site
    return sites


def resolve_site(sites: dict[str, Site], station: str) -> Site | None:
    """The site of a tracklet's station name: a code, or an IOD number in any zero padding."""
    site = sites.get(station)
    if site is None and station.strip().isdigit():
        site = sites.get(iod_station_key(station.strip()))
    return site
