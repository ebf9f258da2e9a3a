"""Faults against a real center process: bad uploads get their status code and a
message naming what is wrong and change nothing stored; a server killed with
SIGKILL during a stream of uploads loses no acknowledged tracklet, stores none twice,
and finishes the pending correlations after a restart."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from centerserver import CAT_0930, CenterProcess, CenterThread
from sqlalchemy import func, select

from aposos.center import schema as S
from aposos.center.worker import queue_counts
from aposos.formats.tdm import write_tdm
from aposos.model import Tracklet

NIGHT = np.datetime64("2020-10-01T18:00:00", "us")
LIMIT = 10 * 1024 * 1024


def tracklet(seed: int, station: str = "IRN1") -> Tracklet:
    rng = np.random.default_rng(seed)
    start = NIGHT + np.timedelta64(int(rng.integers(0, 6 * 3600)), "s")
    utc = start + (np.arange(5) * 4e6).astype("timedelta64[us]")
    return Tracklet(
        station=station,
        utc=utc,
        ra_deg=rng.uniform(0, 360) + 0.02 * np.arange(5),
        dec_deg=rng.uniform(-80, 80) + 0.02 * np.arange(5),
    )


def stored_state(center: CenterProcess) -> dict:
    """Every stored row that an upload could touch."""
    with center.store.read() as conn:
        return {
            table.name: sorted(tuple(map(str, r)) for r in conn.execute(select(table)))
            for table in (S.tracklets, S.observations, S.jobs, S.correlations, S.stations)
        }


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    proc = CenterThread(tmp_path_factory.mktemp("faults"), worker=False).start()
    proc.tokens = {"IRN1": proc.token("IRN1"), "PAK1": proc.token("PAK1")}
    with proc.client(proc.tokens["IRN1"]) as c:
        c.upload_tracklets([tracklet(k) for k in range(5)])
    yield proc
    proc.stop()


@pytest.fixture
def make_center(tmp_path):
    """Start centers that are stopped (and their processes reaped) after the test."""
    made = []

    def make(**options) -> CenterProcess:
        proc = CenterProcess(tmp_path / f"center{len(made)}", **options)
        made.append(proc)
        return proc.start()

    yield make
    for proc in made:
        proc.stop()


def wait_for_upload_states(center, states: set[str], timeout: float = 30.0) -> list[str]:
    """Wait until every upload is in one of ``states``; returns them in id order."""
    deadline = time.monotonic() + timeout
    while True:
        with center.store.read() as conn:
            now = conn.execute(select(S.uploads.c.state).order_by(S.uploads.c.id)).scalars().all()
        if now and set(now) <= states:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"uploads still {now} after {timeout} s")
        time.sleep(0.1)


def post(center, body: bytes | str, token: str | None = "IRN1", **headers) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {center.tokens.get(token, token)}"
    return httpx.post(
        f"{center.url}/api/v1/tracklets",
        content=body.encode() if isinstance(body, str) else body,
        headers=headers,
        timeout=60,
    )


def test_bad_uploads_are_refused_with_reasons_and_change_nothing(center):
    before = stored_state(center)
    good = tracklet(100).to_wire()
    wire = [good, {**tracklet(101).to_wire(), "uuid": "not-a-uuid"}]
    wrong_type = json.loads(json.dumps([tracklet(102).to_wire()]))
    wrong_type[0]["observations"][2]["ra_deg"] = "12.5"
    kvn = write_tdm([tracklet(103)], format="kvn").splitlines()
    broken = next(k for k, line in enumerate(kvn) if line.startswith("ANGLE_1"))
    kvn[broken] = kvn[broken].rsplit(" ", 1)[0] + " twelve"
    cases = [
        # (body, token, status, words the message must hold)
        (json.dumps(wire), "IRN1", 422, ["record 1", "not a UUID"]),
        (json.dumps(wrong_type), "IRN1", 422, ["record 0", "observations[2].ra_deg", "number"]),
        (json.dumps([{**good, "observations": "none"}]), "IRN1", 422, ["'observations'"]),
        (json.dumps({"uuid": 1}), "IRN1", 422, ["list of tracklets"]),
        ('[{"uuid": "x",', "IRN1", 422, ["not valid JSON", "line 1 column"]),
        ("\n".join(kvn) + "\n", "IRN1", 422, [f"line {broken + 1}"]),
        ("CCSDS_TDM_VERS = 2.0\nno tracking data\n", "IRN1", 422, ["TDM"]),
        ("hello", "IRN1", 422, ["neither JSON"]),
        (json.dumps([good]), None, 401, ["missing token"]),
        (json.dumps([good]), "aposos_wrongtoken", 401, ["unknown or revoked token"]),
        (json.dumps([good]), "PAK1", 403, ["record 0", "'IRN1'", "'PAK1'"]),
        (
            json.dumps([tracklet(104, "PAK1").to_wire(), good]),
            "PAK1",
            403,
            ["record 1", "not the uploading station"],
        ),
    ]
    for body, token, status, words in cases:
        answer = post(center, body, token)
        detail = answer.json()["detail"]
        assert answer.status_code == status, (body[:80], answer.text)
        for word in words:
            assert word in detail, (word, detail)
    assert stored_state(center) == before
    with center.store.read() as conn:
        rejected = conn.execute(
            select(func.count()).where(S.uploads.c.state == "rejected")
        ).scalar()
    assert rejected == 10  # raw copies kept for the record (not those refused at the door)


def test_fifty_megabytes_are_refused_before_they_are_read(center):
    before = stored_state(center)
    # a declared size over the limit: the answer comes before a byte of body is sent
    with socket.create_connection(("127.0.0.1", center.port), timeout=10) as s:
        s.sendall(
            (
                "POST /api/v1/tracklets HTTP/1.1\r\nHost: test\r\n"
                f"Authorization: Bearer {center.tokens['IRN1']}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"}" not in head:  # headers and the JSON body may come in two pieces
            piece = s.recv(4096)
            if not piece:
                break
            head += piece
        head = head.decode()
    assert head.startswith("HTTP/1.1 413")
    assert f"over the limit of {LIMIT} bytes" in head
    # a full 50 MB body, declared, and one streamed without a declared size
    answer = post(center, b"[" + b" " * (50 * 1024 * 1024) + b"]")
    assert answer.status_code == 413 and "over the limit" in answer.json()["detail"]

    def chunks():
        for _ in range(50):
            yield b" " * (1024 * 1024)

    answer = post(center, chunks())
    assert answer.status_code == 413 and "over the limit" in answer.json()["detail"]
    assert stored_state(center) == before
    assert httpx.get(f"{center.url}/healthz").status_code == 200


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_upload_received_before_a_crash_is_processed_at_restart(make_center):
    center = make_center(worker=False)
    t = tracklet(7)
    center.kill()
    # the raw copy was committed, then the server died before parsing it
    center.store.save_raw_upload("IRN1", "application/json", json.dumps([t.to_wire()]).encode())
    center.start()  # answers at once; the upload is processed in the background
    token = center.token("analyst", "analyst")
    wait_for_upload_states(center, {"stored"})
    with center.client(token) as c:
        assert c.tracklet(t.uuid)["n_obs"] == 5


@pytest.mark.slow
def test_kill_9_during_uploads_loses_nothing_and_stores_nothing_twice(make_center):
    """SIGKILL the server while 3 stations stream uploads and the worker correlates;
    restart; clients resend what was not acknowledged (as an outbox does)."""
    center = make_center(worker=True, lease_s=2.0)
    codes = ("IRN1", "PAK1", "PER1")
    tokens = {code: center.token(code) for code in codes}
    admin = center.token("root", "admin")
    with center.client(admin) as c:
        c.put_catalogue(CAT_0930)
    acked: dict[str, set[str]] = {code: set() for code in codes}
    sent: dict[str, set[str]] = {code: set() for code in codes}
    stop = threading.Event()
    errors: list[str] = []

    def station(code: str, seed: int) -> None:
        k = 0
        with httpx.Client(timeout=30) as http:
            headers = {"Authorization": f"Bearer {tokens[code]}"}
            while not stop.is_set():
                batch = [tracklet(seed * 100000 + k + j, code) for j in range(4)]
                k += 4
                body = json.dumps([t.to_wire() for t in batch])
                sent[code].update(t.uuid for t in batch)
                while not stop.is_set():  # resend until acknowledged
                    try:
                        r = http.post(
                            f"{center.url}/api/v1/tracklets", content=body, headers=headers
                        )
                    except httpx.TransportError:
                        time.sleep(0.2)
                        continue
                    if r.status_code in (200, 201):
                        acked[code].update(t.uuid for t in batch)
                        break
                    errors.append(f"{r.status_code} {r.text}")
                    return

    threads = [threading.Thread(target=station, args=(c, i + 1)) for i, c in enumerate(codes)]
    for th in threads:
        th.start()
    time.sleep(4.0)
    acked_before_kill = {code: set(v) for code, v in acked.items()}
    center.kill()
    killed_at = {code: len(v) for code, v in acked_before_kill.items()}
    left = queue_counts(center.store)
    assert left["pending"] + left["running"] > 0, left  # work was cut off by the kill
    time.sleep(1.0)
    center.start()
    time.sleep(3.0)
    stop.set()
    for th in threads:
        th.join(60)
    assert not errors
    assert all(n > 0 for n in killed_at.values()), killed_at
    print(f"acknowledged before the kill: {killed_at}; queue at the kill: {left}")
    counts = center.wait_for_queue(timeout=900)  # ~2,000 jobs; slow beside other test files
    with center.store.read() as conn:
        K, C, J, O = S.tracklets, S.correlations, S.jobs, S.observations
        rows = conn.execute(select(K.c.uuid, K.c.station, K.c.n_obs)).all()
        per_tracklet = dict(
            conn.execute(select(C.c.tracklet_id, func.count()).group_by(C.c.tracklet_id)).all()
        )
        jobs = conn.execute(select(J.c.state, func.count()).group_by(J.c.state)).all()
        n_obs = conn.execute(select(func.count()).select_from(O)).scalar()
        n_tracklets = conn.execute(select(func.count()).select_from(K)).scalar()
        unprocessed = conn.execute(
            select(func.count()).where(S.uploads.c.state == "received")
        ).scalar()
    uuids = [r.uuid for r in rows]
    assert len(uuids) == len(set(uuids))  # nothing twice
    for code in codes:
        stored = {r.uuid for r in rows if r.station == code}
        assert acked_before_kill[code] <= stored  # nothing acknowledged was lost
        assert acked[code] <= stored <= sent[code]
    assert n_obs == sum(r.n_obs for r in rows)
    # every tracklet correlated exactly once, the queue empty
    assert len(per_tracklet) == n_tracklets and set(per_tracklet.values()) == {1}
    assert dict(jobs) == {"done": n_tracklets}, (jobs, counts)
    assert unprocessed == 0


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_worker_process_correlates_and_ends_with_the_server(make_center):
    """The worker runs in a child process of the server, correlates the queue, and
    does not outlive a ``kill -9`` of the server (its jobs return by lease)."""
    center = make_center(worker=True, lease_s=2.0)
    with center.client(center.token("root", "admin")) as c:
        c.put_catalogue(CAT_0930)
    with center.client(center.token("IRN1")) as c:
        c.upload_tracklets([tracklet(k) for k in range(3)])
    counts = center.wait_for_queue(timeout=900)  # ~2,000 jobs; slow beside other test files
    assert counts["done"] == 3, counts
    kids = [k for k in _children(center.proc.pid) if _alive(k)]
    workers = [k for k in kids if b"resource_tracker" not in _cmdline(k)]
    assert len(workers) == 1, kids
    center.kill()
    deadline = time.monotonic() + 20
    while _alive(workers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(workers[0]), "the worker outlived the server"


def _cmdline(pid: int) -> bytes:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
