"""Catalogue reading (TLE, 3LE, Alpha-5, OMM JSON/XML/CSV), bad input, snapshots.

Outside authorities: python-sgp4's own TLE and OMM initialisation (``Satrec.twoline2rv``,
``sgp4.omm.initialize``) and its ``SatrecArray`` propagation; real CelesTrak files.
"""

import csv
import json

import numpy as np
import pytest
from sgp4.api import Satrec, SatrecArray
from sgp4.exporter import compute_checksum, export_omm
from sgp4.omm import initialize
from shared_data import CATALOGUE_NEW as NEW

from aposos.orbit.catalogue import Catalogue, CatalogueError

one_mm_km = 1e-6
one_cm_km = 1e-5

ISS_1 = "1 25544U 98067A   20276.52268519  .00000928  00000-0  24908-4 0  9991"
ISS_2 = "2 25544  51.6442 204.6036 0001474 100.4339 341.3853 15.48852416248578"


def with_checksum(line):
    return line[:68] + str(compute_checksum(line[:68]))


def test_real_3le_catalogue():
    cat = Catalogue.from_tle(NEW)
    assert len(cat) == 3034
    assert cat.problems == []
    k = cat.index_of(25544)
    assert cat.name[k] == "ISS (ZARYA)"
    assert cat.intl_designator[k] == "1998-067A"
    s = cat.summary()
    assert sum(s["by_orbit_class"].values()) == 3034
    assert s["by_orbit_class"]["GEO"] > 400 and s["by_orbit_class"]["LEO"] > 2000


def test_propagation_matches_python_sgp4_on_real_catalogue():
    lines = NEW.read_text().splitlines()
    cat = Catalogue.from_tle(lines)
    ref = SatrecArray([Satrec.twoline2rv(a, b) for a, b in zip(lines[1::3], lines[2::3])])
    jd = np.full(24, 2459124.5)
    fr = np.linspace(0.0, 2.0, 24)
    e, r, v = cat.propagate(jd, fr)
    e_ref, r_ref, v_ref = ref.sgp4(jd, fr)
    assert np.array_equal(e, e_ref)
    ok = e == 0
    assert np.abs(r - r_ref)[ok].max() < one_mm_km
    assert np.abs(v - v_ref)[ok].max() < one_mm_km


def test_two_line_and_three_line_agree():
    lines = NEW.read_text().splitlines()
    two = Catalogue.from_tle([ln for k, ln in enumerate(lines) if k % 3 != 0])
    three = Catalogue.from_tle(lines)
    assert np.array_equal(two.norad_id, three.norad_id)
    assert np.array_equal(two.params, three.params)
    assert (two.name == "").all()


def test_alpha5_catalogue_number():
    line1 = with_checksum("1 A0001" + ISS_1[7:])
    line2 = with_checksum("2 A0001" + ISS_2[7:])
    cat = Catalogue.from_tle(["TEST OBJECT", line1, line2])
    assert cat.norad_id.tolist() == [100001]  # 'A' = 10, as Alpha-5 defines
    assert cat.name.tolist() == ["TEST OBJECT"]


def test_bad_records_are_reported_with_line_numbers_and_skipped():
    bad_checksum = ISS_1[:68] + str((int(ISS_1[68]) + 1) % 10)
    bad_field = with_checksum(ISS_2[:26] + "x" + ISS_2[27:])
    lines = [
        "GOOD", ISS_1, ISS_2,                 # 1-3
        "BAD CHECKSUM", bad_checksum, ISS_2,  # 4-6
        "TRUNCATED", ISS_1[:50], ISS_2,       # 7-9
        "BAD FIELD", ISS_1, bad_field,        # 10-12
        "ORPHAN", ISS_1,                      # 13-14
    ]  # fmt: skip
    cat = Catalogue.from_tle(lines)
    assert len(cat) == 1
    reasons = {p.location: p.reason for p in cat.problems}
    assert "checksum" in reasons["line 5"]
    assert "truncated" in reasons["line 8"]
    assert "bad field" in reasons["line 11"]
    assert "not followed" in reasons["line 14"]
    with pytest.raises(CatalogueError, match="line 5: checksum"):
        Catalogue.from_tle(lines, strict=True)


def test_duplicates_keep_the_newest_epoch():
    older_1 = with_checksum(ISS_1[:18] + "20275.52268519" + ISS_1[32:])
    cat = Catalogue.from_tle([ISS_1, ISS_2, older_1, ISS_2])
    assert len(cat) == 1
    assert cat.epoch_jd[0] + cat.epoch_fr[0] == pytest.approx(2459124.5 + 0.52268519, abs=1e-8)
    assert any("duplicate" in p.reason for p in cat.problems)


def omm_fields(count=40):
    lines = NEW.read_text().splitlines()
    sats = [Satrec.twoline2rv(a, b) for a, b in zip(lines[1::3], lines[2::3])][:count]
    return [export_omm(s, name) for s, name in zip(sats, lines[0::3])]


