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
import erfa
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
        timeutil.tt_minus_utc_s(np.full((2, 2), 2459123.5), 0.0)


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


# --------------------------------------------------------------- one time-input function
def test_every_kind_of_time_input_gives_the_same_split():
    import datetime as dt

    from skyfield.api import load

    ts = load.timescale(builtin=True)
    want_jd, want_fr = 2459124.5, (17 * 3600 + 0.25) / 86400.0  # 2020-10-02T17:00:00.25
    inputs = [
        (2459124.5, (17 * 3600 + 0.25) / 86400.0),
        (np.datetime64("2020-10-02T17:00:00.250", "ms"),),
        (np.datetime64("2020-10-02T17:00:00.250000000", "ns"),),
        (dt.datetime(2020, 10, 2, 17, 0, 0, 250000),),
        (dt.datetime(2020, 10, 2, 19, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2))),),
        ("2020-10-02T17:00:00.25",),
        ("2020-10-02T17:00:00.25Z",),
        ("2020-10-02 19:30:00.25+02:30",),
        ("2020-10-02T12:00:00.25-05:00",),
        (Time("2020-10-02T17:00:00.25", scale="utc"),),
        (Time("2020-10-02T17:00:00.25", scale="utc").tt,),
        (Time("2020-10-02T17:00:00.25", scale="utc").tai,),
        (ts.utc(2020, 10, 2, 17, 0, 0.25),),
    ]
    for args in inputs:
        jd, fr = timeutil.to_jd_fr(*args)
        error_s = ((jd - want_jd) + (fr - want_fr)) * 86400.0
        assert abs(error_s) < one_microsecond, (args, error_s)
    # One float holds a Julian date to about 40 microseconds only.
    jd, fr = timeutil.to_jd_fr(want_jd + want_fr)
    assert jd == want_jd and abs(fr - want_fr) * 86400.0 < 50e-6
    day = timeutil.to_jd_fr(dt.date(2020, 10, 2))
    assert (float(day[0]), float(day[1])) == (want_jd, 0.0)


def test_arrays_and_lists_keep_their_shape():
    iso = [["2020-10-02T17:00:00", "2020-10-02T18:00:00"], ["2021-01-01", "2021-01-02"]]
    jd, fr = timeutil.to_jd_fr(np.array(iso))
    assert jd.shape == fr.shape == (2, 2)
    jd64, fr64 = timeutil.to_jd_fr(np.array(iso, dtype="datetime64[us]"))
    assert np.array_equal(jd, jd64) and np.array_equal(fr, fr64)
    jd_list, _ = timeutil.to_jd_fr(iso[0])
    assert jd_list.shape == (2,)
    t = Time(np.array(iso, dtype="datetime64[us]"), scale="utc")
    jd_t, fr_t = timeutil.to_jd_fr(t)
    assert np.array_equal(jd_t, jd) and np.abs(fr_t - fr).max() * 86400.0 < one_microsecond
    assert timeutil.as_jd_fr("2020-10-02T17:00")[0].shape == (1,)


