"""A real INDI server with Debian's CCD and telescope simulator drivers, for the tests.

The fixture :func:`indi_server` finds ``indiserver`` (installing Debian's ``indi-bin``
through tests/system_packages.py when it is missing, as tests/pgserver.py does for
PostgreSQL) and skips, with the reason, only when that is impossible. The server
listens on a free loopback port and is stopped at the end of the session. INDI is
(L)GPL: it runs as a separate process, and the project only speaks its protocol.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from system_packages import apt_install, free_port

DRIVERS = ("indi_simulator_ccd", "indi_simulator_telescope")


class IndiServer:
    """``indiserver`` with the simulator drivers on a free loopback port."""

    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aposos-indi-"))
        self.log = self.root / "indiserver.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> IndiServer:
        logfile = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            # its own local socket: the default one is shared by every indiserver
            ["indiserver", "-p", str(self.port), "-u", str(self.root / "local"), *DRIVERS],
            stdout=logfile, stderr=subprocess.STDOUT, cwd=self.root,
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
