"""Heartbeat history at the center (schema, migration, store, the endpoint's checks) and
the night-quality figures the station agent puts into its heartbeats."""

from __future__ import annotations

import math

import pytest
from centerserver import CenterThread
from sqlalchemy import inspect, select, text

from aposos.center import schema as S
from aposos.center.client import CenterError
from aposos.station.outbox import AgentStore
from aposos.station.quality import frame_quality, quality_summary, reason_key, reasons_summary

GOOD = {
    "outbox_backlog": 3, "agent_version": "aposos 1.0", "frames_reduced": 40,
    "frames_failed": 1, "solve_rate": 0.75, "fwhm_arcsec": 2.41, "limiting_mag": 15.32,
    "sky_mag_arcsec2": 20.8, "quality_frames": 20, "heartbeat_s": 60.0,
    "station_time": "2020-10-02T21:00:00Z", "unsolved_reasons": {"only N stars matched": 9},
    "last_error": "frame 12: no stars",
}  # fmt: skip


def beats(store) -> list:
    with store.read() as conn:
        return conn.execute(select(S.heartbeats).order_by(S.heartbeats.c.id)).all()


def test_every_heartbeat_is_kept(store):
    store.record_heartbeat("PER1", outbox_backlog=3, agent_version="a", body=GOOD)
    store.record_heartbeat("PER1", outbox_backlog=None, agent_version="a", body={"x": 1})
    first, second = beats(store)
    assert (first.station, first.outbox_backlog, first.fwhm_arcsec) == ("PER1", 3, 2.41)
    assert first.station_time.isoformat() == "2020-10-02T21:00:00"
    assert first.unsolved_reasons == '{"only N stars matched": 9}'
    assert first.last_error == "frame 12: no stars" and first.heartbeat_s == 60.0
    assert second.outbox_backlog is None and second.station_time is None  # an older agent
    assert second.received_at >= first.received_at


def test_a_version_4_database_gets_the_heartbeat_table(store):
    store.record_heartbeat("PER1", outbox_backlog=1, agent_version="a", body={})
    with store.write() as conn:
        conn.execute(text("DROP TABLE heartbeats"))
        conn.execute(S.schema_info.update().values(version=4))
    assert store.upgrade() == S.SCHEMA_VERSION
    with store.read() as conn:
        assert inspect(conn).has_table("heartbeats")
        names = {i["name"] for i in inspect(conn).get_indexes("heartbeats")}
    assert "ix_heartbeats_station_at" in names
    store.record_heartbeat("PER1", outbox_backlog=2, agent_version="a", body=GOOD)
    assert [b.outbox_backlog for b in beats(store)] == [2]


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    proc = CenterThread(tmp_path_factory.mktemp("center")).start()
    proc.tokens = {"PER1": proc.token("PER1", "station")}
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("fwhm_arcsec", -1.0, "fwhm_arcsec must be a number from 0.05 to 600"),
        ("fwhm_arcsec", "2.4", "fwhm_arcsec"),
        ("limiting_mag", 99.0, "limiting_mag must be a number from -5 to 30"),
        ("limiting_mag", 10**400, "limiting_mag"),  # too large for a float
        ("sky_mag_arcsec2", True, "sky_mag_arcsec2"),
        ("solve_rate", 1.5, "solve_rate must be a number from 0 to 1"),
        ("frames_reduced", -3, "frames_reduced must be a non-negative integer"),
        ("quality_frames", 2.5, "quality_frames"),
        ("heartbeat_s", 0, "heartbeat_s"),
        ("station_time", "tonight", "station_time must be an ISO 8601 time"),
        ("station_time", "3020-01-01T00:00:00Z", "station_time"),
        ("unsolved_reasons", ["clouds"], "unsolved_reasons must be an object"),
        ("unsolved_reasons", {"clouds": -1}, "unsolved_reasons['clouds']"),
        ("unsolved_reasons", {"a\nb": 1}, "control characters"),
        ("unsolved_reasons", {f"r{i}": 1 for i in range(51)}, "at most 50"),
        ("last_error", 7, "last_error must be a string"),
    ],
)
def test_bad_heartbeat_fields_are_refused_and_not_kept(center, field, value, words):
    before = len(beats(center.store))
    with center.client(center.tokens["PER1"]) as c, pytest.raises(CenterError) as err:
        c.heartbeat("PER1", **{**GOOD, field: value})
    assert err.value.status == 422 and words in err.value.message
    assert len(beats(center.store)) == before


