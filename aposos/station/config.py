"""Station configuration: ``stations/<name>.toml`` -> :class:`StationConfig`.

A station file has four required tables and one optional one::

    [site]        code, iod_station, latitude_deg, longitude_deg (east +), altitude_m
    [telescope]   aperture_mm, focal_length_mm, [field_of_view_deg], [obstruction_ratio],
                  [spider_vanes], [spider_angle_deg], [throughput], [name]
    [camera]      width_px, height_px, pixel_size_um, gain_e_per_adu, read_noise_e,
                  saturation_adu, dark_current_e_per_s, shutter_latency_s, bias_adu,
                  time_stamp ("start" | "mid" | "end"), [full_well_e], [sensor], [name], [filter]
    [center]      url, token_file, [ca_file] (a CA to pin for the HTTPS link)
    [simulator]   optional defaults for ``aposos station simulate`` (exposure, seeing, sky)

Other tables (``[agent]``, ...) belong to other tools and are kept, unchecked, in
:attr:`StationConfig.extra`; unknown keys inside the tables above are errors.

The ``[site]`` table is a contract other tools rely on: ``code`` is the TDM
``PARTICIPANT_1`` and the name used in reports, ``iod_station`` the 4-digit IOD
station number.

Timing convention: the camera stamps ``DATE-OBS`` at the moment named by
``time_stamp`` (shutter open, mid-exposure or shutter close), and the shutter
really opens/closes ``shutter_latency_s`` after the stamped event. So the true
exposure start is ``DATE-OBS + shutter_latency_s - {0, EXPTIME/2, EXPTIME}``.

:meth:`StationConfig.load` checks every key and reports every problem in one
``ValueError``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aposos.model import Site

__all__ = [
    "CameraConfig",
    "CenterConfig",
    "SimulatorConfig",
    "SiteConfig",
    "StationConfig",
    "TelescopeConfig",
]

ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0
TIME_STAMPS = ("start", "mid", "end")
SENSORS = ("ccd", "cmos")
# a stated field of view must agree with the one derived from optics and pixels
FOV_TOLERANCE = 0.02


@dataclass(frozen=True)
class SiteConfig:
    code: str
    iod_station: int
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    name: str = ""


@dataclass(frozen=True)
class TelescopeConfig:
    aperture_mm: float
    focal_length_mm: float
    field_of_view_deg: tuple[float, float] | None = None
    obstruction_ratio: float = 0.0  # central obstruction diameter / aperture
    spider_vanes: int = 0  # 0 (refractor, off-axis) or 2, 3, 4 vanes
    spider_angle_deg: float = 0.0  # vane angle in the camera frame, from +x
    throughput: float = 0.5  # optics x filter x quantum efficiency
    name: str = ""

    @property
    def collecting_area_cm2(self) -> float:
        r_cm = self.aperture_mm / 20.0
        return math.pi * r_cm * r_cm * (1.0 - self.obstruction_ratio**2)


@dataclass(frozen=True)
class CameraConfig:
    width_px: int
    height_px: int
    pixel_size_um: float
    gain_e_per_adu: float
    read_noise_e: float
    saturation_adu: int
    dark_current_e_per_s: float
    shutter_latency_s: float
    bias_adu: float
    time_stamp: str
    full_well_e: float | None = None
    sensor: str = "ccd"
    name: str = ""
    filter: str = "CLEAR"

    @property
    def full_well(self) -> float:
        """Charge (electrons) a pixel holds before it blooms."""
        if self.full_well_e is not None:
            return float(self.full_well_e)
        return (self.saturation_adu - self.bias_adu) * self.gain_e_per_adu


@dataclass(frozen=True)
class CenterConfig:
    """The data center: its URL, the token file, and optionally a CA to pin (PEM)
    instead of the system's certificate authorities."""

    url: str
    token_file: str
    ca_file: str = ""


@dataclass(frozen=True)
class SimulatorConfig:
    """Defaults for the sky simulator (all optional in the TOML)."""

    exposure_s: float = 2.0  # sidereal and stare frames
    rate_exposure_s: float = 0.5  # rate tracking: short, so stars trail less
    cadence_s: float = 6.0  # time between successive shutter openings
    visit_s: float = 60.0  # frames per pointing, for planned fields
    seeing_fwhm_arcsec: tuple[float, float] = (1.5, 3.5)  # range drawn per visit
    sky_mag_arcsec2: tuple[float, float] = (19.5, 21.0)  # zenith sky, range per visit
    extinction_mag_per_airmass: float = 0.2
    pointing_error_deg: float = 0.5
    min_elevation_deg: float = 25.0


