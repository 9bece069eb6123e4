"""Recurring series through the real exchangelib: CalendarView expansion, occurrences by
index, modified and deleted occurrences, the master of an occurrence.

Expansion is cross-checked against python-dateutil's rrule for the same series written
as an RFC 5545 RRULE (what the Google side stores), over two years across DST changes.
"""

from __future__ import annotations

import datetime as dt

import pytest
from dateutil import rrule
from exchangelib import Account, CalendarItem, EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.errors import (
    ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange,
    ErrorCalendarOccurrenceIsDeletedFromRecurrence,
)
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    WeeklyPattern,
)

UTC = EWSTimeZone("UTC")
BERLIN = EWSTimeZone("Europe/Berlin")
MONDAY, WEDNESDAY = 1, 3


def _weekly(account: Account, count: int = 10, **fields: object) -> CalendarItem:
    """Mondays 09:00-10:00 Berlin from 2024-03-04, `count` times (crosses DST on 31 March)."""
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=fields.pop("subject", "Weekly"),
        start=EWSDateTime(2024, 3, 4, 9, 0, tzinfo=BERLIN),
        end=EWSDateTime(2024, 3, 4, 10, 0, tzinfo=BERLIN),
        recurrence=fields.pop("recurrence", None)
        or Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[MONDAY], first_day_of_week=1),
                      boundary=NumberedPattern(start=EWSDate(2024, 3, 4), number=count)),
        **fields,
    )
    item.save()
    return item


def _view(account: Account, start: dt.date, end: dt.date) -> list[CalendarItem]:
    return list(account.calendar.view(
        start=EWSDateTime(start.year, start.month, start.day, tzinfo=UTC),
        end=EWSDateTime(end.year, end.month, end.day, tzinfo=UTC),
    ))


def test_view_expands_a_weekly_master_keeping_wall_clock_time_across_dst(alice: Account) -> None:
    # FindItem with a CalendarView returns occurrences, not the master; each keeps 09:00
    # Berlin time, so the UTC hour moves when DST starts (calendars-and-ews-in-exchange).
    master = _weekly(alice, count=6)
    seen = _view(alice, dt.date(2024, 3, 1), dt.date(2024, 5, 1))
    assert [o.type for o in seen] == ["Occurrence"] * 6
    assert [o.start.astimezone(BERLIN).hour for o in seen] == [9] * 6
    # DST starts on 31 March: 08:00 UTC before, 07:00 UTC after
    assert [o.start.astimezone(UTC).hour for o in seen] == [8, 8, 8, 8, 7, 7]
    assert seen[0].start == EWSDateTime(2024, 3, 4, 8, 0, tzinfo=UTC)
    assert seen[4].start == EWSDateTime(2024, 4, 1, 7, 0, tzinfo=UTC)
    assert all(o.subject == "Weekly" for o in seen)
    assert len({o.id for o in seen}) == 6 and master.id not in {o.id for o in seen}


def test_view_only_returns_what_overlaps_the_window(alice: Account) -> None:
    # CalendarView returns items that overlap [StartDate, EndDate).
    _weekly(alice, count=10)
    seen = _view(alice, dt.date(2024, 3, 11), dt.date(2024, 3, 19))
    assert [o.start.date() for o in seen] == [dt.date(2024, 3, 11), dt.date(2024, 3, 18)]


def test_master_carries_first_and_last_occurrence(alice: Account) -> None:
    # GetItem on a master: CalendarItemType RecurringMaster, FirstOccurrence/LastOccurrence.
    master = alice.calendar.get(id=_weekly(alice, count=3).id)
    assert master.type == "RecurringMaster"
    assert master.is_recurring
    assert master.first_occurrence.start == EWSDateTime(2024, 3, 4, 8, 0, tzinfo=UTC)
    assert master.last_occurrence.start == EWSDateTime(2024, 3, 18, 8, 0, tzinfo=UTC)
    assert isinstance(master.recurrence.pattern, WeeklyPattern)


def test_occurrence_by_index_and_back_to_its_master(alice: Account) -> None:
    # OccurrenceItemId (master id + 1-based InstanceIndex) names one occurrence;
    # RecurringMasterItemId (an occurrence id) names its master.
    master = _weekly(alice, count=5)
    third = master.occurrence(3)
    third.refresh()
    assert third.type == "Occurrence"
    assert third.start == EWSDateTime(2024, 3, 18, 8, 0, tzinfo=UTC)
    back = third.recurring_master()
    back.refresh()
    assert back.id == master.id
    assert back.type == "RecurringMaster"


def test_occurrence_index_out_of_range(alice: Account) -> None:
    # GetItem with an InstanceIndex past the series' end:
    # ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange.
    master = _weekly(alice, count=2)
    with pytest.raises(ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange):
        master.occurrence(3).refresh()


