"""Exceptions of a recurring series (mapping/exceptions.py): EWS modified / deleted
occurrences <-> Google instance overrides / cancelled instances, hand-made cases and a
synthetic GetItem response."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    EndDatePattern,
    NoEndPattern,
    Recurrence,
    WeeklyPattern,
)

from ews_parser import parse
from ews_parser.values import Response
from mapping.errors import MappingError
from mapping.event import LOSSY_FIELDS, GoogleEvent, to_google
from mapping.exceptions import (
    ews_original_start,
    exceptions_from,
    instance_id,
    occurrence_index,
    occurrence_of,
    occurrences,
    overrides_for,
    split_from,
)
from mapping.full import to_ews_full, to_google_full

UTC = EWSTimeZone("UTC")
SYNTHETIC = Path(__file__).parent / "synthetic"
MASTER_ID = "m0a1b2c3d4"


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def corpus() -> tuple[Any, Any]:
    body = parse((SYNTHETIC / "getitem_master_and_exception_resp.xml").read_bytes()).body
    assert isinstance(body, Response)
    master, exception = (i.model for m in body.messages for i in m.items)
    return master, exception


def test_synthetic_master_exceptions_become_an_override_and_a_cancelled_instance() -> None:
    master, exception = corpus()
    event = to_google_full(master).event
    deleted = [d.start for d in master.deleted_occurrences]
    assert [o.id for o in master.modified_occurrences] == [exception.id]
    out = overrides_for(MASTER_ID, event, [exception], deleted)
    moved, gone = out
    assert moved["id"] == f"{MASTER_ID}_20260324T083000Z"
    assert moved["recurringEventId"] == MASTER_ID
    assert moved["originalStartTime"] == {"dateTime": "2026-03-24T09:30:00+01:00",
                                          "timeZone": "Europe/Berlin"}
    assert moved["start"] == {"dateTime": "2026-03-24T11:00:00+01:00",
                              "timeZone": "Europe/Berlin"}
    assert moved["summary"] == "Weekly sync (moved)"
    assert moved["transparency"] == "opaque"
    assert moved["extendedProperties"]["private"]["ews_free_busy"] == "Tentative"
    assert moved["attendees"] == [{"email": "bob@example.com", "displayName": "Bob",
                                   "responseStatus": "declined"}]
    assert "recurrence" not in moved
    # after the DST change: 09:30 CEST is 07:30Z
    assert gone == {"id": f"{MASTER_ID}_20260407T073000Z", "recurringEventId": MASTER_ID,
                    "originalStartTime": {"dateTime": "2026-04-07T09:30:00+02:00",
                                          "timeZone": "Europe/Berlin"},
                    "status": "cancelled"}
    # EWS InstanceIndex of each, for OccurrenceItemId
    event["id"] = MASTER_ID
    assert occurrence_index(event, exception.original_start) == 4
    assert occurrence_index(event, deleted[0]) == 6
    # and back
    modified, deleted_back = exceptions_from(event, out)
    assert deleted_back == [utc(2026, 4, 7, 7, 30)]
    assert len(modified) == 1
    assert modified[0]["original_start"] == utc(2026, 3, 24, 8, 30)
    assert modified[0]["subject"] == "Weekly sync (moved)"
    assert modified[0]["recurrence"] is None
    assert overrides_for(MASTER_ID, event, [CalendarItem(**modified[0])], deleted_back) == out


def weekly(zone: str = "Europe/Berlin", all_day: bool = False, **fields: Any) -> GoogleEvent:
    """A Google master: Tuesdays 09:30 from 2026-03-03 (an all-day one: the dates)."""
    master: GoogleEvent = {"id": MASTER_ID, "summary": "Weekly", "iCalUID": "UID1",
                           "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=TU"]}
    if all_day:
        master["start"], master["end"] = {"date": "2026-03-03"}, {"date": "2026-03-04"}
    else:
        master["start"] = {"dateTime": "2026-03-03T09:30:00+01:00", "timeZone": zone}
        master["end"] = {"dateTime": "2026-03-03T10:00:00+01:00", "timeZone": zone}
    master.update(fields)
    return master


def instance(master: GoogleEvent, original: str, **fields: Any) -> GoogleEvent:
    """An instance as events.instances lists it: the master's fields at that start."""
    base = {k: v for k, v in master.items() if k not in ("id", "recurrence")}
    start = dt.datetime.fromisoformat(original)
    if "date" in master["start"]:
        base["start"], base["end"] = {"date": original}, {
            "date": (dt.date.fromisoformat(original) + dt.timedelta(days=1)).isoformat()}
        base["originalStartTime"] = {"date": original}
        key = f"{MASTER_ID}_{original.replace('-', '')}"
    else:
        zone = master["start"]["timeZone"]
        base["start"] = {"dateTime": original, "timeZone": zone}
        base["end"] = {"dateTime": (start + dt.timedelta(minutes=30)).isoformat(),
                       "timeZone": zone}
        base["originalStartTime"] = {"dateTime": original, "timeZone": zone}
        key = instance_id(MASTER_ID, start)
    base.update({"id": key, "recurringEventId": MASTER_ID, **fields})
    return base


