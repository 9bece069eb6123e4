"""Series exceptions through the two-way job (SyncJob, as `calsync sync` runs it), both
stand-ins and the unmodified clients: a moved and a cancelled instance made in Google
become a modified and a deleted occurrence in Exchange and come back unchanged; later edits
on either side follow, with the user's policy; deleting the series deletes all of it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from exchangelib import EWSDateTime
from exchangelib.items import CalendarItem
from exchangelib.properties import OccurrenceItemId

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.cli import main
from tests.sync.conftest import ALICE, BERLIN
from tests.sync.sources.test_job import World

#: Mondays 09:00 Berlin, six of them: the second is moved, the third cancelled in Google
SERIES = {
    "summary": "Standup",
    "location": "Room 1",
    "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-02T09:30:00+01:00", "timeZone": "Europe/Berlin"},
    "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6"],
}
SECOND, THIRD, FOURTH = "20260309T080000Z", "20260316T080000Z", "20260323T080000Z"
MOVED = {
    "summary": "Standup (moved)",
    "start": {"dateTime": "2026-03-10T14:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-10T14:30:00+01:00", "timeZone": "Europe/Berlin"},
}


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


class Series(World):
    """The World of test_job.py with a series in it, made in Google and carried once."""

    def __init__(self, tmp: Path, ews: EwsServer, google: GoogleCalendarServer, extra: str = ""):
        super().__init__(tmp, ews, google, extra=extra)
        self.master_id = self.events().insert(calendarId="primary", body=SERIES).execute()["id"]
        self.run()
        (self.item_id,) = [i.id for i in self.account.calendar.all()]

    def events(self) -> Any:
        return self.service.events()

    def instance(self, stamp: str) -> dict[str, Any]:
        event_id = f"{self.master_id}_{stamp}"
        return dict(self.events().get(calendarId="primary", eventId=event_id).execute())

    def patch_instance(self, stamp: str, body: dict[str, Any]) -> None:
        event_id = f"{self.master_id}_{stamp}"
        self.events().patch(calendarId="primary", eventId=event_id, body=body).execute()

    def cancel_instance(self, stamp: str) -> None:
        event_id = f"{self.master_id}_{stamp}"
        self.events().delete(calendarId="primary", eventId=event_id).execute()

    def master(self) -> CalendarItem:
        (item,) = self.account.fetch(ids=[(self.item_id, None)])
        assert isinstance(item, CalendarItem), item
        return item

    def occurrence(self, index: int) -> CalendarItem:
        (item,) = self.account.fetch(ids=[OccurrenceItemId(id=self.item_id, instance_index=index)])
        assert isinstance(item, CalendarItem), item
        return item

    def state(self) -> tuple[Any, ...]:
        """Every version on both sides: Google's etags (instances included), the master's
        and each exception's ChangeKey, the deleted occurrences."""
        listed = self.events().list(calendarId="primary", showDeleted=True).execute()
        master = self.master()
        return (
            sorted((e["id"], e["etag"], e.get("status")) for e in listed.get("items", [])),
            master.changekey,
            [(o.id, o.changekey) for o in master.modified_occurrences or []],
            [d.start for d in master.deleted_occurrences or []],
        )

    def quiet(self) -> None:
        """A run that writes nothing on either side, and records no write."""
        before = self.state()
        report = self.run()
        assert self.state() == before
        assert report.run.run_id is not None
        assert self.store.run_writes(report.run.run_id) == []


