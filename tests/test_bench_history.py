"""benchmarks/bench_history.py: the offsets the catalogue history predicts, checked
against python-sgp4 alone."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from aposos.orbit.catalogue import Catalogue

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "benchmarks"))


def _lines(day: str) -> dict[int, tuple[str, str]]:
    from truthset import read_3le

    path = HERE / "data" / "shared" / "catalogues" / f"celestrak-active-2026-03-{day}.3le.xz"
    return {int(b[2:7]): (b, c) for _, b, c in read_3le(path)}


def _offset(older, newer) -> tuple[float, float, float]:
    """Time offset along track (s), offset along the orbit normal (km) of ``newer`` at
    its epoch against ``older``'s prediction, and the days between their epochs."""
    _, r1, v1 = newer.sgp4(newer.jdsatepoch, newer.jdsatepochF)
    _, r0, _ = older.sgp4(newer.jdsatepoch, newer.jdsatepochF)
    r0, r1, v1 = np.array(r0), np.array(r1), np.array(v1)
    h = np.cross(r1, v1)
    n_hat = h / np.linalg.norm(h)
    plane = r0 - (r0 @ n_hat) * n_hat
    tau = math.atan2(np.cross(plane, r1) @ n_hat, plane @ r1) / (np.linalg.norm(h) / (r1 @ r1))
    age = (newer.jdsatepoch - older.jdsatepoch) + (newer.jdsatepochF - older.jdsatepochF)
    return tau, -(r0 @ n_hat), age


def test_predicted_offsets_follow_the_previous_snapshot():
    """Snapshots 17, 18 and 19 (the fitting pair 18-19 with its history), every 400th
    object in all three: ``h`` is the offset 18 showed against 17 at its epoch times
    (age / age_P)^2, the normal one times age / age_P, and ``tau`` 19's against 18."""
    from bench_history import predicted_offsets
    from sgp4.api import Satrec

    days = ("17", "18", "19")
    lines = [_lines(d) for d in days]
    ids = sorted(set(lines[0]) & set(lines[1]) & set(lines[2]))[::400][:30]
    cats = [Catalogue.from_tle([x for k in ids for x in ("X", *d[k])]) for d in lines]
    errors, h, normal, rows = predicted_offsets(*cats)
    checked = 0
    for i, k in enumerate(errors.norad_id.tolist()):
        prev, old, new = (Satrec.twoline2rv(*d[k]) for d in lines)
        tau, _, age = _offset(old, new)
        tau_p, normal_p, age_p = _offset(prev, old)
        assert int(cats[1].norad_id[rows[i]]) == k
        assert errors.tau_s[i] == pytest.approx(tau, abs=1e-3)
        if age_p < 0.2 or abs(tau_p) > 1200.0:
            continue  # no history: element sets too close or another revolution
        assert h[i] == pytest.approx(tau_p * (age / age_p) ** 2, abs=1e-3)
        assert normal[i] == pytest.approx(normal_p * age / age_p, abs=1e-5)
        checked += 1
    assert checked >= 20
