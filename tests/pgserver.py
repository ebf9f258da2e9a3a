"""A real PostgreSQL server for the tests, on loopback, in a temporary folder.

The fixture :func:`postgres_server` finds ``initdb`` / ``pg_ctl`` (on PATH or under
``/usr/lib/postgresql/*/bin``); when they are missing it installs Debian's ``postgresql``
package through tests/system_packages.py. It skips, with the reason, only when
that is impossible. The server runs as an unprivileged user (PostgreSQL refuses to
run as root), listens on 127.0.0.1 on a free port, trusts local connections, and is
stopped and deleted at the end of the session.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from system_packages import apt_install, free_port

_install_failure: str | None = None


def find_pg_bin() -> Path | None:
    """Folder holding ``initdb`` and ``pg_ctl``, or ``None``."""
    for name in ("pg_ctl",):
        found = shutil.which(name)
        if found and shutil.which("initdb"):
            real = Path(os.path.realpath(found)).parent
            if (real / "initdb").exists():
                return real
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for folder in reversed(candidates):
        if Path(folder, "initdb").exists() and Path(folder, "pg_ctl").exists():
            return Path(folder)
    return None


class PostgresServer:
    """A throw-away PostgreSQL cluster; :meth:`new_database` gives a fresh database URL."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="aposos-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "aposos"
        self._run_as: dict = {}
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            account = _unprivileged_account()
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid}
            os.chown(self.root, account.pw_uid, account.pw_gid)
        os.chmod(self.root, 0o700)

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C"},
            **self._run_as,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F -c max_connections=200"
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _unprivileged_account():
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("no unprivileged account (postgres or nobody) to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server():
    """A running PostgreSQL server on loopback for this test session (or a skip)."""
    global _install_failure
    bin_dir = find_pg_bin()
    if bin_dir is None and _install_failure is None:
        _install_failure = apt_install("postgresql")
        bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL unavailable: {_install_failure or 'initdb/pg_ctl not found'}")
    server = PostgresServer(bin_dir)
    try:
        server.start()  # installed but not starting is a failure, not a skip
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()
