"""The nightly report from a real center database: numbers, rounding, files, determinism.

The database is built through the store's own API (ingest, snapshot, the worker's queue
calls), with correlations whose numbers carry the long tails a correlator produces
(117726.58004849099 arcsec), so the rounding is checked on what the report really sees.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import date, datetime
from types import SimpleNamespace
from xml.etree import ElementTree

import numpy as np
import pytest
from centerserver import CAT_0930, REPO, passes

from aposos.center.config import CenterConfig
from aposos.center.report import nightly_report
from aposos.center.report_night import gather_night
from aposos.center.snapshots import create_snapshot
from aposos.center.store import Store
from aposos.center.tasking_store import report_task, save_plan
from aposos.center.worker import claim_jobs, complete_jobs
from aposos.cli import main
from aposos.model import Candidate, Correlation, Task, TaskReport, Tracklet

NIGHT = "2020-10-02"
T_NIGHT = np.datetime64("2020-10-02T20:00:00", "us")  # 20:00 UTC: within every station's night
T_BEFORE = np.datetime64("2020-10-01T20:00:00", "us")  # the previous night


def tracklet(station: str, start, seed: int) -> Tracklet:
    rng = np.random.default_rng(seed)
    n = 6
    return Tracklet(
        station=station,
        utc=start + np.arange(n) * np.timedelta64(2_000_000, "us"),
        ra_deg=rng.uniform(0, 360) + 0.01 * np.arange(n),
        dec_deg=rng.uniform(-60, 60) + 0.01 * np.arange(n),
        sigma_arcsec=np.full(n, 1.5),
        mag=np.full(n, 9.0),
    )


def first_objects(n: int) -> bytes:
    lines = CAT_0930.read_text().splitlines()[: 3 * n]
    return ("\n".join(lines) + "\n").encode()


CORRELATED_900 = Correlation(
    status="correlated",
    norad_id=900,
    score=0.987654321,
    rms_arcsec=1.23456789,
    time_offset_s=0.04999999,
    cross_track_arcsec=-2.3456789,
    candidates=[Candidate(900, 0.987654321, 1.23456789, 0.04999999, 0.3, -0.01)],
)
CORRELATED_902 = Correlation(
    status="correlated",
    norad_id=902,
    score=0.9,
    rms_arcsec=3.0,
    time_offset_s=-1.25,
    cross_track_arcsec=4.0,
    candidates=[Candidate(902, 0.9, 3.0, -1.25)],
)
UNCORRELATED = Correlation(
    status="uncorrelated",
    norad_id=None,
    score=0.0,
    rms_arcsec=float("nan"),
    time_offset_s=float("nan"),
    cross_track_arcsec=float("nan"),
    candidates=[
        Candidate(1361, 1e-9, 117726.58004849099, 812.345678, 5871.2345678, 44.44444),
        Candidate(902, 1e-6, 98765.4321, 12.3456, 89.87654321, 12.345678),
    ],
    reason="no candidate within the gate",
)


@pytest.fixture
def center(tmp_path):
    config = CenterConfig(data_dir=tmp_path / "data")
    config.data_dir.mkdir()
    store = Store(config.database_url)
    store.upgrade()
    create_snapshot(store, config, first_objects(3), "celestrak-active-2020-09-30 (3 objects)")
    # the previous night: 902 seen; this night: PER1 sees 900 and 902, IRN1 an unknown
    store.ingest(None, [tracklet("PER1", T_BEFORE, 0)])
    night = [
        tracklet("PER1", T_NIGHT, 1),
        tracklet("PER1", T_NIGHT + np.timedelta64(40, "m"), 2),
        tracklet("IRN1", T_NIGHT + np.timedelta64(5, "m"), 3),
    ]
    store.ingest(store.save_raw_upload("PER1", "application/json", b"{}"), night)
    answer = {night[0].uuid: CORRELATED_900, night[1].uuid: CORRELATED_902,
              night[2].uuid: UNCORRELATED}  # fmt: skip
    jobs = claim_jobs(store, "w", 10, 60)
    stored = store.load_tracklets([j.tracklet_id for j in jobs])
    complete_jobs(
        store, "w", [(j, 1, answer.get(stored[j.tracklet_id].uuid, CORRELATED_902)) for j in jobs]
    )
    store.record_heartbeat(
        "PER1",
        outbox_backlog=2,
        agent_version="test",
        body={"frames_captured": 46, "frames_reduced": 45, "solve_rate": 30 / 45,
              "frames_failed": 1, "last_error": "frame 12: no stars"},
    )  # fmt: skip
    yield config, store
    store.close()


def test_the_night_in_numbers(center):
    _, store = center
    r = gather_night(store, NIGHT)
    t = r["totals"]
    assert (t["tracklets"], t["correlated"], t["uncorrelated"]) == (3, 2, 1)
    assert (t["objects_identified"], t["objects_new"]) == (2, 1)  # 902 was seen the night before
    objects = {o["norad_id"]: o for o in r["objects"]}
    assert objects[900]["name"] == "CALSPHERE 1" and objects[900]["intl_designator"]
    assert objects[900]["orbit_class"] == "LEO" and objects[900]["new"]
    assert not objects[902]["new"]
    assert objects[900]["median_rms_arcsec"] == 1.2
    per1 = next(s for s in r["stations"] if s["code"] == "PER1")
    assert (per1["frames_solved"], per1["frames_reduced"], per1["solved_pct"]) == (30, 45, 66.7)
    assert per1["outbox_backlog"] == 2 and per1["last_error"] == "frame 12: no stars"
    assert per1["longest_gap_min"] == 40.0
    assert per1["uploads"] == 1 and per1["uploads_refused"] == 0
    (u,) = r["uncorrelated"]
    assert u["station"] == "IRN1" and u["reason"] == "no candidate within the gate"
    # nearest in space, not the first listed; in km and s to 0.1
    assert u["nearest"] == {
        "norad_id": 902, "name": "CALSPHERE 2", "orbit_class": "LEO", "rms_arcsec": 98765.4,
        "time_offset_s": 12.3, "along_track_km": 89.9, "cross_track_km": 12.3,
    }  # fmt: skip
    assert r["residuals"]["LEO"]["cross_track_arcsec"]["n"] == 2
    # CALSPHERE 1's element set: epoch 2020 day 274.95388704 = 2020-09-30T22:53:35.84 UTC
    seen = next(x for x in r["tracklets"] if x["norad_id"] == 900)
    age = 2 + (20 * 3600 + 5 - (22 * 3600 + 53 * 60 + 35.84)) / 86400
    assert seen["elset_age_d"] == round(age, 1)


def test_files_are_self_contained_rounded_and_deterministic(center, tmp_path):
    _, store = center
    a = nightly_report(store, NIGHT, tmp_path / "a")
    nightly_report(store, NIGHT, tmp_path / "b")
    for name in ("report.html", "summary.json", "correlations.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    page = (tmp_path / "a" / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "@import" not in page
    # sky, time, residuals, age, trends (no heartbeat in the night, no plan: not drawn)
    assert page.count('src="data:image/svg+xml;base64,') == 5
    assert "CALSPHERE 1" in page and "30 of 45 frames plate-solved (66.7 %)" in page
    assert "117726.58" not in page and "98765.4" in page
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["totals"] == a["totals"] and "tracklets" not in summary
    assert "117726.58" not in (tmp_path / "a" / "summary.json").read_text()
    with open(tmp_path / "a" / "correlations.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["correlated", "uncorrelated", "correlated"]
    assert rows[0]["name"] == "CALSPHERE 1" and rows[0]["rms_arcsec"] == "1.2"
    assert rows[0]["cross_track_arcsec"] == "-2.3" and rows[0]["time_offset_s"] == "0.0"
    assert rows == sorted(rows, key=lambda r: r["t_mid"])


def test_a_night_without_data_says_so(center, tmp_path):
    _, store = center
    out = nightly_report(store, "2020-11-05", tmp_path / "empty")
    assert out["totals"]["tracklets"] == 0
    page = (tmp_path / "empty" / "report.html").read_text()
    assert "No tracklets were received for the night of 2020-11-05" in page
    lines = (tmp_path / "empty" / "correlations.csv").read_text().splitlines()
    assert len(lines) == 1  # the header


def test_the_command(center, tmp_path, capsys):
    config, store = center
    toml = tmp_path / "center.toml"
    toml.write_text(f'[center]\ndata_dir = "{config.data_dir}"\n')
    out = tmp_path / "cmd"
    args = ["report", "nightly", "--night", NIGHT, "--config", str(toml), "--out", str(out)]
    # re-correlation comes first by default: every tracklet of the night has its result
    # from the newest suitable snapshot already
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "3 tracklets" in printed
    assert "0 tracklets re-correlated against snapshot 1" in printed
    assert main([*args, "--no-recorrelate"]) == 0
    assert "re-correlated" not in capsys.readouterr().out
    assert main([*args, "--no-recorrelate", "--workers", "2"]) == 2
    assert "not with --no-recorrelate" in capsys.readouterr().err
    assert main([*args, "--workers", "0"]) == 2
    assert "--workers 0: at least 1" in capsys.readouterr().err
    assert (out / "report.html").is_file() and (out / "correlations.csv").is_file()
    assert main(["report", "nightly", "--night", "2020-13-40", "--config", str(toml)]) == 2
    assert "2020-13-40" in capsys.readouterr().err
    assert datetime.fromisoformat(NIGHT)  # the date form the command takes
    from aposos.commands.report import _night

    assert _night("yesterday", today=date(2021, 1, 1)) == "2020-12-31"  # timers and cron


def beat(store, code: str, at: str, **fields):
    """A heartbeat as an agent sends it (its clock at ``at``), through the store."""
    body = {"station_time": at, "heartbeat_s": 60.0, **fields}
    store.record_heartbeat(code, outbox_backlog=fields.get("outbox_backlog"),
                           agent_version="test", body=body)  # fmt: skip


def night_of_heartbeats(store):
    """PER1's agent: counts before the night, then a night with one 20-minute silence."""
    beat(store, "PER1", "2020-10-01T23:00:00Z", frames_reduced=100, solve_rate=0.9,
         unsolved_reasons={"no stars": 10})  # fmt: skip
    minutes = [0, 1, 2, 3, 23, 24, 25]  # 3 -> 23: no heartbeat for 20 periods
    for k, m in enumerate(minutes):
        beat(store, "PER1", f"2020-10-02T20:{m:02d}:00Z", outbox_backlog=[0, 5, 9, 2, 30, 4, 0][k],
             frames_reduced=100 + 10 * (k + 1), solve_rate=(90 + 6 * (k + 1)) / (100 + 10 * (k + 1)),
             fwhm_arcsec=[2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2][k], limiting_mag=15.0 + 0.1 * k,
             sky_mag_arcsec2=20.5, quality_frames=10,
             unsolved_reasons={"no stars": 10 + k, "only N stars matched": 2 * k},
             last_error="frame 7: not a FITS file" if k >= 4 else None)  # fmt: skip


