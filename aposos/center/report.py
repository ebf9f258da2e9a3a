"""The nightly batch report: what the network saw and identified over one night.

Two builders:

- :func:`nightly_report` reads the center database (``aposos report nightly``) and
  writes ``report.html`` (self-contained, with figures), ``summary.json`` and
  ``correlations.csv``; the numbers come from :mod:`aposos.center.report_night`, the
  page from :mod:`aposos.center.report_html`, the figures from
  :mod:`aposos.center.report_plots`.
- :func:`build_report` / :func:`write_report` work from the HTTP API (so an analyst
  can build a plain summary anywhere with a token).
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

__all__ = ["CSV_COLUMNS", "build_report", "nightly_report", "write_nightly", "write_report"]

CSV_COLUMNS = (
    "tracklet_id", "uuid", "station", "t_mid", "duration_s", "n_obs", "status", "norad_id",
    "name", "intl_designator", "orbit_class", "elset_age_d", "ra_deg", "dec_deg", "score", "rms_arcsec",
    "time_offset_s", "cross_track_arcsec", "p_unlisted", "snapshot_id", "reason",
)  # fmt: skip


def nightly_report(store, night: str, out, *, sites: dict | None = None) -> dict:
    """Gather the night from ``store`` and write the three files into ``out``.

    Returns the summary (as written to ``summary.json``) with the written ``paths``.
    """
    from aposos.center.report_night import gather_night

    report = gather_night(store, night, sites=sites)
    paths = write_nightly(report, out)
    return {**summary_of(report), "paths": {k: str(v) for k, v in paths.items()}}


def summary_of(report: dict) -> dict:
    """The report without its per-tracklet rows (those go to the CSV)."""
    return {k: v for k, v in report.items() if k != "tracklets"}


def correlations_csv(report: dict) -> str:
    """One row per tracklet of the night, sorted by time then id."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for row in report["tracklets"]:
        w.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def write_nightly(report: dict, folder: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``summary.json`` and ``correlations.csv`` into ``folder``."""
    from aposos.center.report_html import render_html
    from aposos.center.report_plots import (
        age_plot,
        heartbeat_plot,
        plan_plot,
        residual_plot,
        sky_map,
        time_histogram,
        trend_plot,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "sky": sky_map(report),
        "time": time_histogram(report),
        "residuals": residual_plot(report),
        "age": age_plot(report),
        "heartbeats": heartbeat_plot(report),
        "plan": plan_plot(report),
        "trends": trend_plot(report),
    }
    paths = {
        "html": folder / "report.html",
        "json": folder / "summary.json",
        "csv": folder / "correlations.csv",
    }
    paths["html"].write_text(render_html(report, figures), encoding="utf-8")
    paths["json"].write_text(
        json.dumps(summary_of(report), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    paths["csv"].write_text(correlations_csv(report), encoding="utf-8")
    return paths


def build_report(client, since: datetime, until: datetime) -> dict:
    """Collect tracklets and their correlations observed in ``[since, until)``."""
    filters = {"since": since, "until": until}
    tracklets = list(client.pages("tracklets", **filters))
    correlations = {c["tracklet_id"]: c for c in client.pages("correlations", **filters)}
    stations = client.stations().get("items", [])
    snapshots = client.snapshots()

    by_station: dict[str, Counter] = defaultdict(Counter)
    objects: dict[int, dict] = {}
    uct = []
    for t in tracklets:
        status = t["status"]
        by_station[t["station"]][status] += 1
        by_station[t["station"]]["tracklets"] += 1
        c = correlations.get(t["id"], {})
        if status == "correlated" and t.get("norad_id") is not None:
            o = objects.setdefault(
                t["norad_id"],
                {"norad_id": t["norad_id"], "tracklets": 0, "stations": set(), "rms": []},
            )
            o["tracklets"] += 1
            o["stations"].add(t["station"])
            if c.get("rms_arcsec") is not None:
                o["rms"].append(c["rms_arcsec"])
        elif status == "uncorrelated":
            best = (c.get("candidates") or [{}])[0]
            uct.append(
                {
                    "tracklet_id": t["id"],
                    "station": t["station"],
                    "t_mid": t["t_mid"],
                    "n_obs": t["n_obs"],
                    "nearest_norad_id": best.get("norad_id"),
                    "nearest_rms_arcsec": best.get("rms_arcsec"),
                }
            )
    object_rows = [
        {
            "norad_id": o["norad_id"],
            "tracklets": o["tracklets"],
            "stations": sorted(o["stations"]),
            "median_rms_arcsec": round(statistics.median(o["rms"]), 3) if o["rms"] else None,
        }
        for o in sorted(objects.values(), key=lambda o: (-o["tracklets"], o["norad_id"]))
    ]
    totals = Counter()
    for counts in by_station.values():
        totals.update(counts)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "totals": {
            "tracklets": totals["tracklets"],
            "correlated": totals["correlated"],
            "ambiguous": totals["ambiguous"],
            "uncorrelated": totals["uncorrelated"],
            "pending": totals["pending"],
            "objects_identified": len(object_rows),
        },
        "stations": [
            {
                "code": s["code"],
                "last_heartbeat": s.get("last_heartbeat"),
                "outbox_backlog": s.get("outbox_backlog"),
                **{
                    k: by_station[s["code"]][k]
                    for k in ("tracklets", "correlated", "ambiguous", "uncorrelated")
                },
            }
            for s in stations
        ],
        "catalogue_snapshots": snapshots,
        "objects": object_rows,
        "uncorrelated": uct,
    }


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            cells.append(f"<td>{html.escape('' if value is None else str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_report(report: dict, folder: str | Path) -> tuple[Path, Path]:
    """Write ``nightly-report.json`` and ``nightly-report.html`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "nightly-report.json"
    json_path.write_text(json.dumps(report, indent=2))
    t = report["totals"]
    summary = (
        f"{t['tracklets']} tracklets: {t['correlated']} correlated, {t['ambiguous']} ambiguous, "
        f"{t['uncorrelated']} uncorrelated, {t['pending']} pending; "
        f"{t['objects_identified']} objects identified"
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>APOSOS nightly report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #999; padding: 0.2em 0.6em; text-align: right; }}
th {{ background: #eee; }}
</style></head><body>
<h1>APOSOS nightly report</h1>
<p>{html.escape(report["since"])} to {html.escape(report["until"])}</p>
<p id="summary">{html.escape(summary)}</p>
<h2>Stations</h2>
{_table(report["stations"], ["code", "tracklets", "correlated", "ambiguous", "uncorrelated", "last_heartbeat"])}
<h2>Objects identified</h2>
{_table(report["objects"], ["norad_id", "tracklets", "stations", "median_rms_arcsec"])}
<h2>Uncorrelated tracklets</h2>
{_table(report["uncorrelated"], ["tracklet_id", "station", "t_mid", "n_obs", "nearest_norad_id", "nearest_rms_arcsec"])}
<h2>Catalogue snapshots</h2>
{_table(report["catalogue_snapshots"], ["id", "source_name", "n_objects", "epoch_median"])}
</body></html>
"""
    html_path = folder / "nightly-report.html"
    html_path.write_text(page)
    return json_path, html_path
