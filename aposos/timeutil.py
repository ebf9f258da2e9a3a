"""Time scales over split Julian dates: UTC -> UT1, TT; polar motion; offline IERS tables.

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

import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlparse

import erfa
import numpy as np

__all__ = [
    "IersCoverage",
    "as_jd_fr",
    "configure_offline",
    "iers_coverage",
    "polar_motion_rad",
    "refresh_iers",
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


def as_jd_fr(jd, fr) -> tuple[np.ndarray, np.ndarray]:
    """Validate a UTC ``(jd, fr)`` split: 1-D float64 arrays of one length, all finite.

    Scalars become length-1 arrays and a scalar broadcasts against an array. Raises
    ``ValueError`` naming the first time that is not finite.
    """
    jd = np.atleast_1d(np.asarray(jd, dtype=np.float64))
    fr = np.atleast_1d(np.asarray(fr, dtype=np.float64))
    if jd.ndim != 1 or fr.ndim != 1:
        raise ValueError(f"jd and fr must be 1-D; got shapes {jd.shape} and {fr.shape}")
    jd, fr = np.broadcast_arrays(jd, fr)
    bad = ~(np.isfinite(jd) & np.isfinite(fr))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"time {i} is not finite: jd={jd[i]!r}, fr={fr[i]!r}")
    return np.ascontiguousarray(jd), np.ascontiguousarray(fr)


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
