"""The ``[agent]`` tables of a station file: how ``aposos station run`` runs the station.

::

    [agent]
    work_dir = "~/aposos/IRN1"   # agent.sqlite (outbox, frames, tasks), archive.zarr,
                                 # quarantine/, incoming/ (frames the agent takes itself)
    source = "folder"            # folder | simulator | indi
    heartbeat_s = 60             # heartbeat period
    field_max_frames = 20        # a field's frames are reduced and linked together ...
    field_idle_s = 30            # ... when it holds this many, or no frame came for this
                                 #     long (keep it well above the time between frames;
                                 #     time reducing and files being written do not count)
    log_file = ""                # log here instead of stderr (optional)
    archive = true               # keep frames and products in work_dir/archive.zarr

    [agent.folder]               # the camera software writes FITS files here
    path = "/data/camera"
    settle_s = 2.0               # a file's size must stay the same this long
    incomplete_timeout_s = 120   # a file still incomplete after this is quarantined
    calib = ""                   # folder of bias/dark/flat frames (optional)

    [agent.simulator]            # the built-in sky simulator (demos, tests)
    catalogue = "active.3le"     # satellites (TLE/3LE or OMM)
    start = "2020-10-02T18:00:00"   # simulated clock start (UTC), or "now"
    minutes = 600
    mode = "sidereal"            # sidereal | rate | stare | mixed
    seed = 0
    pace = "fast"                # fast (as quick as frames render) | realtime

    [agent.indi]                 # camera and mount through an INDI server
    host = "127.0.0.1"
    port = 7624
    camera = "CCD Simulator"
    mount = "Telescope Simulator"
    exposure_s = 2.0
    cadence_s = 6.0
    fields = [[300.0, 20.0]]     # survey fields (RA, Dec degrees) when no task is given
    visit_frames = 10

    [agent.upload]
    batch = 50                   # tracklets per request
    timeout_s = 30
    backoff_initial_s = 2        # exponential backoff with jitter between failures
    backoff_max_s = 600

Relative paths are taken from the station file's folder. :func:`load_agent_config`
returns every problem of the station file and of these tables in one ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aposos.station.config import StationConfig, _Validator

__all__ = [
    "AgentConfig",
    "FolderSourceConfig",
    "IndiSourceConfig",
    "SimulatorSourceConfig",
    "UploadConfig",
    "load_agent_config",
]

SOURCES = ("folder", "simulator", "indi")
SIM_MODES = ("sidereal", "rate", "stare", "mixed")


@dataclass(frozen=True)
class FolderSourceConfig:
    path: Path
    settle_s: float = 2.0
    incomplete_timeout_s: float = 120.0
    calib: Path | None = None


@dataclass(frozen=True)
class SimulatorSourceConfig:
    catalogue: Path
    start: np.datetime64
    minutes: float = 600.0
    mode: str = "sidereal"
    seed: int = 0
    pace: str = "fast"


@dataclass(frozen=True)
class IndiSourceConfig:
    host: str = "127.0.0.1"
    port: int = 7624
    camera: str = "CCD Simulator"
    mount: str = "Telescope Simulator"
    exposure_s: float = 2.0
    cadence_s: float = 6.0
    fields: tuple[tuple[float, float], ...] = ()
    visit_frames: int = 10
    timeout_s: float = 60.0


@dataclass(frozen=True)
class UploadConfig:
    batch: int = 50
    timeout_s: float = 30.0
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 600.0


@dataclass(frozen=True)
class AgentConfig:
    """The station and how its agent runs."""

    station: StationConfig
    work_dir: Path
    source: str
    folder: FolderSourceConfig | None = None
    simulator: SimulatorSourceConfig | None = None
    indi: IndiSourceConfig | None = None
    upload: UploadConfig = field(default_factory=UploadConfig)
    heartbeat_s: float = 60.0
    field_max_frames: int = 20
    field_idle_s: float = 30.0
    log_file: Path | None = None
    archive: bool = True

    @property
    def database(self) -> Path:
        return self.work_dir / "agent.sqlite"

    @property
    def quarantine(self) -> Path:
        return self.work_dir / "quarantine"

    @property
    def incoming(self) -> Path:
        return self.work_dir / "incoming"

    @property
    def archive_path(self) -> Path:
        return self.work_dir / "archive.zarr"


class _AgentValidator(_Validator):
    """The station file's validator, over the flattened ``[agent.*]`` tables."""

    def __init__(self, tables: dict):
        self.data = tables
        self.problems: list[str] = []
        self._seen: dict[str, set[str]] = {}

    def path(self, base: Path, table, key, *, required=True, default=None):
        value = self.text(table, key, required=required, default=None)
        if value is None:
            return default
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p


