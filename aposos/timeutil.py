"""Time inputs and time scales: any UTC time -> (jd, fr); UTC -> UT1, TT; offline IERS tables.

Every public function that takes a time goes through :func:`to_jd_fr`, which accepts
``(jd, fr)`` numbers, ``datetime64``, ``datetime``, ISO strings, astropy and skyfield times,
and refuses what is not a UTC date between 1900 and 2100 with one line naming the value.

Times travel as ``(jd, fr)``: the UTC Julian date split as python-sgp4 takes it (``jd`` a
whole day ending in .5, ``fr`` the fraction of the day, days of 86400 s as datetime64 counts
them; on a day that ends with a leap second astropy's quasi-JD differs by up to 1 s). Outputs
keep ``jd`` and move the offset into ``fr``, which keeps the split's precision.

Earth orientation comes from the IERS tables that ship in ``astropy-iers-data`` (the
``finals2000A.all`` IERS-A file, about a year of predictions after the last measured day,
merged by astropy with the IERS-B series). astropy is set never to download
(:func:`configure_offline`); an operator with a network, or a fresher file copied by hand,
loads new tables with :func:`refresh_iers`.

Beyond the measured range we use the IERS predictions deliberately (astropy itself refuses
them once the bundled file is more than ``auto_max_age`` = 30 days old), and say so once
through the ``aposos.timeutil`` logger:

- more than 30 days after the last measured value: predicted UT1 errors grow to a few ms
  after a month and some tens of ms after a year (1 ms of UT1 moves a station 0.46 m);
- past the end of the predictions, or before the table starts: the end values are held;
- past the expiry of the leap-second table: no further leap second is assumed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

__all__ = [
    "JD_MAX",
    "JD_MIN",
    "IersCoverage",
    "as_jd_fr",
    "configure_offline",
    "iers_coverage",
    "polar_motion_rad",
    "refresh_iers",
    "to_jd_fr",
    "tt_minus_utc_s",
    "ut1_minus_utc_s",
    "utc_to_tt",
    "utc_to_ut1",
]

logger = logging.getLogger(__name__)

MJD_ZERO = 2400000.5
SECONDS_PER_DAY = 86400.0
TT_MINUS_TAI_S = 32.184
ARCSEC_TO_RAD = np.pi / (180.0 * 3600.0)
PREDICTION_GRACE_DAYS = 30.0

_lock = threading.Lock()
_configured = False


def configure_offline() -> None:
    """Set astropy never to touch the network and to use the bundled IERS tables.

    Idempotent and cheap after the first call. Our functions that need Earth orientation
    call it themselves; nothing happens at import time. Sets
    ``iers.conf.auto_download = False`` (bundled ``astropy-iers-data`` tables),
    ``iers.conf.auto_max_age = None`` (use the predictions however old the file is; we warn
    ourselves), ``iers.conf.remote_timeout = 0`` and
    ``astropy.utils.data.conf.allow_internet = False``, and loads the bundled leap-second
    table into erfa.
    """
    global _configured
    if _configured:
        return
    with _lock:
        if _configured:
            return
        from astropy.time import update_leap_seconds
        from astropy.utils import data, iers

        iers.conf.auto_download = False
        iers.conf.auto_max_age = None
        iers.conf.remote_timeout = 0.0
        data.conf.allow_internet = False
        update_leap_seconds()
        _configured = True


@dataclass(frozen=True)
class IersCoverage:
    """What the Earth-orientation table in use covers (MJD, UTC)."""

    source: str
    first_mjd: float
    last_measured_mjd: float
    last_mjd: float
    leap_seconds_expire_mjd: float

    def __str__(self) -> str:
        return (
            f"IERS table {self.source}: MJD {self.first_mjd:.0f}..{self.last_mjd:.0f}, "
            f"measured to MJD {self.last_measured_mjd:.0f} ({_mjd_to_date(self.last_measured_mjd)}),"
            f" predicted to {_mjd_to_date(self.last_mjd)}; leap seconds known to "
            f"{_mjd_to_date(self.leap_seconds_expire_mjd)}"
        )


@dataclass
class _EopArrays:
    """Plain arrays of the astropy table in use, and the warnings already given for it."""

    table_id: int
    coverage: IersCoverage
    mjd: np.ndarray
    ut1_utc_s: np.ndarray
    xp_arcsec: np.ndarray
    yp_arcsec: np.ndarray
    warned: set[str] = field(default_factory=set)


_eop: _EopArrays | None = None


def _mjd_to_date(mjd: float) -> str:
    return str(np.datetime64("1858-11-17") + np.timedelta64(int(np.floor(mjd)), "D"))


def _leap_seconds_expire_mjd() -> float:
    import erfa

    expires = np.datetime64(erfa.leap_seconds.expires, "D")
    return float((expires - np.datetime64("1858-11-17", "D")).astype(np.int64))


def _eop_arrays() -> _EopArrays:
    """The current astropy Earth-orientation table as numpy arrays (rebuilt if replaced)."""
    global _eop
    configure_offline()
    from astropy.utils import iers

    table = iers.earth_orientation_table.get()
    eop = _eop
    if eop is not None and eop.table_id == id(table):
        return eop
    with _lock:
        if _eop is not None and _eop.table_id == id(table):
            return _eop
        mjd = np.asarray(table["MJD"].to_value("d"), dtype=np.float64)
        p_index = int(table.meta.get("predictive_index", len(mjd)))
        last_measured = mjd[max(p_index - 1, 0)]
        source = str(table.meta.get("data_path", type(table).__name__))
        coverage = IersCoverage(
            source=source,
            first_mjd=float(mjd[0]),
            last_measured_mjd=float(last_measured),
            last_mjd=float(mjd[-1]),
            leap_seconds_expire_mjd=_leap_seconds_expire_mjd(),
        )
        _eop = _EopArrays(
            table_id=id(table),
            coverage=coverage,
            mjd=mjd,
            ut1_utc_s=np.asarray(table["UT1_UTC"].to_value("s"), dtype=np.float64),
            xp_arcsec=np.asarray(table["PM_x"].to_value("arcsec"), dtype=np.float64),
            yp_arcsec=np.asarray(table["PM_y"].to_value("arcsec"), dtype=np.float64),
        )
        return _eop


def iers_coverage() -> IersCoverage:
    """The span of the Earth-orientation table in use (measured and predicted)."""
    return _eop_arrays().coverage


def refresh_iers(path_or_url: str | os.PathLike, *, timeout_s: float = 30.0) -> IersCoverage:
    """Load a fresh IERS-A table (``finals2000A.all`` / ``finals2000A.data`` format).

    A local path works offline. A URL is fetched with astropy (network allowed for this call
    only, ``timeout_s`` seconds). The table replaces astropy's Earth-orientation table for
    this process, so astropy ``Time`` and our functions agree; the one-time warnings are
    re-armed for it.

    Returns
    -------
    IersCoverage
        The span of the new table.

    Raises
    ------
    FileNotFoundError
        The local file does not exist.
    ValueError
        The file could not be fetched or read as an IERS-A table (the message names it).
    """
    configure_offline()
    from astropy.utils import data, iers

    name = os.fspath(path_or_url)
    downloaded = urlparse(name).scheme in ("http", "https", "ftp")
    if downloaded:
        with data.conf.set_temp("allow_internet", True):
            try:
                local = data.download_file(name, cache=False, timeout=timeout_s)
            except Exception as exc:
                raise ValueError(f"cannot fetch IERS table {name!r}: {exc}") from exc
    else:
        local = name
        if not os.path.isfile(local):
            raise FileNotFoundError(f"IERS table {local!r} does not exist")
    try:
        table = iers.IERS_Auto.read(local)
    except Exception as exc:
        raise ValueError(f"cannot read {name!r} as an IERS-A finals2000A table: {exc}") from exc
    finally:
        if downloaded:
            os.remove(local)
    if len(table) == 0:
        raise ValueError(f"IERS table {name!r} holds no usable rows")
    table.meta["data_path"] = name
    iers.earth_orientation_table.set(table)
    coverage = _eop_arrays().coverage
    logger.info("loaded %s", coverage)
    return coverage


# ---------------------------------------------------------------------------- time inputs
# Outside these dates a "time" is a mistake (an MJD, a Unix time, a datetime64 cast to a
# number): SGP4 elements exist from 1957, and the resonance integrator steps 720 min at a time.
JD_MIN = 2415020.5  # 1900-01-01T00:00 UTC
JD_MAX = 2488069.5  # 2100-01-01T00:00 UTC
UNIX_EPOCH_JD = 2440587.5
_NS_PER_DAY = 86_400 * 10**9
_OFFSET = re.compile(r"^(.+[T ]\d\d(?::\d\d(?::\d\d(?:\.\d*)?)?)?)([+-])(\d\d):?(\d\d)$")
_LEAP_SECOND = re.compile(r":60(?=(\.\d*)?$)")


def to_jd_fr(time, fr=None) -> tuple[np.ndarray, np.ndarray]:
    """Any UTC time input as a checked ``(jd, fr)`` split: float64 arrays of the input's shape.

    Takes, alone or as an array or list of one kind:

    - ``(jd, fr)`` numbers: the UTC Julian date split as python-sgp4 takes it (kept as given;
      a scalar broadcasts against an array);
    - a number alone: a whole UTC Julian date (split here into ``jd`` ending in .5 and ``fr``);
    - numpy ``datetime64`` of any unit, ``datetime.datetime`` (naive is UTC, aware is
      converted) and ``datetime.date``;
    - ISO 8601 strings (``"2020-10-02T17:00:00.25"``, a ``Z`` or ``+hh:mm`` suffix, ``"now"``);
    - astropy ``Time`` of any scale, skyfield ``Time``.

    Days have 86400 s, as ``datetime64`` counts them; a leap second ``23:59:60.x`` lands on
    the next day's ``00:00:00.x``, as POSIX clocks count it.

    Raises ``TypeError`` for what is not a time (a ``datetime64`` given with ``fr``, text in
    ``jd``), ``ValueError`` for a time that is not finite or not between 1900 and 2100; the
    one-line message names the first bad value.

    Examples
    --------
    >>> to_jd_fr("2020-10-02T18:00:00Z")
    (array(2459124.5), array(0.75))
    >>> to_jd_fr(2459124.5, [0.25, 0.75])[1]
    array([0.25, 0.75])
    """
    if fr is not None:
        jd_num = _days(time, "jd")
        fr_num = _days(fr, "fr")
        jd_num, fr_num = np.broadcast_arrays(jd_num, fr_num)
        return _checked(jd_num.astype(np.float64), fr_num.astype(np.float64))
    if _is_astropy_time(time):
        return _from_astropy(time)
    if _is_skyfield_time(time):
        return _from_skyfield(time)
    if isinstance(time, (str, dt.date, np.datetime64)):
        return _from_datetime64(_datetime64_of(time))
    values = np.asarray(time) if not isinstance(time, np.ndarray) else time
    kind = values.dtype.kind
    if kind == "M":
        return _from_datetime64(values)
    if kind in "fiu":
        whole = np.floor(values.astype(np.float64) - 0.5) + 0.5
        return _checked(whole, values - whole)
    if kind in "US" or (kind == "O" and values.ndim > 0):
        parts = [to_jd_fr(str(v) if kind in "US" else v) for v in values.ravel()]
        jd = np.array([p[0] for p in parts], dtype=np.float64).reshape(values.shape)
        fr_out = np.array([p[1] for p in parts], dtype=np.float64).reshape(values.shape)
        return jd, fr_out
    raise TypeError(f"{_short(time)} is not a time (give jd, fr numbers, datetime64, ISO text)")


def as_jd_fr(jd, fr=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`to_jd_fr` as 1-D contiguous arrays of one length (scalars become length 1)."""
    jd, fr = to_jd_fr(jd, fr)
    jd = np.atleast_1d(jd)
    fr = np.atleast_1d(fr)
    if jd.ndim != 1:
        raise ValueError(f"times must be 1-D; got shape {jd.shape}")
    return np.ascontiguousarray(jd), np.ascontiguousarray(fr)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_astropy_time(value) -> bool:
    return type(value).__module__.startswith("astropy.time") and hasattr(value, "jd1")


