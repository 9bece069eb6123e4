"""A streaming notification whose every change is held already costs no run (issue 14: an
echo of calsync's own write is recognised by its ChangeKey; a change the proxy has in
hand is the worker's): `Reconciler.known` on the notification's item events, through
exchangelib against the EWS stand-in's streaming, and on a real store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from exchangelib.properties import (
    CreatedEvent,
    DeletedEvent,
    FolderId,
    ModifiedEvent,
    MovedEvent,
    ParentFolderId,
    StatusEvent,
)
from exchangelib.properties import (
    ItemId as ExchangeItemId,
)

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.backends.clients import Clients
from sync.backends.notifications import ItemEvent, item_events
from sync.config import Config, UserConfig, load_config
from sync.core.notice import ChangeNotice
from sync.sources.job import SyncJob
from sync.sources.streaming import Streaming
from sync.store import MappedItem, Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, calendar_service
from tests.sync.sources.test_streaming import Triggers, create, ews

CALENDAR = "calendar-folder"


__all__ = ["ews"]  # the fixture


@pytest.fixture
def config(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Config:
    return load_config(write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,)))


def notice(key: str, version: str | None, kind: str = "upsert") -> ChangeNotice:
    return ChangeNotice(ALICE, "exchange", key, version, kind, "streaming")  # type: ignore[arg-type]


def test_known_holds_what_the_pair_or_the_outbox_has_and_nothing_else(config: Config) -> None:
    store = Store.open(config)
    try:
        known = SyncJob(config, store).reconciler.known
        store.save_mapping(
            MappedItem(ALICE, "MAPPED", event_id_for("MAPPED"), "ck-agreed", '"1"', "h", {}),
            now=1.0,
        )
        store.enqueue(ALICE, "PROXIED", "upsert", now=1.0, change_key="ck-proxied")
        store.enqueue(ALICE, "GOING", "upsert", now=1.0, change_key="ck-1")
        store.enqueue(ALICE, "GOING", "delete", now=2.0)
        # held: the version agreed, one queued by the proxy, a queued deletion, the
        # deletion of an item Google never had
        assert known(notice("MAPPED", "ck-agreed"))
        assert known(notice("PROXIED", "ck-proxied"))
        assert known(notice("GOING", None, "delete"))
        assert known(notice("NEVER-SEEN", None, "delete"))
        # for the run: another version of a mapped or queued item, a new item, the
        # deletion of a mapped item or of one whose creation is still queued
        assert not known(notice("MAPPED", "ck-newer"))
        assert not known(notice("PROXIED", "ck-newer"))
        assert not known(notice("NEW", "ck-1"))
        assert not known(notice("MAPPED", None, "delete"))
        assert not known(notice("PROXIED", None, "delete"))
        assert not known(notice("NO-VERSION", None))
    finally:
        store.close()


def _id(item: str, key: str = "ck") -> ExchangeItemId:
    return ExchangeItemId(id=item, changekey=key)


def test_item_events_tell_moves_by_their_folders_and_leave_folders_out() -> None:
    calendar, deleted = ParentFolderId(id=CALENDAR), ParentFolderId(id="deleted-items")
    events = [
        StatusEvent(),
        CreatedEvent(item_id=_id("NEW", "ck-new"), parent_folder_id=calendar),
        ModifiedEvent(item_id=_id("EDITED", "ck-2"), parent_folder_id=calendar),
        ModifiedEvent(folder_id=FolderId(id=CALENDAR), parent_folder_id=ParentFolderId(id="root")),
        DeletedEvent(item_id=_id("GONE"), parent_folder_id=calendar),
        MovedEvent(  # to Deleted Items: gone from the calendar
            item_id=_id("IN-BIN", "ck-bin"),
            parent_folder_id=deleted,
            old_item_id=_id("BINNED"),
            old_parent_folder_id=calendar,
        ),
        MovedEvent(  # back from Deleted Items: in the calendar under a new id
            item_id=_id("RESTORED", "ck-back"),
            parent_folder_id=calendar,
            old_item_id=_id("WAS-IN-BIN"),
            old_parent_folder_id=deleted,
        ),
    ]
    assert item_events(events, CALENDAR) == (
        ItemEvent("upsert", "NEW", "ck-new"),
        ItemEvent("upsert", "EDITED", "ck-2"),
        ItemEvent("delete", "GONE", None),
        ItemEvent("delete", "BINNED", None),
        ItemEvent("upsert", "RESTORED", "ck-back"),
    )
    assert item_events(events, None) is None  # a move whose direction cannot be told


def test_calsyncs_own_exchange_write_costs_no_run_and_a_direct_change_still_does(
    config: Config,
) -> None:
    store = Store.open(config)
    job = SyncJob(config, store)
    clients, triggers = Clients(config), Triggers()
    source = Streaming(config, clients, triggers, known=job.reconciler.known, connection_timeout=1)
    source.start()
    try:
        triggers.wait_for(ALICE, 0)  # the start: the feed catches up
        job.run()
        time.sleep(0.3)  # connected
        # made in Google: the job writes it to Exchange (an echo comes back)
        calendar_service(config.google_api_endpoint).events().insert(
            calendarId="primary",
            body={
                "summary": "Made in Google",
                "start": {"dateTime": "2027-03-05T09:00:00Z"},
                "end": {"dateTime": "2027-03-05T10:00:00Z"},
            },
            sendUpdates="none",
        ).execute()
        before, held = triggers.count(ALICE), source.held
        (report,) = job.run()
        assert report.actions and not report.errors, report.summary()
        _wait(lambda: source.held > held, "the echo to be held")
        time.sleep(0.3)  # a trigger would have come by now
        assert triggers.count(ALICE) == before, "calsync's own write triggered a run"
        # made directly (web mail): a run
        create(clients, config, ALICE, "Made in OWA")
        triggers.wait_for(ALICE, before)
    finally:
        source.stop()
        store.close()


def _settling(
    config: Config,
    triggers: Triggers,
    recorded: set[str],
    busy: Callable[[UserConfig], bool],
    *,
    settle_s: float,
) -> Streaming:
    """A source whose `known` is the keys in `recorded` (what a writer has recorded)."""
    return Streaming(
        config,
        Clients(config),
        triggers,
        known=lambda notice: notice.key in recorded,
        busy=busy,
        settle_s=settle_s,
    )


def _wait(condition: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited for {what}"
        time.sleep(0.02)


def test_a_change_not_known_waits_for_its_record_only_while_a_writer_may_be_at_work(
    config: Config,
) -> None:
    user = config.users[0]
    recorded: set[str] = set()
    busy = {user.mailbox: False}
    triggers = Triggers()
    source = _settling(config, triggers, recorded, lambda u: busy[u.mailbox], settle_s=0.3)
    try:
        # nobody writing: a change not known is a run at once
        source._notified(user, (ItemEvent("upsert", "DIRECT", "ck"),))
        assert triggers.count(ALICE) == 1
        # the proxy at work: the change waits; recorded meanwhile, it costs no run
        busy[user.mailbox] = True
        source._notified(user, (ItemEvent("upsert", "PROXIED", "ck"),))
        source._notified(user, (ItemEvent("upsert", "PROXIED-TOO", "ck"),))  # one look for both
        recorded.update({"PROXIED", "PROXIED-TOO"})
        _wait(lambda: source.held == 1, "the look after settle_s")
        assert triggers.count(ALICE) == 1
        # one of two still not known after settle_s: a run
        source._notified(user, (ItemEvent("upsert", "RECORDED", "ck"),))
        source._notified(user, (ItemEvent("upsert", "NEVER-RECORDED", "ck"),))
        recorded.add("RECORDED")
        triggers.wait_for(ALICE, 1)
        assert source.held == 1
    finally:
        source.stop()


def test_a_change_that_came_late_in_a_looks_wait_waits_its_own_settle_s(config: Config) -> None:
    """One look covers what came while it was due; a change that came just before it gets
    its own settle_s before it is a run. (Seen in bench/cpu.py: a create's notification came
    10 ms before the look a notification 190 ms older had set, and the proxy's record of
    it 12 ms after: a whole run of the Exchange feed for a change the proxy had in hand.)"""
    user = config.users[0]
    recorded: set[str] = set()
    triggers = Triggers()
    source = _settling(config, triggers, recorded, lambda u: True, settle_s=0.5)  # proxy at work
    try:
        source._notified(user, (ItemEvent("upsert", "FIRST", "ck"),))  # a look in 0.5 s
        recorded.add("FIRST")
        time.sleep(0.35)
        source._notified(user, (ItemEvent("upsert", "LATE", "ck"),))  # 0.15 s before it
        time.sleep(0.3)  # the look has passed; the proxy records LATE 0.3 s after it came
        recorded.add("LATE")
        _wait(lambda: not source._settling, "every look done")
        assert triggers.count(ALICE) == 0
        assert source.held >= 1
    finally:
        source.stop()
