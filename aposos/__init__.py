"""aposos: software of a ground-based optical network that detects, tracks and
identifies space objects.

The public surface for Python users::

    from aposos import Catalogue, Site, Tracklet
"""

from aposos.model import Site, Tracklet

__all__ = ["Catalogue", "Site", "Tracklet"]


def __getattr__(name):
    # Lazy: importing aposos must not compile numba kernels or load astropy.
    if name == "Catalogue":
        from aposos.orbit.catalogue import Catalogue

        return Catalogue
    raise AttributeError(name)
