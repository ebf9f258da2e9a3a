"""The data-center API end to end: a real ``aposos center serve`` process on loopback
with a SQLite file, real catalogue snapshots, real correlation, the real CLI.

Observations of catalogued objects are computed by Skyfield from the CelesTrak TLEs
(an outside authority), as a station at the site of ``stations/iran.toml`` would
report them.
"""

from __future__ import annotations

import csv
import io
import json
import uuid

import httpx
import numpy as np
import pytest
from centerserver import (
    CAT_0930,
    CAT_1002,
    CenterProcess,
    CenterThread,
    aposos_cli,
    passes,
)

from aposos.center.client import CenterError
from aposos.formats.tdm import read_tdm, write_tdm
from aposos.model import Tracklet

# Hubble, Terra and Aqua (the ISS would be ambiguous: vehicles docked to it have TLEs too)
OBJECTS = (20580, 25994, 27424)
NIGHT = np.datetime64("2020-10-01T15:00:00", "us")  # Iran: 18:30 local onwards
LATER = NIGHT + np.timedelta64(3, "h")


def random_tracklet(station="IRN1", start=LATER, seed=7) -> Tracklet:
    """A short arc where no catalogued object is (an uncorrelated target)."""
    rng = np.random.default_rng(seed)
    utc = start + (np.arange(5) * 5e6).astype("timedelta64[us]")
    return Tracklet(
        station=station,
        utc=utc,
        ra_deg=rng.uniform(0, 360) + 0.05 * np.arange(5),
        dec_deg=-75.0 + 0.05 * np.arange(5),
    )


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    proc = CenterThread(tmp_path_factory.mktemp("center")).start()
    proc.tokens = {
        "IRN1": proc.token("IRN1", "station"),
        "PAK1": proc.token("PAK1", "station"),
        "analyst": proc.token("alice", "analyst"),
        "admin": proc.token("root", "admin"),
    }
    yield proc
    proc.stop()
    log = proc.log.read_text()
    for token in proc.tokens.values():
        assert token not in log, "a token appeared in the server log"


@pytest.fixture(scope="module")
def arcs():
    return passes("IRN1", OBJECTS, NIGHT)


@pytest.fixture(scope="module")
def correlated(center, arcs):
    """Upload real arcs and a UCT, put the catalogue, wait for the worker."""
    uct = random_tracklet()
    with center.client(center.tokens["IRN1"]) as c:
        answer = c.upload_tracklets([*arcs.values(), uct])
    assert answer["stored"] == len(arcs) + 1
    with center.client(center.tokens["admin"]) as c:
        put = c.put_catalogue(CAT_0930)
    assert put["new"] and put["snapshot"]["n_objects"] == 3062
    center.wait_for_queue()
    return {"arcs": arcs, "uct": uct, "snapshot": put["snapshot"]}


def test_health_and_docs(center):
    health = httpx.get(f"{center.url}/healthz").json()
    assert health["status"] == "ok" and health["schema_version"] >= 1
    assert httpx.get(f"{center.url}/docs").status_code == 200
    paths = httpx.get(f"{center.url}/openapi.json").json()["paths"]
    for p in (
        "/api/v1/tracklets",
        "/api/v1/tracklets/{key}",
        "/api/v1/correlations",
        "/api/v1/objects/{norad_id}",
        "/api/v1/uct",
        "/api/v1/stations",
        "/api/v1/stations/{code}/heartbeat",
        "/api/v1/catalogue",
        "/api/v1/recorrelate",
        "/api/v1/export",
    ):
        assert p in paths


