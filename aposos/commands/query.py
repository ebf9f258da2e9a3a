"""``aposos query``: ask the data center about tracklets, correlations, UCTs, stations, objects.

aposos query tracklets --station IRN1 --since 2026-11-22T00:00Z
aposos query correlations --status correlated --format csv
aposos query object 25544 --format json
aposos query tasks --station IRN1 --night 2026-03-19
"""

from __future__ import annotations

import csv
import json
import os
import sys

from aposos.cli import CommandError
from aposos.commands.inputs import FORMATS, TOKEN_HELP, positive_int

CENTER_ENV = "APOSOS_CENTER_URL"
DEFAULT_CENTER = "http://127.0.0.1:8600"

# columns shown in the table (and written to CSV) for each kind
COLUMNS = {
    "tracklets": ("id", "station", "t_mid", "n_obs", "status", "norad_id", "uuid"),
    "correlations": (
        "tracklet_id", "station", "t_mid", "status", "norad_id", "rms_arcsec",
        "time_offset_s", "cross_track_arcsec", "snapshot_id",
    ),
    "uct": ("tracklet_id", "station", "t_mid", "n_obs", "snapshot_id", "error", "uuid"),
    "stations": (
        "code", "last_heartbeat", "outbox_backlog", "tracklets", "by_status.pending",
        "by_status.correlated", "by_status.ambiguous", "by_status.uncorrelated",
    ),
    "object": (
        "tracklet_id", "station", "t_mid", "n_obs", "rms_arcsec", "time_offset_s",
        "cross_track_arcsec", "snapshot_id",
    ),
    "tasks": (
        "start", "end", "station", "tracking", "target.norad_id", "target.name", "ra_deg",
        "dec_deg", "exposure_s", "frames", "priority", "state", "reason",
    ),
}  # fmt: skip


def _value(item: dict, column: str):
    value = item
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render(items: list[dict], kind: str, fmt: str, out=None) -> None:
    """Write ``items`` as a table, JSON or CSV."""
    out = out or sys.stdout
    columns = COLUMNS[kind]
    if fmt == "json":
        json.dump(items, out, indent=2)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for item in items:
            writer.writerow(["" if (v := _value(item, c)) is None else v for c in columns])
        return
    header = [c.split(".")[-1] for c in columns]
    rows = [[_text(_value(item, c)) for c in columns] for item in items]
    widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(header)]
    out.write("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if not rows:
        out.write(f"(no {kind})\n")


def _token(args) -> str:
    from aposos.commands.inputs import resolve_token

    return resolve_token(args.token_file)


def cmd_query(args) -> int:
    from aposos.center.client import CenterClient, CenterError

    kind = args.kind
    filters = {
        "station": args.station,
        "since": args.since,
        "until": args.until,
        "status": args.status,
        "limit": args.limit,
    }
    if kind == "stations":
        filters = {"limit": args.limit}
    elif kind in ("uct", "object"):
        filters.pop("status")
        if kind == "object":
            filters = {"limit": args.limit}
    if kind == "tasks":
        filters = {"station": args.station, "since": args.since, "until": args.until,
                   "night": args.night}  # fmt: skip
    center = args.center or os.environ.get(CENTER_ENV) or DEFAULT_CENTER
    try:
        with CenterClient(center, _token(args)) as client:
            call = [args.norad_id] if kind == "object" else []
            method = {"tracklets": "tracklets"}.get(kind, kind)
            if kind == "tasks":
                items = client.tasks(**filters)["tasks"]
            elif args.all:
                items = list(client.pages(method, *call, **filters))
            else:
                items = getattr(client, method)(*call, **filters)["items"]
    except CenterError as exc:
        raise CommandError(f"{center}: {exc}") from None
    render(items, kind, args.format)
    return 0


def register(subparsers) -> None:
    """Add ``aposos query``."""
    parser = subparsers.add_parser(
        "query",
        help="query the data center (tracklets, correlations, UCTs, stations, objects)",
        description="Ask the data center's HTTP API; prints a table by default.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="WHAT", required=True)
    helps = {
        "tracklets": "tracklets by observation time",
        "correlations": "current correlations of tracklets",
        "uct": "uncorrelated tracklets",
        "stations": "stations with heartbeat, outbox backlog and counts",
        "object": "one catalogued object: its tracklets and residual history",
        "tasks": "planned tasks of the stations (a station sees its own)",
    }
    for kind, text in helps.items():
        example = f"aposos query {kind}" + (" 25544" if kind == "object" else "")
        example += " --center http://127.0.0.1:8600 --token-file alice.token --format csv"
        p = kinds.add_parser(
            kind, help=text, description=text + ". Times are ISO 8601 UTC.",
            epilog=f"example:\n  {example}\n",
        )  # fmt: skip
        if kind == "object":
            p.add_argument("norad_id", type=int, metavar="NORAD", help="NORAD catalogue number")
        if kind not in ("stations", "object"):
            p.add_argument("--station", help="only this station (code)")
            p.add_argument("--since", metavar="T", help="observed at or after T (ISO 8601 UTC)")
            p.add_argument("--until", metavar="T", help="observed before T (ISO 8601 UTC)")
        else:
            p.set_defaults(station=None, since=None, until=None)
        if kind == "tasks":
            p.add_argument("--night", help="the date the night starts on, YYYY-MM-DD")
        else:
            p.set_defaults(night=None)
        if kind in ("tracklets", "correlations"):
            p.add_argument("--status", help="pending, correlated, ambiguous or uncorrelated")
        else:
            p.set_defaults(status=None)
        p.add_argument("--format", choices=FORMATS, default="table", help="default table")
        p.add_argument(
            "--center", help=f"center URL (default: ${CENTER_ENV}, else {DEFAULT_CENTER})"
        )
        p.add_argument("--token-file", help=TOKEN_HELP)
        p.add_argument(
            "--limit", type=positive_int, default=100, metavar="N",
            help="items per page (default 100)",
        )  # fmt: skip
        p.add_argument("--all", action="store_true", help="follow every page")
        p.set_defaults(func=cmd_query, kind=kind)
