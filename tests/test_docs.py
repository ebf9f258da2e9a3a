"""What the README, docs/ and pyproject.toml say about the code, checked against the code.

The README's examples run in tests/test_readme.py; here: the SGP4 error-code table,
the benchmark list, the paths the docs name, the test loop the README promises, and
that packages kept for the tests only are never imported by aposos.
"""

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PATH = re.compile(
    r"(?<![\w/.-])(?:aposos|tests|benchmarks|docs|deploy|configs|stations)/[\w./-]+\.\w+\b"
)


def test_error_code_table_is_the_kernels():
    from aposos.orbit.sgp4 import ERROR_MESSAGES

    rows = re.findall(r"^\| (\d) \| (.+?) \|$", README, re.M)
    assert {int(code): text for code, text in rows} == ERROR_MESSAGES


def test_every_benchmark_is_listed_and_make_bench_runs_listed_ones():
    listed = set(re.findall(r"`(benchmarks/bench_\w+\.py)`", README))
    present = {str(p.relative_to(REPO)) for p in (REPO / "benchmarks").glob("bench_*.py")}
    assert listed == present
    bench = re.search(r"^bench:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    run = set(re.findall(r"benchmarks/bench_\w+\.py", bench[1]))
    assert run and run <= present


def test_paths_in_the_docs_exist():
    named = {m for doc in DOCS for m in PATH.findall(doc.read_text())}
    assert named, "the pattern found no path at all"
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, missing


def test_quick_loop_leaves_out_slow_and_postgres_and_make_test_runs_all():
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow and not postgres'" in ini["addopts"]
    assert {m.split(":")[0] for m in ini["markers"]} >= {"slow", "postgres", "kernel"}
    test = re.search(r"^test:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)[1]
    assert '-m ""' in test  # every test, slow and PostgreSQL ones included
    assert "NUMBA_DISABLE_JIT=1" in test and "-m kernel" in test


def test_packages_for_the_tests_only_are_never_imported_by_aposos():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = " ".join(project["dependencies"])
    test_only = {"skyfield", "photutils"}
    assert not any(name in required for name in test_only)
    for path in (REPO / "aposos").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & test_only, (path, names)
