"""The station agent with real parts: a real center server, the real ``aposos station
run`` process, real SQLite, SIGKILL, a center that goes away, broken files.

Every field of the frame sequences (tests/agentsetup.py) holds one satellite streak,
so each gives one tracklet; the expected tracklets and their ids come from
``reduce_frames`` over the same files (the batch reduction).
"""

from __future__ import annotations

import json
import random
import shutil
import time

import numpy as np
import pytest
from agentsetup import AgentProcess, three_fields, wait_for, write_station
from centerserver import CenterProcess, CenterThread, aposos_cli
from sqlalchemy import text

from aposos.station.outbox import AgentStore

STATION_FILE = "stations/iran.toml"


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Three fields of four frames, and the tracklet ids the batch reduction gives."""
    folder = tmp_path_factory.mktemp("fields")
    return folder, three_fields(folder)


@pytest.fixture
def center(tmp_path):
    """A center of its own for each test (nothing delivered yet)."""
    c = CenterProcess(tmp_path / "center", worker=False).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def shared_center(tmp_path_factory):
    """One center for the quick tests, served in a thread of the test process (real HTTP
    on loopback, the same app and database): each delivers at most one field, and checks
    only its own. The agent is what they test; kills and restarts of the center itself
    are the slow tests'."""
    c = CenterThread(tmp_path_factory.mktemp("center"), worker=False).start()
    yield c
    c.stop()


def center_ids(center) -> list[str]:
    from aposos.center.dbtypes import Filters

    items = center.store.list_tracklets(Filters(station="IRN1"), 1000, 0).to_wire()["items"]
    return sorted(t["uuid"] for t in items)


def agent_settings(work, camera, **more) -> dict:
    return {
        "work_dir": str(work), "source": "folder", "field_idle_s": 2.0, "heartbeat_s": 1.0,
        "folder": {"path": str(camera), "settle_s": 0.3, "incomplete_timeout_s": 4.0},
        "upload": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "timeout_s": 5.0},
        **more,
    }  # fmt: skip


def copy_fields(fields, camera, ks=(0, 1, 2)):
    folder, _ = fields
    camera.mkdir(parents=True, exist_ok=True)
    for k in ks:
        for p in sorted(folder.glob(f"s{k:02d}_*.fits")):
            tmp = camera / ("." + p.name)
            shutil.copy(p, tmp)
            tmp.rename(camera / p.name)


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_night_delivered_exactly_once_with_heartbeat(center, fields, tmp_path):
    tmp = tmp_path
    camera = tmp / "camera"
    station = write_station(tmp / "st", center.url, _token(center),
                            agent_settings(tmp / "work", camera))  # fmt: skip
    agent = AgentProcess(station).start()
    try:
        copy_fields(fields, camera)
        wait_for(lambda: len(center_ids(center)) == 3, 120, "3 tracklets at the center", agent)
        assert center_ids(center) == fields[1]  # the batch reduction's ids
        # the last heartbeat may be one sent before the third field was committed (its
        # backlog 0 too): wait for one that counts the night's 12 frames
        beat = wait_for(lambda: _heartbeat(center, frames_reduced=12), 60,
                        "a heartbeat with no backlog and 12 frames reduced", agent)  # fmt: skip
        assert beat["outbox_backlog"] == 0
        assert beat["frames_captured"] == 12 and beat["frames_reduced"] == 12
        assert beat["frames_failed"] == 0 and beat["solve_rate"] == 1.0
        assert beat["agent_version"].startswith("aposos") and "last_error" in beat
        # the night's quality: medians over the 12 solved frames, checked by the center
        assert beat["quality_frames"] == 12 and beat["unsolved_reasons"] == {}
        assert 0.5 < beat["fwhm_arcsec"] < 20 and 5 < beat["limiting_mag"] < 25
        assert 10 < beat["sky_mag_arcsec2"] < 25 and beat["heartbeat_s"] == 1.0
        with center.store.engine.connect() as conn:
            kept = conn.execute(
                text("SELECT COUNT(*), MAX(fwhm_arcsec) FROM heartbeats WHERE station = 'IRN1'")
            ).first()
        assert kept[0] >= 2 and kept[1] is not None  # every heartbeat is kept
    finally:
        assert agent.terminate() == 0
    status = json.loads(aposos_cli("station", "status", "--station", str(station), "--json").stdout)
    assert status["outbox_backlog"] == 0 and status["delivered"] == 3
    assert status["frames_total"]["solved"] == 12