def test_instances_that_change_nothing_are_not_exceptions() -> None:
    master = weekly()
    listed = [instance(master, "2026-03-10T09:30:00+01:00"),
              instance(master, "2026-03-17T09:30:00+01:00", summary="Other"),
              instance(master, "2026-03-31T09:30:00+02:00", status="cancelled")]
    modified, deleted = exceptions_from(master, listed)
    assert [m["original_start"] for m in modified] == [utc(2026, 3, 17, 8, 30)]
    assert deleted == [utc(2026, 3, 31, 7, 30)]


def test_instances_of_another_series_are_left_alone() -> None:
    master = weekly()
    other = instance(master, "2026-03-17T09:30:00+01:00", summary="x", recurringEventId="zzz")
    assert exceptions_from(master, [other]) == ([], [])


def test_all_day_series_use_dates() -> None:
    master = weekly(all_day=True)
    moved = instance(master, "2026-03-10", start={"date": "2026-03-11"},
                     end={"date": "2026-03-13"})
    gone = instance(master, "2026-03-17", status="cancelled")
    modified, deleted = exceptions_from(master, [moved, gone])
    assert modified[0]["original_start"] == EWSDate(2026, 3, 10)
    assert (modified[0]["start"], modified[0]["end"]) == (EWSDate(2026, 3, 11),
                                                          EWSDate(2026, 3, 12))
    assert deleted == [dt.date(2026, 3, 17)]
    assert occurrence_index(master, dt.date(2026, 3, 17)) == 3
    again = overrides_for(MASTER_ID, master, [CalendarItem(**modified[0])], deleted)
    assert [e["id"] for e in again] == [f"{MASTER_ID}_20260310", f"{MASTER_ID}_20260317"]
    assert again[0]["originalStartTime"] == {"date": "2026-03-10"}
    assert again[0]["end"] == {"date": "2026-03-13"}


def test_all_day_deleted_starts_given_as_midnights_of_the_mailbox_zone() -> None:
    # EWS gives DeletedOccurrence/Start as an instant: midnight in Sydney is the day before
    master = weekly(all_day=True)
    sydney_midnight = EWSDateTime(2026, 3, 17, 0, 0, tzinfo=EWSTimeZone("Australia/Sydney"))
    out = overrides_for(MASTER_ID, master, [], [sydney_midnight.astimezone(UTC)],
                        default_zone="AUS Eastern Standard Time")
    assert out[0]["id"] == f"{MASTER_ID}_20260317"


def test_a_timed_series_needs_aware_original_starts() -> None:
    with pytest.raises(MappingError):
        occurrence_index(weekly(), dt.datetime(2026, 3, 10, 9, 30))
    with pytest.raises(MappingError):
        overrides_for(MASTER_ID, weekly(), [], [dt.date(2026, 3, 10)])


