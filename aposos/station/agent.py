"""The station agent: take frames all night, reduce them, deliver every tracklet once.

:class:`StationAgent` runs two loops:

- the observing loop (the caller's thread): ask the source for the next frame (the
  active task from the center tells a source that can point where to look; without
  one it runs its default), record the frame, and gather the frames of one field;
  each frame is reduced as it comes (calibrate, extract, solve, compare with the one
  before) and archived; when the field ends (the pointing moves, a gap,
  ``field_max_frames`` frames, or no frame for ``field_idle_s`` while the source has
  none on its way; time spent reducing does not count, so a busy machine does not cut a
  field in two, which would give its objects other ids than a rerun) its frames are
  linked together (the station reduction's batch, the same result as reducing the
  field's files at once), and the frames' outcomes and the tracklets go to the outbox
  in one SQLite transaction;
- the :class:`~aposos.station.delivery.Courier` thread: uploads, heartbeats, tasks.

After ``kill -9`` the frames whose field was not committed are reduced again at
start (the same frames give the same tracklet UUIDs), and the outbox resumes.
:meth:`StationAgent.stop` (SIGTERM, SIGINT) ends the loop after the current frame,
reduces the open field and flushes the outbox for a few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from aposos.station.agent_config import AgentConfig
from aposos.station.delivery import Backoff, Courier
from aposos.station.outbox import AgentStore, FrameRow, utcnow_iso
from aposos.station.quality import RECENT_FRAMES, frame_quality, quality_summary, reasons_summary
from aposos.station.sources import Captured, describe, starts_new_field
from aposos.station.uplink import CenterLink

__all__ = ["StationAgent", "agent_version"]

log = logging.getLogger(__name__)
MIN_OBSERVATIONS = 2  # the center refuses shorter tracklets: one point gives no arc
QUALITY_MAX_AGE_S = 3600.0  # the heartbeat's FWHM, depth and sky: frames of the last hour


def agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"aposos {version('aposos')}"
    except PackageNotFoundError:
        return "aposos (not installed)"


class StationAgent:
    """One station's agent (see the module notes).

    Parameters
    ----------
    config : :class:`~aposos.station.agent_config.AgentConfig`.
    source : a frame source; by default the one the configuration names.
    link : the center link; by default from ``[center]``.
    """

    def __init__(self, config: AgentConfig, *, source=None, link=None, stars=None):
        self.config = config
        self.station = config.station
        config.work_dir.mkdir(parents=True, exist_ok=True)
        self.store = AgentStore(config.database)
        self._stars = stars
        self.source = source or self._make_source()
        up = config.upload
        self.link = link or CenterLink(
            self.station.center.url, self.station.code, self.station.token_path,
            timeout_s=up.timeout_s, ca_file=self.station.ca_path,
        )  # fmt: skip
        self.courier = Courier(
            self.store, self.link, self.status, batch=up.batch, heartbeat_s=config.heartbeat_s,
            backoff=Backoff(up.backoff_initial_s, up.backoff_max_s), clock=self.source.now,
        )  # fmt: skip
        self.stopping = threading.Event()
        self.field: list[Captured] = []
        self._batch = None  # the open field's reduction so far
        self._reduce_s = 0.0
        self._last_frame_at = time.monotonic()
        self._calibration = None
        self._archive = None
        self.fields_reduced = 0

    # ------------------------------------------------------------------ parts
    @property
    def stars(self):
        if self._stars is None:
            from aposos.station.stars import StarCatalogue

            self._stars = StarCatalogue.load("auto")  # the deep store when installed
        return self._stars

    def _make_source(self):
        cfg = self.config
        if cfg.source == "folder":
            from aposos.station.sources import FolderSource

            f = cfg.folder
            return FolderSource(
                f.path, self.store, cfg.quarantine, time_stamp=self.station.camera.time_stamp,
                settle_s=f.settle_s, incomplete_timeout_s=f.incomplete_timeout_s,
            )  # fmt: skip
        if cfg.source == "simulator":
            from aposos.station.sources import SimulatorSource

            return SimulatorSource(self.station, cfg.simulator, self.store, cfg.incoming,
                                   self.stars)  # fmt: skip
        from aposos.station.indi import IndiSource

        return IndiSource(self.station, cfg.indi, cfg.incoming)

    @property
    def calibration(self):
        if self._calibration is None:
            from aposos.station.calibrate import MasterCalibration, find_fits
            from aposos.station.fitsframe import FrameError, read_frame

            frames = []
            if self.config.folder is not None and self.config.folder.calib is not None:
                for p in find_fits(self.config.folder.calib):
                    try:
                        f = read_frame(p, require_time=False)
                    except FrameError as exc:
                        log.warning("calibration: %s", exc)
                        continue
                    if f.image_type != "light":
                        frames.append(f)
            self._calibration = MasterCalibration.from_frames(frames)
        return self._calibration

    @property
    def archive(self):
        if self._archive is None and self.config.archive:
            from aposos.station.archive import FrameArchive

            self._archive = _OnceArchive(FrameArchive.create(self.config.archive_path))
        return self._archive

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        """The heartbeat's body (without the backlog, which the courier adds)."""
        c = self.store.frame_counts()
        solved, unsolved = c["solved"], c["unsolved"]
        return {
            "agent_version": agent_version(),
            "source": self.config.source,
            "station_time": f"{np.datetime64(self.source.now(), 's')}Z",
            "heartbeat_s": self.config.heartbeat_s,
            "frames_captured": sum(c.values()),
            "frames_reduced": solved + unsolved,
            "frames_failed": c["failed"] + c["quarantined"],
            "frames_waiting": c["captured"],
            "solve_rate": round(solved / (solved + unsolved), 4) if solved + unsolved else None,
            "last_error": self.store.get("last_error"),
            "last_upload": self.store.get("last_upload"),
            "unsolved_reasons": reasons_summary(self.store.unsolved_reasons()),
            **quality_summary(self.store.recent_quality(RECENT_FRAMES, QUALITY_MAX_AGE_S)),
        }

    # ------------------------------------------------------------------ the night
    def stop(self) -> None:
        """Ask the loop to end after the current frame (safe from a signal handler)."""
        self.stopping.set()

    def run(self, *, until_exhausted: bool = True) -> None:
        """Observe until :meth:`stop` (or, with ``until_exhausted``, until the source
        has nothing more, as the simulator at the end of its night)."""
        self.courier.start()
        try:
            if not self.stopping.is_set():
                t0 = time.perf_counter()
                _ = self.stars, self.calibration  # loaded before the first frame
                log.info("star catalogue and calibration ready in %.1f s",
                         time.perf_counter() - t0)  # fmt: skip
            if not self.stopping.is_set():  # a stop during start-up: frames stay for later
                self.courier.first_contact()  # tasks known before the first frame
                self._recover()
            while not self.stopping.is_set():
                task = self._active_task()
                try:
                    frame = self.source.poll(task if self.source.can_point else None)
                except Exception as exc:  # a device hiccup must not end the night
                    log.exception("the frame source failed")
                    self.store.set("last_error", f"{utcnow_iso()} source: {exc}")
                    time.sleep(2.0)
                    continue
                if frame is not None:
                    self._take(frame)
                elif self._source_pending():
                    self._last_frame_at = time.monotonic()  # a frame is on its way
                elif self.field and time.monotonic() - self._last_frame_at > self._idle_s():
                    self.close_field()
                elif getattr(self.source, "exhausted", False) and not until_exhausted:
                    self.stopping.wait(1.0)  # nothing more to take: wait for SIGTERM
                if until_exhausted and getattr(self.source, "exhausted", False):
                    break
            self.close_field()
        finally:
            self.courier.stop(flush_s=10.0 if until_exhausted else 5.0)
            self.source.close()
            self.link.close()
            self.store.close()

    def _idle_s(self) -> float:
        return self.config.field_idle_s

    def _source_pending(self) -> bool:
        pending = getattr(self.source, "pending", None)
        return bool(pending()) if pending is not None else False

    def _recover(self) -> None:
        """Frames taken before a crash whose field was not committed: gathered again as
        the open field (reduced once it ends), so the field's frames still to come join
        them as they would have without the crash; a field cut in two would give its
        object two tracklets with different ids."""
        rows = self.store.open_frames()
        if not rows:
            return
        log.info("resuming: %d frame(s) taken before the restart are reduced again", len(rows))
        for row in rows:
            self._take(self._recaptured(row), recorded=True)
        self._last_frame_at = time.monotonic()

    def _recaptured(self, row: FrameRow) -> Captured:
        path = Path(row.path)
        try:
            utc, pointing, kind = describe(path, self.station.camera.time_stamp)
        except Exception:  # reduced (and reported) as it is
            utc = pointing = None
            kind = "light"
        return Captured(row.key, path, utc, pointing, row.task_id, image_type=kind)

    def _take(self, frame: Captured, *, recorded: bool = False) -> None:
        self._last_frame_at = time.monotonic()  # again once reduced: see the end
        if frame.image_type != "light":
            self.store.add_frame(frame.key, frame.path, state="calibration",
                                 reason=f"{frame.image_type} frame", meta=frame.meta)  # fmt: skip
            return
        if self.field and self._new_field(frame):
            self.close_field()
        if not recorded:
            if not self.store.add_frame(frame.key, frame.path, task_id=frame.task_id,
                                        meta=frame.meta):  # fmt: skip
                return  # taken before
            if frame.task_id:
                self.store.task_progress(frame.task_id, frames=1)
        self.field.append(frame)
        t0 = time.perf_counter()
        if self._batch is None:
            from aposos.station.reduce import Reducer

            reducer = Reducer(self.station, calibration=self.calibration, catalogue=self.stars)
            self._batch = reducer.batch(archive=self.archive)
        self._batch.add(frame.path)
        self._reduce_s += time.perf_counter() - t0
        # the field's idle time runs from here: a reduction slowed by a busy machine must
        # not count as the camera's silence (it would cut the field in two)
        self._last_frame_at = time.monotonic()
        if len(self.field) >= self.config.field_max_frames or frame.field_ends:
            self.close_field()

    def _new_field(self, frame: Captured) -> bool:
        last = self.field[-1]
        if frame.task_id != last.task_id:
            return True
        return starts_new_field(last.utc, last.pointing, frame.utc, frame.pointing)

    def close_field(self) -> None:
        """Reduce the gathered frames together, archive them, commit tracklets."""
        if not self.field:
            return
        frames, self.field = self.field, []
        batch, self._batch = self._batch, None
        t0 = time.perf_counter()
        result = batch.finish()
        t_link = time.perf_counter() - t0
        t_reduce, self._reduce_s = self._reduce_s + t_link, 0.0
        per_frame = dict.fromkeys(range(len(frames)), 0)
        for members in result.tracklet_members:
            for k in {d.frame for d in members if getattr(d, "frame", None) is not None}:
                per_frame[k] = per_frame.get(k, 0) + 1
        outcomes = []
        for k, (f, r) in enumerate(zip(frames, result.reports, strict=True)):
            state = {"solved": "solved", "unsolved": "unsolved", "calibration": "calibration"}
            outcomes.append((f.key, state.get(r.status, "failed"), r.reason or None,
                             per_frame.get(k, 0)))  # fmt: skip
        task_of = {}
        for t, members in zip(result.tracklets, result.tracklet_members, strict=True):
            idx = [d.frame for d in members if getattr(d, "frame", None) is not None]
            task_of[t.uuid] = frames[idx[0]].task_id if idx else frames[0].task_id
        deliverable = [t for t in result.tracklets if len(t) >= MIN_OBSERVATIONS]
        if len(deliverable) < len(result.tracklets):
            log.info("%d single-observation tracklet(s) kept in the archive only (the center "
                     "needs %d observations)", len(result.tracklets) - len(deliverable),
                     MIN_OBSERVATIONS)  # fmt: skip
        quality = [
            (f.key, *frame_quality(r.info))
            for f, r in zip(frames, result.reports, strict=True)
            if r.status == "solved"
        ]
        queued = self.store.commit_field(
            outcomes, [(t.to_wire(), task_of[t.uuid]) for t in deliverable], quality
        )
        for task_id in {f.task_id for f in frames if f.task_id}:
            n = sum(1 for t in deliverable if task_of[t.uuid] == task_id)
            self.store.task_progress(task_id, tracklets=n)
        self.fields_reduced += 1
        solved = sum(o[1] == "solved" for o in outcomes)
        log.info(
            "field of %d frame(s) reduced in %.1f s (linked in %.1f s at its end): %d solved,"
            " %d tracklet(s), %d new in the outbox", len(frames), t_reduce, t_link, solved,
            len(result.tracklets), queued,
        )  # fmt: skip
        failed = [o for o in outcomes if o[1] == "failed"]
        if failed:
            self.store.set("last_error", f"{utcnow_iso()} {failed[-1][0]}: {failed[-1][2]}")
        if self.config.source != "folder" and self.config.archive:
            for f in frames:  # the archive holds the pixels now
                f.path.unlink(missing_ok=True)
        if any(f.task_id for f in frames):
            self._active_task()  # finishes the tasks this field completed
        self.courier.wake.set()

    # ------------------------------------------------------------------ tasks
    def _active_task(self) -> dict | None:
        """The task to serve now (highest priority whose window is open); finishes
        tasks whose window has passed or whose frames are all taken."""
        now = self.source.now()
        best = None
        for t in self.store.tasks():
            try:
                start = np.datetime64(str(t["start"]).rstrip("Z"), "us")
                end = np.datetime64(str(t["end"]).rstrip("Z"), "us")
            except (KeyError, ValueError):
                self.store.finish_task(t["task_id"], "failed", "the task has no valid window")
                continue
            done = t["_frames"] >= int(t.get("frames") or 0) > 0
            if now >= end or done:
                if any(f.task_id == t["task_id"] for f in self.field):
                    continue  # its last field is still open: report once it is committed
                if t["_frames"]:
                    self.store.finish_task(t["task_id"], "executed")
                else:
                    self.store.finish_task(t["task_id"], "skipped", "window passed unobserved")
                continue
            if now < start:
                continue
            if not self.source.can_point:
                self.store.finish_task(
                    t["task_id"], "skipped",
                    f"station source is '{self.config.source}': the agent cannot point it",
                )  # fmt: skip
                continue
            if best is None or int(t.get("priority") or 0) > int(best.get("priority") or 0):
                best = t
        return best


class _OnceArchive:
    """The frame archive, storing each file once (a field reduced again after a crash
    finds its frames already archived and only updates their reports)."""

    def __init__(self, archive):
        self.archive = archive
        self.known = {k.split("_", 1)[1]: k for k in archive.keys()}

    def add(self, path, frame, report):
        from aposos.station.archive import _key

        stem = _key(0, path).split("_", 1)[1]
        if frame is not None and stem in self.known:
            return self.known[stem]
        key = self.archive.add(path, frame, report)
        if key is not None:
            self.known[stem] = key
        return key

    def update_report(self, key, entry) -> None:
        self.archive.update_report(key, entry)
