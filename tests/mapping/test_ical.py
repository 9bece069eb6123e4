"""mapping/ical.py: iCalendar -> calendar item fields, and back, as Exchange converts
MimeContent; and the item a CreateItem with MimeContent makes (what the worker maps).

The RRULE templates follow MS-OXCICAL 2.1.3.2.2; what EWS cannot express is refused, as
Exchange refuses it (ErrorMimeContentConversionFailed at the EWS stand-in). Written series
are cross-checked against the EWS stand-in's own expansion (read-only use).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import icalendar
import pytest
from dateutil import rrule
from exchangelib import EWSDate, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import HTMLBody
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

from emulators.ews import recurrence as rec
from ews_parser.values import MimeContent
from mapping import ical

BERLIN = EWSTimeZone("Europe/Berlin")
NEW_YORK = EWSTimeZone("America/New_York")
OWNER = "alice@example.com"

BERLIN_VTIMEZONE = """BEGIN:VTIMEZONE
TZID:{tzid}
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
END:STANDARD
END:VTIMEZONE
"""
NEW_YORK_VTIMEZONE = """BEGIN:VTIMEZONE
TZID:{tzid}
BEGIN:DAYLIGHT
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
DTSTART:20070311T020000
RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
DTSTART:20071104T020000
RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11
END:STANDARD
END:VTIMEZONE
"""


def ics(*lines: str, zones: str = "") -> bytes:
    """A VCALENDAR around `lines` (one VEVENT unless they bring their own), CRLF."""
    body = "\n".join(lines)
    if "BEGIN:VEVENT" not in body:
        body = f"BEGIN:VEVENT\nUID:u1\n{body}\nEND:VEVENT"
    text = f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{zones}{body}\nEND:VCALENDAR\n"
    return text.replace("\n", "\r\n").encode()


def read(*lines: str, zones: str = "", default: EWSTimeZone | None = ical.UTC_ZONE) -> ical.Imported:
    return ical.read_calendar(ics(*lines, zones=zones), owner=OWNER, default_zone=default)


MONDAY_9 = "DTSTART;TZID=Europe/Berlin:20270104T090000"
MONDAY_10 = "DTEND;TZID=Europe/Berlin:20270104T100000"


# --- RRULE -> EWS Recurrence ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "pattern"),
    [
        # daily, every third day
        ("FREQ=DAILY;INTERVAL=3", DailyPattern(interval=3)),
        # "every weekday" is a weekly pattern in EWS
        ("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
         WeeklyPattern(interval=1, weekdays=[1, 2, 3, 4, 5], first_day_of_week=1)),
        # weekly without BYDAY: DTSTART's weekday (a Monday); WKST kept
        ("FREQ=WEEKLY;INTERVAL=2;WKST=SU",
         WeeklyPattern(interval=2, weekdays=[1], first_day_of_week=7)),
        ("FREQ=WEEKLY;BYDAY=WE,MO", WeeklyPattern(interval=1, weekdays=[1, 3],
                                                  first_day_of_week=1)),
        # monthly on a day; the 4th by default (DTSTART's day); -1 is the last Day
        ("FREQ=MONTHLY;BYMONTHDAY=15", AbsoluteMonthlyPattern(interval=1, day_of_month=15)),
        ("FREQ=MONTHLY;INTERVAL=2", AbsoluteMonthlyPattern(interval=2, day_of_month=4)),
        ("FREQ=MONTHLY;BYMONTHDAY=-1", RelativeMonthlyPattern(interval=1, weekday=8,
                                                              week_number=5)),
        # monthly on the nth weekday, written either way; last is week 5
        ("FREQ=MONTHLY;BYDAY=2TU", RelativeMonthlyPattern(interval=1, weekday=2, week_number=2)),
        ("FREQ=MONTHLY;BYDAY=FR;BYSETPOS=3",
         RelativeMonthlyPattern(interval=1, weekday=5, week_number=3)),
        ("FREQ=MONTHLY;BYDAY=-1MO", RelativeMonthlyPattern(interval=1, weekday=1, week_number=5)),
        # day groups: the last weekday, the first weekend day, the second day
        ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
         RelativeMonthlyPattern(interval=1, weekday=9, week_number=5)),
        ("FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1",
         RelativeMonthlyPattern(interval=1, weekday=10, week_number=1)),
        ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYSETPOS=2",
         RelativeMonthlyPattern(interval=1, weekday=8, week_number=2)),
        # yearly, absolute and relative; BYMONTH defaults to DTSTART's month
        ("FREQ=YEARLY;BYMONTH=7;BYMONTHDAY=14", AbsoluteYearlyPattern(month=7, day_of_month=14)),
        ("FREQ=YEARLY", AbsoluteYearlyPattern(month=1, day_of_month=4)),
        ("FREQ=YEARLY;BYDAY=1SU;BYMONTH=3", RelativeYearlyPattern(month=3, weekday=7,
                                                                  week_number=1)),
        # every other year: EWS yearly patterns have no interval, so 24 months
        ("FREQ=YEARLY;INTERVAL=2", AbsoluteMonthlyPattern(interval=24, day_of_month=4)),
    ],
)
def test_rrule_becomes_the_ews_pattern(rule: str, pattern: Any) -> None:
    got = read(MONDAY_9, MONDAY_10, f"RRULE:{rule}").fields["recurrence"]
    assert got.pattern == pattern
    assert got.boundary == NoEndPattern(start=EWSDate(2027, 1, 4))


@pytest.mark.parametrize(
    ("rule", "boundary"),
    [
        ("FREQ=WEEKLY;COUNT=5", NumberedPattern(start=EWSDate(2027, 1, 4), number=5)),
        # UNTIL at the occurrence's time (08:00Z is 09:00 Berlin): that day is the end
        ("FREQ=WEEKLY;UNTIL=20270201T080000Z",
         EndDatePattern(start=EWSDate(2027, 1, 4), end=EWSDate(2027, 2, 1))),
        # UNTIL before that day's occurrence: it is not in the series, the day before ends it
        ("FREQ=WEEKLY;UNTIL=20270201T000000Z",
         EndDatePattern(start=EWSDate(2027, 1, 4), end=EWSDate(2027, 1, 31))),
        ("FREQ=WEEKLY;UNTIL=20270201", EndDatePattern(start=EWSDate(2027, 1, 4),
                                                       end=EWSDate(2027, 2, 1))),
    ],
)
def test_count_and_until_become_the_range(rule: str, boundary: Any) -> None:
    assert read(MONDAY_9, MONDAY_10, f"RRULE:{rule}").fields["recurrence"].boundary == boundary


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=HOURLY",  # no EWS pattern
        "FREQ=YEARLY;BYWEEKNO=20",
        "FREQ=MONTHLY;BYDAY=MO",  # every Monday of the month
        "FREQ=MONTHLY;BYMONTHDAY=1,15",
        "FREQ=MONTHLY;BYDAY=MO,WE;BYSETPOS=1",  # a set of days EWS has no group for
        "FREQ=WEEKLY;BYDAY=1MO",
        "FREQ=DAILY;BYHOUR=9,17",
        "FREQ=MONTHLY;BYDAY=5FR",  # a fifth Friday: EWS's week 5 means the last
    ],
)
def test_a_rule_no_ews_pattern_expresses_is_refused(rule: str) -> None:
    with pytest.raises(ical.MimeConversionError):
        read(MONDAY_9, MONDAY_10, f"RRULE:{rule}")


def test_byhour_restating_dtstart_is_accepted() -> None:
    # MS-OXCICAL's own template: "Every day at 3:30 P.M.: FREQ=DAILY;BYMINUTE=30;BYHOUR=15"
    got = read(MONDAY_9, MONDAY_10, "RRULE:FREQ=DAILY;BYMINUTE=0;BYHOUR=9")
    assert got.fields["recurrence"].pattern == DailyPattern(interval=1)


@pytest.mark.parametrize(
    ("lines", "start", "end"),
    [
        # a Sunday DTSTART of a Monday rule: the series starts on Monday, its hour kept
        ((MONDAY_9.replace("0104", "0103"), MONDAY_10.replace("0104", "0103"),
          "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3"),
         dt.datetime(2027, 1, 4, 8, tzinfo=dt.UTC), dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)),
        # all-day, two days long: the first 15th after 3 January
        (("DTSTART;VALUE=DATE:20270103", "DTEND;VALUE=DATE:20270105",
          "RRULE:FREQ=MONTHLY;BYMONTHDAY=15"), dt.date(2027, 1, 15), dt.date(2027, 1, 16)),
        # on the pattern already: nothing moves
        ((MONDAY_9, MONDAY_10, "RRULE:FREQ=WEEKLY;BYDAY=MO"),
         dt.datetime(2027, 1, 4, 8, tzinfo=dt.UTC), dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)),
    ],
    ids=["timed", "all-day", "on-pattern"],
)
def test_a_series_starts_on_its_first_occurrence(lines: tuple[str, ...], start: dt.date,
                                                 end: dt.date) -> None:
    # Exchange stores a series' start as its first instance's (MS-OXOCAL 2.2.1.5), and so
    # does the EWS stand-in's own expansion of the pattern
    got = read(*lines, default=BERLIN).fields
    assert (got["start"], got["end"]) == (start, end)
    if isinstance(start, dt.datetime):  # the stand-in's expansion from the DTSTART sent
        sent = read(*lines[:2], default=BERLIN).fields["start"]
        _, first = next(rec.occurrences(got["recurrence"], sent, BERLIN))
        assert first == start


# --- times and zones -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tzid", "zones", "expected"),
    [
        ("W. Europe Standard Time", "", "W. Europe Standard Time"),  # Windows id (Outlook)
        ("Europe/Berlin", BERLIN_VTIMEZONE.format(tzid="Europe/Berlin"),
         "W. Europe Standard Time"),  # IANA (Thunderbird, Apple)
        ("/freeassociation.sourceforge.net/Tzfile/America/New_York",
         NEW_YORK_VTIMEZONE.format(
             tzid="/freeassociation.sourceforge.net/Tzfile/America/New_York"),
         "Eastern Standard Time"),  # a path ending in one (Evolution)
    ],
)
def test_tzid_names_the_items_zone(tzid: str, zones: str, expected: str) -> None:
    got = read(f"DTSTART;TZID={tzid}:20270104T090000", f"DTEND;TZID={tzid}:20270104T100000",
               zones=zones).fields
    assert got["_start_timezone"].ms_id == expected
    assert got["_end_timezone"].ms_id == expected
    assert got["start"].astimezone(dt.UTC).hour in (8, 14)  # 09:00 Berlin, 09:00 New York


def test_a_custom_vtimezone_matches_a_windows_zone_by_its_rules() -> None:
    # Exchange matches an unknown VTIMEZONE against its own zones by rules; the request's
    # TimeZoneContext is tried first.
    zones = NEW_YORK_VTIMEZONE.format(tzid="My Office")
    lines = ("DTSTART;TZID=My Office:20270704T090000", "DTEND;TZID=My Office:20270704T100000")
    got = read(*lines, zones=zones).fields
    assert got["start"] == dt.datetime(2027, 7, 4, 13, tzinfo=dt.UTC)
    zone = got["_start_timezone"]
    for month in range(1, 13):
        at = dt.datetime(2027, month, 10, tzinfo=dt.UTC)
        assert at.astimezone(zone).utcoffset() == at.astimezone(NEW_YORK).utcoffset()
    toronto = EWSTimeZone("America/Toronto")
    assert read(*lines, zones=zones, default=toronto).fields["_start_timezone"] == toronto


def test_floating_and_utc_times() -> None:
    # A floating time is read in the request's zone (TimeZoneContext); a UTC one is UTC.
    floating = read("DTSTART:20270104T090000", "DTEND:20270104T100000", default=BERLIN).fields
    assert floating["start"] == dt.datetime(2027, 1, 4, 8, tzinfo=dt.UTC)
    assert floating["_start_timezone"] == BERLIN
    utc = read("DTSTART:20270104T090000Z", "DTEND:20270104T100000Z").fields
    assert utc["_start_timezone"].ms_id == "UTC"


def test_all_day_dates_and_duration() -> None:
    # VALUE=DATE: all-day, exchangelib's inclusive end date; a missing DTEND is one day.
    two_days = read("DTSTART;VALUE=DATE:20270104", "DTEND;VALUE=DATE:20270106").fields
    assert (two_days["is_all_day"], two_days["start"], two_days["end"]) == (
        True, dt.date(2027, 1, 4), dt.date(2027, 1, 5))
    one_day = read("DTSTART;VALUE=DATE:20270104").fields
    assert (one_day["start"], one_day["end"]) == (dt.date(2027, 1, 4), dt.date(2027, 1, 4))
    duration = read(MONDAY_9, "DURATION:PT90M").fields
    assert duration["end"] - duration["start"] == dt.timedelta(minutes=90)


def test_cdo_all_day_midnights_are_an_all_day_event() -> None:
    # MS-OXCICAL 2.1.3.1.1.20.28: TRUE with local midnights is all-day.
    got = read("DTSTART;TZID=Europe/Berlin:20270104T000000",
               "DTEND;TZID=Europe/Berlin:20270105T000000",
               "X-MICROSOFT-CDO-ALLDAYEVENT:TRUE").fields
    assert (got["is_all_day"], got["start"], got["end"]) == (
        True, dt.date(2027, 1, 4), dt.date(2027, 1, 4))


@pytest.mark.parametrize(
    "lines",
    [
        ("DTSTART:20270104T090000", "DTEND:20270104T100000"),  # floating
        ("DTSTART;TZID=Nowhere:20270104T090000",),  # a TZID defined nowhere
        # a custom VTIMEZONE: Exchange tries the request's (or mailbox's) zone first
        ("DTSTART;TZID=My Office:20270704T090000", "DTEND;TZID=My Office:20270704T100000"),
        # an all-day series' EXDATE as a date-time: its day is the mailbox's
        ("DTSTART;VALUE=DATE:20270104", "RRULE:FREQ=WEEKLY",
         "EXDATE;TZID=Europe/Berlin:20270111T000000"),
    ],
    ids=["floating", "undefined-tzid", "custom-vtimezone", "all-day-exdate-time"],
)
def test_what_depends_on_an_unknown_zone_is_refused(lines: tuple[str, ...]) -> None:
    # default_zone None: the mailbox's zone decides, and it is not known (the worker then
    # reads the item from Exchange)
    zones = NEW_YORK_VTIMEZONE.format(tzid="My Office")
    assert read(*lines, zones=zones, default=BERLIN).fields["start"]
    with pytest.raises(ical.MimeConversionError, match="time zone"):
        read(*lines, zones=zones, default=None)


def test_what_names_its_zone_needs_no_default() -> None:
    timed = read(MONDAY_9, MONDAY_10, default=None).fields
    assert timed["_start_timezone"].ms_id == "W. Europe Standard Time"
    utc = read("DTSTART:20270104T090000Z", "DTEND:20270104T100000Z", default=None).fields
    assert utc["start"] == dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)
    # all-day dates are the same days in any zone: the item keeps no zone of its own
    series = read("DTSTART;VALUE=DATE:20270104", "RRULE:FREQ=WEEKLY;COUNT=3",
                  "EXDATE;VALUE=DATE:20270111", default=None)
    assert (series.fields["start"], series.fields["_start_timezone"]) == (dt.date(2027, 1, 4),
                                                                          None)
    assert series.deleted == (dt.date(2027, 1, 11),)


# --- other properties ----------------------------------------------------------------------


def test_people_and_text() -> None:
    got = read(
        MONDAY_9, MONDAY_10, "SUMMARY:Plan, review; go", "LOCATION:Room 1",
        "DESCRIPTION:line one\\nline two", "ORGANIZER;CN=Carol:mailto:carol@example.com",
        # the organizer listed among the attendees is not one of them
        "ATTENDEE;ROLE=CHAIR;PARTSTAT=ACCEPTED:mailto:carol@example.com",
        "ATTENDEE;ROLE=REQ-PARTICIPANT;CN=Bob:mailto:bob@example.com",
        "ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=DECLINED:MAILTO:dan@example.com",
        "ATTENDEE;CUTYPE=ROOM:mailto:room1@example.com",
        "ATTENDEE;PARTSTAT=TENTATIVE:mailto:alice@example.com",
        "CLASS:PRIVATE", "TRANSP:TRANSPARENT", "CATEGORIES:Blue,Green",
        "BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT30M", "END:VALARM",
    ).fields
    assert got["subject"] == "Plan, review; go"
    assert got["location"] == "Room 1"
    assert got["body"] == "line one\nline two"
    assert got["organizer"].email_address == "carol@example.com"
    assert [(a.mailbox.email_address, a.mailbox.name, a.response_type)
            for a in got["required_attendees"]] == [
        ("bob@example.com", "Bob", "Unknown"), ("alice@example.com", None, "Tentative")]
    assert [(a.mailbox.email_address, a.response_type) for a in got["optional_attendees"]] \
        == [("dan@example.com", "Decline")]
    assert [a.mailbox.email_address for a in got["resources"]] == ["room1@example.com"]
    # someone else's meeting: the owner's own ATTENDEE line is their response
    assert got["my_response_type"] == "Tentative"
    assert got["sensitivity"] == "Private"
    assert got["legacy_free_busy_status"] == "Free"
    assert got["categories"] == ["Blue", "Green"]
    assert (got["reminder_is_set"], got["reminder_minutes_before_start"]) == (True, 30)


def test_an_item_without_organizer_is_the_owners() -> None:
    got = read(MONDAY_9, MONDAY_10, "ATTENDEE:mailto:bob@example.com").fields
    assert got["organizer"].email_address == OWNER
    assert "my_response_type" not in got  # the organizer's own item: no response


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (("TRANSP:OPAQUE",), "Busy"),
        (("STATUS:TENTATIVE",), "Tentative"),
        # X-MICROSOFT-CDO-BUSYSTATUS wins over TRANSP
        (("TRANSP:TRANSPARENT", "X-MICROSOFT-CDO-BUSYSTATUS:OOF"), "OOF"),
        ((), None),
    ],
)
def test_free_busy_status(lines: tuple[str, ...], status: str | None) -> None:
    assert read(MONDAY_9, MONDAY_10, *lines).fields.get("legacy_free_busy_status") == status


def test_html_description_is_an_html_body() -> None:
    got = read(MONDAY_9, MONDAY_10, "DESCRIPTION:bold",
               "X-ALT-DESC;FMTTYPE=text/html:<html><body><b>bold</b></body></html>").fields
    assert isinstance(got["body"], HTMLBody)


def test_exdates_and_overrides_of_the_same_uid() -> None:
    got = ical.read_calendar(ics(
        "BEGIN:VEVENT", "UID:s1", MONDAY_9, MONDAY_10, "SUMMARY:Series",
        "RRULE:FREQ=WEEKLY;COUNT=5",
        "EXDATE;TZID=Europe/Berlin:20270111T090000,20270125T090000", "END:VEVENT",
        "BEGIN:VEVENT", "UID:s1", "RECURRENCE-ID;TZID=Europe/Berlin:20270118T090000",
        "DTSTART;TZID=Europe/Berlin:20270118T150000", "DTEND;TZID=Europe/Berlin:20270118T160000",
        "SUMMARY:Moved", "END:VEVENT",
        # another UID's override is not this series'
        "BEGIN:VEVENT", "UID:other", "RECURRENCE-ID;TZID=Europe/Berlin:20270104T090000",
        "DTSTART;TZID=Europe/Berlin:20270104T090000", "DTEND;TZID=Europe/Berlin:20270104T100000",
        "END:VEVENT",
    ), owner=OWNER, default_zone=None)
    assert got.fields["subject"] == "Series"
    assert got.deleted == (dt.datetime(2027, 1, 11, 8, tzinfo=dt.UTC),
                           dt.datetime(2027, 1, 25, 8, tzinfo=dt.UTC))
    [moved] = got.modified
    assert moved.original_start == dt.datetime(2027, 1, 18, 8, tzinfo=dt.UTC)
    assert moved.fields["subject"] == "Moved"
    assert moved.fields["start"] == dt.datetime(2027, 1, 18, 14, tzinfo=dt.UTC)


def test_a_message_around_the_icalendar_is_read() -> None:
    message = (b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
               b"--b\r\nContent-Type: text/calendar; method=PUBLISH\r\n\r\n"
               + ics(MONDAY_9, MONDAY_10, "SUMMARY:In a message") + b"\r\n--b--\r\n")
    assert ical.read_calendar(message, owner=OWNER, default_zone=None).fields["subject"] \
        == "In a message"


@pytest.mark.parametrize(
    "data",
    [
        b"not an icalendar at all",
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n",  # no VEVENT
        ics("SUMMARY:no start"),
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\nEND:VEVENT\r\n",
    ],
    ids=["text", "no-vevent", "no-dtstart", "broken"],
)
def test_unconvertible_content_is_refused(data: bytes) -> None:
    with pytest.raises(ical.MimeConversionError):
        ical.read_calendar(data, owner=OWNER, default_zone=None)


# --- the item a CreateItem makes ----------------------------------------------------------


def test_elements_sent_beside_the_mime_content_win() -> None:
    # DavMail sends ReminderIsSet and LegacyFreeBusyStatus beside the iCalendar
    item = CalendarItem(reminder_is_set=False, legacy_free_busy_status="Busy")
    imported = read(MONDAY_9, MONDAY_10, "SUMMARY:Plan", "TRANSP:TRANSPARENT",
                    "BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT30M", "END:VALARM")
    ical.merge(item, imported, ["MimeContent", "ReminderIsSet", "LegacyFreeBusyStatus",
                                "ExtendedProperty"])
    assert (item.subject, item.reminder_is_set, item.legacy_free_busy_status) == (
        "Plan", False, "Busy")
    assert item.reminder_minutes_before_start == 30  # not sent: the iCalendar's


def _mime(*lines: str, beside: frozenset[str] = frozenset()) -> MimeContent:
    return MimeContent(data=ics(*lines), sent_beside=beside)


def test_calendar_item_is_a_copy_with_the_icalendar_merged() -> None:
    model = CalendarItem(legacy_free_busy_status="Free")
    item, deleted = ical.calendar_item(
        model, _mime(MONDAY_9, MONDAY_10, "SUMMARY:Series", "RRULE:FREQ=WEEKLY;COUNT=3",
                     "EXDATE;TZID=Europe/Berlin:20270111T090000", "TRANSP:OPAQUE",
                     beside=frozenset({"LegacyFreeBusyStatus"})),
        owner=OWNER, default_zone=None)
    assert (item.subject, item.legacy_free_busy_status, item.mime_content) == (
        "Series", "Free", None)
    assert item.recurrence.pattern == WeeklyPattern(interval=1, weekdays=[1],
                                                    first_day_of_week=1)
    assert deleted == (dt.datetime(2027, 1, 11, 8, tzinfo=dt.UTC),)
    assert model.subject is None  # the request's model is left as it was


@pytest.mark.parametrize(("zone", "hour"), [("W. Europe Standard Time", 8),
                                            ("America/New_York", 14)])
def test_calendar_item_reads_floating_times_in_the_requests_zone(zone: str, hour: int) -> None:
    item, _ = ical.calendar_item(CalendarItem(), _mime("DTSTART:20270104T090000"),
                                 owner=OWNER, default_zone=zone)
    assert item.start == dt.datetime(2027, 1, 4, hour, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "lines",
    [
        ("DTSTART:20270104T090000",),  # floating, and no TimeZoneContext
        # a modified occurrence: what it keeps of its master is Exchange's to say
        ("BEGIN:VEVENT", "UID:s1", MONDAY_9, MONDAY_10, "RRULE:FREQ=WEEKLY", "END:VEVENT",
         "BEGIN:VEVENT", "UID:s1", "RECURRENCE-ID;TZID=Europe/Berlin:20270111T090000",
         "DTSTART;TZID=Europe/Berlin:20270111T150000", "END:VEVENT"),
        ("SUMMARY:no start",),
    ],
    ids=["floating", "modified-occurrence", "unconvertible"],
)
def test_calendar_item_refuses_what_the_request_cannot_tell(lines: tuple[str, ...]) -> None:
    with pytest.raises(ical.MimeConversionError):
        ical.calendar_item(CalendarItem(), _mime(*lines), owner=OWNER, default_zone=None)


# --- export --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        # Windows form: TZID the Windows id, rules from 1601, the change at local time
        ("Europe/Berlin", [("STANDARD", "16010101T030000", "-1SU", 10, "+0200", "+0100"),
                           ("DAYLIGHT", "16010101T020000", "-1SU", 3, "+0100", "+0200")]),
        ("America/New_York", [("STANDARD", "16010101T020000", "1SU", 11, "-0400", "-0500"),
                              ("DAYLIGHT", "16010101T020000", "2SU", 3, "-0500", "-0400")]),
        ("Australia/Sydney", [("STANDARD", "16010101T030000", "1SU", 4, "+1100", "+1000"),
                              ("DAYLIGHT", "16010101T020000", "1SU", 10, "+1000", "+1100")]),
        ("Asia/Tokyo", [("STANDARD", "16010101T000000", None, None, "+0900", "+0900")]),
    ],
)
def test_vtimezone_in_windows_form(zone: str, expected: list[Any]) -> None:
    tz = icalendar.Timezone.from_ical(ical.vtimezone(EWSTimeZone(zone), 2027).to_ical())
    assert tz["TZID"] == EWSTimeZone(zone).ms_id
    got = []
    for part in tz.subcomponents:
        rule = part.get("RRULE")
        got.append((part.name, part["DTSTART"].to_ical().decode(),
                    rule["BYDAY"][0] if rule else None, rule["BYMONTH"][0] if rule else None,
                    part["TZOFFSETFROM"].to_ical(), part["TZOFFSETTO"].to_ical()))
    assert got == expected


def _series(pattern: Any, boundary: Any, *, all_day: bool = False) -> CalendarItem:
    start = dt.datetime(2027, 1, 4, 8, tzinfo=dt.UTC) if not all_day else \
        dt.datetime(2027, 1, 3, 23, tzinfo=dt.UTC)
    return CalendarItem(
        subject="s", start=start, end=start + dt.timedelta(hours=1 if not all_day else 24),
        is_all_day=all_day, _start_timezone=BERLIN, _end_timezone=BERLIN, type="RecurringMaster",
        recurrence=Recurrence(pattern=pattern, boundary=boundary), uid="u1",
        last_modified_time=start)


_BEGIN = EWSDate(2027, 1, 4)


@pytest.mark.parametrize(
    ("pattern", "boundary"),
    [
        (DailyPattern(interval=2), NumberedPattern(start=_BEGIN, number=10)),
        (WeeklyPattern(interval=1, weekdays=[1, 3], first_day_of_week=7),
         EndDatePattern(start=_BEGIN, end=EWSDate(2027, 6, 30))),
        (AbsoluteMonthlyPattern(interval=1, day_of_month=31), NoEndPattern(start=_BEGIN)),
        (RelativeMonthlyPattern(interval=3, weekday=9, week_number=5), NoEndPattern(start=_BEGIN)),
        (RelativeMonthlyPattern(interval=1, weekday=1, week_number=2), NoEndPattern(start=_BEGIN)),
        (AbsoluteYearlyPattern(month=1, day_of_month=4), NumberedPattern(start=_BEGIN, number=3)),
        (RelativeYearlyPattern(month=3, weekday=7, week_number=5), NoEndPattern(start=_BEGIN)),
    ],
)
@pytest.mark.parametrize("all_day", [False, True], ids=["timed", "all-day"])
def test_a_written_rrule_reads_back_as_the_same_series(pattern: Any, boundary: Any,
                                                       all_day: bool) -> None:
    # write -> read gives the same pattern and range, and dateutil expands the written
    # RRULE to the same starts as the stand-in's own expansion of the EWS pattern.
    item = _series(pattern, boundary, all_day=all_day)
    data = ical.write_calendar(item, now=item.last_modified_time)
    back = ical.read_calendar(data, owner=OWNER, default_zone=BERLIN).fields
    assert back["recurrence"] == item.recurrence
    assert back["is_all_day"] is all_day
    event = icalendar.Calendar.from_ical(data).walk("VEVENT")[0]
    first = event.decoded("DTSTART")
    horizon = dt.datetime(2029, 1, 1, tzinfo=dt.UTC)
    ours = [s for _, s in rec.occurrences(item.recurrence, item.start, BERLIN, until=horizon)]
    rule_text = event["RRULE"].to_ical().decode()
    if all_day:  # floating dates: compare the days
        naive = dt.datetime.combine(first, dt.time(0))
        days = rrule.rrulestr(rule_text, dtstart=naive).between(
            naive, horizon.replace(tzinfo=None), inc=True)
        assert [d.date() for d in days] == [
            s.astimezone(rec.plain_zone(BERLIN)).date() for s in ours]
    else:
        starts = rrule.rrulestr(rule_text, dtstart=first).between(first, horizon, inc=True)
        assert [s.astimezone(dt.UTC) for s in starts] == ours