def write_xml(path, records):
    segs = []
    for f in records:
        meta = "".join(
            f"<{k}>{f[k]}</{k}>"
            for k in ("OBJECT_NAME", "OBJECT_ID", "CENTER_NAME", "REF_FRAME", "TIME_SYSTEM",
                      "MEAN_ELEMENT_THEORY")
        )  # fmt: skip
        mean = "".join(
            f"<{k}>{f[k]}</{k}>"
            for k in ("EPOCH", "MEAN_MOTION", "ECCENTRICITY", "INCLINATION", "RA_OF_ASC_NODE",
                      "ARG_OF_PERICENTER", "MEAN_ANOMALY")
        )  # fmt: skip
        tle = "".join(
            f"<{k}>{f[k]}</{k}>"
            for k in ("EPHEMERIS_TYPE", "CLASSIFICATION_TYPE", "NORAD_CAT_ID", "ELEMENT_SET_NO",
                      "REV_AT_EPOCH", "BSTAR", "MEAN_MOTION_DOT", "MEAN_MOTION_DDOT")
        )  # fmt: skip
        segs.append(
            f"<omm id='CCSDS_OMM_VERS' version='2.0'><header><CREATION_DATE/><ORIGINATOR/>"
            f"</header><body><segment><metadata>{meta}</metadata><data><meanElements>{mean}"
            f"</meanElements><tleParameters>{tle}</tleParameters></data></segment></body></omm>"
        )
    path.write_text("<?xml version='1.0' encoding='UTF-8'?><ndm>" + "".join(segs) + "</ndm>")


@pytest.mark.parametrize("kind", ["json", "csv", "xml"])
def test_omm_formats_match_python_sgp4(tmp_path, kind):
    records = omm_fields()
    path = tmp_path / f"cat.{kind}"
    if kind == "json":
        path.write_text(json.dumps(records))
    elif kind == "csv":
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(records[0]))
            w.writeheader()
            w.writerows(records)
    else:
        write_xml(path, records)
    cat = Catalogue.from_omm(path)
    assert cat.problems == []
    assert len(cat) == len(records)
    assert cat.name[0] == records[0]["OBJECT_NAME"].strip()
    ref_sats = []
    for f in records:
        s = Satrec()
        initialize(s, f)
        ref_sats.append(s)
    jd = np.full(5, 2459124.5)
    fr = np.linspace(0.0, 1.0, 5)
    e, r, _ = cat.propagate(jd, fr)
    e_ref, r_ref, _ = SatrecArray(ref_sats).sgp4(jd, fr)
    ok = (e == 0) & (e_ref == 0)
    # python-sgp4 carries the OMM epoch as one float of days (about 1 us); we keep it
    # to the microsecond as a split, so allow a centimetre.
    assert np.abs(r - r_ref)[ok].max() < one_cm_km


def test_bad_omm_records_are_reported(tmp_path):
    records = omm_fields(3)
    del records[1]["MEAN_MOTION"]
    records[2]["ECCENTRICITY"] = "zero point one"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    cat = Catalogue.from_omm(path)
    assert len(cat) == 1
    assert [p.location for p in cat.problems] == ["record 2", "record 3"]
    assert "missing MEAN_MOTION" in cat.problems[0].reason
    assert "ECCENTRICITY" in cat.problems[1].reason
    with pytest.raises(CatalogueError, match="record 2"):
        Catalogue.from_omm(path, strict=True)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid OMM JSON"):
        Catalogue.from_omm(tmp_path / "junk.json")


def test_zarr_snapshot_round_trip_is_exact(tmp_path):
    cat = Catalogue.from_tle(NEW)
    cat.save_zarr(tmp_path / "snap.zarr")
    back = Catalogue.load_zarr(tmp_path / "snap.zarr")
    assert back.fingerprint() == cat.fingerprint()
    for key in Catalogue._ARRAYS:
        assert np.array_equal(getattr(back, key), getattr(cat, key)), key
    assert (back.name == cat.name).all() and (back.intl_designator == cat.intl_designator).all()
    assert (back.orbit_class == cat.orbit_class).all()
    sub = cat.subset(cat.orbit_class == "GEO")
    assert (sub.orbit_class == "GEO").all() and len(sub) == (cat.orbit_class == "GEO").sum()


def test_every_time_input_propagates_alike_and_absurd_ones_are_refused():
    """``propagate(np.datetime64(...), 0)`` once cast to JD 26,694,300 and spun for hours."""
    from astropy.time import Time

    from aposos.model import Site

    cat = Catalogue.from_tle(NEW)
    jd, fr = np.array([2459124.5]), np.array([17 / 24])  # 2020-10-02T17:00 UTC
    e, r, _ = cat.propagate(jd, fr)
    for t in (
        np.datetime64("2020-10-02T17:00"),
        "2020-10-02T17:00:00Z",
        Time("2020-10-02T17:00:00", scale="utc"),
    ):
        e2, r2, _ = cat.propagate(t)
        assert np.array_equal(e2, e)
        np.testing.assert_allclose(r2[e == 0], r[e == 0], rtol=0, atol=one_mm_km)
    ra, dec, _ = cat.radec(Site(33.67, 51.32, 3600), "2020-10-02T17:00:00")
    ra_ref, dec_ref, _ = cat.radec(Site(33.67, 51.32, 3600), jd, fr)
    assert np.array_equal(ra, ra_ref, equal_nan=True)
    with pytest.raises(TypeError, match="is a time, not a number of days"):
        cat.propagate(np.datetime64("2020-10-02T17:00"), 0)
    with pytest.raises(ValueError, match="between 1900 and 2100"):
        cat.propagate(26694300.0, 0.0)
    with pytest.raises(ValueError, match="time 1 is not finite"):
        cat.propagate(np.array([2459125.5, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="between 1900 and 2100"):
        cat.radec(Site(33.67, 51.32, 3600), Time(2500000.5, format="jd"))