@dataclass(frozen=True)
class StationConfig:
    """A station: site, optics, camera, data center, simulator defaults.

    Examples
    --------
    >>> cfg = StationConfig.load("stations/iran.toml")  # doctest: +SKIP
    >>> cfg.site.latitude_deg, round(cfg.pixel_scale_arcsec, 3)  # doctest: +SKIP
    (33.674, 1.485)
    """

    site_info: SiteConfig
    telescope: TelescopeConfig
    camera: CameraConfig
    center: CenterConfig
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    path: Path | None = None
    extra: dict = field(default_factory=dict)  # tables owned by other tools ([agent], ...)

    @property
    def code(self) -> str:
        return self.site_info.code

    @property
    def site(self) -> Site:
        """The site as the orbit layer takes it."""
        s = self.site_info
        return Site(s.latitude_deg, s.longitude_deg, s.altitude_m)

    @property
    def pixel_scale_arcsec(self) -> float:
        """Plate scale at the optical axis, arcsec per pixel."""
        return self.camera.pixel_size_um * 1e-3 / self.telescope.focal_length_mm * ARCSEC_PER_RAD

    @property
    def field_of_view_deg(self) -> tuple[float, float]:
        """Field of view (width, height) in degrees, derived from optics and pixels."""
        scale = self.pixel_scale_arcsec / 3600.0
        return (self.camera.width_px * scale, self.camera.height_px * scale)

    @property
    def token_path(self) -> Path:
        """The token file, relative paths taken from the station file's folder."""
        p = Path(self.center.token_file).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    @property
    def ca_path(self) -> Path | None:
        """The pinned CA file (relative to the station file's folder), if any."""
        if not self.center.ca_file:
            return None
        p = Path(self.center.ca_file).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    @classmethod
    def load(cls, path: str | Path) -> StationConfig:
        """Read and validate a station TOML file.

        Raises
        ------
        FileNotFoundError
            The file does not exist.
        ValueError
            The file is not TOML, or has problems; the message lists every one.
        """
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path), path=path)

    @classmethod
    def from_dict(
        cls, data: dict, *, source: str = "<station>", path: Path | None = None
    ) -> StationConfig:
        """Validate a parsed station document (see :meth:`load`)."""
        v = _Validator(data)
        site = SiteConfig(
            code=v.text("site", "code", pattern_ok=_is_station_code, hint="1-16 of A-Z 0-9 _ -"),
            iod_station=v.integer("site", "iod_station", lo=0, hi=9999),
            latitude_deg=v.number("site", "latitude_deg", lo=-90, hi=90),
            longitude_deg=v.number("site", "longitude_deg", lo=-180, hi=180),
            altitude_m=v.number("site", "altitude_m", lo=-500, hi=10000),
            name=v.text("site", "name", required=False, default=""),
        )
        telescope = TelescopeConfig(
            aperture_mm=v.number("telescope", "aperture_mm", lo=1, hi=20000, lo_open=True),
            focal_length_mm=v.number("telescope", "focal_length_mm", lo=1, hi=200000),
            field_of_view_deg=v.fov("telescope", "field_of_view_deg"),
            obstruction_ratio=v.number(
                "telescope", "obstruction_ratio", lo=0, hi=0.9, required=False, default=0.0
            ),
            spider_vanes=v.integer(
                "telescope", "spider_vanes", lo=0, hi=6, required=False, default=0
            ),
            spider_angle_deg=v.number(
                "telescope", "spider_angle_deg", lo=-360, hi=360, required=False, default=0.0
            ),
            throughput=v.number(
                "telescope", "throughput", lo=0.01, hi=1.0, required=False, default=0.5
            ),
            name=v.text("telescope", "name", required=False, default=""),
        )
        camera = CameraConfig(
            width_px=v.integer("camera", "width_px", lo=16, hi=65536),
            height_px=v.integer("camera", "height_px", lo=16, hi=65536),
            pixel_size_um=v.number("camera", "pixel_size_um", lo=0.5, hi=100),
            gain_e_per_adu=v.number("camera", "gain_e_per_adu", lo=0.01, hi=100),
            read_noise_e=v.number("camera", "read_noise_e", lo=0, hi=1000),
            saturation_adu=v.integer("camera", "saturation_adu", lo=1, hi=65535),
            dark_current_e_per_s=v.number("camera", "dark_current_e_per_s", lo=0, hi=1e4),
            shutter_latency_s=v.number("camera", "shutter_latency_s", lo=0, hi=10),
            bias_adu=v.number("camera", "bias_adu", lo=0, hi=60000),
            time_stamp=v.choice("camera", "time_stamp", TIME_STAMPS),
            full_well_e=v.number("camera", "full_well_e", lo=1, hi=1e7, required=False),
            sensor=v.choice("camera", "sensor", SENSORS, required=False, default="ccd"),
            name=v.text("camera", "name", required=False, default=""),
            filter=v.text("camera", "filter", required=False, default="CLEAR"),
        )
        center = CenterConfig(
            url=v.text("center", "url", pattern_ok=_is_http_url, hint="an http(s):// URL"),
            token_file=v.text("center", "token_file"),
            ca_file=v.text("center", "ca_file", required=False, default=""),
        )
        d = SimulatorConfig()
        sim = SimulatorConfig(
            exposure_s=v.number("simulator", "exposure_s", lo=0.001, hi=3600, **_opt(d.exposure_s)),
            rate_exposure_s=v.number(
                "simulator", "rate_exposure_s", lo=0.001, hi=3600, **_opt(d.rate_exposure_s)
            ),
            cadence_s=v.number("simulator", "cadence_s", lo=0.01, hi=86400, **_opt(d.cadence_s)),
            visit_s=v.number("simulator", "visit_s", lo=1, hi=86400, **_opt(d.visit_s)),
            seeing_fwhm_arcsec=v.range_pair(
                "simulator", "seeing_fwhm_arcsec", 0.3, 20, d.seeing_fwhm_arcsec
            ),
            sky_mag_arcsec2=v.range_pair("simulator", "sky_mag_arcsec2", 10, 25, d.sky_mag_arcsec2),
            extinction_mag_per_airmass=v.number(
                "simulator",
                "extinction_mag_per_airmass",
                lo=0,
                hi=2,
                **_opt(d.extinction_mag_per_airmass),
            ),  # fmt: skip
            pointing_error_deg=v.number(
                "simulator", "pointing_error_deg", lo=0, hi=10, **_opt(d.pointing_error_deg)
            ),
            min_elevation_deg=v.number(
                "simulator", "min_elevation_deg", lo=0, hi=89, **_opt(d.min_elevation_deg)
            ),
        )
        extra = v.unknown_keys(
            {
                "site": SiteConfig,
                "telescope": TelescopeConfig,
                "camera": CameraConfig,
                "center": CenterConfig,
                "simulator": SimulatorConfig,
            }
        )
        problems = v.problems + _cross_checks(site, telescope, camera, sim)
        if problems:
            lines = "\n  - ".join(problems)
            raise ValueError(f"{source}: {len(problems)} problem(s) in station file:\n  - {lines}")
        return cls(site, telescope, camera, center, sim, path, extra)