def _heartbeat(center, frames_reduced: int | None = None) -> dict | None:
    """The last heartbeat body of IRN1 when it reports an empty outbox (and, if given,
    that many frames reduced)."""
    from sqlalchemy import text

    with center.store.engine.connect() as conn:
        row = conn.execute(text("SELECT heartbeat FROM stations WHERE code = 'IRN1'")).first()
    beat = json.loads(row[0]) if row and row[0] else None
    if not beat or beat.get("outbox_backlog") != 0:
        return None
    if frames_reduced is not None and beat.get("frames_reduced") != frames_reduced:
        return None
    return beat


@pytest.mark.slow
def test_center_down_then_up_backlog_drains(fields, tmp_path):
    """The center is away while the night goes on; the outbox keeps everything."""
    tmp = tmp_path
    away = CenterProcess(tmp / "away", worker=False)  # a port where nobody answers yet
    camera = tmp / "camera"
    station = write_station(tmp / "st", away.url, "placeholder", agent_settings(tmp / "w", camera))
    agent = AgentProcess(station).start()
    try:
        copy_fields(fields, camera)
        db = tmp / "w" / "agent.sqlite"
        wait_for(lambda: db.exists() and _backlog(db) == 3, 120, "a backlog of 3", agent)
        away.start()
        (tmp / "st" / "station.token").write_text(away.token("IRN1"))
        wait_for(lambda: db.exists() and _backlog(db) == 0, 60, "the backlog to drain", agent)
        assert center_ids(away) == fields[1]
        assert "upload failed" in agent.text()
    finally:
        agent.terminate()
        away.stop()


def _backlog(db) -> int:
    store = AgentStore(db)
    try:
        return store.backlog()
    finally:
        store.close()


