"""The upload timeline (``$APOSOS_UPLOAD_TRACE``): a real server keeps every upload's
phases in order, the group commits with the WAL's state, its garbage collections and
the event loop's lag, and writes them when it stops; ``benchmarks/upload_timeline.py``
reads them."""

from __future__ import annotations

import glob
import json
import sys
import time
from pathlib import Path

from centerserver import CenterProcess
from test_store import make_tracklet

from aposos.center import uploadtrace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import upload_timeline  # noqa: E402

ORDER = ("in", "auth", "handler", "body", "thread", "parsed", "queued", "lead", "committed")


def test_a_traced_server_writes_each_uploads_phases_in_order(tmp_path, monkeypatch, capsys):
    prefix = tmp_path / "trace"
    monkeypatch.setenv(uploadtrace.ENV, str(prefix))
    center = CenterProcess(tmp_path / "center", worker=False).start()
    try:
        token = center.token("IRN1")
        timeline = []
        with center.client(token) as c:
            for k in range(5):
                t = make_tracklet(seed=k)
                before = time.monotonic()
                c.upload_tracklets([t])
                timeline.append((before, time.monotonic(), t.uuid))
    finally:
        center.stop()
    files = glob.glob(f"{prefix}.*.json")
    assert len(files) == 1  # the server's (no worker)
    doc = json.loads(Path(files[0]).read_text())
    assert len(doc["uploads"]) == 5 and len(doc["commits"]) >= 1
    for up in doc["uploads"]:
        times = [up[k] for k in ORDER]
        assert times == sorted(times), up
        assert up["committed"] <= up["locked"] <= up["back"] <= up["sent"]
        assert up["status"] == 201 and up["batch"] >= 1
    seq, frames, copied = doc["commits"][-1]["wal"]
    assert frames > 0
    upload_timeline.report(timeline, str(prefix))
    out = capsys.readouterr().out
    assert "5 uploads matched" in out and "slowest uploads" in out


def test_untraced_marks_cost_nothing_and_keep_nothing(monkeypatch):
    monkeypatch.delenv(uploadtrace.ENV, raising=False)
    assert uploadtrace.phases() is None
    uploadtrace.mark("in")  # no upload being traced: nothing to note
    assert uploadtrace.phases() is None
