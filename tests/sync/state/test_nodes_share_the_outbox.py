"""Two nodes' workers draining one outbox on a shared PostgreSQL store: each entry is
applied once, by one of them, in its item's order (sync/sources/outbox.py `Mirror._take`).
A real server (pg_server.py), the real stand-ins, the unmodified exchangelib."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from exchangelib import CalendarItem, EWSDateTime

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.sources.outbox import Mirror
from tests.sync.conftest import ALICE, BERLIN, ews_account
from tests.sync.state.conftest import SharedStore

ITEMS = 12


def test_two_nodes_drain_one_outbox_and_apply_each_entry_once(
    shared_store: SharedStore, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    config = shared_store.config
    nodes = [shared_store.open() for _ in range(2)]
    account = ews_account(ews.url, default_timezone=BERLIN)
    items = []
    for number in range(ITEMS):
        item = CalendarItem(
            account=account,
            folder=account.calendar,
            subject=f"Shared {number}",
            start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
            end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
        )
        item.save()
        items.append(item)
        nodes[0].enqueue(ALICE, item.id, "upsert", now=time.time(), change_key=item.changekey)
    try:
        mirrors = [Mirror(config, store) for store in nodes]
        start = threading.Barrier(len(mirrors))

        def drain(mirror: Mirror) -> None:
            start.wait()
            asyncio.run(mirror.drain())

        threads = [threading.Thread(target=drain, args=(m,)) for m in mirrors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert nodes[0].pending() == [] and nodes[0].quarantined() == []
        inserts = Counter(c.event_id for c in google.state.calls if c.method == "insert")
        # every event written once: no entry applied by both nodes
        assert inserts == Counter(event_id_for(i.id) for i in items), inserts
        assert sum(len(m.completed) for m in mirrors) == ITEMS
    finally:
        for store in nodes:
            store.close()
