"""Fields that take in several objects: exact directions over the next minute or two.

The one-minute grid of :mod:`aposos.center.tasking_visibility` says *whether* a station
can observe an object around a time; a low-Earth-orbit object crosses a one-degree field
in a second or two, so *which* objects a pointing takes in is worked out here, from the
element sets, at the exposures themselves.

Each exposure is sampled at its start, middle and end (:data:`SUBSAMPLES`). An object
counts as observed by a pointing when, in at least one frame,

- at least two of those samples put it inside the field (a circle of
  :data:`FIELD_RADIUS_FRACTION` of the field's side around the field centre): its trail
  covers at least half the exposure, so both ends of a measurable streak lie in the frame;
- the one-minute grid has it observable at the samples on both sides of that frame
  (sunlit, above the minimum elevation, away from the Moon, bright enough as a point);
- its expected magnitude, made fainter by the trailing loss, is within the station's
  limit for the pointing's tracking mode. Trailing loss: a trail of length ``L`` that
  collects light for ``t_in`` of an exposure ``e`` has, against a point source of the
  same magnitude exposed for ``e`` (sky- or read-noise limited, noise growing with the
  square root of the area), a signal-to-noise ratio lower by
  ``(t_in / e) / sqrt(1 + L / FWHM)``.

The field centre moves with the tracking mode: fixed on the sky for sidereal tracking,
with the tracked object for rate tracking.
"""

from __future__ import annotations

import math

import numpy as np

from aposos.model import datetime64_to_jd_fr
from aposos.orbit.frames import radec_from_teme
from aposos.orbit.jit import kernel
from aposos.orbit.propagation import propagate_packed

__all__ = [
    "FIELD_RADIUS_FRACTION", "SUBSAMPLES", "TrackCache", "Tracks", "exposure_offsets_s",
    "members",
]  # fmt: skip

FIELD_RADIUS_FRACTION = 0.45  # of the field's (smaller) side: the inscribed circle, less a margin
SUBSAMPLES = 3  # per exposure: start, middle, end
MIN_INSIDE = 2  # samples of one exposure inside the field
ARCSEC_PER_DEG = 3600.0
REACH_MARGIN = 1.5  # on the fastest motion, for the quick rejection of far objects
CACHE_STEP_S = 4.0  # coarse grid of exact directions, interpolated in between
CACHE_CHUNK_S = 300.0  # propagated a few minutes at a time


def _unit(ra_deg, dec_deg):
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def exposure_offsets_s(setup) -> np.ndarray:
    """(frames, SUBSAMPLES) seconds from the first shutter opening, for a mode's setup."""
    frame = np.arange(setup.frames)[:, None] * setup.cadence_s
    return frame + np.linspace(0.0, setup.exposure_s, SUBSAMPLES)[None, :]