def test_upload_is_idempotent_and_queryable(center):
    t = random_tracklet(station="PAK1", seed=11)
    with center.client(center.tokens["PAK1"]) as c:
        first = c.upload_tracklets([t])
        again = c.upload_tracklets([t])
    assert first["stored"] == 1 and first["tracklets"][0]["new"]
    assert again["stored"] == 0 and again["duplicates"] == 1
    assert again["tracklets"][0]["id"] == first["tracklets"][0]["id"]
    with center.client(center.tokens["analyst"]) as c:
        detail = c.tracklet(t.uuid)
        by_id = c.tracklet(first["tracklets"][0]["id"])
    detail.pop("queue"), by_id.pop("queue")  # the worker may move on in between
    assert detail == by_id
    assert detail["station"] == "PAK1" and detail["n_obs"] == 5
    got = np.array([o["ra_deg"] for o in detail["observations"]])
    np.testing.assert_array_equal(got, t.ra_deg)
    assert detail["observations"][0]["utc"] == str(t.utc[0]) + "Z"


def test_tdm_upload(center):
    t = random_tracklet(station="PAK1", seed=12)
    with center.client(center.tokens["PAK1"]) as c:
        answer = c.upload_tdm(write_tdm([t], format="xml"))
        again = c.upload_tdm(write_tdm([t], format="kvn"))
    assert answer["stored"] == 1 and answer["tracklets"][0]["uuid"] == t.uuid
    assert again["stored"] == 0  # the same tracklet in the other TDM flavour
    with center.client(center.tokens["analyst"]) as c:
        detail = c.tracklet(t.uuid)
    dec = np.array([o["dec_deg"] for o in detail["observations"]])
    np.testing.assert_allclose(dec, t.dec_deg, atol=1e-9)  # TDM keeps 1e-10 degree


def test_access_rules(center):
    t = random_tracklet(station="IRN1", seed=13)
    body = json.dumps([t.to_wire()])
    url = f"{center.url}/api/v1/tracklets"
    assert httpx.post(url, content=body).status_code == 401
    bad = httpx.post(url, content=body, headers={"Authorization": "Bearer aposos_nope"})
    assert bad.status_code == 401 and "unknown or revoked" in bad.json()["detail"]
    for who in ("analyst", "admin"):
        with center.client(center.tokens[who]) as c, pytest.raises(CenterError) as err:
            c.upload_tracklets([t])
        assert err.value.status == 403
    with center.client(center.tokens["IRN1"]) as c:
        for call in (c.correlations, c.uct, c.stations, lambda: c.object(20580)):
            with pytest.raises(CenterError) as err:
                call()
            assert err.value.status == 403
        with pytest.raises(CenterError) as err:
            c.tracklets(station="PAK1")
        assert err.value.status == 403
        own = c.tracklets()  # a station reads its own tracklets only
        assert {i["station"] for i in own["items"]} <= {"IRN1"}
        with pytest.raises(CenterError) as err:
            c.put_catalogue(CAT_0930)
        assert err.value.status == 403
    with center.client(center.tokens["analyst"]) as c, pytest.raises(CenterError) as err:
        c.recorrelate()
    assert err.value.status == 403


def test_heartbeat_shows_in_stations(center):
    with center.client(center.tokens["PAK1"]) as c:
        beat = c.heartbeat("PAK1", outbox_backlog=42, agent_version="0.1.0")
        with pytest.raises(CenterError) as err:
            c.heartbeat("IRN1", outbox_backlog=1)
        assert err.value.status == 403
        with pytest.raises(CenterError) as err:
            c.heartbeat("PAK1", outbox_backlog="many")
        assert err.value.status == 422 and "outbox_backlog" in err.value.message
    assert beat["received_at"].endswith("Z")
    with center.client(center.tokens["analyst"]) as c:
        stations = {s["code"]: s for s in c.stations()["items"]}
    assert stations["PAK1"]["outbox_backlog"] == 42
    assert stations["PAK1"]["last_heartbeat"] == beat["received_at"]


