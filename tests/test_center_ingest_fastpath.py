"""The fast path of upload parsing gives exactly what the full checks give.

``ingest._clean_tracklet`` builds the tracklet of a clean wire record in one pass;
anything unusual must fall through to the full checks (``_check_record``,
``Tracklet.from_wire``, ``tracklet_problems``), which name the problem. Here both are
run on the same records, clean ones and records spoiled one field at a time.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from aposos.center import ingest
from aposos.center.checks import tracklet_problems
from aposos.model import Tracklet

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

UUID = "0b4e7a8e-3c1d-4f57-9a43-1e2f3a4b5c6d"


def slow_path(rec) -> tuple[Tracklet | None, list[str]]:
    """The full checks, as parse_upload ran them before the fast path."""
    problems = ingest._check_record(0, rec)
    if problems:
        return None, problems
    try:
        t = Tracklet.from_wire(rec)
    except ValueError as exc:
        return None, [str(exc)]
    return t, tracklet_problems(t)


def same(a: Tracklet, b: Tracklet) -> bool:
    return (
        (a.uuid, a.station, a.object) == (b.uuid, b.station, b.object)
        and np.array_equal(a.utc, b.utc)
        and all(
            np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
            for k in ("ra_deg", "dec_deg", "sigma_arcsec", "mag")
        )
    )


def record(n=3, **point) -> dict:
    obs = [
        {"utc": f"2020-10-01T18:00:0{k}.25Z", "ra_deg": 10.0 + k, "dec_deg": -5.0, **point}
        for k in range(n)
    ]
    return {"uuid": UUID, "station": "IRN1", "object": None, "observations": obs}


def check_agrees(rec) -> None:
    fast = ingest._clean_tracklet(json.loads(json.dumps(rec, allow_nan=True)))
    slow, problems = slow_path(rec)
    if fast is None:
        return  # the full checks decide: nothing to compare
    assert not problems, problems  # the fast path took a record the checks refuse
    assert same(fast, slow)


def test_a_clean_record_takes_the_fast_path_and_gives_the_same_tracklet():
    rec = record(sigma_arcsec=1.5, mag=11.0)
    rec["observations"].reverse()  # out of time order: sorted as from_wire sorts
    fast = ingest._clean_tracklet(rec)
    assert fast is not None
    assert same(fast, slow_path(rec)[0])
    assert list(fast.ra_deg) == [10.0, 11.0, 12.0]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r: r.update(uuid="not-a-uuid"),
        lambda r: r.update(station=""),
        lambda r: r.update(station="X" * 33),
        lambda r: r.update(object="bad\x00name"),
        lambda r: r.update(object="O" * 65),
        lambda r: r.update(extra=1),
        lambda r: r["observations"].pop() and r["observations"].pop(),  # one point left
        lambda r: r["observations"][0].update(utc="1957-10-03T23:59:59Z"),
        lambda r: r["observations"][0].update(utc="2100-01-01T00:00:00Z"),
        lambda r: r["observations"][0].update(utc="2020-02-30T00:00:00Z"),
        lambda r: r["observations"][0].update(utc="2020-10-01 18:00:00"),
        lambda r: r["observations"][0].update(ra_deg=True),
        lambda r: r["observations"][0].update(ra_deg="1.0"),
        lambda r: r["observations"][0].update(ra_deg=10**400),
        lambda r: r["observations"][0].update(dec_deg=90.5),
        lambda r: r["observations"][0].update(sigma_arcsec=0),
        lambda r: r["observations"][0].update(sigma_arcsec=10**400),
        lambda r: r["observations"][0].update(mag=float("inf")),
        lambda r: r["observations"][0].update(seen=True),
        lambda r: r["observations"][0].pop("dec_deg"),
    ],
)
def test_a_spoiled_record_leaves_the_fast_path(spoil):
    rec = record()
    spoil(rec)
    assert ingest._clean_tracklet(rec) is None
    tracklet, problems = slow_path(rec)
    assert tracklet is None or problems  # and the full checks name what is wrong


def test_an_upload_reports_the_same_errors_with_clean_records_beside_bad_ones():
    bad = record()
    bad["observations"][1]["dec_deg"] = 91.0
    body = json.dumps([record(), bad, record() | {"uuid": UUID.replace("0b", "1b")}])
    parsed = ingest.parse_upload(body.encode())
    assert parsed.errors == [
        f"record 1 (uuid {UUID}): observations[1].dec_deg 91.0 is outside [-90, 90]"
    ]
    assert len(parsed.tracklets) == 2


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)
times = st.one_of(
    st.sampled_from(
        [
            "2020-10-01T18:00:00Z",
            "2020-10-01T18:00:00.5",
            "1957-10-04T00:00:00Z",
            "2099-12-31T23:59:59.999999999Z",
            "2020-13-01T00:00:00Z",
            "2020-10-01T23:59:60Z",
            "1957-10-03T23:59:59Z",
        ]
    ),  # fmt: skip
    st.text(max_size=25),
)
points = st.fixed_dictionaries(
    {"utc": times, "ra_deg": numbers, "dec_deg": numbers},
    optional={"sigma_arcsec": numbers, "mag": numbers},
)


@settings(max_examples=300, deadline=None)
@given(
    obs=st.lists(points, min_size=0, max_size=4),
    station=st.sampled_from(["IRN1", "", "S" * 33, "a\nb"]),
    obj=st.one_of(st.none(), st.text(max_size=70), st.integers()),
)
def test_fast_and_full_checks_agree_on_any_record(obs, station, obj):
    check_agrees({"uuid": UUID, "station": station, "object": obj, "observations": obs})
