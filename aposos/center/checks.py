"""Plausibility checks of what callers send, before it reaches the database.

Every check answers with one line naming the value, so the API can turn it into a
4xx answer; nothing here touches the database.
"""

from __future__ import annotations

import hashlib

import numpy as np

from aposos.model import Tracklet

__all__ = [
    "DB_INT_MAX",
    "MIN_OBSERVATIONS",
    "TIME_RANGE",
    "content_key",
    "content_keys",
    "int_problem",
    "same_content",
    "text_problem",
    "tracklet_problems",
]

DB_INT_MAX = 2**31 - 1  # an INTEGER column on PostgreSQL
MIN_OBSERVATIONS = 2  # one point gives no arc: it can never be correlated
# Observations before the first satellite or after 2099 are typing errors.
TIME_RANGE = (np.datetime64("1957-10-04", "us"), np.datetime64("2100-01-01", "us"))
# Angles on the wire and in TDM agree to 1e-10 degree; 1e-8 (36 microarcsec) is "equal".
ANGLE_TOL_DEG = 1e-8
SIGMA_REL_TOL = 1e-5  # TDM writes sigma with 6 significant digits
MAG_TOL = 1e-3  # TDM writes magnitudes with 4 decimals


def text_problem(name: str, value: str, max_len: int) -> str | None:
    """Why ``value`` cannot be stored as text (control characters, length), or None."""
    if len(value) > max_len:
        return f"{name} is longer than {max_len} characters"
    if not value.isprintable():
        return f"{name} {value[:40]!r} holds control characters"
    return None


def int_problem(name: str, value: int | None, lo: int = 0, hi: int = DB_INT_MAX) -> str | None:
    """Why an integer parameter is out of the range the database holds, or None."""
    if value is not None and not lo <= value <= hi:
        return f"{name} must be within {lo}..{hi}"
    return None


def tracklet_problems(t: Tracklet) -> list[str]:
    """What makes a parsed tracklet unusable (it could never be correlated or stored)."""
    where = f"tracklet {t.uuid}"
    problems = []
    if len(t) < MIN_OBSERVATIONS:
        problems.append(
            f"{where}: {len(t)} observation(s); a tracklet needs at least "
            f"{MIN_OBSERVATIONS} to be correlated"
        )
    if len(t):
        lo, hi = TIME_RANGE
        bad = (t.utc < lo) | (t.utc >= hi)
        if bad.any():
            first = np.datetime_as_string(t.utc[np.argmax(bad)], unit="s")
            problems.append(
                f"{where}: observation time {first} is outside 1957-10-04..2099 "
                "and can never be correlated"
            )
    for name, values in (("ra_deg", t.ra_deg), ("dec_deg", t.dec_deg)):
        if not np.all(np.isfinite(values)):
            problems.append(f"{where}: {name} must be finite")
    if not np.all(np.isfinite(t.sigma_arcsec) & (t.sigma_arcsec > 0)):
        problems.append(f"{where}: sigma_arcsec must be finite and positive")
    if np.any(np.isinf(t.mag)):
        problems.append(f"{where}: mag must be finite")
    if (p := text_problem("'station'", t.station, 32)) is not None:
        problems.append(f"{where}: {p}")
    if t.object is not None and (p := text_problem("'object'", t.object, 64)) is not None:
        problems.append(f"{where}: {p}")
    return problems


def content_key(t: Tracklet) -> str:
    """A digest of what was observed: station, every time and position (see
    :func:`content_keys`)."""
    return content_keys([t])[0]


def content_keys(tracklets: list[Tracklet]) -> list[str]:
    """:func:`content_key` of many tracklets, the array work done once for all of them
    (an upload's tracklets).

    Each is the SHA-256 of the station, then every time (int64 in the tracklet's
    unit), RA (mod 360) and Dec, positions rounded to 1e-7 degree (0.4 mas, far below
    any optical accuracy) as int64, so the same observations give the same key whether
    they came as JSON or TDM.
    """
    if not tracklets:
        return []
    n = [len(t) for t in tracklets]
    cut = np.cumsum([0, *n]).tolist()
    utc = np.concatenate([t.utc for t in tracklets]).astype(np.int64)
    ra = np.round((np.concatenate([t.ra_deg for t in tracklets]) % 360.0) * 1e7)
    dec = np.round(np.concatenate([t.dec_deg for t in tracklets]) * 1e7)
    utc, ra, dec = (a.astype(np.int64).tobytes() for a in (utc, ra, dec))
    keys = []
    for j, t in enumerate(tracklets):
        lo, hi = 8 * cut[j], 8 * cut[j + 1]
        h = hashlib.sha256(t.station.encode("utf-8"))
        for part in (utc, ra, dec):
            h.update(part[lo:hi])
        keys.append(h.hexdigest())
    return keys


def same_content(a: Tracklet, b: Tracklet) -> bool:
    """Whether two tracklets carry the same observations (to the wire's precision)."""
    if a.station != b.station or (a.object or None) != (b.object or None) or len(a) != len(b):
        return False
    if not np.array_equal(a.utc, b.utc):
        return False
    dra = np.abs((a.ra_deg - b.ra_deg + 180.0) % 360.0 - 180.0)
    both_nan = np.isnan(a.mag) & np.isnan(b.mag)
    mag_ok = both_nan | (np.abs(a.mag - b.mag) <= MAG_TOL)
    return bool(
        np.all(dra <= ANGLE_TOL_DEG)
        and np.all(np.abs(a.dec_deg - b.dec_deg) <= ANGLE_TOL_DEG)
        and np.all(np.abs(a.sigma_arcsec - b.sigma_arcsec) <= SIGMA_REL_TOL * b.sigma_arcsec)
        and np.all(mag_ok)
    )
