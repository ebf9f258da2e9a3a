"""Score a station reduction against the simulator's truth.json (used by test_reduce)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aposos.station.simulator.sky import TanProjection


@dataclass
class Score:
    frames: int = 0
    frames_8plus: int = 0
    solved_8plus: int = 0
    solved: int = 0
    rms_px: list = field(default_factory=list)
    wcs_err_px: list = field(default_factory=list)  # vs the true projection, grid max
    satellites: int = 0  # satellite-frames with peak S/N >= 5 and a measurable position
    found: int = 0
    missed: list = field(default_factory=list)
    pos_err_px: list = field(default_factory=list)
    tracklets: int = 0
    false_tracklets: list = field(default_factory=list)
    time_err_us: list = field(default_factory=list)

    def summary(self) -> dict:
        e = np.array(self.pos_err_px) if self.pos_err_px else np.array([np.nan])
        return {
            "frames": self.frames,
            "solved": self.solved,
            "solved_8plus": f"{self.solved_8plus}/{self.frames_8plus}",
            "rms_px_median": float(np.median(self.rms_px)) if self.rms_px else None,
            "rms_px_max": float(np.max(self.rms_px)) if self.rms_px else None,
            "wcs_err_px_max": float(np.max(self.wcs_err_px)) if self.wcs_err_px else None,
            "satellites": self.satellites,
            "found": self.found,
            "pos_err_median_px": float(np.median(e)),
            "pos_err_p95_px": float(np.percentile(e, 95)),
            "observations_matched": int(len(self.pos_err_px)),
            "tracklets": self.tracklets,
            "false_tracklets": len(self.false_tracklets),
        }


def _inside(pt, w, h, margin=0.0):
    return margin <= pt["x"] <= w - 1 - margin and margin <= pt["y"] <= h - 1 - margin


def score(truth_path, reduction_json: dict, tracklets, *, match_px=3.0) -> Score:
    """Compare a reduction with truth.

    A satellite-frame counts when its peak S/N is >= 5 and its midpoint or one end is
    inside the frame (so a position with a time can be measured); it is found when a
    tracklet observation at one of its three times lies within ``match_px`` of it. A
    tracklet is false when none of its observations lies on any sunlit satellite of a
    solved frame (of whatever S/N).
    """
    truth = json.loads(Path(truth_path).read_text())
    reports = {Path(f["file"]).name: f for f in reduction_json["frames"]}
    s = Score()
    # all tracklet observations, by time
    obs = []
    for k, t in enumerate(tracklets):
        for u, ra, dec in zip(t.utc, t.ra_deg, t.dec_deg, strict=True):
            obs.append((k, np.datetime64(u, "us"), ra, dec))
    used_tracklets = set()
    first = truth["frames"][0] if truth["frames"] else None
    for fr in truth["frames"]:
        name = Path(fr["file"]).name
        rep = reports.get(name)
        s.frames += 1
        tan = TanProjection.from_dict(fr["tan"])
        w = int(round(2 * tan.crpix[0] + 1))
        h = int(round(2 * tan.crpix[1] + 1))
        if fr["n_catalogue_stars"] >= 8:
            s.frames_8plus += 1
        if rep is None or not rep.get("solved"):
            continue
        s.solved += 1
        if fr["n_catalogue_stars"] >= 8:
            s.solved_8plus += 1
        s.rms_px.append(rep["astrometric_rms_px"])
        if "wcs" in rep:
            s.wcs_err_px.append(wcs_error_px(rep["wcs"], tan, (h, w)))
        for sat in fr["satellites"]:
            if sat.get("sunlit") is not False:  # any real object makes a tracklet real
                _mark_real(sat, tan, obs, used_tracklets, match_px)
            if sat["peak_snr"] < 5 or sat.get("sunlit") is False:
                continue
            pts = [sat[k] for k in ("start", "mid", "end")]
            measurable = (
                _inside(sat["mid"], w, h, 5)
                or _inside(sat["start"], w, h, 5)
                or _inside(sat["end"], w, h, 5)
            )
            if not measurable:
                continue
            s.satellites += 1
            hit = False
            for p in pts:
                tp = np.datetime64(p["utc"], "us")
                for k, tu, ra, dec in obs:
                    dt = abs((tu - tp) / np.timedelta64(1, "us"))
                    if dt > 2000:
                        continue
                    x, y = tan.world_to_pixel(ra, dec)
                    err = float(np.hypot(x - p["x"], y - p["y"]))
                    if err < match_px:
                        hit = True
                        s.pos_err_px.append(err)
                        s.time_err_us.append(dt)
                        used_tracklets.add(k)
            if hit:
                s.found += 1
            else:
                s.missed.append((name, sat["norad_id"], sat["peak_snr"]))
    s.tracklets = len(tracklets)
    s.false_tracklets = [k for k in range(len(tracklets)) if k not in used_tracklets]
    del first
    return s


def _mark_real(sat, tan, obs, used: set, match_px: float) -> None:
    """Add the tracklets with an observation on ``sat`` (any S/N: a faint satellite
    found is no false tracklet, though recall counts only S/N >= 5) to ``used``."""
    for p in (sat["start"], sat["mid"], sat["end"]):
        tp = np.datetime64(p["utc"], "us")
        for k, tu, ra, dec in obs:
            if k in used or abs((tu - tp) / np.timedelta64(1, "us")) > 2000:
                continue
            x, y = tan.world_to_pixel(ra, dec)
            if float(np.hypot(x - p["x"], y - p["y"])) < match_px:
                used.add(k)


def wcs_error_px(wcs_keys: dict, tan: TanProjection, shape) -> float:
    """Largest distance (px) between a reported WCS and the true projection on a grid."""
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.Header()
    for k, v in wcs_keys.items():
        header[k] = v
    w = WCS(header)
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 9), np.linspace(0, ny - 1, 9))
    ra, dec = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
    tx, ty = tan.world_to_pixel(ra, dec)
    return float(np.max(np.hypot(tx - gx.ravel(), ty - gy.ravel())))
