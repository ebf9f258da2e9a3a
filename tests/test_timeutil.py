"""aposos.timeutil against astropy's Time scales and IERS tables (the outside authority)."""

from __future__ import annotations

import functools
import gc
import logging
import subprocess
import sys
import threading
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import astropy_iers_data
import numpy as np
import pytest
from astropy.time import Time
from astropy.utils import iers

from aposos import timeutil
from aposos.model import datetime64_to_jd_fr

one_microsecond = 1e-6
one_microarcsec_rad = np.radians(1e-6 / 3600.0)


def utc(isot) -> tuple[np.ndarray, np.ndarray]:
    """UTC (jd, fr) split of ISO times, days of 86400 s as python-sgp4 and datetime64 count."""
    return datetime64_to_jd_fr(np.array(isot, dtype="datetime64[us]"))


def astropy_offset_s(jd, fr, scale: str) -> np.ndarray:
    """(scale - UTC) in seconds from astropy Time (not on leap-second days, where astropy's
    quasi-JD runs 86401 s to the day)."""
    t = Time(jd, fr, format="jd", scale="utc")
    other = getattr(t, scale)
    return ((other.jd1 - t.jd1) + (other.jd2 - t.jd2)) * 86400.0


@pytest.fixture
def fresh_iers_table():
    """Load the bundled IERS-A file through refresh_iers (re-arms the one-time warnings)."""
    coverage = timeutil.refresh_iers(astropy_iers_data.IERS_A_FILE)
    yield coverage
    iers.earth_orientation_table.set(None)


SPREAD = [
    "1975-03-01T06:00:00",
    "1999-12-31T23:59:00",
    "2016-12-30T12:00:00",
    "2017-01-01T06:00:00",  # UT1-UTC stepped by 1 s at the leap second before
    "2020-09-30T21:19:17.5",
    "2020-10-02T03:00:00",
    "2024-02-29T12:34:56",
]
LEAP_SECOND_DAYS = ["2016-12-31T12:00:00", "2016-12-31T23:59:59", "2015-06-30T18:00:00"]


def test_configure_offline_is_idempotent_and_offline():
    from astropy.utils import data

    timeutil.configure_offline()
    timeutil.configure_offline()
    assert iers.conf.auto_download is False
    assert iers.conf.auto_max_age is None
    assert data.conf.allow_internet is False


