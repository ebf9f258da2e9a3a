"""What several commands ask of the user: a site, a UTC time, an output format.

>>> parse_utc("2020-10-02T20:00:00+03:30", "--at")
np.datetime64('2020-10-02T16:30:00.000000')
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aposos.cli import CommandError

FORMATS = ("table", "json", "csv")  # --format choices, the same in every command
SITE_HELP = (
    "LAT,LON,ALT_M (geodetic degrees, north and east positive, height in m; e.g. "
    "-16.47,-71.49,2400), a station file (stations/peru.toml) or a station code (PER1)"
)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_utc(text: str, option: str) -> np.datetime64:
    """An ISO 8601 time as UTC ``datetime64[us]``; an offset (``+03:30``, ``Z``) is honoured."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise CommandError(
            f"{option} {text!r} is not an ISO 8601 time (e.g. 2020-10-02T20:00:00, UTC "
            "unless an offset such as +03:30 is given)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(moment, "us")


def _site_of_table(table, where: str):
    from aposos.model import Site

    if not isinstance(table, dict):
        raise CommandError(f"{where}: no [site] table")
    try:
        return Site(
            float(table["latitude_deg"]), float(table["longitude_deg"]), float(table["altitude_m"])
        )
    except KeyError as exc:
        raise CommandError(f"{where}: [site] has no {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{where}: [site]: {exc}") from None


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"{path}: not valid TOML: {exc}") from None


def parse_site(text: str, option: str = "--site", stations_dir: str | Path = "stations"):
    """A :class:`~aposos.model.Site` from ``LAT,LON,ALT_M``, a station file or code."""
    from aposos.model import Site

    text = text.strip()
    if "," in text:
        try:
            lat, lon, alt = (float(x) for x in text.split(","))
        except ValueError:
            raise CommandError(
                f"{option} {text!r}: expected LAT,LON,ALT_M, e.g. -16.47,-71.49,2400"
            ) from None
        try:
            return Site(lat, lon, alt)
        except ValueError as exc:
            raise CommandError(f"{option} {text!r}: {exc}") from None
    path = Path(text)
    if path.is_file():
        return _site_of_table(_read_toml(path).get("site"), str(path))
    folder = Path(stations_dir)
    codes = []
    for candidate in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        table = _read_toml(candidate).get("site")
        if not isinstance(table, dict):
            continue
        names = {str(table.get("code", "")).upper(), str(table.get("iod_station", ""))}
        if text.upper() in names:
            return _site_of_table(table, str(candidate))
        codes.append(str(table.get("code")))
    known = (
        f" (stations in {folder}: {', '.join(codes)})" if codes else f" (no stations in {folder})"
    )
    raise CommandError(
        f"{option} {text!r}: not LAT,LON,ALT_M, a station file or a station code{known}"
    )


TOKEN_ENV = "APOSOS_TOKEN"  # the token itself
TOKEN_FILE_ENV = "APOSOS_TOKEN_FILE"  # a file holding it
DEFAULT_TOKEN_FILE = "~/.config/aposos/token"
TOKEN_HELP = (
    f"file holding your token (default: ${TOKEN_FILE_ENV}, else the token in ${TOKEN_ENV}, "
    f"else {DEFAULT_TOKEN_FILE})"
)


def resolve_token(token_file: str | None) -> str:
    """The token from ``--token-file``, ``$APOSOS_TOKEN_FILE``, ``$APOSOS_TOKEN`` or the default file."""
    import os

    from aposos.center.client import read_token_file

    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path is None and os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip()
    try:
        return read_token_file(path or DEFAULT_TOKEN_FILE)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(
            f"{exc} (give --token-file, or set {TOKEN_FILE_ENV} to a file or {TOKEN_ENV} "
            "to the token)"
        ) from None
