"""Deletions a full Google listing cannot show (sync/sources/job.py `_unlisted`), on the
in-memory calendars (sync/backends/memory.py: a full list leaves deleted events out, as
Google's does without showDeleted): an event deleted in Google while the job holds no
sync token (its first listing, or a 410's) still reaches Exchange, by the deletion rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from exchangelib import EWSDateTime, EWSTimeZone

from sync.backends.clients import Clients
from sync.sources.job import Report, SyncJob
from tests.sync.conftest import ALICE
from tests.sync.test_reconcile_notices import Calendars as InMemory

UTC = EWSTimeZone("UTC")


class Calendars(InMemory):
    """Alice's in-memory calendars and her two-way job."""

    def __init__(self, tmp: Path, extra: str = "") -> None:
        super().__init__(tmp, extra)
        clients = Clients(self.config, lambda *_: self.google, lambda *_: self.exchange)
        self.job = SyncJob(self.config, self.store, clients=clients)

    def run(self) -> Report:
        (report,) = self.job.run()
        assert not report.errors, report.errors
        return report

    def create_in_exchange(self, subject: str, hour: int) -> str:
        item_id, _ = self.exchange.create(
            {
                "subject": subject,
                "start": EWSDateTime(2026, 3, 2, hour, tzinfo=UTC),
                "end": EWSDateTime(2026, 3, 2, hour + 1, tzinfo=UTC),
            }
        )
        return item_id

    def subjects(self) -> list[str]:
        return sorted(str(i.subject) for i in self.exchange.all_items())


@pytest.mark.parametrize(
    ("modified_beats_delete", "left"), [(False, ["Kept"]), (True, ["Edited", "Kept"])]
)
def test_a_google_deletion_no_listing_showed_reaches_exchange(
    tmp_path: Path, modified_beats_delete: bool, left: list[str]
) -> None:
    extra = f"[sync]\nmodified_beats_delete = {str(modified_beats_delete).lower()}\n"
    calendars = Calendars(tmp_path, extra)
    calendars.create_in_exchange("Kept", 8)
    gone = calendars.create_in_exchange("Deleted in Google", 10)
    edited = calendars.create_in_exchange("Edited", 12)
    calendars.run()  # mapped; the sync token stored
    for item_id in (gone, edited):
        pair = calendars.store.mapped(ALICE, item_id)
        assert pair is not None
        calendars.google.delete(pair.google_event_id)
    item = calendars.exchange.calendar_item(edited)
    assert item is not None
    calendars.exchange.update(item, {"location": "Room 2"})  # edited in Exchange meanwhile
    calendars.google.expire_sync_tokens()  # the next listing is a full one (410)
    report = calendars.run()
    planned = sorted((a.kind, a.reason) for a in report.actions if a.ews_item_id == gone)
    assert planned == [("delete-exchange", "deleted in Google")]
    assert calendars.subjects() == left
    assert calendars.run().actions == []  # settled: nothing more to do


def test_an_event_outside_the_listed_window_is_left_alone(tmp_path: Path) -> None:
    calendars = Calendars(tmp_path, "[sync]\nwindow_days = 1\n")
    calendars.exchange.create(
        {
            "subject": "Long ago",
            "start": EWSDateTime(2020, 3, 2, 8, tzinfo=UTC),
            "end": EWSDateTime(2020, 3, 2, 9, tzinfo=UTC),
        }
    )
    calendars.run()
    calendars.google.expire_sync_tokens()
    report = calendars.run()  # not listed (before the window), but live: no deletion
    assert report.actions == []
    assert calendars.subjects() == ["Long ago"]
