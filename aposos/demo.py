"""A simulated night of the whole network, end to end.

For each station in ``stations/``: simulate its camera for a few minutes of its
night (real stars, real element sets, noise and artefacts), reduce the frames into
tracklets. Then start a real data center (``aposos center serve`` on loopback, with
its own SQLite database), register the stations, load the element-set catalogue,
upload every station's tracklets with the station's own token, wait for the
correlation worker, and write the nightly report.

The sky is drawn from the newer CelesTrak snapshot; the center identifies against
the older one, two days staler, so the report shows real element-set error
(manoeuvres, decayed along-track predictions, objects missing from the catalogue).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOGUES = REPO / "tests" / "data" / "shared" / "catalogues"
SKY_CATALOGUE = CATALOGUES / "celestrak-active-2020-10-02.3le"
CENTER_CATALOGUE = CATALOGUES / "celestrak-active-2020-09-30.3le"

NIGHT = "2020-10-02"  # the date every station's simulated night starts on

# One evening each, when the station is in astronomical darkness (UTC), and how the
# mount tracks: sidereal (satellites streak), or mixed (sidereal, rate, stare visits).
NIGHT_PLANS = {
    "IRN1": ("2020-10-02T16:40:00", "sidereal"),
    "PAK1": ("2020-10-02T15:30:00", "mixed"),
    "PER1": ("2020-10-03T00:40:00", "sidereal"),
}


def _run(args: list[str]) -> None:
    from aposos.cli import main

    code = main(args)
    if code:
        raise RuntimeError(f"aposos {' '.join(args[:2])} failed with status {code}")


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

    def cli(self, *args: str) -> None:
        _run(["center", *args, "--config", str(self.config)])

    def __enter__(self):
        import httpx

        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aposos", "center", "serve", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the center exited at start; see {self.folder / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the center did not start; see {self.folder / 'server.log'}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_demo(out: str | os.PathLike, *, minutes: float = 3.0, stations_dir=None, say=print) -> dict:
    """Run the simulated night; returns the nightly report (also written under ``out``)."""
    from aposos.center.client import CenterClient, read_token_file
    from aposos.center.report import build_report, write_report
    from aposos.station.config import StationConfig

    out = Path(out)
    stations_dir = Path(stations_dir or REPO / "stations")
    configs = sorted(stations_dir.glob("*.toml"))
    if not configs:
        raise FileNotFoundError(f"no station files in {stations_dir}")
    reduced = {}
    for path in configs:
        station = StationConfig.load(path)
        code = station.code
        start, mode = NIGHT_PLANS.get(code, ("2020-10-02T18:00:00", "sidereal"))
        folder = out / "stations" / code
        say(f"== {code}: simulating {minutes:g} min of night from {start} UTC")
        _run(
            [
                "station", "simulate", "--station", str(path), "--catalog", str(SKY_CATALOGUE),
                "--start", start, "--minutes", str(minutes), "--out", str(folder / "frames"),
                "--mode", mode, "--seed", "1",
            ]
        )  # fmt: skip
        say(f"== {code}: reducing frames into tracklets")
        _run(
            [
                "station", "reduce", str(folder / "frames" / "lights"), "--station", str(path),
                "--calib", str(folder / "frames" / "calib"), "--out", str(folder / "reduced"),
            ]
        )  # fmt: skip
        reduced[code] = folder / "reduced"

    say("== data center: starting the service, registering stations, loading the catalogue")
    with _Center(out / "center", stations_dir) as center:
        tokens = out / "center" / "tokens"
        tokens.mkdir(exist_ok=True)
        center.cli(
            "add-user", "demo-admin", "--role", "admin", "--token-file", str(tokens / "admin")
        )
        admin = CenterClient(center.url, read_token_file(tokens / "admin"))
        admin.put_catalogue(CENTER_CATALOGUE)
        for code, folder in reduced.items():
            center.cli("add-station", code, "--token-file", str(tokens / code))
            tdm = (folder / "tracklets.tdm").read_text()
            with CenterClient(center.url, read_token_file(tokens / code)) as client:
                n = _count(client.upload_tdm(tdm)) if "DATA_START" in tdm else 0
                client.heartbeat(code, outbox_backlog=0)
            say(f"== {code}: uploaded {n} tracklets")
        say("== data center: correlating")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            queue = admin.healthz().get("queue", {})
            if not queue.get("pending", 0) and not queue.get("running", 0):
                break
            time.sleep(0.5)
        since = datetime.fromisoformat(NIGHT) + timedelta(hours=12)
        report = build_report(admin, since, since + timedelta(days=1))
        json_path, html_path = write_report(report, out)
        admin.close()
        say("== nightly report from the center database (aposos report nightly)")
        _run(
            [
                "report", "nightly", "--night", NIGHT, "--config", str(center.config),
                "--out", str(out / "report"),
            ]
        )  # fmt: skip
    t = report["totals"]
    say(
        f"== nightly report: {t['tracklets']} tracklets, {t['correlated']} correlated, "
        f"{t['ambiguous']} ambiguous, {t['uncorrelated']} uncorrelated; "
        f"{t['objects_identified']} objects identified"
    )
    say(f"   {out / 'report' / 'report.html'}\n   {html_path}\n   {json_path}")
    (out / "summary.json").write_text(json.dumps(t, indent=2))
    return report


def _count(answer: dict) -> int:
    for key in ("accepted", "stored", "ids", "tracklets"):
        value = answer.get(key)
        if isinstance(value, list):
            return len(value)
        if isinstance(value, int):
            return value
    return 0
