"""The nightly batch report: what the network saw and identified over one night.

Built from the data center's HTTP API (so an analyst can build it anywhere with a
token), written as JSON (for tools) and a self-contained HTML page (for people).
"""

from __future__ import annotations

import html
import json
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

__all__ = ["build_report", "write_report"]


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
