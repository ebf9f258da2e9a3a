"""JSON bodies other than tracklet uploads are pydantic models (``center/bodies.py``,
``HeartbeatBody``) whose problems read as one line naming the field, as before; checked
on the models and through the API in process (real SQLite file)."""

from __future__ import annotations

import warnings

import pytest

from aposos.center import api
from aposos.center.auth import issue_token
from aposos.center.bodies import EnrolBody, RecorrelateBody, problem_of
from aposos.center.checks import DB_INT_MAX
from aposos.center.config import CenterConfig, WorkerConfig
from aposos.center.heartbeats import COUNTERS, QUALITY, HeartbeatBody
from aposos.center.store import Store

BAD_HEARTBEATS = [
    ({"outbox_backlog": True}, f"outbox_backlog must be a non-negative integer (at most {DB_INT_MAX})"),
    ({"frames_failed": 2**70}, "frames_failed must be a non-negative integer"),
    ({"quality_frames": 1.0}, "quality_frames must be a non-negative integer"),
    ({"heartbeat_s": "60"}, "heartbeat_s must be a number of seconds from 1 to 3600"),
    ({"heartbeat_s": 10**400}, "heartbeat_s must be a number of seconds from 1 to 3600"),
    ({"station_time": 1_600_000_000}, "station_time must be an ISO 8601 time between 1957 and 2099"),
    ({"station_time": "1900-01-01T00:00:00Z"}, "station_time must be an ISO 8601 time"),
    ({"solve_rate": False}, "solve_rate must be a number from 0 to 1"),
    ({"sky_mag_arcsec2": 31}, "sky_mag_arcsec2 must be a number from 5 to 30"),
    ({"agent_version": "v" * 65}, "agent_version is longer than 64 characters"),
    ({"agent_version": ["1"]}, "agent_version must be a string"),
    ({"unsolved_reasons": {str(i): 1 for i in range(51)}}, "at most 50 reasons"),
    ({"unsolved_reasons": {"clouds": -1}}, "unsolved_reasons['clouds'] must be a non-negative integer"),
    ({"unsolved_reasons": {"": 1}}, "an unsolved reason is empty"),
    ({"unsolved_reasons": {"a\u0000": 1}}, "holds control characters"),
    # the first problem in the model's order is the one named
    ({"last_error": 7, "outbox_backlog": -1}, "outbox_backlog must be"),
]  # fmt: skip


@pytest.mark.parametrize("doc, words", BAD_HEARTBEATS)
def test_a_bad_heartbeat_names_its_field(doc, words):
    problem = problem_of(HeartbeatBody, doc)
    assert problem is not None and words in problem and "\n" not in problem


def test_a_good_heartbeat_and_unknown_keys_pass():
    doc = {"outbox_backlog": 0, "heartbeat_s": 60, "station_time": "2026-12-03T20:00:00Z",
           "fwhm_arcsec": 2.1, "unsolved_reasons": {"clouds": 3}, "from_a_newer_agent": [1]}  # fmt: skip
    assert problem_of(HeartbeatBody, doc) is None
    assert problem_of(HeartbeatBody, {}) is None


def test_the_heartbeat_model_checks_every_counter_and_quality_figure():
    fields = HeartbeatBody.model_fields
    assert set(COUNTERS) | set(QUALITY) <= set(fields)
    for name, (lo, hi) in QUALITY.items():
        assert problem_of(HeartbeatBody, {name: lo}) is None
        assert problem_of(HeartbeatBody, {name: hi + 1}) == f"{name} must be a number from {lo:g} to {hi:g}"  # fmt: skip


@pytest.mark.parametrize(
    "model, doc, message",
    [
        (EnrolBody, {}, "code must be the enrolment code (a string)"),
        (EnrolBody, {"code": ""}, "code must be the enrolment code (a string)"),
        (EnrolBody, {"code": "x" * 65}, "code must be the enrolment code (a string)"),
        (EnrolBody, {"code": 123456}, "code must be the enrolment code (a string)"),
        (RecorrelateBody, {"since": 5}, "since must be a string"),
        (RecorrelateBody, {"station": ["PER1"]}, "station must be a string"),
        (RecorrelateBody, {"snapshot_id": True}, "snapshot_id must be an integer"),
        (RecorrelateBody, {"snapshot_id": "3"}, "snapshot_id must be an integer"),
        (RecorrelateBody, {"snapshot_id": -1}, f"snapshot_id must be within 0..{DB_INT_MAX}"),
    ],
)
def test_admin_and_enrolment_bodies_name_their_field(model, doc, message):
    assert problem_of(model, doc) == message


@pytest.fixture
def client(tmp_path):
    config = CenterConfig(data_dir=tmp_path, worker=WorkerConfig(enabled=False))
    store = Store(config.database_url)
    store.upgrade()
    tokens = {role: issue_token(store, name, role)
              for name, role in (("IRN1", "station"), ("root", "admin"))}  # fmt: skip
    with warnings.catch_warnings():  # starlette asks for httpx2, which we do not use
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    with TestClient(api.create_app(config)) as c:
        yield c, tokens
    store.close()


def test_the_api_answers_a_bad_body_with_422_naming_the_field(client):
    c, tokens = client
    station = {"Authorization": f"Bearer {tokens['station']}"}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    probes = [
        ("/api/v1/stations/IRN1/heartbeat", station, {"frames_failed": True}, "frames_failed must be a non-negative integer"),
        ("/api/v1/stations/IRN1/heartbeat", station, {"solve_rate": 2}, "solve_rate must be a number from 0 to 1"),
        ("/api/v1/enrol", {}, {"code": 7}, "code must be the enrolment code (a string)"),
        ("/api/v1/recorrelate", admin, {"until": 2020}, "until must be a string"),
        ("/api/v1/recorrelate", admin, {"snapshot_id": 2**70}, "snapshot_id must be within"),
    ]  # fmt: skip
    for path, headers, doc, words in probes:
        answer = c.post(path, json=doc, headers=headers)
        assert answer.status_code == 422, (path, answer.text)
        assert words in answer.json()["detail"], (path, answer.json())
    # good bodies still work: a heartbeat is kept; a re-correlation of nothing queues 0
    beat = c.post("/api/v1/stations/IRN1/heartbeat", json={"outbox_backlog": 3}, headers=station)
    assert beat.status_code == 200 and beat.json()["code"] == "IRN1"
    again = c.post("/api/v1/recorrelate", json={"station": "IRN1"}, headers=admin)
    assert again.status_code == 200 and again.json() == {"queued": 0, "snapshot_id": None}
    missing = c.post("/api/v1/recorrelate", json={"snapshot_id": 99}, headers=admin)
    assert missing.status_code == 404 and "no catalogue snapshot 99" in missing.json()["detail"]
