"""``aposos demo`` end to end on a short night: a real center plans the night, three real
station agents follow its tasks and deliver through their outboxes, the nightly report.

The demo's own figures are checked against the databases themselves: the report's
totals against a direct count of the center's SQLite tables, and each station's
tracklets in the center against what its agent's outbox says it delivered.
"""

import json
import sqlite3
import subprocess
import sys
from collections import Counter

import pytest

STATUSES = ("correlated", "ambiguous", "uncorrelated")


def _rows(path, sql, args=()):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_demo_night_of_agents_ends_in_a_report_that_agrees_with_the_databases(tmp_path):
    # one simulated minute: every station takes and reduces its first task's field (10
    # to 15 frames) and reports it executed, and Peru delivers tracklets; a second
    # minute cost about 40 CPU-s more and asserted nothing more
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "aposos", "demo", "--out", str(out), "--minutes", "1"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "report: " in run.stdout and "disk used: " in run.stdout

    center_db = out / "center" / "data" / "center.sqlite"
    assert center_db.is_file()
    assert not list((out / "center").rglob("demo*")), "the center's data path is doubled"

    # the report's numbers are the database's
    report = json.loads((out / "report" / "summary.json").read_text())
    counts = Counter(
        dict(
            _rows(
                center_db,
                "SELECT status, COUNT(*) FROM tracklets WHERE duplicate_of IS NULL GROUP BY status",
            )
        )  # fmt: skip
    )
    assert counts["pending"] == 0
    assert report["totals"]["tracklets"] == sum(counts.values()) > 0
    for status in STATUSES:
        assert report["totals"][status] == counts[status], status
    # (how many correlate is the sky's business: a 1-minute night correlated none)
    per_station = {s["code"]: s for s in report["stations"]}
    for code, status, n in _rows(
        center_db, "SELECT station, status, COUNT(*) FROM tracklets WHERE duplicate_of IS NULL"
        " GROUP BY station, status"
    ):  # fmt: skip
        assert per_station[code][status] == n, (code, status)

    # every station's tracklets came through its own agent's outbox, with its own token
    summary = json.loads((out / "demo-summary.json").read_text())
    assert [r["station"] for r in summary["stations"]] == ["IRN1", "PAK1", "PER1"]
    for row in summary["stations"]:
        code = row["station"]
        agent_db = out / "stations" / code / "agent" / "agent.sqlite"
        delivered = {u for (u,) in _rows(agent_db, "SELECT uuid FROM outbox WHERE delivered_at "
                                                   "IS NOT NULL")}  # fmt: skip
        waiting = _rows(agent_db, "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")[0][0]
        stored = {u for (u,) in _rows(center_db, "SELECT uuid FROM tracklets WHERE station = ?",
                                      (code,))}  # fmt: skip
        assert waiting == 0, code
        assert stored == delivered, code
        assert row["delivered"] == len(delivered)
        assert row["frames"] >= 5 and row["solved"] >= 1, row
        # the simulated camera followed the center's tasks, and the agent reported them
        followed = _rows(agent_db, "SELECT COUNT(*) FROM frames WHERE task_id IS NOT NULL")[0][0]
        assert followed >= 1, code
        (token_holder,) = _rows(center_db, "SELECT name FROM principals WHERE name = ? AND "
                                           "role = 'station'", (code,))  # fmt: skip
        assert token_holder == (code,)
    assert sum(r["delivered"] for r in summary["stations"]) == report["totals"]["tracklets"]
    executed = dict(_rows(center_db, "SELECT station, COUNT(*) FROM tasks WHERE state = "
                               "'executed' GROUP BY station"))  # fmt: skip
    assert sorted(executed) == ["IRN1", "PAK1", "PER1"], executed  # each station's first task

    # frames that served their purpose are archived compressed, not left as FITS files
    assert not list(out.rglob("*.fits"))
    assert summary["disk_bytes"] > 0
    assert (out / "report" / "report.html").is_file()
    assert (out / "report" / "correlations.csv").is_file()


def test_each_station_starts_at_its_first_sidereal_field_else_its_first_task():
    from aposos.demo import _night_starts

    def task(station, start, tracking):
        return {"station": station, "start": start, "tracking": tracking}

    plan = {
        "tasks": [
            task("PAK1", "2026-03-18T14:30:00.500000Z", "sidereal"),
            task("PAK1", "2026-03-18T14:19:59.500000Z", "rate"),
            task("PAK1", "2026-03-18T14:11:25.000000Z", "stare"),
            task("PAK1", "2026-03-18T14:20:00.000000Z", "sidereal"),
            task("PER1", "2026-03-18T23:46:00.000000Z", "rate"),
            task("PER1", "2026-03-18T23:43:16.000000Z", "stare"),
        ]
    }
    assert _night_starts(plan) == {
        "PAK1": "2026-03-18T14:20:00.000000",
        "PER1": "2026-03-18T23:43:16.000000",
    }
    assert _night_starts({"tasks": []}) == {}


def test_station_file_for_the_demo_is_a_valid_agent_configuration(tmp_path):
    from aposos.demo import REPO, SKY_CATALOGUE, _station_file
    from aposos.station.agent_config import load_agent_config

    path = _station_file(REPO / "stations" / "peru.toml", tmp_path / "PER1",
                         "http://127.0.0.1:8600", "2026-03-18T23:49:00", 2.0,
                         archive=False)  # fmt: skip
    (path.parent / "station.token").write_text("secret\n")
    config = load_agent_config(path)
    assert config.station.code == "PER1" and config.source == "simulator"
    assert config.simulator.catalogue == SKY_CATALOGUE and config.simulator.minutes == 2.0
    assert str(config.simulator.start) == "2026-03-18T23:49:00.000000"
    assert config.work_dir == path.parent / "agent" and config.archive is False
    assert config.station.center.url == "http://127.0.0.1:8600"


def test_only_frames_of_committed_fields_are_deleted(tmp_path):
    from aposos.demo import _delete_done_frames
    from aposos.station.outbox import AgentStore

    store = AgentStore(tmp_path / "agent.sqlite")
    files = {}
    for key in ("done", "open", "failed"):
        files[key] = tmp_path / f"{key}.fits"
        files[key].write_bytes(b"x" * 2880)
        store.add_frame(key, files[key])
    store.commit_field([("done", "solved", None, 1), ("failed", "failed", "no stars", 0)], [])
    store.close()
    assert _delete_done_frames(tmp_path / "agent.sqlite") == (2, 2 * 2880)
    assert [p.name for p in tmp_path.glob("*.fits")] == ["open.fits"]  # its field is open
    assert _delete_done_frames(tmp_path / "agent.sqlite") == (0, 0)
    assert _delete_done_frames(tmp_path / "none.sqlite") == (0, 0)


def test_a_night_of_no_minutes_is_refused_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "aposos", "demo", "--out", str(tmp_path), "--minutes", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "--minutes 0" in run.stderr
    assert not (tmp_path / "center").exists()
