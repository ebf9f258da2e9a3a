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

:meth:`StationConfig.load` checks every key (each table is a pydantic dataclass:
strict types, ranges, unknown keys refused) and reports every problem in one
``ValueError``, one line each naming ``table.key``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic import dataclasses as pydantic_dataclasses

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
# a table of the station file: types checked strictly (true is not a number, "5" not an
# integer), unknown keys refused
table = pydantic_dataclasses.dataclass(
    frozen=True, config=ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
)


def Within(lo: float, hi: float, *, lo_open: bool = False):  # noqa: N802 - reads as a type
    """A number in [lo, hi] (or (lo, hi] when ``lo_open``)."""
    return Field(gt=lo, le=hi) if lo_open else Field(ge=lo, le=hi)


def _text(ok=None, hint: str = ""):
    """A non-empty string, optionally one that ``ok`` accepts."""

    def check(value: str) -> str:
        if not value.strip():
            raise ValueError(f"must be a non-empty string, got {value!r}")
        if ok is not None and not ok(value):
            raise ValueError(f"= {value!r} is not valid ({hint})")
        return value

    return AfterValidator(check)


def _pair(kind: str, lo: float, hi: float, ordered: bool):
    """A number (both the same) or a two-number list; ``ordered``: low <= high."""

    def read(value):
        if value is None:  # not given (replace() passes the default back)
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value, value]
        ok = (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
        )
        if ok and ordered:
            ok = lo <= value[0] <= value[1] <= hi
        elif ok:
            ok = all(lo < x < hi for x in value)
        if not ok:
            raise ValueError(f"must be {kind}, got {value!r}")
        return (float(value[0]), float(value[1]))

    return BeforeValidator(read)


Text = Annotated[str, _text()]
StationCode = Annotated[str, _text(lambda s: _is_station_code(s), "1-16 of A-Z 0-9 _ -")]
HttpUrl = Annotated[str, _text(lambda s: _is_http_url(s), "an http(s):// URL")]
FieldOfView = Annotated[
    tuple[float, float] | None,
    _pair("a number or [width, height] in (0, 180) degrees", 0, 180, ordered=False),
]


def RangePair(lo: float, hi: float):  # noqa: N802 - reads as a type
    return Annotated[
        tuple[float, float],
        _pair(f"a number or [low, high] within [{lo}, {hi}]", lo, hi, ordered=True),
    ]


@table
class SiteConfig:
    code: StationCode
    iod_station: Annotated[int, Within(0, 9999)]
    latitude_deg: Annotated[float, Within(-90, 90)]
    longitude_deg: Annotated[float, Within(-180, 180)]
    altitude_m: Annotated[float, Within(-500, 10000)]
    name: Text = ""


@table
class TelescopeConfig:
    aperture_mm: Annotated[float, Within(1, 20000, lo_open=True)]
    focal_length_mm: Annotated[float, Within(1, 200000)]
    field_of_view_deg: FieldOfView = None
    obstruction_ratio: Annotated[float, Within(0, 0.9)] = 0.0  # central obstruction / aperture
    spider_vanes: Annotated[int, Within(0, 6)] = 0  # 0 (refractor, off-axis) or 2..6 vanes
    spider_angle_deg: Annotated[float, Within(-360, 360)] = 0.0  # from +x in the camera frame
    throughput: Annotated[float, Within(0.01, 1.0)] = 0.5  # optics x filter x quantum efficiency
    name: Text = ""

    @property
    def collecting_area_cm2(self) -> float:
        r_cm = self.aperture_mm / 20.0
        return math.pi * r_cm * r_cm * (1.0 - self.obstruction_ratio**2)


@table
class CameraConfig:
    width_px: Annotated[int, Within(16, 65536)]
    height_px: Annotated[int, Within(16, 65536)]
    pixel_size_um: Annotated[float, Within(0.5, 100)]
    gain_e_per_adu: Annotated[float, Within(0.01, 100)]
    read_noise_e: Annotated[float, Within(0, 1000)]
    saturation_adu: Annotated[int, Within(1, 65535)]
    dark_current_e_per_s: Annotated[float, Within(0, 1e4)]
    shutter_latency_s: Annotated[float, Within(0, 10)]
    bias_adu: Annotated[float, Within(0, 60000)]
    time_stamp: Literal[TIME_STAMPS]
    full_well_e: Annotated[float | None, Within(1, 1e7)] = None
    sensor: Literal[SENSORS] = "ccd"
    name: Text = ""
    filter: Text = "CLEAR"

    @property
    def full_well(self) -> float:
        """Charge (electrons) a pixel holds before it blooms."""
        if self.full_well_e is not None:
            return float(self.full_well_e)
        return (self.saturation_adu - self.bias_adu) * self.gain_e_per_adu


@table
class CenterConfig:
    """The data center: its URL, the token file, and optionally a CA to pin (PEM)
    instead of the system's certificate authorities."""

    url: HttpUrl
    token_file: Text
    ca_file: Text = ""