def _is_skyfield_time(value) -> bool:
    return type(value).__module__.startswith("skyfield") and hasattr(value, "tt_fraction")


def _days(value, name: str) -> np.ndarray:
    """A number of days (part of a Julian date split), or TypeError naming the value."""
    time_like = isinstance(value, (str, dt.date, np.datetime64))
    if time_like or _is_astropy_time(value) or _is_skyfield_time(value):
        raise TypeError(
            f"{name}={_short(value)} is a time, not a number of days: pass the time alone, "
            "without fr"
        )
    values = np.asarray(value)
    if values.dtype.kind in "fiu":
        return values
    if values.dtype.kind == "M":
        raise TypeError(
            f"{name} is a datetime64 array, not a number of days: pass the times alone, without fr"
        )
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}={_short(value)} is not a number of days (a UTC Julian date split as jd, fr)"
        ) from None


def _checked(jd: np.ndarray, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = jd + fr
    finite = np.isfinite(total)
    bad = ~finite | (total < JD_MIN) | (total >= JD_MAX)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        j, f, x = float(jd.ravel()[i]), float(fr.ravel()[i]), float(total.ravel()[i])
        where = f"time {i}" if total.ndim else "time"
        if not finite.ravel()[i]:
            raise ValueError(f"{where} is not finite: jd={j!r}, fr={f!r}")
        hint = ""
        if 0.0 <= x < 100_000.0:
            hint = " (an MJD? add 2400000.5)"
        elif x > 1.0e7:
            hint = " (a Unix time, or a datetime64 cast to a number? pass the time itself)"
        raise ValueError(
            f"{where} is not a UTC Julian date between 1900 and 2100: jd={j!r}, fr={f!r}{hint}"
        )
    return np.asarray(jd), np.asarray(fr)


def _datetime64_of(value) -> np.datetime64:
    """One datetime64 from a str, date or datetime64 (nanoseconds kept)."""
    if isinstance(value, np.datetime64):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return np.datetime64(value.replace(tzinfo=None), "us")
    if isinstance(value, dt.date):
        return np.datetime64(value, "D")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1]
    offset = np.timedelta64(0, "m")
    match = _OFFSET.match(text)
    if match:
        text, sign, hours, minutes = match.groups()
        offset = np.timedelta64(int(hours) * 60 + int(minutes), "m") * (1 if sign == "+" else -1)
    text, leap = _LEAP_SECOND.subn(":59", text)
    try:
        t = np.datetime64(text)
    except ValueError:
        t = np.datetime64("NaT")
    if np.isnat(t):
        raise ValueError(f"{value!r} is not an ISO 8601 UTC time (e.g. 2020-10-02T17:00:00Z)")
    return t - offset + np.timedelta64(leap, "s")