def test_import_has_no_side_effects():
    code = (
        "import sys, aposos.timeutil, aposos.orbit.frames; "
        "print('astropy' in sys.modules, aposos.timeutil._configured)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_ut1_minus_utc_matches_astropy():
    jd, fr = utc(SPREAD)
    ours = timeutil.ut1_minus_utc_s(jd, fr)
    assert np.abs(ours - astropy_offset_s(jd, fr, "ut1")).max() < one_microsecond


def test_tt_minus_utc_matches_astropy_across_leap_seconds():
    jd, fr = utc(SPREAD + ["1972-01-01T00:00:01", "2015-06-29T12:00:00", "2015-07-01T12:00:00"])
    ours = timeutil.tt_minus_utc_s(jd, fr)
    assert np.abs(ours - astropy_offset_s(jd, fr, "tt")).max() < one_microsecond
    before, after = timeutil.tt_minus_utc_s(*utc(["2016-12-31T12:00:00", "2017-01-01T12:00:00"]))
    assert (before, after) == (68.184, 69.184)


def test_polar_motion_matches_astropy_table():
    jd, fr = utc(SPREAD)
    xp, yp = timeutil.polar_motion_rad(jd, fr)
    xp_ref, yp_ref = iers.earth_orientation_table.get().pm_xy(jd, fr)
    assert np.abs(xp - xp_ref.to_value("rad")).max() < one_microarcsec_rad
    assert np.abs(yp - yp_ref.to_value("rad")).max() < one_microarcsec_rad
    assert 0.0 < np.abs(xp).max() < np.radians(1.0 / 3600.0)  # polar motion is ~0.1-0.5"


def test_split_conversions_match_astropy_time_also_on_leap_second_days():
    jd, fr = utc(SPREAD + LEAP_SECOND_DAYS)
    t = Time(SPREAD + LEAP_SECOND_DAYS, scale="utc")  # instants named unambiguously
    for convert, scale in ((timeutil.utc_to_ut1, "ut1"), (timeutil.utc_to_tt, "tt")):
        jd2, fr2 = convert(jd, fr)
        assert np.array_equal(jd2, jd)
        reference = getattr(t, scale)
        error_s = ((jd2 - reference.jd1) + (fr2 - reference.jd2)) * 86400.0
        assert np.abs(error_s).max() < one_microsecond


def test_scalars_broadcast_and_bad_times_are_named():
    assert timeutil.tt_minus_utc_s(2459123.5, 0.25).shape == (1,)
    assert timeutil.ut1_minus_utc_s(2459123.5, [0.1, 0.2]).shape == (2,)
    with pytest.raises(ValueError, match=r"time 1 is not finite"):
        timeutil.ut1_minus_utc_s([2459123.5, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError, match="before 1960"):
        timeutil.tt_minus_utc_s(2436000.5, 0.0)
    with pytest.raises(ValueError, match="1-D"):
        timeutil.tt_minus_utc_s(np.zeros((2, 2)), 0.0)


def test_predicted_times_compute_and_warn_once(fresh_iers_table, caplog):
    coverage = fresh_iers_table
    assert coverage.last_measured_mjd < coverage.last_mjd
    mjd = coverage.last_measured_mjd + 45.0  # inside the predictions, > 30 days past measured
    jd, fr = np.array([2400000.5 + mjd, 2400000.5 + mjd + 1.0]), np.array([0.25, 0.75])
    with caplog.at_level(logging.WARNING, logger="aposos.timeutil"):
        first = timeutil.ut1_minus_utc_s(jd, fr)
        timeutil.ut1_minus_utc_s(jd, fr)
        timeutil.polar_motion_rad(jd, fr)
    warned = [r for r in caplog.records if r.name == "aposos.timeutil"]
    assert len(warned) == 1 and "predictions" in warned[0].getMessage()
    # astropy itself (auto_max_age=None, as configure_offline sets) agrees.
    assert np.abs(first - astropy_offset_s(jd, fr, "ut1")).max() < one_microsecond


def test_beyond_the_predictions_holds_last_values_and_warns_once(fresh_iers_table, caplog):
    coverage = fresh_iers_table
    jd = np.array([2400000.5 + coverage.last_mjd + 10.0, 2400000.5 + coverage.last_mjd + 20.0])
    with caplog.at_level(logging.WARNING, logger="aposos.timeutil"):
        held = timeutil.ut1_minus_utc_s(jd, 0.5)
        timeutil.ut1_minus_utc_s(jd, 0.5)
    messages = [r.getMessage() for r in caplog.records if r.name == "aposos.timeutil"]
    assert sum("past the end of the IERS predictions" in m for m in messages) == 1
    assert held[0] == held[1]
    assert np.abs(held - astropy_offset_s(jd, np.full(2, 0.5), "ut1")).max() < one_microsecond


def test_refresh_iers_reads_a_local_file_offline(fresh_iers_table):
    coverage = fresh_iers_table
    assert coverage.source == astropy_iers_data.IERS_A_FILE
    assert coverage.first_mjd < 50000.0 < coverage.last_measured_mjd
    assert str(coverage).startswith("IERS table")
    assert timeutil.iers_coverage() == coverage


def test_refresh_iers_rejects_missing_and_garbage_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-file"):
        timeutil.refresh_iers(tmp_path / "no-such-file.all")
    garbage = tmp_path / "finals2000A.all"
    garbage.write_text("this is not an IERS table\n")
    with pytest.raises(ValueError, match="finals2000A.all"):
        timeutil.refresh_iers(garbage)
    # The table in use is untouched.
    assert timeutil.iers_coverage().source != str(garbage)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_refresh_iers_fetches_a_url_from_a_real_http_server():
    folder = Path(astropy_iers_data.IERS_A_FILE).parent
    handler = functools.partial(QuietHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/finals2000A.all"
            coverage = timeutil.refresh_iers(url, timeout_s=10.0)
            with pytest.raises(ValueError, match="cannot fetch"):
                timeutil.refresh_iers(url.replace("finals2000A.all", "missing.all"))
            with warnings.catch_warnings():
                # urllib's HTTPError keeps the 404 response's socket until collected.
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
        finally:
            server.shutdown()
            iers.earth_orientation_table.set(None)
    assert coverage.source == url
    from astropy.utils import data

    assert data.conf.allow_internet is False  # closed again after the fetch
