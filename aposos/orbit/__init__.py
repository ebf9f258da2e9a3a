"""The ground floor shared by both wings: catalogues, SGP4, frames."""

from aposos.orbit.site import Site

__all__ = ["Site"]
