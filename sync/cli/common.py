"""What the administrator's subcommands share: exit statuses scripts can rely on, the
`--config` option, one-line errors on stderr, and tables (rich on a terminal, tab-separated
lines otherwise, so `cut` and `awk` work on them).

Exit statuses, for every admin subcommand:

- 0: done, nothing wrong;
- 1: the command ran and found problems (doctor), or an operation failed (a side refused);
- 2: the command could not run: no or bad config, unknown user, bad arguments.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sync.config import Config, ConfigError, UserConfig, load_config

EXIT_OK, EXIT_PROBLEMS, EXIT_CONFIG = 0, 1, 2
DEFAULT_CONFIG = "calsync.toml"


class CommandError(Exception):
    """Stops a subcommand with one line on stderr and an exit status."""

    def __init__(self, message: str, status: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.status = status


def add_config_option(parser: Any) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help="calsync.toml (default: %(default)s)",
    )


def config_from(args: Any) -> Config:
    path = Path(args.config)
    if not path.exists():
        raise CommandError(f"no config at {path}: write one with `calsync init --path {path}`")
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def user_from(config: Config, name: str) -> UserConfig:
    user = config.user_named(name)
    if user is None:
        known = ", ".join(u.mailbox for u in config.users) or "none"
        raise CommandError(f"no user {name!r} in {config.source} (configured: {known})")
    return user


def run_guarded(command: str, args: Any, body: Any) -> int:
    """`body(args)`, turning a CommandError into its line on stderr and its status."""
    try:
        return int(body(args) or 0)
    except CommandError as exc:
        print(f"calsync {command}: {exc}", file=sys.stderr)
        return exc.status


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    return dt.datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a terminal; otherwise a header line and tab-separated rows."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console().print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if v is None else str(v).replace("\t", " ") for v in row))
