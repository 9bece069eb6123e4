"""EWS recurrence <-> RRULE, both ways (mapping/recurrence.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from dateutil import rrule as dateutil_rrule
from exchangelib.ewsdatetime import EWSDate, EWSTimeZone
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from mapping.errors import MappingError
from mapping.event import to_google
from mapping.recurrence import canonical_rrule, from_rrule, parse_rrule, to_rrule
from tests.mapping.conftest import item

UTC = dt.UTC
CHICAGO = EWSTimeZone("America/Chicago")
START = EWSDate(2026, 1, 13)


def parts(line: str) -> dict[str, list[Any]]:
    return parse_rrule(line)


def noend() -> NoEndPattern:
    return NoEndPattern(start=START)


# --- the corpus ----------------------------------------------------------------------------

CORPUS = [
    # WeeklyRecurrence, FirstDayOfWeek Monday, NumberedRecurrence 10
    (
        "create/msdocs_createitem_batch3_incl_weekly_recurrence_req.xml",
        1,
        "RRULE:FREQ=WEEKLY;COUNT=10;BYDAY=TU",
    ),
    # RelativeMonthly: the second Tuesday of every 2 months, no end
    (
        "synthetic/createitem_relativemonthly_relativeyearly_req.xml",
        0,
        "RRULE:FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU",
    ),
    # RelativeYearly: the last Friday of November, 5 times
    (
        "synthetic/createitem_relativemonthly_relativeyearly_req.xml",
        1,
        "RRULE:FREQ=YEARLY;COUNT=5;BYMONTH=11;BYDAY=-1FR",
    ),
    # Daily until May 25 2050, UTC: the last second of that day
    (
        "get/pyexchange_getitem_recurring_master_daily_resp.xml",
        0,
        "RRULE:FREQ=DAILY;UNTIL=20500525T235959Z",
    ),
    # Weekly Mon/Tue/Fri until May 31 2050 in Chicago (CDT, UTC-5)
    (
        "get/pyexchange_getitem_recurring_master_weekly_resp.xml",
        0,
        "RRULE:FREQ=WEEKLY;UNTIL=20500601T045959Z;BYDAY=MO,TU,FR",
    ),
    # AbsoluteMonthly day 20 until July 31 2050
    (
        "get/pyexchange_getitem_recurring_master_absolutemonthly_resp.xml",
        0,
        "RRULE:FREQ=MONTHLY;UNTIL=20500801T045959Z;BYMONTHDAY=20",
    ),
    # AbsoluteYearly May 20 until May 31 2055
    (
        "get/pyexchange_getitem_recurring_master_absoluteyearly_resp.xml",
        0,
        "RRULE:FREQ=YEARLY;UNTIL=20550601T045959Z;BYMONTH=5;BYMONTHDAY=20",
    ),
]


@pytest.mark.parametrize(("name", "index", "expected"), CORPUS)
def test_recurrence_from_the_corpus(name: str, index: int, expected: str) -> None:
    (line,) = to_google(item(name, index))["recurrence"]
    assert parts(line) == parts(expected)


def test_the_corpus_series_expand_to_the_dates_exchange_means() -> None:
    # the last Friday of November 2026..2030, at noon New York time
    event = to_google(item("synthetic/createitem_relativemonthly_relativeyearly_req.xml", 1))
    start = dt.datetime.fromisoformat(event["start"]["dateTime"])
    rule = dateutil_rrule.rrulestr(event["recurrence"][0].removeprefix("RRULE:"), dtstart=start)
    assert [d.date() for d in rule] == [
        dt.date(2026, 11, 27),
        dt.date(2027, 11, 26),
        dt.date(2028, 11, 24),
        dt.date(2029, 11, 30),
        dt.date(2030, 11, 29),
    ]


# --- every pattern, to RRULE and back ------------------------------------------------------

PATTERNS = [
    # Daily every 3 days
    (DailyPattern(interval=3), "FREQ=DAILY;INTERVAL=3"),
    # Weekly: FirstDayOfWeek -> WKST (MO is RFC 5545's default and left out)
    (
        WeeklyPattern(interval=2, weekdays=["Monday", "Wednesday"], first_day_of_week="Sunday"),
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;WKST=SU",
    ),
    (WeeklyPattern(interval=1, weekdays=[7], first_day_of_week=1), "FREQ=WEEKLY;BYDAY=SU"),
    # AbsoluteMonthly; days past 28 mean the month's last day when shorter (EWS rule)
    (AbsoluteMonthlyPattern(interval=1, day_of_month=15), "FREQ=MONTHLY;BYMONTHDAY=15"),
    (
        AbsoluteMonthlyPattern(interval=1, day_of_month=31),
        "FREQ=MONTHLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1",
    ),
    (
        AbsoluteMonthlyPattern(interval=3, day_of_month=30),
        "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=28,29,30;BYSETPOS=-1",
    ),
    # RelativeMonthly: weekdays, Last, and EWS's Day / Weekday / WeekendDay
    (
        RelativeMonthlyPattern(interval=1, weekday="Thursday", week_number="Third"),
        "FREQ=MONTHLY;BYDAY=3TH",
    ),
    (
        RelativeMonthlyPattern(interval=1, weekday="Monday", week_number="Last"),
        "FREQ=MONTHLY;BYDAY=-1MO",
    ),
    (
        RelativeMonthlyPattern(interval=1, weekday="Day", week_number="Last"),
        "FREQ=MONTHLY;BYMONTHDAY=-1",
    ),
    (
        RelativeMonthlyPattern(interval=2, weekday="Weekday", week_number="First"),
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1",
    ),
    (
        RelativeMonthlyPattern(interval=1, weekday="WeekendDay", week_number="Last"),
        "FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=-1",
    ),
    # AbsoluteYearly, including February 29
    (AbsoluteYearlyPattern(day_of_month=4, month="July"), "FREQ=YEARLY;BYMONTH=7;BYMONTHDAY=4"),
    (
        AbsoluteYearlyPattern(day_of_month=29, month="February"),
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=28,29;BYSETPOS=-1",
    ),
    # RelativeYearly
    (
        RelativeYearlyPattern(weekday="Thursday", week_number="Fourth", month="November"),
        "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH",
    ),
    (
        RelativeYearlyPattern(weekday="Weekday", week_number="Last", month="December"),
        "FREQ=YEARLY;BYMONTH=12;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    ),
]


@pytest.mark.parametrize(("pattern", "expected"), PATTERNS)
def test_pattern_to_rrule_and_back(pattern: Any, expected: str) -> None:
    line = to_rrule(Recurrence(pattern=pattern, boundary=noend()), all_day=False, zone=UTC)
    assert parts(line) == parts("RRULE:" + expected)
    start = dt.datetime(2026, 1, 13, 9, 0, tzinfo=CHICAGO)
    back = from_rrule([line], start=start, all_day=False)
    assert back is not None
    assert type(back.pattern) is type(pattern)
    assert to_rrule(back, all_day=False, zone=UTC) == line


def test_day_31_takes_the_last_day_of_shorter_months_as_exchange_does() -> None:
    line = to_rrule(
        Recurrence(pattern=AbsoluteMonthlyPattern(interval=1, day_of_month=31), boundary=noend()),
        all_day=True,
        zone=UTC,
    )
    rule = dateutil_rrule.rrulestr(line.removeprefix("RRULE:"), dtstart=dt.datetime(2026, 1, 31))
    assert [d.date() for d in rule[:4]] == [
        dt.date(2026, 1, 31),
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 31),
        dt.date(2026, 4, 30),
    ]


# --- ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boundary", "all_day", "zone", "expected"),
    [
        (NoEndPattern(start=START), False, UTC, {}),
        (NumberedPattern(start=START, number=7), False, UTC, {"COUNT": [7]}),
        # timed: the last second of the end day in the series' zone, in UTC
        (
            EndDatePattern(start=START, end=EWSDate(2026, 3, 31)),
            False,
            CHICAGO,
            {"UNTIL": [dt.datetime(2026, 4, 1, 4, 59, 59, tzinfo=UTC)]},
        ),
        # southern hemisphere, across its DST end
        (
            EndDatePattern(start=START, end=EWSDate(2026, 4, 10)),
            False,
            EWSTimeZone("Australia/Sydney"),
            {"UNTIL": [dt.datetime(2026, 4, 10, 13, 59, 59, tzinfo=UTC)]},
        ),
        # all-day: a DATE
        (
            EndDatePattern(start=START, end=EWSDate(2026, 3, 31)),
            True,
            UTC,
            {"UNTIL": [dt.date(2026, 3, 31)]},
        ),
    ],
)
def test_ranges(boundary: Any, all_day: bool, zone: Any, expected: dict[str, Any]) -> None:
    line = to_rrule(
        Recurrence(pattern=DailyPattern(interval=1), boundary=boundary), all_day=all_day, zone=zone
    )
    got = parts(line)
    got.pop("FREQ")
    assert {
        k: [v.replace(tzinfo=UTC) if isinstance(v, dt.datetime) else v for v in vs]
        for k, vs in got.items()
    } == expected


@pytest.mark.parametrize(
    ("until", "start", "end_date"),
    [
        # Google's own UNTIL spellings for a 10:00 Sydney series (UTC+11 in January)
        ("20260130T230000Z", "2026-01-13T10:00:00", dt.date(2026, 1, 31)),
        ("20260130T225959Z", "2026-01-13T10:00:00", dt.date(2026, 1, 30)),
        ("20260131T125959Z", "2026-01-13T10:00:00", dt.date(2026, 1, 31)),
        # a DATE UNTIL
        ("20260131", "2026-01-13T10:00:00", dt.date(2026, 1, 31)),
        # an UNTIL before the start still leaves the first occurrence
        ("20250101T000000Z", "2026-01-13T10:00:00", dt.date(2026, 1, 13)),
    ],
)
def test_until_comes_back_as_the_local_date_of_the_last_start(
    until: str, start: str, end_date: dt.date
) -> None:
    sydney = EWSTimeZone("Australia/Sydney")
    begin = dt.datetime.fromisoformat(start).replace(tzinfo=sydney)
    back = from_rrule([f"RRULE:FREQ=DAILY;UNTIL={until}"], start=begin, all_day=False)
    assert back is not None
    assert isinstance(back.boundary, EndDatePattern)
    assert back.boundary.end == end_date
    assert back.boundary.start == dt.date(2026, 1, 13)


# --- what Google may send ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # "every weekday" from Google's UI, daily form
        ("RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR", "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
        # BYDAY;BYSETPOS for one weekday is the same as an ordinal
        ("RRULE:FREQ=MONTHLY;BYDAY=TU;BYSETPOS=2", "RRULE:FREQ=MONTHLY;BYDAY=2TU"),
        # parts filled from the start (Tuesday 13 January)
        ("RRULE:FREQ=WEEKLY", "RRULE:FREQ=WEEKLY;BYDAY=TU"),
        ("RRULE:FREQ=MONTHLY", "RRULE:FREQ=MONTHLY;BYMONTHDAY=13"),
        ("RRULE:FREQ=YEARLY", "RRULE:FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=13"),
        # INTERVAL=1 and WKST=MO are the defaults
        ("RRULE:FREQ=DAILY;INTERVAL=1;WKST=MO", "RRULE:FREQ=DAILY"),
        # a Google day 31 gets Exchange's meaning
        (
            "RRULE:FREQ=MONTHLY;BYMONTHDAY=31",
            "RRULE:FREQ=MONTHLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1",
        ),
        # RelativeMonthly "first Day" is day 1
        (
            "RRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYSETPOS=1",
            "RRULE:FREQ=MONTHLY;BYMONTHDAY=1",
        ),
        # EXDATE lines are not read
        ("RRULE:FREQ=DAILY;COUNT=3\nEXDATE:20260114T090000Z", "RRULE:FREQ=DAILY;COUNT=3"),
    ],
)
def test_google_rrules_are_normalised(line: str, expected: str) -> None:
    start = dt.datetime(2026, 1, 13, 9, 0, tzinfo=UTC)
    back = from_rrule(line.split("\n"), start=start, all_day=False)
    assert back is not None
    assert parts(to_rrule(back, all_day=False, zone=UTC)) == parts(expected)


@pytest.mark.parametrize(
    "lines",
    [
        # outside EWS's patterns
        ["RRULE:FREQ=HOURLY"],
        ["RRULE:FREQ=YEARLY;INTERVAL=2"],
        ["RRULE:FREQ=WEEKLY;INTERVAL=100;BYDAY=MO"],
        ["RRULE:FREQ=DAILY;INTERVAL=2;BYDAY=MO"],
        ["RRULE:FREQ=MONTHLY;BYDAY=1MO,3MO"],
        ["RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15"],
        ["RRULE:FREQ=MONTHLY;BYDAY=TU;BYSETPOS=5"],
        ["RRULE:FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=1"],
        ["RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"],
        ["RRULE:FREQ=MONTHLY;BYMONTH=3"],
        ["RRULE:FREQ=DAILY;COUNT=1000"],
        ["RRULE:FREQ=DAILY;COUNT=3;UNTIL=20260101T000000Z"],
        # two rules, or an EXRULE
        ["RRULE:FREQ=DAILY", "RRULE:FREQ=WEEKLY"],
        ["RRULE:FREQ=DAILY", "EXRULE:FREQ=WEEKLY"],
        # unreadable
        ["RRULE:FREQ=WEEKLY;BYDAY=XX"],
        ["RRULE:"],
    ],
)
def test_rrules_exchange_cannot_store_are_refused(lines: list[str]) -> None:
    with pytest.raises(MappingError):
        from_rrule(lines, start=dt.datetime(2026, 1, 13, 9, 0, tzinfo=UTC), all_day=False)


def test_no_rrule_is_no_recurrence() -> None:
    assert from_rrule([], start=dt.date(2026, 1, 1), all_day=True) is None
    assert from_rrule(["EXDATE:20260101"], start=dt.date(2026, 1, 1), all_day=True) is None


def test_canonical_rrule_is_one_spelling() -> None:
    assert canonical_rrule("RRULE:WKST=MO;BYDAY=WE,MO;INTERVAL=1;FREQ=WEEKLY") == canonical_rrule(
        "RRULE:FREQ=WEEKLY;BYDAY=MO,WE"
    )
