"""Station agent benchmark: frames per minute sustained, and frame-to-center latency.

Frames of the sky simulator (Pakistan's 2048 x 2048 camera, a few visits of the
2020-10-02 night with the catalogue's satellites) are rendered first, outside the
timing. Then a real ``aposos center serve`` (loopback, SQLite) and a real ``aposos
station run`` (folder source) run, and the frames are written into the watched
folder, as a camera would:

- **throughput**: all frames at once; frames per minute from the first write to the
  moment every frame is committed and every tracklet is stored at the center
  (reduce + archive + outbox + upload);
- **latency**: the frames again (a fresh agent and center) at ``--cadence`` seconds;
  for each tracklet, from the write of the last frame of its field to its
  ``received_at`` at the center (median and 95th percentile). A field is closed when
  the next field's first frame arrives, or after ``field_idle_s`` without a frame
  (here twice the cadence; 3 s for the throughput run).

Baseline, in the same process: ``reduce_frames`` over the same files (the reduction
alone, one process, no archive, no delivery). Ratio = agent / baseline throughput.

    .venv/bin/python benchmarks/bench_agent.py                  # 3 visits, cadence 6 s
    .venv/bin/python benchmarks/bench_agent.py --minutes 1 --cadence 2
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from agentsetup import AgentProcess, count_rows, wait_for, write_station  # noqa: E402
from centerserver import CAT_1002, CenterProcess  # noqa: E402

STATION = ROOT / "stations" / "pakistan.toml"


def render(folder: Path, minutes: float) -> list[Path]:
    from aposos.orbit.catalogue import Catalogue
    from aposos.station.config import StationConfig
    from aposos.station.simulator import write_night
    from aposos.station.stars import StarCatalogue

    cfg = StationConfig.load(STATION)
    write_night(cfg, StarCatalogue.load("both"), Catalogue.from_tle(CAT_1002),
                "2020-10-02T18:00:00", minutes, folder, seed=1, n_calibration=0,
                progress=sys.stderr.isatty())  # fmt: skip
    return sorted((folder / "lights").glob("*.fits"))


def baseline(frames: list[Path]) -> tuple[float, int, int]:
    from aposos.station.config import StationConfig
    from aposos.station.reduce import reduce_frames

    t0 = time.perf_counter()
    result = reduce_frames(frames, StationConfig.load(STATION))
    seconds = time.perf_counter() - t0
    # the agent delivers arcs only (the center refuses a lone position)
    return seconds, len(result.tracklets), sum(len(t) >= 2 for t in result.tracklets)


def run_agent(frames: list[Path], base: Path, cadence_s: float | None) -> dict:
    """Feed the frames to a fresh agent; returns timings and per-tracklet latencies."""
    center = CenterProcess(base / "center", worker=False).start()
    camera = base / "camera"
    camera.mkdir(parents=True)
    station = write_station(base / "st", center.url, center.token("PAK1"), {
        "work_dir": str(base / "work"), "source": "folder",
        "field_idle_s": 3.0 if cadence_s is None else 2.0 * cadence_s,
        "folder": {"path": str(camera), "settle_s": 0.2},
    }, base=STATION)  # fmt: skip
    agent = AgentProcess(station).start()
    db = base / "work" / "agent.sqlite"
    try:
        wait_for(lambda: "work folder" in agent.text(), 120, "the agent to start", agent)
        time.sleep(2.0)  # imports done, catalogue loading under way
        written: dict[str, float] = {}
        t0 = time.time()
        for k, src in enumerate(frames):
            if cadence_s is not None:
                time.sleep(max(0.0, t0 + k * cadence_s - time.time()))
            tmp = camera / ("." + src.name)
            shutil.copy(src, tmp)
            tmp.rename(camera / src.name)  # the camera's last step: the file appears whole
            written[src.name] = time.time()
        done_sql = "SELECT COUNT(*) FROM frames WHERE state != 'captured'"
        wait_for(lambda: count_rows(db, done_sql) == len(frames), 3600, "every frame", agent)
        wait_for(lambda: count_rows(db, "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
                 == 0, 600, "the outbox to drain", agent)  # fmt: skip
        t_end = time.time()
        latencies = _latencies(db, center, written)
        n_tracklets = count_rows(db, "SELECT COUNT(*) FROM outbox")
    finally:
        agent.terminate()
        center.stop()
    return {"seconds": t_end - t0, "tracklets": n_tracklets, "latency_s": latencies}


def _latencies(db: Path, center, written: dict[str, float]) -> list[float]:
    """Per tracklet: received at the center minus the write of its field's last frame
    (a field's frames and tracklets are committed together: same time stamp)."""
    from sqlalchemy import text

    con = sqlite3.connect(db)
    fields: dict[str, list[str]] = {}
    for path, done in con.execute("SELECT path, done_at FROM frames"):
        fields.setdefault(done, []).append(Path(path).name)
    rows = con.execute("SELECT uuid, created_at FROM outbox").fetchall()
    con.close()
    with center.store.engine.connect() as conn:
        received = dict(conn.execute(text("SELECT uuid, received_at FROM tracklets")).all())
    out = []
    for uuid, created in rows:
        names = fields.get(created, [])
        if uuid not in received or not names:
            continue
        t_written = max(written[n] for n in names if n in written)
        got = received[uuid]
        if isinstance(got, str):
            got = datetime.fromisoformat(got.rstrip("Z"))
        out.append(got.replace(tzinfo=UTC).timestamp() - t_written)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="simulated minutes (3 visits)")
    ap.add_argument("--cadence", type=float, default=6.0, help="seconds between frames")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aposos-bench-agent-") as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        frames = render(base / "sim", args.minutes)
        print(f"rendered {len(frames)} frames of {STATION.stem} (2048 x 2048) in "
              f"{time.perf_counter() - t:.0f} s (not timed)")  # fmt: skip
        b_s, b_n, b_arcs = baseline(frames)
        b_rate = len(frames) / b_s * 60
        print(f"baseline reduce_frames alone: {b_rate:.1f} frames/min ({b_n} tracklets, "
              f"{b_arcs} of two or more observations)")  # fmt: skip
        fast = run_agent(frames, base / "throughput", None)
        rate = len(frames) / fast["seconds"] * 60
        print(f"agent (reduce + archive + outbox + upload, center on loopback): {rate:.1f} "
              f"frames/min ({fast['tracklets']} tracklets); ratio to baseline "
              f"{rate / b_rate:.2f}")  # fmt: skip
        paced = run_agent(frames, base / "latency", args.cadence)
        lat = np.array(paced["latency_s"])
        if lat.size:
            print(f"latency frame written -> tracklet stored, frames every {args.cadence:g} s: "
                  f"median {np.median(lat):.1f} s, p95 {np.percentile(lat, 95):.1f} s "
                  f"({lat.size} tracklets)")  # fmt: skip
        else:
            print("latency: no tracklets delivered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
