"""`calsync undo USER`: not built yet.

Undoing a user's recent changes needs a journal of what each write replaced (the store's
journal keeps versions for echo suppression, not the content they replaced). Until that
exists this command says so plainly and changes nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from sync.cli_common import EXIT_PROBLEMS


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "undo",
        help="(not built yet) undo calsync's recent writes for a user",
        description="Not built yet: exits 1 and changes nothing.",
    )
    parser.add_argument("user", metavar="USER")
    parser.set_defaults(run=undo)


def undo(args: Any) -> int:
    print(
        "calsync undo: not built yet; nothing was changed. calsync keeps no record of what "
        "its writes replaced, so it cannot put it back. `calsync explain EVENT` shows what "
        "it knows about one event.",
        file=sys.stderr,
    )
    return EXIT_PROBLEMS