def _from_datetime64(t) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t)
    flat = t.ravel()
    nat = np.isnat(flat)
    # The year, cast down (never overflows), is checked before the cast to nanoseconds.
    year = flat.astype("datetime64[Y]").astype(np.int64) + 1970
    bad = nat | (year < 1900) | (year >= 2100)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f"time {i} ({flat[i]})" if t.ndim else f"time {flat[i]}"
        if nat[i]:
            raise ValueError(f"{where} is not a time")
        raise ValueError(f"{where} is not a UTC date between 1900 and 2100")
    ns = t.astype("datetime64[ns]").astype(np.int64)
    days, rem = np.divmod(ns, _NS_PER_DAY)
    jd = np.asarray(UNIX_EPOCH_JD + days.astype(np.float64))
    return jd, np.asarray(rem.astype(np.float64) / _NS_PER_DAY)


def _from_calendar(year, month, day, seconds_of_day) -> tuple[np.ndarray, np.ndarray]:
    """(jd at midnight, fr) from a UTC calendar date and seconds (86400 s days, 60 s leap)."""
    import erfa

    as_int = [np.asarray(x).astype(np.int32) for x in (year, month, day)]
    djm0, djm = erfa.cal2jd(*as_int)
    jd = np.asarray(djm0 + djm, dtype=np.float64)
    fr = np.asarray(seconds_of_day, dtype=np.float64) / 86400.0
    carry = np.floor(fr)  # a leap second runs past midnight
    return _checked(jd + carry, fr - carry)


