"""Shared fixtures (register new ones here; keep their code in their own modules)."""

import os
import sys

import pytest
from indiserver import indi_server  # noqa: F401  (INDI server with its simulator drivers)
from longest_first import file_costs, order
from pgserver import postgres_server  # noqa: F401  (a real PostgreSQL on loopback)
from stores import store  # noqa: F401  (a center store on SQLite and on PostgreSQL)

# Test modules rewritten for assertions, and every module imported, are kept as .pyc
# files in __pycache__ (ignored by git) even where PYTHONDONTWRITEBYTECODE is set (this
# machine sets it): else each xdist worker rewrites and compiles them all anew, about
# 4 s of CPU per process, and subprocesses compile aposos again.
sys.dont_write_bytecode = False

# numba's OpenMP threads sleep when idle rather than spin: two or three test processes
# share 2 cores, and spinning threads took the CPU the others needed (the quick loop: 126
# CPU-s and 74-77 s spinning, 110 CPU-s and 68-69 s passive, same minutes, quiet machine).
# Set before any parallel kernel starts the runtime; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
# BLAS on one thread, as make test sets it (Makefile's TEST_ENV): the xdist workers and
# the servers and agents tests start inherit it (this process loaded numpy already).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

pytest_plugins = ["starpin"]  # the packaged star catalogues, not the machine's deep store


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    """A test that takes the PostgreSQL server is a ``postgres`` test, marked or not
    (fixtures that ask for it by parameter mark their ``postgresql`` case themselves);
    then the costliest test files first."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
    order(items, file_costs())  # the costliest files first (tests/longest_first.py)
