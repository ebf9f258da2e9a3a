"""Which SGP4 kernel runs: the one entry from packed element sets to TEME states.

Two kernels do the same arithmetic (Vallado's SGP4/SDP4, checked against python-sgp4):

- :mod:`aposos.orbit.sgp4`, the reference: one object at a time, readable beside
  Vallado's code; it also serves objects that each have their own times (2-D ``jd, fr``),
  objects whose initialisation failed, and every call under ``NUMBA_DISABLE_JIT=1``;
- :mod:`aposos.orbit.sgp4_vector`, blocks of 64 objects in SIMD lanes, for the common
  case of many objects at the same times, when compiled.

:meth:`aposos.orbit.catalogue.Catalogue.propagate` calls :func:`propagate_packed`; so do
the correlation stages that hold packed rows without a catalogue.
"""

from __future__ import annotations

import numba
import numpy as np

from aposos.orbit.sgp4 import (
    MAX_MINUTES_FROM_EPOCH,
    P_JD,
    P_JDF,
    propagate_reference,
    propagate_reference_rows,
)

__all__ = ["propagate_packed", "propagate_packed_rows", "vector_kernel_runs"]


def vector_kernel_runs(params: np.ndarray, jd: np.ndarray, fr: np.ndarray) -> bool:
    """Whether :func:`propagate_packed` takes the SIMD kernel for these objects and times.

    It does for 1-D times when compiled (under ``NUMBA_DISABLE_JIT`` the SIMD layout does
    not pay, and the readable reference kernel runs), and when every time is finite and
    within :data:`~aposos.orbit.sgp4.MAX_MINUTES_FROM_EPOCH` of every epoch: otherwise the
    reference kernel gives those points code 7 without stepping towards them.
    """
    if np.ndim(jd) != 1 or numba.config.DISABLE_JIT:
        return False
    if len(params) == 0 or np.size(jd) == 0:
        return True
    epoch = params[:, P_JD] + params[:, P_JDF]
    times = jd + fr
    if not (np.isfinite(times).all() and np.isfinite(epoch).all()):
        return False
    reach_days = max(times.max() - epoch.min(), epoch.max() - times.min())
    return bool(reach_days * 1440.0 <= MAX_MINUTES_FROM_EPOCH)


def propagate_packed(params: np.ndarray, jd, fr, *, out=None, plan=None):
    """Propagate packed element sets to UTC Julian dates ``jd + fr``.

    Parameters
    ----------
    params : (n_obj, N_PARAMS) float64 from :func:`aposos.orbit.sgp4.pack_satrecs`.
    jd, fr : 1-D float64 arrays (same times for every object), or 2-D
        ``(n_obj, n_times)`` arrays giving each object its own times. Numbers of days,
        as checked by :func:`aposos.timeutil.to_jd_fr`; a time more than 200 years from
        an object's epoch, or not finite, gets code 7 (see :func:`vector_kernel_runs`).
    out : optional ``(e, r, v)`` buffers to fill, reused across calls.
    plan : optional :class:`aposos.orbit.sgp4_vector.BlockPlan` for ``params``
        (a catalogue keeps one); built here when not given.

    Returns
    -------
    e : uint8 (n_obj, n_times) error codes (:data:`aposos.orbit.sgp4.ERROR_MESSAGES`).
    r : (n_obj, n_times, 3) km, TEME.  v : (n_obj, n_times, 3) km/s, TEME.
    """
    params = np.ascontiguousarray(params, dtype=np.float64)
    jd = np.ascontiguousarray(jd, dtype=np.float64)
    fr = np.ascontiguousarray(fr, dtype=np.float64)
    if jd.shape != fr.shape:
        raise ValueError(f"jd and fr differ in shape: {jd.shape} vs {fr.shape}")
    n_obj = params.shape[0]
    if not (jd.ndim == 1 or (jd.ndim == 2 and jd.shape[0] == n_obj)):
        raise ValueError("jd and fr must be 1-D, or 2-D with one row per object")
    n_t = jd.shape[-1]
    if out is None:
        e = np.empty((n_obj, n_t), dtype=np.uint8)
        r = np.empty((n_obj, n_t, 3))
        v = np.empty((n_obj, n_t, 3))
    else:
        e, r, v = out
        if e.shape != (n_obj, n_t) or r.shape != (n_obj, n_t, 3) or v.shape != r.shape:
            raise ValueError("output buffers have the wrong shape")
    if vector_kernel_runs(params, jd, fr):
        from aposos.orbit.sgp4_vector import BlockPlan

        if plan is None:
            plan = BlockPlan(params)
        plan.propagate(params, jd, fr, e, r, v)
    else:
        propagate_reference(params, jd, fr, e, r, v)
    return e, r, v


def propagate_packed_rows(params: np.ndarray, rows, jd, fr):
    """:func:`propagate_packed` of ``params[rows]`` at 2-D ``(n, n_times)`` times (each
    item its own), without copying the rows: item ``k`` is object ``rows[k]``.

    Returns ``e, r, v`` shaped ``(n, n_times)`` and ``(n, n_times, 3)``, as
    ``propagate_packed(params[rows], jd, fr)`` gives them.
    """
    params = np.ascontiguousarray(params, dtype=np.float64)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    jd = np.ascontiguousarray(jd, dtype=np.float64)
    fr = np.ascontiguousarray(fr, dtype=np.float64)
    if jd.shape != fr.shape or jd.ndim != 2 or jd.shape[0] != rows.size:
        raise ValueError("jd and fr must be (n, n_times) with one row per item of rows")
    if rows.size and not (0 <= rows.min() and rows.max() < params.shape[0]):
        raise ValueError("rows out of range of params")
    n, n_t = jd.shape
    e = np.empty((n, n_t), dtype=np.uint8)
    r = np.empty((n, n_t, 3))
    v = np.empty((n, n_t, 3))
    propagate_reference_rows(params, rows, jd, fr, e, r, v)
    return e, r, v
