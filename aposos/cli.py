"""The ``aposos`` command.

Each command group lives in its own module under ``aposos.commands`` and exposes
``register(subparsers)``; modules are imported only when the command line is built,
so ``import aposos`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# command groups, each a module under aposos.commands
COMMAND_MODULES = ("catalog", "station", "correlate", "calibrate", "center", "query", "demo")


class CommandError(Exception):
    """An error to show the user as one clear line (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aposos",
        description="APOSOS: detect, track and identify space objects with a network of telescopes.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log detail to stderr")
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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"aposos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        logging.getLogger("aposos").debug("command failed", exc_info=True)
        print(f"aposos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run through the package so that error classes are the ones commands import.
    from aposos.cli import main as package_main

    sys.exit(package_main())
