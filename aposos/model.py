"""The nouns every stage passes on, and the wire format between station and center.

A :class:`Tracklet` is a short arc of angles (RA/Dec, ICRS/J2000 axes, astrometric
place) from one station against UTC. On the wire it is JSON::

    {"uuid": "…", "station": "IRN1", "object": "2020-001A" | null,
     "observations": [{"utc": "2026-11-22T01:02:03.123456Z", "ra_deg": …, "dec_deg": …,
                       "sigma_arcsec": 1.5, "mag": 11.2 | null}, …]}
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass, field

import numpy as np

from aposos.orbit.site import Site

__all__ = [
    "Candidate",
    "Correlation",
    "Site",
    "Tracklet",
    "datetime64_to_jd_fr",
    "jd_fr_to_datetime64",
]

UNIX_EPOCH_JD = 2440587.5
_US_PER_DAY = 86_400_000_000


def datetime64_to_jd_fr(times) -> tuple[np.ndarray, np.ndarray]:
    """UTC ``datetime64`` values to a (whole Julian date .5, fraction of day) split."""
    us = np.asarray(times, dtype="datetime64[us]").astype(np.int64)
    days, rem = np.divmod(us, _US_PER_DAY)
    return UNIX_EPOCH_JD + days.astype(np.float64), rem.astype(np.float64) / _US_PER_DAY


def jd_fr_to_datetime64(jd, fr) -> np.ndarray:
    """Inverse of :func:`datetime64_to_jd_fr`, to the microsecond."""
    jd = np.asarray(jd, dtype=np.float64)
    fr = np.asarray(fr, dtype=np.float64)
    whole = np.floor(jd - UNIX_EPOCH_JD)
    fr = fr + (jd - UNIX_EPOCH_JD - whole)
    us = whole.astype(np.int64) * _US_PER_DAY + np.round(fr * _US_PER_DAY).astype(np.int64)
    return us.astype("datetime64[us]")


@dataclass
class Tracklet:
    """Angles-only observations of one object from one station.

    Parameters
    ----------
    station : station code (TDM ``PARTICIPANT_1``).
    utc : ``datetime64[us]`` array of observation times (UTC).
    ra_deg, dec_deg : astrometric RA/Dec (ICRS axes), degrees.
    sigma_arcsec : 1-sigma angular uncertainty of each observation.
    mag : apparent magnitude per observation (NaN where unknown).
    object : an observer's designation, if any (not an identification).
    uuid : made by the client; uploads are idempotent on it.
    """

    station: str
    utc: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    sigma_arcsec: np.ndarray | None = None
    mag: np.ndarray | None = None
    object: str | None = None
    uuid: str = field(default_factory=lambda: str(uuid_module.uuid4()))

    def __post_init__(self):
        self.utc = np.asarray(self.utc, dtype="datetime64[us]").reshape(-1)
        self.ra_deg = np.asarray(self.ra_deg, dtype=np.float64).reshape(-1) % 360.0
        self.dec_deg = np.asarray(self.dec_deg, dtype=np.float64).reshape(-1)
        n = self.utc.size
        if self.sigma_arcsec is None:
            self.sigma_arcsec = np.full(n, 2.0)
        self.sigma_arcsec = np.broadcast_to(
            np.asarray(self.sigma_arcsec, dtype=np.float64), (n,)
        ).copy()
        if self.mag is None:
            self.mag = np.full(n, np.nan)
        self.mag = np.broadcast_to(np.asarray(self.mag, dtype=np.float64), (n,)).copy()
        if not (self.ra_deg.size == self.dec_deg.size == n):
            raise ValueError(
                f"tracklet {self.uuid}: {n} times but {self.ra_deg.size} RA and "
                f"{self.dec_deg.size} Dec values"
            )
        if np.any(np.abs(self.dec_deg) > 90.0):
            raise ValueError(f"tracklet {self.uuid}: declination outside [-90, 90] degrees")
        order = np.argsort(self.utc, kind="stable")
        if np.any(order != np.arange(n)):
            for name in ("utc", "ra_deg", "dec_deg", "sigma_arcsec", "mag"):
                setattr(self, name, getattr(self, name)[order])

    def __len__(self) -> int:
        return int(self.utc.size)

    def jd_fr(self) -> tuple[np.ndarray, np.ndarray]:
        """Observation times as a split UTC Julian date, as python-sgp4 takes them."""
        return datetime64_to_jd_fr(self.utc)

    @property
    def mid_utc(self) -> np.datetime64:
        return self.utc[0] + (self.utc[-1] - self.utc[0]) // 2

    def to_wire(self) -> dict:
        """The JSON-ready wire form."""
        return {
            "uuid": self.uuid,
            "station": self.station,
            "object": self.object,
            "observations": [
                {
                    "utc": np.datetime_as_string(t, unit="us") + "Z",
                    "ra_deg": float(ra),
                    "dec_deg": float(dec),
                    "sigma_arcsec": float(s),
                    "mag": None if np.isnan(m) else float(m),
                }
                for t, ra, dec, s, m in zip(
                    self.utc, self.ra_deg, self.dec_deg, self.sigma_arcsec, self.mag, strict=True
                )
            ],
        }

    @classmethod
    def from_wire(cls, data: dict) -> Tracklet:
        """Build from the wire form; raises ``ValueError`` naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("a tracklet must be a JSON object")
        for key in ("uuid", "station", "observations"):
            if key not in data:
                raise ValueError(f"tracklet is missing '{key}'")
        try:
            uid = str(uuid_module.UUID(str(data["uuid"])))
        except ValueError:
            raise ValueError(f"tracklet uuid {data['uuid']!r} is not a UUID") from None
        obs = data["observations"]
        if not isinstance(obs, list) or not obs:
            raise ValueError(f"tracklet {uid}: 'observations' must be a non-empty list")
        utc, ra, dec, sig, mag = [], [], [], [], []
        for i, o in enumerate(obs):
            try:
                t = str(o["utc"]).rstrip("Z")
                utc.append(np.datetime64(t, "us"))
                ra.append(float(o["ra_deg"]))
                dec.append(float(o["dec_deg"]))
                sig.append(float(o.get("sigma_arcsec", 2.0) or 2.0))
                m = o.get("mag")
                mag.append(np.nan if m is None else float(m))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"tracklet {uid}: observation {i}: {exc}") from None
        if not isinstance(data["station"], str) or not data["station"]:
            raise ValueError(f"tracklet {uid}: 'station' must be a non-empty string")
        return cls(
            station=data["station"],
            utc=np.array(utc),
            ra_deg=ra,
            dec_deg=dec,
            sigma_arcsec=sig,
            mag=mag,
            object=data.get("object"),
            uuid=uid,
        )


