"""Wall and CPU seconds per test phase and per fixture, written as JSON lines.

Load with ``pytest -p timing_plugin`` and set ``APOSOS_TIMING=DIR``: each process
(xdist worker or the single runner) appends to ``DIR/timing-<worker>.jsonl``.
CPU is this process's user+system time plus that of its waited-for children,
so a subprocess's CPU counts when it ends. Under load, CPU is the honest figure.
``python tests/timing_plugin.py DIR`` sums a folder up (``--table`` for file_cpu.json).
"""

import json
import os
import resource
import time
from pathlib import Path

import pytest
from longest_first import TABLE, predicted_busiest


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


def cpu_by_file(folder) -> dict[str, float]:
    """CPU seconds of each test file (set-up, call and tear-down) in a timing folder."""
    total: dict[str, float] = {}
    for path in sorted(Path(folder).glob("timing-*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["kind"] in ("setup", "call", "teardown"):
                name = row["test"].split("::", 1)[0]
                total[name] = total.get(name, 0.0) + row["cpu"]
    return total


def main(argv=None) -> int:
    """``python tests/timing_plugin.py DIR``: each worker's CPU and the costliest files;
    ``--table`` writes them as tests/file_cpu.json (the order make test sends files in)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder")
    parser.add_argument("--table", action="store_true", help="rewrite tests/file_cpu.json")
    args = parser.parse_args(argv)
    files = cpu_by_file(args.folder)
    for path in sorted(Path(args.folder).glob("timing-*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        session = [r["cpu"] for r in rows if r["kind"] == "session"]
        print(f"{path.stem}: {session[-1] if session else float('nan'):.1f} CPU-s in all")
    print(f"tests: {sum(files.values()):.1f} CPU-s in {len(files)} files; the costliest:")
    for name, cpu in sorted(files.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{cpu:8.1f}  {name}")
    for n in (2, 3):
        print(
            f"busiest of {n} workers, costliest files first: {predicted_busiest(files, n):.1f} CPU-s"
        )
    if args.table:
        table = {k: round(v, 1) for k, v in sorted(files.items(), key=lambda kv: -kv[1])}
        TABLE.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
