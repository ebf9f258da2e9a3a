"""Satellites in a simulated frame: which objects cross it, where, and how bright.

Positions come from the orbit layer (SGP4 and :func:`aposos.orbit.frames.radec_from_teme`,
the same astrometric RA/Dec as :meth:`Catalogue.radec`), sampled at 33 instants across
the exposure and joined by straight pieces of equal duration, so a streak's brightness
per unit length follows the object's angular speed. Brightness: an illustrative
standard magnitude per object (:func:`standard_magnitude`), plus ``5 log10(range /
1000 km)``, minus ``2.5 log10`` of the diffuse-sphere phase law, plus extinction at
the object's elevation; pieces in the Earth's shadow are dark.
"""

from __future__ import annotations

import math

import numpy as np

from aposos.model import datetime64_to_jd_fr
from aposos.orbit import frames
from aposos.station.simulator.plan import SatelliteEphemeris
from aposos.station.simulator.render import add_segments
from aposos.station.simulator.sky import airmass, diffuse_sphere_phase

__all__ = ["render_satellites"]

COARSE_PIECES = 4
SEARCH_MARGIN_PX = 30.0


def _iso(t) -> str:
    return np.datetime_as_string(np.datetime64(t, "us"), unit="us")


def _pixels(projs, nodes, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for j, k in enumerate(nodes):
        x, y = projs[k].world_to_pixel(ra[:, j], dec[:, j])
        xs.append(x)
        ys.append(y)
    return np.stack(xs, axis=1), np.stack(ys, axis=1)


def _candidates(sim, spec, projs, t_nodes, shape) -> np.ndarray:
    """Rows of the catalogue whose track may cross the frame during the exposure."""
    h, w = shape
    n = len(t_nodes) - 1
    coarse = np.arange(0, n + 1, n // COARSE_PIECES)
    eph = SatelliteEphemeris(sim.satellites, sim.config.site, t_nodes[coarse])
    x, y = _pixels(projs, coarse, eph.ra_deg, eph.dec_deg)
    with np.errstate(invalid="ignore"):
        xa, xb = np.minimum(x[:, :-1], x[:, 1:]), np.maximum(x[:, :-1], x[:, 1:])
        ya, yb = np.minimum(y[:, :-1], y[:, 1:]), np.maximum(y[:, :-1], y[:, 1:])
        m = SEARCH_MARGIN_PX
        hit = (xb > -m) & (xa < w + m) & (yb > -m) & (ya < h + m)
    rows = np.flatnonzero(hit.any(axis=1) & eph.ok.all(axis=1))
    if spec.mode == "rate" and spec.target not in rows:
        rows = np.append(rows, spec.target)
    return rows


def render_satellites(sim, signal, spec, projs, t_nodes, psf, sky_e, features) -> list[dict]:
    """Draw the satellites crossing the frame into ``signal``; return their truth records."""
    cat, cfg = sim.satellites, sim.config
    cam = cfg.camera
    h, w = signal.shape
    n = len(t_nodes) - 1
    mid = n // 2
    rows = _candidates(sim, spec, projs, t_nodes, signal.shape)
    if rows.size == 0:
        return []
    sub = cat.subset(rows)
    eph = SatelliteEphemeris(sub, cfg.site, t_nodes)
    x, y = _pixels(projs, range(n + 1), eph.ra_deg, eph.dec_deg)
    with np.errstate(invalid="ignore"):
        inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    frac = inside.mean(axis=1)
    jd, fr = datetime64_to_jd_fr(t_nodes[mid : mid + 1])
    sun = frames.sun_gcrs_km(jd, fr)[0]
    k_ext = cfg.simulator.extinction_mag_per_airmass
    gx, gy = spec.sky_gradient
    out = []
    for i, row in enumerate(rows):
        is_target = spec.mode == "rate" and row == spec.target
        if frac[i] == 0.0 and not is_target:
            continue
        ra_m, dec_m, rng_m = eph.ra_deg[i, mid], eph.dec_deg[i, mid], eph.range_km[i, mid]
        rho = rng_m * np.array([
            math.cos(math.radians(dec_m)) * math.cos(math.radians(ra_m)),
            math.cos(math.radians(dec_m)) * math.sin(math.radians(ra_m)),
            math.sin(math.radians(dec_m)),
        ])  # fmt: skip
        to_sun = sun - rho
        cos_phase = float(np.dot(to_sun, -rho) / (np.linalg.norm(to_sun) * rng_m))
        phase = math.degrees(math.acos(max(-1.0, min(1.0, cos_phase))))
        el = float(eph.elevation_deg[i, mid])
        lit = eph.sunlit[i]
        law = max(float(diffuse_sphere_phase(phase)), 1e-6)
        mag = (
            sim.standard_mag[row] + 5 * math.log10(rng_m / 1000.0) - 2.5 * math.log10(law)
            + k_ext * float(airmass(max(el, 1.0)))
        )  # fmt: skip
        flux = sim.f0_e_s * 10 ** (-0.4 * mag) * spec.exposure_s
        piece = flux / n * (lit[:-1] & lit[1:])
        x0, y0, x1, y1 = x[i, :-1], y[i, :-1], x[i, 1:], y[i, 1:]
        add_segments(signal, x0, y0, x1, y1, piece, psf)
        # peak S/N: render alone into a cut-out at an in-frame point near mid-exposure
        where = np.flatnonzero(inside[i])
        p = int(where[np.argmin(np.abs(where - mid))]) if where.size else mid
        px, py = float(x[i, p]), float(y[i, p])
        half = int(math.ceil(4 * psf.sigma_px[1])) + 3
        ox, oy = math.floor(px) - half, math.floor(py) - half
        cut = np.zeros((2 * half + 1, 2 * half + 1), dtype=np.float32)
        add_segments(cut, x0 - ox, y0 - oy, x1 - ox, y1 - oy, piece, psf)
        vig = float(sim.camera.vignetting(px, py))
        peak = float(cut.max()) * vig
        local_sky = (
            sky_e * (1 + gx * (px / max(w - 1, 1) - 0.5) + gy * (py / max(h - 1, 1) - 0.5)) * vig
        )
        noise = math.sqrt(
            peak + local_sky + cam.dark_current_e_per_s * spec.exposure_s + cam.read_noise_e**2
        )
        rate = float(np.hypot(x[i, -1] - x[i, 0], y[i, -1] - y[i, 0]))
        record = {
            "norad_id": int(sub.norad_id[i]),
            "name": str(sub.name[i]).strip(),
            "orbit_class": str(sub.orbit_class[i]),
            "role": "target" if is_target else "passing",
            "sunlit": bool(lit[mid]),
            "sunlit_fraction": round(float(lit.mean()), 4),
            "magnitude": round(mag, 3) if lit.any() else None,
            "peak_e": round(peak, 2),
            "peak_snr": round(peak / noise, 3),
            "flux_e": round(float(piece.sum()), 2),
            "length_px": round(rate, 3),
            "fraction_in_frame": round(float(frac[i]), 4),
            "range_km": round(float(rng_m), 3),
            "phase_angle_deg": round(phase, 3),
            "elevation_deg": round(el, 3),
        }
        for label, k in (("start", 0), ("mid", mid), ("end", n)):
            record[label] = {
                "utc": _iso(t_nodes[k]),
                "ra_deg": float(eph.ra_deg[i, k]),
                "dec_deg": float(eph.dec_deg[i, k]),
                "x": float(x[i, k]),
                "y": float(y[i, k]),
            }
        out.append(record)
        if 0.0 < frac[i] < 1.0 and lit.any():
            a, b = where[0], where[-1]
            features.append({"kind": "edge_clipped_streak", "norad_id": record["norad_id"],
                             "x0": round(float(x[i, a]), 2), "y0": round(float(y[i, a]), 2),
                             "x1": round(float(x[i, b]), 2), "y1": round(float(y[i, b]), 2)})  # fmt: skip
    return out