def test_a_good_heartbeat_is_kept_through_the_endpoint(center):
    with center.client(center.tokens["PER1"]) as c:
        c.heartbeat("PER1", **GOOD)
    last = beats(center.store)[-1]
    assert (last.limiting_mag, last.sky_mag_arcsec2, last.quality_frames) == (15.32, 20.8, 20)


# ------------------------------------------------------------------ the station's side


def test_frame_quality_from_a_reduction_report():
    # zero point 22.0 mag for 1 ADU; 400 ADU per pixel of 2 arcsec: 100 ADU per arcsec^2,
    # so the sky is 22.0 - 2.5 log10(100) = 17.0 mag/arcsec^2
    info = {"fwhm_arcsec": 2.5, "limiting_mag": 15.2, "zero_point_mag": 22.0,
            "background_adu": 400.0, "pixel_scale_arcsec": 2.0}  # fmt: skip
    fwhm, lim, sky = frame_quality(info)
    assert (fwhm, lim) == (2.5, 15.2) and math.isclose(sky, 17.0, abs_tol=1e-12)
    assert frame_quality({**info, "background_adu": 0.0})[2] is None  # no sky, no figure
    assert frame_quality({"fwhm_arcsec": None}) == (None, None, None)
    # stars trailing 6.8 px (a rate-tracked frame): the width is the trail's, not the seeing
    trailed = frame_quality({**info, "star_trail_px": 6.8})
    assert trailed[:2] == (None, None) and math.isclose(trailed[2], 17.0, abs_tol=1e-12)
    summary = quality_summary([(2.0, 15.0, 20.0), (3.0, 14.0, None), (2.5, 16.0, 21.0)])
    assert summary == {"quality_frames": 3, "fwhm_arcsec": 2.5, "limiting_mag": 15.0,
                       "sky_mag_arcsec2": 20.5}  # fmt: skip
    assert quality_summary([]) == {}
    # a value the center would refuse is left out, so the heartbeat still goes through
    odd = quality_summary([(0.0, 15.0, 40.0), (2.0, 99.0, 20.0)])
    assert odd == {"quality_frames": 2, "fwhm_arcsec": 2.0, "limiting_mag": 15.0,
                   "sky_mag_arcsec2": 20.0}  # fmt: skip
    from aposos.center.heartbeats import QUALITY
    from aposos.station.quality import RANGES

    assert RANGES == QUALITY  # the station and the center agree on what is sane


def test_unsolved_reasons_count_alike_reasons_together():
    assert reason_key("no pointing in the header; only 3 stars matched") == "only N stars matched"
    assert reason_key(None) == "no reason given"
    counts = reasons_summary([("only 3 stars matched", 2), ("only 4 stars matched", 1),
                              ("no stars", 5), (None, 1)])  # fmt: skip
    assert counts == {"no stars": 5, "only N stars matched": 3, "no reason given": 1}
    many = reasons_summary([(f"reason {chr(97 + i)}{chr(97 + i)}", 1) for i in range(25)])
    assert len(many) == 21 and many["other"] == 5


def test_the_agent_store_keeps_recent_quality_and_reasons(tmp_path):
    db = AgentStore(tmp_path / "agent.sqlite")
    try:
        for k in range(3):
            db.add_frame(f"f{k}", f"/x/f{k}.fits")
        db.commit_field(
            [("f0", "solved", None, 0), ("f1", "unsolved", "only 2 stars matched", 0),
             ("f2", "failed", "not a FITS file", 0)],
            [],
            [("f0", 2.2, 15.1, 20.4)],
        )  # fmt: skip
        assert db.recent_quality(20, 3600.0) == [(2.2, 15.1, 20.4)]
        assert db.recent_quality(20, -10.0) == []  # older than the window
        assert reasons_summary(db.unsolved_reasons()) == {
            "not a FITS file": 1, "only N stars matched": 1}  # fmt: skip
    finally:
        db.close()
