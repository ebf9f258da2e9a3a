"""A simulated night of the whole network, run as an operator would run it.

1. A data center (``aposos center serve``) on loopback, with its own SQLite database
   under ``OUT/center/data``; an administrator; the element-set catalogue put over HTTP.
2. The night's joint plan (``aposos center plan``): tasks for every station.
3. Each station enrolled with a one-time code (``aposos center enrol-code``, then
   ``aposos station enrol``), so it holds its own token; then three station agents
   (``aposos station run --source simulator``) as subprocesses: the simulated cameras
   follow the center's tasks, the agents reduce and archive the frames and deliver
   the tracklets through their outboxes while the center correlates them.
4. The nightly report (``aposos report nightly``), a summary table and the disk used.

Today's sky: the agents' simulator draws the satellites from the 2026-03-18 CelesTrak
snapshot; the center identifies them against the one of the day before, so the report
shows real element-set error (Starlink trains, GEO clusters, manoeuvres).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOGUES = REPO / "tests" / "data" / "shared" / "catalogues"
SKY_CATALOGUE = CATALOGUES / "celestrak-active-2026-03-18.3le.xz"
CENTER_CATALOGUE = CATALOGUES / "celestrak-active-2026-03-17.3le.xz"
NIGHT = "2026-03-18"  # the date every station's night starts on (local evening)
APOSOS = [sys.executable, "-m", "aposos"]


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where its log is."""


