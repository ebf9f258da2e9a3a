"""Wall and CPU seconds per test phase and per fixture, written as JSON lines.

Load with ``pytest -p timing_plugin`` and set ``APOSOS_TIMING=DIR``: each process
(xdist worker or the single runner) appends to ``DIR/timing-<worker>.jsonl``.
CPU is this process's user+system time plus that of its waited-for children,
so a subprocess's CPU counts when it ends. Under load, CPU is the honest figure.
"""

import json
import os
import resource
import time

import pytest


def _cpu():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _out(config):
    folder = os.environ.get("APOSOS_TIMING")
    if not folder:
        return None
    if not hasattr(config, "_timing_file"):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        os.makedirs(folder, exist_ok=True)
        config._timing_file = open(os.path.join(folder, f"timing-{worker}.jsonl"), "a")
    return config._timing_file


def _write(config, **row):
    out = _out(config)
    if out is not None:
        out.write(json.dumps(row) + "\n")
        out.flush()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    wall, cpu = time.perf_counter(), _cpu()
    yield
    _write(
        request.config,
        kind="fixture",
        name=fixturedef.argname,
        scope=fixturedef.scope,
        test=request.node.nodeid,
        wall=time.perf_counter() - wall,
        cpu=_cpu() - cpu,
    )


def _phase(item, phase):
    wall, cpu = time.perf_counter(), _cpu()
    yield
    _write(
        item.config,
        kind=phase,
        test=item.nodeid,
        wall=time.perf_counter() - wall,
        cpu=_cpu() - cpu,
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _phase(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _phase(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _phase(item, "teardown")


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session):
    _write(session.config, kind="session", test="", wall=0.0, cpu=_cpu())
    yield