def _flatten(agent: dict) -> dict:
    tables = {"agent": {k: v for k, v in agent.items() if not isinstance(v, dict)}}
    for k, v in agent.items():
        if isinstance(v, dict):
            tables[f"agent.{k}"] = v
    return tables


def load_agent_config(
    path: str | Path, *, source: str | None = None, check_token: bool = True
) -> AgentConfig:
    """Read a station file with its ``[agent]`` tables; ``source`` overrides
    ``agent.source``. Raises ``ValueError`` listing every problem, or
    ``FileNotFoundError``."""
    path = Path(path)
    problems: list[str] = []
    try:
        station = StationConfig.load(path)
    except ValueError as exc:
        text = str(exc)
        if "problem(s) in station file:" not in text:
            raise
        problems += [p.strip()[2:] for p in text.split("\n")[1:] if p.strip().startswith("- ")]
        import tomllib

        with path.open("rb") as fh:
            station_doc = tomllib.load(fh)
        station = None
    else:
        station_doc = {"agent": station.extra.get("agent", {})}
    agent = station_doc.get("agent", {})
    if not isinstance(agent, dict):
        problems.append("agent must be a table")
        agent = {}
    base = path.parent
    v = _AgentValidator(_flatten(agent))
    chosen = source or v.choice("agent", "source", SOURCES, required=False, default="folder")
    if source is not None:
        v._seen.setdefault("agent", set()).add("source")
        if source not in SOURCES:
            v.problems.append(f"source {source!r} must be one of {', '.join(SOURCES)}")
    work_dir = v.path(base, "agent", "work_dir")
    heartbeat_s = v.number("agent", "heartbeat_s", lo=1, hi=3600, required=False, default=60.0)
    max_frames = v.integer("agent", "field_max_frames", lo=2, hi=1000, required=False, default=20)
    idle_s = v.number("agent", "field_idle_s", lo=0.1, hi=3600, required=False, default=30.0)
    log_file = v.path(base, "agent", "log_file", required=False)
    archive = v.data.get("agent", {}).get("archive", True)
    v._seen["agent"].add("archive")
    if not isinstance(archive, bool):
        v.problems.append(f"agent.archive must be true or false, got {archive!r}")
    upload = UploadConfig(
        batch=v.integer("agent.upload", "batch", lo=1, hi=10000, required=False, default=50),
        timeout_s=v.number("agent.upload", "timeout_s", lo=0.1, hi=600, required=False,
                           default=30.0),
        backoff_initial_s=v.number("agent.upload", "backoff_initial_s", lo=0.01, hi=3600,
                                   required=False, default=2.0),
        backoff_max_s=v.number("agent.upload", "backoff_max_s", lo=0.01, hi=86400,
                               required=False, default=600.0),
    )  # fmt: skip
    folder = simulator = indi = None
    if chosen == "folder":
        folder = FolderSourceConfig(
            path=v.path(base, "agent.folder", "path"),
            settle_s=v.number("agent.folder", "settle_s", lo=0, hi=600, required=False,
                              default=2.0),
            incomplete_timeout_s=v.number("agent.folder", "incomplete_timeout_s", lo=0, hi=86400,
                                          required=False, default=120.0),
            calib=v.path(base, "agent.folder", "calib", required=False),
        )  # fmt: skip
        if folder.path is not None and not folder.path.is_dir():
            v.problems.append(f"agent.folder.path: {folder.path} is not a folder")
        if folder.calib is not None and not folder.calib.is_dir():
            v.problems.append(f"agent.folder.calib: {folder.calib} is not a folder")
    elif chosen == "simulator":
        simulator = SimulatorSourceConfig(
            catalogue=v.path(base, "agent.simulator", "catalogue"),
            start=_start_time(v),
            minutes=v.number("agent.simulator", "minutes", lo=0.01, hi=1440, required=False,
                             default=600.0),
            mode=v.choice("agent.simulator", "mode", SIM_MODES, required=False,
                          default="sidereal"),
            seed=v.integer("agent.simulator", "seed", lo=0, hi=2**31, required=False, default=0),
            pace=v.choice("agent.simulator", "pace", ("fast", "realtime"), required=False,
                          default="fast"),
        )  # fmt: skip
        cadence = station.simulator.cadence_s if station is not None else None
        if simulator.pace == "realtime" and cadence and idle_s is not None and idle_s <= cadence:
            v.problems.append(f"agent.field_idle_s {idle_s:g} must be longer than the "
                              f"simulator's cadence_s {cadence:g}")  # fmt: skip
        if simulator.catalogue is not None and not simulator.catalogue.is_file():
            v.problems.append(f"agent.simulator.catalogue: no file at {simulator.catalogue}")
    elif chosen == "indi":
        indi = IndiSourceConfig(
            host=v.text("agent.indi", "host", required=False, default="127.0.0.1"),
            port=v.integer("agent.indi", "port", lo=1, hi=65535, required=False, default=7624),
            camera=v.text("agent.indi", "camera", required=False, default="CCD Simulator"),
            mount=v.text("agent.indi", "mount", required=False, default="Telescope Simulator"),
            exposure_s=v.number("agent.indi", "exposure_s", lo=0.001, hi=3600, required=False,
                                default=2.0),
            cadence_s=v.number("agent.indi", "cadence_s", lo=0, hi=3600, required=False,
                               default=6.0),
            fields=_fields(v),
            visit_frames=v.integer("agent.indi", "visit_frames", lo=1, hi=10000, required=False,
                                   default=10),
            timeout_s=v.number("agent.indi", "timeout_s", lo=1, hi=3600, required=False,
                               default=60.0),
        )  # fmt: skip
    if indi is not None and None not in (indi.cadence_s, indi.exposure_s, idle_s):
        if idle_s <= indi.cadence_s + indi.exposure_s:
            v.problems.append(
                f"agent.field_idle_s {idle_s:g} must be longer than the time "
                f"between INDI frames ({indi.cadence_s + indi.exposure_s:g} s)"
            )
    for table in list(v.data):
        if table not in ("agent", "agent.upload", f"agent.{chosen}") and table.startswith("agent."):
            v._seen[table] = set(v.data[table])  # another source's settings: kept, unused
    v._seen.setdefault("agent", set())
    for table, keys in v.data.items():
        known = v._seen.get(table)
        if known is None:
            v.problems.append(f"[{table}] is not a known table")
            continue
        for key in keys:
            if key not in known:
                v.problems.append(f"{table}.{key} is not a known key")
    problems += v.problems
    if station is not None and check_token:
        problems += _token_problems(station) + _link_problems(station)
    if problems:
        lines = "\n  - ".join(problems)
        raise ValueError(f"{path}: {len(problems)} problem(s) in station file:\n  - {lines}")
    return AgentConfig(
        station=station, work_dir=work_dir, source=chosen, folder=folder,
        simulator=simulator, indi=indi, upload=upload, heartbeat_s=heartbeat_s,
        field_max_frames=max_frames, field_idle_s=idle_s, log_file=log_file, archive=archive,
    )  # fmt: skip


