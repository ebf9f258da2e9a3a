"""The configuration files are pydantic dataclasses (``configs/center.toml`` ->
``CenterConfig``, ``stations/*.toml`` -> ``StationConfig``): a wrong key or type names
the file, the key and what it expects, in one line; the attributes callers use, and
``dataclasses.replace``, work as before."""

from __future__ import annotations

import dataclasses
import pickle
import tomllib
from pathlib import Path

import pytest

from aposos.center.config import CenterConfig, WorkerConfig, load_config
from aposos.station.config import StationConfig

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "center.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ('[center]\nport = "80"\n', "[center] port must be an integer, got '80'"),
        ("[center]\nport = true\n", "[center] port must be an integer, got True"),
        ("[center]\nmax_days_after_epoch = true\n", "max_days_after_epoch must be a number"),
        ("[center]\nproxy_headers = 0\n", "[center] proxy_headers must be true or false, got 0"),
        ("[center]\ndata_dir = 5\n", "[center] data_dir must be a string, got 5"),
        ("[center]\nhost = 127\n", "[center] host must be a string, got 127"),
        ("[worker]\nbatch_size = 1.5\n", "[worker] batch_size must be an integer, got 1.5"),
        ("[worker]\nnice = 20\n", "worker nice must be within 0..19"),
        ("[center]\ncolour = 1\nsize = 2\n", "[center] has unknown keys: colour, size"),
        ("[worker]\nspeed = 1\n", "[worker] has unknown keys: speed"),
        ("center = 3\n", "[center] must be a table"),
        ("[center]\npage_size = 0\n", "page_size must be in 1..max_page_size"),
    ],
)
def test_a_center_file_mistake_names_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_config(path)
    shown = str(info.value)
    assert message in shown and "\n" not in shown
    if "nice" not in message and "page_size" not in message:  # the checks across keys
        assert shown.startswith(f"{path}: ")


def test_the_center_file_resolves_paths_from_its_folder(tmp_path):
    path = write(tmp_path, '[center]\ndata_dir = "d"\nport = 9000\n[worker]\nnice = 3\n')
    cfg = load_config(path)
    assert cfg.data_dir == tmp_path / "d" and cfg.stations_dir == tmp_path / "stations"
    assert cfg.port == 9000 and cfg.worker.nice == 3 and cfg.worker.poll_seconds == 1.0
    assert cfg.database_url == f"sqlite:///{tmp_path / 'd' / 'center.sqlite'}"
    assert isinstance(cfg.max_days_after_epoch, float)
    assert pickle.loads(pickle.dumps(cfg)) == cfg  # what server_processes > 1 hands over
    # the shipped file loads, and replace() still makes checked copies
    shipped = load_config(REPO / "configs" / "center.toml")
    quiet = dataclasses.replace(shipped, worker=dataclasses.replace(shipped.worker, enabled=False))
    assert not quiet.worker.enabled and quiet.port == shipped.port
    assert cfg.with_overrides(port=8700, host=None).port == 8700
    with pytest.raises(ValueError, match=r"^\[center\] port must be an integer, got 'x'$"):
        cfg.with_overrides(port="x")
    assert CenterConfig(data_dir=str(tmp_path)).data_dir == tmp_path  # a path or a string
    with pytest.raises(ValueError):
        WorkerConfig(batch_size="64")


def _station_doc() -> dict:
    with open(REPO / "stations" / "iran.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize(
    "table, key, value, message",
    [
        ("site", "iod_station", True, "site.iod_station must be an integer, got True"),
        ("site", "iod_station", "1234", "site.iod_station must be an integer, got '1234'"),
        ("site", "latitude_deg", -91, "site.latitude_deg = -91 is outside [-90, 90]"),
        ("site", "code", "irn 1", "site.code = 'irn 1' is not valid (1-16 of A-Z 0-9 _ -)"),
        ("site", "name", " ", "site.name must be a non-empty string, got ' '"),
        ("telescope", "aperture_mm", 1, "telescope.aperture_mm = 1 is outside [1, 20000]"),
        ("telescope", "field_of_view_deg", [1.0], "telescope.field_of_view_deg must be a number or [width, height] in (0, 180) degrees, got [1.0]"),
        ("camera", "time_stamp", "middle", "camera.time_stamp = 'middle' must be one of start, mid, end"),
        ("camera", "dark_current_e_per_s", 1e5, "camera.dark_current_e_per_s = 100000.0 is outside [0, 10000.0]"),
        ("center", "url", "ftp://x.org", "center.url = 'ftp://x.org' is not valid (an http(s):// URL)"),
        ("simulator", "sky_mag_arcsec2", [22, 20], "simulator.sky_mag_arcsec2 must be a number or [low, high] within [10, 25], got [22, 20]"),
        ("simulator", "wind", 3, "simulator.wind is not a known key"),
    ],
)  # fmt: skip
def test_a_station_file_mistake_names_table_key_and_expectation(table, key, value, message):
    doc = _station_doc()
    doc[table][key] = value
    with pytest.raises(ValueError) as info:
        StationConfig.from_dict(doc, source="iran.toml")
    assert str(info.value) == f"iran.toml: 1 problem(s) in station file:\n  - {message}"


def test_station_tables_keep_their_attributes_and_replace():
    cfg = StationConfig.load(REPO / "stations" / "iran.toml")
    assert isinstance(cfg.simulator.seeing_fwhm_arcsec, tuple)
    assert isinstance(cfg.telescope.field_of_view_deg, tuple)
    assert isinstance(cfg.camera.bias_adu, float) and isinstance(cfg.camera.width_px, int)
    faster = cfg.with_simulator(exposure_s=1.0, cadence_s=3)
    assert faster.simulator.cadence_s == 3.0 and faster.site_info == cfg.site_info
    with pytest.raises(ValueError, match=r"^simulator.exposure_s = 0 is outside \[0.001, 3600\]$"):
        cfg.with_simulator(exposure_s=0)
    sim = dataclasses.replace(cfg.simulator, visit_s=120.0)
    assert dataclasses.replace(cfg, simulator=sim).simulator.visit_s == 120.0
