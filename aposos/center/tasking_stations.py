"""What the planner needs to know about each station, read from ``stations/*.toml``.

The data center does not import the station wing; it reads the few keys of a station
file that planning needs, and the optional ``[planning]`` table that belongs to it::

    [planning]                      # read by the data center's planner
    min_elevation_deg = 20.0        # no pointing lower than this
    moon_separation_deg = 25.0      # keep this far from the Moon while it is up
    slew_deg_per_s = 2.0            # mount slew speed
    settle_s = 8.0                  # after a slew, before the first frame
    frames = 10                     # frames per pointing, all tracking modes
    stare_exposure_s = 2.0          # GEO stare frames (default: [simulator] exposure_s)

Exposures and the time between frames come from the ``[simulator]`` table the station
file already has (``exposure_s`` sidereal, ``rate_exposure_s`` rate tracking,
``cadence_s`` from one shutter opening to the next), as do the typical seeing, sky
brightness and extinction.

Limiting magnitude: a point source that reaches S/N 5 in an aperture of radius one
seeing FWHM (94 % of a Gaussian's light) against sky, dark current and read noise, at
the zenith above the atmosphere (extinction is added to the object's expected
magnitude instead). Photon flux of magnitude 0: 4.0e6 photons s^-1 cm^-2 over the broad
unfiltered band, the zero point the station simulator uses.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from aposos.correlate.sites import read_station_site
from aposos.model import Site

__all__ = ["MODES", "ModeSetup", "StationPlanning", "load_planning_stations"]

MODES = ("sidereal", "rate", "stare")
PHOTON_FLUX_MAG0 = 4.0e6  # photons s^-1 cm^-2, broad unfiltered band
SNR_DETECT = 5.0
APERTURE_FRACTION = 0.94  # light of a Gaussian within one FWHM of its centre
ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0

PLANNING_DEFAULTS = {
    "min_elevation_deg": 20.0,
    "moon_separation_deg": 25.0,
    "slew_deg_per_s": 2.0,
    "settle_s": 8.0,
    "frames": 10,
    "stare_exposure_s": None,
}
_PLANNING_RANGES = {
    "min_elevation_deg": (0.0, 89.0),
    "moon_separation_deg": (0.0, 90.0),
    "slew_deg_per_s": (0.01, 100.0),
    "settle_s": (0.0, 600.0),
    "frames": (1, 1000),
    "stare_exposure_s": (0.001, 3600.0),
}


@dataclass(frozen=True)
class ModeSetup:
    """Frames of one pointing in one tracking mode."""

    exposure_s: float
    frames: int
    cadence_s: float  # shutter opening to the next

    @property
    def duration_s(self) -> float:
        """From the first shutter opening to the end of the last exposure."""
        return (self.frames - 1) * self.cadence_s + self.exposure_s


@dataclass(frozen=True)
class StationPlanning:
    """One station as the planner sees it."""

    code: str
    site: Site
    field_deg: float  # the smaller side of the field of view
    min_elevation_deg: float
    moon_separation_deg: float
    slew_deg_per_s: float
    settle_s: float
    modes: dict[str, ModeSetup]
    limiting_mag: dict[str, float]  # per tracking mode, point source, zenith, no extinction
    extinction_mag_per_airmass: float
    path: str = ""
    seeing_fwhm_arcsec: float = 2.5  # typical; for the trailing loss of streaks
    extra: dict = field(default_factory=dict)

    def slew_s(self, angle_deg: float) -> float:
        """Slew and settle time for a move of ``angle_deg``."""
        return angle_deg / self.slew_deg_per_s + self.settle_s


def _table(doc: dict, name: str, path: Path) -> dict:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [{name}] must be a table")
    return table


def _number(table, name, key, path, default=None, lo=None, hi=None, *, required=False):
    if key not in table:
        if required:
            raise ValueError(f"{path}: [{name}] {key} is missing")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{path}: [{name}] {key} must be a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{path}: [{name}] {key} = {value} is outside [{lo}, {hi}]")
    return value


def _pair_mean(table: dict, key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, list) and len(value) == 2:
        return 0.5 * (float(value[0]) + float(value[1]))
    return float(value)


def point_source_limit(
    *,
    aperture_mm: float,
    obstruction_ratio: float,
    throughput: float,
    pixel_scale_arcsec: float,
    read_noise_e: float,
    dark_e_per_s: float,
    seeing_arcsec: float,
    sky_mag_arcsec2: float,
    exposure_s: float,
) -> float:
    """Magnitude of a point source at S/N 5 in one exposure (see the module notes)."""
    r_cm = aperture_mm / 20.0
    area_cm2 = math.pi * r_cm * r_cm * (1.0 - obstruction_ratio**2)
    f0 = PHOTON_FLUX_MAG0 * area_cm2 * throughput  # electrons/s from magnitude 0
    sky = f0 * 10 ** (-0.4 * sky_mag_arcsec2) * pixel_scale_arcsec**2
    n_pix = math.pi * (seeing_arcsec / pixel_scale_arcsec) ** 2
    noise2 = n_pix * ((sky + dark_e_per_s) * exposure_s + read_noise_e**2)
    s = SNR_DETECT
    signal = (s * s + math.sqrt(s**4 + 4 * s * s * noise2)) / 2.0
    flux = signal / APERTURE_FRACTION / exposure_s
    return 2.5 * math.log10(f0 / flux)


def read_planning_station(path: str | os.PathLike) -> StationPlanning:
    """Read one station file; raises ``ValueError`` naming the file and the key."""
    path = Path(path)
    ident = read_station_site(path)
    with path.open("rb") as handle:
        doc = tomllib.load(handle)
    tel, cam = _table(doc, "telescope", path), _table(doc, "camera", path)
    sim, plan = _table(doc, "simulator", path), _table(doc, "planning", path)
    unknown = set(plan) - set(PLANNING_DEFAULTS)
    if unknown:
        raise ValueError(f"{path}: [planning] has unknown keys: {', '.join(sorted(unknown))}")
    p = {
        key: _number(plan, "planning", key, path, default, *_PLANNING_RANGES[key])
        for key, default in PLANNING_DEFAULTS.items()
    }
    if isinstance(p["frames"], float) and not p["frames"].is_integer():
        raise ValueError(f"{path}: [planning] frames must be a whole number")
    aperture = _number(tel, "telescope", "aperture_mm", path, lo=1.0, required=True)
    focal = _number(tel, "telescope", "focal_length_mm", path, lo=1.0, required=True)
    pixel_um = _number(cam, "camera", "pixel_size_um", path, lo=0.1, required=True)
    width = _number(cam, "camera", "width_px", path, lo=16, required=True)
    height = _number(cam, "camera", "height_px", path, lo=16, required=True)
    scale = pixel_um * 1e-3 / focal * ARCSEC_PER_RAD
    exposure = _number(sim, "simulator", "exposure_s", path, 2.0, 0.001, 3600)
    rate_exposure = _number(sim, "simulator", "rate_exposure_s", path, 0.5, 0.001, 3600)
    cadence = _number(sim, "simulator", "cadence_s", path, 6.0, 0.01, 86400)
    stare_exposure = p["stare_exposure_s"] or exposure
    frames = int(p["frames"])
    modes = {
        "sidereal": ModeSetup(exposure, frames, max(cadence, exposure)),
        "rate": ModeSetup(rate_exposure, frames, max(cadence, rate_exposure)),
        "stare": ModeSetup(stare_exposure, frames, max(cadence, stare_exposure)),
    }
    seeing = _pair_mean(sim, "seeing_fwhm_arcsec", 2.5)
    sky = _pair_mean(sim, "sky_mag_arcsec2", 20.3)
    limits = {
        mode: point_source_limit(
            aperture_mm=aperture,
            obstruction_ratio=float(tel.get("obstruction_ratio", 0.0)),
            throughput=float(tel.get("throughput", 0.5)),
            pixel_scale_arcsec=scale,
            read_noise_e=float(cam.get("read_noise_e", 5.0)),
            dark_e_per_s=float(cam.get("dark_current_e_per_s", 0.0)),
            seeing_arcsec=seeing,
            sky_mag_arcsec2=sky,
            exposure_s=setup.exposure_s,
        )
        for mode, setup in modes.items()
    }
    return StationPlanning(
        code=ident.code,
        site=ident.site,
        field_deg=min(width, height) * scale / 3600.0,
        min_elevation_deg=float(p["min_elevation_deg"]),
        moon_separation_deg=float(p["moon_separation_deg"]),
        slew_deg_per_s=float(p["slew_deg_per_s"]),
        settle_s=float(p["settle_s"]),
        modes=modes,
        limiting_mag=limits,
        extinction_mag_per_airmass=float(sim.get("extinction_mag_per_airmass", 0.2)),
        path=str(path),
        seeing_fwhm_arcsec=seeing,
    )


def load_planning_stations(
    directory: str | os.PathLike, codes: list[str] | None = None
) -> list[StationPlanning]:
    """Every station of ``directory/*.toml`` (or only ``codes``), sorted by code."""
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"no stations folder at {folder}")
    stations = [read_planning_station(p) for p in sorted(folder.glob("*.toml"))]
    if codes:
        known = {s.code for s in stations}
        missing = [c for c in codes if c not in known]
        if missing:
            raise ValueError(f"no station file for {', '.join(missing)} in {folder}")
        stations = [s for s in stations if s.code in codes]
    return sorted(stations, key=lambda s: s.code)