def _start_time(v: _AgentValidator) -> np.datetime64 | None:
    text = v.text("agent.simulator", "start", required=False, default="now")
    if text is None:
        return None
    if text.strip().lower() == "now":
        return np.datetime64("now", "us")
    try:
        return np.datetime64(text.strip().rstrip("Z"), "us")
    except ValueError:
        v.problems.append(f"agent.simulator.start = {text!r} is not an ISO 8601 UTC time")
        return None


def _fields(v: _AgentValidator) -> tuple[tuple[float, float], ...]:
    found, value = v._get("agent.indi", "fields", False)
    if not found:
        return ()
    ok = isinstance(value, list) and all(
        isinstance(f, list) and len(f) == 2 and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in f
        ) and -90 <= f[1] <= 90
        for f in value
    )  # fmt: skip
    if not ok:
        v.problems.append("agent.indi.fields must be a list of [ra_deg, dec_deg] pairs")
        return ()
    return tuple((float(f[0]) % 360.0, float(f[1])) for f in value)


def _link_problems(station: StationConfig) -> list[str]:
    from aposos.station.uplink import LinkError, tls_verify

    try:
        tls_verify(station.center.url, station.ca_path)
    except LinkError as exc:
        return [f"center: {exc}"]
    return []


def _token_problems(station: StationConfig) -> list[str]:
    p = station.token_path
    if not p.is_file():
        return [f"center.token_file: no token file at {p}"]
    try:
        if not p.read_text(encoding="utf-8").strip():
            return [f"center.token_file: {p} is empty"]
    except OSError as exc:
        return [f"center.token_file: cannot read {p}: {exc.strerror}"]
    return []
