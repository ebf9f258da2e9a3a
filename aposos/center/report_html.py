"""The nightly report as one self-contained HTML page (figures inlined as data URIs).

Nothing is fetched to view it: styles are inline and figures are SVG in ``data:`` URIs.
A print style sheet keeps sections and tables from breaking across pages.
"""

from __future__ import annotations

import base64
import html

__all__ = ["render_html"]

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 64em; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #999; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.15em 0.5em; text-align: right; }
td.text, th.text { text-align: left; }
th { background: #eee; }
p.note { color: #555; font-size: 0.9em; }
p.empty { font-size: 1.2em; padding: 1em; background: #fff3cd; }
img.figure { max-width: 100%; display: block; margin: 0.5em 0; }
.warn { color: #a00; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  section, table, img.figure { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
}
"""


def _esc(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, list):
        return html.escape(", ".join(map(str, x)))
    return html.escape(str(x))


def _v(x) -> str:
    return "–" if x is None else str(x)


def _table(rows: list[dict], columns: list[tuple[str, str]], text: tuple[str, ...] = ()) -> str:
    head = "".join(
        f'<th class="{"text" if key in text else "num"}">{html.escape(label)}</th>'
        for key, label in columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"text" if key in text else "num"}">{_esc(row.get(key))}</td>'
            for key, _ in columns
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str | None, alt: str) -> str:
    if svg is None:
        return f'<p class="note">No data to plot: {html.escape(alt)}.</p>'
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _beats_line(s: dict) -> str:
    if not s.get("heartbeats"):
        if s["last_heartbeat"] is None:
            return "no heartbeat received"
        return (
            f"no heartbeat during this night (the last one arrived {s['last_heartbeat']}, "
            f"outbox backlog {_v(s['outbox_backlog'])})"
        )
    gaps = s["gaps"]
    gap_text = (
        "no gap"
        if not gaps
        else _plural(len(gaps), "gap")
        + ": "
        + ", ".join(f"{g['from'][11:16]}-{g['to'][11:16]} ({g['minutes']} min)" for g in gaps)
    )
    return (
        f"{_plural(s['heartbeats'], 'heartbeat')} from {s['first_heartbeat']} to "
        f"{s['last_heartbeat_night']}, every {_v(s['heartbeat_period_s'])} s; {gap_text} "
        f"(a gap: no heartbeat for more than 3 periods); outbox backlog at most "
        f"{_v(s['backlog_max'])}, {_v(s['backlog_end'])} at the night's last heartbeat"
    )


def _quality_line(s: dict) -> str:
    if s.get("fwhm_arcsec") is None and s.get("limiting_mag") is None:
        return "night quality: not reported by the agent"
    return (
        f"night quality (medians of its heartbeats): FWHM {_v(s['fwhm_arcsec'])} arcsec, "
        f"limiting magnitude {_v(s['limiting_mag'])}, sky {_v(s['sky_mag_arcsec2'])} "
        "mag/arcsec\u00b2"
    )


def _station_section(s: dict) -> str:
    if s["frames_reduced"] is None:
        frames = "frame counts: not reported (no agent heartbeat with frame counts)"
    else:
        frames = (
            f"{_v(s['frames_solved'])} of {s['frames_reduced']} frames plate-solved "
            f"({_v(s['solved_pct'])} %), from the {s.get('frames_from', 'last heartbeat')}"
        )
        if s["frames_captured"] is not None or s["frames_failed"] is not None:
            frames += (
                f"; {_v(s['frames_captured'])} captured, {_v(s['frames_failed'])} failed "
                "(the agent's running count)"
            )
    lines = [
        f"night (local mean noon to noon): {s['night_start']} to {s['night_end']}",
        frames,
        f"tracklets: {s['tracklets']} ({s['correlated']} correlated, {s['ambiguous']} "
        f"ambiguous, {s['uncorrelated']} uncorrelated, {s['pending']} pending); "
        f"{s['objects']} objects",
        f"first tracklet {_v(s['first_tracklet'])}, last {_v(s['last_tracklet'])}; "
        f"longest gap between tracklets {_v(s['longest_gap_min'])} min; {s['uploads']} "
        f"uploads carried its tracklets, {s['uploads_refused']} refused during the night",
        _beats_line(s),
        _quality_line(s),
    ]
    reasons = s.get("unsolved_reasons") or {}
    if reasons:
        lines.append(
            "why frames were not solved this night: "
            + "; ".join(f"{why}: {n}" for why, n in reasons.items())
        )
    error = f'<li class="warn">last error: {_esc(s["last_error"])}</li>' if s["last_error"] else ""
    errors = "".join(
        f'<li class="warn">error first seen {_esc(e["first_seen"])}: {_esc(e["error"])}</li>'
        for e in s.get("errors") or []
    )
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    return f"<section><h3>{_esc(s['code'])}</h3><ul>{items}{errors or error}</ul></section>"


def _plan_section(report: dict, figures: dict) -> list[str]:
    out = ["<section><h2>Plan against executed</h2>"]
    if not report.get("plan"):
        out.append('<p class="note">No tasks were planned for this night.</p></section>')
        return out
    out.append(
        _table(
            report["plan"],
            [
                ("code", "station"),
                ("tasks", "tasks planned"),
                ("executed", "executed"),
                ("skipped", "skipped"),
                ("failed", "failed"),
                ("planned", "no report"),
                ("executed_pct", "executed (%)"),
                ("frames_planned", "frames planned"),
                ("frames_taken", "frames taken"),
                ("tracklets_reported", "tracklets reported"),
            ],
            text=("code",),
        )  # fmt: skip
    )
    out.append(_figure(figures.get("plan"), "plan against executed"))
    out.append("</section>")
    return out


def _flag_section(report: dict) -> list[str]:
    f = report.get("flags") or {"stale": [], "manoeuvres": []}
    out = ["<section><h2>Flags</h2>"]
    out.append(
        '<p class="note">Stale element set: older than 3 days (LEO), 7 (MEO, HEO) or 10 (GEO) '
        "when observed. Likely manoeuvre: a time offset or cross-track residual more than 5 "
        "robust sigmas from its class's median that night (and beyond 5 s or 60 arcsec), or "
        "an uncorrelated tracklet whose nearest candidate was identified the same night.</p>"
    )
    if f["stale"]:
        out.append("<h3>Stale element sets</h3>")
        out.append(
            _table(
                f["stale"],
                [
                    ("norad_id", "NORAD"),
                    ("name", "name"),
                    ("orbit_class", "class"),
                    ("age_d", "age (d)"),
                    ("limit_d", "limit (d)"),
                    ("station", "station"),
                    ("t_mid", "time (UTC)"),
                    ("time_offset_s", "time offset (s)"),
                ],
                text=("name", "orbit_class", "station", "t_mid"),
            )  # fmt: skip
        )
    else:
        out.append('<p class="note">No stale element set among the objects identified.</p>')
    if f["manoeuvres"]:
        out.append("<h3>Likely manoeuvres</h3>")
        out.append(
            _table(
                f["manoeuvres"],
                [
                    ("tracklet_id", "tracklet"),
                    ("station", "station"),
                    ("t_mid", "time (UTC)"),
                    ("norad_id", "NORAD"),
                    ("name", "name"),
                    ("orbit_class", "class"),
                    ("kind", "flag"),
                    ("why", "figures"),
                ],
                text=("station", "t_mid", "name", "orbit_class", "kind", "why"),
            )  # fmt: skip
        )
    else:
        out.append('<p class="note">No likely manoeuvre.</p>')
    out.append("</section>")
    return out


def _trend_section(report: dict, figures: dict) -> list[str]:
    rows = report.get("trends") or []
    if not rows:
        return []
    return [
        "<section><h2>Trends against previous nights</h2>",
        _table(
            rows,
            [
                ("night", "night"),
                ("code", "station"),
                ("tracklets", "tracklets"),
                ("correlated_pct", "correlated (%)"),
                ("solved_pct", "frames solved (%)"),
            ],
            text=("night", "code"),
        ),  # fmt: skip
        _figure(figures.get("trends"), "trends against previous nights"),
        "</section>",
    ]


def render_html(report: dict, figures: dict[str, str | None]) -> str:
    """The page for a report of :func:`~aposos.center.report_night.gather_night`."""
    t = report["totals"]
    night = html.escape(report["night"])
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>APOSOS nightly report, night of {night}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>APOSOS nightly report</h1><p>Night starting {night} (times in UTC)</p>",
    ]
    if not t["tracklets"]:
        parts.append(
            f'<p class="empty" id="summary">No tracklets were received for the night of '
            f"{night}: nothing was observed or uploaded.</p>"
        )
    else:
        parts.append(
            f'<p id="summary">{t["tracklets"]} tracklets from {t["stations_reporting"]} '
            f"stations: {t['correlated']} correlated, {t['ambiguous']} ambiguous, "
            f"{t['uncorrelated']} uncorrelated, {t['pending']} pending; "
            f"{t['objects_identified']} objects identified, {t['objects_new']} of them "
            "not identified the previous night.</p>"
        )
    parts.append("<section><h2>The network at a glance</h2>")
    parts.append(
        _table(
            report["stations"],
            [
                ("code", "station"),
                ("tracklets", "tracklets"),
                ("correlated", "correlated"),
                ("ambiguous", "ambiguous"),
                ("uncorrelated", "uncorrelated"),
                ("pending", "pending"),
                ("objects", "objects"),
            ],
            text=("code",),
        )  # fmt: skip
    )
    parts.append("</section>")
    if report["objects"]:
        parts.append("<section><h2>Objects identified</h2>")
        parts.append(
            _table(
                report["objects"],
                [
                    ("norad_id", "NORAD"),
                    ("name", "name"),
                    ("intl_designator", "designator"),
                    ("orbit_class", "class"),
                    ("tracklets", "tracklets"),
                    ("stations", "stations"),
                    ("median_rms_arcsec", "median RMS (arcsec)"),
                    ("new", "new"),
                ],
                text=("name", "intl_designator", "orbit_class", "stations"),
            )  # fmt: skip
        )
        parts.append("</section>")
    parts.append("<section><h2>Each station's night</h2>")
    parts.extend(_station_section(s) for s in report["stations"])
    if not report["stations"]:
        parts.append('<p class="note">No station is registered.</p>')
    parts.append(_figure(figures.get("heartbeats"), "heartbeats and outbox backlog"))
    parts.append("</section>")
    parts.extend(_plan_section(report, figures))
    if t["tracklets"]:
        parts.append("<section><h2>Sky and time</h2>")
        parts.append(_figure(figures.get("sky"), "sky map of the night's tracklets"))
        parts.append(_figure(figures.get("time"), "tracklets over the night"))
        parts.append("</section>")
        parts.append("<section><h2>Residuals of correlated tracklets, by orbit class</h2>")
        rows = [
            {
                "class": k,
                "n": v["cross_track_arcsec"]["n"],
                "ct_med": v["cross_track_arcsec"]["median"],
                "ct_95": v["cross_track_arcsec"]["p95_abs"],
                "dt_med": v["time_offset_s"]["median"],
                "dt_95": v["time_offset_s"]["p95_abs"],
                "age": v["elset_age_d"]["median"],
            }
            for k, v in report["residuals"].items()
        ]
        parts.append(
            _table(
                rows,
                [
                    ("class", "class"),
                    ("n", "tracklets"),
                    ("ct_med", "cross-track median (arcsec)"),
                    ("ct_95", "|cross-track| 95 % (arcsec)"),
                    ("dt_med", "time offset median (s)"),
                    ("dt_95", "|time offset| 95 % (s)"),
                    ("age", "element-set age median (d)"),
                ],
                text=("class",),
            )  # fmt: skip
        )
        parts.append(_figure(figures.get("residuals"), "residual distributions"))
        parts.append(_figure(figures.get("age"), "time offset against element-set age"))
        parts.append("</section>")
    parts.extend(_flag_section(report))
    if report["uncorrelated"]:
        parts.append("<section><h2>Uncorrelated tracklets</h2>")
        rows = []
        for u in report["uncorrelated"]:
            n = u["nearest"] or {}
            rows.append(
                {
                    **u,
                    "near": n.get("norad_id"),
                    "near_name": n.get("name"),
                    "along": n.get("along_track_km"),
                    "cross": n.get("cross_track_km"),
                    "dt": n.get("time_offset_s"),
                    "rms": n.get("rms_arcsec"),
                }
            )
        parts.append(
            _table(
                rows,
                [
                    ("tracklet_id", "tracklet"),
                    ("station", "station"),
                    ("t_mid", "time (UTC)"),
                    ("n_obs", "obs"),
                    ("reason", "reason"),
                    ("near", "nearest NORAD"),
                    ("near_name", "name"),
                    ("along", "along-track (km)"),
                    ("cross", "cross-track (km)"),
                    ("dt", "time offset (s)"),
                    ("rms", "RMS (arcsec)"),
                ],
                text=("station", "t_mid", "reason", "near_name"),
            )  # fmt: skip
        )
        parts.append("</section>")
    parts.extend(_trend_section(report, figures))
    if report["snapshots"]:
        parts.append("<section><h2>Catalogue snapshots used</h2>")
        parts.append(
            _table(
                report["snapshots"],
                [
                    ("id", "id"),
                    ("source_name", "source"),
                    ("n_objects", "objects"),
                    ("epoch_median", "median epoch"),
                ],
                text=("source_name", "epoch_median"),
            )  # fmt: skip
        )
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
