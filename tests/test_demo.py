"""``aposos demo`` end to end: stations simulate and reduce, a real center correlates, report."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_night_ends_in_a_report(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "aposos", "demo", "--out", str(out), "--minutes", "2"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "nightly-report.json").read_text())
    totals = report["totals"]
    assert totals["tracklets"] >= 3
    assert totals["pending"] == 0
    assert totals["correlated"] >= 1
    assert {s["code"] for s in report["stations"]} == {"IRN1", "PAK1", "PER1"}
    html = (out / "nightly-report.html").read_text()
    assert "APOSOS nightly report" in html and f"{totals['tracklets']} tracklets" in html
    # the report from the center database (aposos report nightly) agrees with the API's
    nightly = json.loads((out / "report" / "summary.json").read_text())
    for key in ("tracklets", "correlated", "ambiguous", "uncorrelated"):
        assert nightly["totals"][key] == totals[key], key
    assert (out / "report" / "report.html").is_file()
    assert (out / "report" / "correlations.csv").is_file()
