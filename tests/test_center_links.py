"""Links, tokens and limits of a real center process: HTTPS with a certificate the test
makes (trustme), a station that pins its CA, no token in a URL or a log, token
expiry, rotation with an overlap, one-time enrolment codes, per-station rate limits
and quotas, retention of rejected uploads, and ``/docs`` without the internet."""

from __future__ import annotations

import json
import re
import ssl
from datetime import timedelta

import httpx
import pytest
from centerserver import STATIONS, CenterProcess, aposos_cli
from test_center_faults import tracklet

from aposos.center.auth import AuthError, authenticate, issue_token, rotate_token
from aposos.center.config import CenterConfig
from aposos.center.dbtypes import utcnow
from aposos.center.housekeeping import Housekeeper
from aposos.center.store import Store
from aposos.station.config import StationConfig
from aposos.station.uplink import LinkError, center_http, enrol, tls_verify


@pytest.fixture(scope="module")
def ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="module")
def center(ca, tmp_path_factory):
    """The file's one center process: HTTPS with a certificate of the test's CA, and
    per-station upload limits (each test uses stations of its own)."""
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "center.pem"))
    cert.private_key_pem.write_to_path(str(folder / "center.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    proc = CenterProcess(
        folder / "center",
        worker=False,
        ssl_certfile=str(folder / "center.pem"),
        ssl_keyfile=str(folder / "center.key"),
        station_uploads_per_minute=60.0,
        station_upload_burst=3,
        station_quota_bytes=20_000,
    )
    proc.url = proc.url.replace("http://", "https://")
    proc.ca_file = folder / "ca.pem"
    proc.verify = ssl.create_default_context(cafile=str(proc.ca_file))
    _start_tls(proc)
    yield proc
    proc.stop()


def _start_tls(proc: CenterProcess) -> None:
    import time

    proc.proc = None
    logfile = open(proc.log, "ab")  # noqa: SIM115 - owned by the process
    import subprocess

    from centerserver import APOSOS, REPO

    proc.proc = subprocess.Popen(
        [*APOSOS, "center", "serve", "--config", str(proc.config)],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    logfile.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{proc.url}/healthz", verify=proc.verify, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(proc.log.read_text()[-2000:])


def station_file(tmp_path, url: str, ca_file=None) -> StationConfig:
    text = (STATIONS / "iran.toml").read_text()
    text = re.sub(r'(?m)^url = ".*"$', f'url = "{url}"', text)
    text = re.sub(r'(?m)^token_file = ".*"$', 'token_file = "irn1.token"', text)
    if ca_file:
        text = text.replace(
            'token_file = "irn1.token"', f'token_file = "irn1.token"\nca_file = "{ca_file}"'
        )
    path = tmp_path / "iran.toml"
    path.write_text(text)
    return StationConfig.load(path)


def test_https_with_a_pinned_ca_and_enrolment(center, tmp_path):
    code = aposos_cli(
        "center", "enrol-code", "IRN1", env={"APOSOS_CENTER_CONFIG": str(center.config)}
    )
    assert code.returncode == 0, code.stderr
    code = code.stdout.strip()
    assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", code)
    # without the pinned CA the station does not trust the center's certificate
    unpinned = station_file(tmp_path, center.url)
    with pytest.raises(LinkError, match="cannot reach"):
        enrol(unpinned, code)
    station = station_file(tmp_path, center.url, center.ca_file)
    enrolled = aposos_cli("station", "enrol", "--station", str(station.path), code.lower())
    assert enrolled.returncode == 0, enrolled.stderr
    assert station.token_path.stat().st_mode & 0o777 == 0o600
    with center_http(station) as http:
        answer = http.post("/api/v1/tracklets", json=[tracklet(1).to_wire()])
    assert answer.status_code == 201, answer.text
    again = aposos_cli("station", "enrol", "--station", str(station.path), code)
    assert again.returncode == 2 and "used or expired" in again.stderr  # one time only
    token = station.token_path.read_text().strip()
    assert token not in center.log.read_text()


def test_no_token_in_clear():
    with pytest.raises(LinkError, match="in clear"):
        tls_verify("http://center.aposos.example.org", None)
    assert tls_verify("http://127.0.0.1:8600", None) is True  # loopback: never on a wire


def test_token_in_a_query_string_is_refused_and_not_logged(center):
    token = center.token("alice", "analyst")
    for query in (f"token={token}", f"access_token={token}", f"x={token}"):
        answer = httpx.get(f"{center.url}/api/v1/tracklets?{query}", verify=center.verify)
        assert answer.status_code == 400 and "not accepted in the URL" in answer.json()["detail"]
    secret = token.removeprefix("aposos_")
    assert secret not in center.log.read_text()
    assert "[redacted]" in center.log.read_text()


def test_rate_limit_and_quota(center):
    token = center.token("PAK1")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{center.url}/api/v1/tracklets"
    codes = []
    for k in range(5):
        body = json.dumps([tracklet(100 + k, "PAK1").to_wire()])
        codes.append(
            httpx.post(url, content=body, headers=headers, verify=center.verify).status_code
        )
    assert codes[:3] == [201, 201, 201] and 429 in codes[3:]
    other = center.token("PER1")
    big = [tracklet(200 + k, "PER1").to_wire() for k in range(40)]
    first = httpx.post(
        url,
        content=json.dumps(big[:20]),
        headers={"Authorization": f"Bearer {other}"},
        verify=center.verify,
    )
    assert first.status_code == 201 and 10_000 < len(json.dumps(big[:20])) < 20_000
    over = httpx.post(
        url,
        content=json.dumps(big[20:]),
        headers={"Authorization": f"Bearer {other}"},
        verify=center.verify,
    )
    assert over.status_code == 403 and "storage quota" in over.json()["detail"]


def test_docs_work_offline(center):
    page = httpx.get(f"{center.url}/docs", verify=center.verify)
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)=["\']([^"\']+)', page.text)
    assert sources and not [s for s in sources if s.startswith(("http:", "https:", "//"))]
    for src in sources:
        asset = httpx.get(f"{center.url}{src}", verify=center.verify)
        assert asset.status_code == 200 and len(asset.content) > 500, src
    assert "cdn" not in page.text.lower()


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'center.sqlite'}")
    s.upgrade()
    yield s
    s.close()


