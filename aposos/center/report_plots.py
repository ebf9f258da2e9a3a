"""Figures of the nightly report, as SVG text (matplotlib, no pyplot state).

Each function takes the dict of :func:`aposos.center.report_night.gather_night` and
returns an SVG document, or ``None`` when there is nothing to draw. The SVG carries no
date and fixed element ids, so the same night gives the same bytes.
"""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np

__all__ = [
    "age_plot",
    "heartbeat_plot",
    "plan_plot",
    "residual_plot",
    "sky_map",
    "time_histogram",
    "trend_plot",
]

STATUS_COLOURS = {
    "correlated": "#2ca02c",
    "ambiguous": "#ff7f0e",
    "uncorrelated": "#d62728",
    "pending": "#7f7f7f",
}
RC = {
    "svg.hashsalt": "aposos-nightly-report",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 10,
}


def _svg(fig) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buf.getvalue()


def _figure(**kw):
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        return Figure(**kw)


def sky_map(report: dict) -> str | None:
    """The night's tracklets on the sky (RA/Dec, Mollweide), one panel per station."""
    import matplotlib

    rows = [r for r in report["tracklets"] if r["ra_deg"] is not None]
    codes = sorted({r["station"] for r in rows})
    if not codes:
        return None
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(7.0, 3.2 * len(codes)))
        for k, code in enumerate(codes):
            ax = fig.add_subplot(len(codes), 1, k + 1, projection="mollweide")
            mine = [r for r in rows if r["station"] == code]
            for status, colour in STATUS_COLOURS.items():
                sel = [r for r in mine if r["status"] == status]
                if not sel:
                    continue
                ra = np.array([r["ra_deg"] for r in sel])
                dec = np.array([r["dec_deg"] for r in sel])
                x = -np.radians((ra + 180.0) % 360.0 - 180.0)  # RA grows to the left
                ax.scatter(x, np.radians(dec), s=10, c=colour, label=f"{status} ({len(sel)})")
            ticks_deg = np.arange(-150, 151, 30)
            ax.set_xticks(np.radians(ticks_deg), [f"{(-d) % 360 // 15}h" for d in ticks_deg])
            ax.grid(True, lw=0.4)
            ax.set_title(f"{code}: {len(mine)} tracklets (RA, Dec)")
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.3), ncol=4, frameon=False)
        fig.subplots_adjust(hspace=0.55)
        return _svg(fig)


def time_histogram(report: dict) -> str | None:
    """Tracklets over the night per station (UTC hours from the night's date)."""
    import matplotlib

    rows = report["tracklets"]
    if not rows:
        return None
    day = datetime.fromisoformat(report["night"])
    codes = sorted({r["station"] for r in rows})
    hours = {
        c: [(r["t_mid_dt"] - day).total_seconds() / 3600.0 for r in rows if r["station"] == c]
        for c in codes
    }
    lo = np.floor(min(min(h) for h in hours.values()) * 4) / 4
    hi = np.ceil(max(max(h) for h in hours.values()) * 4) / 4
    bins = np.arange(lo, max(hi, lo + 0.25) + 0.25, 0.25)
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(7.0, 2.8))
        ax = fig.add_subplot(1, 1, 1)
        ax.hist([hours[c] for c in codes], bins=bins, stacked=True, label=codes)
        ax.set_xlabel(f"UTC hours from {report['night']} 00:00 (15-minute bins)")
        ax.set_ylabel("tracklets")
        ax.legend(frameon=False)
        ax.set_title("detections over the night")
        return _svg(fig)


