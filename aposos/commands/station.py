"""``aposos station``: what runs at an observatory.

aposos station reduce FRAMES_OR_DIR... --station stations/X.toml [--calib DIR]
                      --out DIR [--archive PATH] [--catalog both|gaia|hipparcos]
aposos station run --station stations/X.toml      (the station agent, all night)
aposos station status --station stations/X.toml
aposos station upload DIR_OR_TDM --station stations/X.toml
aposos station enrol --station stations/X.toml CODE   # one-time code -> token file
aposos station stars install|import FILE|info   (the deep reference-star store)
aposos station simulate ...      (when the simulator is installed)
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from aposos.cli import CommandError

# library advice meant for programmers, left out of the operator's line (kept in the JSON)
LIBRARY_HINTS = re.compile(r"\s*If this is really a FITS file, try with \w+=\w+\.?")


def short_reason(reason: str | None) -> str:
    """One line for the terminal; reduction.json keeps the whole text."""
    if not reason:
        return "no reason given"
    line = LIBRARY_HINTS.sub("", reason.strip().splitlines()[0])
    return line if len(line) <= 200 else line[:197] + "..."


def cmd_reduce(args) -> int:
    from aposos.station.config import StationConfig
    from aposos.station.reduce import ReduceOptions, reduce_frames

    try:
        station = StationConfig.load(args.station)
    except FileNotFoundError:
        raise CommandError(f"no station file at {args.station}") from None
    for p in args.inputs:
        if not Path(p).exists():
            raise CommandError(f"{p}: no such file or folder")
    if args.calib is not None and not Path(args.calib).is_dir():
        raise CommandError(f"--calib {args.calib}: not a folder")
    options = ReduceOptions(
        catalogue=args.catalog,
        pointing_tolerance_deg=args.pointing_tolerance,
        blind=not args.no_blind,
    )
    result = reduce_frames(
        args.inputs,
        station,
        calib=args.calib,
        out_dir=args.out,
        archive=args.archive,
        options=options,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    summary = result.to_json()["summary"]
    if summary["files"] == 0:
        raise CommandError("no FITS files found in the inputs")
    for r in result.reports:  # one line per frame that could not be used, with the reason
        if r.status in ("unsolved", "error"):
            print(f"{r.file}: {r.status}: {short_reason(r.reason)}", file=sys.stderr)
    if summary["solved"] == 0:
        raise CommandError(
            f"no frame could be used ({summary['files']} files: {summary['light_frames']} "
            f"light frames unsolved, {summary['errors']} unreadable); reasons above"
        )
    print(
        f"{summary['light_frames']} light frames, {summary['solved']} solved, "
        f"{summary['errors']} unreadable; {summary['tracklets']} tracklets "
        f"({summary['observations']} observations) -> {args.out}; "
        f"reference stars: {summary['star_catalogue']}",
        file=sys.stderr,
    )
    return 0


def cmd_enrol(args) -> int:
    from aposos.station.config import StationConfig
    from aposos.station.uplink import LinkError, enrol

    try:
        station = StationConfig.load(args.station)
    except FileNotFoundError:
        raise CommandError(f"no station file at {args.station}") from None
    except ValueError as exc:
        raise CommandError(str(exc).splitlines()[0]) from None
    try:
        path = enrol(station, args.code)
    except LinkError as exc:
        raise CommandError(str(exc)) from None
    print(f"token for {station.code} written to {path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "station", help="station tools: reduce frames, simulate the sky", description=__doc__
    )
    sub = parser.add_subparsers(dest="station_command", metavar="SUBCOMMAND")
    reduce = sub.add_parser(
        "reduce",
        help="reduce FITS frames into tracklets (TDM, IOD, reduction.json)",
        description=(
            "Calibrate, extract, plate-solve and measure FITS frames, link the satellite "
            "detections into tracklets, and write tracklets.tdm, tracklets.iod and "
            "reduction.json (per frame: solved or why not, RMS, stars, FWHM, limiting "
            "magnitude, detections). Each file that cannot be used is named on stderr with "
            "its reason and skipped; exit status 2 when no frame could be used."
        ),
        epilog="example:\n  aposos station reduce night/frames/lights --station "
        "stations/pakistan.toml \\\n      --calib night/frames/calib --out night/reduced\n",
    )
    reduce.add_argument("inputs", nargs="+", metavar="FRAMES_OR_DIR", help="FITS files or folders")
    reduce.add_argument("--station", required=True, help="station file (stations/<name>.toml)")
    reduce.add_argument("--calib", help="folder of bias/dark/flat frames")
    reduce.add_argument("--out", required=True, help="output folder")
    reduce.add_argument("--archive", help="zarr archive to store frames and products in")
    reduce.add_argument(
        "--catalog",
        default="auto",
        choices=("auto", "deep", "both", "gaia", "hipparcos"),
        help="star catalogue for plate solving (default auto: the deep store of "
        "`aposos station stars` when installed, else both)",
    )
    reduce.add_argument(
        "--pointing-tolerance",
        type=float,
        default=1.5,
        metavar="DEG",
        help="how far the true field may be from the header pointing (default 1.5)",
    )
    reduce.add_argument(
        "--no-blind",
        action="store_true",
        help="do not solve frames blind when the header has no pointing or a wrong one "
        "(blind solving builds an all-sky index once per run, a few seconds)",
    )
    reduce.add_argument(
        "-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
        help="no progress bar (there is none unless stderr is a terminal)",
    )  # fmt: skip
    reduce.set_defaults(func=cmd_reduce)
    from aposos.commands import station_agent

    station_agent.register(sub)
    from aposos.commands import station_stars

    station_stars.register(sub)
    enrol = sub.add_parser(
        "enrol",
        help="trade a one-time enrolment code for the station's token",
        description=(
            "Ask the data center (HTTPS, certificate verified; [center] ca_file pins a CA) "
            "for this station's token with the one-time code its operator gave you, and "
            "write it to the token file (mode 600)."
        ),
        epilog="example:\n  aposos station enrol --station stations/pakistan.toml "
        "ABCD-EFGH-JKMN-PQRS\n",
    )
    enrol.add_argument("code", help="the enrolment code, e.g. ABCD-EFGH-JKMN-PQRS")
    enrol.add_argument("--station", required=True, help="station file (stations/<name>.toml)")
    enrol.set_defaults(func=cmd_enrol)
    try:
        simulate = importlib.import_module("aposos.commands.station_simulate")
    except ModuleNotFoundError as exc:
        if exc.name != "aposos.commands.station_simulate":
            raise
    else:
        if hasattr(simulate, "add_parser"):
            simulate.add_parser(sub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
