"""Debian packages the tests run for real (PostgreSQL, the INDI simulators, Chromium, the
Tycho-2 stars of astrometry.net's index): one installer.

CI installs them all in one step before the tests (``python tests/system_packages.py``,
called by ``make test``); a fixture that still finds its program missing calls
:func:`apt_install` itself, and skips with the returned reason when that is impossible
(not root, no apt-get, no network).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

APT_TIMEOUT_S = 900
STAR_PACKAGE = "astrometry-data-tycho2-07-littleendian"  # tests/test_stars_deep.py
TEST_PACKAGES = ("postgresql", "indi-bin", "chromium", STAR_PACKAGE)


def installed(package: str) -> bool:
    """Whether dpkg lists ``package`` as installed."""
    if shutil.which("dpkg-query") is None:
        return False
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return done.returncode == 0 and done.stdout.strip() == "install ok installed"


def apt_install(*packages: str) -> str | None:
    """apt-get install the packages not yet installed; returns why it could not, or None."""
    missing = [p for p in packages if not installed(p)]
    if not missing:
        return None
    names = " ".join(missing)
    if os.geteuid() != 0:
        return f"{names} not installed and we are not root to apt-get install it"
    if shutil.which("apt-get") is None:
        return f"{names} not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    )
    for cmd in steps:
        try:
            done = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return f"{' '.join(cmd)} failed ({done.returncode}): {' / '.join(tail)}"
    return None


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    why = apt_install(*TEST_PACKAGES)
    if why:
        print(f"system packages for the tests: {why} (those tests will skip)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