def test_bad_query_parameters_are_named(center):
    with center.client(center.tokens["analyst"]) as c:
        for kwargs, needle in (
            ({"since": "yesterday"}, "since"),
            ({"limit": 100000}, "limit"),
            ({"status": "lost"}, "status"),
        ):
            with pytest.raises(CenterError) as err:
                c.tracklets(**kwargs)
            assert err.value.status == 422 and needle in err.value.message
        with pytest.raises(CenterError) as err:
            c.tracklet(uuid.uuid4())
        assert err.value.status == 404


def test_tracklets_are_correlated_against_the_catalogue(center, correlated):
    arcs = correlated["arcs"]
    with center.client(center.tokens["analyst"]) as c:
        for number, t in arcs.items():
            detail = c.tracklet(t.uuid)
            assert detail["status"] == "correlated", detail["correlation"]
            assert detail["norad_id"] == number
            corr = detail["correlation"]
            assert corr["snapshot_id"] == correlated["snapshot"]["id"]
            assert corr["candidates"][0]["norad_id"] == number
            assert corr["reason"].startswith(f"correlated with {number}")
            # Skyfield + ERFA directions and the correlator's agree to about an arcsecond
            assert corr["rms_arcsec"] < 5
        hst = c.correlations(norad_id=20580)["items"]
        assert [i["uuid"] for i in hst] == [arcs[20580].uuid]
        history = c.object(20580)
        assert history["items"][0]["observations"][0]["utc"] == str(arcs[20580].utc[0]) + "Z"
        uct = c.uct()["items"]
        assert correlated["uct"].uuid in [i["uuid"] for i in uct]
        assert all(i["status"] == "uncorrelated" for i in uct)
        everything = list(c.pages("correlations", limit=1))
        assert len(everything) == len(c.correlations(limit=1000)["items"]) >= len(arcs) + 1


def test_exports(center, correlated):
    hst = correlated["arcs"][20580]
    window = {"since": str(hst.utc[0]) + "Z", "until": str(hst.utc[-1] + 1) + "Z"}
    with center.client(center.tokens["analyst"]) as c:
        tdm = c.export("tdm", station="IRN1", **window)
        rows = list(csv.DictReader(io.StringIO(c.export("csv", station="IRN1", **window))))
        iod = c.export("iod", station="IRN1", **window)
        with pytest.raises(CenterError) as err:
            c.export("xls")
        assert err.value.status == 422
    (parsed,) = read_tdm(tdm)
    assert parsed.ok and parsed.tracklet.object == "20580" and parsed.tracklet.uuid == hst.uuid
    np.testing.assert_allclose(parsed.tracklet.ra_deg, hst.ra_deg, atol=1e-9)
    assert len(rows) == len(hst) and {r["norad_id"] for r in rows} == {"20580"}
    assert float(rows[0]["ra_deg"]) == hst.ra_deg[0]
    lines = iod.splitlines()
    assert len(lines) == len(hst) and all(line.startswith("20580") for line in lines)
    assert all(line[16:20] == "2401" for line in lines)  # IRN1's IOD station number


def test_new_snapshot_and_recorrelation(center, correlated, tmp_path):
    import lzma

    hst = correlated["arcs"][20580]
    packed = tmp_path / "active.3le.xz"
    packed.write_bytes(lzma.compress(CAT_1002.read_bytes()))
    with center.client(center.tokens["admin"]) as c:
        put = c.put_catalogue(CAT_1002)
        assert c.put_catalogue(CAT_1002)["new"] is False  # same element sets: same snapshot
        # a compressed file goes as its text: the same snapshot again
        assert c.put_catalogue(packed)["snapshot"]["id"] == put["snapshot"]["id"]
        queued = c.recorrelate(since=str(hst.utc[0]) + "Z", until=str(hst.utc[-1] + 1) + "Z")
    assert queued["queued"] == 1
    center.wait_for_queue()
    with center.client(center.tokens["analyst"]) as c:
        detail = c.tracklet(hst.uuid)
        snapshots = c.snapshots()
    assert [s["id"] for s in snapshots] == [correlated["snapshot"]["id"], put["snapshot"]["id"]]
    assert detail["correlation"]["snapshot_id"] == put["snapshot"]["id"]  # the newest suitable
    assert detail["norad_id"] == 20580
    assert len(detail["correlation_history"]) == 2


