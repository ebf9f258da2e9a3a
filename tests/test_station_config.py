"""Station configuration: the shipped station files and validation of bad ones."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from aposos.model import Site
from aposos.station.config import StationConfig

STATIONS = Path(__file__).resolve().parents[1] / "stations"
ARCSEC_PER_RAD = 180 / math.pi * 3600


def _doc(name: str = "iran") -> dict:
    with open(STATIONS / f"{name}.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize("name", ["iran", "pakistan", "peru"])
def test_shipped_station_files_load(name):
    cfg = StationConfig.load(STATIONS / f"{name}.toml")
    s = cfg.site_info
    assert len(s.code) == 4 and s.code.isupper()
    assert 1000 <= s.iod_station <= 9999
    assert isinstance(cfg.site, Site)
    assert cfg.site == Site(s.latitude_deg, s.longitude_deg, s.altitude_m)
    # plate scale from first principles: 206265 arcsec/rad * pixel / focal length
    expected = cfg.camera.pixel_size_um * 1e-3 / cfg.telescope.focal_length_mm * ARCSEC_PER_RAD
    assert cfg.pixel_scale_arcsec == pytest.approx(expected, rel=1e-12)
    assert 1.0 <= cfg.pixel_scale_arcsec <= 2.0
    assert cfg.field_of_view_deg[0] == pytest.approx(cfg.telescope.field_of_view_deg[0], rel=0.02)
    assert cfg.camera.time_stamp in ("start", "mid", "end")
    assert cfg.center.url.startswith("https://")


def test_station_codes_and_sites_are_distinct():
    cfgs = [StationConfig.load(STATIONS / f"{n}.toml") for n in ("iran", "pakistan", "peru")]
    assert len({c.code for c in cfgs}) == 3
    assert len({c.site_info.iod_station for c in cfgs}) == 3
    iran, pakistan, peru = cfgs
    assert iran.site.latitude_deg == pytest.approx(33.67, abs=0.1)  # Iranian National Observatory
    assert iran.site.longitude_deg == pytest.approx(51.32, abs=0.1)
    assert pakistan.site.latitude_deg > 30 and 60 < pakistan.site.longitude_deg < 80
    assert peru.site.latitude_deg < 0 and peru.site.longitude_deg < 0  # south and west
    assert iran.camera.width_px == 4096 and pakistan.camera.width_px == 2048


def test_every_problem_is_listed_at_once(tmp_path):
    doc = _doc()
    doc["site"]["code"] = "irn 1"  # bad characters
    doc["site"]["iod_station"] = 123456
    doc["site"]["latitude_deg"] = 95.0
    del doc["site"]["altitude_m"]
    doc["telescope"]["focal_length_mm"] = "long"
    doc["camera"]["time_stamp"] = "middle"
    doc["camera"]["gain_e_per_adu"] = True
    doc["camera"]["colour"] = "mono"
    doc["center"]["url"] = "ftp://example.org"
    doc["simulator"]["seeing_fwhm_arcsec"] = [3.0, 1.0]
    path = tmp_path / "bad.toml"
    path.write_text(_to_toml(doc))
    with pytest.raises(ValueError) as info:
        StationConfig.load(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in (
        "site.code",
        "site.iod_station",
        "site.latitude_deg",
        "site.altitude_m is missing",
        "telescope.focal_length_mm must be a number",
        "camera.time_stamp",
        "camera.gain_e_per_adu must be a number",
        "camera.colour is not a known key",
        "center.url",
        "simulator.seeing_fwhm_arcsec",
    ):
        assert fragment in message, fragment
    assert "10 problem(s)" in message


def test_missing_tables_are_reported():
    with pytest.raises(ValueError) as info:
        StationConfig.from_dict({"site": _doc()["site"]}, source="partial.toml")
    message = str(info.value)
    for table in ("telescope", "camera", "center"):
        assert f"[{table}] table is missing" in message
    assert "partial.toml" in message


def test_cross_checks(tmp_path):
    doc = _doc()
    doc["telescope"]["field_of_view_deg"] = [2.5, 2.5]  # optics give 1.69 deg
    doc["camera"]["saturation_adu"] = 50000
    doc["camera"]["bias_adu"] = 55000.0
    doc["simulator"]["cadence_s"] = 1.0  # shorter than the 2 s exposure
    with pytest.raises(ValueError) as info:
        StationConfig.from_dict(doc)
    message = str(info.value)
    assert "field_of_view_deg" in message and "derived" in message
    assert "bias_adu" in message
    assert "cadence_s" in message
    assert "4 problem(s)" in message  # the field of view fails on both axes


def test_not_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[site\ncode = 'X'\n")
    with pytest.raises(ValueError, match="broken.toml: not valid TOML"):
        StationConfig.load(path)


def test_other_tables_are_kept_and_token_path_is_relative_to_the_file(tmp_path):
    doc = _doc()
    doc["agent"] = {"watch": "/data/frames"}
    doc["center"]["token_file"] = "secrets/token"
    path = tmp_path / "station.toml"
    path.write_text(_to_toml(doc))
    cfg = StationConfig.load(path)
    # [planning] belongs to the data center's planner: kept, unchecked, like [agent]
    assert cfg.extra == {"agent": {"watch": "/data/frames"}, "planning": doc["planning"]}
    assert cfg.token_path == tmp_path / "secrets" / "token"


def test_optional_defaults():
    doc = _doc()
    for key in ("full_well_e", "sensor", "name", "filter"):
        doc["camera"].pop(key, None)
    doc.pop("simulator")
    cfg = StationConfig.from_dict(doc)
    cam = cfg.camera
    assert cam.sensor == "ccd" and cam.filter == "CLEAR"
    assert cam.full_well == pytest.approx((cam.saturation_adu - cam.bias_adu) * cam.gain_e_per_adu)
    assert cfg.simulator.exposure_s == 2.0


def _to_toml(doc: dict) -> str:
    """A minimal TOML writer for the tables of a station file."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = []
    for table, content in doc.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {value(v)}" for k, v in content.items()]
        lines.append("")
    return "\n".join(lines)
