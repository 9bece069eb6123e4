"""The worker (sync/sources/outbox.py) against both stand-ins through the unmodified clients."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import Account, EWSDateTime
from exchangelib.fields import MONDAY
from exchangelib.items import CalendarItem
from exchangelib.recurrence import Recurrence, WeeklyPattern

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.cli import main
from sync.config import load_config
from sync.core.events import EWS_ID_PROPERTY, google_body
from sync.ops import metrics
from sync.sources.job import SyncJob
from sync.sources.outbox import Mirror
from sync.store import MappedItem, Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account


def weekly_series(account: Account) -> CalendarItem:
    """Six Mondays, 09:00 Berlin from 2 March 2026, made directly in Exchange."""
    series = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Team sync",
        start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
        end=EWSDateTime(2026, 3, 2, 9, 30, tzinfo=BERLIN),
        recurrence=Recurrence(
            pattern=WeeklyPattern(interval=1, weekdays=[MONDAY]),
            start=dt.date(2026, 3, 2),
            number=6,
        ),
    )
    series.save()
    return series


def test_an_occurrence_edited_by_its_own_item_id_refreshes_the_master(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    """exchangelib's `master.occurrence(3).refresh(); .save()` (and clients editing what a
    CalendarView returned) send UpdateItem with the occurrence's own ItemId: the worker
    must refresh the series master, not mirror the occurrence as an event of its own."""
    config = load_config(write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,)))
    store = Store(config.store_path)
    mirror = Mirror(config, store)
    account = ews_account(ews.url, default_timezone=BERLIN)
    series = weekly_series(account)
    store.enqueue(ALICE, series.id, "upsert", now=0.0, change_key=series.changekey)
    asyncio.run(mirror.drain())

    occurrence = series.occurrence(index=3)
    occurrence.refresh()
    assert occurrence.id != series.id
    occurrence.subject = "Team sync (with guests)"
    occurrence.save(update_fields=["subject"])
    # what the router records for an UpdateItem naming an ItemId known as a CalendarItem
    store.enqueue(ALICE, occurrence.id, "update", now=0.0, change_key=occurrence.changekey)
    asyncio.run(mirror.drain())

    # every write went to the master or to one of its instances: never an event of its own
    master_id = event_id_for(series.id)
    written = {c.event_id for c in google.state.calls if c.method != "GET" and c.event_id}
    assert written and all(e == master_id or e.startswith(master_id + "_") for e in written)
    # ... and the exception itself is the instance override at occurrence 3 (16 March)
    (override,) = [e for e in written if e != master_id]
    assert override == f"{master_id}_20260316T080000Z"
    stored = google.state.calls[-1]
    assert stored.event_id == override and stored.send_updates == "none"
    assert [m.ews_item_id for m in store.mapped_items(ALICE)] == [series.id]
    assert store.pending() == [] and store.quarantined() == []
    store.close()


# --- no orphans ------------------------------------------------------------------------------
#
# The item is gone from Exchange by a delete calsync never recorded (it was lost in a kill of
# the proxy): the worker must not leave its event in Google.

_EVENT = {
    "summary": "Prepared before the item went",
    "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-02T10:00:00+01:00", "timeZone": "Europe/Berlin"},
}


class _Setup:
    def __init__(self, tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> None:
        self.config = load_config(write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,)))
        self.store = Store(self.config.store_path)
        self.mirror = Mirror(self.config, self.store)
        self.account = ews_account(ews.url, default_timezone=BERLIN)
        self.service = calendar_service(google.api_endpoint)
        self.google = google

    def item(self, subject: str) -> CalendarItem:
        item = CalendarItem(
            account=self.account,
            folder=self.account.calendar,
            subject=subject,
            start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
            end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
        )
        item.save()
        return item

    def drain(self) -> None:
        asyncio.run(self.mirror.drain())

    def live_events(self) -> dict[str, dict[str, Any]]:
        listed = self.service.events().list(calendarId="primary").execute()
        return {e["id"]: e for e in listed.get("items", []) if e.get("status") != "cancelled"}

    def writes(self) -> list[tuple[str, str | None]]:
        """Every insert and patch Google received: (method, event id)."""
        return [(c.method, c.event_id) for c in self.google.state.calls if c.method != "delete"]

    def quiet(self) -> bool:
        return self.store.pending() == [] and self.store.quarantined() == []


@pytest.fixture
def setup(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Iterator[_Setup]:
    made = _Setup(tmp_path, ews, google)
    try:
        yield made
    finally:
        made.store.close()


def test_an_entry_with_a_later_delete_pending_writes_nothing(setup: _Setup) -> None:
    item = setup.item("Made and deleted during an outage")
    item_id = item.id
    first = setup.store.enqueue(ALICE, item_id, "upsert", now=0.0, change_key=item.changekey)
    setup.store.set_payload(first, {"kind": "event", "event": _EVENT})  # prepared, not written
    setup.store.enqueue(ALICE, item_id, "update", now=0.0, change_key=item.changekey)
    setup.store.enqueue(ALICE, item_id, "delete", now=0.0)
    setup.drain()
    assert setup.writes() == []  # the delete won: never an insert or a patch first
    assert setup.live_events() == {}
    assert setup.quiet() and setup.store.mapped_items(ALICE) == []


def test_a_stored_payload_is_written_only_while_the_item_exists(setup: _Setup) -> None:
    kept, gone = setup.item("Kept"), setup.item("Deleted behind calsync's back")
    kept_id, gone_id = kept.id, gone.id
    for item_id in (kept_id, gone_id):
        entry = setup.store.enqueue(ALICE, item_id, "upsert", now=0.0)
        # an earlier attempt prepared and sealed the event, then Google failed it
        setup.store.set_payload(entry, {"kind": "event", "event": _EVENT})
        setup.store.retry_later(entry, error="Google 0 unreachable", at=0.0, quarantine=False)
    gone.delete()  # directly in Exchange: no outbox entry says so
    setup.drain()
    assert set(setup.live_events()) == {event_id_for(kept_id)}
    assert [m.ews_item_id for m in setup.store.mapped_items(ALICE)] == [kept_id]
    assert setup.quiet()


def test_an_item_found_gone_takes_the_event_an_earlier_entry_made(setup: _Setup) -> None:
    item = setup.item("Mirrored, then deleted where calsync could not see")
    item_id = item.id
    setup.store.enqueue(ALICE, item_id, "upsert", now=0.0, change_key=item.changekey)
    setup.drain()
    assert set(setup.live_events()) == {event_id_for(item_id)}
    item.delete()
    # a later change the worker must read in full (no request bytes): Exchange has nothing
    setup.store.enqueue(ALICE, item_id, "refresh", now=0.0)
    setup.drain()
    assert setup.live_events() == {}
    assert setup.store.mapped(ALICE, item_id) is None
    assert setup.quiet()


def test_the_event_of_an_item_found_gone_is_deleted_for_undo_to_put_back(
    setup: _Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    # the worker's delete of the event an item found gone leaves is a write like any
    # other: recorded with what it replaced, so `calsync undo` brings the event back
    item = setup.item("Mirrored, then deleted where calsync could not see")
    item_id = item.id
    setup.store.enqueue(ALICE, item_id, "upsert", now=0.0, change_key=item.changekey)
    setup.drain()
    item.delete()
    setup.store.enqueue(ALICE, item_id, "refresh", now=0.0)
    setup.drain()
    assert setup.live_events() == {}
    run = setup.store.last_run(ALICE)
    assert run is not None
    writes = setup.store.run_writes(run.id)
    assert [(w.side, w.op, w.key) for w in writes] == [
        ("google", "delete", event_id_for(item_id))
    ]
    assert main(["undo", "--config", str(setup.config.source), ALICE]) == 0
    capsys.readouterr()
    back = setup.live_events()
    assert [e["summary"] for e in back.values()] == [
        "Mirrored, then deleted where calsync could not see"
    ]


def test_an_event_not_tagged_as_the_items_is_never_deleted(setup: _Setup) -> None:
    item = setup.item("Gone")
    item_id = item.id
    item.delete()
    # someone else's event holds the id calsync would have used (no calsync tag)
    setup.service.events().insert(
        calendarId="primary", body={**_EVENT, "id": event_id_for(item_id)}
    ).execute()
    other = setup.item("Another item")
    setup.service.events().insert(
        calendarId="primary",
        body={
            **_EVENT,
            "id": "othereventof0002",
            "extendedProperties": {"private": {EWS_ID_PROPERTY: other.id}},
        },
    ).execute()
    setup.store.save_mapping(
        MappedItem(ALICE, item_id, "othereventof0002", None, None, None, _EVENT), now=0.0
    )
    setup.store.enqueue(ALICE, item_id, "upsert", now=0.0)
    setup.drain()
    # the mapped event is tagged as another item's: left, like the untagged one
    assert set(setup.live_events()) == {event_id_for(item_id), "othereventof0002"}
    assert setup.store.mapped(ALICE, item_id) is None  # the pair is forgotten all the same
    assert setup.quiet()


# --- entries drained late ----------------------------------------------------------------------


@pytest.mark.parametrize("prepared", ["from the request", "by a full read"])
def test_an_entry_drained_after_the_job_carried_a_later_edit_writes_nothing_older(
    setup: _Setup, prepared: str
) -> None:
    # the entry's first attempt prepared the event, then Google failed it; meanwhile the
    # two-way job made the event and carried a later edit of the item: the retry must not
    # write the older fields over it (its If-Match etag is the job's, so Google takes it)
    item = setup.item("As the client made it")
    entry = setup.store.enqueue(ALICE, item.id, "upsert", now=0.0, change_key=item.changekey)
    payload: dict[str, Any] = {"kind": "event", "event": google_body(item)}
    if prepared == "by a full read":
        payload |= {"version": item.changekey, "bases": []}
    setup.store.set_payload(entry, payload)
    setup.store.retry_later(entry, error="Google 503", at=0.0, quarantine=False)
    job = SyncJob(setup.config, setup.store)
    job.run()  # makes the event
    item.subject = "Renamed in Exchange since"
    item.save(update_fields=["subject"])
    job.run()  # carries the rename
    setup.drain()
    (event,) = setup.live_events().values()
    assert event["summary"] == "Renamed in Exchange since"
    mapped = setup.store.mapped(ALICE, item.id)
    assert mapped is not None and mapped.ews_change_key == item.changekey
    assert setup.quiet()
    job.run()
    (event,) = setup.live_events().values()
    assert event["summary"] == "Renamed in Exchange since"


def test_an_entry_whose_change_a_run_carried_first_counts_no_latency_of_the_proxys(
    setup: _Setup,
) -> None:
    """The worker's entry found the pair moved on (a run streaming or a poll set off carried
    the item's later version first) and wrote nothing: /metrics counts it skipped, not as
    a proxy change written, whose latency would be the worker's lateness."""
    item = setup.item("Recorded by the proxy")
    setup.store.enqueue(ALICE, item.id, "upsert", now=0.0, change_key=item.changekey)
    item.subject = "Edited again at once"
    item.save(update_fields=["subject"])
    SyncJob(setup.config, setup.store).run()  # carries the later version first

    def counted() -> tuple[float, float, float]:
        sample = metrics.REGISTRY.get_sample_value
        return (
            sample("calsync_outbox_entries_total", {"result": "written"}) or 0.0,
            sample("calsync_outbox_entries_total", {"result": "skipped"}) or 0.0,
            sample(
                "calsync_change_latency_seconds_count",
                {"source": "proxy", "direction": "exchange_to_google"},
            )
            or 0.0,
        )

    written, skipped, latencies = counted()
    writes = len(setup.writes())
    setup.drain()
    assert len(setup.writes()) == writes  # nothing written
    assert counted() == (written, skipped + 1, latencies)
    assert setup.quiet()


