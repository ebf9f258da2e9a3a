"""The numba warm-up (aposos/warmup.py) that make test runs before the test workers start."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import aposos

# kernels that only the tests call (the one-pair form of the batched fit, kept as a reference)
CALLED_BY_TESTS_ONLY = {"aposos.correlate.fit._pair_fit"}


def _kernel_modules() -> list[str]:
    root = Path(aposos.__file__).parent
    return [
        ".".join(("aposos", *path.relative_to(root).with_suffix("").parts))
        for path in sorted(root.rglob("*.py"))
        if "from aposos.orbit.jit import" in path.read_text()
    ]


def _entry_kernels(kernels) -> dict[str, object]:
    """Kernels called from Python: those no other kernel calls (a callee compiles, or
    loads from numba's cache, inside its caller)."""
    ids = {id(k) for k in kernels}
    callees = {
        id(k.py_func.__globals__[name])
        for k in kernels
        for name in k.py_func.__code__.co_names
        if id(k.py_func.__globals__.get(name)) in ids
    }
    return {f"{k.py_func.__module__}.{k.__name__}": k for k in kernels if id(k) not in callees}


def test_the_warm_up_compiles_every_kernel_python_calls():
    from aposos.orbit.jit import KERNELS
    from aposos.warmup import PARTS, warm_up

    modules = _kernel_modules()
    assert len(modules) >= 10, modules
    for name in modules:
        importlib.import_module(name)
    entries = _entry_kernels(KERNELS)
    assert "aposos.orbit.sgp4_vector._propagate_blocks" in entries
    assert "aposos.orbit.sgp4._sgp4_at" not in entries  # called by the propagation kernels
    assert CALLED_BY_TESTS_ONLY <= set(entries)
    assert set(warm_up()) == set(PARTS)
    missed = {name for name, k in entries.items() if not k.signatures}
    # a test-only kernel may already be compiled, by a test this worker ran before
    assert missed <= CALLED_BY_TESTS_ONLY, "aposos/warmup.py must call them"


def test_the_warm_up_runs_parts_by_name(capsys):
    from aposos.warmup import main, warm_up

    assert main(["tasking"]) == 0
    assert "numba kernels of tasking:" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown parts"):
        warm_up(["orbits"])


@pytest.mark.slow  # a second process loads the station kernels: 2-4 CPU-s
def test_the_command_compiles_the_station_part_in_a_second_process(capfd):
    from aposos.warmup import main

    assert main(["tasking", "station"]) == 0
    out = capfd.readouterr().out
    assert "numba kernels of tasking:" in out and "numba kernels of station:" in out


def test_make_test_warms_the_kernels_up_before_the_test_workers_start():
    import re

    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    test = re.search(r"^test:.*?\n((?:\t.*\n)+)", makefile, re.M)[1]
    assert -1 < test.find("-m aposos.warmup") < test.find("-m pytest")


def test_the_warm_up_command_has_help_and_names_a_wrong_part(capsys):
    from aposos.warmup import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "example: python -m aposos.warmup" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["orbits"])
    assert done.value.code == 2
    assert "unknown parts ['orbits']" in capsys.readouterr().err
