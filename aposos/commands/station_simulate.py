"""``aposos station simulate``: write a night of simulated FITS frames and their truth.

The ``station`` command group (:mod:`aposos.commands.station`) calls :func:`add_parser`
(the same as :func:`register`) with its sub-parsers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "register", "run"]

DESCRIPTION = """\
Simulate a night at a station: FITS frames as its camera would write them (DATE-OBS,
EXPTIME, site keys, commanded pointing with a realistic pointing error, no WCS), bias,
dark and flat frames, and truth.json (per frame: each satellite's catalogue number,
pixel and RA/Dec at exposure start, mid and end, magnitude, peak S/N; the true
projection; false-positive makers). Stars come from the Hipparcos / Gaia catalogues,
satellites from the TLE/OMM catalogue through SGP4. Fields are chosen where catalogue
objects pass sunlit while the station is dark, unless --pointings gives them.
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``simulate`` to the ``station`` group's sub-parsers."""
    from aposos.station.simulator.plan import MODES
    from aposos.station.stars import CATALOGUES

    p = subparsers.add_parser(
        "simulate",
        help="simulate a night of FITS frames with truth",
        description=DESCRIPTION,
        epilog="example:\n  aposos station simulate --station stations/peru.toml --catalog "
        "active.3le \\\n      --start 2020-10-02T23:00:00 --minutes 3 --out night/frames "
        "--mode mixed\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--station", required=True, type=Path, help="station TOML (stations/X.toml)")
    p.add_argument(
        "--catalog", required=True, type=Path, help="satellite catalogue: TLE/3LE or OMM file"
    )
    p.add_argument(
        "--start", required=True,
        help="start, ISO 8601, UTC unless it has an offset (2020-10-02T16:00:00)",
    )  # fmt: skip
    p.add_argument("--minutes", required=True, type=float, help="length of the run in minutes")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--mode",
        choices=[*MODES, "mixed"],
        default="sidereal",
        help="mount tracking: sidereal (streaks), rate (track a target), stare (GEO), "
        "or mixed (visits cycle through the three); default sidereal",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--pointings",
        type=Path,
        help="CSV (utc,ra_deg,dec_deg[,mode][,norad_id]) or JSON list of visits to follow, "
        "or a data-center plan (aposos center plan --out, or GET /api/v1/tasks)",
    )
    p.add_argument(
        "--stars", choices=CATALOGUES, default="both",
        help="star catalogue (default both, which the sky extends with the deep star store "
        "of `aposos station stars` when installed)",
    )  # fmt: skip
    p.add_argument(
        "--exposure", type=float, help="exposure in seconds, all modes (default: station file)"
    )
    p.add_argument("--cadence", type=float, help="seconds between exposures (default: station)")
    p.add_argument(
        "--calibration-frames",
        type=int,
        default=5,
        metavar="N",
        help="bias, dark and flat frames of each kind (default 5; 0 for none)",
    )
    p.add_argument(
        "-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
        help="no progress bar (there is none unless stderr is a terminal)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


add_parser = register


def _load_satellites(path: Path):
    from aposos.orbit.catalogue import Catalogue

    if path.suffix.lower() in (".json", ".xml", ".csv"):
        return Catalogue.from_omm(path)
    return Catalogue.from_tle(path)


def run(args: argparse.Namespace) -> int:
    """Handler of ``aposos station simulate``."""

    from aposos.cli import CommandError
    from aposos.commands.inputs import parse_utc
    from aposos.station.config import StationConfig
    from aposos.station.simulator.night import write_night
    from aposos.station.simulator.plan import read_pointings
    from aposos.station.stars import StarCatalogue

    for label, path in (("station file", args.station), ("catalogue", args.catalog)):
        if not path.is_file():
            raise CommandError(f"{label} {path} does not exist")
    if not args.minutes > 0:
        raise CommandError(f"--minutes must be positive, got {args.minutes}")
    if args.calibration_frames < 0:
        raise CommandError("--calibration-frames must be 0 or more")
    start = parse_utc(args.start, "--start")
    config = StationConfig.load(args.station)
    overrides = {}
    if args.exposure is not None:
        overrides["exposure_s"] = overrides["rate_exposure_s"] = args.exposure
    if args.cadence is not None:
        overrides["cadence_s"] = args.cadence
    if overrides:
        config = config.with_simulator(**overrides)  # checked: one line if out of range
        sim = config.simulator
        if not 0 < max(sim.exposure_s, sim.rate_exposure_s) <= sim.cadence_s:
            raise CommandError(
                f"exposure {sim.exposure_s} s must be positive and at most the cadence "
                f"{sim.cadence_s} s"
            )
    satellites = _load_satellites(args.catalog)
    if len(satellites) == 0:
        raise CommandError(f"no usable element sets in {args.catalog}")
    pointings = read_pointings(args.pointings, station=config.code) if args.pointings else None
    stars = StarCatalogue.load(args.stars)
    truth = write_night(
        config,
        stars,
        satellites,
        start,
        args.minutes,
        args.out,
        mode=args.mode,
        seed=args.seed,
        pointings=pointings,
        n_calibration=args.calibration_frames,
        progress=not args.quiet and sys.stderr.isatty(),
        sources={"satellite_catalogue": str(args.catalog)},
    )
    frames = truth["frames"]
    sats = [s for f in frames for s in f["satellites"]]
    seen = sum(1 for s in sats if s["peak_snr"] >= 5)
    print(
        f"{config.code}: wrote {len(frames)} light frames and {len(truth['calibration'])} "
        f"calibration frames to {args.out}; {len(sats)} satellite crossings "
        f"({seen} with peak S/N >= 5, {len({s['norad_id'] for s in sats})} objects); "
        f"truth in {args.out / 'truth.json'}"
    )
    return 0