@pytest.fixture
def series(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Series:
    return Series(tmp_path, ews, google)


def moved_and_cancelled(series: Series) -> None:
    series.patch_instance(SECOND, MOVED)
    series.cancel_instance(THIRD)
    series.run()


def test_a_moved_and_a_cancelled_instance_reach_exchange_and_come_back_unchanged(
    series: Series,
) -> None:
    moved_and_cancelled(series)
    master = series.master()
    assert master.subject == "Standup" and master.start == utc(2026, 3, 2, 8)
    (modified,) = master.modified_occurrences
    assert modified.original_start == utc(2026, 3, 9, 8)
    assert [d.start for d in master.deleted_occurrences] == [utc(2026, 3, 16, 8)]
    second = series.occurrence(2)
    assert second.type == "Exception"
    assert (second.subject, second.location) == ("Standup (moved)", "Room 1")
    assert (second.start, second.end) == (utc(2026, 3, 10, 13), utc(2026, 3, 10, 13, 30))
    assert series.occurrence(4).type == "Occurrence"
    # Google still shows what it was given, and further runs write nothing anywhere
    instance = series.instance(SECOND)
    assert (instance["summary"], instance["location"]) == ("Standup (moved)", "Room 1")
    assert instance["start"]["dateTime"] == "2026-03-10T14:00:00+01:00"
    assert series.instance(THIRD)["status"] == "cancelled"
    series.quiet()
    series.quiet()
    # nothing else became an exception on either side
    listed = series.events().list(calendarId="primary", showDeleted=True).execute()["items"]
    assert sorted(e["id"] for e in listed if e.get("recurringEventId")) == [
        f"{series.master_id}_{SECOND}",
        f"{series.master_id}_{THIRD}",
    ]
    assert len(series.master().modified_occurrences) == 1


def test_a_new_series_with_exceptions_arrives_whole_in_one_run(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    world = World(tmp_path, ews, google)
    events = world.service.events()
    master_id = events.insert(calendarId="primary", body=SERIES).execute()["id"]
    events.patch(calendarId="primary", eventId=f"{master_id}_{SECOND}", body=MOVED).execute()
    events.delete(calendarId="primary", eventId=f"{master_id}_{THIRD}").execute()
    world.run()
    (master,) = world.account.calendar.all()
    assert [o.original_start for o in master.modified_occurrences] == [utc(2026, 3, 9, 8)]
    assert [d.start for d in master.deleted_occurrences] == [utc(2026, 3, 16, 8)]


def test_an_override_edited_again_in_google_updates_the_occurrence(series: Series) -> None:
    moved_and_cancelled(series)
    series.patch_instance(SECOND, {"summary": "Standup (moved again)", "location": "Room 7"})
    series.run()
    second = series.occurrence(2)
    assert (second.subject, second.location) == ("Standup (moved again)", "Room 7")
    assert second.start == utc(2026, 3, 10, 13)  # what Google did not change stays
    assert series.master().location == "Room 1"
    series.quiet()


def test_an_occurrence_edited_in_exchange_afterwards_reaches_google(series: Series) -> None:
    moved_and_cancelled(series)
    second = series.occurrence(2)
    second.subject = "Edited in Outlook"
    second.save(update_fields=["subject"])
    fourth = series.occurrence(4)  # a plain occurrence becomes an exception
    fourth.location = "Room 4"
    fourth.save(update_fields=["location"])
    series.run()
    instance = series.instance(SECOND)
    assert instance["summary"] == "Edited in Outlook"
    assert instance["start"]["dateTime"] == "2026-03-10T14:00:00+01:00"
    fourth_instance = series.instance(FOURTH)
    assert (fourth_instance["summary"], fourth_instance["location"]) == ("Standup", "Room 4")
    series.quiet()
    assert series.occurrence(2).subject == "Edited in Outlook"


@pytest.mark.parametrize(("policy", "winner"), [("exchange-wins", "E"), ("google-wins", "G")])
def test_an_occurrence_edited_on_both_sides_follows_the_policy(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, policy: str, winner: str
) -> None:
    series = Series(tmp_path, ews, google, extra=f'[sync]\npolicy = "{policy}"\n')
    moved_and_cancelled(series)
    series.patch_instance(SECOND, {"location": "G", "summary": "Renamed in Google"})
    second = series.occurrence(2)
    second.location = "E"
    second.start = EWSDateTime(2026, 3, 10, 16, tzinfo=BERLIN)
    second.end = EWSDateTime(2026, 3, 10, 16, 30, tzinfo=BERLIN)
    second.save(update_fields=["location", "start", "end"])
    report = series.run()
    assert report.conflicts == 1
    (conflict,) = series.store.conflicts(ALICE)
    assert (conflict["field"], conflict["winner"]) == (
        "location",
        "exchange" if winner == "E" else "google",
    )
    instance, occurrence = series.instance(SECOND), series.occurrence(2)
    assert instance["location"] == occurrence.location == winner
    # a field only one side changed goes across whatever the policy
    assert instance["summary"] == occurrence.subject == "Renamed in Google"
    assert instance["start"]["dateTime"] == "2026-03-10T16:00:00+01:00"
    assert occurrence.start == utc(2026, 3, 10, 15)
    series.quiet()


def test_deleting_the_series_in_google_deletes_it_all(series: Series) -> None:
    moved_and_cancelled(series)
    series.events().delete(calendarId="primary", eventId=series.master_id).execute()
    series.run()
    assert list(series.account.calendar.all()) == []
    series.run()
    assert list(series.account.calendar.all()) == []


def test_deleting_the_series_in_exchange_deletes_it_all(series: Series) -> None:
    moved_and_cancelled(series)
    series.master().delete()
    series.run()
    assert series.events().get(calendarId="primary", eventId=series.master_id).execute()[
        "status"
    ] == "cancelled"
    listed = series.events().list(calendarId="primary", showDeleted=True).execute()["items"]
    assert {e["id"]: e["status"] for e in listed} == {
        series.master_id: "cancelled",
        f"{series.master_id}_{SECOND}": "cancelled",
        f"{series.master_id}_{THIRD}": "cancelled",
    }


def test_an_occurrence_deleted_in_exchange_is_cancelled_in_google(series: Series) -> None:
    moved_and_cancelled(series)
    series.occurrence(2).delete()  # the moved one
    series.occurrence(5).delete()  # a plain one
    series.run()
    assert series.instance(SECOND)["status"] == "cancelled"
    assert series.instance("20260330T070000Z")["status"] == "cancelled"
    series.quiet()


@pytest.mark.parametrize("modified_beats_delete", [False, True])
def test_an_instance_cancelled_in_google_and_edited_in_exchange_follows_the_deletion_rule(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, modified_beats_delete: bool
) -> None:
    extra = f"[sync]\nmodified_beats_delete = {str(modified_beats_delete).lower()}\n"
    series = Series(tmp_path, ews, google, extra=extra)
    moved_and_cancelled(series)
    second = series.occurrence(2)
    second.location = "Edited in Outlook"
    second.save(update_fields=["location"])
    series.cancel_instance(SECOND)
    series.run()
    master = series.master()
    if modified_beats_delete:
        instance = series.instance(SECOND)
        assert instance["status"] == "confirmed"
        assert (instance["location"], instance["summary"]) == ("Edited in Outlook", "Standup (moved)")
        assert series.occurrence(2).location == "Edited in Outlook"
    else:
        assert master.modified_occurrences is None
        assert [d.start for d in master.deleted_occurrences] == [
            utc(2026, 3, 9, 8),
            utc(2026, 3, 16, 8),
        ]
    series.quiet()


def test_an_occurrence_exchange_refuses_does_not_hold_back_the_others(series: Series) -> None:
    """Google lets an instance move past its neighbour; Exchange refuses that
    (ErrorOccurrenceCrossingBoundary): the refusal is reported, the series' other
    exceptions still go, and neither side loses what it has."""
    series.patch_instance(
        SECOND,
        {
            "start": {"dateTime": "2026-03-17T09:00:00+01:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-03-17T09:30:00+01:00", "timeZone": "Europe/Berlin"},
        },
    )
    series.cancel_instance(FOURTH)
    (report,) = series.job.run([series.config.user_named(ALICE)])  # type: ignore[list-item]
    assert any("ErrorOccurrenceCrossingBoundary" in e for e in report.errors), report.errors
    master = series.master()
    assert master.modified_occurrences is None  # the move was not made
    assert [d.start for d in master.deleted_occurrences] == [utc(2026, 3, 23, 8)]
    assert series.occurrence(2).start == utc(2026, 3, 9, 8)
    assert series.instance(SECOND)["start"]["dateTime"] == "2026-03-17T09:00:00+01:00"


def undo(world: World, capsys: pytest.CaptureFixture[str]) -> list[str]:
    status = main(["undo", "--config", str(world.config_path), ALICE])
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    return out


@pytest.mark.parametrize("moved", [True, False], ids=["moved and cancelled", "cancelled"])
def test_undo_takes_back_a_series_a_run_made_with_its_exceptions(
    tmp_path: Path,
    ews: EwsServer,
    google: GoogleCalendarServer,
    capsys: pytest.CaptureFixture[str],
    moved: bool,
) -> None:
    world = World(tmp_path, ews, google)
    events = world.service.events()
    master_id = events.insert(calendarId="primary", body=SERIES).execute()["id"]
    if moved:
        events.patch(calendarId="primary", eventId=f"{master_id}_{SECOND}", body=MOVED).execute()
    events.delete(calendarId="primary", eventId=f"{master_id}_{THIRD}").execute()
    world.run()
    assert len(list(world.account.calendar.all())) == 1
    undo(world, capsys)
    assert list(world.account.calendar.all()) == []


def test_undo_puts_back_an_occurrence_a_run_moved(
    series: Series, capsys: pytest.CaptureFixture[str]
) -> None:
    series.patch_instance(SECOND, MOVED)
    series.run()
    assert series.occurrence(2).start == utc(2026, 3, 10, 13)
    undo(series, capsys)
    second = series.occurrence(2)
    assert (second.subject, second.start) == ("Standup", utc(2026, 3, 9, 8))
    # Google keeps the edit the run found there, and undo's own writes are no fresh edits
    assert series.instance(SECOND)["summary"] == "Standup (moved)"
    series.quiet()