def _aposos(*args: str, log: Path | None = None) -> str:
    """Run one ``aposos`` command as an operator would; its stdout, or DemoError."""
    run = subprocess.run([*APOSOS, *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ aposos {' '.join(args)}\n{run.stdout}{run.stderr}\n")
    if run.returncode:
        last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise DemoError(f"aposos {' '.join(args[:2])} failed ({run.returncode}): {last}")
    return run.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Center:
    """``aposos center serve`` in a subprocess, stopped on exit."""

    def __init__(self, folder: Path, stations_dir: Path):
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "center.toml"
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "[center]\n"
            # absolute: relative paths in a config are taken from the config's folder
            f'data_dir = "{(folder / "data").resolve().as_posix()}"\n'
            f'stations_dir = "{stations_dir.resolve().as_posix()}"\n'
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            "[worker]\nenabled = true\npoll_seconds = 0.2\n"
        )
        self.proc = None

    def cli(self, *args: str) -> str:
        return _aposos("center", *args, "--config", str(self.config), log=self.folder / "admin.log")

    def __enter__(self):
        import httpx

        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [*APOSOS, "center", "serve", "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(f"the center exited at start; see {self.folder / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise DemoError(f"the center did not start; see {self.folder / 'server.log'}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ---------------------------------------------------------------------- stations


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string is a JSON string


def _toml(doc: dict) -> str:
    lines: list[str] = []

    def table(name: str, tab: dict) -> None:
        lines.append(f"\n[{name}]")
        subs = [(k, v) for k, v in tab.items() if isinstance(v, dict)]
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in tab.items() if not isinstance(v, dict))
        for k, v in subs:
            table(f"{name}.{k}", v)

    for name, tab in doc.items():
        table(name, tab)
    return "\n".join(lines).lstrip() + "\n"


@dataclass
class _Station:
    code: str
    folder: Path
    file: Path  # the station file with its [center] and [agent] tables
    start: str  # simulated clock start, UTC
    proc: subprocess.Popen | None = None

    @property
    def database(self) -> Path:
        return self.folder / "agent" / "agent.sqlite"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"


def _station_file(source: Path, folder: Path, url: str, start: str, minutes: float,
                  *, archive: bool) -> Path:  # fmt: skip
    """A copy of station file ``source`` that delivers to ``url`` and whose agent takes
    frames from the sky simulator from ``start`` for ``minutes``."""
    doc = tomllib.loads(source.read_text())
    doc.pop("agent", None)
    doc["center"] = {"url": url, "token_file": "station.token"}
    doc["agent"] = {
        "work_dir": "agent",
        "source": "simulator",
        "heartbeat_s": 10.0,
        "log_file": "agent.log",
        "archive": archive,
        "simulator": {"catalogue": SKY_CATALOGUE.as_posix(), "start": start,
                      "minutes": minutes, "mode": "mixed", "seed": 1, "pace": "fast"},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "station.toml"
    path.write_text(f"# the demo's copy of {source}\n" + _toml(doc))
    return path


def _night_starts(plan: dict, tracking: str = "sidereal") -> dict[str, str]:
    """Where each station's simulated night begins (UTC, no zone letter; exactly the
    task's start, or the simulator's clock would open before it): its first task
    with ``tracking`` in the plan's JSON, else its first task. Sidereal fields come
    first because they give tracklets: the reduction does not yet link the GEO stares
    and rate-tracked frames the plan puts at dusk."""
    first: dict[str, str] = {}
    chosen: dict[str, str] = {}
    for task in plan.get("tasks", []):
        code, t = task["station"], str(task["start"]).rstrip("Z")  # to the microsecond
        if code not in first or t < first[code]:
            first[code] = t
        if task.get("tracking") == tracking and (code not in chosen or t < chosen[code]):
            chosen[code] = t
    return {code: chosen.get(code, t) for code, t in first.items()}


def _read_agent(database: Path) -> dict:
    """What an agent's state file says (read-only; the agent may be running)."""
    out = {"frames": 0, "solved": 0, "delivered": 0, "waiting": 0, "rejected": 0,
           "sim_clock": None}  # fmt: skip
    if not database.is_file():
        return out
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        for state, n in db.execute("SELECT state, COUNT(*) FROM frames GROUP BY state"):
            out["frames"] += n if state != "calibration" else 0
            out["solved"] += n if state == "solved" else 0
        row = db.execute(
            "SELECT SUM(delivered_at IS NOT NULL), SUM(delivered_at IS NULL AND rejected IS NULL),"
            " SUM(rejected IS NOT NULL) FROM outbox"
        ).fetchone()
        out["delivered"], out["waiting"], out["rejected"] = (int(x or 0) for x in row)
        clock = db.execute("SELECT value FROM meta WHERE key = 'sim_clock'").fetchone()
        out["sim_clock"] = clock[0] if clock else None
    except sqlite3.OperationalError:  # the agent is still creating its tables
        pass
    finally:
        db.close()
    return out


def _delete_done_frames(database: Path) -> tuple[int, int]:
    """Delete the FITS files of frames whose field the agent has committed (reduced,
    tracklets in the outbox); returns (files, bytes). Open fields' frames stay: the
    agent reduces them again after a crash."""
    if not database.is_file():
        return 0, 0
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        paths = [
            Path(p) for (p,) in db.execute("SELECT path FROM frames WHERE state != 'captured'")
        ]
    except sqlite3.OperationalError:
        paths = []
    finally:
        db.close()
    files = size = 0
    for path in paths:
        try:
            n = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        files, size = files + 1, size + n
    return files, size


def _run_agents(stations: list[_Station], minutes: float, timeout_s: float, *,
                archive: bool) -> dict[str, tuple[int, int]]:  # fmt: skip
    """Start every agent, show each one's simulated night as a progress bar, wait.
    Without ``archive``, frames are deleted once committed; returns (files, bytes)
    deleted per station."""
    import numpy as np
    from tqdm import tqdm

    for st in stations:
        st.proc = subprocess.Popen(
            [*APOSOS, "station", "run", "--station", str(st.file), "--source", "simulator"],
            stdout=subprocess.DEVNULL, stderr=st.folder.joinpath("agent.err").open("ab"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    total = round(minutes * 60)
    bars = {
        st.code: tqdm(
            total=total,
            desc=f"{st.code} night",
            unit="s",
            position=k,
            leave=True,
            disable=None,
            bar_format="{desc}: {bar} {n_fmt}/{total_fmt} s simulated {postfix}",
        )  # fmt: skip
        for k, st in enumerate(stations)
    }
    deadline = time.monotonic() + timeout_s
    deleted = {st.code: (0, 0) for st in stations}
    try:
        while True:
            running = [st for st in stations if st.proc.poll() is None]
            for st in stations:
                if not archive:
                    files, size = _delete_done_frames(st.database)
                    before = deleted[st.code]
                    deleted[st.code] = (before[0] + files, before[1] + size)
                state = _read_agent(st.database)
                if state["sim_clock"]:
                    done = np.datetime64(state["sim_clock"]) - np.datetime64(st.start)
                    bars[st.code].n = int(min(total, done / np.timedelta64(1, "s")))
                bars[st.code].set_postfix_str(
                    f"{state['frames']} frames, {state['delivered']} tracklets delivered",
                    refresh=True,
                )
            if not running:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"the station agents did not finish in {timeout_s:g} s")
            time.sleep(1.0)
    finally:
        for bar in bars.values():
            bar.close()
        for st in stations:
            if st.proc.poll() is None:
                st.proc.send_signal(signal.SIGTERM)
                try:
                    st.proc.wait(60)
                except subprocess.TimeoutExpired:
                    st.proc.kill()
                    st.proc.wait(10)
    failed = [st for st in stations if st.proc.returncode]
    if failed:
        st = failed[0]
        raise DemoError(f"the {st.code} agent exited with status {st.proc.returncode}; "
                        f"see {st.log} and {st.folder / 'agent.err'}")  # fmt: skip
    return deleted


# ---------------------------------------------------------------------- the night


def _wait_for_correlation(client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queue = client.healthz().get("queue", {})
        if not queue.get("pending", 0) and not queue.get("running", 0):
            return
        time.sleep(0.5)
    raise DemoError(f"the center's correlation queue did not empty in {timeout_s:g} s")


def disk_usage(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def run_demo(out: str | os.PathLike, *, minutes: float = 3.0, stations_dir=None,
             archive: bool = False, say=print, timeout_s: float = 3600.0) -> dict:  # fmt: skip
    """Run the simulated night; returns the demo's summary (also ``OUT/demo-summary.json``).

    ``archive``: keep every frame's pixels in each agent's zarr archive (the agent
    then deletes the FITS files); without it (the default) the demo deletes each frame
    once the agent has committed its field, as a station's housekeeping would.
    """
    from aposos.center.client import CenterClient, read_token_file

    t0 = time.monotonic()
    out = Path(out).resolve()
    stations_dir = Path(stations_dir or REPO / "stations").resolve()
    sources = sorted(stations_dir.glob("*.toml"))
    if not sources:
        raise DemoError(f"no station files in {stations_dir}")
    out.mkdir(parents=True, exist_ok=True)
    say(f"== data center on loopback (database in {out / 'center' / 'data'})")
    with _Center(out / "center", stations_dir) as center:
        admin_token = out / "center" / "tokens" / "admin.token"
        center.cli("add-user", "demo-admin", "--role", "admin", "--token-file", str(admin_token))
        say(f"== catalogue: {CENTER_CATALOGUE.name} (the sky is {SKY_CATALOGUE.name})")
        _aposos("center", "catalogue", "put", str(CENTER_CATALOGUE), "--url", center.url,
                "--token-file", str(admin_token), log=out / "center" / "admin.log")  # fmt: skip
        say(f"== the night's joint plan for {NIGHT} (aposos center plan; about a minute "
            "of CPU)")  # fmt: skip
        plan_path = out / "plan.json"
        for line in center.cli("plan", "--night", NIGHT, "--out", str(plan_path)).splitlines():
            say("   " + line)
        starts = _night_starts(json.loads(plan_path.read_text()))
        stations = []
        for source in sources:
            code = tomllib.loads(source.read_text())["site"]["code"]
            if code not in starts:
                say(f"   {code}: no tasks tonight (never dark?): not run")
                continue
            folder = out / "stations" / code
            file = _station_file(source, folder, center.url, starts[code], minutes,
                                 archive=archive)  # fmt: skip
            code_text = center.cli("enrol-code", code).strip().splitlines()[-1]
            _aposos("station", "enrol", "--station", str(file), code_text,
                    log=folder / "enrol.log")  # fmt: skip
            stations.append(_Station(code, folder, file, starts[code]))
        if not stations:
            raise DemoError(f"no station has tasks on the night of {NIGHT}")
        say(f"== {len(stations)} station agents enrolled, each with its own token; "
            f"{minutes:g} simulated minutes each from its first sidereal field: "
            + ", ".join(f"{s.code} {s.start}Z" for s in stations))  # fmt: skip
        deleted = _run_agents(stations, minutes, timeout_s, archive=archive)
        if not archive:  # the last fields are committed and delivered now
            for st in stations:
                files, size = _delete_done_frames(st.database)
                deleted[st.code] = (deleted[st.code][0] + files, deleted[st.code][1] + size)
        say("== data center: finishing the correlations")
        with CenterClient(center.url, read_token_file(admin_token)) as admin:
            _wait_for_correlation(admin, timeout_s=600)
        say("== nightly report (aposos report nightly)")
        report_dir = out / "report"
        _aposos("report", "nightly", "--night", NIGHT, "--config", str(center.config),
                "--out", str(report_dir), log=out / "center" / "admin.log")  # fmt: skip
    summary = _summary(stations, report_dir, out, time.monotonic() - t0)
    summary["frames_deleted_bytes"] = sum(b for _, b in deleted.values())
    for line in _table(summary):
        say(line)
    (out / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(stations: list[_Station], report_dir: Path, out: Path, wall_s: float) -> dict:
    report = json.loads((report_dir / "summary.json").read_text())
    by_code = {s.get("code"): s for s in report.get("stations", [])}
    rows = []
    for st in stations:
        agent = _read_agent(st.database)
        seen = by_code.get(st.code, {})
        rows.append({
            "station": st.code, "start": st.start + "Z", "frames": agent["frames"],
            "solved": agent["solved"], "delivered": agent["delivered"],
            "outbox_waiting": agent["waiting"], "refused": agent["rejected"],
            **{k: seen.get(k, 0) for k in ("tracklets", "correlated", "ambiguous",
                                           "uncorrelated")},
        })  # fmt: skip
    parts = {
        "frame archives": sum(disk_usage(st.folder / "agent" / "archive.zarr") for st in stations),
        "center": disk_usage(out / "center"),
    }
    return {
        "night": NIGHT,
        "stations": rows,
        "totals": report.get("totals", {}),
        "report": str(report_dir / "report.html"),
        "disk_bytes": disk_usage(out),
        "disk_parts": parts,
        "wall_s": round(wall_s, 1),
    }


def _table(summary: dict) -> list[str]:
    head = ("station", "frames", "solved", "delivered", "correlated", "ambiguous", "uncorr.")
    lines = ["", "  ".join(f"{h:>10}" for h in head)]
    for r in summary["stations"]:
        cells = (r["station"], r["frames"], r["solved"], r["delivered"], r["correlated"],
                 r["ambiguous"], r["uncorrelated"])  # fmt: skip
        lines.append("  ".join(f"{c:>10}" for c in cells))
    t = summary["totals"]
    mb = summary["disk_bytes"] / 1e6
    parts = ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in summary["disk_parts"].items())
    lines += [
        "",
        f"night {summary['night']}: {t.get('tracklets', 0)} tracklets, "
        f"{t.get('objects_identified', 0)} objects identified; "
        f"{summary['wall_s'] / 60:.1f} min",
        f"disk used: {mb:.0f} MB ({parts}); frames written and deleted once reduced: "
        f"{summary.get('frames_deleted_bytes', 0) / 1e6:.0f} MB",
        f"report: {summary['report']}",
    ]
    return lines
