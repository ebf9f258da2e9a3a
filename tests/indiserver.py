"""A real INDI server with Debian's CCD and telescope simulator drivers, for the tests.

The fixture :func:`indi_server` finds ``indiserver`` (installing Debian's ``indi-bin``
through tests/system_packages.py when it is missing, as tests/pgserver.py does for
PostgreSQL) and skips, with the reason, only when that is impossible. The server
listens on a free loopback port and is stopped at the end of the session. INDI is
(L)GPL: it runs as a separate process, and the project only speaks its protocol.

The CCD simulator draws the stars a program named ``gsc`` lists (the HST Guide Star
Catalog's query tool, which Debian does not package); without it its frames hold no
stars. The server's drivers find tests/gsc_standin.py under that name first on their
PATH: it answers from the project's star catalogue, and the simulator renders those
stars through its own optics model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from system_packages import apt_install, free_port

DRIVERS = ("indi_simulator_ccd", "indi_simulator_telescope")
GSC_STANDIN = Path(__file__).with_name("gsc_standin.py")


class IndiServer:
    """``indiserver`` with the simulator drivers on a free loopback port."""

    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aposos-indi-"))
        self.log = self.root / "indiserver.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> IndiServer:
        bin_dir = self.root / "bin"
        bin_dir.mkdir()
        gsc = bin_dir / "gsc"
        gsc.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{GSC_STANDIN}" "$@"\n')
        gsc.chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        logfile = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            # its own local socket: the default one is shared by every indiserver
            ["indiserver", "-p", str(self.port), "-u", str(self.root / "local"), *DRIVERS],
            stdout=logfile, stderr=subprocess.STDOUT, cwd=self.root, env=env,
        )  # fmt: skip
        logfile.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError(f"indiserver did not start:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def indi_server():
    if shutil.which("indiserver") is None or not all(shutil.which(d) for d in DRIVERS):
        why = apt_install("indi-bin")
        if why is not None or shutil.which("indiserver") is None:
            pytest.skip(why or "indi-bin installed but indiserver is not on PATH")
    server = IndiServer().start()
    yield server
    server.stop()
