"""CCSDS TDM (503.0-B-2) angle data: our reader and writer.

Outside judges: ``ccsds-ndm`` (GPL, used only here) parses what we write and writes
messages we must read; astropy's ``Time`` gives TAI -> UTC. Hand-made messages live in
tests/data/formats/.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from aposos.formats.common import ParsedTracklet, read_source, tracklets_of
from aposos.formats.readers import read_tracklets
from aposos.formats.tdm import read_tdm, write_tdm
from aposos.model import Tracklet

DATA = Path(__file__).parent / "data" / "formats"
one_microsecond = np.timedelta64(1, "us")
angle_tol_deg = 1e-9


def make_tracklets(seed: int = 7, n_tracklets: int = 3, n_obs: int = 5) -> list[Tracklet]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_tracklets):
        start = np.datetime64("2026-11-22T01:02:03", "us") + np.timedelta64(
            int(rng.integers(0, 10**10)), "us"
        )
        steps = np.cumsum(rng.integers(1, 10**7, n_obs))
        mag = rng.uniform(-2.0, 16.0, n_obs)
        mag[rng.random(n_obs) < 0.3] = np.nan
        out.append(
            Tracklet(
                station=f"ST-{k}",
                utc=start + steps.astype("timedelta64[us]"),
                ra_deg=rng.uniform(0.0, 360.0, n_obs),
                dec_deg=rng.uniform(-90.0, 90.0, n_obs),
                sigma_arcsec=rng.uniform(0.3, 5.0, n_obs) if k % 2 else 1.5,
                mag=mag,
                object=None if k == 0 else f"2020-{k:03d}A",
            )
        )
    return out


def assert_same_tracklet(got: Tracklet, want: Tracklet) -> None:
    assert got.station == want.station
    assert got.object == want.object
    assert got.uuid == want.uuid
    np.testing.assert_array_equal(got.utc, want.utc)
    dra = (got.ra_deg - want.ra_deg + 180.0) % 360.0 - 180.0
    assert np.max(np.abs(dra)) <= angle_tol_deg
    np.testing.assert_allclose(got.dec_deg, want.dec_deg, rtol=0, atol=angle_tol_deg)
    np.testing.assert_allclose(got.sigma_arcsec, want.sigma_arcsec, rtol=1e-5)
    np.testing.assert_allclose(got.mag, want.mag, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["kvn", "xml"])
def test_round_trip_is_exact(fmt):
    tracklets = make_tracklets(n_obs=40)  # 40 varying sigmas: several comment lines
    text = write_tdm(tracklets, format=fmt)
    parsed = read_tdm(text)
    assert [p.error for p in parsed] == [None] * len(tracklets)
    assert [p.index for p in parsed] == list(range(len(tracklets)))
    for p, want in zip(parsed, tracklets, strict=True):
        assert_same_tracklet(p.tracklet, want)


def test_ra_just_below_360_and_negative_zero_dec():
    t = Tracklet(
        "S", np.array(["2026-01-01T00:00:00"], "datetime64[us]"), [359.99999999999], [-0.0]
    )
    text = write_tdm([t])
    assert "ANGLE_1 = 2026-01-01T00:00:00.000000 0.0000000000" in text
    assert "-0.0000000000" not in text
    got = read_tdm(text)[0].tracklet
    assert abs((got.ra_deg[0] - t.ra_deg[0] + 180) % 360 - 180) <= angle_tol_deg


def test_writer_layout_kvn():
    t = make_tracklets(n_tracklets=2)[1]
    text = write_tdm([t], creation_date=np.datetime64("2026-11-23T00:00:00"), originator="ORG")
    lines = text.splitlines()
    assert lines[:3] == [
        "CCSDS_TDM_VERS = 2.0",
        "CREATION_DATE = 2026-11-23T00:00:00.000",
        "ORIGINATOR = ORG",
    ]
    meta = lines[lines.index("META_START") + 1 : lines.index("META_STOP")]
    keys = [line.split(" = ")[0] for line in meta if not line.startswith("COMMENT")]
    # order of table 3-3; comments only at the start of the metadata (4.5.2)
    assert keys == [
        "TRACK_ID", "DATA_TYPES", "TIME_SYSTEM", "START_TIME", "STOP_TIME", "PARTICIPANT_1",
        "PARTICIPANT_2", "MODE", "PATH", "ANGLE_TYPE", "REFERENCE_FRAME",
    ]  # fmt: skip
    assert meta[0].startswith("COMMENT aposos sigma_arcsec: ")
    assert "PATH = 2,1" in meta and "MODE = SEQUENTIAL" in meta and "TIME_SYSTEM = UTC" in meta
    assert all(len(line) <= 254 and line.isascii() for line in lines)
    data = lines[lines.index("DATA_START") + 1 : lines.index("DATA_STOP")]
    assert all(
        re.fullmatch(r"(ANGLE_1|ANGLE_2|MAG) = \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} -?\d+\.\d+", d)
        for d in data
    )


# --------------------------------------------------------------------------- ccsds-ndm as judge


def ndm_values(ndm) -> list[dict]:
    """What ccsds-ndm found in each segment, in plain Python."""
    out = []
    for seg in ndm.body.segment:
        m = seg.metadata
        ra, dec, mag = {}, {}, {}
        for obs in seg.data.observation:
            t = np.datetime64(obs.epoch, "us")
            if obs.angle_1 is not None:
                ra[t] = obs.angle_1.value
            if obs.angle_2 is not None:
                dec[t] = obs.angle_2.value
            if obs.mag is not None:
                mag[t] = obs.mag
        out.append(
            dict(
                station=m.participant_1, object=m.participant_2, track_id=m.track_id,
                time_system=m.time_system, angle_type=m.angle_type.value,
                frame=m.reference_frame.value, path=m.path, ra=ra, dec=dec, mag=mag,
            )
        )  # fmt: skip
    return out


@pytest.mark.parametrize("fmt", ["kvn", "xml"])
def test_ccsds_ndm_reads_what_we_write(fmt):
    from ccsds_ndm.ndm_io import NdmIo

    tracklets = make_tracklets()
    ndm = NdmIo().from_string(write_tdm(tracklets, format=fmt))
    assert ndm.header.originator == "APOSOS"
    found = ndm_values(ndm)
    assert len(found) == len(tracklets)
    for seg, t in zip(found, tracklets, strict=True):
        assert seg["station"] == t.station
        assert seg["object"] == (t.object or "UNKNOWN")
        assert seg["track_id"] == t.uuid
        assert (seg["time_system"], seg["angle_type"], seg["frame"], seg["path"]) == (
            "UTC", "RADEC", "EME2000", "2,1",
        )  # fmt: skip
        assert list(seg["ra"]) == list(t.utc) and list(seg["dec"]) == list(t.utc)
        np.testing.assert_allclose(list(seg["ra"].values()), t.ra_deg, atol=angle_tol_deg, rtol=0)
        np.testing.assert_allclose(list(seg["dec"].values()), t.dec_deg, atol=angle_tol_deg, rtol=0)
        has_mag = np.isfinite(t.mag)
        assert list(seg["mag"]) == list(t.utc[has_mag])
        np.testing.assert_allclose(list(seg["mag"].values()), t.mag[has_mag], atol=1e-4)


@pytest.mark.parametrize("ndm_format", ["KVN", "XML"])
def test_we_read_what_ccsds_ndm_writes(ndm_format):
    from ccsds_ndm.mapping import NDMFileFormats
    from ccsds_ndm.ndm_io import NdmIo

    tracklets = make_tracklets(seed=11)
    io = NdmIo()
    text = io.to_string(io.from_string(write_tdm(tracklets)), NDMFileFormats[ndm_format])
    assert text != write_tdm(tracklets)  # a different writer's layout
    parsed = read_tdm(text)
    for p, want in zip(parsed, tracklets, strict=True):
        assert p.error is None
        assert_same_tracklet(p.tracklet, want)


# --------------------------------------------------------------------------- hand-made messages


def test_hand_made_kvn():
    from astropy.time import Time

    path = DATA / "tdm_optical_two_segments.kvn"
    parsed = read_tdm(path)
    assert [(p.index, p.line, p.error) for p in parsed] == [(0, 7, None), (1, 30, None)]
    first, second = (p.tracklet for p in parsed)
    # 2024 is a leap year: day 066 is 6 March.
    assert list(first.utc) == list(
        np.array(["2024-03-06T18:30:00.25", "2024-03-06T18:30:10.25"], "datetime64[us]")
    )
    assert first.station == "IRN-1" and first.object is None
    np.testing.assert_allclose(first.ra_deg, [359.5, 359.5])  # -0.5 is 359.5
    np.testing.assert_allclose(first.dec_deg, [-12.25, -12.5])
    np.testing.assert_array_equal(first.mag, [9.5, np.nan])
    np.testing.assert_array_equal(first.sigma_arcsec, [2.0, 2.0])  # no sigma comment: default
    # TAI timetags on both sides of the 2016-12-31 leap second; astropy is the judge.
    assert second.station == "PAK-1" and second.object == "2020-001A"
    tai = Time(["2016-12-31T23:00:00", "2017-01-01T01:00:00.0000004"], scale="tai")
    want = np.array([np.datetime64(s, "us") for s in tai.utc.isot])
    assert np.all(np.abs(second.utc - want) <= one_microsecond)
    assert str(second.utc[0]) == "2016-12-31T22:59:24.000000"
    assert str(second.utc[1]) == "2017-01-01T00:59:23.000000"
    # the UUID comes from the observations: the same on every reading
    assert read_tdm(path)[0].tracklet.uuid == first.uuid != second.uuid


def test_hand_made_namespace_qualified_xml():
    parsed = read_tdm(DATA / "tdm_optical_qualified.xml")
    assert len(parsed) == 1 and parsed[0].error is None
    assert parsed[0].line == 13  # the <ndm:segment> element
    t = parsed[0].tracklet
    assert t.uuid == "0b9e3c9c-5f7e-4c4b-9d7a-2f1e6c1d0a11"
    assert (t.station, t.object) == ("PER-1", "1998-067A")
    assert [str(u) for u in t.utc] == ["2024-01-01T00:00:00.000000", "2024-12-31T23:59:59.999999"]
    np.testing.assert_array_equal(t.ra_deg, [10.0, 123.456789012])
    np.testing.assert_array_equal(t.dec_deg, [90.0, -89.5])
    np.testing.assert_array_equal(t.sigma_arcsec, [1.25, 3.0])  # in time order
    np.testing.assert_array_equal(t.mag, [-1.5, np.nan])


# --------------------------------------------------------------------------- bad segments

GOOD_META = """META_START
TIME_SYSTEM = UTC
PARTICIPANT_1 = IRN1
PARTICIPANT_2 = 2020-001A
MODE = SEQUENTIAL
PATH = 2,1
ANGLE_TYPE = RADEC
REFERENCE_FRAME = EME2000
META_STOP"""
GOOD_DATA = """DATA_START
ANGLE_1 = 2026-11-22T01:02:03.000001 10.5
ANGLE_2 = 2026-11-22T01:02:03.000001 -20.25
DATA_STOP"""
HEADER = "CCSDS_TDM_VERS = 2.0\nCREATION_DATE = 2026-11-22T12:00:00\nORIGINATOR = TEST\n"


def segment(meta: str = GOOD_META, data: str = GOOD_DATA) -> str:
    return meta + "\n" + data + "\n"


def line_of(text: str, needle: str, start: int = 1) -> int:
    """1-based number of the first line at or after ``start`` containing ``needle``."""
    lines = text.splitlines()
    return next(n for n in range(start, len(lines) + 1) if needle in lines[n - 1])


BAD_SEGMENTS = {
    "bad number": (segment(data=GOOD_DATA.replace("10.5", "10.5.1")), "10.5.1", "not a number"),
    "bad timestamp": (
        segment(data=GOOD_DATA.replace("2026-11-22T01:02:03.000001 -20", "2026-02-30T01:02:03 -20")),
        "2026-02-30",
        "bad timetag '2026-02-30T01:02:03'",
    ),
    "missing META keyword": (
        segment(meta=GOOD_META.replace("REFERENCE_FRAME = EME2000\n", "")),
        "META_START",
        "metadata has no REFERENCE_FRAME",
    ),
    "ANGLE_1 without ANGLE_2": (
        segment(data=GOOD_DATA.replace("ANGLE_1 = 2026-11-22T01:02:03.000001 10.5", "ANGLE_1 = 2026-11-22T01:02:04 10.5")),
        "ANGLE_1",
        "ANGLE_1 at 2026-11-22T01:02:04 has no ANGLE_2",
    ),
    "empty segment": (segment(data="DATA_START\nDATA_STOP"), "META_START", "no ANGLE_1/ANGLE_2 data"),
    "AZEL": (segment(meta=GOOD_META.replace("RADEC", "AZEL")), "AZEL", "ANGLE_TYPE AZEL not supported"),
    "UT1": (segment(meta=GOOD_META.replace("= UTC", "= UT1")), "UT1", "TIME_SYSTEM UT1 not supported"),
    "TOD frame": (segment(meta=GOOD_META.replace("EME2000", "TOD")), "TOD", "REFERENCE_FRAME TOD"),
    "declination": (segment(data=GOOD_DATA.replace("-20.25", "-90.5")), "-90.5", "outside [-90, 90]"),
    "unknown data keyword": (segment(data=GOOD_DATA.replace("ANGLE_2", "ANGLE_3")), "ANGLE_3", "not a TDM data keyword"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_SEGMENTS))
def test_bad_segment_is_reported_and_others_still_read(case):
    bad, needle, reason = BAD_SEGMENTS[case]
    text = HEADER + segment() + bad + segment()
    parsed = read_tdm(text)
    assert [p.index for p in parsed] == [0, 1, 2]
    assert parsed[0].ok and parsed[2].ok and parsed[1].tracklet is None
    start = line_of(text, "META_START", line_of(text, "DATA_STOP") + 1)
    where = line_of(text, needle, start)
    assert parsed[1].line == start
    assert parsed[1].error.startswith(f"<text>: segment 2 (starts line {start}), line {where}: ")
    assert reason in parsed[1].error
    with pytest.raises(ValueError, match=re.escape(parsed[1].error)):
        read_tdm(text, strict=True)


def test_missing_data_stop():
    text = HEADER + segment(data=GOOD_DATA.replace("DATA_STOP", "")) + segment()
    parsed = read_tdm(text)
    second = line_of(text, "META_START", 5)
    assert parsed[0].error == (
        f"<text>: segment 1 (starts line 4), line {second}: "
        "segment not closed with DATA_STOP before the next META_START"
    )
    assert parsed[1].ok and parsed[1].line == second
    at_end = read_tdm(HEADER + segment() + segment(data=GOOD_DATA.replace("DATA_STOP", "")))
    assert at_end[0].ok and "file ends inside the segment (no DATA_STOP)" in at_end[1].error


def test_stray_line_between_segments():
    stray = "ANGLE_1 = 2026-11-22T01:02:03 1.0\nANGLE_2 = 2026-11-22T01:02:03 2.0\n"
    text = HEADER + segment() + stray + segment()
    parsed = read_tdm(text)
    assert [p.ok for p in parsed] == [True, False, True]
    assert "segment 2 (starts line 17), line 17: expected META_START" in parsed[1].error


def test_file_name_in_messages(tmp_path):
    path = tmp_path / "night.tdm"
    path.write_text(HEADER + segment(data="DATA_START\nDATA_STOP"))
    assert read_tdm(path)[0].error.startswith(f"{path}: segment 1 (starts line 4), line 4: ")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("hello world\n", "not a CCSDS TDM"),
        (
            "CCSDS_OEM_VERS = 2.0\nCREATION_DATE = 2026-01-01T00:00:00\n",
            "CCSDS OEM message, not a TDM",
        ),
        ("CCSDS_TDM_VERS = 7.0\n", "unsupported CCSDS_TDM_VERS"),
        (HEADER, "no segments"),
        ("<oem id='CCSDS_OEM_VERS' version='2.0'/>", "is not a CCSDS <tdm>"),
        ("<tdm><body>", "not well-formed XML"),
    ],
)
def test_not_a_tdm(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        read_tdm(text)


def test_strict_header():
    text = "CCSDS_TDM_VERS = 2.0\nORIGINATOR = X\n" + segment()
    assert read_tdm(text)[0].ok
    with pytest.raises(ValueError, match="header has no CREATION_DATE"):
        read_tdm(text, strict=True)


# --------------------------------------------------------------------------- helpers


def test_writer_rejects_what_it_cannot_write():
    t = make_tracklets(n_tracklets=1)[0]
    with pytest.raises(ValueError, match="at least one tracklet"):
        write_tdm([])
    with pytest.raises(ValueError, match="format"):
        write_tdm([t], format="json")
    bad = Tracklet("line\nbreak", t.utc, t.ra_deg, t.dec_deg)
    with pytest.raises(ValueError, match="printable ASCII"):
        write_tdm([bad])


def test_path_or_text(tmp_path):
    text = write_tdm(make_tracklets(n_tracklets=1))
    path = tmp_path / "a.tdm"
    path.write_text(text)
    assert read_source(str(path)) == (text, str(path))
    assert read_source(path)[1] == str(path)
    assert read_source(text) == (text, "<text>")
    assert read_tdm(str(path))[0].tracklet.uuid == read_tdm(text)[0].tracklet.uuid
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_tdm(str(tmp_path / "missing.tdm"))


def test_read_tracklets_sniffs_the_format(tmp_path):
    tracklets = make_tracklets(n_tracklets=2)
    (tmp_path / "a.kvn").write_text(write_tdm(tracklets))
    (tmp_path / "a.xml").write_text(write_tdm(tracklets, format="xml"))
    iod = "23908 96 029C   4171 E 20200316192205771 17 25 1216076+260652 37 S\n"
    (tmp_path / "a.iod").write_text(iod)
    for name in ("a.kvn", "a.xml"):
        got = tracklets_of(read_tracklets(tmp_path / name))
        assert [t.uuid for t in got] == [t.uuid for t in tracklets]
    parsed = read_tracklets(tmp_path / "a.iod", station_codes={4171: "NL1"})
    assert isinstance(parsed[0], ParsedTracklet) and parsed[0].tracklet.station == "NL1"
    (tmp_path / "junk.txt").write_text("nothing to see\nhere\n")
    with pytest.raises(ValueError, match="not IOD observations"):
        read_tracklets(tmp_path / "junk.txt")