def test_occurrences_of_a_series_whose_dtstart_the_rule_skips() -> None:
    # Google always shows DTSTART (a Monday here), then the Tuesdays
    master = weekly()
    master["start"]["dateTime"] = "2026-03-02T09:30:00+01:00"
    master["end"]["dateTime"] = "2026-03-02T10:00:00+01:00"
    first = list(zip(range(3), occurrences(master), strict=False))
    assert [when for _, when in first] == [utc(2026, 3, 2, 8, 30), utc(2026, 3, 3, 8, 30),
                                          utc(2026, 3, 10, 8, 30)]


def test_an_end_date_in_the_month_of_a_dst_change() -> None:
    # EWS: AbsoluteMonthly on the 31st (the last day in short months), until 2026-12-31
    start = EWSDateTime(2026, 1, 31, 22, 0, tzinfo=UTC)  # 23:00 Berlin
    item = CalendarItem(subject="m", start=start, end=start + dt.timedelta(hours=1),
                        _start_timezone=EWSTimeZone("Europe/Berlin"),
                        recurrence=Recurrence(
                            pattern=AbsoluteMonthlyPattern(interval=1, day_of_month=31),
                            boundary=EndDatePattern(start=EWSDate(2026, 1, 31),
                                                    end=EWSDate(2026, 12, 31))))
    master = to_google_full(item).event
    starts = list(occurrences(master))
    assert len(starts) == 12
    assert starts[2] == utc(2026, 3, 31, 21, 0)  # 23:00 CEST
    assert occurrence_index(master, utc(2026, 2, 28, 22, 0)) == 2
    assert occurrence_index(master, utc(2026, 2, 28, 21, 0)) is None


# --- "this and following" -------------------------------------------------------------------


def test_this_and_following_maps_to_two_ews_series() -> None:
    # Google trims the master at the split and starts a new series with its own id
    trimmed = weekly(recurrence=["RRULE:FREQ=WEEKLY;BYDAY=TU;UNTIL=20260323T225959Z"])
    new = weekly(id="n1e2w3", iCalUID="UID1_R20260324T083000", summary="Weekly (new room)",
                 start={"dateTime": "2026-03-24T09:30:00+01:00", "timeZone": "Europe/Berlin"},
                 end={"dateTime": "2026-03-24T10:00:00+01:00", "timeZone": "Europe/Berlin"})
    assert split_from(new, trimmed) and not split_from(trimmed, new)
    old_kwargs, new_kwargs = to_ews_full(trimmed), to_ews_full(new)
    assert old_kwargs["recurrence"].boundary.end == EWSDate(2026, 3, 23)
    assert new_kwargs["recurrence"].boundary.start == EWSDate(2026, 3, 24)
    assert new_kwargs["uid"] == "UID1_R20260324T083000"
    # an exception of the old series past the split is dropped with it
    late = instance(trimmed, "2026-03-31T09:30:00+02:00", summary="late")
    early = instance(trimmed, "2026-03-17T09:30:00+01:00", summary="early")
    modified, _ = exceptions_from(trimmed, [early, late])
    assert [m["subject"] for m in modified] == ["early"]


# --- LOSSY_FIELDS rules this module follows --------------------------------------------------


def _exdate_is_read_as_deleted_and_written_as_a_cancelled_instance() -> None:
    master = weekly(recurrence=["RRULE:FREQ=WEEKLY;BYDAY=TU",
                                "EXDATE;TZID=Europe/Berlin:20260310T093000,20260317T093000",
                                "EXDATE:20260324T083000Z"])
    _modified, deleted = exceptions_from(master, [])
    assert deleted == [utc(2026, 3, 10, 8, 30), utc(2026, 3, 17, 8, 30),
                       utc(2026, 3, 24, 8, 30)]
    back = to_google_full(CalendarItem(**to_ews_full(master))).event
    assert back["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=TU"]
    out = overrides_for(MASTER_ID, back, [], deleted)
    assert [e["status"] for e in out] == ["cancelled"] * 3


