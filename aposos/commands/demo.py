"""``aposos demo``: one simulated night of the network, ending in the nightly report."""

from __future__ import annotations

from aposos.cli import CommandError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a simulated night of the network end to end",
        description=(
            "Start a data center on loopback, plan the night of 2026-03-18 for every station "
            "file, enrol each station and run its agent (aposos station run) on the sky "
            "simulator: the simulated cameras follow the center's tasks and the agents "
            "deliver their tracklets through their outboxes while the center correlates "
            "them against the catalogue of the day before. Ends with the nightly report "
            "(aposos report nightly), a summary table per station and the disk used."
        ),
        epilog="examples:\n  aposos demo --out demo-output\n"
        "  aposos demo --out big-night --minutes 20 --stations my-stations/\n",
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="simulated minutes of night per station, from its first sidereal field (default 3)",
    )
    parser.add_argument(
        "--stations",
        default=None,
        help="folder of station TOML files, one agent each (default: the repository's stations/)",
    )
    parser.add_argument(
        "--archive",
        action="store_true",
        help="let each agent keep its frames in its zarr archive (about 30 MB a 4k frame; "
        "default: a frame is deleted once the agent has reduced and committed its field)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from aposos.demo import DemoError, run_demo

    if not 0 < args.minutes <= 600:
        raise CommandError(f"--minutes {args.minutes:g} must be above 0 and at most 600")
    try:
        run_demo(args.out, minutes=args.minutes, stations_dir=args.stations, archive=args.archive)
    except DemoError as exc:
        raise CommandError(str(exc)) from None
    return 0
