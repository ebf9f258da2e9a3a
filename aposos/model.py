"""The nouns every stage passes on, and the wire format between station and center.

A :class:`Tracklet` is a short arc of angles (RA/Dec, ICRS/J2000 axes, astrometric
place) from one station against UTC. On the wire it is JSON::

    {"uuid": "…", "station": "IRN1", "object": "2020-001A" | null,
     "observations": [{"utc": "2026-11-22T01:02:03.123456Z", "ra_deg": …, "dec_deg": …,
                       "sigma_arcsec": 1.5, "mag": 11.2 | null}, …]}
"""

from __future__ import annotations

import math
import uuid as uuid_module
from dataclasses import dataclass, field

import numpy as np

from aposos.timeutil import UNIX_EPOCH_JD, to_jd_fr

__all__ = [
    "Candidate",
    "Correlation",
    "Site",
    "Task",
    "TaskReport",
    "Tracklet",
    "datetime64_to_jd_fr",
    "jd_fr_to_datetime64",
]

_US_PER_DAY = 86_400_000_000


def datetime64_to_jd_fr(times) -> tuple[np.ndarray, np.ndarray]:
    """UTC ``datetime64`` values to a (whole Julian date .5, fraction of day) split.

    The same as :func:`aposos.timeutil.to_jd_fr`, which takes every kind of time input and
    refuses dates outside 1900-2100.
    """
    return to_jd_fr(times)


def jd_fr_to_datetime64(jd, fr) -> np.ndarray:
    """Inverse of :func:`datetime64_to_jd_fr`, to the microsecond."""
    jd = np.asarray(jd, dtype=np.float64)
    fr = np.asarray(fr, dtype=np.float64)
    whole = np.floor(jd - UNIX_EPOCH_JD)
    fr = fr + (jd - UNIX_EPOCH_JD - whole)
    us = whole.astype(np.int64) * _US_PER_DAY + np.round(fr * _US_PER_DAY).astype(np.int64)
    return us.astype("datetime64[us]")


WGS84_A_KM = 6378.137
WGS84_F = 1.0 / 298.257223563


@dataclass(frozen=True)
class Site:
    """A station site: geodetic WGS84 latitude and longitude (east positive), height in metres.

    Examples
    --------
    >>> Site(35.67, 51.42, 1200.0).itrs_km().round(1)
    array([3235.5, 4056. , 3699.2])
    """

    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0

    def __post_init__(self):
        problems = []
        if not (-90.0 <= float(self.latitude_deg) <= 90.0):
            problems.append(f"latitude_deg {self.latitude_deg} is outside [-90, 90]")
        if not (-180.0 <= float(self.longitude_deg) <= 360.0):
            problems.append(f"longitude_deg {self.longitude_deg} is outside [-180, 360]")
        if not (-500.0 <= float(self.altitude_m) <= 10000.0):
            problems.append(f"altitude_m {self.altitude_m} is outside [-500, 10000]")
        if problems:
            raise ValueError("bad site: " + "; ".join(problems))

    def itrs_km(self) -> np.ndarray:
        """Earth-fixed (ITRS) position of the site in km."""
        lat = math.radians(self.latitude_deg)
        lon = math.radians(self.longitude_deg)
        h_km = self.altitude_m / 1000.0
        e2 = WGS84_F * (2.0 - WGS84_F)
        n = WGS84_A_KM / math.sqrt(1.0 - e2 * math.sin(lat) ** 2)
        return np.array(
            [
                (n + h_km) * math.cos(lat) * math.cos(lon),
                (n + h_km) * math.cos(lat) * math.sin(lon),
                (n * (1.0 - e2) + h_km) * math.sin(lat),
            ]
        )


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
        self.sigma_arcsec = _per_point(self.sigma_arcsec, 2.0, n)
        self.mag = _per_point(self.mag, np.nan, n)
        if not (self.ra_deg.size == self.dec_deg.size == n):
            raise ValueError(
                f"tracklet {self.uuid}: {n} times but {self.ra_deg.size} RA and "
                f"{self.dec_deg.size} Dec values"
            )
        if (np.abs(self.dec_deg) > 90.0).any():
            raise ValueError(f"tracklet {self.uuid}: declination outside [-90, 90] degrees")
        # in time order (a stable sort: already ordered points, ties included, stay put)
        if n > 1 and not (self.utc[1:] >= self.utc[:-1]).all():
            order = np.argsort(self.utc, kind="stable")
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


def _per_point(values, default: float, n: int) -> np.ndarray:
    """``values`` (a number, or one per point; ``None``: ``default``) as a fresh float
    array of ``n`` points."""
    if values is None:
        return np.full(n, default)
    values = np.asarray(values, dtype=np.float64)
    if values.shape == (n,):
        return values.copy()
    return np.broadcast_to(values, (n,)).copy()


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


TRACKING_MODES = ("sidereal", "rate", "stare")
TARGET_KINDS = ("object", "field")
TASK_REPORT_STATUSES = ("executed", "skipped", "failed")


def _iso_utc(t) -> str:
    return np.datetime_as_string(np.datetime64(t, "us"), unit="us") + "Z"


def _wire_time(value, name: str) -> np.datetime64:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 UTC string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1]
    elif text.endswith("+00:00"):
        text = text[:-6]
    try:
        return np.datetime64(text, "us")
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an ISO 8601 UTC time") from None


