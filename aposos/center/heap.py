"""Keeping the cyclic garbage collector off the long-lived objects of a center process.

A full collection walks every object the collector tracks. In the server (FastAPI,
SQLAlchemy, numba and astropy imported) and in the correlation worker (catalogues,
correlators) one took 0.2-1.3 s on our shared 2-core machine: a pause of the server
is a pause of every upload in flight, and a pause of the worker inside a write
transaction holds up every writer. :func:`settle_heap` collects once and then moves
what is still alive out of the collector's sight (``gc.freeze``); those objects are
still freed by reference counting, and the next call looks at them once more.
"""

from __future__ import annotations

import gc

__all__ = ["settle_heap"]


def settle_heap() -> None:
    """Collect the garbage cycles once, then exempt the survivors from later
    collections. Call it after start-up and after loading large long-lived data."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
