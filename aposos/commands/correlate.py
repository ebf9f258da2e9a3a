"""``aposos correlate``: identify tracklets in TDM / IOD files against a catalogue.

aposos correlate night/*.tdm --catalog active.3le
aposos correlate obs.iod --catalog gp.json --stations stations/ --format csv --out ids.csv
aposos correlate night/*.tdm --catalog active.3le --workers 2
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from pathlib import Path

from aposos.cli import CommandError
from aposos.commands.inputs import FORMATS

log = logging.getLogger("aposos.correlate")
TDM_SUFFIXES = (".tdm", ".kvn", ".xml")
TABLE_FIELDS = ("file", "segment", "station", "status", "norad_id", "score", "rms_arcsec")
EXAMPLES = """\
examples:
  aposos correlate night/reduced/tracklets.tdm --catalog active.3le --format table
  aposos correlate obs.iod --catalog gp.json --stations stations/ --format csv --out ids.csv
  aposos correlate night/*.tdm --catalog active.3le --workers 2
  aposos correlate night/*.tdm --catalog today.3le --previous yesterday.3le

Status per tracklet: correlated, ambiguous, uncorrelated, or failed (the input or the
tracklet could not be used; `error` says why). Exit status 0 when every input was
used, 1 when some failed (the rest is still correlated and written), 2 when all did.
"""

DEFAULT_CUBE_DIR_ENV = "APOSOS_CUBE_DIR"

RECORD_FIELDS = (
    "file", "segment", "station", "status", "norad_id", "score", "rms_arcsec",
    "time_offset_s", "cross_track_arcsec", "p_unlisted", "reason",
)  # fmt: skip
CANDIDATE_FIELDS = (
    "norad_id", "score", "rms_arcsec", "time_offset_s", "along_track_km", "cross_track_km",
)  # fmt: skip
CSV_FIELDS = (
    RECORD_FIELDS
    + tuple(f"candidate_{name}" for name in CANDIDATE_FIELDS)
    + ("n_candidates", "error")
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "correlate",
        help="identify tracklets (TDM or IOD files) against a TLE/OMM catalogue",
        description=(
            "Correlate every tracklet of the input files (CCSDS TDM, KVN or XML: one "
            "segment is one tracklet; IOD: consecutive lines of one station and object) "
            "against a catalogue. Writes one record per tracklet, in input order: file, "
            "segment, station, status (correlated | ambiguous | uncorrelated), norad_id, "
            "score, rms_arcsec, time_offset_s, cross_track_arcsec, the best five "
            "candidates, the reason, and error. Angles in arcseconds, times in seconds. "
            "Fit the error model on your own catalogue history with "
            "`aposos correlate calibrate --help`."
        ),
        epilog=EXAMPLES,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="TDM or IOD files")
    parser.add_argument(
        "--catalog", required=True, metavar="CAT",
        help="catalogue: TLE/3LE, OMM (JSON, XML, CSV) or an aposos zarr snapshot",
    )  # fmt: skip
    parser.add_argument(
        "--previous", metavar="CAT",
        help="the same catalogue's snapshot before --catalog (a day or so older): orbits "
        "changing between the two (fleets being lowered) get the wide errors they need",
    )  # fmt: skip
    parser.add_argument(
        "--stations", default="stations", metavar="DIR",
        help="folder of station TOML files whose [site] tables locate the stations "
        "(default: stations/)",
    )  # fmt: skip
    parser.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    parser.add_argument(
        "--format", choices=FORMATS, default="json",
        help="json: an array of records (default); csv: the best candidate flattened; "
        "table: one line per tracklet",
    )  # fmt: skip
    parser.add_argument(
        "--cube-dir", metavar="DIR",
        help="where ephemeris cubes are kept and reused (default: $APOSOS_CUBE_DIR or "
        "~/.cache/aposos/ephemeris); Dask workers must see the same folder",
    )  # fmt: skip
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--workers", type=int, metavar="N", help="run on a local Dask cluster of N processes"
    )
    group.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on the Dask cluster at this scheduler"
    )
    parser.add_argument(
        "--model", metavar="JSON",
        help="error model fitted by `aposos correlate calibrate` (default: the packaged "
        "one, fitted on the 2026 CelesTrak series)",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
        help="no progress bar (there is none unless stderr is a terminal)",
    )  # fmt: skip
    parser.set_defaults(func=run_correlate)


def default_cube_dir() -> Path:
    env = os.environ.get(DEFAULT_CUBE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "aposos" / "ephemeris"


def read_inputs(paths, station_codes) -> list[dict]:
    """One entry per tracklet or unreadable piece: file, segment, line, tracklet, error."""
    from aposos.formats.readers import read_tracklets

    entries = []
    for path in paths:
        try:
            if Path(path).is_dir():
                raise IsADirectoryError(path)
            parsed = read_tracklets(path, station_codes=station_codes)
        except (OSError, ValueError) as exc:
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            if isinstance(exc, FileNotFoundError):
                message = f"{path}: no such file"
            elif isinstance(exc, IsADirectoryError):
                message = f"{path}: a folder, not a TDM or IOD file"
            elif "not IOD" in message and Path(path).suffix.lower() in TDM_SUFFIXES:
                message = f"{path}: not a CCSDS TDM (no CCSDS_TDM_VERS line or <tdm> root)"
            entries.append(
                {
                    "file": str(path),
                    "segment": None,
                    "line": None,
                    "tracklet": None,
                    "error": message,
                }
            )
            continue
        for item in parsed:
            entries.append(
                {
                    "file": str(path),
                    "segment": item.index,
                    "line": item.line,
                    "tracklet": item.tracklet,
                    "error": item.error,
                }
            )
    return entries


def _number(value):
    return None if value is None or value != value else float(value)


def build_records(entries, correlations) -> list[dict]:
    """Output records in input order; ``correlations`` is aligned with the good entries."""
    records = []
    results = iter(correlations)
    for entry in entries:
        trk = entry["tracklet"]
        record = {
            "file": entry["file"],
            "segment": entry["segment"],
            "station": None if trk is None else trk.station,
            "status": "failed",
            "norad_id": None,
            "score": None,
            "rms_arcsec": None,
            "time_offset_s": None,
            "cross_track_arcsec": None,
            "p_unlisted": None,
            "reason": None,
            "candidates": [],
            "error": entry["error"],
        }
        if trk is not None:
            corr = next(results)
            wire = corr.to_wire()
            for key in ("status", "norad_id", "score", "rms_arcsec", "time_offset_s",
                        "cross_track_arcsec", "p_unlisted", "reason", "candidates"):  # fmt: skip
                record[key] = wire[key]
            if corr.error:
                where = f"segment {entry['segment']}"
                if entry["line"]:
                    where += f" (line {entry['line']})"
                record["error"] = f"{entry['file']}: {where}: {corr.error}"
                record["status"] = "failed"
        log.debug("%s segment %s: %s %s: %s", record["file"], record["segment"],
                  record["status"], record["norad_id"], record["error"] or record["reason"])  # fmt: skip
        records.append(record)
    return records


def write_records(records, fmt: str, out) -> None:
    if fmt == "table":
        rows = [["" if r[k] is None else str(r[k]) for k in TABLE_FIELDS] for r in records]
        widths = [max([len(k)] + [len(row[i]) for row in rows]) for i, k in enumerate(TABLE_FIELDS)]
        for row in [list(TABLE_FIELDS), *rows]:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
            out.write("\n")
        return
    if fmt == "json":
        json.dump(records, out, indent=2)
        out.write("\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for rec in records:
        best = rec["candidates"][0] if rec["candidates"] else {}
        row = [rec[name] for name in RECORD_FIELDS]
        row += [best.get(name) for name in CANDIDATE_FIELDS]
        row += [len(rec["candidates"]), rec["error"]]
        writer.writerow(["" if value is None else value for value in row])


def run_correlate(args) -> int:
    from aposos.correlate.correlator import SGP4Correlator
    from aposos.correlate.sites import iod_station_key, read_station_sites

    try:
        stations = read_station_sites(args.stations)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    sites = {}
    station_codes = {}
    for station in stations:
        sites[station.code] = station.site
        if station.iod_station is not None:
            sites[iod_station_key(station.iod_station)] = station.site
            station_codes[station.iod_station] = station.code
    from aposos.commands.catalog import load_usable_catalogue

    catalogue = load_usable_catalogue(args.catalog)
    previous = load_usable_catalogue(args.previous) if args.previous else None

    entries = read_inputs(args.inputs, station_codes)
    good = [e["tracklet"] for e in entries if e["tracklet"] is not None]
    cube_dir = Path(args.cube_dir).expanduser() if args.cube_dir else default_cube_dir()
    from aposos.correlate.model import ErrorModel

    model = ErrorModel.load(args.model) if args.model else None
    correlator = SGP4Correlator(
        catalogue, sites, cube_dir=cube_dir, error_model=model, previous_catalogue=previous
    )
    progress = not args.quiet and sys.stderr.isatty()
    if args.workers is not None or args.scheduler:
        correlations = _run_dask(correlator, good, args, progress)
    else:
        correlations = correlator(good, progress=progress)
    records = build_records(entries, correlations)

    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            write_records(records, args.format, handle)
    else:
        write_records(records, args.format, sys.stdout)
    errors = [r["error"] for r in records if r["status"] == "failed"]
    for message in errors:  # one line per input or tracklet that could not be used
        print(f"aposos correlate: {message}", file=sys.stderr)
    counts = {
        s: sum(r["status"] == s for r in records)
        for s in ("correlated", "ambiguous", "uncorrelated")
    }
    done = sum(counts.values())
    print(
        f"aposos correlate: {done} tracklet(s): {counts['correlated']} correlated, "
        f"{counts['ambiguous']} ambiguous, {counts['uncorrelated']} uncorrelated"
        + (f"; {len(errors)} input(s) failed (reasons above)" if errors else ""),
        file=sys.stderr,
    )
    if errors and not done:
        return 2
    return 1 if errors else 0


def _run_dask(correlator, tracklets, args, progress):
    import logging

    from dask.distributed import Client, LocalCluster

    if not getattr(args, "verbose", False):
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.workers is not None:
        if args.workers < 1:
            raise CommandError("--workers must be at least 1")
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.WARNING,
        )
        with cluster, Client(cluster) as client:
            return correlator.run_distributed(tracklets, client, progress=progress)
    try:
        client = Client(args.scheduler, timeout=30)
    except OSError as exc:
        raise CommandError(f"cannot reach the Dask scheduler at {args.scheduler}: {exc}") from None
    with client:
        return correlator.run_distributed(tracklets, client, progress=progress)