def _from_astropy(time) -> tuple[np.ndarray, np.ndarray]:
    import erfa

    configure_offline()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", erfa.ErfaWarning)  # "dubious year": checked below
            utc = time.utc
    except Exception as exc:
        raise ValueError(f"astropy time {_short(time)} has no UTC: {exc}") from None
    jd1 = np.asarray(utc.jd1, dtype=np.float64)
    jd2 = np.asarray(utc.jd2, dtype=np.float64)
    _checked(jd1, jd2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)  # "dubious year": checked above
        year, month, day, hmsf = erfa.d2dtf("UTC", 9, jd1, jd2)
    seconds = hmsf["h"] * 3600 + hmsf["m"] * 60 + hmsf["s"] + hmsf["f"] * 1e-9
    return _from_calendar(year, month, day, seconds)


def _from_skyfield(time) -> tuple[np.ndarray, np.ndarray]:
    c = time.utc  # skyfield's own leap-second table; a leap second has second >= 60
    seconds = np.asarray(c.hour) * 3600.0 + np.asarray(c.minute) * 60.0 + np.asarray(c.second)
    return _from_calendar(c.year, c.month, c.day, seconds)


def _warn_once(eop: _EopArrays, key: str, message: str, *args) -> None:
    if key not in eop.warned:
        eop.warned.add(key)
        logger.warning(message, *args)


