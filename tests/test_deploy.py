"""The systemd unit in deploy/: verified by systemd's own tool, and its command run the
way systemd would run it.

No systemd runs as PID 1 here (and ``systemd --user`` cannot start in this container),
so the service is not started by systemd itself. Instead: ``systemd-analyze verify``
checks the unit (installed from Debian's ``systemd`` package when missing, as the
other tests install theirs), and a test reads the unit's ``ExecStart``,
``WorkingDirectory``, ``Environment``, ``KillSignal`` and ``TimeoutStopSec`` and runs
that command line as systemd would (no terminal, stdin from /dev/null, a minimal
environment plus ``Environment=``), stops it with the unit's signal and waits at most
the unit's stop timeout before a SIGKILL, as systemd does. Not covered: ``User=``,
the sandboxing options and ``Restart=`` (they need systemd itself).
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from agentsetup import count_rows, three_fields, wait_for, write_station
from centerserver import REPO, CenterProcess
from system_packages import apt_install

UNIT = REPO / "deploy" / "aposos-station.service"
INSTALL_DIR = "/opt/aposos"  # where deploy/README.md installs the checkout
STATION_DIR = "/etc/aposos"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and their settings (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span (``300``, ``5min``, ``90s``, ``1min 30s``)."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def localised(text: str, station_dir: Path, instance: str) -> str:
    """The unit's paths moved to this checkout and a test folder; ``%i`` filled in."""
    return (text.replace(INSTALL_DIR, str(REPO)).replace(STATION_DIR, str(station_dir))
            .replace("%i", instance))  # fmt: skip


@pytest.fixture(scope="module")
def systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        why = apt_install("systemd")
        if why is not None or shutil.which("systemd-analyze") is None:
            pytest.skip(why or "systemd installed but systemd-analyze is not on PATH")
    return shutil.which("systemd-analyze")


def test_the_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    if not (REPO / ".venv" / "bin" / "aposos").exists():
        pytest.skip("no .venv/bin/aposos in this checkout (make .venv/.installed)")
    # installed as a template and started as aposos-station@IRN1
    unit = tmp_path / "aposos-station@IRN1.service"
    unit.write_text(localised(UNIT.read_text(), tmp_path, "%i"))
    done = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True,
                          text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "aposos-station" not in done.stderr, done.stderr  # no warning about our unit


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_the_units_command_runs_and_stops_as_systemd_would(tmp_path):
    service = read_unit(UNIT)["Service"]
    instance = "IRN1"
    argv = shlex.split(localised(service["ExecStart"][-1], tmp_path, instance))
    workdir = Path(localised(service["WorkingDirectory"][-1], tmp_path, instance))
    kill_signal = signal.Signals[service.get("KillSignal", ["SIGTERM"])[-1]]
    stop_timeout = seconds(service.get("TimeoutStopSec", ["90"])[-1])
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} does not exist (make .venv/.installed)")
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": str(tmp_path),
           "INVOCATION_ID": uuid.uuid4().hex}  # fmt: skip
    for item in service.get("Environment", []):
        for pair in shlex.split(item):
            key, _, value = pair.partition("=")
            env[key] = value
    station_file = Path(argv[argv.index("--station") + 1])
    assert station_file.parent == tmp_path, argv

    camera = tmp_path / "camera"
    ids = three_fields(camera)
    center = CenterProcess(tmp_path / "center", worker=False).start()
    try:
        written = write_station(tmp_path / "st", center.url, center.token(instance), {
            "work_dir": str(tmp_path / "work"), "source": "folder", "field_idle_s": 2.0,
            "heartbeat_s": 1.0, "folder": {"path": str(camera), "settle_s": 0.3},
        })  # fmt: skip
        shutil.move(written, station_file)
        shutil.move(written.parent / "station.token", tmp_path / "station.token")
        db = tmp_path / "work" / "agent.sqlite"

        def start(log: Path) -> subprocess.Popen:
            with open(log, "wb") as out:  # the journal: no terminal
                return subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

        proc = start(tmp_path / "journal1.log")
        # stop once every frame is taken: the last field may still be open
        wait_for(lambda: count_rows(db, "SELECT COUNT(*) FROM frames") == 12
                 or proc.poll() is not None, 300, "every frame taken")  # fmt: skip
        assert proc.poll() is None, (tmp_path / "journal1.log").read_text()[-3000:]
        proc.send_signal(kill_signal)
        try:
            code = proc.wait(stop_timeout)
        except subprocess.TimeoutExpired:  # systemd's SIGKILL after TimeoutStopSec
            proc.kill()
            proc.wait(30)
            pytest.fail(f"no clean stop within TimeoutStopSec={stop_timeout:g} s")
        log = (tmp_path / "journal1.log").read_text()
        assert code == 0, log[-3000:]
        assert "stopped" in log and "Traceback" not in log
        assert count_rows(db, "SELECT COUNT(*) FROM frames WHERE state = 'captured'") == 0
        assert count_rows(db, "SELECT COUNT(*) FROM outbox") == 3  # every field reduced
        # started again (systemctl start): whatever waited goes out, nothing twice
        journal = tmp_path / "journal2.log"
        proc = start(journal)
        try:
            wait_for(lambda: "work folder" in journal.read_text(), 120, "the agent to start")
            wait_for(lambda: center_ids(center) == ids
                     and count_rows(db, "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
                     == 0, 120, "every tracklet delivered")  # fmt: skip
        finally:
            proc.send_signal(kill_signal)
            assert proc.wait(stop_timeout) == 0
        assert center_ids(center) == ids
    finally:
        center.stop()


def center_ids(center) -> list[str]:
    from aposos.center.dbtypes import Filters

    items = center.store.list_tracklets(Filters(station="IRN1"), 1000, 0).to_wire()["items"]
    return sorted(t["uuid"] for t in items)


# ------------------------------------------------------------------ the nightly report

REPORT_SERVICE = REPO / "deploy" / "aposos-report.service"
REPORT_TIMER = REPO / "deploy" / "aposos-report.timer"
REPORT_CRON = REPO / "deploy" / "aposos-report.cron"
REPORTS_DIR = "/var/lib/aposos/reports"


def report_localised(text: str, tmp_path: Path) -> str:
    """The report units' paths moved to this checkout and a test folder."""
    return localised(text, tmp_path / "etc", "-").replace(REPORTS_DIR, str(tmp_path / "reports"))


def center_config(tmp_path: Path) -> Path:
    """A center configuration where the units expect it, over an empty database."""
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "reports").mkdir(exist_ok=True)
    config = tmp_path / "etc" / "center.toml"
    config.write_text(f'[center]\ndata_dir = "{tmp_path / "data"}"\n')
    from aposos.center.config import CenterConfig
    from aposos.center.store import Store

    (tmp_path / "data").mkdir(exist_ok=True)
    store = Store(CenterConfig(data_dir=tmp_path / "data").database_url)
    store.upgrade()  # the database the running center made
    store.close()
    return config