def test_each_station_night_from_its_heartbeats(center):
    _, store = center
    night_of_heartbeats(store)
    per1 = next(s for s in gather_night(store, NIGHT)["stations"] if s["code"] == "PER1")
    assert per1["heartbeats"] == 7 and per1["heartbeat_period_s"] == 60.0
    assert per1["first_heartbeat"] == "2020-10-02T20:00:00Z"  # the agent's clock, not 2026
    assert per1["gaps"] == [
        {"from": "2020-10-02T20:03:00Z", "to": "2020-10-02T20:23:00Z", "minutes": 20.0}
    ]
    assert (per1["backlog_max"], per1["backlog_end"]) == (30, 0)
    # the night's frames: 170 - 100 reduced, 132 - 90 solved, counted from the night before
    assert (per1["frames_reduced"], per1["frames_solved"], per1["solved_pct"]) == (70, 42, 60.0)
    assert per1["unsolved_reasons"] == {"only N stars matched": 12, "no stars": 6}
    assert (per1["fwhm_arcsec"], per1["limiting_mag"], per1["sky_mag_arcsec2"]) == (2.6, 15.3, 20.5)
    assert per1["errors"] == [{"first_seen": "2020-10-02T20:23:00Z",
                               "error": "frame 7: not a FITS file"}]  # fmt: skip


