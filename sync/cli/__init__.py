"""The `calsync` command.

Each subcommand lives in the module that owns its work and registers itself here through
`SUBCOMMANDS`: a list of `(module, function)` pairs, imported only when the command line is
parsed, so `calsync --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module path, name of its `add_parser(subparsers)` function)
SUBCOMMANDS: list[tuple[str, str]] = [
    ("emulators.cli", "add_parser"),
    ("sync.cli.sync", "add_parser"),
    ("sync.cli.replay", "add_parser"),
    ("sync.cli.demo", "add_parser"),
    ("sync.cli.init", "add_parser"),
    ("sync.cli.users", "add_parser"),
    ("sync.cli.auth", "add_parser"),
    ("sync.cli.doctor", "add_parser"),
    ("sync.cli.status", "add_parser"),
    ("sync.cli.explain", "add_parser"),
    ("sync.cli.rebuild", "add_parser"),
    ("sync.cli.undo", "add_parser"),
    ("sync.cli.serve", "add_parser"),
    ("sync.cli.store", "add_parser"),
    ("sync.ops.admin.cli", "add_parser"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calsync", description="Mirror Exchange calendars to Google Calendar and back."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name, function in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # not built yet
        getattr(module, function)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
