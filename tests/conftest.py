"""Shared fixtures (register new ones here; keep their code in their own modules)."""

import pytest
from indiserver import indi_server  # noqa: F401  (INDI server with its simulator drivers)
from pgserver import postgres_server  # noqa: F401  (a real PostgreSQL on loopback)
from stores import store  # noqa: F401  (a center store on SQLite and on PostgreSQL)

pytest_plugins = ["starpin"]  # the packaged star catalogues, not the machine's deep store


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    """A test that takes the PostgreSQL server is a ``postgres`` test, marked or not
    (fixtures that ask for it by parameter mark their ``postgresql`` case themselves)."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
