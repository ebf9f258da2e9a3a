"""Data-center configuration: ``configs/center.toml``.

Relative paths in the file are taken from the folder of the file itself, so a
configuration can be moved together with its data. The database URL may also come
from the environment variable ``APOSOS_CENTER_DATABASE`` (so a PostgreSQL password
need not sit in a file under version control).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import field, replace
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

__all__ = ["CenterConfig", "WorkerConfig", "load_config"]

DATABASE_ENV = "APOSOS_CENTER_DATABASE"
SQLITE_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
# pydantic checks every field's type when a config is made (a file, a test, replace());
# strict: "5" is not an integer, true is not a number; unknown keys are refused
STRICT = ConfigDict(strict=True, extra="forbid")
# a folder or file: a path, or a string from the TOML file
PathLike = Annotated[Path, Field(strict=False)]


@dataclass(frozen=True, config=STRICT)
class WorkerConfig:
    """The background correlation worker.

    Parameters
    ----------
    enabled : run the worker inside ``aposos center serve``.
    batch_size : tracklets claimed from the queue at a time.
    poll_seconds : sleep between looks at an empty queue.
    lease_seconds : a claimed job whose lease is not renewed for this long (its worker
        died) goes back to the queue.
    process : run it in a child process of the server (so that correlating does not
        compete with request handling for the interpreter); false: a thread.
    nice : the child process's scheduling priority below the server's (0..19), so
        uploads get the CPU first. 19 by default: on two cores the server (one
        interpreter) uses about one, so the worker still gets the other when it is
        free; 20 stations back to back on a quiet machine: 148 uploads/s, p99 249 ms
        at 19 against 127/s, p99 283 ms at 5.
    dask_scheduler : the Dask cluster (``tcp://host:8786``) that ``aposos report
        nightly --recorrelate`` correlates the night on; empty: in its own process.
    """

    enabled: bool = True
    batch_size: int = 64
    poll_seconds: float = 1.0
    lease_seconds: float = 60.0
    process: bool = True
    nice: int = 19
    dask_scheduler: str = ""


@dataclass(frozen=True, config=STRICT)
class CenterConfig:
    """Settings of the data center.

    Parameters
    ----------
    data_dir : folder of the SQLite file and the catalogue snapshots (zarr).
    database : SQLAlchemy URL; empty means ``sqlite:///<data_dir>/center.sqlite``.
    host, port : where ``aposos center serve`` listens.
    stations_dir : folder of the ``stations/*.toml`` files (station sites).
    max_upload_bytes : uploads above this size get 413 without being read.
    max_catalogue_bytes : the same for catalogue files.
    page_size, max_page_size : list pagination.
    max_days_after_epoch, max_days_before_epoch : a catalogue snapshot suits a
        tracklet whose time lies within this window around the snapshot's median
        element-set epoch.
    sqlite_synchronous : SQLite ``PRAGMA synchronous`` (FULL: acknowledged uploads
        survive power loss).
    upload_time_budget_s : reading one upload may take this long, else it is refused.
    rejected_retention_days : raw copies of rejected and quarantined uploads are kept
        this long (for the record), then dropped.
    heartbeat_retention_days : the stations' heartbeats (one a minute per station) are
        kept this long after they arrived, then dropped (0: kept forever); the nightly
        report's 7-night trends need at least 14 (7 nights, and 7 days before them).
    station_uploads_per_minute, station_upload_burst : per-station rate limit of
        uploads (a token bucket; 0: no limit); over it the answer is 429.
    station_quota_bytes : raw bytes of accepted uploads a station may keep (0: no
        limit); over it uploads get 403.
    snapshot_min_fraction : a catalogue with fewer objects than this fraction of the
        newest snapshot is refused (an admin can force it).
    snapshot_max_epoch_regress_days : a catalogue whose median epoch is this much
        older than the newest snapshot's is refused (an admin can force it).
    server_processes : processes serving the API on the one port (each with its own
        interpreter, so uploads use more than one core; SQLite writers of all of them
        queue on one lock); their parent runs the correlation worker and the
        housekeeping. Per-station rate limits are kept by each process, so with N
        processes a station may get up to N times its rate.
    ssl_certfile, ssl_keyfile : serve HTTPS with this certificate chain and key (PEM).
    proxy_headers : behind a reverse proxy, trust its ``X-Forwarded-For`` and
        ``X-Forwarded-Proto`` headers, from the addresses in ``forwarded_allow_ips``.
    """

    data_dir: PathLike = Path("center-data")
    database: str = ""
    host: str = "127.0.0.1"
    port: int = 8600
    stations_dir: PathLike = Path("stations")
    max_upload_bytes: int = 10 * 1024 * 1024
    max_catalogue_bytes: int = 200 * 1024 * 1024
    page_size: int = 100
    max_page_size: int = 1000
    max_days_after_epoch: float = 10.0
    max_days_before_epoch: float = 3.0
    sqlite_synchronous: str = "FULL"
    upload_time_budget_s: float = 20.0
    rejected_retention_days: float = 7.0
    heartbeat_retention_days: float = 30.0
    station_uploads_per_minute: float = 0.0
    station_upload_burst: int = 60
    station_quota_bytes: int = 0
    snapshot_min_fraction: float = 0.5
    snapshot_max_epoch_regress_days: float = 30.0
    server_processes: int = 1
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def __post_init__(self):
        problems = []
        if self.max_upload_bytes <= 0 or self.max_catalogue_bytes <= 0:
            problems.append("max_upload_bytes and max_catalogue_bytes must be positive")
        if not (0 < self.page_size <= self.max_page_size):
            problems.append("page_size must be in 1..max_page_size")
        if self.sqlite_synchronous.upper() not in SQLITE_SYNC_MODES:
            problems.append(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNC_MODES)}")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            problems.append("ssl_certfile and ssl_keyfile go together")
        if self.upload_time_budget_s <= 0 or self.rejected_retention_days < 0:
            problems.append("upload_time_budget_s must be positive, rejected_retention_days >= 0")
        if self.heartbeat_retention_days != 0 and not self.heartbeat_retention_days >= 14:
            problems.append(
                "heartbeat_retention_days must be 0 (keep every heartbeat) or at least 14"
                " (the nightly report's trends look back 7 nights and 7 days before them)"
            )
        if self.worker.batch_size <= 0 or self.worker.lease_seconds <= 0:
            problems.append("worker batch_size and lease_seconds must be positive")
        if not 1 <= self.server_processes <= 64:
            problems.append("server_processes must be within 1..64")
        if not 0 <= self.worker.nice <= 19:
            problems.append("worker nice must be within 0..19")
        if problems:
            raise ValueError("bad center configuration: " + "; ".join(problems))

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in force (environment first, then file, then default)."""
        url = os.environ.get(DATABASE_ENV) or self.database
        if url:
            return url
        return f"sqlite:///{Path(self.data_dir) / 'center.sqlite'}"

    @property
    def catalogue_dir(self) -> Path:
        """Where catalogue snapshots (zarr) are written."""
        return Path(self.data_dir) / "catalogues"

    def with_overrides(self, **changes) -> CenterConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        try:
            return replace(self, **changes)
        except ValidationError as exc:
            raise ValueError(_problem(exc, "center")) from None


def _section(doc: dict, name: str, path: Path) -> dict:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [{name}] must be a table")
    return table


KINDS = {int: "an integer", float: "a number", bool: "true or false"}


def _problem(exc: ValidationError, name: str) -> str:
    """Pydantic's problems as our one line: unknown keys all named, else the first
    wrong value with what its key expects."""
    errors = exc.errors(include_url=False)
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "unexpected_keyword_argument")
    if unknown:
        return f"[{name}] has unknown keys: {', '.join(unknown)}"
    first = errors[0]
    if first["type"] == "value_error":  # __post_init__: the checks across keys
        return str(first["ctx"]["error"])
    key = str(first["loc"][0])
    cls = CenterConfig if name == "center" else WorkerConfig
    kind = KINDS.get(cls.__pydantic_fields__[key].annotation, "a string")
    return f"[{name}] {key} must be {kind}, got {first['input']!r}"


def _build(cls, table: dict, name: str, path: Path):
    try:
        return cls(**table)
    except ValidationError as exc:
        raise ValueError(f"{path}: {_problem(exc, name)}") from None


def load_config(path: str | os.PathLike | None = None) -> CenterConfig:
    """Read a center configuration file (TOML); ``None`` gives the defaults.

    Parameters
    ----------
    path : the TOML file, with ``[center]`` and optionally ``[worker]`` tables.

    Returns
    -------
    CenterConfig, with relative paths resolved against the file's folder.

    Examples
    --------
    >>> load_config(None).port
    8600
    """
    if path is None:
        return CenterConfig()
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    center = _section(doc, "center", path)
    worker = _build(WorkerConfig, _section(doc, "worker", path), "worker", path)
    config = _build(CenterConfig, {**center, "worker": worker}, "center", path)
    base = path.resolve().parent
    changes = {}
    for key in ("data_dir", "stations_dir"):  # relative to the file's folder
        changes[key] = (base / getattr(config, key).expanduser()).resolve()
    for key in ("ssl_certfile", "ssl_keyfile"):
        if getattr(config, key):
            changes[key] = str((base / Path(getattr(config, key)).expanduser()).resolve())
    db = config.database
    if db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
        rel = db[len("sqlite:///") :]
        if rel and rel != ":memory:":
            changes["database"] = f"sqlite:///{base / rel}"
    return replace(config, **changes)
