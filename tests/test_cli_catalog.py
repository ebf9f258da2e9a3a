"""``aposos catalog`` as a user runs it, cross-checked against skyfield (an outside authority)."""

import json
from pathlib import Path

import clirun
import numpy as np
import pytest
from shared_data import CATALOGUE_NEW as NEW

SITE = (33.674, 51.318, 3600.0)  # near the Iranian National Observatory
AT = "2020-10-02T17:00:00"


def aposos(*args):
    return clirun.run(*args)  # main(argv) in this process


def test_help_for_every_command():
    for args in (["--help"], ["catalog", "--help"], ["catalog", "predict", "--help"]):
        out = aposos(*args)
        assert out.returncode == 0 and "usage" in out.stdout


def test_info_lists_bad_records(tmp_path):
    lines = NEW.read_text().splitlines()[:9]
    lines[4] = lines[4][:40]  # truncate the second object's line 1
    path = tmp_path / "bad.3le"
    path.write_text("\n".join(lines) + "\n")
    out = aposos("catalog", "info", str(path))
    assert out.returncode == 0, out.stderr
    assert "2 objects" in out.stdout
    assert "line 5: truncated line 1" in out.stdout


def test_predict_matches_skyfield():
    import skyfield_data
    from skyfield.api import EarthSatellite, load, wgs84
    from skyfield.data import iers

    out = aposos(
        "catalog", "predict", str(NEW), "--site", ",".join(map(str, SITE)), "--at", AT,
        "--min-elevation", "20", "--format", "json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) > 20
    assert all(r["el_deg"] >= 20 for r in rows)

    # skyfield with the IERS polar motion of its own bundled finals2000A.all: at LEO
    # ranges the ~10 m it moves the station is worth arcseconds.
    finals = Path(skyfield_data.__file__).parent / "data" / "finals2000A.all"
    with open(finals, "rb") as fh:
        finals_data = iers.parse_x_y_dut1_from_finals_all(fh)
    ts = load.timescale(builtin=True)
    iers.install_polar_motion_table(ts, finals_data)
    t = ts.utc(2020, 10, 2, 17, 0, 0)
    topos = wgs84.latlon(SITE[0], SITE[1], elevation_m=SITE[2])
    lines = NEW.read_text().splitlines()
    by_id = {int(l1[2:7]): (l1, l2) for l1, l2 in zip(lines[1::3], lines[2::3])}
    one_arcsec = 1 / 3600
    worst = 0.0
    for row in rows[:15]:
        sat = EarthSatellite(*by_id[row["norad_id"]], ts=ts)
        alt, az, dist = (sat - topos).at(t).altaz()
        d_el = abs(alt.degrees - row["el_deg"])
        d_az = abs((az.degrees - row["az_deg"] + 180) % 360 - 180) * np.cos(np.radians(alt.degrees))
        worst = max(worst, d_el, d_az)
        assert abs(dist.km - row["range_km"]) < 0.01
    # Allow one arcsecond (UT1 tables of different issue dates) plus the printed 1e-4 deg.
    assert worst < one_arcsec + 1e-4


def test_bad_arguments_give_one_clear_line():
    out = aposos("catalog", "predict", str(NEW), "--site", "north", "--at", AT)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--site" in out.stderr
    out = aposos("catalog", "predict", "/nonexistent.tle", "--site", "1,2,3", "--at", AT)
    assert out.returncode == 2 and "no such file" in out.stderr
    out = aposos("catalog", "predict", str(NEW), "--site", "1,2,3", "--at", "yesterday")
    assert out.returncode == 2 and "--at" in out.stderr
    out = aposos("catalog", "predict", str(NEW), "--site", "1,2,3", "--at", "2026-11-22T00:00:00")
    assert out.returncode == 2 and "more than 30 days" in out.stderr


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_predict_formats(fmt):
    out = aposos(
        "catalog", "predict", str(NEW), "--site", ",".join(map(str, SITE)), "--at", AT,
        "--min-elevation", "60", "--format", fmt,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    if fmt == "csv":
        assert out.stdout.splitlines()[0].startswith("norad_id,name,ra_deg")
    else:
        assert "NORAD" in out.stdout
