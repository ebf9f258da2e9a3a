"""Parts of the station agent: file completeness, backoff, the outbox, the task
contract over real HTTP, the simulator following a task, and INDI devices."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from agentsetup import write_sequence

from aposos.station.delivery import Backoff, Courier
from aposos.station.identity import assign_uuids
from aposos.station.outbox import AgentStore
from aposos.station.sources import FolderSource, fits_completeness
from aposos.station.uplink import CenterLink, LinkError

# ------------------------------------------------------------------ files


@pytest.fixture(scope="module")
def frame_bytes(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("one")
    return write_sequence(folder, 0, n=1)[0].read_bytes()


@pytest.mark.parametrize(
    "cut, state",
    [(None, "complete"), (0.5, "incomplete"), (0.01, "incomplete"), (0, "incomplete")],
)
def test_fits_completeness(tmp_path, frame_bytes, cut, state):
    path = tmp_path / "f.fits"
    data = frame_bytes if cut is None else frame_bytes[: int(len(frame_bytes) * cut)]
    path.write_bytes(data)
    assert fits_completeness(path)[0] == state


def test_folder_source_says_when_a_frame_is_on_its_way(tmp_path, frame_bytes):
    """A file seen but not yet settled is pending (the agent keeps its field open for
    it), and so is one half written; nothing is once the frame is handed over, or once
    the half-written one is quarantined."""
    camera = tmp_path / "camera"
    camera.mkdir()
    store = AgentStore(tmp_path / "agent.sqlite")
    source = FolderSource(camera, store, tmp_path / "quarantine", settle_s=0.2,
                          incomplete_timeout_s=1.5, poll_s=0.05)  # fmt: skip
    try:
        assert source.poll() is None and not source.pending()
        (camera / "a.fits").write_bytes(frame_bytes)
        assert source.poll() is None and source.pending()  # seen once: settling
        frame = _poll_until(source)
        assert frame.path.name == "a.fits" and not source.pending()
        (camera / "b.fits").write_bytes(frame_bytes[: len(frame_bytes) // 2])
        assert source.poll() is None and source.pending()
        assert _poll_until(source, 0.5) is None and source.pending()  # incomplete, waited for
        quarantined = tmp_path / "quarantine" / "b.fits"
        deadline = time.monotonic() + 8.0  # poll until it is quarantined, not 8 s always
        while not quarantined.exists() and time.monotonic() < deadline:
            assert source.poll() is None
            time.sleep(0.01)  # as the agent's loop: the test's wait leaves the CPU free
        assert quarantined.exists() and not source.pending()
    finally:
        store.close()


def _poll_until(source, seconds: float = 5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = source.poll()
        if frame is not None:
            return frame
        time.sleep(0.01)
    return None


def test_fits_completeness_corrupt(tmp_path, frame_bytes):
    path = tmp_path / "f.fits"
    path.write_bytes(b"\x00GARBAGE" * 1000)
    assert fits_completeness(path) == ("corrupt", "not a FITS file (it does not start with SIMPLE)")
    bad = bytearray(frame_bytes)
    k = bad.find(b"BITPIX  =")
    bad[k + 10 : k + 30] = b"                  17"
    path.write_bytes(bytes(bad))
    assert fits_completeness(path)[0] == "corrupt"


# ------------------------------------------------------------------ backoff, outbox


def test_backoff_is_exponential_with_jitter_and_capped():
    import random

    b = Backoff(initial_s=1.0, max_s=30.0, rng=random.Random(1))
    waits = [b.fail() for _ in range(8)]
    for n, w in enumerate(waits, start=1):
        nominal = min(30.0, 2.0**n)
        assert 0.5 * nominal <= w <= nominal
    assert len({round(w, 6) for w in waits[-3:]}) == 3  # jittered, not in lock step
    b.reset()
    assert b.fail() <= 2.0


def _wire(uuid: str) -> dict:
    return {"uuid": uuid, "station": "IRN1", "object": None, "observations": [
        {"utc": "2026-11-22T01:02:03.000000Z", "ra_deg": 1.0, "dec_deg": 2.0,
         "sigma_arcsec": 1.0, "mag": None}]}  # fmt: skip


def test_outbox_commits_fields_once_and_survives_reopening(tmp_path):
    db = tmp_path / "agent.sqlite"
    store = AgentStore(db)
    store.add_frame("a", "/x/a.fits")
    store.add_frame("b", "/x/b.fits")
    assert [r.key for r in store.open_frames()] == ["a", "b"]
    ids = ["00000000-0000-5000-8000-000000000001", "00000000-0000-5000-8000-000000000002"]
    n = store.commit_field([("a", "solved", None, 1), ("b", "unsolved", "few stars", 0)],
                           [(_wire(u), None) for u in ids])  # fmt: skip
    assert n == 2 and not store.open_frames()
    assert store.enqueue([_wire(ids[0])]) == 0  # the same tracklet again: not queued twice
    store.delivered([ids[0]])
    store.close()
    store = AgentStore(db)  # as after a restart
    assert store.backlog() == 1 and [i.uuid for i in store.due(10)] == [ids[1]]
    assert store.frame_counts()["unsolved"] == 1
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_frames_reduced_one_by_one_give_what_the_batch_gives(tmp_path):
    """The agent reduces each frame as it comes and links at the field's end
    (``Reducer.batch``): the same reports and tracklets as ``Reducer.run``."""
    from aposos.station.config import StationConfig
    from aposos.station.reduce import Reducer
    from aposos.station.stars import StarCatalogue

    paths = write_sequence(tmp_path, 0) + write_sequence(tmp_path, 1)
    station = StationConfig.load("stations/iran.toml")
    stars = StarCatalogue.load("both")
    whole = Reducer(station, catalogue=stars).run(paths, progress=False)
    batch = Reducer(station, catalogue=stars).batch()
    for p in paths:
        batch.add(p)
    steps = batch.finish()
    assert len(whole.tracklets) == 2
    assert [t.to_wire() for t in steps.tracklets] == [t.to_wire() for t in whole.tracklets]

    def frames(result):  # each frame's report, less the time it took
        return [{k: v for k, v in f.items() if k != "seconds"} for f in result.to_json()["frames"]]

    assert frames(steps) == frames(whole)
    with pytest.raises(RuntimeError):
        batch.add(paths[0])


def test_ids_do_not_depend_on_the_last_digits():
    from aposos.model import Tracklet

    t = np.array(["2026-11-22T01:02:03.25", "2026-11-22T01:02:09.25"], "datetime64[us]")
    a = [Tracklet("IRN1", t, [10.0, 10.1], [5.0, 5.0]), Tracklet("IRN1", t, [11.0, 11.1], [5, 5])]
    b = [
        Tracklet("IRN1", t, [11.0 + 1e-5, 11.1], [5, 5]),
        Tracklet("IRN1", t, [10.0, 10.1], [5, 5]),
    ]
    ids_a = [x.uuid for x in assign_uuids(a)]
    ids_b = {round(x.ra_deg[0]): x.uuid for x in assign_uuids(b)}
    assert ids_a == [ids_b[10], ids_b[11]] and ids_a[0] != ids_a[1]


# ------------------------------------------------------------------ tasks over HTTP


class _TaskCenter(BaseHTTPRequestHandler):
    """Issue 13's task endpoints as specified (a stand-in until the center has them)."""

    tasks: list[dict] = []
    reports: dict[str, dict] = {}
    queries: list[str] = []
    has_tasks = True

    def _answer(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if not self.has_tasks or not self.path.startswith("/api/v1/tasks?"):
            return self._answer(404, {"detail": "Not Found"})
        if self.headers.get("Authorization") != "Bearer good":
            return self._answer(401, {"detail": "unknown or revoked token"})
        self.queries.append(self.path)
        return self._answer(200, {"generated": "2020-10-02T17:00:00Z", "tasks": self.tasks})

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        doc = json.loads(self.rfile.read(n))
        if self.path.startswith("/api/v1/tasks/") and self.path.endswith("/report"):
            self.reports[self.path.split("/")[4]] = doc
            return self._answer(200, {"ok": True})
        return self._answer(404, {"detail": "Not Found"})

    def log_message(self, *args):
        pass


def task(task_id="T1", *, tracking="sidereal", frames=2, start="2020-10-02T18:00:00Z",
         end="2020-10-02T18:10:00Z", ra=300.0, dec=20.0) -> dict:  # fmt: skip
    return {"task_id": task_id, "station": "IRN1", "start": start, "end": end,
            "target": {"kind": "field", "norad_id": None, "name": None}, "ra_deg": ra,
            "dec_deg": dec, "tracking": tracking, "rate_ra_arcsec_s": None,
            "rate_dec_arcsec_s": None, "exposure_s": 1.5, "frames": frames, "priority": 5,
            "reason": "test"}  # fmt: skip


@pytest.fixture
def task_center(tmp_path):
    _TaskCenter.tasks, _TaskCenter.reports, _TaskCenter.queries = [task()], {}, []
    _TaskCenter.has_tasks = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TaskCenter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("good\n")
    link = CenterLink(f"http://127.0.0.1:{server.server_address[1]}", "IRN1", token)
    yield link
    link.close()
    server.shutdown()
    server.server_close()


def test_tasks_fetched_and_reported_over_http(tmp_path, task_center):
    store = AgentStore(tmp_path / "agent.sqlite")
    courier = Courier(store, task_center, dict)
    courier.sync_tasks()
    assert [t["task_id"] for t in store.tasks()] == ["T1"]
    assert "station=IRN1" in _TaskCenter.queries[0] and "since=" in _TaskCenter.queries[0]
    store.task_progress("T1", frames=2, tracklets=1)
    store.finish_task("T1", "executed")
    courier.sync_tasks()
    assert _TaskCenter.reports["T1"] == {"status": "executed", "frames": 2, "tracklets": 1,
                                         "reason": None}  # fmt: skip
    assert not store.reports_due()
    _TaskCenter.has_tasks = False  # a center without tasking: no tasks, no error
    assert task_center.tasks() == []
    (tmp_path / "token").write_text("bad\n")
    _TaskCenter.has_tasks = True
    with pytest.raises(LinkError) as info:
        task_center.tasks()
    assert info.value.kind == "auth"
    store.close()


# ------------------------------------------------------------------ simulator


def test_simulator_says_which_frame_ends_a_field(tmp_path):
    """Without a task the simulator follows its plan: the last frame of each visit says
    so (the agent closes the field then, not when the next field's frame comes)."""
    from centerserver import CAT_1002
    from test_simulate import small_station_doc

    from aposos.station.agent_config import SimulatorSourceConfig
    from aposos.station.config import StationConfig
    from aposos.station.sources import SimulatorSource, starts_new_field
    from aposos.station.stars import StarCatalogue

    cfg = StationConfig.from_dict(small_station_doc(64, 64), source="small")
    store = AgentStore(tmp_path / "agent.sqlite")
    settings = SimulatorSourceConfig(CAT_1002, np.datetime64("2020-10-02T18:00:00"), 3.0)
    src = SimulatorSource(cfg, settings, store, tmp_path / "in", StarCatalogue.load("hipparcos"))
    frames = []
    while (frame := src.poll(None)) is not None:
        frames.append(frame)
    store.close()
    assert len(frames) > 3
    moves = [starts_new_field(a.utc, a.pointing, b.utc, b.pointing)
             for a, b in zip(frames, frames[1:], strict=False)]  # fmt: skip
    assert any(moves)
    assert [f.field_ends for f in frames] == [*moves, True]


def test_simulator_frame_follows_the_task(tmp_path):
    from astropy.io import fits
    from centerserver import CAT_1002
    from test_simulate import small_station_doc

    from aposos.station.agent_config import SimulatorSourceConfig
    from aposos.station.config import StationConfig
    from aposos.station.sources import SimulatorSource
    from aposos.station.stars import StarCatalogue

    cfg = StationConfig.from_dict(small_station_doc(128, 128), source="small")
    store = AgentStore(tmp_path / "agent.sqlite")
    settings = SimulatorSourceConfig(CAT_1002, np.datetime64("2020-10-02T18:00:00"), 5.0)
    src = SimulatorSource(cfg, settings, store, tmp_path / "in", StarCatalogue.load("hipparcos"))
    got = []
    for tracking in ("sidereal", "stare"):
        frame = src.poll(task(tracking=tracking))
        header = fits.getheader(frame.path)
        got.append((header["RA"], header["DEC"], header["TRACKMOD"], header["EXPTIME"]))
        assert frame.task_id == "T1" and frame.meta["sim_index"] == str(len(got))
    assert got[0] == (300.0, 20.0, "sidereal", 1.5)
    assert got[1][2] == "stare" and got[1][0] > 300.0  # held still: the sky moved on
    assert src.clock > np.datetime64("2020-10-02T18:00:05")
    store.close()


# ------------------------------------------------------------------ INDI


@pytest.mark.slow
def test_indi_agent_points_the_mount_and_reduces_frames(indi_server, tmp_path):
    from agentsetup import AgentProcess, wait_for, write_station

    from aposos.station.archive import FrameArchive

    work = tmp_path / "work"
    station = write_station(tmp_path / "st", "http://127.0.0.1:9", "unused", {
        "work_dir": str(work), "source": "indi", "field_max_frames": 3,
        "indi": {"port": indi_server.port, "exposure_s": 0.5, "cadence_s": 0.0,
                 "fields": [[83.8, -5.4], [120.0, 30.0]], "visit_frames": 3},
        "upload": {"backoff_initial_s": 5.0, "backoff_max_s": 5.0},
    })  # fmt: skip
    agent = AgentProcess(station).start()
    db = work / "agent.sqlite"

    def reduced() -> int:
        if not db.exists():
            return 0
        con = sqlite3.connect(db, timeout=30)
        try:
            return con.execute(
                "SELECT COUNT(*) FROM frames WHERE state IN ('solved', 'unsolved')"
            ).fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()

    try:
        # a wait, not a speed check: at load 30 the first field took 140 s
        wait_for(lambda: reduced() >= 4, 600, "frames of two fields reduced", agent)
    finally:
        assert agent.terminate() == 0
    archive = FrameArchive.open(work / "archive.zarr")
    pointings, solved = [], []
    for key in archive.keys():
        _, header, report = archive.read(key)
        assert header["INSTRUME"] == "CCD Simulator"  # a real INDI driver's frame
        assert report["status"] in ("solved", "unsolved")  # reduced
        pointings.append(_radec(header))
        if report["status"] == "solved":
            solved.append((pointings[-1], report["centre_deg"]))
    for target in ((83.8, -5.4), (120.0, 30.0)):  # the mount went to both fields
        assert min(_sep(target, p) for p in pointings) < 0.05, pointings
    # the simulator drew the stars tests/gsc_standin.py listed (the Orion field is
    # rich in them; the second field's 0.5 s frames may hold too few to solve)
    orion = [(p, c) for p, c in solved if _sep((83.8, -5.4), p) < 0.2]
    assert orion, "no frame of the Orion field solved"
    for pointing, centre in orion:  # the simulator points its optical axis at the mount
        assert _sep(pointing, centre) < 10 / 3600, (pointing, centre)


def _radec(header) -> tuple[float, float]:
    from aposos.station.fitsframe import parse_sexagesimal

    return (parse_sexagesimal(header["OBJCTRA"], hours=True),
            parse_sexagesimal(header["OBJCTDEC"]))  # fmt: skip


def _sep(a, b) -> float:
    ra1, d1, ra2, d2 = np.radians([a[0], a[1], b[0], b[1]])
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(ra1 - ra2)
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


# The house rule that station modules (the agent's command module included) import
# nothing of aposos.center is checked by test_roles.py's fresh-interpreter probe
# (test_the_station_side_loads_no_center_package), which imports the same modules.


def test_fits_completeness_gzip(tmp_path, frame_bytes):
    import gzip

    packed = gzip.compress(frame_bytes)
    path = tmp_path / "f.fits.gz"
    path.write_bytes(packed[: len(packed) // 2])
    assert fits_completeness(path)[0] == "incomplete"
    path.write_bytes(packed)
    assert fits_completeness(path)[0] == "complete"
