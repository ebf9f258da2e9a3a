"""Deterministic tracklet ids: the same frames reduced again give the same UUIDs.

A tracklet's id is a UUID 5 (SHA-1, RFC 4122) of the station code, its observation
times (UTC to the microsecond: they come from the frame headers and the shutter
model, so they are exact) and its position among the tracklets with the very same
times (ordered by RA, then Dec: two objects crossing the same frames). The positions
thus tell tracklets apart without their last digits being part of the id: a
distortion fitted over another set of frames (``aposos station reduce`` over a whole
night against the agent's field-by-field reduction) moves positions by a fraction of
an arcsecond but keeps the ids. A rerun after a crash, ``aposos station reduce`` run
again, or the agent reducing a field again therefore produce the ids already
delivered, and the data center, idempotent on the UUID, stores nothing twice.

>>> import numpy as np
>>> from aposos.model import Tracklet
>>> t = np.array(["2026-11-22T01:02:03.250", "2026-11-22T01:02:09.250"], "datetime64[us]")
>>> a = Tracklet("IRN1", t, [83.8, 83.9], [-5.4, -5.3])
>>> b = Tracklet("IRN1", t, [83.8000001, 83.9], [-5.4, -5.3])
>>> assign_uuids([a])[0].uuid == assign_uuids([b])[0].uuid
True
"""

from __future__ import annotations

import uuid
from collections import defaultdict

import numpy as np

__all__ = ["TRACKLET_NAMESPACE", "assign_uuids", "tracklet_key"]

# fixed forever: every delivered id depends on it
TRACKLET_NAMESPACE = uuid.UUID("3f0e9c2e-6a55-5b8e-9a53-0d8f1c3a7b21")


def tracklet_key(tracklet) -> str:
    """Station and observation times, as the id's hash input (without the rank)."""
    us = np.asarray(tracklet.utc, dtype="datetime64[us]").astype(np.int64)
    return f"{tracklet.station}|" + ",".join(str(int(t)) for t in np.sort(us))


def assign_uuids(tracklets: list) -> list:
    """Give each tracklet its deterministic UUID (in place); returns the list."""
    groups: dict[str, list] = defaultdict(list)
    for t in tracklets:
        groups[tracklet_key(t)].append(t)
    for key, same in groups.items():
        same.sort(key=lambda t: (round(float(t.ra_deg[0]), 4), round(float(t.dec_deg[0]), 4)))
        for rank, t in enumerate(same):
            t.uuid = str(uuid.uuid5(TRACKLET_NAMESPACE, f"{key}|{rank}"))
    return tracklets
