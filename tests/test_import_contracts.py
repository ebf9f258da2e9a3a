"""The layering, checked on every module: who may import whom, and that importing is inert.

Layers (lowest first): ``timeutil`` and ``model`` (the nouns), ``orbit`` (the ground floor),
``formats`` and ``correlate``, then the two wings ``station`` and ``center``, then
``commands``/``cli``/``demo`` on top. Imports inside functions count as much as those at
the top of a module: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import aposos

PACKAGE = Path(aposos.__file__).parent

# package prefix -> prefixes it must never import
FORBIDDEN = {
    "aposos.station": ("aposos.center", "aposos.commands"),
    "aposos.center": ("aposos.station", "aposos.commands"),
    "aposos.correlate": ("aposos.station", "aposos.center", "aposos.commands"),
    "aposos.formats": ("aposos.station", "aposos.center", "aposos.correlate", "aposos.commands"),
    "aposos.orbit": (
        "aposos.station",
        "aposos.center",
        "aposos.correlate",
        "aposos.formats",
        "aposos.commands",
    ),  # fmt: skip
}
# the bottom floor: what these may import of aposos at all
ALLOWED_ONLY = {
    "aposos.timeutil": (),
    "aposos.model": ("aposos.timeutil",),
}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def imported_modules(name: str) -> set[str]:
    """Every ``aposos`` module a module's source imports, anywhere in it."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in found if n == "aposos" or n.startswith("aposos.")}


def in_package(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_every_module_keeps_to_its_layer():
    broken = []
    for name in module_names():
        imports = imported_modules(name)
        for prefix, forbidden in FORBIDDEN.items():
            if in_package(name, prefix):
                broken += [
                    f"{name} imports {m}"
                    for m in sorted(imports)
                    if any(in_package(m, f) for f in forbidden)
                ]
        if name in ALLOWED_ONLY:
            allowed = ALLOWED_ONLY[name]
            broken += [
                f"{name} imports {m}"
                for m in sorted(imports)
                if m != "aposos" and not any(in_package(m, a) for a in allowed)
            ]
    assert not broken, "layering broken:\n" + "\n".join(broken)


def test_the_contract_checker_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The walker itself, on a module that breaks the rules in both hidden ways."""
    fake = tmp_path / "aposos" / "station"
    fake.mkdir(parents=True)
    (fake / "sneaky.py").write_text(
        "def f():\n    from aposos.center import store\n\nfrom ..center import api\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "aposos")
    found = imported_modules("aposos.station.sneaky")
    assert {"aposos.center.store", "aposos.center.api"} <= found


IMPORT_ALL = r"""
import importlib, json, logging, os, pkgutil, socket, sys

attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network touched at import time")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

def handlers():
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    # ours and the root's: a library may dress its own logger (astropy does)
    return {lg.name: len(lg.handlers) for lg in loggers
            if lg.handlers and (lg is logging.root or lg.name.split(".")[0] == "aposos")}

before = handlers()
import aposos
names = ["aposos"] + [
    m.name for m in pkgutil.walk_packages(aposos.__path__, "aposos.")
    if not m.name.endswith("__main__")
]
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
after = handlers()
added = {k: v for k, v in after.items() if before.get(k, 0) != v}
print(json.dumps({"modules": len(names), "failed": failed, "network": attempts,
                  "handlers": added}))
"""


@pytest.mark.slow
def test_importing_every_module_is_inert(tmp_path):
    """Importing each module touches no network, creates no files (in the working folder,
    HOME, the XDG folders, TMPDIR), adds no log handlers to the root or our loggers."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    scratch = tmp_path / "tmp"
    for folder in (home, work, scratch):
        folder.mkdir()
    env = {
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modules"] > 100
    assert report["failed"] == {}
    assert report["network"] == []
    assert report["handlers"] == {}
    created = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert created == ["home", "tmp", "work"], created
