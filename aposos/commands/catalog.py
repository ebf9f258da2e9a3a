"""``aposos catalog info|predict``: look into an element-set catalogue."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from aposos.cli import CommandError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="inspect a TLE/OMM catalogue, predict what a site sees",
        description="Inspect a TLE / 3LE / OMM (JSON, XML, CSV) catalogue.",
    )
    sub = parser.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND", required=True)

    info = sub.add_parser(
        "info",
        help="counts by orbit class, epoch range, bad records",
        description="Counts by orbit class, epoch range, and every bad record with its reason.",
    )
    info.add_argument("file", help="TLE/3LE or OMM (JSON, XML, CSV) file, or a .zarr snapshot")
    info.add_argument("--format", choices=("text", "json"), default="text")
    info.set_defaults(func=run_info)

    predict = sub.add_parser(
        "predict",
        help="objects above the horizon of a site at one moment",
        description=(
            "Objects above the horizon at a moment: catalogue number, name, astrometric "
            "RA/Dec (ICRS axes, as measured against catalogue stars), azimuth/elevation, "
            "range, and whether the object is sunlit."
        ),
    )
    predict.add_argument("file", help="TLE/3LE or OMM file, or a .zarr snapshot")
    predict.add_argument(
        "--site", required=True, metavar="LAT,LON,ALT_M",
        help="geodetic latitude and longitude (degrees, east positive) and height (m)",
    )  # fmt: skip
    predict.add_argument(
        "--at", required=True, metavar="UTC", help="ISO time, e.g. 2020-10-02T20:00:00"
    )
    predict.add_argument("--min-elevation", type=float, default=0.0, metavar="DEG")
    predict.add_argument("--sunlit-only", action="store_true", help="only objects in sunlight")
    predict.add_argument(
        "--max-age-days", type=float, default=30.0, metavar="DAYS",
        help="leave out element sets whose epoch is further than this from --at (default 30)",
    )  # fmt: skip
    predict.add_argument("--limit", type=int, default=None, help="at most this many rows")
    predict.add_argument("--format", choices=("table", "json", "csv"), default="table")
    predict.set_defaults(func=run_predict)


def load_catalogue(path: str):
    from aposos.orbit.catalogue import Catalogue

    p = Path(path)
    if not p.exists():
        raise CommandError(f"no such file: {path}")
    if p.is_dir():
        return Catalogue.load_zarr(p)
    head = p.read_bytes()[:4096].decode("ascii", errors="replace").lstrip()
    if head[:1] in ("[", "{", "<") or head.startswith(("CCSDS_OMM_VERS", "OBJECT_NAME")):
        return Catalogue.from_omm(p)
    return Catalogue.from_tle(p)


def _iso(jd: float) -> str:
    from aposos.model import jd_fr_to_datetime64

    whole = np.floor(jd - 0.5) + 0.5
    t = jd_fr_to_datetime64(np.array([whole]), np.array([jd - whole]))[0]
    return np.datetime_as_string(t, unit="s") + "Z"


def run_info(args) -> int:
    cat = load_catalogue(args.file)
    summary = cat.summary()
    if args.format == "json":
        summary["epoch_oldest_utc"] = _iso(summary["epoch_oldest_jd"]) if len(cat) else None
        summary["epoch_newest_utc"] = _iso(summary["epoch_newest_jd"]) if len(cat) else None
        json.dump(summary, sys.stdout, indent=2)
        print()
        return 0
    print(f"{args.file}: {summary['objects']} objects")
    for name, count in summary["by_orbit_class"].items():
        print(f"  {name:4s} {count:7d}")
    if len(cat):
        print(
            f"  epochs from {_iso(summary['epoch_oldest_jd'])} to {_iso(summary['epoch_newest_jd'])}"
        )
    problems = summary["problems"]
    print(f"  bad or replaced records: {len(problems)}")
    for line in problems:
        print(f"    {line}")
    return 0


def parse_site(text: str):
    from aposos.model import Site

    try:
        lat, lon, alt = (float(x) for x in text.split(","))
    except ValueError:
        raise CommandError(
            f"--site {text!r}: expected LAT,LON,ALT_M, e.g. 33.67,51.32,3600"
        ) from None
    try:
        return Site(lat, lon, alt)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def parse_utc(text: str) -> tuple[np.ndarray, np.ndarray]:
    from aposos.timeutil import as_jd_fr

    try:
        return as_jd_fr(text)
    except ValueError as exc:
        raise CommandError(f"--at: {exc}") from None


def predict_rows(cat, site, jd, fr, *, min_elevation=0.0, sunlit_only=False):
    """One dict per object above ``min_elevation``, highest first."""
    from aposos.orbit.frames import azel_from_teme, radec_from_teme, sunlit

    e, r, v = cat.propagate(jd, fr)
    ok = e[:, 0] == 0
    az, el, rng = azel_from_teme(r, jd, fr, site)
    up = ok & (el[:, 0] >= min_elevation)
    idx = np.flatnonzero(up)
    if idx.size == 0:
        return []
    lit = sunlit(r[idx], jd, fr)[:, 0]
    ra, dec, rng_lt = radec_from_teme(r[idx], v[idx], jd, fr, site)
    rows = []
    for k, i in enumerate(idx):
        if sunlit_only and not lit[k]:
            continue
        rows.append(
            {
                "norad_id": int(cat.norad_id[i]),
                "name": str(cat.name[i]),
                "ra_deg": round(float(ra[k, 0]), 6),
                "dec_deg": round(float(dec[k, 0]), 6),
                "az_deg": round(float(az[i, 0]), 4),
                "el_deg": round(float(el[i, 0]), 4),
                "range_km": round(float(rng[i, 0]), 3),
                "sunlit": bool(lit[k]),
                "orbit_class": str(cat.orbit_class[i]),
            }
        )
    rows.sort(key=lambda row: -row["el_deg"])
    return rows


def run_predict(args) -> int:
    site = parse_site(args.site)
    jd, fr = parse_utc(args.at)
    cat = load_catalogue(args.file)
    if not len(cat):
        raise CommandError(f"{args.file}: no usable element sets")
    age_days = np.abs(cat.epoch_jd + cat.epoch_fr - (jd[0] + fr[0]))
    fresh = age_days <= args.max_age_days
    stale = int((~fresh).sum())
    if not fresh.any():
        raise CommandError(
            f"every element set in {args.file} is more than {args.max_age_days:g} days from "
            f"{args.at} (nearest {age_days.min():.0f} days); use a fresher catalogue or --max-age-days"
        )
    if stale:
        cat = cat.subset(fresh)
    rows = predict_rows(
        cat, site, jd, fr, min_elevation=args.min_elevation, sunlit_only=args.sunlit_only
    )
    if args.limit is not None:
        rows = rows[: args.limit]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        print()
    elif args.format == "csv":
        out = io.StringIO()
        fields = list(rows[0]) if rows else ["norad_id"]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(out.getvalue())
    else:
        print(
            f"{len(rows)} objects above {args.min_elevation:g} deg at {args.at} from "
            f"{site.latitude_deg:.4f},{site.longitude_deg:.4f},{site.altitude_m:.0f} m"
            + (
                f" ({stale} element sets older than {args.max_age_days:g} days left out)"
                if stale
                else ""
            )
        )
        print(
            f"{'NORAD':>6} {'name':24} {'RA deg':>10} {'Dec deg':>9} {'az':>7} {'el':>6} "
            f"{'range km':>10} {'lit':>3}"
        )
        for row in rows:
            print(
                f"{row['norad_id']:>6} {row['name'][:24]:24} {row['ra_deg']:10.4f} "
                f"{row['dec_deg']:9.4f} {row['az_deg']:7.2f} {row['el_deg']:6.2f} "
                f"{row['range_km']:10.1f} {'yes' if row['sunlit'] else 'no':>3}"
            )
    return 0