class Tracks:
    """Directions of some catalogue rows from one station at given times.

    ``u`` (n_rows, n_times, 3) unit vectors (GCRS axes, astrometric), NaN where SGP4
    failed; ``ok`` (n_rows, n_times) where the one-minute grid has the object observable
    on both sides of the time; ``mag`` the fainter of the two grid magnitudes. Built by
    propagating (``u=None``) or from directions already at hand (:class:`TrackCache`).
    """

    def __init__(self, night, params, rows: np.ndarray, times: np.ndarray, u=None):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.times = times
        n_t = times.size
        if self.rows.size == 0:
            self.u = np.zeros((0, n_t, 3))
            self.ok = np.zeros((0, n_t), bool)
            self.mag = np.zeros((0, n_t))
            return
        if u is None:
            jd, fr = datetime64_to_jd_fr(times)
            _, r, v = propagate_packed(params[self.rows], jd, fr)
            ra, dec, _ = radec_from_teme(r, v, jd, fr, night.station.site)
            u = _unit(ra, dec)
        self.u = u
        step = np.timedelta64(int(round(night.step_s * 1e6)), "us")
        k = ((times - night.times[0]) // step).astype(np.int64)
        k0 = np.clip(k, 0, night.times.size - 1)
        k1 = np.clip(k + 1, 0, night.times.size - 1)
        j = night.row_of[self.rows]
        inside_night = (k >= 0) & (k + 1 < night.times.size)
        self.ok = night.visible[j][:, k0] & night.visible[j][:, k1] & inside_night[None, :]
        self.ok &= np.isfinite(self.u[..., 0])
        self.mag = np.maximum(night.mag[j][:, k0], night.mag[j][:, k1]).astype(np.float64)


class TrackCache:
    """A station's low-orbit objects propagated on a coarse grid, a few minutes at a time,
    and interpolated (three-point Lagrange on the unit vectors, renormalised) to any time.

    With :data:`CACHE_STEP_S` of 4 s the interpolated directions of low-orbit objects stay
    within a few arcseconds of exact propagation (``tests/test_tasking.py``), far inside the
    margin :data:`FIELD_RADIUS_FRACTION` leaves to the edge of the field.
    """

    def __init__(self, night, params, rows_mask: np.ndarray):
        self.night = night
        self.params = params
        self.mask = rows_mask  # (n_obj,) bool: rows that may be sampled (LEO)
        self.step = np.timedelta64(int(CACHE_STEP_S * 1e6), "us")
        self.key = None

    def _load(self, t: np.datetime64, span_s: float, need) -> None:
        night = self.night
        chunk = np.timedelta64(int(CACHE_CHUNK_S * 1e6), "us")
        c = int((t - night.times[0]) // chunk)
        if self.key == c and t + _td(span_s) <= self.t_last:
            return
        lo = night.times[0] + c * chunk - self.step
        hi = max(lo + chunk + _td(span_s) + 3 * self.step, t + _td(span_s) + 3 * self.step)
        n = int((hi - lo) // self.step) + 1
        times = lo + np.arange(n) * self.step
        k_lo = max(0, int((lo - night.times[0]) // _td(night.step_s)))
        k_hi = min(night.times.size, int((hi - night.times[0]) // _td(night.step_s)) + 2)
        near = night.visible[:, k_lo:k_hi].any(axis=1) & self.mask[night.rows]
        if need is not None:
            near &= need[night.rows]
        rows = night.rows[near]
        self.rows = rows
        self.pos = {int(r): k for k, r in enumerate(rows)}
        self.times = times
        self.t_last = times[-3]
        if rows.size:
            jd, fr = datetime64_to_jd_fr(times)
            _, r, v = propagate_packed(self.params[rows], jd, fr)
            ra, dec, _ = radec_from_teme(r, v, jd, fr, night.station.site)
            self.u = _unit(ra, dec)
        else:
            self.u = np.zeros((0, n, 3))
        self.key = c

    def tracks(self, rows: np.ndarray, times: np.ndarray, need=None) -> Tracks:
        """:class:`Tracks` of ``rows`` at ``times`` (within a few minutes).

        ``need`` (n_obj,) bool, optional: when the cache moves on to the next few minutes,
        only these rows are propagated (those not yet observed); rows asked for that are
        not in the cache are propagated at ``times`` directly.
        """
        rows = np.asarray(rows, dtype=np.int64)
        span = float((times.max() - times.min()) / np.timedelta64(1, "s"))
        self._load(times.min(), span, need)
        idx = np.array([self.pos.get(int(r), -1) for r in rows], dtype=np.int64)
        x = (times - self.times[0]) / self.step  # fractional coarse index
        i = np.clip(np.floor(x).astype(np.int64), 0, self.times.size - 3)
        s = (x - i)[None, :, None]
        have = idx[idx >= 0]
        p0, p1, p2 = self.u[have][:, i], self.u[have][:, i + 1], self.u[have][:, i + 2]
        u = np.empty((rows.size, times.size, 3))
        u[idx >= 0] = p0 * (s - 1) * (s - 2) / 2 - p1 * s * (s - 2) + p2 * s * (s - 1) / 2
        u[idx >= 0] /= np.linalg.norm(u[idx >= 0], axis=-1, keepdims=True)
        if (idx < 0).any():
            u[idx < 0] = Tracks(self.night, self.params, rows[idx < 0], times).u
        return Tracks(self.night, self.params, rows, times, u=u)


def _td(seconds: float) -> np.timedelta64:
    return np.timedelta64(int(round(seconds * 1e6)), "us")


@kernel
def _members_kernel(centres, tidx, u, ok, mag, cos_reach, exposure_s, cos_r, fwhm_arcsec, limit,
                    out):  # fmt: skip
    """out[g, b] = True when object b is observed by candidate field g (module notes).

    centres (G, F, K, 3) field centre at each sample; tidx (G, F, K) the samples' time
    index into u (B, T, 3), ok and mag (B, T). ``cos_reach`` (B,): an object further than
    this from the field centre at the middle sample cannot reach the field in the frames.
    """
    n_g, n_f, n_k = tidx.shape
    n_b = u.shape[0]
    rad_per_arcsec = math.pi / 180.0 / 3600.0
    fm, km = n_f // 2, n_k // 2
    for g in range(n_g):
        for b in range(n_b):
            tm = tidx[g, fm, km]
            d = (centres[g, fm, km, 0] * u[b, tm, 0] + centres[g, fm, km, 1] * u[b, tm, 1]
                 + centres[g, fm, km, 2] * u[b, tm, 2])  # fmt: skip
            if d < cos_reach[b]:  # also False for NaN: then never inside either
                out[g, b] = False
                continue
            seen = False
            for f in range(n_f):
                if seen:
                    break
                first = -1
                last = -1
                n_in = 0
                for k in range(n_k):
                    ti = tidx[g, f, k]
                    if not ok[b, ti]:
                        continue
                    d = (centres[g, f, k, 0] * u[b, ti, 0] + centres[g, f, k, 1] * u[b, ti, 1]
                         + centres[g, f, k, 2] * u[b, ti, 2])  # fmt: skip
                    if d > cos_r:
                        n_in += 1
                        if first < 0:
                            first = k
                        last = k
                if n_in < 2:
                    continue
                t_in = exposure_s * (n_in - 1) / (n_k - 1)
                # motion across the field between the first and last samples inside
                t0, t1 = tidx[g, f, first], tidx[g, f, last]
                dx = 0.0
                for c in range(3):
                    a = (u[b, t1, c] - centres[g, f, last, c]) - (
                        u[b, t0, c] - centres[g, f, first, c]
                    )
                    dx += a * a
                trail_arcsec = math.sqrt(dx) / rad_per_arcsec
                frac = (last - first) / (n_k - 1)
                if frac > 0:
                    trail_arcsec *= (t_in / exposure_s) / frac
                loss = 2.5 * math.log10(
                    (exposure_s / t_in) * math.sqrt(1.0 + trail_arcsec / fwhm_arcsec)
                )
                tm = tidx[g, f, (first + last) // 2]
                if mag[b, tm] + loss <= limit:
                    seen = True
            out[g, b] = seen


def members(
    tracks: Tracks, centres: np.ndarray, tidx: np.ndarray, station, mode: str
) -> np.ndarray:
    """(G, n_rows) bool: which of ``tracks.rows`` each candidate field observes.

    ``centres`` (G, frames, SUBSAMPLES, 3) the field centre at each sample, ``tidx`` the
    samples' indices into ``tracks.times``.
    """
    setup = station.modes[mode]
    out = np.zeros((tidx.shape[0], tracks.rows.size), dtype=np.bool_)
    if out.size == 0:
        return out
    radius = math.radians(FIELD_RADIUS_FRACTION * station.field_deg)
    cos_reach = np.full(tracks.rows.size, -2.0)
    if mode != "rate" and tracks.times.size > 1:
        # fastest angular motion of each object: how far it can come in half the frames
        dt = np.diff(tracks.times) / np.timedelta64(1, "us") * 1e-6
        cos_step = np.clip(np.sum(tracks.u[:, 1:] * tracks.u[:, :-1], -1), -1.0, 1.0)
        rate = np.nanmax(np.arccos(cos_step) / np.maximum(dt, 1e-3), axis=1, initial=0.0)
        reach = REACH_MARGIN * rate * 0.5 * setup.duration_s + radius
        cos_reach = np.where(reach < math.pi, np.cos(np.minimum(reach, math.pi)), -2.0)
    _members_kernel(
        np.ascontiguousarray(centres, dtype=np.float64), np.ascontiguousarray(tidx, dtype=np.int64),
        np.ascontiguousarray(tracks.u), np.ascontiguousarray(tracks.ok),
        np.ascontiguousarray(tracks.mag), cos_reach, float(setup.exposure_s), math.cos(radius),
        float(station.seeing_fwhm_arcsec), float(station.limiting_mag[mode]), out,
    )  # fmt: skip
    return out
