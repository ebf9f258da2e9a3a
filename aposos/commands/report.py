"""``aposos report``: reports built from the center database.

aposos report nightly --night 2020-10-02 [--config configs/center.toml] [--out DIR]
"""

from __future__ import annotations

import argparse
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
    if (args.scheduler or args.workers is not None) and not args.recorrelate:
        raise CommandError("--scheduler and --workers re-correlate: not with --no-recorrelate")
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers {args.workers}: at least 1")
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
        if args.recorrelate:
            _recorrelate(store, config, night, sites, args)
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


def _recorrelate(store, config, night: str, sites, args) -> None:
    """Re-correlate the night's tracklets, on Dask when a cluster is given or configured."""
    from aposos.center.recorrelate import recorrelate_night
    from aposos.center.report_night import night_windows

    windows = night_windows(night, sorted(sites or {}), sites)
    day = datetime.fromisoformat(night)
    lo = min((w[0] for w in windows.values()), default=day) - timedelta(hours=12)
    hi = max((w[1] for w in windows.values()), default=day + timedelta(days=1))
    hi += timedelta(hours=12)  # stations without a site: 12:00 to 12:00 UTC
    scheduler = args.scheduler or config.worker.dask_scheduler
    if args.workers or scheduler:
        from dask.distributed import Client, LocalCluster

        try:
            if scheduler:
                client = Client(scheduler, timeout=30)
                cluster = None
            else:
                cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                       dashboard_address=None)  # fmt: skip
                client = Client(cluster)
        except (OSError, TimeoutError) as exc:
            raise CommandError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        try:
            done = recorrelate_night(store, config, lo, hi, client=client)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        done = recorrelate_night(store, config, lo, hi)
    if done["snapshot_id"] is None:
        print(f"night of {night}: no catalogue snapshot suits it; not re-correlated")
    else:
        print(
            f"night of {night}: {done['queued']} tracklets re-correlated against snapshot "
            f"{done['snapshot_id']} ({done['source_name']}) in {done['on']}"
        )


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
    p.add_argument(
        "--recorrelate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first correlate the night's tracklets whose result came from another snapshot "
        "again against the newest suitable one (on the Dask cluster of [worker] "
        "dask_scheduler, if set); default: yes",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --recorrelate: this Dask cluster")
    p.add_argument(
        "--workers", type=int, metavar="N", help="with --recorrelate: a local Dask cluster of N"
    )
    p.set_defaults(func=cmd_nightly)