def test_conversions_agree_with_astropy_to_sub_microsecond():
    """Random times 1972-2099 with nanoseconds, as ISO text, datetime64 and astropy Time.

    astropy's UTC quasi-JD runs 86401 s on a leap-second day, so those days are left out
    here and tested apart below."""
    rng = np.random.default_rng(3)
    start = np.datetime64("1972-01-01T00:00:00", "ns").astype(np.int64)
    stop = np.datetime64("2099-12-31T00:00:00", "ns").astype(np.int64)
    ns = rng.integers(start, stop, size=2000)
    t64 = ns.astype("datetime64[ns]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)  # years past erfa's release + 5
        reference = Time(t64, scale="utc")
        tt, tai = reference.tt, reference.tai
    leap_days = np.isin(t64.astype("datetime64[D]"), _leap_second_days())
    iso = np.datetime_as_string(t64, unit="ns")
    for value in (t64, iso, reference, tt, tai):
        jd, fr = timeutil.to_jd_fr(value)
        error_s = ((jd - reference.jd1) + (fr - reference.jd2)) * 86400.0
        assert np.abs(error_s[~leap_days]).max() < one_microsecond, type(value)


def test_conversions_agree_with_skyfield_to_sub_microsecond():
    """skyfield Time (TT inside) against astropy's TT -> UTC and skyfield's own calendar."""
    from skyfield.api import load

    ts = load.timescale(builtin=True)
    rng = np.random.default_rng(4)
    whole = np.floor(rng.uniform(2441317.5, 2488000.5, size=1500)) + 0.5  # 1972-2099
    frac = rng.uniform(0.0, 1.0, size=whole.size)
    sky = ts.tt_jd(whole, frac)
    jd, fr = timeutil.to_jd_fr(sky)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        astropy_utc = Time(whole, frac, format="jd", scale="tt").utc
    day = np.floor(jd - 0.5).astype(np.int64) - 2440587  # days since 1970
    leap_days = np.isin(day.astype("datetime64[D]"), _leap_second_days())
    error_s = ((jd - astropy_utc.jd1) + (fr - astropy_utc.jd2)) * 86400.0
    assert np.abs(error_s[~leap_days]).max() < one_microsecond
    c = sky.utc
    seconds = c.hour * 3600.0 + c.minute * 60.0 + c.second
    assert np.abs(fr * 86400.0 - seconds)[c.second < 60].max() < one_microsecond


def _leap_second_days() -> np.ndarray:
    """UTC days that end in a leap second (from erfa's table)."""
    table = erfa.leap_seconds.get()
    days = (table["year"] - 1970).astype("datetime64[Y]").astype("datetime64[M]")
    starts = days + (table["month"] - 1).astype("timedelta64[M]")
    return starts.astype("datetime64[D]")[table["year"] >= 1972] - np.timedelta64(1, "D")


def test_a_leap_second_lands_on_the_next_midnight_in_every_form():
    from skyfield.api import load

    ts = load.timescale(builtin=True)
    want = (2457754.5, 0.5 / 86400.0)  # 2016-12-31T23:59:60.5 -> 2017-01-01T00:00:00.5
    for value in (
        "2016-12-31T23:59:60.5",
        Time("2016-12-31T23:59:60.5", scale="utc"),
        ts.utc(2016, 12, 31, 23, 59, 60.5),
    ):
        jd, fr = timeutil.to_jd_fr(value)
        assert abs(((jd - want[0]) + (fr - want[1])) * 86400.0) < one_microsecond, value
    jd, fr = timeutil.to_jd_fr(Time("2016-12-31T12:00:00", scale="utc"))  # astropy: 86401 s day
    assert (float(jd), float(fr)) == (2457753.5, 0.5)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((np.datetime64("2020-10-02T17:00"), 0), TypeError, "is a time, not a number of days"),
        ((np.array(["2020-10-02"], dtype="datetime64[D]"), 0.0), TypeError, "datetime64 array"),
        (("2020-10-02T17:00", 0.0), TypeError, "is a time, not a number of days"),
        ((["1", "x"], 0.0), TypeError, "is not a number of days"),
        ((object(),), TypeError, "is not a time"),
        ((np.array([True]),), TypeError, "is not a time"),
        ((26694300.0, 0.0), ValueError, "between 1900 and 2100.*datetime64 cast"),
        ((59124.5, 0.25), ValueError, "between 1900 and 2100.*an MJD"),
        ((1601658000.0,), ValueError, "between 1900 and 2100.*Unix time"),
        (([2459125.5, np.nan], [0.0, 0.0]), ValueError, "time 1 is not finite"),
        ((np.inf, 0.0), ValueError, "not finite"),
        (("2300-01-01T00:00",), ValueError, "2300-01-01T00:00:00 is not a UTC date between"),
        ((np.datetime64("1899-12-31T23:59:59"),), ValueError, "between 1900 and 2100"),
        ((np.datetime64("NaT"),), ValueError, "NaT is not a time"),
        ((["2020-10-02", "yesterday"],), ValueError, "'yesterday' is not an ISO 8601"),
        ((np.array(["2020-10-02", "25000-01-01"], dtype="datetime64[D]"),), ValueError, "time 1"),
        ((Time(2500000.5, format="jd", scale="utc"),), ValueError, "between 1900 and 2100"),
    ],
)
def test_absurd_times_are_refused_with_one_line_naming_them(args, error, match):
    with pytest.raises(error, match=match) as info:
        timeutil.to_jd_fr(*args)
    assert "\n" not in str(info.value)