def test_no_gap_when_heartbeats_are_regular(center):
    _, store = center
    for m in (0, 2, 4, 6, 8, 13):  # a 2-minute period: 5 minutes is not yet 3 periods
        beat(store, "IRN1", f"2020-10-02T22:{m:02d}:00Z", outbox_backlog=0, heartbeat_s=120.0)
    irn1 = next(s for s in gather_night(store, NIGHT)["stations"] if s["code"] == "IRN1")
    assert irn1["heartbeats"] == 6 and irn1["gaps"] == []


def test_flags_stale_element_sets_and_manoeuvres(center):
    _, store = center
    r = gather_night(store, NIGHT)
    # the 3-object catalogue of 2020-09-30 is 2 days old at the night: under LEO's 3 days
    assert r["flags"]["stale"] == []
    from aposos.center.report_flags import flags

    def row(i, dt, xt, age=1.0, klass="LEO", status="correlated"):
        return {"tracklet_id": i, "station": "PER1", "t_mid": f"2020-10-02T20:{i:02d}:00Z",
                "status": status, "norad_id": 1000 + i, "name": f"SAT {i}",
                "orbit_class": klass, "elset_age_d": age, "time_offset_s": dt,
                "cross_track_arcsec": xt}  # fmt: skip

    rows = [row(i, 0.1 * (i % 3) - 0.1, 2.0 * (i % 4) - 3.0) for i in range(1, 20)]
    rows.append(row(30, 42.5, 1.0))  # 42.5 s late: far outside its class
    rows.append(row(31, 0.1, 2.0, age=12.3, klass="GEO"))  # GEO limit 10 d
    rows.append(row(32, 0.0, 0.0, age=3.5))  # LEO limit 3 d
    uct = [{"tracklet_id": 40, "station": "IRN1", "t_mid": "2020-10-02T21:00:00Z",
            "nearest": {"norad_id": 1005, "name": "SAT 5", "orbit_class": "LEO",
                        "time_offset_s": 95.2, "along_track_km": 701.3, "cross_track_km": 3.1}}]  # fmt: skip
    f = flags(rows, uct)
    assert [(s["norad_id"], s["age_d"], s["limit_d"]) for s in f["stale"]] == [
        (1031, 12.3, 10.0), (1032, 3.5, 3.0)]  # fmt: skip
    kinds = [(m["tracklet_id"], m["kind"]) for m in f["manoeuvres"]]
    assert kinds == [(30, "residual outside its class"),
                     (40, "nearest is an object seen tonight, tracklet rejected")]  # fmt: skip
    assert "time offset 42.5 s" in f["manoeuvres"][0]["why"]
    assert "701.3 km along" in f["manoeuvres"][1]["why"]


