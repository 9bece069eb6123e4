"""`calsync admin hash-password`: the `[admin] password_hash` line for calsync.toml, from a
password typed twice at the terminal (or one line on standard input, for scripts). The
password itself is never printed or stored."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from sync.ops.admin.auth import hash_password

EXIT_OK, EXIT_USAGE = 0, 2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "admin",
        help="the admin console: make its password hash",
        description="The admin console and /metrics are served by `calsync serve` and the "
        "addon on [admin] listen_host:listen_port (see README, Monitoring).",
    )
    sub = parser.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    hashing = sub.add_parser(
        "hash-password",
        help="print the password_hash line for [admin] in calsync.toml",
        description="Asks for the password twice (or reads one line from standard input "
        'when it is not a terminal) and prints `password_hash = "scrypt$..."`.',
    )
    hashing.set_defaults(run=hash_command)


def hash_command(args: Any) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Admin password: ")
        if password != getpass.getpass("Again: "):
            print("calsync admin: the two passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("calsync admin: use a password of 8 characters or more", file=sys.stderr)
        return EXIT_USAGE
    print(f'password_hash = "{hash_password(password)}"')
    return EXIT_OK
