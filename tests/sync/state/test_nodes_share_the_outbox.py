"""Two nodes' workers draining one outbox on a shared PostgreSQL store: each entry is
applied once, by one of them, in its item's order (sync/sources/outbox.py `Mirror._take`),
first by the node that recorded it; a user paused on one node waits on every node.
A real server (pg_server.py), the real stand-ins, the unmodified exchangelib."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import urllib.request
from collections import Counter

import pytest
from exchangelib import CalendarItem, EWSDateTime

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.ops.admin.console import Console
from sync.sources.job import SyncJob
from sync.sources.outbox import HOLD_S, Mirror
from sync.sources.proxy import Exchange, Observer
from sync.sources.push import Leasing, UserRuns
from tests.addon.conftest import basic, create_request
from tests.sync.conftest import ALICE, BERLIN, PASSWORDS, ews_account
from tests.sync.state.conftest import SharedStore

ITEMS = 12


def saved_item(ews: EwsServer, subject: str) -> CalendarItem:
    """An event Alice makes in Exchange (an hour on 2 March 2026)."""
    account = ews_account(ews.url, default_timezone=BERLIN)
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
        end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
    )
    item.save()
    return item


def test_two_nodes_drain_one_outbox_and_apply_each_entry_once(
    shared_store: SharedStore, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    config = shared_store.config
    nodes = [shared_store.open() for _ in range(2)]
    items = []
    for number in range(ITEMS):
        item = saved_item(ews, f"Shared {number}")
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


def proxied_create(observer: Observer, ews: EwsServer, subject: str) -> str:
    """A client's CreateItem sent to Exchange and what a proxy node saw of it handed to
    its observer; the new item's id."""
    headers = {
        "content-type": "text/xml; charset=utf-8",
        "authorization": basic(ALICE, PASSWORDS[ALICE]),
    }
    body = create_request(subject)
    with urllib.request.urlopen(
        urllib.request.Request(ews.url, data=body, headers=headers)
    ) as answer:
        status, answered = answer.status, answer.read()
    assert observer.observe(Exchange("POST", "/EWS/Exchange.asmx", headers, body, status, answered))
    match = re.search(rb'ItemId Id="([^"]+)"', answered)
    assert match is not None
    return match.group(1).decode()


def test_a_change_goes_to_the_node_that_proxied_it_and_after_the_hold_to_another(
    shared_store: SharedStore,
    ews: EwsServer,
    google: GoogleCalendarServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The observer records an entry held for its own node's worker, which has the request's
    bytes: another node's worker leaves it alone while the hold lasts, and the recorder
    writes it from the request, without reading the item from Exchange. The entry of a
    recorder that never drains (dead) goes to the other node once the hold lapses; that
    node reads the item."""
    caplog.set_level(logging.INFO, logger="calsync.emulators.ews")
    config = shared_store.config
    recording, other = shared_store.open(), shared_store.open()

    def reads() -> int:
        return sum(r.getMessage() == "GetItem -> 200" for r in caplog.records)

    try:
        recorder = Mirror(config, recording)
        observer = Observer(config, recording, recorder, clock=time.time)
        now = Mirror(config, other)  # another node's worker, at the time of the change
        later = Mirror(config, other, clock=lambda: time.time() + HOLD_S)  # past the hold

        first = proxied_create(observer, ews, "Planning")
        assert asyncio.run(now.drain()) == 0
        assert asyncio.run(recorder.drain()) == 1
        assert inserts(google) == [event_id_for(first)] and reads() == 0

        second = proxied_create(observer, ews, "Review")  # and the recorder dies
        assert asyncio.run(now.drain()) == 0
        assert asyncio.run(later.drain()) == 1
        assert inserts(google) == [event_id_for(first), event_id_for(second)] and reads() == 1
        assert recording.pending() == [] and recording.quarantined() == []
    finally:
        recording.close()
        other.close()


def inserts(google: GoogleCalendarServer) -> list[str | None]:
    return [c.event_id for c in google.state.calls if c.method == "insert"]


def test_a_user_paused_on_one_node_waits_on_every_node(
    shared_store: SharedStore, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    """The admin console of one node pauses Alice, and that node goes away: another node
    neither runs her sync nor writes her outbox entries until its own console resumes her."""
    config = shared_store.config
    (alice,) = config.users
    pausing, other = shared_store.open(), shared_store.open()
    try:
        Console(config, pausing).pause(ALICE)
        pausing.close()  # the other node is another machine: only its own store is open here
        item = saved_item(ews, "Paused")
        entry = other.enqueue(ALICE, item.id, "upsert", now=time.time(), change_key=item.changekey)
        job = SyncJob(config, other)
        runs = UserRuns(job.run_user, leasing=Leasing.for_store(other, ttl=5.0))
        mirror = Mirror(config, other)

        assert runs.run_now(alice) is None  # no run: the feeds stay where they were
        assert other.sync_state(ALICE)["ews_sync_state"] is None
        assert asyncio.run(mirror.drain()) == 0
        assert [(e.id, e.attempts) for e in other.pending(ALICE)] == [(entry, 0)]
        assert inserts(google) == []

        Console(config, other).resume(ALICE)
        assert asyncio.run(mirror.drain()) == 1
        assert inserts(google) == [event_id_for(item.id)]
        runs.run_now(alice)
        assert other.sync_state(ALICE)["ews_sync_state"] is not None
    finally:
        other.close()
