"""A real ``aposos center serve`` (a process, or in a thread), and observations to feed it.

:class:`CenterProcess` writes a configuration into a temp folder (SQLite file there,
the repository's ``stations/`` for sites), starts the server as a subprocess on a
free loopback port and waits for ``/healthz``. Tokens are issued through the store
(same database file) or through the real CLI.

:func:`observed_tracklet` makes the tracklet a station would report for a
catalogued object, computed by Skyfield (an outside authority) from the TLE.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
STATIONS = REPO / "stations"
CATALOGUES = REPO / "tests" / "data" / "shared" / "catalogues"
CAT_0930 = CATALOGUES / "celestrak-active-2020-09-30.3le"
CAT_1002 = CATALOGUES / "celestrak-active-2020-10-02.3le"


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ``python -m aposos.cli`` would load the module twice (as __main__ and as aposos.cli)
APOSOS = [sys.executable, "-c", "import sys; from aposos.cli import main; sys.exit(main())"]


def aposos_cli(*args: str, env: dict | None = None):
    """Run the real ``aposos`` command line (``main(argv)`` in this process, with its
    own environment and working folder: tests/clirun.py); returns exit status, stdout
    and stderr. The server itself runs apart (:class:`CenterProcess`)."""
    import clirun

    return clirun.run(*args, env=env, cwd=REPO)


class CenterProcess:
    """``aposos center serve`` in a subprocess with its own SQLite database."""

    def __init__(
        self,
        folder: Path,
        *,
        worker: bool = True,
        lease_s: float = 2.0,
        worker_options: dict | None = None,
        **center,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.folder / "center.toml"
        self.log = self.folder / "server.log"
        settings = {
            "data_dir": str(self.folder / "data"),
            "stations_dir": str(STATIONS),
            "host": "127.0.0.1",
            "port": self.port,
            **center,
        }
        self.settings = settings
        lines = ["[center]"]
        lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
        lines += [
            "[worker]",
            f"enabled = {'true' if worker else 'false'}",
            "poll_seconds = 0.2",
            f"lease_seconds = {lease_s}",
            "batch_size = 16",
        ]
        lines += [f"{k} = {_toml(v)}" for k, v in (worker_options or {}).items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self._store = None

    @property
    def database_url(self) -> str:
        return (
            self.settings.get("database") or f"sqlite:///{self.folder / 'data' / 'center.sqlite'}"
        )

    def start(self, timeout: float = 60.0) -> CenterProcess:
        logfile = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [*APOSOS, "center", "serve", "--config", str(self.config)],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        logfile.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"center exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"center did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """``kill -9``: no shutdown handlers run."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self):
        """The server's database, opened from the test process."""
        if self._store is None:
            from aposos.center.store import Store

            self._store = Store(self.database_url)
        return self._store

    def token(self, name: str, role: str = "station") -> str:
        from aposos.center.auth import issue_token

        return issue_token(self.store, name, role)

    def client(self, token: str | None):
        from aposos.center.client import CenterClient

        return CenterClient(self.url, token)

    def wait_for_queue(self, timeout: float = 120.0) -> dict:
        """Wait until no job is pending or running; returns the queue counts."""
        from aposos.center.worker import queue_counts

        deadline = time.monotonic() + timeout
        while True:
            counts = queue_counts(self.store)
            if counts["pending"] == 0 and counts["running"] == 0:
                return counts
            if time.monotonic() > deadline:
                raise AssertionError(f"queue not drained after {timeout} s: {counts}")
            time.sleep(0.2)


