"""The ``aposos`` command line run inside the test process: ``main(argv)``.

A subprocess per command costs the interpreter's start and every import again (about
2.5 s of wall time each on the 2-core CI machine); :func:`run` calls
``aposos.cli.main`` directly and gives back what a shell would see: exit status,
stdout, stderr. What the test process must not leak into the command, or keep from
it, is set up and undone around the call:

- the environment (``APOSOS_*`` variables dropped, then ``env`` added) and the
  working folder;
- warnings: Python's defaults, as in a fresh interpreter (not pytest's ``error``);
- logging: the root logger's handlers, so ``-v`` writes to the captured stderr.

Tests that need a real process (a pipe into ``head``, signals, a server) keep
using ``subprocess``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# the filters of a fresh interpreter without -W options (python -c "import warnings; ...")
DEFAULT_FILTERS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@dataclass
class Done:
    """What the shell sees of one command (the fields of ``subprocess.CompletedProcess``)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(*args, cwd=None, env: dict | None = None) -> Done:
    """Run ``aposos ARGS`` in this process; returns its exit status, stdout and stderr."""
    from aposos.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with (
        _environment(env),
        contextlib.chdir(cwd or REPO),
        _fresh_warnings(),
        _own_logging(),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: --help, --version, a wrong command line
            status = _exit_status(exc.code)
    return Done(argv, status, out.getvalue(), err.getvalue())


def _exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _environment(env: dict | None):
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("APOSOS_")]:
            del os.environ[key]
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _fresh_warnings():
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in DEFAULT_FILTERS:
            warnings.simplefilter("ignore", category)
        try:
            yield
        finally:
            logging.captureWarnings(False)  # before catch_warnings puts showwarning back


@contextlib.contextmanager
def _own_logging():
    """An empty root logger for the command (its basicConfig then writes to our stderr)."""
    root = logging.getLogger()
    names = ("aposos", "py.warnings")
    saved = (root.handlers[:], root.level, [logging.getLogger(n).level for n in names])
    root.handlers.clear()
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in zip(names, saved[2], strict=True):
            logging.getLogger(name).setLevel(level)
