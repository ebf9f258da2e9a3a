"""Plots of a night's plan per station, for the nightly report: a timeline and a sky map.

Each station gets one figure (PNG or SVG): on the left the tasks along the night
(UTC), one row per kind of task, coloured by priority class, with the dark hours
shaded; on the right the pointings on the sky (azimuth around, elevation inward) with
the station's minimum elevation drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["plot_night"]

CLASSES = (  # (lowest priority of the class, label, colour)
    (400, "UCT follow-up", "#d62728"),
    (300, "suspect / stale", "#ff7f0e"),
    (200, "analyst request", "#9467bd"),
    (100, "upkeep / GEO survey", "#1f77b4"),
    (0, "empty-belt survey", "#7f7f7f"),
)


TIMELINE_ROWS = {"rate": 2, "stare": 1, "sidereal": 0}


def _class(priority: int) -> int:
    for k, (lo, _, _) in enumerate(CLASSES):
        if priority >= lo:
            return k
    return len(CLASSES) - 1


def _azel(site, ra_deg, dec_deg, times) -> tuple[np.ndarray, np.ndarray]:
    from aposos.model import datetime64_to_jd_fr
    from aposos.orbit import frames

    jd, fr = datetime64_to_jd_fr(times)
    m = frames.gcrs_to_itrs_matrices(jd, fr)
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    u = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)
    itrs = np.einsum("tij,tj->ti", m, u)
    lat, lon = math.radians(site.latitude_deg), math.radians(site.longitude_deg)
    east = np.array([-math.sin(lon), math.cos(lon), 0.0])
    north = np.array(
        [-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)]
    )
    up = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    az = np.degrees(np.arctan2(itrs @ east, itrs @ north)) % 360.0
    el = np.degrees(np.arcsin(np.clip(itrs @ up, -1, 1)))
    return az, el


def timeline_bars(ax, tasks, hours) -> dict:
    """Draw each task as a bar on its tracking mode's row, one collection a row (a bar
    apiece costs matplotlib a patch each: 1,700 tasks took most of the plot's time).
    Returns the collections by tracking mode."""
    drawn = {}
    for mode, row in TIMELINE_ROWS.items():
        mine = [t for t in tasks if t.tracking == mode]
        if not mine:
            continue
        start = hours([t.start for t in mine])
        width = hours([t.end for t in mine]) - start
        colours = [CLASSES[_class(t.priority)][2] for t in mine]
        drawn[mode] = ax.broken_barh(list(zip(start.tolist(), width.tolist())),
                                     (row - 0.3, 0.6), facecolors=colours, edgecolor="none")  # fmt: skip
    return drawn


def plot_night(plan, out_dir, *, fmt: str = "png") -> list[Path]:
    """Write one figure per station of ``plan``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for code, night in sorted(plan.nights.items()):
        tasks = [t for t in plan.tasks if t.station == code]
        fig = plt.figure(figsize=(13, 5))
        ax = fig.add_axes([0.06, 0.14, 0.55, 0.74])
        sky = fig.add_axes([0.66, 0.1, 0.3, 0.8], projection="polar")
        t0 = night.times[0]

        def hours(t, t0=t0):
            return (np.asarray(t, "datetime64[us]") - t0) / np.timedelta64(3600, "s")

        timeline_bars(ax, tasks, hours)
        ax.set_yticks([0, 1, 2], ["sidereal", "stare", "rate"])
        span = float(hours(night.times[-1])) if night.times.size > 1 else 1.0
        ax.set_xlim(-0.2, span + 0.2)
        ax.set_xlabel(f"hours after {np.datetime_as_string(t0, unit='m')} UTC (dark hours)")
        ax.set_title(f"{code}, night {plan.night}: {len(tasks)} tasks")
        ax.legend(handles=[Patch(color=c, label=lab) for _, lab, c in CLASSES],
                  loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5, fontsize=8,
                  frameon=False)  # fmt: skip
        if tasks:
            starts = np.array([t.start for t in tasks], dtype="datetime64[us]")
            az, el = _azel(night.station.site, np.array([t.ra_deg for t in tasks]),
                           np.array([t.dec_deg for t in tasks]), starts)  # fmt: skip
            colours = [CLASSES[_class(t.priority)][2] for t in tasks]
            sky.scatter(np.radians(az), 90.0 - el, s=8, c=colours)
        ring = np.linspace(0, 2 * np.pi, 181)
        sky.plot(ring, np.full_like(ring, 90.0 - night.station.min_elevation_deg), "k--", lw=0.8)
        sky.set_theta_zero_location("N")
        sky.set_theta_direction(-1)
        sky.set_rlim(0, 90)
        sky.set_rticks([30, 60, 90], ["60", "30", "0"])
        sky.set_title("pointings (az, el)", fontsize=10)
        path = out_dir / f"plan-{plan.night}-{code}.{fmt}"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
