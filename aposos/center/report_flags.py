"""Flags of the nightly report: stale element sets and likely manoeuvres.

- **Stale element set**: a correlated object whose element set was older than its orbit
  class allows (:data:`STALE_DAYS`) when it was observed.
- **Likely manoeuvre**: a correlated tracklet whose time offset or cross-track residual
  lies far outside its orbit class's distribution that night (more than
  :data:`ROBUST_SIGMAS` robust sigmas from the median, and beyond a physical floor so a
  tight night does not flag noise); or an uncorrelated tracklet whose nearest candidate
  is an object identified in another tracklet the same night (the object was there, this
  tracklet did not fit it).
"""

from __future__ import annotations

import math
import statistics

__all__ = ["FLOOR_CROSS_ARCSEC", "FLOOR_TIME_S", "ROBUST_SIGMAS", "STALE_DAYS", "flags"]

STALE_DAYS = {"LEO": 3.0, "MEO": 7.0, "HEO": 7.0, "GEO": 10.0}
STALE_DAYS_OTHER = 7.0
ROBUST_SIGMAS = 5.0
FLOOR_TIME_S = 5.0  # at LEO speeds about 35 km along track
FLOOR_CROSS_ARCSEC = 60.0
MAD_TO_SIGMA = 1.4826


def _limits(values: list[float], floor: float) -> tuple[float, float]:
    """``(median, allowed distance)`` of a class's residuals."""
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return med, max(floor, ROBUST_SIGMAS * MAD_TO_SIGMA * mad)


def _stale(rows: list[dict]) -> list[dict]:
    worst: dict[int, dict] = {}
    for r in rows:
        age = r["elset_age_d"]
        if r["status"] != "correlated" or age is None:
            continue
        limit = STALE_DAYS.get(r["orbit_class"], STALE_DAYS_OTHER)
        if age > limit and (r["norad_id"] not in worst or age > worst[r["norad_id"]]["age_d"]):
            worst[r["norad_id"]] = {
                "norad_id": r["norad_id"],
                "name": r["name"],
                "orbit_class": r["orbit_class"],
                "age_d": age,
                "limit_d": limit,
                "station": r["station"],
                "t_mid": r["t_mid"],
                "time_offset_s": r["time_offset_s"],
            }
    return sorted(worst.values(), key=lambda f: (-f["age_d"], f["norad_id"]))


def _outliers(rows: list[dict]) -> list[dict]:
    out = []
    correlated = [r for r in rows if r["status"] == "correlated"]
    for klass in sorted({r["orbit_class"] for r in correlated}):
        sel = [r for r in correlated if r["orbit_class"] == klass]
        lims = {}
        for key, floor in (("time_offset_s", FLOOR_TIME_S),
                           ("cross_track_arcsec", FLOOR_CROSS_ARCSEC)):  # fmt: skip
            v = [r[key] for r in sel if r[key] is not None and math.isfinite(r[key])]
            if v:
                lims[key] = _limits(v, floor)
        for r in sel:
            why = []
            for key, (med, allowed) in lims.items():
                if r[key] is not None and abs(r[key] - med) > allowed:
                    unit = "s" if key == "time_offset_s" else "arcsec"
                    what = "time offset" if key == "time_offset_s" else "cross-track"
                    why.append(f"{what} {r[key]:.1f} {unit}, class median {med:.1f} "
                               f"\u00b1 {allowed:.1f}")  # fmt: skip
            if why:
                out.append({
                    "kind": "residual outside its class",
                    "tracklet_id": r["tracklet_id"], "station": r["station"],
                    "t_mid": r["t_mid"], "norad_id": r["norad_id"], "name": r["name"],
                    "orbit_class": klass, "time_offset_s": r["time_offset_s"],
                    "cross_track_arcsec": r["cross_track_arcsec"], "why": "; ".join(why),
                })  # fmt: skip
    return out


def _rejected_near_own(rows: list[dict], uncorrelated: list[dict]) -> list[dict]:
    seen = {r["norad_id"] for r in rows if r["status"] == "correlated"}
    out = []
    for u in uncorrelated:
        near = u.get("nearest") or {}
        if near.get("norad_id") in seen:
            out.append({
                "kind": "nearest is an object seen tonight, tracklet rejected",
                "tracklet_id": u["tracklet_id"], "station": u["station"], "t_mid": u["t_mid"],
                "norad_id": near["norad_id"], "name": near.get("name"),
                "orbit_class": near.get("orbit_class"),
                "time_offset_s": near.get("time_offset_s"), "cross_track_arcsec": None,
                "why": f"nearest candidate {near.get('along_track_km')} km along, "
                       f"{near.get('cross_track_km')} km across, "
                       f"{near.get('time_offset_s')} s off",
            })  # fmt: skip
    return out


def flags(rows: list[dict], uncorrelated: list[dict]) -> dict:
    """``{"stale": [...], "manoeuvres": [...]}`` for the night's tracklet rows."""
    manoeuvres = _outliers(rows) + _rejected_near_own(rows, uncorrelated)
    manoeuvres.sort(key=lambda f: (f["t_mid"], f["tracklet_id"]))
    return {"stale": _stale(rows), "manoeuvres": manoeuvres}
