"""``aposos correlate calibrate``: fit the correlator's error model on catalogue history.

aposos correlate calibrate snapshots/2026-03-*.3le.xz --out model.json
aposos correlate night/*.tdm --catalog active.3le --model model.json
"""

from __future__ import annotations

import sys
import time

from aposos.cli import CommandError

COMMAND = "correlate-calibrate"  # reached as `aposos correlate calibrate`


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        prog="aposos correlate calibrate",
        help="(aposos correlate calibrate) fit the error model on catalogue snapshots",
        description=(
            "Fit the correlator's element-set error model on snapshots of one catalogue "
            "taken on different days (TLE/3LE, OMM, xz/gzip-compressed or not): every "
            "pair up to --max-age-days apart gives the older element sets' real errors "
            "at the newer epochs; a mixture per orbit class, growing with age, is fitted "
            "to them. Writes the model as JSON; use it with `aposos correlate --model` "
            "or the center's [correlation] error_model setting."
        ),
        epilog="example:\n  aposos correlate calibrate snapshots/active-2026-03-*.3le.xz "
        "--out model.json\n",
    )
    parser.add_argument("snapshots", nargs="+", metavar="SNAPSHOT", help="catalogue snapshots")
    parser.add_argument("--out", required=True, metavar="FILE", help="model JSON to write")
    parser.add_argument(
        "--max-age-days", type=float, default=8.0,
        help="use pairs of snapshots up to this far apart (default 8)",
    )  # fmt: skip
    parser.set_defaults(func=run_calibrate)


def run_calibrate(args) -> int:
    from dataclasses import replace

    from aposos.commands.catalog import load_usable_catalogue
    from aposos.correlate.calibrate import (
        absent_share,
        catalogue_errors,
        fit_error_model,
        launch_odds,
    )

    if len(args.snapshots) < 2:
        raise CommandError("give at least two snapshots of the catalogue (an older and a newer)")
    cats = [load_usable_catalogue(path) for path in args.snapshots]
    t0 = time.perf_counter()
    print(f"measuring element-set errors over {len(cats)} snapshots ...", file=sys.stderr)
    try:
        errors = catalogue_errors(cats, max_age_days=args.max_age_days)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    order = sorted(cats, key=lambda c: c.epoch_range()[0])
    pairs = list(zip(order[:-1], order[1:], strict=True))  # consecutive snapshots
    share = absent_share(pairs)
    print(f"fitting the mixture on {len(errors)} errors ...", file=sys.stderr)
    model = fit_error_model(
        errors, note="fitted on " + ", ".join(args.snapshots), uncatalogued_fraction=share
    )
    model = replace(model, launch_odds=launch_odds(pairs))  # near fresh launches
    model.save(args.out)
    for name, comps in model.components.items():
        parts = ", ".join(
            f"{c.weight:.3f} x (tau {c.along_s[0]:.2g}+{c.along_s[1]:.2g}/d s)" for c in comps
        )
        print(f"{name}: {parts}")
    print(
        f"wrote {args.out} ({len(errors)} errors, new-object share {share:.4f}, "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    return 0
