"""`calsync rebuild-mapping USER`: rebuild a user's id map from the ids both systems keep.

Every Google event calsync writes carries private extended properties naming its Exchange
item and mailbox (`calsync_ews_item_id`, `calsync_mailbox`; sync/sources/outbox.py). This lists
the user's Google calendar in full, and maps each tagged event whose Exchange item still
exists (asked through exchangelib). It only writes to the state store: nothing is created
in either calendar, so it can create no duplicate; events whose item is gone are listed,
not deleted. Mappings that already agree are left as they are.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from sync.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    CommandError,
    add_config_option,
    config_from,
    print_table,
    run_guarded,
    user_from,
)
from sync.core.events import EWS_ID_PROPERTY, MAILBOX_PROPERTY
from sync.store import MappedItem, Store, StoreError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rebuild-mapping",
        help="rebuild a user's id map from the ids kept in Google and Exchange",
        description="Map every Google event calsync tagged whose Exchange item exists. "
        "Writes only the state store. Exit status 0 done, 1 a side could not be read, "
        "2 bad config or unknown user.",
    )
    add_config_option(parser)
    parser.add_argument("user", metavar="USER", help="the user's mailbox")
    parser.add_argument("--dry-run", action="store_true", help="say what would be mapped")
    parser.set_defaults(run=lambda args: run_guarded("rebuild-mapping", args, rebuild))


def rebuild(args: Any) -> int:
    from ews_parser.errors import CalsyncError
    from mapping.event import MANAGED_FIELDS, content_hash
    from sync.backends.exchange import ExchangeMailbox
    from sync.backends.google import GoogleCalendar
    from sync.sources.job import progress_bar

    config = config_from(args)
    user = user_from(config, args.user)
    try:
        store = Store.open(config)  # a lost store is what this rebuilds into
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    added, kept, orphans, clashes = [], 0, [], []
    # bars on a terminal only: piped output stays the lines scripts read
    bars = sys.stderr.isatty()
    try:
        try:
            google = GoogleCalendar(config, user)
            exchange = ExchangeMailbox(config, user)
            events = []
            with progress_bar(bars, f"{user.mailbox}: listing Google") as advance:
                for page in google.list_pages(sync_token=None):
                    items = page.get("items", [])
                    events += [
                        e
                        for e in items
                        if e.get("status") != "cancelled" and not e.get("recurringEventId")
                    ]
                    advance(len(items))
            tagged = []
            for event in events:
                private = (event.get("extendedProperties") or {}).get("private") or {}
                item_id = private.get(EWS_ID_PROPERTY)
                if item_id and str(private.get(MAILBOX_PROPERTY, "")).lower() == user.mailbox:
                    tagged.append((event, item_id))
            with progress_bar(
                bars and bool(tagged), f"{user.mailbox}: asking Exchange", len(tagged)
            ) as advance:
                for event, item_id in tagged:
                    advance(1)
                    mapped = store.mapped(user.mailbox, item_id)
                    by_google = store.mapped_by_google(user.mailbox, event["id"])
                    if mapped is not None and mapped.google_event_id == event["id"]:
                        kept += 1
                        continue
                    if mapped is not None or by_google is not None:
                        clashes.append((event["id"], item_id))
                        continue
                    item = exchange.calendar_item(item_id)
                    if item is None:
                        orphans.append((event["id"], event.get("summary") or "", item_id))
                        continue
                    snapshot = {
                        k: event[k] for k in MANAGED_FIELDS if k in event and k != "iCalUID"
                    }
                    added.append(
                        MappedItem(
                            user.mailbox,
                            item_id,
                            event["id"],
                            getattr(item, "changekey", None),
                            event.get("etag"),
                            content_hash(snapshot),
                            snapshot,
                        )
                    )
        except CalsyncError as exc:
            raise CommandError(f"{user.mailbox}: {exc}", EXIT_PROBLEMS) from None
        if not args.dry_run:
            now = time.time()
            for mapping in added:
                store.save_mapping(mapping, now=now)
    finally:
        store.close()
    verb = "would map" if args.dry_run else "mapped"
    print(
        f"{user.mailbox}: {len(events)} Google events, {len(tagged)} tagged by calsync; "
        f"{verb} {len(added)}, {kept} already mapped, {len(orphans)} without their Exchange "
        f"item, {len(clashes)} mapped otherwise (left alone)"
    )
    if orphans:
        print_table(
            "tagged events whose Exchange item is gone (not deleted; delete them in Google "
            "if they are stale)",
            ["Google event", "summary", "Exchange item"],
            orphans,
        )
    return EXIT_OK