def test_the_report_timer_and_service_pass_systemd_analyze_verify(systemd_analyze, tmp_path):
    if not (REPO / ".venv" / "bin" / "aposos").exists():
        pytest.skip("no .venv/bin/aposos in this checkout (make .venv/.installed)")
    center_config(tmp_path)
    for unit in (REPORT_SERVICE, REPORT_TIMER):
        (tmp_path / unit.name).write_text(report_localised(unit.read_text(), tmp_path))
    done = subprocess.run(
        [systemd_analyze, "verify", "aposos-report.timer", "aposos-report.service"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "aposos-report" not in done.stderr, done.stderr
    timer = read_unit(REPORT_TIMER)["Timer"]
    calendar = subprocess.run([systemd_analyze, "calendar", timer["OnCalendar"][-1]],
                              capture_output=True, text=True)  # fmt: skip
    assert calendar.returncode == 0 and "12:00:00 UTC" in calendar.stdout, calendar.stdout


def yesterday_utc() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def check_report_written(folder: Path, log: str) -> None:
    night = yesterday_utc()
    out = folder / f"report-{night}"
    assert (out / "report.html").is_file(), log[-3000:]
    assert (
        f"No tracklets were received for the night of {night}" in (out / "report.html").read_text()
    )
    assert (out / "summary.json").is_file() and (out / "correlations.csv").is_file()


def test_the_report_service_runs_as_systemd_would(tmp_path):
    service = read_unit(REPORT_SERVICE)["Service"]
    argv = shlex.split(report_localised(service["ExecStart"][-1], tmp_path))
    workdir = Path(report_localised(service["WorkingDirectory"][-1], tmp_path))
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} does not exist (make .venv/.installed)")
    center_config(tmp_path)
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": str(tmp_path)}
    done = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert service["Type"] == ["oneshot"] and "Traceback" not in done.stderr
    check_report_written(workdir, done.stderr)


def test_the_cron_line_runs_as_cron_would(tmp_path):
    lines = [x for x in REPORT_CRON.read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == "CRON_TZ=UTC"
    fields = lines[1].split(None, 6)
    assert fields[:5] == ["0", "12", "*", "*", "*"] and fields[5] == "aposos"
    command = report_localised(fields[6], tmp_path)
    if not (REPO / ".venv" / "bin" / "aposos").exists():
        pytest.skip("no .venv/bin/aposos in this checkout (make .venv/.installed)")
    center_config(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}  # cron's own
    done = subprocess.run(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    check_report_written(tmp_path / "reports", done.stderr)