def test_token_expiry_and_rotation_with_overlap(store):
    soon = issue_token(store, "IRN1", "station", valid_days=1)
    assert authenticate(store, f"Bearer {soon}").name == "IRN1"
    P = __import__("aposos.center.schema", fromlist=["principals"]).principals
    with store.write() as conn:
        conn.execute(P.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(AuthError, match="expired"):
        authenticate(store, f"Bearer {soon}")
    store.revoke("IRN1")
    old = issue_token(store, "IRN1", "station")
    new = rotate_token(store, "IRN1", overlap_hours=1)
    assert authenticate(store, f"Bearer {old}").name == "IRN1"  # within the overlap
    assert authenticate(store, f"Bearer {new}").name == "IRN1"
    with store.write() as conn:
        conn.execute(P.update().values(previous_until=utcnow() - timedelta(seconds=1)))
    with pytest.raises(AuthError):
        authenticate(store, f"Bearer {old}")
    assert authenticate(store, f"Bearer {new}").name == "IRN1"
    with pytest.raises(ValueError, match="no live token"):
        rotate_token(store, "nobody")


def test_raw_copies_of_rejected_uploads_are_dropped_after_the_retention(store):
    big = b"x" * 1_000_000
    old = store.save_raw_upload("IRN1", "application/json", big)
    store.reject_upload(old, "not JSON")
    fresh = store.save_raw_upload("IRN1", "application/json", big)
    store.reject_upload(fresh, "not JSON")
    U = __import__("aposos.center.schema", fromlist=["uploads"]).uploads
    with store.write() as conn:
        conn.execute(
            U.update().where(U.c.id == old).values(received_at=utcnow() - timedelta(days=8))
        )
    keeper = Housekeeper(store, CenterConfig(rejected_retention_days=7))
    assert keeper.purge() == 1
    with store.read() as conn:
        rows = {r.id: r for r in conn.execute(U.select())}
    assert rows[old].payload == b"" and rows[old].error == "not JSON"  # the record stays
    assert len(rows[fresh].payload) == 1_000_000
    assert keeper.purge() == 0


@pytest.mark.slow  # the quick loop leaves it out; make test runs it
def test_behind_a_reverse_proxy_the_forwarded_address_is_logged(tmp_path):
    proc = CenterProcess(
        tmp_path, worker=False, proxy_headers=True, forwarded_allow_ips="127.0.0.1"
    ).start()
    try:
        forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        assert httpx.get(f"{proc.url}/healthz", headers=forwarded).status_code == 200
    finally:
        proc.stop()
    assert "203.0.113.7" in proc.log.read_text()  # the client, not the proxy


def test_without_proxy_headers_a_forwarded_address_is_not_believed(center):
    spoofed = {"X-Forwarded-For": "198.51.100.9"}
    assert (
        httpx.get(f"{center.url}/healthz", headers=spoofed, verify=center.verify).status_code == 200
    )
    assert "198.51.100.9" not in center.log.read_text()