def residual_plot(report: dict) -> str | None:
    """Cross-track and time-offset residuals of correlated tracklets, by orbit class."""
    import matplotlib

    rows = [r for r in report["tracklets"] if r["status"] == "correlated"]
    classes = sorted({r["orbit_class"] for r in rows})
    if not classes:
        return None
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(7.0, 2.6 * len(classes)))
        for k, klass in enumerate(classes):
            sel = [r for r in rows if r["orbit_class"] == klass]
            for j, (key, label) in enumerate(
                (
                    ("cross_track_arcsec", "cross-track (arcsec)"),
                    ("time_offset_s", "time offset (s)"),
                )
            ):
                ax = fig.add_subplot(len(classes), 2, 2 * k + j + 1)
                v = np.array([r[key] for r in sel if r[key] is not None], dtype=float)
                if v.size:
                    ax.hist(v, bins=min(30, max(5, v.size // 2)), color="#1f77b4")
                ax.set_xlabel(label)
                ax.set_title(f"{klass}: {v.size} tracklets")
        fig.subplots_adjust(hspace=0.7, wspace=0.3)
        return _svg(fig)


def age_plot(report: dict) -> str | None:
    """Time offset against element-set age of correlated tracklets, by orbit class."""
    import matplotlib

    rows = [
        r
        for r in report["tracklets"]
        if r["status"] == "correlated"
        and r["elset_age_d"] is not None
        and r["time_offset_s"] is not None
    ]
    if not rows:
        return None
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(7.0, 3.0))
        ax = fig.add_subplot(1, 1, 1)
        for klass in sorted({r["orbit_class"] for r in rows}):
            sel = [r for r in rows if r["orbit_class"] == klass]
            ax.scatter([r["elset_age_d"] for r in sel], [r["time_offset_s"] for r in sel],
                       s=12, label=f"{klass} ({len(sel)})")  # fmt: skip
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel("element-set age at the observation (days)")
        ax.set_ylabel("time offset (s)")
        ax.set_title("time offset against element-set age")
        ax.legend(frameon=False)
        return _svg(fig)


def _hours(iso: str, day: datetime) -> float:
    return (datetime.fromisoformat(iso.rstrip("Z")) - day).total_seconds() / 3600.0


def heartbeat_plot(report: dict) -> str | None:
    """Each station's heartbeats over the night: the outbox backlog at each heartbeat,
    gaps (no heartbeat for more than three periods) shaded."""
    import matplotlib

    stations = [s for s in report["stations"] if s.get("heartbeat_series")]
    if not stations:
        return None
    day = datetime.fromisoformat(report["night"])
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(7.0, 1.9 * len(stations) + 0.6))
        for k, s in enumerate(stations):
            ax = fig.add_subplot(len(stations), 1, k + 1)
            series = s["heartbeat_series"]
            x = [_hours(p["t"], day) for p in series]
            y = [p["outbox_backlog"] if p["outbox_backlog"] is not None else np.nan for p in series]
            ax.step(x, y, where="post", color="#1f77b4", lw=1.0)
            ax.plot(x, y, "|", color="k", ms=6)
            for g in s["gaps"]:
                ax.axvspan(_hours(g["from"], day), _hours(g["to"], day), color="#d62728",
                           alpha=0.2, lw=0)  # fmt: skip
            ax.set_ylabel("backlog")
            ax.set_ylim(bottom=0)
            gaps = "1 gap" if len(s["gaps"]) == 1 else f"{len(s['gaps'])} gaps"
            ax.set_title(f"{s['code']}: {len(series)} heartbeats, {gaps} (shaded)")
        ax.set_xlabel(f"UTC hours from {report['night']} 00:00")
        fig.subplots_adjust(hspace=0.8)
        return _svg(fig)


def plan_plot(report: dict) -> str | None:
    """Planned tasks per station by what the station reported (stacked bars)."""
    import matplotlib

    rows = report.get("plan") or []
    if not rows:
        return None
    colours = {"executed": "#2ca02c", "skipped": "#ff7f0e", "failed": "#d62728",
               "planned": "#c7c7c7"}  # fmt: skip
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(7.0, 0.5 * len(rows) + 1.4))
        ax = fig.add_subplot(1, 1, 1)
        codes = [r["code"] for r in rows]
        left = np.zeros(len(rows))
        for state, colour in colours.items():
            v = np.array([r[state] for r in rows], dtype=float)
            label = "no report" if state == "planned" else state
            ax.barh(codes, v, left=left, color=colour, label=label)
            left += v
        ax.invert_yaxis()
        ax.set_xlabel("tasks of the night's plan")
        ax.set_title("plan against executed")
        ax.legend(frameon=False, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
        return _svg(fig)


def trend_plot(report: dict) -> str | None:
    """The last nights per station: tracklets, share correlated, share of frames solved."""
    import matplotlib

    rows = report.get("trends") or []
    if not rows:
        return None
    nights = sorted({r["night"] for r in rows})
    codes = sorted({r["code"] for r in rows})
    panels = (("tracklets", "tracklets"), ("correlated_pct", "correlated (%)"),
              ("solved_pct", "frames solved (%)"))  # fmt: skip
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(7.0, 2.2 * len(panels)))
        for k, (key, label) in enumerate(panels):
            ax = fig.add_subplot(len(panels), 1, k + 1)
            for code in codes:
                by_night = {r["night"]: r[key] for r in rows if r["code"] == code}
                y = [by_night.get(n) for n in nights]
                y = [np.nan if v is None else v for v in y]
                ax.plot(range(len(nights)), y, marker="o", ms=3, label=code)
            ax.set_ylabel(label)
            ax.set_xticks(range(len(nights)), [n[5:] for n in nights])
            if k == 0:
                ax.legend(frameon=False, ncol=len(codes), fontsize=8)
                ax.set_title("trends against previous nights")
        ax.set_xlabel("night starting (month-day)")
        fig.subplots_adjust(hspace=0.4)
        return _svg(fig)
