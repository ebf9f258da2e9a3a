"""Verified tokens are cached (the token check stays on the event loop), and a change
of a token in any process ends its cached entry at once: revocation, rotation,
expiry.

A real SQLite file; a second :class:`Store` on it plays the other process (the
``aposos center revoke`` command); the last test revokes from the test process
while a real server process holds the cache.
"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from centerserver import CenterProcess

from aposos.center.auth import AuthError, TokenCache, hash_token, issue_token, rotate_token
from aposos.center.dbtypes import utcnow
from aposos.center.store import Store


@pytest.fixture
def stores(tmp_path):
    """(the server's store, another process's store) on one database."""
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    server = Store(url)
    server.upgrade()
    other = Store(url)
    yield server, other
    server.close()
    other.close()


def _asked(store: Store) -> list[str]:
    """Count the cache's trips to the database."""
    calls: list[str] = []
    real = store.principal_entry
    store.principal_entry = lambda h: calls.append(h) or real(h)
    return calls


def test_a_verified_token_is_answered_from_the_cache(stores):
    server, _ = stores
    token = issue_token(server, "IRN1", "station")
    cache, asked = TokenCache(server), _asked(server)
    header = f"Bearer {token}"
    assert cache.lookup(header) is None  # not yet verified
    assert cache.verify(header).name == "IRN1"
    for _ in range(3):
        who = cache.lookup(header)
        assert who is not None and (who.name, who.role) == ("IRN1", "station")
    assert asked == [hash_token(token)]


def test_a_token_revoked_elsewhere_fails_at_its_next_request(stores):
    server, other = stores
    token = issue_token(server, "IRN1", "station")
    cache = TokenCache(server)
    header = f"Bearer {token}"
    cache.verify(header)
    assert cache.lookup(header) is not None
    assert other.revoke("IRN1")
    assert cache.lookup(header) is None
    with pytest.raises(AuthError) as err:
        cache.verify(header)
    assert err.value.status == 401


def test_a_rotated_token_fails_at_once_without_overlap_and_after_it(stores):
    server, other = stores
    old = issue_token(server, "IRN1", "station")
    cache = TokenCache(server)
    cache.verify(f"Bearer {old}")
    new = rotate_token(other, "IRN1", overlap_hours=0)
    assert cache.lookup(f"Bearer {old}") is None
    with pytest.raises(AuthError):
        cache.verify(f"Bearer {old}")
    assert cache.verify(f"Bearer {new}").name == "IRN1"
    assert cache.lookup(f"Bearer {new}").name == "IRN1"
    # with an overlap the old token stays good, from the cache, until the overlap ends
    newer = rotate_token(other, "IRN1", overlap_hours=1.2 / 3600)
    assert cache.verify(f"Bearer {new}").name == "IRN1"
    assert cache.lookup(f"Bearer {new}").name == "IRN1"
    time.sleep(1.5)
    assert cache.lookup(f"Bearer {new}") is None
    with pytest.raises(AuthError):
        cache.verify(f"Bearer {new}")
    assert cache.verify(f"Bearer {newer}").name == "IRN1"


def test_an_expired_token_leaves_the_cache_at_its_expiry(stores):
    server, _ = stores
    token = issue_token(server, "IRN1", "station", valid_days=1.0 / 86400)
    cache = TokenCache(server)
    assert cache.verify(f"Bearer {token}").name == "IRN1"
    assert cache.lookup(f"Bearer {token}") is not None
    time.sleep(1.2)
    assert cache.lookup(f"Bearer {token}") is None
    with pytest.raises(AuthError):
        cache.verify(f"Bearer {token}")


def test_a_new_token_for_a_revoked_name_replaces_the_cached_one(stores):
    server, other = stores
    old = issue_token(server, "IRN1", "station")
    cache = TokenCache(server)
    cache.verify(f"Bearer {old}")
    other.revoke("IRN1")
    new = issue_token(other, "IRN1", "station")
    assert cache.lookup(f"Bearer {old}") is None
    with pytest.raises(AuthError):
        cache.verify(f"Bearer {old}")
    assert cache.verify(f"Bearer {new}").name == "IRN1"


def test_malformed_headers_are_refused_before_any_lookup(stores):
    server, _ = stores
    cache = TokenCache(server)
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(AuthError) as err:
            cache.lookup(header)
        assert err.value.status == 401


def test_only_sqlite_files_have_a_stamp_and_a_cache(tmp_path):
    """PostgreSQL (and any database without a file beside it) is asked every time."""
    pg = Store("postgresql+psycopg://nobody@127.0.0.1:9/none")  # never connected
    assert pg.principals_stamp_path is None and not TokenCache(pg).enabled
    lite = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert lite.principals_stamp_path == f"{tmp_path / 'c.sqlite'}-principals"
    assert TokenCache(lite).enabled
    lite.close()


def test_the_server_refuses_a_token_revoked_by_another_process(tmp_path):
    """A real server process, its cache warm; the revocation is written by this
    process, as ``aposos center revoke`` does."""
    proc = CenterProcess(tmp_path, worker=False).start()
    try:
        token = proc.token("IRN1")
        head = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=proc.url, headers=head, timeout=30) as http:
            for _ in range(3):
                assert http.get("/api/v1/tasks").status_code != 401
            assert proc.store.revoke("IRN1")
            answer = http.get("/api/v1/tasks")
            assert answer.status_code == 401, answer.text
            assert "revoked" in answer.json()["detail"]
            fresh = issue_token(proc.store, "IRN1", "station")
            again = http.get("/api/v1/tasks", headers={"Authorization": f"Bearer {fresh}"})
            assert again.status_code != 401
    finally:
        proc.stop()


def test_expiry_is_compared_in_the_databases_time_form(stores):
    """The cache compares the stored text of a time with now's: both UTC, same form."""
    server, _ = stores
    token = issue_token(server, "IRN1", "station", valid_days=1)
    name, role, until = server.principal_entry(hash_token(token))
    assert (name, role) == ("IRN1", "station")
    expected = utcnow() + timedelta(days=1)
    assert until[:16] == expected.isoformat(" ")[:16]
