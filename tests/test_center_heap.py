"""The center's processes keep the garbage collector's full passes short.

``settle_heap`` collects once and freezes the survivors; ``create_app(freeze_heap=True)``
(what ``aposos center serve`` runs) does it after start-up. A full collection then
walks only what was made since, not the whole start-up heap (imports, app, store).
"""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest

from aposos.center import api
from aposos.center.config import CenterConfig, WorkerConfig
from aposos.center.heap import settle_heap


@pytest.fixture
def thawed():
    gc.unfreeze()
    yield
    gc.unfreeze()  # leave the test process as it was


class Node:
    pass


def test_settle_heap_collects_cycles_then_freezes_the_survivors(thawed):
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector can free
    gone = weakref.ref(a)
    del a, b
    survivor = Node()
    settle_heap()
    assert gone() is None
    assert gc.get_freeze_count() > 0
    assert not any(o is survivor for o in gc.get_objects())  # out of the collector's sight


def test_settle_heap_looks_at_frozen_objects_again(thawed):
    settle_heap()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    gc.freeze()  # the cycle frozen (as if it was alive at an earlier settle)
    del a, b
    settle_heap()
    assert gone() is None


@pytest.mark.parametrize("freeze", [False, True])
def test_the_served_app_freezes_its_heap_after_start_up(tmp_path, thawed, freeze):
    config = CenterConfig(data_dir=tmp_path, worker=WorkerConfig(enabled=False))
    with warnings.catch_warnings():  # starlette asks for httpx2, which we do not use
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    with TestClient(api.create_app(config, freeze_heap=freeze)) as client:
        assert client.get("/healthz").status_code == 200
        assert (gc.get_freeze_count() > 0) is freeze
