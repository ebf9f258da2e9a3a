"""Shared fixtures (register new ones here; keep their code in their own modules)."""

import pytest
from indiserver import indi_server  # noqa: F401  (INDI server with its simulator drivers)
from pgserver import postgres_server  # noqa: F401  (a real PostgreSQL on loopback)
from stores import store  # noqa: F401  (a center store on SQLite and on PostgreSQL)


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    """A test that takes the PostgreSQL server is a ``postgres`` test, marked or not
    (fixtures that ask for it by parameter mark their ``postgresql`` case themselves)."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if _shares_set_up(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


# set-up that costs nothing to repeat on another worker
CHEAP_SHARED = {"tmp_path_factory", "worker_id", "testrun_uid"}


def _shares_set_up(item) -> bool:
    """Whether a test must run on the worker that runs the rest of its file
    (``--dist loadgroup``): it shares a module, class or session fixture with them, or
    a PostgreSQL server. Every other test goes to whichever worker is free, so that a
    file of long independent tests (test_correlate's slow ones) is shared out."""
    if item.get_closest_marker("postgres"):
        return True
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return True
    for name in item.fixturenames:
        if name in CHEAP_SHARED:
            continue
        definitions = info.name2fixturedefs.get(name, ())
        if any(d.scope != "function" for d in definitions):
            return True
    return False
