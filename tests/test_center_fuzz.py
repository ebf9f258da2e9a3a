"""Fuzzing the upload, heartbeat and query endpoints of a real center process
(SQLite and a real PostgreSQL), bounded in time: no answer is a 5xx, every error has
the documented shape (one-line ``detail``), a refused request stores nothing, the
data stored before is untouched, and the service still answers at the end.

Hypothesis builds the inputs: JSON of any shape, wire records with fields replaced
by hostile values (NUL, huge integers, years 0000-9999, deep nesting), TDM documents
with a line replaced, raw bytes, and query strings with out-of-range values.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import httpx
import pytest
from centerserver import CenterProcess
from sqlalchemy import func, select
from test_center_faults import tracklet

from aposos.center import schema as S
from aposos.formats.tdm import write_tdm

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BUDGET_S = 8.0  # per endpoint group and database: the whole file stays within a minute
EXAMPLES = 400

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.sampled_from(["\x00", "IRN1", "²", "9" * 30, "0000-01-01T00:00:00Z", "x" * 70])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)
times = st.builds(
    "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{}Z".format,
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.integers(0, 10**9),
)
FIELDS = ["uuid", "station", "object", "observations", "extra"]
OBS_FIELDS = ["utc", "ra_deg", "dec_deg", "sigma_arcsec", "mag", "extra"]


@st.composite
def wire_records(draw):
    """A valid wire record (of station IRN1) with some fields made hostile."""
    rec = tracklet(draw(st.integers(0, 10**6))).to_wire()
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        rec[key] = draw(json_values)
    obs = rec.get("observations")
    if isinstance(obs, list) and obs and isinstance(obs[0], dict):
        k = draw(st.integers(0, len(obs) - 1))
        key = draw(st.sampled_from(OBS_FIELDS))
        if isinstance(obs[k], dict):  # a hostile list may hold anything after the first
            obs[k][key] = draw(times if key == "utc" else json_values)
        if draw(st.booleans()):
            del obs[draw(st.integers(0, len(obs) - 1)) :]
    return rec


@st.composite
def tdm_bodies(draw):
    lines = write_tdm(
        [tracklet(draw(st.integers(0, 1000)))], format=draw(st.sampled_from(["kvn", "xml"]))
    ).splitlines()
    k = draw(st.integers(0, len(lines) - 1))
    lines[k] = draw(
        st.text(max_size=60) | st.sampled_from(["<!DOCTYPE x [<!ENTITY a 'b'>]>", "\x00"])
    )
    return "\n".join(lines)


upload_bodies = (
    st.lists(wire_records(), min_size=1, max_size=3).map(json.dumps)
    | json_values.map(lambda v: json.dumps(v, allow_nan=True))
    | tdm_bodies()
    | st.binary(max_size=200)
    | st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n)
)
QUERY_PATHS = [
    "/api/v1/tracklets",
    "/api/v1/correlations",
    "/api/v1/uct",
    "/api/v1/stations",
    "/api/v1/export",
    "/api/v1/catalogue",
]
PARAMS = ["station", "since", "until", "status", "norad_id", "limit", "offset", "format"]
param_values = (
    st.integers(-(2**80), 2**80).map(str)
    | st.text(max_size=40)
    | times
    | st.sampled_from(["²", "\x00", "correlated", "tdm", "iod", "csv", "NaN", "1e999"])
)
queries = st.tuples(
    st.sampled_from(QUERY_PATHS)
    | st.text(max_size=30).map(lambda s: "/api/v1/tracklets/" + quote(s, safe=""))
    | st.text(max_size=30).map(lambda s: "/api/v1/objects/" + quote(s, safe="")),
    st.dictionaries(st.sampled_from(PARAMS), param_values, max_size=4),
)
pytestmark = pytest.mark.slow  # about 50 s of fuzzing plus the servers' start

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def center(request, tmp_path_factory):
    options = {}
    if request.param == "postgresql":
        options["database"] = request.getfixturevalue("postgres_server").new_database()
    proc = CenterProcess(tmp_path_factory.mktemp(f"fuzz-{request.param}"), worker=False, **options)
    proc.start()
    proc.tokens = {
        "IRN1": proc.token("IRN1"),
        "PAK1": proc.token("PAK1"),
        "analyst": proc.token("alice", "analyst"),
    }
    with proc.client(proc.tokens["PAK1"]) as c:
        c.upload_tracklets([tracklet(k, "PAK1") for k in range(4)])
        c.heartbeat("PAK1", outbox_backlog=3, agent_version="1.0")
    proc.http = httpx.Client(base_url=proc.url, timeout=60)
    proc.baseline = baseline(proc)
    yield proc
    proc.http.close()
    assert baseline(proc) == proc.baseline  # what PAK1 had stored is untouched
    proc.stop()


def baseline(center) -> dict:
    """Everything stored for station PAK1."""
    K, O, J, T = S.tracklets, S.observations, S.jobs, S.stations
    pak = select(K.c.id).where(K.c.station == "PAK1")
    with center.store.read() as conn:
        return {
            "tracklets": sorted(map(tuple, conn.execute(select(K).where(K.c.station == "PAK1")))),
            "observations": sorted(
                map(tuple, conn.execute(select(O).where(O.c.tracklet_id.in_(pak))))
            ),
            "jobs": sorted(map(tuple, conn.execute(select(J).where(J.c.tracklet_id.in_(pak))))),
            "station": sorted(map(tuple, conn.execute(select(T).where(T.c.code == "PAK1")))),
        }


def counts(center) -> tuple:
    with center.store.read() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (S.tracklets, S.observations, S.jobs, S.correlations)
        )


def heartbeat_row(center):
    T = S.stations
    with center.store.read() as conn:
        return conn.execute(select(T).where(T.c.code == "IRN1")).first()


def check_answer(answer: httpx.Response, what) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and detail and "\n" not in detail, (what, detail)


def run_budget():
    """A function telling whether the time is up; it counts the examples run."""
    deadline = time.monotonic() + BUDGET_S
    state = {"n": 0}

    def over() -> bool:
        if time.monotonic() > deadline:
            return True
        state["n"] += 1
        return False

    over.state = state
    return over


def test_fuzz_uploads(center):
    over = run_budget()
    headers = {"Authorization": f"Bearer {center.tokens['IRN1']}"}

    @FUZZ
    @given(body=upload_bodies)
    def upload(body):
        if over():
            return
        before = counts(center)
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        answer = center.http.post("/api/v1/tracklets", content=data, headers=headers)
        check_answer(answer, data[:200])
        if answer.status_code >= 400:
            assert counts(center) == before, data[:200]

    upload()
    print(f"{over.state['n']} requests")
    assert center.http.get("/healthz").status_code == 200


def test_fuzz_heartbeats(center):
    over = run_budget()
    headers = {"Authorization": f"Bearer {center.tokens['IRN1']}"}

    @FUZZ
    @given(
        body=json_values.map(lambda v: json.dumps(v, allow_nan=True)) | st.binary(max_size=100),
        code=st.sampled_from(["IRN1", "PAK1"]) | st.text(max_size=12),
    )
    def beat(body, code):
        if over():
            return
        before = heartbeat_row(center)
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        path = f"/api/v1/stations/{quote(code, safe='')}/heartbeat"
        answer = center.http.post(path, content=data, headers=headers)
        check_answer(answer, (code, data[:200]))
        if answer.status_code >= 400:
            assert heartbeat_row(center) == before

    beat()
    print(f"{over.state['n']} requests")
    assert center.http.get("/healthz").status_code == 200


def test_fuzz_queries(center):
    over = run_budget()
    headers = {"Authorization": f"Bearer {center.tokens['analyst']}"}

    @FUZZ
    @given(query=queries)
    def ask(query):
        if over():
            return
        path, params = query
        before = counts(center)
        answer = center.http.get(path, params=params, headers=headers)
        check_answer(answer, (path, params))
        assert counts(center) == before

    ask()
    print(f"{over.state['n']} requests")
    assert center.http.get("/healthz").status_code == 200
