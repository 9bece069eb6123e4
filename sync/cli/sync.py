"""`calsync sync`: the two-way job once or in a loop (sync/sources/job.py)."""

from __future__ import annotations

import time
from typing import Any

from sync.core.events import short as _short
from sync.sources.job import SyncJob
from sync.sources.push import Leasing
from sync.store import Store

EXIT_OK, EXIT_ERRORS, EXIT_CONFIG, EXIT_STOPPED = 0, 1, 2, 3


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sync",
        help="run the two-way sync job (Exchange feed, then Google's)",
        description="Run the two-way sync job once or in a loop. Exit status: 0 done, "
        "1 some changes failed (they are retried next run), 2 bad configuration, "
        "3 stopped by the safety rule for some user.",
    )
    parser.add_argument(
        "--config", default="calsync.toml", help="calsync.toml (default: %(default)s)"
    )
    parser.add_argument(
        "--user", action="append", default=[], metavar="MAILBOX", help="only this user (repeatable)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one run (the default)")
    mode.add_argument(
        "--loop", action="store_true", help="run every [sync] interval_s until interrupted"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan with the reason for each action; change nothing",
    )
    parser.add_argument(
        "--force-deletes", action="store_true", help="apply a plan the safety rule stopped"
    )
    parser.set_defaults(run=run_command)


def run_command(args: Any) -> int:
    import sys

    from sync.config import ConfigError, load_config
    from sync.store import StoreError

    try:
        config = load_config(args.config)
        users = [config.user_named(name) for name in args.user]
        missing = [name for name, user in zip(args.user, users, strict=True) if user is None]
        if missing:
            raise ConfigError(f"no such user in {args.config}: {', '.join(missing)}")
        store = Store.open(config)
    except (ConfigError, StoreError) as exc:
        print(f"calsync sync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    job = SyncJob(config, store, progress=sys.stderr.isatty())
    selected = [u for u in users if u is not None] or list(config.users)
    # nodes sharing the store: a user another node is syncing is left to it (a dry run
    # writes nothing and needs no lease)
    leasing = None if args.dry_run else Leasing.for_store(store, ttl=config.store_lease_s)

    def run_once() -> list[Any]:
        if leasing is None:
            return job.run(selected, dry_run=args.dry_run, force_deletes=args.force_deletes)
        reports = []
        for user in selected:
            with leasing.held(user.mailbox, keep=False) as fence:
                if fence is None:
                    print(
                        f"calsync sync: {user.mailbox}: another node is syncing this user;"
                        " left to it",
                        file=sys.stderr,
                    )
                    continue
                reports += job.run([user], force_deletes=args.force_deletes)
        return reports

    try:
        while True:
            reports = run_once()
            for report in reports:
                if args.dry_run:
                    for action in report.actions:
                        target = (
                            _short(action.ews_item_id)
                            if action.ews_item_id
                            else action.google_event_id
                        )
                        print(f"{report.mailbox}\t{action.kind}\t{target}\t{action.reason}")
                print(report.summary(), file=sys.stderr)
                for error in report.errors:
                    print(f"  {error}", file=sys.stderr)
            if not args.loop:
                break
            time.sleep(config.sync.interval_s)
    except KeyboardInterrupt:
        return 130
    finally:
        store.close()
    if any(r.stopped for r in reports):
        return EXIT_STOPPED
    return EXIT_ERRORS if any(r.errors for r in reports) else EXIT_OK
