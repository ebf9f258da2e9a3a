"""The project's setup builds the deep star store when it can and never fails for it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setup_step(store: str, *make_args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "APOSOS_STAR_STORE": store}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "stars-setup", *make_args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_setup_says_what_to_do_when_it_cannot_build_the_store(tmp_path):
    # no index where it is said to be (so nothing is read or fetched): the step fails
    missing = tmp_path / "no-such-index.fits"
    done = _setup_step(str(tmp_path / "stars"), f"STARS_INSTALL_ARGS=--index {missing}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("no deep star store")
    assert "apt-get install astrometry-data-tycho2-07-littleendian" in lines[0]


def test_the_stamp_runs_the_store_step():
    """`make demo` depends on the venv stamp, whose recipe runs the step; `make test` makes
    the stamp after the Debian packages, so the step finds the installed Tycho-2 index."""
    text = (ROOT / "Makefile").read_text()
    stamp = text.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "stars-setup" in stamp
    assert "demo: $(STAMP)" in text
    test = text.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert (
        -1
        < test.find("tests/system_packages.py")
        < test.find("$(MAKE) --no-print-directory $(STAMP)")
    )
