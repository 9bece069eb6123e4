"""The worker (sync/mirror.py) against both stand-ins through the unmodified clients."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from exchangelib import (
    EWSDateTime,
)
from exchangelib.fields import MONDAY
from exchangelib.items import CalendarItem
from exchangelib.recurrence import Recurrence, WeeklyPattern

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.config import load_config
from sync.mirror import Mirror
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, ews_account


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