def _opt(default) -> dict:
    return {"required": False, "default": default}


def _is_station_code(s: str) -> bool:
    return 1 <= len(s) <= 16 and all(
        c.isascii() and (c.isupper() or c.isdigit() or c in "_-") for c in s
    )


def _is_http_url(s: str) -> bool:
    return s.startswith(("http://", "https://")) and len(s) > len("https://")


def _cross_checks(site, telescope, camera, sim) -> list[str]:
    """Checks across keys, made where the keys involved are themselves valid."""
    problems = []
    fl_mm, pix_um = telescope.focal_length_mm, camera.pixel_size_um
    if telescope.field_of_view_deg is not None and None not in (
        fl_mm,
        pix_um,
        camera.width_px,
        camera.height_px,
    ):
        scale = pix_um * 1e-3 / fl_mm * ARCSEC_PER_RAD / 3600.0
        derived = (camera.width_px * scale, camera.height_px * scale)
        for axis, stated, got in zip("xy", telescope.field_of_view_deg, derived, strict=True):
            if abs(stated - got) > FOV_TOLERANCE * got:
                problems.append(
                    f"telescope.field_of_view_deg: {axis} {stated:.4f} deg disagrees with "
                    f"{got:.4f} deg derived from focal_length_mm and the camera pixels"
                )
    if None not in (camera.bias_adu, camera.saturation_adu):
        if camera.bias_adu >= camera.saturation_adu:
            problems.append(
                f"camera.bias_adu {camera.bias_adu} must be below saturation_adu "
                f"{camera.saturation_adu}"
            )
    for key in ("exposure_s", "rate_exposure_s"):
        if None not in (sim.cadence_s, getattr(sim, key)) and sim.cadence_s < getattr(sim, key):
            problems.append(
                f"simulator.cadence_s {sim.cadence_s} is shorter than {key} {getattr(sim, key)}"
            )
    if telescope.spider_vanes == 1:
        problems.append("telescope.spider_vanes must be 0 or 2 to 6")
    return problems


