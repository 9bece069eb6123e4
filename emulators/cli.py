"""`calsync emulate ...`: start a local stand-in for one of the services calsync talks to.

Each stand-in owns its command line (`emulators/<name>/cli.py`, a `configure(parser)`
function); this module only lists them, so adding the EWS stand-in is one line in
`STAND_INS`.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# (subcommand, module with `configure(parser)`, one-line help)
STAND_INS: list[tuple[str, str, str]] = [
    ("google", "emulators.google.cli", "Google Calendar API v3 stand-in"),
    ("ews", "emulators.ews.cli", "Exchange EWS stand-in"),
]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("emulate", help="run a local stand-in for Google or EWS")
    sub = parser.add_subparsers(dest="stand_in", metavar="SERVICE", required=True)
    for name, module_name, help_text in STAND_INS:
        child: argparse.ArgumentParser = sub.add_parser(name, help=help_text,
                                                        description=help_text)
        importlib.import_module(module_name).configure(child)