CORRELATION_STATUSES = ("correlated", "ambiguous", "uncorrelated")


def _num(x):
    return None if x is None or x != x else float(x)


@dataclass
class Candidate:
    """One catalogued object considered for a tracklet.

    ``score`` is its posterior probability; the residuals say how far its element set
    had to be moved to fit: ``time_offset_s`` along track (``along_track_km`` at its
    speed) and ``cross_track_km`` across it (mean residual before the plane tilt).
    """

    norad_id: int
    score: float
    rms_arcsec: float
    time_offset_s: float
    along_track_km: float = float("nan")
    cross_track_km: float = float("nan")

    def to_wire(self) -> dict:
        return {
            "norad_id": int(self.norad_id),
            "score": float(self.score),
            "rms_arcsec": _num(self.rms_arcsec),
            "time_offset_s": _num(self.time_offset_s),
            "along_track_km": _num(self.along_track_km),
            "cross_track_km": _num(self.cross_track_km),
        }

    @classmethod
    def from_wire(cls, data: dict) -> Candidate:
        def num(x):
            return float("nan") if x is None else float(x)

        return cls(
            norad_id=int(data["norad_id"]),
            score=float(data["score"]),
            rms_arcsec=num(data.get("rms_arcsec")),
            time_offset_s=num(data.get("time_offset_s")),
            along_track_km=num(data.get("along_track_km")),
            cross_track_km=num(data.get("cross_track_km")),
        )


@dataclass
class Correlation:
    """The identification of one tracklet against a catalogue.

    ``status`` is ``correlated`` (one clear winner, ``norad_id`` set), ``ambiguous``
    (near-ties) or ``uncorrelated``; ``error`` is set (and status ``uncorrelated``)
    when the tracklet could not be processed at all. ``candidates`` holds the best
    five, best first. ``reason`` says in words which hypothesis won and the runner-up
    (for ``uncorrelated``, the nearest candidate's residuals in km and seconds);
    ``p_unlisted`` is the posterior probability that the object is not in the catalogue.
    """

    status: str
    norad_id: int | None = None
    score: float = float("nan")
    rms_arcsec: float = float("nan")
    time_offset_s: float = float("nan")
    cross_track_arcsec: float = float("nan")
    candidates: list[Candidate] = field(default_factory=list)
    error: str | None = None
    reason: str | None = None
    p_unlisted: float = float("nan")

    def __post_init__(self):
        if self.status not in CORRELATION_STATUSES:
            raise ValueError(f"unknown correlation status {self.status!r}")

    def to_wire(self) -> dict:
        def num(x):
            return None if x is None or x != x else float(x)

        return {
            "status": self.status,
            "norad_id": None if self.norad_id is None else int(self.norad_id),
            "score": num(self.score),
            "rms_arcsec": num(self.rms_arcsec),
            "time_offset_s": num(self.time_offset_s),
            "cross_track_arcsec": num(self.cross_track_arcsec),
            "candidates": [c.to_wire() for c in self.candidates],
            "error": self.error,
            "reason": self.reason,
            "p_unlisted": num(self.p_unlisted),
        }

    @classmethod
    def from_wire(cls, data: dict) -> Correlation:
        def num(x):
            return float("nan") if x is None else float(x)

        return cls(
            status=data["status"],
            norad_id=data.get("norad_id"),
            score=num(data.get("score")),
            rms_arcsec=num(data.get("rms_arcsec")),
            time_offset_s=num(data.get("time_offset_s")),
            cross_track_arcsec=num(data.get("cross_track_arcsec")),
            candidates=[Candidate.from_wire(c) for c in data.get("candidates", [])],
            error=data.get("error"),
            reason=data.get("reason"),
            p_unlisted=num(data.get("p_unlisted")),
        )