def _check_range(eop: _EopArrays, mjd: np.ndarray) -> None:
    if mjd.size == 0:
        return
    cov = eop.coverage
    latest = float(mjd.max())
    if latest > cov.last_mjd:
        _warn_once(
            eop,
            "beyond",
            "UTC %s is past the end of the IERS predictions (%s): holding the last "
            "UT1-UTC and polar motion; load a fresh table with aposos.timeutil.refresh_iers()",
            _mjd_to_date(latest),
            _mjd_to_date(cov.last_mjd),
        )
    elif latest > cov.last_measured_mjd + PREDICTION_GRACE_DAYS:
        _warn_once(
            eop,
            "predicted",
            "UTC %s is %.0f days past the last measured IERS value (%s): using IERS "
            "predictions (UT1 good to a few ms after a month, tens of ms after a year); "
            "load a fresh table with aposos.timeutil.refresh_iers()",
            _mjd_to_date(latest),
            latest - cov.last_measured_mjd,
            _mjd_to_date(cov.last_measured_mjd),
        )
    if float(mjd.min()) < cov.first_mjd:
        _warn_once(
            eop,
            "before",
            "UTC %s is before the IERS table starts (%s): holding the first values",
            _mjd_to_date(float(mjd.min())),
            _mjd_to_date(cov.first_mjd),
        )


