"""``aposos catalog info|predict``: look into an element-set catalogue."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from aposos.cli import CommandError
from aposos.commands.inputs import FORMATS, SITE_HELP, positive_int

FRAME_NOTE = (
    "RA/Dec are astrometric: the direction from the site to where the object was when "
    "the light left it, in GCRS axes (the ICRS orientation of star catalogues; TDM files "
    "label them EME2000), annual aberration removed as for reference stars."
)
INFO_EXAMPLES = """\
examples:
  aposos catalog info active.3le
  aposos catalog info gp.json --format json
"""
PREDICT_EXAMPLES = """\
examples:
  aposos catalog predict active.3le --site 33.674,51.318,3600 --at 2020-10-02T17:00:00
  aposos catalog predict active.3le --site -16.47,-71.49,2400 --at 2020-10-02T23:00:00
  aposos catalog predict active.3le --station stations/peru.toml --at 2020-10-02T23:00:00Z
  aposos catalog predict active.3le --station PER1 --at 2020-10-03T04:00:00+05:00 --format csv

Angles in degrees, range in km, times UTC unless an offset is given.
"""
COMPRESSED_MAGIC = (b"\xfd7zXZ\x00", b"\x1f\x8b", b"BZh")


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
        description="Counts by orbit class, epoch range, and every bad record with its "
        "reason. Exit status 2 when no element set could be read.",
        epilog=INFO_EXAMPLES,
    )
    info.add_argument("file", help="TLE/3LE or OMM (JSON, XML, CSV) file, or a .zarr snapshot")
    info.add_argument(
        "--format", choices=FORMATS, default="table", type=lambda v: {"text": "table"}.get(v, v),
        help="table (default), json or csv",
    )  # fmt: skip
    info.set_defaults(func=run_info)

    predict = sub.add_parser(
        "predict",
        help="objects above the horizon of a site at one moment",
        description=(
            "Objects above the horizon at a moment: catalogue number, name, astrometric "
            "RA/Dec, azimuth (from north through east) and elevation, range, and whether "
            "the object is sunlit, highest first. " + FRAME_NOTE
        ),
        epilog=PREDICT_EXAMPLES,
    )
    predict.add_argument("file", help="TLE/3LE or OMM file, or a .zarr snapshot")
    where = predict.add_mutually_exclusive_group(required=True)
    where.add_argument("--site", metavar="SITE", help=SITE_HELP)
    where.add_argument(
        "--station", dest="site", metavar="STATION",
        help="the same as --site: a station file or code",
    )  # fmt: skip
    predict.add_argument(
        "--stations", default="stations", metavar="DIR",
        help="where station codes are looked up (default: stations/)",
    )  # fmt: skip
    predict.add_argument(
        "--at", required=True, metavar="TIME",
        help="ISO 8601 time, UTC unless it has an offset: 2020-10-02T20:00:00, ...Z, ...+03:30",
    )  # fmt: skip
    predict.add_argument(
        "--min-elevation", type=float, default=0.0, metavar="DEG", help="default 0"
    )
    predict.add_argument("--sunlit-only", action="store_true", help="only objects in sunlight")
    predict.add_argument(
        "--max-age-days", type=float, default=30.0, metavar="DAYS",
        help="leave out element sets whose epoch is further than this from --at (default 30)",
    )  # fmt: skip
    predict.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="at most this many rows"
    )
    predict.add_argument("--format", choices=FORMATS, default="table", help="default table")
    predict.set_defaults(func=run_predict)


def load_catalogue(path: str):
    from aposos.orbit.catalogue import Catalogue

    p = Path(path)
    if not p.exists():
        raise CommandError(f"no such file: {path}")
    if p.is_dir():
        if not any((p / marker).exists() for marker in ("zarr.json", ".zgroup")):
            raise CommandError(f"{path} is a folder, not a catalogue file or a .zarr snapshot")
        return Catalogue.load_zarr(p)
    raw = p.read_bytes()[:4096]
    if not raw.strip():
        raise CommandError(f"{path}: empty file, not a catalogue")
    if not raw.startswith(COMPRESSED_MAGIC) and b"\0" in raw:
        raise CommandError(f"{path}: binary data, not a TLE/3LE or OMM catalogue")
    head = raw.decode("ascii", errors="replace").lstrip()
    if head[:1] in ("[", "{", "<") or head.startswith(("CCSDS_OMM_VERS", "OBJECT_NAME")):
        return Catalogue.from_omm(p)
    return Catalogue.from_tle(p)


def load_usable_catalogue(path: str):
    """:func:`load_catalogue`, refusing a catalogue with no element set (for commands
    that need one to work on)."""
    try:
        catalogue = load_catalogue(path)
    except FileNotFoundError:
        raise CommandError(f"no catalogue at {path}") from None
    if len(catalogue) == 0:
        raise CommandError(f"{path}: no element sets could be read")
    return catalogue


def _iso(jd: float) -> str:
    from aposos.model import jd_fr_to_datetime64

    whole = np.floor(jd - 0.5) + 0.5
    t = jd_fr_to_datetime64(np.array([whole]), np.array([jd - whole]))[0]
    return np.datetime_as_string(t, unit="s") + "Z"


def _no_element_sets(path, problems) -> CommandError:
    for line in problems[:20]:
        print(f"  {line}", file=sys.stderr)
    more = f" ({len(problems)} bad records" + (", first 20 above)" if problems else ")")
    return CommandError(f"{path}: no element set could be read{more if problems else ''}")


def run_info(args) -> int:
    cat = load_catalogue(args.file)
    summary = cat.summary()
    if not len(cat):
        raise _no_element_sets(args.file, summary["problems"])
    if args.format == "json":
        summary["epoch_oldest_utc"] = _iso(summary["epoch_oldest_jd"])
        summary["epoch_newest_utc"] = _iso(summary["epoch_newest_jd"])
        json.dump(summary, sys.stdout, indent=2)
        print()
        return 0
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["orbit_class", "objects"])
        writer.writerows(summary["by_orbit_class"].items())
        writer.writerow(["all", summary["objects"]])
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


def parse_utc(text: str, option: str = "--at") -> tuple[np.ndarray, np.ndarray]:
    """UTC Julian date split of an ISO time (an offset such as +03:30 is honoured)."""
    from aposos.commands.inputs import parse_utc as parse_time
    from aposos.model import datetime64_to_jd_fr

    return datetime64_to_jd_fr(np.array([parse_time(text, option)]))


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
    from aposos.commands.inputs import parse_site

    site = parse_site(args.site, "--site", args.stations)
    jd, fr = parse_utc(args.at)
    cat = load_catalogue(args.file)
    if not len(cat):
        raise _no_element_sets(args.file, cat.problems)
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
            f"{site.latitude_deg:.4f},{site.longitude_deg:.4f},{site.altitude_m:.0f} m; "
            "astrometric RA/Dec in GCRS axes"
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
