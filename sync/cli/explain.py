"""`calsync explain EVENT`: everything the state store knows about one event, named by its
Google event id or its Exchange item id: the mapping, its outbox entries (pending and
quarantined, with their errors) and the conflicts recorded for it. Read-only.
"""

from __future__ import annotations

import json
from typing import Any

from sync.cli.common import (
    EXIT_PROBLEMS,
    CommandError,
    add_config_option,
    config_from,
    print_table,
    run_guarded,
    when,
)
from sync.cli.status import open_store
from sync.store import Store


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="what calsync knows about one event (Google event id or Exchange item id)",
        description="The mapping, outbox entries and recorded conflicts of one event. "
        "Exit status 1 when the store knows nothing about it.",
    )
    add_config_option(parser)
    parser.add_argument("event", metavar="EVENT", help="a Google event id or Exchange item id")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.set_defaults(run=lambda args: run_guarded("explain", args, explain))


def facts(store: Store, mailboxes: list[str], name: str) -> list[dict[str, Any]]:
    found = []
    for mailbox in mailboxes:
        mapped = store.mapped(mailbox, name) or store.mapped_by_google(mailbox, name)
        ews_id = mapped.ews_item_id if mapped else name
        google_id = mapped.google_event_id if mapped else name
        entries = [
            e
            for e in (*store.pending(mailbox), *store.quarantined(mailbox))
            if e.ews_item_id in (ews_id, google_id)  # the job keys an unmapped event by its id
        ]
        conflicts = [
            c
            for c in store.conflicts(mailbox)
            if c["ews_item_id"] == ews_id or c["google_event_id"] == google_id
        ]
        if mapped is None and not entries and not conflicts:
            continue
        found.append(
            {
                "mailbox": mailbox,
                "mapping": None
                if mapped is None
                else {
                    "ews_item_id": mapped.ews_item_id,
                    "google_event_id": mapped.google_event_id,
                    "ews_change_key": mapped.ews_change_key,
                    "google_etag": mapped.google_etag,
                    "content_hash": mapped.content_hash,
                },
                "outbox": [
                    {
                        "id": e.id,
                        "op": e.op,
                        "state": e.state,
                        "attempts": e.attempts,
                        "next_attempt_at": e.next_attempt_at,
                        "last_error": e.last_error,
                        "created_at": e.created_at,
                    }
                    for e in sorted(entries, key=lambda e: e.id)
                ],
                "conflicts": [
                    {k: c[k] for k in ("field", "winner", "reason", "at")} for c in conflicts
                ],
            }
        )
    return found


def explain(args: Any) -> int:
    config = config_from(args)
    store = open_store(config)
    try:
        found = facts(store, [u.mailbox for u in config.users], args.event)
    finally:
        store.close()
    if not found:
        raise CommandError(
            f"nothing known about {args.event!r}: no mapping, outbox entry or conflict "
            "(for a Google event calsync never mapped, try `calsync rebuild-mapping USER`)",
            EXIT_PROBLEMS,
        )
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for fact in found:
        mapping = fact["mapping"]
        if mapping:
            print_table(
                f"{fact['mailbox']}: mapping",
                ["Exchange item", "Google event", "change key", "etag"],
                [
                    [
                        mapping["ews_item_id"],
                        mapping["google_event_id"],
                        mapping["ews_change_key"] or "-",
                        mapping["google_etag"] or "-",
                    ]
                ],
            )
        else:
            print(f"{fact['mailbox']}: not mapped (yet)")
        if fact["outbox"]:
            print_table(
                f"{fact['mailbox']}: outbox",
                ["entry", "operation", "state", "attempts", "next attempt", "last error"],
                [
                    [
                        e["id"],
                        e["op"],
                        e["state"],
                        e["attempts"],
                        when(e["next_attempt_at"]),
                        e["last_error"] or "-",
                    ]
                    for e in fact["outbox"]
                ],
            )
        if fact["conflicts"]:
            print_table(
                f"{fact['mailbox']}: conflicts",
                ["field", "winner", "reason", "at"],
                [[c["field"], c["winner"], c["reason"], when(c["at"])] for c in fact["conflicts"]],
            )
    return 0
