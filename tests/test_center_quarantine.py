"""An upload whose processing fails in a way nobody foresaw is quarantined with its
reason and answered 422 (never 500), and the service goes on (in-process app, real
SQLite file; the failure is injected, since no known input causes one any more)."""

from __future__ import annotations

import json
import warnings

import pytest
from sqlalchemy import select
from test_center_faults import tracklet

from aposos.center import api, api_uploads
from aposos.center import schema as S
from aposos.center.auth import issue_token
from aposos.center.config import CenterConfig, WorkerConfig
from aposos.center.store import Store


@pytest.fixture
def app_and_store(tmp_path):
    config = CenterConfig(data_dir=tmp_path, worker=WorkerConfig(enabled=False))
    store = Store(config.database_url)
    store.upgrade()
    token = issue_token(store, "IRN1", "station")
    with warnings.catch_warnings():  # starlette asks for httpx2, which we do not use
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    with TestClient(api.create_app(config)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, store
    store.close()


@pytest.mark.parametrize("where", ["parse_upload", "ingest_upload"])
def test_unforeseen_failures_quarantine_the_upload(app_and_store, monkeypatch, where):
    client, store = app_and_store

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")

    if where == "parse_upload":
        monkeypatch.setattr(api_uploads, "parse_upload", broken)
    else:
        monkeypatch.setattr(Store, "ingest_upload", broken)
    body = json.dumps([tracklet(1).to_wire()])
    answer = client.post("/api/v1/tracklets", content=body)
    assert answer.status_code == 422
    assert "quarantined" in answer.json()["detail"] and "RuntimeError" in answer.json()["detail"]
    with store.read() as conn:
        (row,) = conn.execute(select(S.uploads)).all()
        n = conn.execute(select(S.tracklets.c.id)).all()
    assert row.state == "quarantined" and "nobody foresaw" in row.error
    assert row.payload == body.encode() and n == []
    monkeypatch.undo()
    assert client.post("/api/v1/tracklets", content=body).status_code == 201
    assert client.get("/healthz").status_code == 200