def _cancelled_instances_carry_only_what_google_guarantees() -> None:
    master = weekly()
    gone = instance(master, "2026-03-10T09:30:00+01:00", status="cancelled", summary="gone")
    _, deleted = exceptions_from(master, [gone])
    (out,) = overrides_for(MASTER_ID, master, [], deleted)
    assert set(out) == {"id", "recurringEventId", "originalStartTime", "status"}


def _original_start_is_kept_to_the_second_in_the_master_zone() -> None:
    master = weekly()
    moved = instance(master, "2026-03-10T09:30:00+01:00", summary="x")
    moved["originalStartTime"] = {"dateTime": "2026-03-10T08:30:00.400Z"}
    modified, _ = exceptions_from(master, [moved])
    (out,) = overrides_for(MASTER_ID, master, [CalendarItem(**modified[0])], [])
    assert out["originalStartTime"] == {"dateTime": "2026-03-10T09:30:00+01:00",
                                        "timeZone": "Europe/Berlin"}
    # an original start the rule does not give is no exception of this series
    stray = instance(master, "2026-03-11T09:30:00+01:00", summary="x")
    assert exceptions_from(master, [stray]) == ([], [])


def _a_split_is_two_unlinked_series() -> None:
    new = weekly(id="n1e2w3", iCalUID="UID1_R20260324T083000")
    kwargs = to_ews_full(new)
    assert kwargs["uid"] == "UID1_R20260324T083000"
    back = to_google_full(CalendarItem(**kwargs)).event
    assert "recurringEventId" not in back and back["iCalUID"] == "UID1_R20260324T083000"


#: (the LOSSY_FIELDS entries, the test that shows the rule)
EXCEPTION_LOSSES: list[tuple[tuple[str, ...], Callable[[], None]]] = [
    (("recurrence",), _exdate_is_read_as_deleted_and_written_as_a_cancelled_instance),
    (("status",), _cancelled_instances_carry_only_what_google_guarantees),
    (("originalStartTime",), _original_start_is_kept_to_the_second_in_the_master_zone),
    (("recurringEventId",), _a_split_is_two_unlinked_series),
]


@pytest.mark.parametrize(
    ("rules", "check"), EXCEPTION_LOSSES, ids=["+".join(r) for r, _ in EXCEPTION_LOSSES]
)
def test_what_does_not_survive_follows_its_rule(
    rules: tuple[str, ...], check: Callable[[], None]
) -> None:
    assert set(rules) <= set(LOSSY_FIELDS)
    check()


def test_no_end_series_index_lookups_stop() -> None:
    start = EWSDateTime(2026, 1, 5, 8, 0, tzinfo=UTC)
    item = CalendarItem(subject="d", start=start, end=start + dt.timedelta(hours=1),
                        _start_timezone=UTC,
                        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]),
                                              boundary=NoEndPattern(start=EWSDate(2026, 1, 5))))
    master = to_google_full(item).event
    assert occurrence_index(master, utc(2026, 1, 12, 8, 0)) == 2
    assert occurrence_index(master, utc(2500, 1, 12, 8, 0)) is None


# --- what a series gives at one occurrence ------------------------------------------------

WEEKLY_BERLIN: GoogleEvent = {
    "id": MASTER_ID,
    "summary": "Standup",
    "location": "Room 1",
    "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-02T09:30:00+01:00", "timeZone": "Europe/Berlin"},
    "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=6"],
    "iCalUID": "standup@example.com",
    "reminders": {"useDefault": True},
}


