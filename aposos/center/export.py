"""Data sharing: stored observations in CCSDS TDM (KVN), IOD or CSV.

A correlated tracklet is exported under its identification: the TDM
``PARTICIPANT_2`` (and the IOD object number) is the NORAD catalogue number the
center found; other tracklets keep the observer's designation, or none.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace

from aposos.center.config import CenterConfig
from aposos.center.store import Filters, Store
from aposos.model import Tracklet

__all__ = ["CSV_COLUMNS", "render_export"]

CSV_COLUMNS = (
    "tracklet_id",
    "uuid",
    "station",
    "object",
    "status",
    "norad_id",
    "utc",
    "ra_deg",
    "dec_deg",
    "sigma_arcsec",
    "mag",
)
MEDIA_TYPES = {"tdm": "text/plain", "iod": "text/plain", "csv": "text/csv"}


def _identified(t: Tracklet, norad_id: int | None) -> Tracklet:
    return t if norad_id is None else replace(t, object=str(norad_id))


def _csv(items: list[dict], tracklets: dict[int, Tracklet]) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    for item in items:
        t = tracklets[item["id"]]
        for k in range(len(t)):
            mag = float(t.mag[k])
            out.writerow(
                [
                    item["id"],
                    t.uuid,
                    t.station,
                    t.object or "",
                    item["status"],
                    "" if item["norad_id"] is None else item["norad_id"],
                    str(t.utc[k].astype("datetime64[us]")) + "Z",
                    repr(float(t.ra_deg[k])),
                    repr(float(t.dec_deg[k])),
                    repr(float(t.sigma_arcsec[k])),
                    "" if math.isnan(mag) else repr(mag),
                ]
            )
    return buf.getvalue()


def _iod(items: list[dict], tracklets: dict[int, Tracklet], config: CenterConfig) -> str:
    from aposos.correlate.sites import read_station_sites
    from aposos.formats.iod import write_iod

    numbers = {
        s.code: s.iod_station
        for s in read_station_sites(config.stations_dir)
        if s.iod_station is not None
    }
    chosen = [tracklets[i["id"]] for i in items]
    missing = sorted({t.station for t in chosen} - set(numbers))
    if missing:
        raise ValueError(f"no IOD station number for station(s) {', '.join(missing)}")
    if not chosen:
        return ""
    return write_iod(chosen, iod_station=numbers, norad_ids=[i["norad_id"] for i in items])


def render_export(
    store: Store, config: CenterConfig, fmt: str, filters: Filters, limit: int, offset: int
) -> tuple[str, str, int | None]:
    """One page of tracklets in ``fmt``; returns (text, media type, next offset)."""
    page = store.list_tracklets(filters, limit, offset)
    tracklets = store.load_tracklets([i["id"] for i in page.items])
    if fmt == "csv":
        text = _csv(page.items, tracklets)
    elif fmt == "tdm":
        from aposos.formats.tdm import write_tdm

        chosen = [_identified(tracklets[i["id"]], i["norad_id"]) for i in page.items]
        text = write_tdm(chosen, format="kvn") if chosen else ""
    elif fmt == "iod":
        text = _iod(page.items, tracklets, config)
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return text, MEDIA_TYPES[fmt], page.next_offset
