"""``aposos station stars``: the deep reference-star store the plate solver reads.

aposos station stars install [--index FILE]   Tycho-2 from Debian's astrometry.net index
aposos station stars import FILE [--epoch Y]  a Gaia extract, UCAC4 rows, ... (CSV/VOT/FITS)
aposos station stars info                     what the store holds

The store lives in $APOSOS_STAR_STORE (default ~/.local/share/aposos/stars, or
--store DIR). Without it the solver uses the packaged catalogues (G <= 10).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aposos.cli import CommandError


def _say(args):
    quiet = getattr(args, "quiet", False)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - t0:5.1f} s] {msg}", file=sys.stderr, flush=True)

    return say


def _folder(args) -> Path:
    from aposos.station.stars_store import default_store_dir

    return Path(args.store) if args.store else default_store_dir()


def _open_or_empty(folder: Path):
    from aposos.station.stars_store import StarStore

    try:
        return StarStore.open(folder) or StarStore.empty(folder)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _packaged(say):
    """A function loading the packaged catalogues (called once the input is found usable)."""

    def load():
        from aposos.station.stars import StarCatalogue

        say("loading the packaged catalogues (Gaia DR3 to G 10, Hipparcos 2)")
        return StarCatalogue.load("both")

    return load


def cmd_install(args) -> int:
    from aposos.station import stars_tycho2 as T
    from aposos.station.stars_store import build_tycho2

    say = _say(args)
    folder = _folder(args)
    store = _open_or_empty(folder)
    if not args.force and any(s["name"] == "tycho2" for s in store.sources):
        print(f"already installed: {store.describe()} (--force builds it again)")
        return 0
    scratch = None
    index = Path(args.index) if args.index else T.find_index()
    if index is not None and not index.is_file():
        raise CommandError(f"--index {index}: no such file")
    if index is None:
        say(f"fetching Debian's {T.DEBIAN_PACKAGE} (88 MB) with apt-get download")
        scratch = T.temporary_folder()
        try:
            index = T.fetch_index(scratch.name)
        except RuntimeError as exc:
            scratch.cleanup()
            raise CommandError(str(exc)) from None
    try:
        counts = build_tycho2(store, index, _packaged(say), progress=say)
    except ValueError as exc:
        raise CommandError(str(exc).splitlines()[0]) from None
    finally:
        if scratch is not None:
            scratch.cleanup()
    say(f"writing {len(store):,} stars")
    store.save()
    print(
        f"{counts['kept']:,} Tycho-2 stars added ({counts['packaged']:,} of {counts['read']:,} "
        f"were packaged stars already) -> {store.describe()}"
    )
    return 0


def cmd_import(args) -> int:
    from aposos.station.stars_store import import_table

    say = _say(args)
    if not Path(args.file).is_file():
        raise CommandError(f"{args.file}: no such file")
    store = _open_or_empty(_folder(args))
    try:
        counts = import_table(
            store, args.file, _packaged(say), name=args.name, epoch_jyear=args.epoch,
            mag_offset=args.mag_offset, progress=say,
        )  # fmt: skip
    except ValueError as exc:
        raise CommandError(str(exc).splitlines()[0]) from None
    say(f"writing {len(store):,} stars")
    store.save()
    print(
        f"{counts['added']:,} stars imported from {args.file} ({counts['packaged']:,} packaged "
        f"stars and {counts['unusable']:,} unusable rows left out, {counts['replaced']:,} store "
        f"stars replaced) -> {store.describe()}"
    )
    return 0


def cmd_info(args) -> int:
    folder = _folder(args)
    store = _open_or_empty(folder)
    if len(store) == 0:
        print(f"no deep star store in {folder}: the solver uses the packaged catalogues (G <= 10)")
        return 0
    print(store.describe())
    for s in store.sources:
        print(f"  {s['name']}: {s['count']:,} stars; band {s['band']}; epoch {s['epoch']}")
    return 0


def register(sub) -> None:
    """Add ``stars`` under ``aposos station``."""
    parser = sub.add_parser(
        "stars",
        help="the deep reference-star store (install Tycho-2, import a catalogue)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="stars_command", metavar="ACTION")

    def common(p):
        p.add_argument("--store", metavar="DIR", help="store folder (default $APOSOS_STAR_STORE "
                       "or ~/.local/share/aposos/stars)")  # fmt: skip
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    install = verbs.add_parser(
        "install",
        help="fill the store with Tycho-2 (Debian's astrometry.net index, offline once fetched)",
        description=(
            "Read Tycho-2 stars (1.87 million, to VT 12-13; J2000.0 positions) from "
            "Debian's astrometry-data-tycho2-07-littleendian index file: the installed one "
            "in /usr/share/astrometry, --index FILE, or else fetched with `apt-get download` "
            "(no root needed; nothing is installed system-wide). Stars already in the "
            "packaged catalogues are left out. Takes about half a minute."
        ),
        epilog="example:\n  aposos station stars install\n"
        "  aposos station stars install --index /usr/share/astrometry/index-tycho2-07.littleendian.fits\n",
    )
    install.add_argument("--index", metavar="FILE", help="an index-tycho2-07 FITS file")
    install.add_argument("--force", action="store_true", help="build it again if present")
    common(install)
    install.set_defaults(func=cmd_install)

    imp = verbs.add_parser(
        "import",
        help="add a star table (Gaia extract, UCAC4 rows; CSV / VOTable / FITS)",
        description=(
            "Add the stars of a table with RA and Dec in degrees and a magnitude (column names "
            "as Gaia's archive or VizieR write them: ra/RAJ2000, dec/DEJ2000, "
            "phot_g_mean_mag/Gmag/mag/Vmag...), optionally pmra/pmdec (mas/yr, RA times "
            "cos Dec) and an epoch column (ref_epoch). Packaged stars are left out; store "
            "stars within 1.5 arcsec are replaced; importing a file of the same --name again "
            "replaces its stars."
        ),
        epilog="example:\n  aposos station stars import gaia-dr3-g16.vot\n"
        "  aposos station stars import ucac4-rows.csv --epoch 2000.0 --name ucac4\n",
    )
    imp.add_argument("file", metavar="FILE", help="CSV, VOTable or FITS table")
    imp.add_argument("--epoch", type=float, metavar="YEAR",
                     help="epoch of the positions when the file has no epoch column")  # fmt: skip
    imp.add_argument("--name", help="source name in the store (default: the file's stem)")
    imp.add_argument("--mag-offset", type=float, default=0.0, metavar="MAG",
                     help="added to the magnitudes to put them on the G-like band "
                     "(e.g. -0.35 for Tycho VT)")  # fmt: skip
    common(imp)
    imp.set_defaults(func=cmd_import)

    info = verbs.add_parser(
        "info",
        help="what the store holds",
        description="What the store holds: its stars by source, magnitude range and epoch.",
        epilog="example:\n  aposos station stars info --store /data/stars\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(info)
    info.set_defaults(func=cmd_info)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
