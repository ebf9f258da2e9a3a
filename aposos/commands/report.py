"""``aposos report``: reports built from the center database.

aposos report nightly --night 2020-10-02 [--config configs/center.toml] [--out DIR]
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aposos.cli import CommandError
from aposos.commands.center import CONFIG_ENV, DEFAULT_CONFIG, _config, _store_of

EXAMPLE = (
    "examples:\n  aposos report nightly --night 2020-10-02 --config configs/center.toml\n"
    "  aposos report nightly --night yesterday   # every morning (deploy/aposos-report.timer)\n"
)


def _night(text: str, today: date | None = None) -> str:
    """``YYYY-MM-DD``, or ``yesterday`` (the UTC date before ``today``, for timers)."""
    if text == "yesterday":
        today = today or datetime.now(UTC).date()
        return (today - timedelta(days=1)).isoformat()
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise CommandError(
            f"--night {text!r}: not a date of the form YYYY-MM-DD (or yesterday)"
        ) from None


def cmd_nightly(args) -> int:
    from aposos.center.report import nightly_report

    night = _night(args.night)
    config = _config(args)
    sites = None
    if Path(config.stations_dir).is_dir():
        from aposos.center.worker import load_sites

        try:
            sites = load_sites(config.stations_dir)
        except (OSError, ValueError):
            sites = None  # each station's night is then 12:00 to 12:00 UTC
    store = _store_of(config, "report")
    try:
        summary = nightly_report(store, night, args.out or f"report-{night}", sites=sites)
    finally:
        store.close()
    t = summary["totals"]
    print(
        f"night of {night}: {t['tracklets']} tracklets, {t['correlated']} correlated, "
        f"{t['ambiguous']} ambiguous, {t['uncorrelated']} uncorrelated; "
        f"{t['objects_identified']} objects identified ({t['objects_new']} new)"
    )
    for path in summary["paths"].values():
        print(f"  {path}")
    return 0


def register(subparsers) -> None:
    """Add ``aposos report`` and its actions."""
    parser = subparsers.add_parser(
        "report",
        help="write reports from the center database",
        description="Reports built from the data center's database.",
    )
    actions = parser.add_subparsers(dest="report_action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "nightly",
        help="the nightly report: report.html, summary.json, correlations.csv",
        description="Write the report of one network night: report.html (self-contained, "
        "with figures), summary.json and correlations.csv. Each station's night runs from "
        "local mean noon of the date to the next; times are UTC.",
        epilog=EXAMPLE,
    )
    p.add_argument(
        "--night",
        required=True,
        help="the date the night starts on, YYYY-MM-DD, or yesterday (the UTC date before today)",
    )
    p.add_argument(
        "--config",
        help=f"center configuration (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG} if present)",
    )
    p.add_argument("--out", help="output folder (default report-NIGHT)")
    p.set_defaults(func=cmd_nightly)
