"""`calsync status`: per user, what the state store says: mapped events, outbox depth,
quarantined items (with their last error), when each side was last synced, recorded
conflicts, and the user's error: the current one (the last run failed) apart from a past
one (a later run succeeded; kept with when it happened and when it was resolved).
Quarantined entries the two-way job has carried since have left the store and are not
shown. Read-only; `--json` for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sync.cli.common import (
    CommandError,
    add_config_option,
    config_from,
    print_table,
    run_guarded,
    user_from,
    when,
)
from sync.config import Config
from sync.store import Store, StoreError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="per user: mapped events, outbox, quarantined items, last syncs, conflicts",
        description="What the state store says, per user. Exit status 0 (also with "
        "quarantined items: they are reported, not an error of this command), 2 when the "
        "config or the store cannot be read.",
    )
    add_config_option(parser)
    parser.add_argument("--user", action="append", default=[], metavar="MAILBOX")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.set_defaults(run=lambda args: run_guarded("status", args, status))


def open_store(config: Config) -> Store:
    """The existing store (never a new SQLite file: a missing file means nothing ran yet;
    a shared PostgreSQL store is opened as `[store] url` names it)."""
    path = Path(config.store_path)
    if config.store_url is None and not path.exists():
        raise CommandError(
            f"no state store at {path} yet: start mitmdump with the addon or `calsync sync`"
        )
    try:
        return Store.open(config)
    except StoreError as exc:
        raise CommandError(str(exc)) from None


def store_name(config: Config) -> str:
    """The SQLite file, or the PostgreSQL server and database (never its password)."""
    if config.store_url is None:
        return str(config.store_path)
    from sync.state.postgres import describe

    return f"postgresql://{describe(config.store_url)}"


def user_status(store: Store, mailbox: str) -> dict[str, Any]:
    state = store.sync_state(mailbox)
    quarantined = store.quarantined(mailbox)
    conflicts = store.conflicts(mailbox)
    return {
        "mailbox": mailbox,
        "mapped_events": len(store.mapped_items(mailbox)),
        "outbox_pending": len(store.pending(mailbox)),
        "quarantined": [
            {
                "id": e.id,
                "ews_item_id": e.ews_item_id,
                "op": e.op,
                "attempts": e.attempts,
                "last_error": e.last_error,
            }
            for e in quarantined
        ],
        "last_google_sync": state.get("last_google_sync"),
        "last_exchange_sync": state.get("last_exchange_sync"),
        "conflicts": len(conflicts),
        "last_conflict": conflicts[-1]["at"] if conflicts else None,
        # the current error: the last run failed (None once a run succeeds)
        "last_error": state.get("last_error"),
        "last_error_at": state.get("last_error_at"),
        "past_error": (
            {
                "error": state["past_error"],
                "at": state.get("past_error_at"),
                "resolved_at": state.get("error_resolved_at"),
            }
            if state.get("past_error")
            else None
        ),
    }


def error_cell(report: dict[str, Any]) -> str:
    """The table's error column: what is wrong now, else what was and when it was resolved."""
    if report["last_error"]:
        since = f" (since {when(report['last_error_at'])})" if report["last_error_at"] else ""
        return f"now: {report['last_error']}{since}"
    past = report["past_error"]
    if past:
        return f"resolved: {past['error']} at {when(past['resolved_at'])}"
    return "-"


def status(args: Any) -> int:
    config = config_from(args)
    users = [user_from(config, name) for name in args.user] or list(config.users)
    store = open_store(config)
    try:
        report = [user_status(store, user.mailbox) for user in users]
    finally:
        store.close()
    if args.json:
        print(json.dumps({"store": store_name(config), "users": report}, indent=2))
        return 0
    print_table(
        f"calsync status ({store_name(config)})",
        [
            "mailbox",
            "mapped",
            "outbox",
            "quarantined",
            "last Exchange sync",
            "last Google sync",
            "conflicts",
            "last error",
        ],
        [
            [
                r["mailbox"],
                r["mapped_events"],
                r["outbox_pending"],
                len(r["quarantined"]),
                when(r["last_exchange_sync"]),
                when(r["last_google_sync"]),
                r["conflicts"],
                error_cell(r),
            ]
            for r in report
        ],
    )
    quarantined = [(r["mailbox"], q) for r in report for q in r["quarantined"]]
    if quarantined:
        print()
        print_table(
            "quarantined (retry by fixing the cause; `calsync explain ITEM` for more)",
            # the job's own entries (exchange-change, google-change: a change one side
            # refused) are keyed by the Exchange item, or the Google event it has no item for
            ["mailbox", "entry", "operation", "item or event", "attempts", "last error"],
            [
                [m, q["id"], q["op"], q["ews_item_id"], q["attempts"], q["last_error"]]
                for m, q in quarantined
            ],
        )
    return 0