@dataclass
class Task:
    """One pointing the data center asks a station to make.

    Wire form (``GET /api/v1/tasks``)::

        {"task_id": "...", "station": "IRN1", "start": ISO UTC, "end": ISO UTC,
         "target": {"kind": "object" | "field", "norad_id": int | null, "name": str | null},
         "ra_deg": float, "dec_deg": float, "tracking": "sidereal" | "rate" | "stare",
         "rate_ra_arcsec_s": float | null, "rate_dec_arcsec_s": float | null,
         "exposure_s": float, "frames": int, "priority": int, "reason": str}

    ``start``/``end`` bound the frames (the slew and settle come before ``start``).
    ``ra_deg``/``dec_deg``: astrometric pointing (ICRS axes) at ``start``. Tracking:
    ``sidereal`` follows the stars; ``stare`` parks the mount (hour angle and
    declination fixed, for GEO objects); ``rate`` follows the stars plus the rates
    ``rate_ra_arcsec_s`` = d(RA)/dt and ``rate_dec_arcsec_s`` = d(Dec)/dt, in
    arcseconds of the coordinate per second (RA not multiplied by cos Dec), valid at
    ``start``. ``priority``: higher first (400 follow-up of uncorrelated tracks, 300
    suspects, 200-299 analyst requests, 100 catalogue upkeep and GEO-belt survey, 50
    empty-belt survey).
    """

    task_id: str
    station: str
    start: np.datetime64
    end: np.datetime64
    kind: str
    ra_deg: float
    dec_deg: float
    tracking: str
    exposure_s: float
    frames: int
    priority: int
    reason: str
    norad_id: int | None = None
    name: str | None = None
    rate_ra_arcsec_s: float | None = None
    rate_dec_arcsec_s: float | None = None

    def __post_init__(self):
        self.start = np.datetime64(self.start, "us")
        self.end = np.datetime64(self.end, "us")
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"task {self.task_id}: target kind {self.kind!r} is not one of "
                             f"{', '.join(TARGET_KINDS)}")  # fmt: skip
        if self.tracking not in TRACKING_MODES:
            raise ValueError(f"task {self.task_id}: tracking {self.tracking!r} is not one of "
                             f"{', '.join(TRACKING_MODES)}")  # fmt: skip
        if self.end < self.start:
            raise ValueError(f"task {self.task_id}: end is before start")
        if not -90.0 <= self.dec_deg <= 90.0:
            raise ValueError(f"task {self.task_id}: dec_deg outside [-90, 90]")
        self.ra_deg = float(self.ra_deg) % 360.0

    def to_wire(self) -> dict:
        def opt(x):
            return None if x is None else float(x)

        return {
            "task_id": self.task_id,
            "station": self.station,
            "start": _iso_utc(self.start),
            "end": _iso_utc(self.end),
            "target": {
                "kind": self.kind,
                "norad_id": None if self.norad_id is None else int(self.norad_id),
                "name": self.name,
            },
            "ra_deg": float(self.ra_deg),
            "dec_deg": float(self.dec_deg),
            "tracking": self.tracking,
            "rate_ra_arcsec_s": opt(self.rate_ra_arcsec_s),
            "rate_dec_arcsec_s": opt(self.rate_dec_arcsec_s),
            "exposure_s": float(self.exposure_s),
            "frames": int(self.frames),
            "priority": int(self.priority),
            "reason": self.reason,
        }

    @classmethod
    def from_wire(cls, data: dict) -> Task:
        """Build from the wire form; raises ``ValueError`` naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("a task must be a JSON object")
        target = data.get("target")
        if not isinstance(target, dict):
            raise ValueError("task: 'target' must be an object")
        try:
            return cls(
                task_id=str(data["task_id"]),
                station=str(data["station"]),
                start=_wire_time(data["start"], "start"),
                end=_wire_time(data["end"], "end"),
                kind=target["kind"],
                norad_id=None if target.get("norad_id") is None else int(target["norad_id"]),
                name=target.get("name"),
                ra_deg=float(data["ra_deg"]),
                dec_deg=float(data["dec_deg"]),
                tracking=data["tracking"],
                rate_ra_arcsec_s=None if data.get("rate_ra_arcsec_s") is None
                else float(data["rate_ra_arcsec_s"]),
                rate_dec_arcsec_s=None if data.get("rate_dec_arcsec_s") is None
                else float(data["rate_dec_arcsec_s"]),
                exposure_s=float(data["exposure_s"]),
                frames=int(data["frames"]),
                priority=int(data["priority"]),
                reason=str(data.get("reason") or ""),
            )  # fmt: skip
        except KeyError as exc:
            raise ValueError(f"task is missing {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"task: {exc}") from None


@dataclass
class TaskReport:
    """What a station did with a task (``POST /api/v1/tasks/{task_id}/report``)."""

    status: str
    frames: int = 0
    tracklets: int = 0
    reason: str | None = None

    def __post_init__(self):
        if self.status not in TASK_REPORT_STATUSES:
            raise ValueError(f"status {self.status!r} is not one of "
                             f"{', '.join(TASK_REPORT_STATUSES)}")  # fmt: skip
        for key in ("frames", "tracklets"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        if self.reason is not None and not isinstance(self.reason, str):
            raise ValueError("reason must be a string or null")

    def to_wire(self) -> dict:
        return {"status": self.status, "frames": self.frames, "tracklets": self.tracklets,
                "reason": self.reason}  # fmt: skip

    @classmethod
    def from_wire(cls, data: dict) -> TaskReport:
        if not isinstance(data, dict):
            raise ValueError("a report must be a JSON object")
        unknown = set(data) - {"status", "frames", "tracklets", "reason"}
        if unknown:
            raise ValueError(f"unknown report field(s): {', '.join(sorted(unknown))}")
        if "status" not in data:
            raise ValueError("report is missing 'status'")
        return cls(status=data["status"], frames=data.get("frames", 0),
                   tracklets=data.get("tracklets", 0), reason=data.get("reason"))  # fmt: skip