@table
class SimulatorConfig:
    """Defaults for the sky simulator (all optional in the TOML)."""

    exposure_s: Annotated[float, Within(0.001, 3600)] = 2.0  # sidereal and stare frames
    rate_exposure_s: Annotated[float, Within(0.001, 3600)] = 0.5  # rate tracking: short
    cadence_s: Annotated[float, Within(0.01, 86400)] = 6.0  # between shutter openings
    visit_s: Annotated[float, Within(1, 86400)] = 60.0  # frames per pointing, planned fields
    seeing_fwhm_arcsec: RangePair(0.3, 20) = (1.5, 3.5)  # range drawn per visit
    sky_mag_arcsec2: RangePair(10, 25) = (19.5, 21.0)  # zenith sky, range per visit
    extinction_mag_per_airmass: Annotated[float, Within(0, 2)] = 0.2
    pointing_error_deg: Annotated[float, Within(0, 10)] = 0.5
    min_elevation_deg: Annotated[float, Within(0, 89)] = 25.0


TABLES = {
    "site": SiteConfig,
    "telescope": TelescopeConfig,
    "camera": CameraConfig,
    "center": CenterConfig,
    "simulator": SimulatorConfig,
}
REQUIRED = ("site", "telescope", "camera", "center")


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

    def with_simulator(self, **changes) -> StationConfig:
        """A copy with some simulator defaults changed; ``ValueError`` (one line per
        problem, as :meth:`load` gives) when a value is out of its range."""
        try:
            sim = replace(self.simulator, **changes)
        except ValidationError as exc:
            lines = [
                _problem("simulator", SimulatorConfig, e) for e in exc.errors(include_url=False)
            ]
            raise ValueError("; ".join(lines)) from None
        return replace(self, simulator=sim)

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
        data = data if isinstance(data, dict) else {}
        problems, made = [], {}
        for name, kind in TABLES.items():
            if name not in data:
                if name in REQUIRED:
                    problems.append(f"[{name}] table is missing")
                continue
            if not isinstance(data[name], dict):
                problems.append(f"{name} must be a table")
                continue
            try:
                made[name] = kind(**data[name])
            except ValidationError as exc:
                problems += [_problem(name, kind, e) for e in exc.errors(include_url=False)]
        made.setdefault("simulator", SimulatorConfig() if "simulator" not in data else None)
        problems += _cross_checks(*(made.get(n) for n in ("telescope", "camera", "simulator")))
        if problems:
            lines = "\n  - ".join(problems)
            raise ValueError(f"{source}: {len(problems)} problem(s) in station file:\n  - {lines}")
        extra = {k: v for k, v in data.items() if k not in TABLES}
        return cls(made["site"], made["telescope"], made["camera"], made["center"],
                   made["simulator"], path, extra)  # fmt: skip


KINDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a number",
    "string_type": "a non-empty string",
}


def _problem(name: str, kind: type, error: dict) -> str:
    """One pydantic problem as one line naming ``table.key``."""
    key = str(error["loc"][0]) if error["loc"] else "?"
    where, value = f"{name}.{key}", error.get("input")
    what = error["type"]
    if what in ("missing", "missing_argument"):
        return f"{where} is missing"
    if what == "unexpected_keyword_argument":
        return f"{where} is not a known key"
    if what in KINDS:
        return f"{where} must be {KINDS[what]}, got {value!r}"
    if what == "value_error":  # our validators: the rest of the line
        return f"{where} {error['ctx']['error']}"
    info = kind.__pydantic_fields__[key]
    if what == "literal_error":
        options = get_args(info.annotation)
        return f"{where} = {value!r} must be one of {', '.join(options)}"
    if what in ("greater_than", "greater_than_equal", "less_than_equal"):
        lo = next(getattr(m, a) for m in info.metadata for a in ("ge", "gt") if hasattr(m, a))
        hi = next(m.le for m in info.metadata if hasattr(m, "le"))
        return f"{where} = {value} is outside [{lo}, {hi}]"
    return f"{where}: {error['msg']}"


def _is_station_code(s: str) -> bool:
    return 1 <= len(s) <= 16 and all(
        c.isascii() and (c.isupper() or c.isdigit() or c in "_-") for c in s
    )


def _is_http_url(s: str) -> bool:
    return s.startswith(("http://", "https://")) and len(s) > len("https://")


def _cross_checks(telescope, camera, sim) -> list[str]:
    """Checks across keys, made where the tables involved are themselves valid (None
    where they are not)."""
    problems = []
    if telescope is not None and camera is not None and telescope.field_of_view_deg:
        scale = camera.pixel_size_um * 1e-3 / telescope.focal_length_mm * ARCSEC_PER_RAD / 3600.0
        derived = (camera.width_px * scale, camera.height_px * scale)
        for axis, stated, got in zip("xy", telescope.field_of_view_deg, derived, strict=True):
            if abs(stated - got) > FOV_TOLERANCE * got:
                problems.append(
                    f"telescope.field_of_view_deg: {axis} {stated:.4f} deg disagrees with "
                    f"{got:.4f} deg derived from focal_length_mm and the camera pixels"
                )
    if camera is not None and camera.bias_adu >= camera.saturation_adu:
        problems.append(
            f"camera.bias_adu {camera.bias_adu} must be below saturation_adu "
            f"{camera.saturation_adu}"
        )
    for key in ("exposure_s", "rate_exposure_s"):
        if sim is not None and sim.cadence_s < getattr(sim, key):
            problems.append(
                f"simulator.cadence_s {sim.cadence_s} is shorter than {key} {getattr(sim, key)}"
            )
    if telescope is not None and telescope.spider_vanes == 1:
        problems.append("telescope.spider_vanes must be 0 or 2 to 6")
    return problems


# The hand-written reader of the first version, kept for the agent's [agent] table
# (agent_config.py subclasses it); the tables above are pydantic dataclasses.
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