def _interpolate(eop: _EopArrays, jd: np.ndarray, fr: np.ndarray, columns, unwrap_leap):
    """Linear interpolation in the daily table (astropy's scheme), end values held."""
    mjd_day = np.floor(jd - MJD_ZERO + fr)
    day_frac = jd - (MJD_ZERO + mjd_day) + fr
    _check_range(eop, mjd_day + day_frac)
    n = len(eop.mjd)
    i = np.searchsorted(eop.mjd, mjd_day, side="right")
    i1 = np.clip(i, 1, n - 1)
    i0 = i1 - 1
    weight = (mjd_day - eop.mjd[i0] + day_frac) / (eop.mjd[i1] - eop.mjd[i0])
    out = []
    for values, unwrap in zip(columns, unwrap_leap, strict=True):
        step = values[i1] - values[i0]
        if unwrap:
            step = step - np.round(step)  # a leap second jumps UT1-UTC by 1 s
        value = values[i0] + weight * step
        value[i == 0] = values[0]
        value[i == n] = values[-1]
        out.append(value)
    return out


def ut1_minus_utc_s(jd, fr) -> np.ndarray:
    """UT1 - UTC in seconds at UTC ``(jd, fr)``, from the IERS table in use.

    Examples
    --------
    >>> float(ut1_minus_utc_s(2459123.5, 0.5)[0])  # doctest: +ELLIPSIS
    -0.17...
    """
    jd, fr = as_jd_fr(jd, fr)
    eop = _eop_arrays()
    (dut1,) = _interpolate(eop, jd, fr, [eop.ut1_utc_s], [True])
    return dut1


def polar_motion_rad(jd, fr) -> tuple[np.ndarray, np.ndarray]:
    """Polar motion ``(xp, yp)`` in radians at UTC ``(jd, fr)``, from the IERS table in use."""
    jd, fr = as_jd_fr(jd, fr)
    eop = _eop_arrays()
    xp, yp = _interpolate(eop, jd, fr, [eop.xp_arcsec, eop.yp_arcsec], [False, False])
    return xp * ARCSEC_TO_RAD, yp * ARCSEC_TO_RAD


def tt_minus_utc_s(jd, fr) -> np.ndarray:
    """TT - UTC in seconds (leap seconds from erfa's table, plus 32.184 s).

    Raises ``ValueError`` for times before 1960 (UTC undefined).
    """
    import erfa

    jd, fr = as_jd_fr(jd, fr)
    configure_offline()
    if jd.size == 0:
        return np.empty(0)
    expire_mjd = _leap_seconds_expire_mjd()
    latest = float(np.max(jd - MJD_ZERO + fr))
    if latest > expire_mjd:
        _warn_once(
            _eop_arrays(),
            "leap",
            "UTC %s is past the expiry of the leap-second table (%s): assuming no further "
            "leap second",
            _mjd_to_date(latest),
            _mjd_to_date(expire_mjd),
        )
    year, month, day, day_frac = erfa.jd2cal(jd, fr)
    too_early = year < 1960
    if too_early.any():
        i = int(np.flatnonzero(too_early)[0])
        raise ValueError(f"time {i} (jd={jd[i]!r}, fr={fr[i]!r}) is before 1960: UTC undefined")
    with warnings.catch_warnings():
        # erfa calls years past its release + 5 "dubious"; the expiry is handled above.
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        tai_minus_utc = erfa.dat(year, month, day, day_frac)
    return np.asarray(tai_minus_utc, dtype=np.float64) + TT_MINUS_TAI_S


def utc_to_ut1(jd, fr) -> tuple[np.ndarray, np.ndarray]:
    """The UT1 ``(jd, fr)`` split of UTC ``(jd, fr)`` (``jd`` kept, offset added to ``fr``)."""
    jd, fr = as_jd_fr(jd, fr)
    return jd.copy(), fr + ut1_minus_utc_s(jd, fr) / SECONDS_PER_DAY


def utc_to_tt(jd, fr) -> tuple[np.ndarray, np.ndarray]:
    """The TT ``(jd, fr)`` split of UTC ``(jd, fr)`` (``jd`` kept, offset added to ``fr``)."""
    jd, fr = as_jd_fr(jd, fr)
    return jd.copy(), fr + tt_minus_utc_s(jd, fr) / SECONDS_PER_DAY
