"""A real INDI server with Debian's CCD and telescope simulator drivers, for the tests.

The fixture :func:`indi_server` finds ``indiserver`` (installing Debian's ``indi-bin``
with apt-get when it is missing and we are root, as tests/pgserver.py does for
PostgreSQL) and skips, with the reason, only when that is impossible. The server
listens on a free loopback port and is stopped at the end of the session. INDI is
(L)GPL: it runs as a separate process, and the project only speaks its protocol.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

APT_TIMEOUT_S = 900
DRIVERS = ("indi_simulator_ccd", "indi_simulator_telescope")


def install_indi() -> str | None:
    """Install Debian's ``indi-bin``; returns why it could not, or ``None``."""
    if os.geteuid() != 0:
        return "indi-bin is not installed and we are not root to apt-get install it"
    if shutil.which("apt-get") is None:
        return "indi-bin is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", "indi-bin"]):  # fmt: skip
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=APT_TIMEOUT_S)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return f"{' '.join(cmd)} failed ({done.returncode}): {' / '.join(tail)}"
    return None


class IndiServer:
    """``indiserver`` with the simulator drivers on a free loopback port."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
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
        why = install_indi()
        if why is not None or shutil.which("indiserver") is None:
            pytest.skip(why or "indi-bin installed but indiserver is not on PATH")
    server = IndiServer().start()
    yield server
    server.stop()