def test_plan_against_executed_and_trends(center, tmp_path):
    _, store = center
    night_of_heartbeats(store)

    def task(k, station):
        return Task(task_id=f"t{k}", station=station, start=f"2020-10-02T20:{k:02d}:00",
                    end=f"2020-10-02T20:{k + 1:02d}:00", kind="object", ra_deg=10.0 * k,
                    dec_deg=5.0, tracking="sidereal", exposure_s=2.0, frames=5, priority=100,
                    reason="catalogue upkeep", norad_id=900)  # fmt: skip

    tasks = [task(k, "PER1") for k in range(4)] + [task(10, "IRN1")]
    save_plan(store, SimpleNamespace(night=NIGHT, tasks=tasks, planned=[], summary=dict))
    report_task(store, "t0", TaskReport(status="executed", frames=5, tracklets=2))
    report_task(store, "t1", TaskReport(status="executed", frames=4, tracklets=1))
    report_task(store, "t2", TaskReport(status="skipped", reason="clouds"))
    r = gather_night(store, NIGHT)
    plan = {p["code"]: p for p in r["plan"]}
    assert plan["PER1"] == {
        "code": "PER1", "tasks": 4, "executed": 2, "skipped": 1, "failed": 0, "planned": 1,
        "frames_planned": 20, "frames_taken": 9, "tracklets_reported": 3, "executed_pct": 50.0,
    }  # fmt: skip
    assert plan["IRN1"]["planned"] == 1 and plan["IRN1"]["executed_pct"] == 0.0
    trend = {(t["night"], t["code"]): t for t in r["trends"]}
    assert trend[("2020-10-01", "PER1")]["tracklets"] == 1  # the night before
    assert trend[(NIGHT, "PER1")] == {"night": NIGHT, "code": "PER1", "tracklets": 2,
                                      "correlated_pct": 100.0, "solved_pct": 60.0}  # fmt: skip
    assert trend[(NIGHT, "IRN1")]["correlated_pct"] == 0.0
    nightly_report(store, NIGHT, tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    for words in ("Plan against executed", "Trends against previous nights", "Flags",
                  "1 gap: 20:03-20:23 (20.0 min)", "FWHM 2.6 arcsec",
                  "only N stars matched: 12", "frame 7: not a FITS file"):  # fmt: skip
        assert words in page
    # sky, time, residuals, age, heartbeats, plan, trends
    assert page.count('src="data:image/svg+xml;base64,') == 7


@pytest.mark.slow
def test_recorrelation_of_the_night_runs_on_a_dask_cluster(center):
    from dask.distributed import Client, LocalCluster, get_task_stream

    from aposos.center.recorrelate import recorrelate_night

    config, store = center
    config = replace(config, stations_dir=REPO / "stations")
    arc = passes("PER1", [900], np.datetime64("2020-10-02T12:00", "us"))[900]  # CALSPHERE 1
    (stored,) = store.ingest(None, [arc])
    lo, hi = datetime(2020, 10, 2, 12), datetime(2020, 10, 3, 12)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        with get_task_stream(client) as stream:
            done = recorrelate_night(store, config, lo, hi, client=client)
    assert done["on"] == "dask" and done["snapshot_id"] == 1 and done["queued"] == 1
    assert stream.data  # the correlation ran on the cluster's worker
    row = next(r for r in gather_night(store, NIGHT)["tracklets"] if r["uuid"] == arc.uuid)
    assert (row["status"], row["norad_id"], row["name"]) == ("correlated", 900, "CALSPHERE 1")
    # once done, the night is not queued again for the same snapshot
    assert recorrelate_night(store, config, lo, hi)["queued"] == 0
    assert stored.duplicate_of is None


def _chromium() -> str:
    """The path of Debian's chromium, installing it when missing; skips with the reason."""
    from system_packages import apt_install

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    why = apt_install("chromium")
    found = shutil.which("chromium")
    if why or not found:
        pytest.skip(why or "chromium installed but not on PATH")
    return found


@pytest.mark.slow
def test_the_page_prints_in_a_real_browser(center, tmp_path):
    _, store = center
    night_of_heartbeats(store)  # every section and figure on the page
    nightly_report(store, NIGHT, tmp_path / "r")
    browser = _chromium()
    page = (tmp_path / "r" / "report.html").resolve()
    figures = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page.read_text())
    assert len(figures) == 6  # sky, time, heartbeats, residuals, age, trends
    for data in figures:  # each figure is well-formed SVG
        root = ElementTree.fromstring(base64.b64decode(data))
        assert root.tag.endswith("svg")
    pdf, png = tmp_path / "report.pdf", tmp_path / "report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
              "--enable-logging=stderr", "--v=0"]  # fmt: skip
    for extra in ([f"--print-to-pdf={pdf}", "--no-pdf-header-footer"],
                  [f"--screenshot={png}", "--window-size=1200,3000"],
                  ["--dump-dom"]):  # fmt: skip
        done = subprocess.run(
            [*common, *extra, page.as_uri()], capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-2000:]
        console = [x for x in done.stderr.splitlines() if "CONSOLE" in x or "Uncaught" in x]
        assert console == [], console  # no console errors (nor any console message)
    assert done.stdout.count('class="figure"') == 6  # the figures are in the rendered page
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000  # text and the figures
    assert png.stat().st_size > 20_000  # the screenshot, kept in tmp_path as the artefact