class CenterThread(CenterProcess):
    """The same center (same configuration file, database, app, worker and housekeeping)
    served by uvicorn in a thread of the test process: real HTTP on loopback, without a
    second interpreter's start and imports (2-3 s of CPU, 10 s of wall under load, per
    server). What only a process shows (``kill -9``, signals, several server processes,
    the ``serve`` command line) stays with :class:`CenterProcess`."""

    LOGGERS = ("uvicorn", "aposos")

    def start(self, timeout: float = 60.0) -> CenterThread:
        import threading

        import uvicorn

        from aposos.center.api import create_app
        from aposos.center.config import load_config

        config = load_config(self.config)
        self._handler = logging.FileHandler(self.log)
        self._handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        for name in self.LOGGERS:  # what the server process writes to its log
            logging.getLogger(name).addHandler(self._handler)
        uvicorn_log = logging.getLogger("uvicorn")  # its access log at info, as `serve` has it,
        self._saved = uvicorn_log.level, uvicorn_log.propagate
        uvicorn_log.setLevel(logging.INFO)
        uvicorn_log.propagate = False  # and only in the file (not in a command's stderr)
        options = uvicorn.Config(create_app(config), host="127.0.0.1", port=self.port,
                                 log_config=None, log_level="info")  # fmt: skip
        self._server = uvicorn.Server(options)
        self._thread = threading.Thread(target=self._server.run, name="center", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"center did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        raise NotImplementedError("a center in a thread cannot be killed: use CenterProcess")

    def stop(self) -> None:
        if getattr(self, "_thread", None) is not None:
            self._server.should_exit = True
            self._thread.join(60)
            assert not self._thread.is_alive(), "the center thread did not stop in 60 s"
            self._thread = None
            for name in self.LOGGERS:
                logging.getLogger(name).removeHandler(self._handler)
            uvicorn_log = logging.getLogger("uvicorn")
            uvicorn_log.level, uvicorn_log.propagate = self._saved
            self._handler.close()
        super().stop()


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_3le(path: Path, norad_ids: set[int]) -> dict[int, tuple[str, str, str]]:
    """Name and TLE lines of some objects of a 3LE file."""
    lines = path.read_text().splitlines()
    found = {}
    for k in range(0, len(lines) - 2, 3):
        name, l1, l2 = lines[k : k + 3]
        number = int(l1[2:7])
        if number in norad_ids:
            found[number] = (name.strip(), l1, l2)
    return found


def observed_tracklet(
    station_site: dict,
    code: str,
    tle: tuple[str, str, str],
    start: np.datetime64,
    n: int = 6,
    step_s: float = 8.0,
):
    """The RA/Dec a station reports for a TLE object, or None when it is below 15
    degrees there.

    The convention of the project (a plate solved against astrometric catalogue
    stars): the direction from the station to where the object was when the light
    left it, in GCRS axes, with the annual aberration that the reference stars carry
    taken out. Skyfield gives the positions, ERFA the Earth's velocity and the
    aberration.
    """
    import erfa
    from skyfield.api import EarthSatellite, load, wgs84

    from aposos.model import Tracklet

    ts = load.timescale(builtin=True)
    sat = EarthSatellite(tle[1], tle[2], tle[0], ts)
    where = wgs84.latlon(
        station_site["latitude_deg"],
        station_site["longitude_deg"],
        elevation_m=station_site["altitude_m"],
    )
    utc = start + (np.arange(n) * step_s * 1e6).astype("timedelta64[us]")
    # calendar fields, so that Skyfield applies the leap seconds of the date itself
    days = utc.astype("datetime64[D]")
    ymd = [d.tolist() for d in days]
    seconds = (utc - days).astype(np.int64) / 1e6
    t = ts.utc([d.year for d in ymd], [d.month for d in ymd], [d.day for d in ymd], 0, 0, seconds)
    alt, _, _ = (sat - where).at(t).altaz()
    if np.min(alt.degrees) < 15:
        return None
    station_km = where.at(t).position.km
    light_s = np.linalg.norm(sat.at(t).position.km - station_km, axis=0) / 299792.458
    for _ in range(2):  # light time
        emitted = ts.tt_jd(t.tt - light_s / 86400.0)
        line = sat.at(emitted).position.km - station_km
        light_s = np.linalg.norm(line, axis=0) / 299792.458
    u = (line / np.linalg.norm(line, axis=0)).T
    ra, dec = np.empty(n), np.empty(n)
    for k in range(n):
        pvh, pvb = erfa.epv00(t.tdb[k], 0.0)
        v = pvb[1] / erfa.DC  # Earth's barycentric velocity / c
        sun_au = np.linalg.norm(pvh[0])
        bm1 = np.sqrt(1.0 - v @ v)
        p = u[k].copy()
        for _ in range(5):  # invert the aberration: the star direction seen at u
            p = p + (u[k] - erfa.ab(p, v, sun_au, bm1))
            p /= np.linalg.norm(p)
        ra[k], dec[k] = np.degrees(erfa.c2s(p))
    return Tracklet(station=code, utc=utc, ra_deg=ra % 360.0, dec_deg=dec)


def station_site(code: str) -> dict:
    """The [site] table of a station in the repository's stations/."""
    import tomllib

    for path in STATIONS.glob("*.toml"):
        site = tomllib.loads(path.read_text())["site"]
        if site["code"] == code:
            return site
    raise KeyError(code)


def passes(code: str, norad_ids, start: np.datetime64, hours: int = 12, step_min: int = 1):
    """The first observable arc of each object from station ``code`` after ``start``,
    kept in the on-disk test cache (tests/diskcache.py) under this file, the nouns
    (``aposos/model.py``), the catalogue and station files and Skyfield's version."""
    import diskcache

    args = (code, sorted(norad_ids), str(start), hours, step_min)
    digest = diskcache.key(
        "passes",
        sources=[__file__, REPO / "aposos" / "model.py", REPO / "aposos" / "timeutil.py"],
        inputs=[CAT_0930, *sorted(STATIONS.glob("*.toml"))],
        packages=("skyfield", "numpy", "pyerfa", "sgp4"),
        args=args,
    )
    return diskcache.cached(digest, lambda: _passes(code, norad_ids, start, hours, step_min))


def _passes(code: str, norad_ids, start: np.datetime64, hours: int, step_min: int):
    tles = read_3le(CAT_0930, set(norad_ids))
    site = station_site(code)
    found = {}
    for number in norad_ids:
        minutes = np.arange(0, hours * 60, step_min)
        # one Skyfield call for every candidate start, then the exact check of
        # observed_tracklet from the first that clears 15 degrees less a margin
        # (the same first arc as trying every minute, at a 40th of the cost)
        for k in minutes[_lowest_altitudes(site, tles[number], start, minutes) > 14.9]:
            t = observed_tracklet(site, code, tles[number], start + np.timedelta64(int(k), "m"))
            if t is not None:
                found[number] = t
                break
    return found


def _lowest_altitudes(site: dict, tle, start: np.datetime64, minutes, n: int = 6, step_s=8.0):
    """The lowest altitude (degrees) of an arc like observed_tracklet's from each start."""
    from skyfield.api import EarthSatellite, load, wgs84

    ts = load.timescale(builtin=True)
    sat = EarthSatellite(tle[1], tle[2], tle[0], ts)
    where = wgs84.latlon(
        site["latitude_deg"], site["longitude_deg"], elevation_m=site["altitude_m"]
    )
    offsets_us = (minutes[:, None] * 60.0 + np.arange(n)[None, :] * step_s) * 1e6
    utc = (start + offsets_us.astype("timedelta64[us]")).ravel()
    days = utc.astype("datetime64[D]")
    ymd = days.astype(object)
    seconds = (utc - days).astype(np.int64) / 1e6
    t = ts.utc([d.year for d in ymd], [d.month for d in ymd], [d.day for d in ymd], 0, 0, seconds)
    alt, _, _ = (sat - where).at(t).altaz()
    return alt.degrees.reshape(len(minutes), n).min(axis=1)