@pytest.mark.parametrize(
    ("master", "original", "start", "end"),
    [
        # the wall clock of the series, across the DST change (30 March)
        (WEEKLY_BERLIN, utc(2026, 3, 9, 8),
         {"dateTime": "2026-03-09T09:00:00+01:00", "timeZone": "Europe/Berlin"},
         {"dateTime": "2026-03-09T09:30:00+01:00", "timeZone": "Europe/Berlin"}),
        (WEEKLY_BERLIN, utc(2026, 4, 6, 7),
         {"dateTime": "2026-04-06T09:00:00+02:00", "timeZone": "Europe/Berlin"},
         {"dateTime": "2026-04-06T09:30:00+02:00", "timeZone": "Europe/Berlin"}),
        # an end in a zone of its own keeps it; the duration is the master's
        ({**WEEKLY_BERLIN, "end": {"dateTime": "2026-03-02T10:30:00+02:00",
                                   "timeZone": "Europe/Helsinki"}},
         utc(2026, 3, 9, 8),
         {"dateTime": "2026-03-09T09:00:00+01:00", "timeZone": "Europe/Berlin"},
         {"dateTime": "2026-03-09T10:30:00+02:00", "timeZone": "Europe/Helsinki"}),
        # all-day, two days long
        ({"id": MASTER_ID, "summary": "Offsite", "start": {"date": "2026-03-02"},
          "end": {"date": "2026-03-04"}, "recurrence": ["RRULE:FREQ=MONTHLY;COUNT=3"]},
         dt.date(2026, 4, 2), {"date": "2026-04-02"}, {"date": "2026-04-04"}),
    ],
)
def test_occurrence_of_is_the_master_at_that_start(
    master: GoogleEvent, original: dt.date, start: dict[str, str], end: dict[str, str]
) -> None:
    plain = occurrence_of(master, original)
    assert (plain["start"], plain["end"]) == (start, end)
    assert plain["summary"] == master["summary"]
    assert not {"id", "recurrence", "iCalUID"} & set(plain)


def test_occurrence_of_equals_what_an_unmodified_exchange_occurrence_maps_to() -> None:
    """The base an exception is told apart by is one value on both sides: an unmodified
    occurrence read from Exchange maps to what the mapped master gives at its start."""
    start = EWSDateTime(2026, 3, 2, 9, 0, tzinfo=EWSTimeZone("Europe/Berlin"))
    zone = EWSTimeZone("Europe/Berlin")
    master = CalendarItem(
        subject="Standup", location="Room 1", start=start, end=start + dt.timedelta(minutes=30),
        _start_timezone=zone, _end_timezone=zone, reminder_is_set=True,
        reminder_minutes_before_start=15,
        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]),
                              boundary=NoEndPattern(start=EWSDate(2026, 3, 2))),
    )
    moved = EWSDateTime(2026, 4, 6, 9, 0, tzinfo=zone)
    occurrence = CalendarItem(
        subject="Standup", location="Room 1", start=moved, end=moved + dt.timedelta(minutes=30),
        _start_timezone=zone, _end_timezone=zone, reminder_is_set=True,
        reminder_minutes_before_start=15,
    )
    expected = to_google(occurrence)
    plain = occurrence_of(to_google(master), utc(2026, 4, 6, 7))
    assert plain == {k: v for k, v in expected.items() if k != "iCalUID"}


@pytest.mark.parametrize(
    ("value", "all_day", "expected"),
    [
        (EWSDateTime(2026, 3, 9, 8, 0, tzinfo=UTC), False, utc(2026, 3, 9, 8)),
        # an all-day occurrence's OriginalStart is its midnight in the series' zone
        (EWSDateTime(2026, 3, 8, 23, 0, tzinfo=UTC), True, dt.date(2026, 3, 9)),
        (EWSDate(2026, 3, 9), True, dt.date(2026, 3, 9)),
    ],
)
def test_ews_original_start(value: dt.date, all_day: bool, expected: dt.date) -> None:
    zone = EWSTimeZone("Europe/Berlin")
    assert ews_original_start(value, all_day=all_day, zone=zone) == expected