@pytest.mark.slow
def test_kill9_restart_and_rereduce_deliver_exactly_once(center, fields, tmp_path):
    tmp = tmp_path
    camera = tmp / "camera"
    station = write_station(tmp / "st", center.url, _token(center),
                            agent_settings(tmp / "work", camera))  # fmt: skip
    copy_fields(fields, camera)
    db = tmp / "work" / "agent.sqlite"
    # kill -9: with a field half taken, then as soon as tracklets wait in the outbox
    # (uploads under way), then at a random moment
    moments = [
        ("a field half taken", lambda: _count(db, "SELECT COUNT(*) FROM frames") >= 2),
        ("uploads under way", lambda: _count(db, "SELECT COUNT(*) FROM outbox") >= 1),
    ]
    seen = []
    for what, when in moments:
        agent = AgentProcess(station).start()
        wait_for(when, 120, what, agent)
        agent.kill()
        seen.append(_count(db, "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL"))
    agent = AgentProcess(station).start()
    time.sleep(random.Random(5).uniform(2.0, 8.0))
    agent.kill()
    agent = AgentProcess(station).start()
    try:
        wait_for(lambda: len(center_ids(center)) == 3 and _backlog(db) == 0, 120,
                 "everything delivered after the restarts", agent)  # fmt: skip
        assert center_ids(center) == fields[1]
        assert seen[0] == 0 and seen[1] < 3  # the kills hit before delivery was complete
        assert "reduced again" in agent.text()  # a field taken before a kill was redone
    finally:
        assert agent.terminate() == 0
    # the same frames reduced again by hand and uploaded through a fresh outbox
    out = tmp / "again"
    done = aposos_cli("station", "reduce", str(camera), "--station", str(station), "--out",
                      str(out), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    other = write_station(tmp / "st2", center.url, _token(center),
                          agent_settings(tmp / "work2", camera))  # fmt: skip
    sent = aposos_cli("station", "upload", str(out), "--station", str(other), "--wait", "30")
    assert sent.returncode == 0, sent.stderr
    assert center_ids(center) == fields[1]  # nothing new: the ids were the same
    store = AgentStore(tmp / "work2" / "agent.sqlite")
    assert store.outbox_counts()["delivered"] == 3
    store.close()


def test_frames_taken_before_a_kill_stay_in_their_field(shared_center, fields, tmp_path):
    """A kill after two of a field's four frames were taken (recorded, the field not
    committed), as ``add_frame`` leaves the state database. At the restart those two are
    reduced again before the folder's other frames have settled; a busy machine makes
    each reduction longer than ``field_idle_s`` (0.1 s here: any reduction is). The field
    must still be the whole field, as the batch reduction has it: the idle time neither
    runs while the agent reduces nor while the source has a frame on its way, so the
    field is not cut in two (which gave its object a second id, and the center one
    observation twice once ``aposos station reduce`` delivered the same frames). One
    field is enough: its two frames not yet taken stand for the ones on their way."""
    camera = tmp_path / "camera"
    copy_fields(fields, camera, ks=(0,))
    work = tmp_path / "work"
    work.mkdir()
    store = AgentStore(work / "agent.sqlite")
    for name in ("s00_f00.fits", "s00_f01.fits"):  # as FolderSource records them
        assert store.add_frame(f"folder:{name}", camera / name)
    store.close()
    station = write_station(tmp_path / "st", shared_center.url, _token(shared_center),
                            agent_settings(work, camera, field_idle_s=0.1))  # fmt: skip
    agent = AgentProcess(station).start()
    db = work / "agent.sqlite"
    try:
        wait_for(lambda: _count(db, "SELECT COUNT(*) FROM frames WHERE state = 'solved'") == 4
                 and _backlog(db) == 0, 180, "4 frames reduced and delivered", agent)  # fmt: skip
        assert "2 frame(s) taken before the restart are reduced again" in agent.text()
        assert "field of 4 frame(s)" in agent.text()
        assert "field of 2 frame(s)" not in agent.text()
        got = center_ids(shared_center)  # one of the batch reduction's ids, and no other
        assert len(got) == 1 and got[0] in fields[1], (got, fields[1])
    finally:
        assert agent.terminate() == 0


def test_sigterm_during_start_up_ends_cleanly(shared_center, fields, tmp_path):
    """SIGTERM as soon as the agent says it started (it is still loading its star
    catalogue): it stops at once with status 0 and takes no frame."""
    camera = tmp_path / "camera"
    copy_fields(fields, camera, ks=(0,))
    station = write_station(tmp_path / "st", shared_center.url, _token(shared_center),
                            agent_settings(tmp_path / "work", camera))  # fmt: skip
    agent = AgentProcess(station).start()
    t0 = time.monotonic()
    assert agent.terminate() == 0, agent.text()[-2000:]
    assert time.monotonic() - t0 < 60
    assert "stopped" in agent.text()
    assert _count(tmp_path / "work" / "agent.sqlite", "SELECT COUNT(*) FROM frames") == 0


_TOKENS: dict = {}


def _token(center) -> str:
    if center.url not in _TOKENS:
        _TOKENS[center.url] = center.token("IRN1")
    return _TOKENS[center.url]


@pytest.mark.slow
def test_corrupt_and_half_written_files(center, fields, tmp_path):
    tmp = tmp_path
    camera = tmp / "camera"
    camera.mkdir()
    station = write_station(tmp / "st", center.url, _token(center),
                            agent_settings(tmp / "work", camera))  # fmt: skip
    src = sorted(fields[0].glob("s00_*.fits"))
    raw = [p.read_bytes() for p in src]
    (camera / "garbage.fits").write_bytes(
        bytes(random.Random(1).randrange(256) for _ in range(5000))
    )
    (camera / "cut.fits").write_bytes(raw[0][: len(raw[0]) // 3])  # never completed
    half = camera / src[0].name
    half.write_bytes(raw[0][: len(raw[0]) // 2])  # the camera is still writing
    agent = AgentProcess(station).start()
    db = tmp / "work" / "agent.sqlite"
    try:
        quarantine = tmp / "work" / "quarantine"
        wait_for(lambda: (quarantine / "garbage.fits.reason.txt").exists(), 60,
                 "the corrupt file quarantined", agent)  # fmt: skip
        note = (quarantine / "garbage.fits.reason.txt").read_text()
        assert "not a FITS file" in note
        time.sleep(1.5)
        assert half.exists() and not _has_frame(db, half.name)  # not taken half-written
        half.write_bytes(raw[0])  # the camera finishes the file
        for p, data in zip(src[1:], raw[1:], strict=True):
            (camera / p.name).write_bytes(data)
        wait_for(lambda: len(center_ids(center)) == 1, 90, "the field's tracklet", agent)
        wait_for(lambda: (quarantine / "cut.fits.reason.txt").exists(), 30,
                 "the truncated file quarantined", agent)  # fmt: skip
        assert "incomplete" in (quarantine / "cut.fits.reason.txt").read_text()
        assert center_ids(center) == [u for u in fields[1] if u in center_ids(center)]
    finally:
        assert agent.terminate() == 0
    status = json.loads(aposos_cli("station", "status", "--station", str(station), "--json").stdout)
    assert status["frames_total"]["quarantined"] == 2
    assert status["frames_total"]["solved"] == 4


def _count(db, sql: str) -> int:
    import sqlite3

    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # tables not made yet
        return 0
    finally:
        con.close()


def _has_frame(db, name) -> bool:
    if not db.exists():
        return False
    store = AgentStore(db)
    try:
        return store.has_frame(f"folder:{name}")
    finally:
        store.close()


@pytest.mark.slow
def test_wrong_token_then_fixed(center, fields, tmp_path):
    tmp = tmp_path
    camera = tmp / "camera"
    station = write_station(tmp / "st", center.url, "aposos_not-a-real-token",
                            agent_settings(tmp / "work", camera))  # fmt: skip
    agent = AgentProcess(station).start()
    db = tmp / "work" / "agent.sqlite"
    try:
        copy_fields(fields, camera, ks=(1,))
        wait_for(lambda: "refused the station token" in agent.text(), 90, "the message", agent)
        time.sleep(2.0)
        assert agent.text().count("refused the station token") == 1  # said once, clearly
        assert _backlog(db) == 1 and not center_ids(center)
        (tmp / "st" / "station.token").write_text(_token(center))
        wait_for(lambda: len(center_ids(center)) == 1, 60, "delivery with the fixed token", agent)
    finally:
        agent.terminate()


# ------------------------------------------------------------------ configuration


def test_configuration_errors_all_listed_before_anything_runs(tmp_path):
    station = write_station(tmp_path, "http://127.0.0.1:9", None, {
        "source": "folder", "heartbeat_s": -1, "folder": {"path": str(tmp_path / "nowhere")},
        "bogus": 1,
    })  # fmt: skip
    done = aposos_cli("station", "run", "--station", str(station))
    assert done.returncode == 2
    for needle in ("agent.work_dir is missing", "agent.heartbeat_s", "is not a folder",
                   "agent.bogus is not a known key", "no token file"):  # fmt: skip
        assert needle in done.stderr, done.stderr
    assert not (tmp_path / "agent.sqlite").exists()


# ------------------------------------------------------------------ simulator source


@pytest.mark.slow
def test_simulator_night_becomes_correlated_tracklets(tmp_path):
    """The simulator's frames, reduced and delivered by the agent, are identified by
    the center against the catalogue the simulator drew its satellites from."""
    from centerserver import CAT_1002, REPO

    center = CenterProcess(tmp_path / "center", worker=True).start()
    try:
        admin = tmp_path / "admin.token"
        admin.write_text(center.token("root", "admin"))
        put = aposos_cli("center", "catalogue", "put", str(CAT_1002), "--url", center.url,
                         "--token-file", str(admin))  # fmt: skip
        assert put.returncode == 0 and "new snapshot" in put.stdout, put.stderr
        station = write_station(tmp_path / "st", center.url, center.token("PAK1"), {
            "work_dir": str(tmp_path / "work"), "source": "simulator", "heartbeat_s": 1.0,
            "simulator": {"catalogue": str(CAT_1002), "start": "2020-10-02T18:00:00",
                          "minutes": 1.5, "seed": 1},
        }, base=REPO / "stations" / "pakistan.toml")  # fmt: skip
        agent = AgentProcess(station).start()
        assert agent.wait(600) == 0, agent.text()[-3000:]  # the night ended: it stopped
        assert "Traceback" not in agent.text()  # a center without tasking (404): no harm
        status = json.loads(
            aposos_cli("station", "status", "--station", str(station), "--json").stdout
        )
        assert status["outbox_backlog"] == 0 and status["delivered"] >= 2
        frames = status["frames_total"]
        assert frames["captured"] == 0 and frames["failed"] == 0  # every frame reduced
        assert frames["solved"] >= 0.6 * (frames["solved"] + frames["unsolved"]) > 10
        center.wait_for_queue(300)
        from aposos.center.dbtypes import Filters

        items = center.store.list_tracklets(Filters(station="PAK1"), 1000, 0).to_wire()["items"]
        assert len(items) == status["delivered"]
        assert sum(t["status"] == "correlated" for t in items) >= 1, items
        # the nightly report places the agent's heartbeats in the simulated night (its
        # clock, not the wall clock) with the night's quality and frames
        from aposos.center.report import nightly_report
        from aposos.center.worker import load_sites

        sites = load_sites(REPO / "stations")
        summary = nightly_report(center.store, "2020-10-02", tmp_path / "report", sites=sites)
        pak1 = next(s for s in summary["stations"] if s["code"] == "PAK1")
        assert pak1["heartbeats"] >= 2 and pak1["first_heartbeat"].startswith("2020-10-02T18:")
        assert pak1["gaps"] == []  # the simulated clock moves by frames: no false gaps
        assert pak1["frames_reduced"] == frames["solved"] + frames["unsolved"]
        assert pak1["frames_solved"] == frames["solved"]
        assert 0.5 < pak1["fwhm_arcsec"] < 10 and 8 < pak1["limiting_mag"] < 20
        assert 12 < pak1["sky_mag_arcsec2"] < 23
        print(json.dumps({k: pak1[k] for k in ("heartbeats", "gaps", "frames_reduced",
              "frames_solved", "fwhm_arcsec", "limiting_mag", "sky_mag_arcsec2",
              "unsolved_reasons")}))  # fmt: skip
    finally:
        center.stop()


@pytest.mark.slow
def test_agent_follows_the_centers_task_and_reports_it(tmp_path):
    """The center's planner (issue 13) makes the night's tasks; the simulator station
    takes its frames where the task points, and the center learns it was executed."""
    from centerserver import CAT_0930, REPO

    from aposos.center import tasking_store as TS
    from aposos.center.config import load_config
    from aposos.center.tasking import replan
    from aposos.orbit.catalogue import Catalogue
    from aposos.station.archive import FrameArchive

    center = CenterProcess(tmp_path / "center", worker=False).start()
    try:
        night = "2020-10-01"
        replan(center.store, load_config(center.config), night,
               catalogue=Catalogue.from_tle(CAT_0930))  # fmt: skip
        tasks = TS.list_tasks(center.store, station="PAK1", night=night)["tasks"]
        order = {"sidereal": 0, "stare": 1, "rate": 2}
        task = min(tasks, key=lambda t: (order[t["tracking"]], t["start"]))
        start = np.datetime64(task["start"].rstrip("Z"), "us")
        end = np.datetime64(task["end"].rstrip("Z"), "us")
        minutes = float((end - start) / np.timedelta64(1, "m"))  # the task's window only
        station = write_station(tmp_path / "st", center.url, center.token("PAK1"), {
            "work_dir": str(tmp_path / "work"), "source": "simulator", "heartbeat_s": 1.0,
            "simulator": {"catalogue": str(CAT_0930), "start": str(start),
                          "minutes": minutes, "seed": 2},
        }, base=REPO / "stations" / "pakistan.toml")  # fmt: skip
        agent = AgentProcess(station).start()
        assert agent.wait(600) == 0, agent.text()[-3000:]
        states = TS.list_tasks(center.store, station="PAK1", night=night, with_state=True)
        mine = next(t for t in states["tasks"] if t["task_id"] == task["task_id"])
        assert mine["state"] == "executed", mine
        archive = FrameArchive.open(tmp_path / "work" / "archive.zarr")
        headers = [archive.read(k)[1] for k in archive.keys()]
        at_task = [h for h in headers if h["TRACKMOD"] == task["tracking"]
                   and h["EXPTIME"] == task["exposure_s"]]  # fmt: skip
        assert len(at_task) == task["frames"], [(h["TRACKMOD"], h["EXPTIME"]) for h in headers]
        first = min(at_task, key=lambda h: h["DATE-OBS"])
        assert _sep((first["RA"], first["DEC"]), (task["ra_deg"], task["dec_deg"])) < 0.1
    finally:
        center.stop()


def _sep(a, b) -> float:
    ra1, d1, ra2, d2 = np.radians([a[0], a[1], b[0], b[1]])
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(ra1 - ra2)
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))
