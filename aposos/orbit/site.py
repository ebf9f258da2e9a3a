"""An observing site on the WGS84 ellipsoid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WGS84_A_KM = 6378.137
WGS84_F = 1.0 / 298.257223563


@dataclass(frozen=True)
class Site:
    """A station site: geodetic WGS84 latitude and longitude (east positive), height in metres.

    Examples
    --------
    >>> Site(35.67, 51.42, 1200.0).itrs_km().round(1)
    array([3235.5, 4056. , 3699.2])
    """

    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0

    def __post_init__(self):
        problems = []
        if not (-90.0 <= float(self.latitude_deg) <= 90.0):
            problems.append(f"latitude_deg {self.latitude_deg} is outside [-90, 90]")
        if not (-180.0 <= float(self.longitude_deg) <= 360.0):
            problems.append(f"longitude_deg {self.longitude_deg} is outside [-180, 360]")
        if not (-500.0 <= float(self.altitude_m) <= 10000.0):
            problems.append(f"altitude_m {self.altitude_m} is outside [-500, 10000]")
        if problems:
            raise ValueError("bad site: " + "; ".join(problems))

    def itrs_km(self) -> np.ndarray:
        """Earth-fixed (ITRS) position of the site in km."""
        lat = math.radians(self.latitude_deg)
        lon = math.radians(self.longitude_deg)
        h_km = self.altitude_m / 1000.0
        e2 = WGS84_F * (2.0 - WGS84_F)
        n = WGS84_A_KM / math.sqrt(1.0 - e2 * math.sin(lat) ** 2)
        return np.array(
            [
                (n + h_km) * math.cos(lat) * math.cos(lon),
                (n + h_km) * math.cos(lat) * math.sin(lon),
                (n * (1.0 - e2) + h_km) * math.sin(lat),
            ]
        )
