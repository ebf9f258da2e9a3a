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
    items[:] = units_of_work(items)


def units_of_work(items: list) -> list:
    """The units xdist hands out (``--dist loadgroup``), longest first.

    A test file is one unit, so its module fixtures are made once. A test marked
    ``apart`` is a unit of its own, and tests marked ``xdist_group(name)`` one together:
    these are the long tests, sent out first so no worker starts one at the end. The
    files follow, those with the most tests first (xdist's own order for files)."""
    named, files = [], {}
    for item in items:
        if item.get_closest_marker("apart"):
            # no "[" or "]" in a group name: xdist reads "...]@group" as no group
            name = item.nodeid.replace("[", "(").replace("]", ")")
            item.add_marker(pytest.mark.xdist_group(name))
            named.append(item)
        elif item.get_closest_marker("xdist_group"):
            named.append(item)
        else:
            path = item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(path))
            files.setdefault(path, []).append(item)
    by_size = sorted(files.values(), key=len, reverse=True)  # stable: ties keep their order
    return named + [item for unit in by_size for item in unit]
