"""A center store on SQLite and on PostgreSQL, schema upgraded (the ``store`` fixture)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    # imported here: the xdist controller loads this module too, and runs no test
    from aposos.center.store import Store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'center.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    s = Store(url)
    s.upgrade()
    yield s
    s.close()