def test_tracklet_without_a_suitable_catalogue_waits(center, correlated):
    late = random_tracklet(start=np.datetime64("2021-03-01T20:00:00", "us"), seed=99)
    with center.client(center.tokens["IRN1"]) as c:
        c.upload_tracklets([late])
    center.wait_for_queue()
    with center.client(center.tokens["analyst"]) as c:
        assert c.tracklet(late.uuid)["status"] == "pending"
    assert center.wait_for_queue()["waiting"] >= 1


def test_query_command_line(center, correlated, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(center.tokens["analyst"] + "\n")
    common = ["--center", center.url, "--token-file", str(token_file)]
    table = aposos_cli("query", "correlations", "--status", "correlated", *common)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["tracklet_id", "station", "t_mid"]
    assert any("20580" in r.split() for r in rows)
    as_json = aposos_cli("query", "object", "20580", "--format", "json", *common)
    items = json.loads(as_json.stdout)
    assert items[0]["norad_id"] == 20580 and items[0]["observations"]
    as_csv = aposos_cli("query", "tracklets", "--station", "IRN1", "--format", "csv", *common)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["station"] for r in rows} == {"IRN1"} and rows[0]["uuid"]
    stations = aposos_cli("query", "stations", *common)
    assert "IRN1" in stations.stdout
    wrong = aposos_cli("query", "uct", "--since", "soon", *common)
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1 and "since" in wrong.stderr
    no_server = aposos_cli(
        "query", "uct", "--center", "http://127.0.0.1:9", "--token-file", str(token_file)
    )
    assert no_server.returncode == 2 and "cannot reach" in no_server.stderr


def test_token_administration_command_line(center, tmp_path):
    env = {"APOSOS_CENTER_CONFIG": str(center.config)}
    made = aposos_cli("center", "add-user", "bob", "--role", "analyst", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    with center.client(token) as c:
        assert c.stations()["items"]
    assert aposos_cli("center", "add-user", "bob", "--role", "analyst", env=env).returncode == 2
    listed = aposos_cli("center", "tokens", env=env)
    assert "bob" in listed.stdout and token not in listed.stdout
    revoked = aposos_cli("center", "revoke", "bob", env=env)
    assert revoked.returncode == 0
    with center.client(token) as c, pytest.raises(CenterError) as err:
        c.stations()
    assert err.value.status == 401
    station_file = tmp_path / "PER1.token"
    made = aposos_cli("center", "add-station", "PER1", "--token-file", str(station_file), env=env)
    assert made.returncode == 0 and station_file.stat().st_mode & 0o777 == 0o600
    assert station_file.read_text().strip() not in made.stdout


def test_the_service_on_postgresql(postgres_server, tmp_path):
    """The same service with its database on a real PostgreSQL server."""
    proc = CenterProcess(tmp_path, database=postgres_server.new_database()).start()
    try:
        station, analyst = proc.token("PAK1"), proc.token("alice", "analyst")
        admin = proc.token("root", "admin")
        batch = [random_tracklet(station="PAK1", seed=k) for k in range(30)]
        with proc.client(station) as c:
            assert c.upload_tracklets(batch)["stored"] == 30
            assert c.upload_tracklets(batch[:10])["duplicates"] == 10
        with proc.client(admin) as c:
            c.put_catalogue(CAT_0930)
        counts = proc.wait_for_queue()
        assert counts["done"] == 30
        with proc.client(analyst) as c:
            pages = list(c.pages("tracklets", station="PAK1", limit=7))
            uct = list(c.pages("uct", limit=100))
        assert sorted(p["uuid"] for p in pages) == sorted(t.uuid for t in batch)
        assert len(uct) == 30
    finally:
        proc.stop()
