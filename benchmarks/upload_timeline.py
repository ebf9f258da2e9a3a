"""The slowest uploads of a ``bench_upload.py --trace`` run beside what the center
was doing meanwhile (see :mod:`aposos.center.uploadtrace`).

Every time is ``time.monotonic()`` of this machine, common to the client and the
server processes. Phases of one upload, in the order they happen:

    accept   client sent -> the server's ASGI app got the request
    authq    -> the token check started (on the event loop)
    auth     -> the handler ran (a cached token: at once; a new one: the thread
                pool's queue, the database lookup, back on the event loop)
    body     -> body read
    poolq    -> the upload's work started in a thread (the thread pool's queue)
    parse    -> parsed
    lockq    -> its group commit started (waiting for the write lock: earlier
                batches of the server, the worker's transactions)
    batch    -> that batch committed (its SQL and the commit, with any checkpoint)
    wake     -> its thread took the lock (a follower finds its work done)
    loopq    -> the event loop resumed the handler
    answer   -> the answer was sent
    client   -> the client read it
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np

PHASES = (
    ("accept", None, "in"),
    ("authq", "in", "auth"),
    ("auth", "auth", "handler"),
    ("body", "handler", "body"),
    ("poolq", "body", "thread"),
    ("parse", "thread", "parsed"),
    ("lockq", "queued", "lead"),
    ("batch", "lead", "committed"),
    ("wake", "committed", "locked"),
    ("loopq", "locked", "back"),
    ("answer", "back", "sent"),
    ("client", "sent", None),
)


def load(prefix: str) -> tuple[dict, list[dict]]:
    """(the API server's trace, the other processes' traces)."""
    docs = [json.loads(Path(p).read_text()) for p in sorted(glob.glob(f"{prefix}.*.json"))]
    server = max(docs, key=lambda d: len(d["uploads"]))
    return server, [d for d in docs if d is not server]


def phase_ms(t0: float, t1: float, doc: dict) -> dict[str, float]:
    """Milliseconds of each phase of one upload (NaN where a mark is missing)."""
    out = {}
    for name, a, b in PHASES:
        start = t0 if a is None else doc.get(a)
        end = t1 if b is None else doc.get(b)
        out[name] = 1000.0 * (end - start) if start is not None and end is not None else np.nan
    return out


def _overlap(events, t0: float, t1: float):
    return [e for e in events if e[1] > t0 and e[0] < t1]


def report(timeline: list[tuple[float, float, str]], prefix: str, share: float = 0.01) -> None:
    server, others = load(prefix)
    by_uuid = {d.get("uuid"): d for d in server["uploads"]}
    rows = []
    for t0, t1, uid in timeline:
        doc = by_uuid.get(uid)
        if doc is not None:
            rows.append((t1 - t0, t0, t1, doc))
    if not rows:
        print("trace: no upload matched")
        return
    rows.sort(key=lambda r: r[0])
    n_slow = max(1, int(round(share * len(rows))))
    slow = rows[-n_slow:]
    commits = [(c["start"], c["committed"], c) for c in server["commits"]]
    writes = [(w[1], w[2], w) for d in others for w in d["writes"]]  # the worker's lock holds
    gcs = [(g[0], g[1], g[2]) for g in server["gcs"]]
    worker_gcs = [(g[0], g[1], g[2]) for d in others for g in d["gcs"]]
    lags = [(t, t + late + 0.005, late) for t, late in server["lags"]]

    def mean_phases(sel):
        table = [phase_ms(t0, t1, d) for _, t0, t1, d in sel]
        return {k: float(np.nanmean([r[k] for r in table])) for k, _, _ in PHASES}

    everyone, tail = mean_phases(rows), mean_phases(slow)
    print(f"trace: {len(rows)} uploads matched; mean ms per phase, all vs the slowest {n_slow}:")
    print("  " + " ".join(f"{k:>7}" for k, _, _ in PHASES))
    print("  " + " ".join(f"{everyone[k]:7.1f}" for k, _, _ in PHASES) + "  all")
    print("  " + " ".join(f"{tail[k]:7.1f}" for k, _, _ in PHASES) + "  slowest")
    ckpt = _checkpoints(server["commits"], [w for d in others for w in d["writes"]])
    hold = [1000 * (c["committed"] - c["start"]) for c in server["commits"]]
    wholds = [1000 * (w[2] - w[1]) for d in others for w in d["writes"]]
    print(
        f"server group commits: {len(hold)}, {np.mean([c['n'] for c in server['commits']]):.1f} "
        f"uploads each, lock held p50 {np.median(hold):.1f} p99 {np.percentile(hold, 99):.1f} "
        f"max {max(hold):.1f} ms; worker writes: {len(wholds)}, held p50 "
        f"{np.median(wholds) if wholds else 0:.1f} max {max(wholds, default=0):.1f} ms; "
        f"checkpoints seen {len(ckpt)}"
    )
    g2 = [1000 * (b - a) for a, b, g in gcs if g == 2]
    g01 = [1000 * (b - a) for a, b, g in gcs if g < 2]
    print(
        f"server GC: {len(g01)} young collections ({sum(g01):.0f} ms in all, max "
        f"{max(g01, default=0):.1f}), {len(g2)} full ({sum(g2):.0f} ms, max "
        f"{max(g2, default=0):.1f}); loop lags over 2 ms: {len(lags)}, max "
        f"{1000 * max((x[2] for x in lags), default=0):.1f} ms"
    )
    cks = server.get("checkpoints", [])
    if cks:
        held = [1000 * (c[1] - c[0]) for c in cks]
        print(
            f"checkpoint thread: {len(cks)} checkpoints ({sum(c[2] == 'truncate' for c in cks)} "
            f"TRUNCATE), p50 {np.median(held):.1f} max {max(held):.1f} ms, "
            f"{np.mean([c[5] for c in cks]):.0f} frames copied each"
        )
    print("slowest uploads (ms): latency, phases; meanwhile: server GC, loop lag, commits")
    for lat, t0, t1, doc in slow[::-1][:25]:
        ph = phase_ms(t0, t1, doc)
        parts = " ".join(f"{k} {v:.0f}" for k, v in ph.items() if v == v and v >= 5)
        gc_ms = sum(1000 * (b - a) for a, b, _ in _overlap(gcs, t0, t1))
        gen2 = any(g == 2 for _, _, g in _overlap(gcs, t0, t1))
        lag = max((x[2] for x in _overlap(lags, t0, t1)), default=0.0)
        mine = _overlap(commits, t0, t1)
        held = max((1000 * (c["committed"] - c["start"]) for *_, c in mine), default=0.0)
        wk = max((1000 * (w[2] - w[1]) for *_, w in _overlap(writes, t0, t1)), default=0.0)
        cp = sum(1 for c in ckpt if t0 < c < t1) + len(_overlap(cks, t0, t1))
        print(
            f"  {1000 * lat:6.0f}: {parts} | GC {gc_ms:.0f}{' (full)' if gen2 else ''}, "
            f"lag max {1000 * lag:.0f}, {len(mine)} commits (longest {held:.0f}, batch "
            f"{doc.get('batch', '?')}), worker write {wk:.0f}, checkpoints {cp}, "
            f"worker GC {sum(1000 * (b - a) for a, b, _ in _overlap(worker_gcs, t0, t1)):.0f}"
        )


def _checkpoints(commits: list[dict], writes: list) -> list[float]:
    """When a checkpoint copied WAL frames back (the index's backfill count grew)."""
    states = sorted(
        [(c["committed"], tuple(c["wal"])) for c in commits]
        + [(w[2], tuple(w[3])) for w in writes if w[3]]
    )
    out, last = [], None
    for t, (seq, _frames, backfilled) in states:
        if last is not None and (seq != last[0] or backfilled > last[2]):
            out.append(t)
        last = (seq, _frames, backfilled)
    return out
