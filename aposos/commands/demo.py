"""``aposos demo``: a simulated night of the whole network, ending in the nightly report."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a simulated night of the network end to end",
        description=(
            "Simulate each station's camera for a few minutes of its night, reduce the "
            "frames into tracklets, start a data center on loopback, upload, correlate "
            "against a catalogue two days staler than the sky, and write the nightly "
            "report (HTML and JSON)."
        ),
        epilog="example:\n  aposos demo --out demo-output --minutes 3\n",
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="minutes of night per station (default 3)"
    )
    parser.add_argument("--stations", default=None, help="folder of station TOML files")
    parser.set_defaults(func=run)


def run(args) -> int:
    from aposos.demo import run_demo

    run_demo(args.out, minutes=args.minutes, stations_dir=args.stations)
    return 0
