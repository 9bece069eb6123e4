"""`calsync store migrate FROM TO [--key-env VAR] [--dry-run]`: a SQLite deployment's state
copied into PostgreSQL (sync/state/migrate.py does the copy), the counts of both sides
printed per table.

Exit status 0 when the copy is committed and every count matches (a dry run: when they
would), 1 when the counts differ or the copy failed part way (nothing is then committed),
2 when it cannot run: a bad FROM or TO, no key, a key the target refuses, a target that
already holds calsync data, a source of another schema.
"""

from __future__ import annotations

import os
from typing import Any

from sync.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEMS,
    CommandError,
    print_table,
    run_guarded,
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "store",
        help="the state store: copy a SQLite deployment into PostgreSQL",
        description="Work on the state store as a whole.",
    )
    commands = parser.add_subparsers(dest="store_command", metavar="COMMAND", required=True)
    migrate = commands.add_parser(
        "migrate",
        help="copy a SQLite store into an empty PostgreSQL database",
        description="Copy everything a node needs (id map, what the proxy learned, sync "
        "state, outbox, journal, conflicts, push channels, runs and their writes for undo) "
        "from a SQLite store into a PostgreSQL database with no calsync data, in one "
        "transaction, sealed values sealed again with the target's key; then compare the "
        "rows per table. Leases and outbox claims are not copied (they belong to live "
        "nodes). Stop the SQLite node first: what it writes after the copy began stays "
        "behind. Exit status 0 copied and every count matches, 1 the counts differ or the "
        "copy failed (nothing committed), 2 it could not run.",
    )
    migrate.add_argument(
        "source", metavar="FROM", help="the SQLite store: a path or sqlite:///path"
    )
    migrate.add_argument("target", metavar="TO", help="postgresql://user@host:port/database")
    migrate.add_argument(
        "--key-env",
        default="CALSYNC_STORE_KEY",
        metavar="VAR",
        help="the variable holding the target's sealing key (default: %(default)s)",
    )
    migrate.add_argument(
        "--dry-run",
        action="store_true",
        help="copy, count and roll back: the target keeps nothing (its schema is made, as a"
        " node's start makes it)",
    )
    migrate.set_defaults(run=lambda args: run_guarded("store migrate", args, migrate_store))


def migrate_store(args: Any) -> int:
    from sync.state.base import StoreError
    from sync.state.migrate import (
        NOT_COPIED,
        CopyFailed,
        check_target_url,
        migrate,
        open_source,
        open_target,
        sqlite_path,
    )
    from sync.state.postgres import describe

    key = os.environ.get(args.key_env, "").strip()
    try:
        path = sqlite_path(args.source)
        url = check_target_url(args.target)
        if not key:
            raise CommandError(
                f"set {args.key_env} to the sealing key the nodes on PostgreSQL will share (a"
                " Fernet key: python -c 'from cryptography.fernet import Fernet;"
                " print(Fernet.generate_key().decode())'); --key-env names another variable"
            )
        source = open_source(path)
        try:
            target = open_target(url, key.encode())
            try:
                report = migrate(source, target, dry_run=args.dry_run)
            finally:
                target.close()
        finally:
            source.close()
    except CopyFailed as exc:
        raise CommandError(str(exc), EXIT_PROBLEMS) from None
    except StoreError as exc:
        raise CommandError(str(exc), EXIT_CONFIG) from None

    print_table(
        f"calsync store migrate {path} -> postgresql://{describe(url)}",
        ["table", "source rows", "target rows", "check"],
        [
            [
                c.table,
                c.source,
                "-" if c.target is None else c.target,
                "not copied" if c.target is None else ("ok" if c.matches else "DIFFERS"),
            ]
            for c in report.counts
        ],
    )
    for table, why in NOT_COPIED.items():
        print(f"{table} not copied: {why}")
    if report.claims_dropped:
        print(
            f"outbox claims not copied ({report.claims_dropped}): they were the SQLite node's;"
            " those entries are due at once on PostgreSQL"
        )
    if not report.matches:
        print("the counts differ: nothing was committed")
        return EXIT_PROBLEMS
    if args.dry_run:
        print("dry run: every count would match; nothing was committed")
    else:
        print(
            f"copied: point [store] url at postgresql://{describe(url)} and give every node"
            f" {args.key_env}"
        )
    return EXIT_OK