class _Validator:
    """Reads typed values out of the TOML tables, collecting problems instead of raising."""

    def __init__(self, data: dict):
        self.data = data if isinstance(data, dict) else {}
        self.problems: list[str] = []
        self._seen: dict[str, set[str]] = {}
        for table in ("site", "telescope", "camera", "center"):
            if table not in self.data:
                self.problems.append(f"[{table}] table is missing")
            elif not isinstance(self.data[table], dict):
                self.problems.append(f"{table} must be a table")

    def _get(self, table: str, key: str, required: bool) -> tuple[bool, Any]:
        self._seen.setdefault(table, set()).add(key)
        tab = self.data.get(table)
        if not isinstance(tab, dict):
            return False, None  # the missing table is reported once
        if key not in tab:
            if required:
                self.problems.append(f"{table}.{key} is missing")
            return False, None
        return True, tab[key]

    def number(self, table, key, *, lo, hi, required=True, default=None, lo_open=False):
        found, value = self._get(table, key, required)
        if not found:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.problems.append(f"{table}.{key} must be a number, got {value!r}")
            return default
        if value < lo or value > hi or (lo_open and value == lo):
            self.problems.append(f"{table}.{key} = {value} is outside [{lo}, {hi}]")
            return default
        return float(value)

    def integer(self, table, key, *, lo, hi, required=True, default=None):
        found, value = self._get(table, key, required)
        if not found:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(f"{table}.{key} must be an integer, got {value!r}")
            return default
        if not lo <= value <= hi:
            self.problems.append(f"{table}.{key} = {value} is outside [{lo}, {hi}]")
            return default
        return int(value)

    def text(self, table, key, *, required=True, default=None, pattern_ok=None, hint=""):
        found, value = self._get(table, key, required)
        if not found:
            return default
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{table}.{key} must be a non-empty string, got {value!r}")
            return default
        if pattern_ok is not None and not pattern_ok(value):
            self.problems.append(f"{table}.{key} = {value!r} is not valid ({hint})")
            return default
        return value

    def choice(self, table, key, options, *, required=True, default=None):
        found, value = self._get(table, key, required)
        if not found:
            return default
        if value not in options:
            self.problems.append(f"{table}.{key} = {value!r} must be one of {', '.join(options)}")
            return default
        return value

    def fov(self, table, key):
        found, value = self._get(table, key, False)
        if not found:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value, value]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
            or not all(0 < x < 180 for x in value)
        ):
            self.problems.append(
                f"{table}.{key} must be a number or [width, height] in (0, 180) degrees, got {value!r}"
            )
            return None
        return (float(value[0]), float(value[1]))

    def range_pair(self, table, key, lo, hi, default):
        found, value = self._get(table, key, False)
        if not found:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value, value]
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
        )
        if not ok or not (lo <= value[0] <= value[1] <= hi):
            self.problems.append(
                f"{table}.{key} must be a number or [low, high] within [{lo}, {hi}], got {value!r}"
            )
            return default
        return (float(value[0]), float(value[1]))

    def unknown_keys(self, tables: dict[str, type]) -> dict:
        """Flag unknown keys in our tables; return the other tables untouched."""
        extra = {}
        for name, tab in self.data.items():
            if name not in tables:
                extra[name] = tab
                continue
            if not isinstance(tab, dict):
                if name == "simulator":
                    self.problems.append(f"{name} must be a table")
                continue
            for key in tab:
                if key not in self._seen.get(name, set()):
                    self.problems.append(f"{name}.{key} is not a known key")
        return extra
