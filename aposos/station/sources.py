"""Frame sources of the station agent: a watched folder, the sky simulator, INDI devices.

Every source hands the agent :class:`Captured` frames: FITS files on disk, with the
time and pointing read from their headers (so the agent can tell when a field ends)
and a key unique to the source, under which the frame is recorded once.

- :class:`FolderSource` takes the files the camera software writes into a folder, each
  only once complete (its size unchanged for ``settle_s`` and as long as its FITS
  headers say), and moves a corrupt file, or one still incomplete after
  ``incomplete_timeout_s``, to the quarantine folder with a note of the reason.
- :class:`SimulatorSource` renders frames with the built-in simulator on a simulated
  clock, following the center's task when there is one, the simulator's night plan
  otherwise; it resumes where it stopped after a restart.
- :class:`aposos.station.indi.IndiSource` drives a camera and a mount through INDI.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aposos.station.fitsframe import FrameError, read_frame
from aposos.station.outbox import AgentStore, utcnow_iso

__all__ = ["Captured", "FolderSource", "SimulatorSource", "fits_completeness", "quarantine"]

log = logging.getLogger(__name__)
BLOCK = 2880
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
SIDEREAL_DEG_PER_S = 360.98564736629 / 86400.0
FIELD_RADIUS_DEG = 1.0  # a pointing further than this from the last one starts a new field
FIELD_GAP_S = 120.0  # so does a longer pause between frames


@dataclass
class Captured:
    """A frame taken: its file, key, header time and pointing, and the task it served."""

    key: str
    path: Path
    utc: np.datetime64 | None = None
    pointing: tuple[float, float] | None = None
    task_id: str | None = None
    meta: dict = field(default_factory=dict)  # source state, stored with the frame
    image_type: str = "light"
    # the source knows the next frame is elsewhere (its visit of this field is over):
    # the agent closes the field now instead of waiting for that frame
    field_ends: bool = False


def describe(path: Path, time_stamp: str) -> tuple[np.datetime64 | None, tuple | None, str]:
    """(exposure start, header pointing, image type) of a FITS file; raises FrameError."""
    frame = read_frame(path, time_stamp=time_stamp, require_time=False)
    return frame.start_utc, frame.pointing_deg, frame.image_type


# ---------------------------------------------------------------------- folder


def fits_completeness(path: Path) -> tuple[str, str]:
    """``("complete" | "incomplete" | "corrupt", detail)`` from the FITS structure alone.

    Walks the headers (2880-byte blocks up to ``END``) and adds up the data sizes
    they declare; a file shorter than that is incomplete (still being written, or
    cut), one without a ``SIMPLE`` card, or with a malformed size card, is corrupt.
    """
    size = path.stat().st_size
    if size == 0:
        return "incomplete", "empty file"
    if path.name.lower().endswith(".gz"):
        return _gzip_completeness(path)
    offset, first = 0, True
    with path.open("rb") as fh:
        while offset < size or first:
            fh.seek(offset)
            cards: dict[str, str] = {}
            blocks = 0
            while "END" not in cards:
                block = fh.read(BLOCK)
                if first and blocks == 0 and not block[:9].startswith(b"SIMPLE  ="):
                    if len(block) >= 9 or not b"SIMPLE  ="[: len(block)] == block:
                        return "corrupt", "not a FITS file (it does not start with SIMPLE)"
                if len(block) < BLOCK:
                    return "incomplete", f"header cut off at {size} bytes"
                blocks += 1
                for i in range(0, BLOCK, 80):
                    card = block[i : i + 80].decode("ascii", errors="replace")
                    key = card[:8].strip()
                    if key == "END":
                        cards["END"] = ""
                        break
                    if card[8:10] == "= ":
                        cards.setdefault(key, card[10:].split("/")[0].strip())
            try:
                bitpix = int(cards.get("BITPIX", "nan"))
                naxis = int(cards.get("NAXIS", "nan"))
                dims = [int(cards[f"NAXIS{k}"]) for k in range(1, naxis + 1)]
                pcount = int(cards.get("PCOUNT", "0"))
                gcount = int(cards.get("GCOUNT", "1"))
            except (KeyError, ValueError):
                return "corrupt", f"malformed FITS header at byte {offset} (BITPIX/NAXIS cards)"
            if bitpix not in (8, 16, 32, 64, -32, -64) or naxis < 0 or min(dims, default=0) < 0:
                return "corrupt", f"malformed FITS header at byte {offset} (BITPIX {bitpix})"
            n = math.prod(dims) if naxis else 0
            data = abs(bitpix) // 8 * gcount * (pcount + n) if naxis else 0
            offset += blocks * BLOCK + -(-data // BLOCK) * BLOCK
            first = False
            if size < offset:
                return "incomplete", f"{size} of {offset} bytes written"
            if size - offset < BLOCK:
                return "complete", f"{size} bytes"
    return "complete", f"{size} bytes"


def _gzip_completeness(path: Path) -> tuple[str, str]:
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(9)
            while fh.read(1 << 20):
                pass
    except EOFError:
        return "incomplete", "compressed stream cut off"
    except (OSError, zlib.error) as exc:
        return "corrupt", f"not a readable gzip file: {exc}"
    if head != b"SIMPLE  =":
        return "corrupt", "not a FITS file inside the gzip stream"
    return "complete", "gzip stream complete"


def quarantine(path: Path, folder: Path, reason: str) -> Path:
    """Move ``path`` into ``folder`` with ``<name>.reason.txt`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    k = 1
    while target.exists():
        target = folder / f"{path.stem}.{k}{path.suffix}"
        k += 1
    shutil.move(str(path), target)
    note = target.with_name(target.name + ".reason.txt")
    note.write_text(f"file: {path}\nquarantined: {utcnow_iso()}\nreason: {reason}\n")
    return target


@dataclass
class _Seen:
    size: int
    mtime: float
    since: float  # monotonic time the size last changed
    first: float  # monotonic time first seen


class FolderSource:
    """Frames the camera software writes into ``folder`` (see the module notes)."""

    kind = "folder"
    can_point = False

    def __init__(self, folder: Path, store: AgentStore, quarantine_dir: Path, *,
                 time_stamp: str = "start", settle_s: float = 2.0,
                 incomplete_timeout_s: float = 120.0, poll_s: float = 0.5):  # fmt: skip
        self.folder = Path(folder)
        self.store = store
        self.quarantine_dir = Path(quarantine_dir)
        self.time_stamp = time_stamp
        self.settle_s = settle_s
        self.incomplete_timeout_s = incomplete_timeout_s
        self.poll_s = poll_s
        self.exhausted = False
        self._seen: dict[Path, _Seen] = {}
        self._done: set[str] = set()
        self._ready: list[Captured] = []
        self._last_scan = -1e9

    def key(self, path: Path) -> str:
        return "folder:" + path.relative_to(self.folder).as_posix()

    def now(self) -> np.datetime64:
        return np.datetime64("now", "us")

    def close(self) -> None:
        pass

    def poll(self, task: dict | None = None) -> Captured | None:
        """The next complete frame, or None (waits at most ``poll_s``)."""
        if not self._ready:
            wait = self._last_scan + self.poll_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_scan = time.monotonic()
            self._ready = self._scan()
        return self._ready.pop(0) if self._ready else None

    def pending(self) -> bool:
        """Whether a file is on its way: seen but not yet settled (or not yet complete,
        within ``incomplete_timeout_s``), or taken and not yet handed over. The agent
        does not close a field for want of frames while one is."""
        if self._ready:
            return True
        now = time.monotonic()
        return any(now - s.first < self.incomplete_timeout_s for s in self._seen.values())

    def _scan(self) -> list[Captured]:
        now = time.monotonic()
        found = []
        try:
            entries = sorted(p for p in self.folder.rglob("*") if _is_fits(p))
        except OSError as exc:
            log.warning("cannot list %s: %s", self.folder, exc)
            return []
        for path in entries:
            key = self.key(path)
            if key in self._done:
                continue
            if self.store.has_frame(key):
                self._done.add(key)
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime) != (st.st_size, st.st_mtime):
                first = seen.first if seen else now
                self._seen[path] = _Seen(st.st_size, st.st_mtime, now, first)
                continue
            if now - seen.since < self.settle_s:
                continue
            captured = self._take(path, key, seen, now)
            if captured is not None:
                found.append(captured)
        return found

    def _take(self, path: Path, key: str, seen: _Seen, now: float) -> Captured | None:
        try:
            state, detail = fits_completeness(path)
        except OSError as exc:
            state, detail = "incomplete", f"cannot read: {exc.strerror}"
        if state == "incomplete":
            if now - seen.first < self.incomplete_timeout_s:
                return None
            state, detail = "corrupt", f"incomplete after {self.incomplete_timeout_s:g} s: {detail}"
        reason = detail if state == "corrupt" else None
        utc = pointing = None
        image_type = "light"
        if reason is None:
            try:
                utc, pointing, image_type = describe(path, self.time_stamp)
            except FrameError as exc:
                reason = exc.reason
        self._seen.pop(path, None)
        self._done.add(key)
        if reason is not None:
            where = quarantine(path, self.quarantine_dir, reason)
            self.store.add_frame(key, where, state="quarantined", reason=reason)
            log.warning("%s: quarantined (%s)", path.name, reason)
            return None
        return Captured(key, path, utc, pointing, image_type=image_type)


def _is_fits(p: Path) -> bool:
    return p.name.lower().endswith(FITS_SUFFIXES) and p.is_file() and not p.name.startswith(".")


# ---------------------------------------------------------------------- simulator


def _simulator():
    """The simulator's three entry points (SkySimulator, plan_night, write_fits),
    wherever the simulator lives: its own subpackage ``aposos.station.simulator`` or
    the ``simulate*`` modules beside the reduction."""
    import importlib
    import pkgutil

    names = ("SkySimulator", "plan_night", "write_fits")
    try:
        package = importlib.import_module("aposos.station.simulator")
        modules = [package] + [
            importlib.import_module(f"{package.__name__}.{m.name}")
            for m in pkgutil.iter_modules(package.__path__)
        ]
    except ModuleNotFoundError as exc:
        if exc.name != "aposos.station.simulator":
            raise
        modules = [importlib.import_module(f"aposos.station.{m}")
                   for m in ("simulate", "simulate_plan", "simulate_fits")]  # fmt: skip
    found = []
    for name in names:
        where = next((m for m in modules if hasattr(m, name)), None)
        if where is None:
            raise ImportError(f"the sky simulator has no {name}")
        found.append(getattr(where, name))
    return tuple(found)


class SimulatorSource:
    """Frames rendered by the sky simulator on a simulated clock (see module notes).

    Parameters
    ----------
    station : the station's configuration.
    settings : :class:`~aposos.station.agent_config.SimulatorSourceConfig`.
    store : the agent's state (the clock and frame count are kept there).
    incoming : folder to write the frames into.
    stars : the star catalogue (shared with the reduction).
    """

    kind = "simulator"
    can_point = True

    def __init__(self, station, settings, store: AgentStore, incoming: Path, stars):
        from aposos.orbit.catalogue import Catalogue

        SkySimulator, self._plan_night, self._write_fits = _simulator()
        self.station = station
        self.settings = settings
        self.store = store
        self.incoming = Path(incoming)
        path = Path(settings.catalogue)
        if path.suffix.lower() in (".json", ".xml", ".csv"):
            self.satellites = Catalogue.from_omm(path)
        else:
            self.satellites = Catalogue.from_tle(path)
        self.sim = SkySimulator(station, stars, self.satellites, seed=settings.seed)
        self.start = np.datetime64(settings.start, "us")
        self.end = self.start + np.timedelta64(int(settings.minutes * 60e6), "us")
        clock = store.get("sim_clock")
        self.clock = np.datetime64(clock, "us") if clock else self.start
        self.index = int(store.get("sim_index", "0"))
        self.exhausted = self.clock >= self.end
        self._plan = None
        cfg = station.simulator
        self.cadence = np.timedelta64(int(round(cfg.cadence_s * 1e6)), "us")
        self._wall0 = time.monotonic()
        self._clock0 = self.clock

    def now(self) -> np.datetime64:
        return self.clock

    def close(self) -> None:
        pass

    def plan(self):
        if self._plan is None:
            s = self.settings
            try:
                self._plan = self._plan_night(self.station, self.satellites, self.start,
                                              s.minutes, mode=s.mode, seed=s.seed)  # fmt: skip
            except ValueError as exc:  # e.g. never dark: only tasks can be observed
                log.warning("simulator: no default plan: %s", exc)
                self._plan = []
        return self._plan

    def poll(self, task: dict | None = None) -> Captured | None:
        if self.clock >= self.end:
            self.exhausted = True
            return None
        ends = False
        if task is not None:
            spec, step = self._task_spec(task)
        else:
            ahead = [s for s in self.plan() if s.t_open >= self.clock]
            if not ahead:
                self.exhausted = True
                return None
            spec, step = ahead[0], self.cadence
            ends = len(ahead) < 2 or _moves(spec, ahead[1])
        spec = _with_index(spec, self.index)
        if self.settings.pace == "realtime":
            due = self._wall0 + (spec.t_open - self._clock0) / np.timedelta64(1, "s")
            time.sleep(max(0.0, due - time.monotonic()))
        data, header, truth = self.sim.render(spec)
        stamp = str(spec.t_open.astype("datetime64[s]")).replace("-", "").replace(":", "")
        self.incoming.mkdir(parents=True, exist_ok=True)
        path = self.incoming / f"{self.station.code}_{stamp}_{self.index:06d}.fits"
        tmp = path.with_name("." + path.name)
        self._write_fits(tmp, data, header)
        os.replace(tmp, path)
        key = f"simulator:{self.index:06d}"
        self.index += 1
        self.clock = spec.t_open + step
        meta = {"sim_clock": str(self.clock), "sim_index": str(self.index)}
        pointing = (spec.commanded_ra_deg, spec.commanded_dec_deg)
        return Captured(key, path, spec.t_open, pointing,
                        task_id=task["task_id"] if task else None, meta=meta,
                        field_ends=ends)  # fmt: skip

    def _task_spec(self, task: dict):
        """The frame a task asks for at the simulated clock's time."""
        t = self.clock
        exposure = float(task.get("exposure_s") or self.station.simulator.exposure_s)
        step = max(self.cadence, np.timedelta64(int((exposure + 1.0) * 1e6), "us"))
        ra, dec = float(task["ra_deg"]), float(task["dec_deg"])
        mode = {"sidereal": "sidereal", "rate": "rate", "stare": "stare"}.get(
            task.get("tracking"), "sidereal"
        )
        norad = (task.get("target") or {}).get("norad_id")
        if mode == "rate" and (norad is None or int(norad) not in set(self.satellites.norad_id)):
            mode = "sidereal"  # cannot render the object: point where it was planned
        if mode == "stare":  # the mount holds still: the sky drifts by
            start = np.datetime64(str(task["start"]).rstrip("Z"), "us")
            ra += SIDEREAL_DEG_PER_S * max(0.0, (t - start) / np.timedelta64(1, "s"))
        spec = self.sim.frame_spec(t, ra, dec, mode=mode,
                                   target_norad=int(norad) if mode == "rate" else None,
                                   index=self.index, exposure_s=exposure)  # fmt: skip
        return spec, step


def _moves(spec, following) -> bool:
    """Whether the plan's next frame is another field (as the agent cuts fields)."""
    return starts_new_field(
        spec.t_open, (spec.commanded_ra_deg, spec.commanded_dec_deg),
        following.t_open, (following.commanded_ra_deg, following.commanded_dec_deg),
    )  # fmt: skip


def starts_new_field(last_utc, last_pointing, utc, pointing) -> bool:
    """Whether a frame at ``utc``, ``pointing`` (either may be None: unknown) belongs to
    another field than the one taken at ``last_utc``, ``last_pointing``."""
    if utc is not None and last_utc is not None:
        if abs((utc - last_utc) / np.timedelta64(1, "s")) > FIELD_GAP_S:
            return True
    if pointing is not None and last_pointing is not None:
        return separation_deg(pointing, last_pointing) > FIELD_RADIUS_DEG
    return False


def separation_deg(a, b) -> float:
    """Angle between two (RA, Dec) directions, degrees."""
    ra1, d1, ra2, d2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _with_index(spec, index: int):
    from dataclasses import replace

    return replace(spec, index=index) if spec.index != index else spec
