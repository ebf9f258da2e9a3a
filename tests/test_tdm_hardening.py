"""The TDM reader at the center's door: no DTD (so no entity expansion), bounded
nesting, a time budget, and tracklet identity from the content when a third party
gives no UUID in ``TRACK_ID``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from aposos.formats.tdm import read_tdm, write_tdm
from aposos.model import Tracklet

T0 = np.datetime64("2020-10-01T18:00:00", "us")


def arc(seed: int, n: int = 5) -> Tracklet:
    rng = np.random.default_rng(seed)
    utc = T0 + (np.arange(n) * 3e6).astype("timedelta64[us]")
    return Tracklet(
        "IRN1", utc, rng.uniform(0, 360) + 0.01 * np.arange(n), 20 + 0.01 * np.arange(n)
    )


def without_track_id(text: str) -> str:
    return "\n".join(x for x in text.splitlines() if "TRACK_ID" not in x) + "\n"


def test_a_dtd_is_refused_before_any_entity_is_expanded():
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi"))
        + "]><tdm>&i;</tdm>\n"
    )
    started = time.perf_counter()
    with pytest.raises(ValueError, match="DOCTYPE"):
        read_tdm(laughs)
    assert time.perf_counter() - started < 0.5  # 10^9 characters were never made
    external = '<?xml version="1.0"?><!DOCTYPE t SYSTEM "file:///etc/passwd"><tdm/>\n'
    with pytest.raises(ValueError, match="DOCTYPE"):
        read_tdm(external)


def test_nesting_and_time_are_bounded():
    with pytest.raises(ValueError, match="nested deeper"):
        read_tdm("<tdm>" + "<a>" * 100 + "</a>" * 100 + "</tdm>\n")
    big = write_tdm([arc(k, 50) for k in range(400)], format="xml")
    with pytest.raises(ValueError, match="took longer than"):
        read_tdm(big, time_budget_s=1e-4)
    assert len(read_tdm(big, time_budget_s=60)) == 400
    kvn = write_tdm([arc(k, 50) for k in range(400)])
    with pytest.raises(ValueError, match="took longer than"):
        read_tdm(kvn, time_budget_s=1e-4)


def test_identity_without_track_id_comes_from_every_time_and_position():
    a, b = arc(1), arc(2)  # same start time, same number of points, other positions
    (pa, pb) = read_tdm(without_track_id(write_tdm([a, b])))
    assert pa.tracklet.uuid != pb.tracklet.uuid
    (again,) = read_tdm(without_track_id(write_tdm([a], format="xml")))
    assert again.tracklet.uuid == pa.tracklet.uuid  # the same data: the same UUID
    moved = arc(1)
    moved.dec_deg[3] += 1e-6
    (pm,) = read_tdm(without_track_id(write_tdm([moved])))
    assert pm.tracklet.uuid != pa.tracklet.uuid  # one point differs: another tracklet