def test_modified_and_deleted_occurrences(alice: Account) -> None:
    # Updating an occurrence makes it an Exception listed in the master's
    # ModifiedOccurrences; deleting one lists it in DeletedOccurrences and the view skips
    # it; a deleted index is ErrorCalendarOccurrenceIsDeletedFromRecurrence.
    master = _weekly(alice, count=4)
    second = master.occurrence(2)
    second.refresh()
    second.subject = "Moved to the afternoon"
    second.start = EWSDateTime(2024, 3, 11, 15, 0, tzinfo=BERLIN)
    second.end = EWSDateTime(2024, 3, 11, 16, 0, tzinfo=BERLIN)
    second.save(update_fields=["subject", "start", "end"])
    third = master.occurrence(3)
    third.refresh()
    third.delete()

    seen = _view(alice, dt.date(2024, 3, 1), dt.date(2024, 4, 1))
    assert [(o.type, o.subject) for o in seen] == [
        ("Occurrence", "Weekly"), ("Exception", "Moved to the afternoon"),
        ("Occurrence", "Weekly"),
    ]
    assert seen[1].start == EWSDateTime(2024, 3, 11, 14, 0, tzinfo=UTC)
    assert seen[1].original_start == EWSDateTime(2024, 3, 11, 8, 0, tzinfo=UTC)

    fresh = alice.calendar.get(id=master.id)
    assert fresh.changekey != master.changekey  # the master changed with its occurrences
    assert [o.original_start for o in fresh.modified_occurrences] == [
        EWSDateTime(2024, 3, 11, 8, 0, tzinfo=UTC)]
    assert [d.start for d in fresh.deleted_occurrences] == [
        EWSDateTime(2024, 3, 18, 8, 0, tzinfo=UTC)]
    with pytest.raises(ErrorCalendarOccurrenceIsDeletedFromRecurrence):
        master.occurrence(3).refresh()


def test_master_created_on_a_skipped_day_moves_to_its_first_occurrence(alice: Account) -> None:
    # MS-OXOCAL 2.2.1.5: a series' start "is the start date and time of the first instance
    # according to the recurrence pattern". 2024-03-04 is a Monday; the pattern is Wednesdays.
    created = _weekly(alice, recurrence=Recurrence(
        pattern=WeeklyPattern(interval=1, weekdays=[WEDNESDAY], first_day_of_week=1),
        boundary=NumberedPattern(start=EWSDate(2024, 3, 4), number=3)))
    master = alice.calendar.get(id=created.id)
    assert master.start == EWSDateTime(2024, 3, 6, 8, 0, tzinfo=UTC)
    assert master.end == EWSDateTime(2024, 3, 6, 9, 0, tzinfo=UTC)
    seen = _view(alice, dt.date(2024, 3, 1), dt.date(2024, 4, 1))
    assert [o.start.date() for o in seen] == [
        dt.date(2024, 3, 6), dt.date(2024, 3, 13), dt.date(2024, 3, 20)]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # the 31st: months with fewer days take their last day, none is skipped
        (AbsoluteMonthlyPattern(interval=1, day_of_month=31),
         [dt.date(2024, 3, 31), dt.date(2024, 4, 30), dt.date(2024, 5, 31), dt.date(2024, 6, 30)]),
        # 29 February: the 28th in common years
        (AbsoluteYearlyPattern(day_of_month=29, month=2),
         [dt.date(2025, 2, 28), dt.date(2026, 2, 28), dt.date(2027, 2, 28), dt.date(2028, 2, 29)]),
    ],
    ids=["monthly-31st", "yearly-29-february"],
)
def test_day_of_month_past_the_month_end_is_its_last_day(
    alice: Account, pattern: object, expected: list[dt.date]
) -> None:
    # DayOfMonth: "If for a particular month this value is larger than the number of days in
    # the month, the last day of the month is assumed" (web-service-reference/dayofmonth).
    _weekly(alice, recurrence=Recurrence(
        pattern=pattern, boundary=NumberedPattern(start=EWSDate(2024, 3, 4), number=4)))
    seen = _view(alice, dt.date(2024, 3, 1), dt.date(2029, 1, 1))
    assert [o.start.astimezone(BERLIN).date() for o in seen] == expected


def test_deleting_the_master_deletes_the_series(alice: Account) -> None:
    # DeleteItem on the master removes every occurrence.
    master = _weekly(alice, count=4)
    master.delete()
    assert _view(alice, dt.date(2024, 3, 1), dt.date(2024, 4, 1)) == []


def _rrule_starts(rule: str, first: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    starts = rrule.rrulestr(rule, dtstart=first)
    return [s.astimezone(dt.UTC) for s in starts.between(first, end, inc=True)]


@pytest.mark.parametrize(
    ("recurrence", "rule"),
    [
        # weekly on Monday and Wednesday, no end
        (Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[MONDAY, WEDNESDAY],
                                          first_day_of_week=1),
                    boundary=NoEndPattern(start=EWSDate(2024, 3, 4))),
         "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;WKST=MO"),
        # every other day until a date
        (Recurrence(pattern=DailyPattern(interval=2),
                    boundary=EndDatePattern(start=EWSDate(2024, 3, 4), end=EWSDate(2025, 10, 1))),
         "RRULE:FREQ=DAILY;INTERVAL=2;UNTIL=20251001T215959Z"),
        # the last Monday of every month
        (Recurrence(pattern=RelativeMonthlyPattern(interval=1, weekday=MONDAY, week_number=5),
                    boundary=NoEndPattern(start=EWSDate(2024, 3, 4))),
         "RRULE:FREQ=MONTHLY;BYDAY=-1MO"),
    ],
    ids=["weekly-mo-we", "daily-2-until", "monthly-last-monday"],
)
def test_expansion_matches_the_same_rrule_over_two_years(
    alice: Account, recurrence: Recurrence, rule: str
) -> None:
    # Exchange's occurrences and the equivalent RRULE's instances agree, DST included.
    _weekly(alice, recurrence=recurrence)
    window_end = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
    first = dt.datetime(2024, 3, 4, 9, 0, tzinfo=BERLIN)
    expected = _rrule_starts(rule, first, window_end)
    seen = _view(alice, dt.date(2024, 3, 1), window_end.date())
    assert [o.start.astimezone(UTC).replace(tzinfo=None) for o in seen] == [
        s.replace(tzinfo=None) for s in expected]
    assert len(seen) > 20
