"""Load benchmark of the data center: concurrent station clients uploading tracklets.

A real ``aposos center serve`` process (SQLite file in a temp folder, correlation
worker running against a real catalogue snapshot, a site for every station) on a
loopback port; N station clients (threads with their own HTTP connection and token)
upload batches of fresh tracklets (new UUIDs and new observations every time) for a
fixed time. Reported: tracklets/s, requests/s, latency percentiles, and the jobs the
worker correlated meanwhile; then the database is checked: every acknowledged
tracklet stored exactly once.

With ``--big-mb M`` one more station uploads M MB bodies all the time: the latency
reported is that of the small uploads of the other stations.

Baseline, run first in the same process: one client alone for a short time. The
ratio says how much the service gains from concurrency.

    .venv/bin/python benchmarks/bench_upload.py                 # 20 clients, 60 s
    .venv/bin/python benchmarks/bench_upload.py --clients 5 --duration 10
    .venv/bin/python benchmarks/bench_upload.py --clients 5 --duration 20 --big-mb 10
    .venv/bin/python benchmarks/bench_upload.py --interval 0.5   # an offered load

Back to back, the latency is the queue of 20 clients before a saturated server
(Little's law: p99 < 200 ms needs well over 100 uploads/s); with ``--interval`` it
is the latency at a given upload rate. The CPU seconds of the server process per
upload (Linux) depend little on what else runs on the machine.

The station clients send with the standard library's ``http.client`` (one keep-alive
connection per thread), not httpx: here they share two cores with the server, and
httpx's millisecond of Python per request was taken from the server and counted in
its latencies (real stations are other machines). For the same reason the client
process freezes its start-up heap (``gc.freeze``): a full garbage collection of it
paused all 20 client threads for 0.27 s at load 21. The requests, bodies, worker load
and the database check are the same as before.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import upload_timeline  # noqa: E402
from centerserver import CAT_0930, STATIONS, CenterProcess, children  # noqa: E402

from aposos.center import uploadtrace  # noqa: E402


class Bodies:
    """JSON uploads of fresh tracklets (new UUIDs and new observations every time),
    made cheaply from one template so that the clients spend little CPU."""

    def __init__(self, station: str, batch: int, n_obs: int, rng):
        start = np.datetime64("2020-10-01T18:00:00", "us")
        wire = []
        self.ra = rng.uniform(0, 360, batch)
        for j in range(batch):
            t0 = start + np.timedelta64(int(rng.integers(0, 8 * 3600 * 1000)), "ms")
            obs = [
                {
                    "utc": str(t0 + np.timedelta64(k * 3, "s")) + "Z",
                    "ra_deg": float(rng.uniform(0, 360)),
                    "dec_deg": float(rng.uniform(-80, 80)),
                    "sigma_arcsec": 1.5,
                    "mag": float(rng.uniform(8, 14)),
                }
                for k in range(n_obs)
            ]
            obs[0]["ra_deg"] = f"@R{j}@"
            wire.append(
                {"uuid": f"@U{j}@", "station": station, "object": None, "observations": obs}
            )
        self.template = json.dumps(wire)
        self.batch = batch
        self.count = 0

    def next(self) -> tuple[str, list[str]]:
        self.count += 1
        body, ids = self.template, []
        for j in range(self.batch):
            uid = str(uuid.uuid4())
            ra = (self.ra[j] + self.count * 1e-5) % 360.0
            body = body.replace(f'"@U{j}@"', f'"{uid}"').replace(f'"@R{j}@"', f"{ra:.9f}")
            ids.append(uid)
        return body, ids


def station_sites(folder: Path, codes: list[str]) -> Path:
    """A stations/ folder with one site per benchmark station (Iran's place)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (STATIONS / "iran.toml").read_text()
    for k, code in enumerate(codes):
        (folder / f"{code}.toml").write_text(
            text.replace('code = "IRN1"', f'code = "{code}"').replace(
                "iod_station = 2401", f"iod_station = {9000 + k}"
            )
        )
    return folder


def big_uploader(center, token: str, megabytes: float, stop: threading.Event, out: dict):
    """One station sending large uploads until ``stop``."""
    rng = np.random.default_rng(999)
    n = int(megabytes * 1e6 / 1500)  # about 1.5 kB per 6-point tracklet in JSON
    with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {token}"}) as http:
        bodies = Bodies("BIG0", n, 6, rng)
        while not stop.is_set():
            body, ids = bodies.next()
            t0 = time.perf_counter()
            r = http.post(f"{center.url}/api/v1/tracklets", content=body)
            out.setdefault("seconds", []).append(time.perf_counter() - t0)
            out.setdefault("mb", []).append(len(body) / 1e6)
            if r.status_code == 201:
                out.setdefault("acked", []).extend(ids)
            else:
                out.setdefault("errors", []).append(f"{r.status_code} {r.text[:200]}")


class RawClient:
    """One keep-alive HTTP/1.1 connection of the standard library: a station's uploads.

    httpx costs about a millisecond of Python per request; with 20 client threads
    in one process beside the server on two cores, that time was taken from the
    server and counted in its latencies. The request sent is the same (method, path,
    body, ``Authorization`` and ``Content-Type`` headers)."""

    def __init__(self, url: str, token: str, timeout: float = 60.0):
        parts = urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.request("POST", path, body=body, headers=self.headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def reconnect(self) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_clients(
    center, tokens: dict, seconds: float, batch: int, n_obs: int, interval: float = 0.0
) -> dict:
    """Upload from every station in ``tokens`` at once for ``seconds``: back to back
    (``interval`` 0: the most the server takes), or one upload every ``interval``
    seconds per station (an offered load, as stations send when they have data)."""
    latencies: list[float] = []
    timeline: list[tuple[float, float, str]] = []  # (sent, answered, first uuid): --trace
    acked: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(code: str, token: str, seed: int):
        rng = np.random.default_rng(seed)
        bodies = Bodies(code, batch, n_obs, rng)
        mine_lat, mine_ack, mine_times = [], [], []
        due = time.monotonic() + rng.uniform(0, interval)  # stations out of step
        station = RawClient(center.url, token)
        try:
            while time.monotonic() < deadline:
                if interval:
                    time.sleep(max(0.0, due - time.monotonic()))
                    due += interval
                body, ids = bodies.next()
                t0 = time.monotonic()
                try:
                    status, answer = station.post("/api/v1/tracklets", body.encode())
                except OSError as exc:
                    with lock:
                        errors.append(repr(exc))
                    station.reconnect()
                    continue
                t1 = time.monotonic()
                mine_lat.append(t1 - t0)
                mine_times.append((t0, t1, ids[0]))
                if status == 201 and json.loads(answer)["stored"] == len(ids):
                    mine_ack.extend(ids)
                else:
                    with lock:
                        errors.append(f"{status} {answer[:200]!r}")
        finally:
            station.close()
        with lock:
            latencies.extend(mine_lat)
            timeline.extend(mine_times)
            acked.extend(mine_ack)

    threads = [
        threading.Thread(target=client, args=(code, token, k + 1))
        for k, (code, token) in enumerate(tokens.items())
    ]
    t_start = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - t_start
    lat = np.array(latencies) * 1000.0
    return {
        "clients": len(tokens),
        "seconds": elapsed,
        "requests": len(latencies),
        "tracklets": len(acked),
        "errors": errors,
        "acked": acked,
        "timeline": timeline,
        "start": t_start,
        "tracklets_per_s": len(acked) / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
    }


def check_exactly_once(center, acked: list[str]) -> tuple[int, int]:
    """(acknowledged tracklets missing from the database, UUIDs stored more than once)."""
    from sqlalchemy import func, select

    from aposos.center import schema as S

    with center.store.read() as conn:
        stored = conn.execute(select(S.tracklets.c.uuid)).scalars().all()
        n_obs = conn.execute(select(func.count()).select_from(S.observations)).scalar()
    counts: dict[str, int] = {}
    for u in stored:
        counts[u] = counts.get(u, 0) + 1
    missing = sum(1 for u in acked if u not in counts)
    doubled = sum(1 for n in counts.values() if n > 1)
    return missing, doubled, len(stored), n_obs


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by the server process and by its children (the worker)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.start = self.read()

    def read(self) -> tuple[float, float]:
        """(server processes, worker): the worker is the child running niced below
        the server (``[worker] nice``); other children serve (``server_processes``)."""
        kids = [k for k in children(self.pid) if "resource_tracker" not in _cmdline(k)]
        mine = _nice(self.pid)
        serving = [self.pid] + [k for k in kids if _nice(k) <= mine]
        return sum(cpu_seconds(k) for k in serving), sum(
            cpu_seconds(k) for k in kids if k not in serving
        )

    def spent(self) -> tuple[float, float]:
        now = self.read()
        return now[0] - self.start[0], now[1] - self.start[1]


def _nice(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    except (OSError, ValueError, IndexError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def queue_done(center) -> int:
    from aposos.center.worker import queue_counts

    counts = queue_counts(center.store)
    return counts["done"] + counts["failed"]


def wait_for_worker(center, timeout: float) -> None:
    """Wait until the worker has correlated its first jobs (the baseline's): loading
    the catalogue and building its correlator take it a while after start-up, more
    under load, and the load run is meant to meet a worker that correlates."""
    t0 = time.monotonic()
    while queue_done(center) == 0 and time.monotonic() - t0 < timeout:
        print(f"waiting for the worker's first results ({time.monotonic() - t0:.0f} s)", end="\r")
        time.sleep(1.0)
    waited = time.monotonic() - t0
    state = "correlating" if queue_done(center) else f"still not correlating after {timeout:g} s"
    print(f"worker {state} (waited {waited:.0f} s after the baseline)".ljust(60))


def report(name: str, r: dict) -> None:
    print(
        f"{name:<9} {r['clients']:>3} clients {r['seconds']:6.1f} s  "
        f"{r['requests']:>6} requests {r['tracklets']:>7} tracklets  "
        f"{r['tracklets_per_s']:8.1f} tracklets/s {r['requests_per_s']:7.1f} req/s  "
        f"latency p50 {r['p50_ms']:6.1f} ms p95 {r['p95_ms']:6.1f} ms "
        f"p99 {r['p99_ms']:6.1f} ms max {r['max_ms']:6.1f} ms  errors {len(r['errors'])}"
    )


def cpu_report(r: dict, spent: tuple[float, float]) -> None:
    server, worker = spent
    per = 1000.0 * server / r["requests"] if r["requests"] else float("nan")
    print(
        f"{'':<9} CPU: server process {server:6.1f} s ({per:5.1f} ms per upload), "
        f"worker process {worker:6.1f} s, over {r['seconds']:.1f} s of wall time"
    )


def when_slow(r: dict, window_s: float = 5.0, slow_ms: float = 200.0) -> str:
    """When in the run the slow answers came: per ``window_s`` of the run (by the time
    the upload was sent), the uploads, their p99 and how many took over ``slow_ms``."""
    sent, lat = _sent_and_latency(r)
    cells = []
    for k in range(int(np.ceil(r["seconds"] / window_s))):
        inside = lat[(sent >= k * window_s) & (sent < (k + 1) * window_s)]
        if inside.size:
            cells.append(
                f"{k * window_s:>3.0f}s {np.percentile(inside, 99):4.0f}"
                + (
                    f" ({int((inside > slow_ms).sum())}>{slow_ms:.0f})"
                    if (inside > slow_ms).any()
                    else ""
                )
            )
    return "p99 ms by window of the run: " + ", ".join(cells)


def _sent_and_latency(r: dict) -> tuple[np.ndarray, np.ndarray]:
    """(seconds from the run's start when each upload was sent, its latency in ms)."""
    if "latency_ms" in r:  # a run read back from --save
        return np.array(r["sent_s"]), np.array(r["latency_ms"])
    t = np.array([(t0, t1) for t0, t1, _ in r["timeline"]]).reshape(-1, 2)
    return t[:, 0] - r["start"], 1000.0 * (t[:, 1] - t[:, 0])


def pooled(runs: list[dict], window_s: float = 5.0) -> str:
    """Percentiles of every latency of every run together, overall and by window of
    the run (does a run's start make the tail?)."""
    sent, lat = (np.concatenate(x) for x in zip(*(_sent_and_latency(r) for r in runs)))
    p = np.percentile(lat, [50, 99, 99.9])
    cells = []
    for k in range(int(np.ceil(sent.max() / window_s))):
        inside = lat[(sent >= k * window_s) & (sent < (k + 1) * window_s)]
        if inside.size:
            cells.append(f"{k * window_s:.0f}s {np.percentile(inside, 99):.0f}")
    return f"pooled p99 ms by window of the runs: {', '.join(cells)}\n" + (
        f"pooled over {len(runs)} run(s), {lat.size} uploads: p50 {p[0]:.1f} ms, "
        f"p99 {p[1]:.1f} ms, p99.9 {p[2]:.1f} ms, max {lat.max():.1f} ms; per run p99: "
        + ", ".join(f"{r['p99_ms']:.0f}" for r in runs)
        + f" ms; over 200 ms: {int((lat > 200).sum())}"
    )


def save(path: str, args, runs: list[dict]) -> None:
    """Every latency of every run (ms, with the second of the run it was sent in)."""
    doc = {"args": vars(args), "runs": []}
    for r in runs:
        sent, lat = _sent_and_latency(r)
        keep = {k: v for k, v in r.items() if k not in ("acked", "timeline", "errors")}
        doc["runs"].append(
            keep | {"errors": r["errors"][:20], "sent_s": sent.round(4).tolist(),
                    "latency_ms": lat.round(3).tolist()}
        )  # fmt: skip
    Path(path).write_text(json.dumps(doc))
    print(f"latencies saved in {path}")


def one_run(args, trace: str | None) -> dict | None:
    """A fresh center (new database, new worker), the 1-client baseline, then the load:
    the load's result with ``ok`` (nothing lost or doubled), or ``None`` on failure."""
    with tempfile.TemporaryDirectory(prefix="aposos-bench-") as tmp:
        if trace:
            os.environ[uploadtrace.ENV] = str(Path(trace).resolve())
        codes = [f"ST{k:02d}" for k in range(1, args.clients + 1)] + ["BIG0"]
        center = CenterProcess(
            Path(tmp),
            worker=True,
            lease_s=30.0,
            sqlite_synchronous=args.sync,
            stations_dir=str(station_sites(Path(tmp) / "stations", codes)),
            worker_options={"process": not args.worker_thread}
            | ({} if args.worker_nice is None else {"nice": args.worker_nice}),
            server_processes=args.processes,
        )
        center.start()
        load = None
        try:
            tokens = {code: center.token(code) for code in codes[:-1]}
            if not args.no_catalogue:
                with center.client(center.token("root", "admin")) as c:
                    c.put_catalogue(CAT_0930)
            where = "a thread of the server" if args.worker_thread else "its own process"
            print(
                f"server: {args.processes} process(es), SQLite (WAL, synchronous={args.sync}), "
                f"worker in {where} "
                f"({'idle' if args.no_catalogue else 'correlating against ' + CAT_0930.name}); "
                f"{args.batch} tracklets x {args.obs} observations per upload, "
                + (
                    f"one every {args.interval:g} s per station"
                    if args.interval
                    else "back to back"
                )
            )
            first = next(iter(tokens))
            gc.collect()
            gc.freeze()  # no full collections of numpy & co. pausing all client threads
            meter = CpuMeter(center.proc.pid)
            base = run_clients(center, {first: tokens[first]}, args.baseline, args.batch, args.obs)
            report("baseline", base)
            cpu_report(base, meter.spent())
            if not args.no_catalogue:
                wait_for_worker(center, args.warm_timeout)
            done_before = queue_done(center)
            meter = CpuMeter(center.proc.pid)
            stop, big = threading.Event(), {}
            if args.big_mb:
                mover = threading.Thread(
                    target=big_uploader,
                    args=(center, center.token("BIG0"), args.big_mb, stop, big),
                )
                mover.start()
            load = run_clients(center, tokens, args.duration, args.batch, args.obs, args.interval)
            stop.set()
            if args.big_mb:
                mover.join()
                secs = big.get("seconds", [])
                print(
                    f"big uploads: {len(secs)} of {np.mean(big.get('mb', [0])):.1f} MB, "
                    f"{np.mean(secs) if secs else float('nan'):.1f} s each; "
                    f"errors {len(big.get('errors', []))}"
                )
                load["acked"] += big.get("acked", [])
                load["errors"] += big.get("errors", [])
            report("load", load)
            cpu_report(load, meter.spent())
            print(when_slow(load))
            print(f"worker: {queue_done(center) - done_before} jobs correlated during the load")
            if not (base["tracklets"] and load["tracklets"]):
                print("errors:", (base["errors"] + load["errors"])[:3])
                return None
            print(
                f"ratio load/baseline: throughput {load['tracklets_per_s'] / base['tracklets_per_s']:.2f}x, "
                f"p99 latency {load['p99_ms'] / base['p99_ms']:.2f}x"
            )
            missing, doubled, stored, n_obs = check_exactly_once(
                center, base["acked"] + load["acked"]
            )
            acked = len(base["acked"]) + len(load["acked"])
            print(
                f"database: {stored} tracklets ({n_obs} observations) stored for {acked} "
                f"acknowledged; missing {missing}, stored twice {doubled}"
            )
            for e in (base["errors"] + load["errors"])[:5]:
                print("error:", e)
            load["ok"] = missing == 0 and doubled == 0 and stored == acked
            load["missing"], load["doubled"] = missing, doubled
        finally:
            center.stop()
        if trace and load is not None:
            Path(f"{trace}.client").write_text(json.dumps(load["timeline"]))
            upload_timeline.report(load["timeline"], os.environ.pop(uploadtrace.ENV))
    return load


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--baseline", type=float, default=10.0, help="seconds of the 1-client run")
    ap.add_argument("--batch", type=int, default=10, help="tracklets per upload")
    ap.add_argument("--obs", type=int, default=6, help="observations per tracklet")
    ap.add_argument("--sync", default="FULL", help="SQLite synchronous mode of the server")
    ap.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between the uploads of one station (0: back to back)",
    )
    ap.add_argument("--big-mb", type=float, default=0.0, help="one station sends uploads this big")
    ap.add_argument(
        "--worker-nice", type=int, default=None,
        help="the worker process's [worker] nice (default: the configuration's)",
    )  # fmt: skip
    ap.add_argument("--no-catalogue", action="store_true", help="worker idle (no snapshot)")
    ap.add_argument(
        "--warm-timeout",
        type=float,
        default=300.0,
        help="seconds to wait after the baseline for the worker's first results",
    )
    ap.add_argument(
        "--processes", type=int, default=1, help="server processes (config server_processes)"
    )
    ap.add_argument(
        "--worker-thread",
        action="store_true",
        help="run the correlation worker as a thread of the server (the old way)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs back to back, each on a fresh center (new database and worker); "
        "prints each run's p99 and the pooled percentiles",
    )
    ap.add_argument(
        "--save", metavar="FILE", help="write every latency of every run (JSON) to FILE"
    )
    ap.add_argument(
        "--trace",
        metavar="PREFIX",
        help="time every upload's phases in the server and show the slowest 1 %% beside "
        "what happened meanwhile (benchmarks/upload_timeline.py); the traces are kept "
        "in PREFIX.*.json, the client's times in PREFIX.client (PREFIX.rK with --repeat)",
    )
    ap.add_argument(
        "--pool",
        nargs="+",
        metavar="FILE",
        help="no runs: read files written by --save and print each run's and the pooled "
        "percentiles, and when in the runs the slow answers came",
    )
    args = ap.parse_args(argv)
    if args.pool:
        runs = [r for f in args.pool for r in json.loads(Path(f).read_text())["runs"]]
        for r in runs:
            print(when_slow(r))
        print(pooled(runs))
        return 0
    if args.repeat < 1:
        ap.error("--repeat must be 1 or more")
    runs, ok = [], True
    for k in range(args.repeat):
        if args.repeat > 1:
            print(f"--- run {k + 1} of {args.repeat} ---")
        trace = args.trace and (args.trace if args.repeat == 1 else f"{args.trace}.r{k + 1}")
        load = one_run(args, trace)
        if load is None:
            ok = False
            continue
        runs.append(load)
        ok = ok and load["ok"]
    if runs:
        print(pooled(runs))
        lost = sum(r["missing"] for r in runs)
        print(f"missing {lost}, stored twice {sum(r['doubled'] for r in runs)} over all runs")
    if args.save and runs:
        save(args.save, args, runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