# --- series exceptions -------------------------------------------------------------------------


def test_an_instance_the_worker_wrote_is_known_as_its_own_by_the_job(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    # under google-wins, an occurrence renamed through the proxy (the worker writes its
    # instance) and then again directly in Exchange: the job must take the worker's write
    # for calsync's own, not for a Google edit that wins over the later Exchange one
    path = write_config(
        tmp_path, google, ews_url=ews.url, users=(ALICE,), extra='[sync]\npolicy = "google-wins"\n'
    )
    config = load_config(path)
    store = Store(config.store_path)
    try:
        mirror = Mirror(config, store)
        account = ews_account(ews.url, default_timezone=BERLIN)
        series = weekly_series(account)
        occurrence = series.occurrence(index=3)
        occurrence.refresh()
        occurrence.subject = "Renamed through the proxy"
        occurrence.save(update_fields=["subject"])
        # what the router records for an occurrence edit: its master, to read in full
        store.enqueue(ALICE, series.id, "refresh", now=0.0)
        asyncio.run(mirror.drain())
        assert store.pending() == [] and store.quarantined() == []
        instance_id = f"{event_id_for(series.id)}_20260316T080000Z"
        events = calendar_service(google.api_endpoint).events()
        instance = events.get(calendarId="primary", eventId=instance_id).execute()
        assert instance["summary"] == "Renamed through the proxy"

        occurrence.refresh()
        occurrence.subject = "Renamed in Exchange since"
        occurrence.save(update_fields=["subject"])
        (report,) = SyncJob(config, store).run()
        assert not report.errors, report.errors
        instance = events.get(calendarId="primary", eventId=instance_id).execute()
        assert instance["summary"] == "Renamed in Exchange since"
        occurrence.refresh()
        assert occurrence.subject == "Renamed in Exchange since"
    finally:
        store.close()
