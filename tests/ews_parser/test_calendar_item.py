"""Calendar items read through exchangelib, with time zones resolved the way EWS means
them (ews_parser/calendar_item.py)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from ews_parser import EwsParseError, parse
from ews_parser.calendar_item import legacy_tzinfo
from ews_parser.values import CreateItemRequest, ParsedItem, Response
from tests.ews_parser.conftest import ROOT, load

UTC = dt.UTC


def created(name: str, **kwargs: Any) -> list[ParsedItem]:
    body = parse(load(name), **kwargs).body
    assert isinstance(body, CreateItemRequest)
    return [i for i in body.items if isinstance(i, ParsedItem)]


def returned(name: str, **kwargs: Any) -> list[ParsedItem]:
    body = parse(load(name), **kwargs).body
    assert isinstance(body, Response)
    return [i for m in body.messages for i in m.items]


def envelope(items: str, header: str = "") -> bytes:
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        f"<s:Header>{header}</s:Header><s:Body><m:CreateItem><m:Items>{items}</m:Items>"
        "</m:CreateItem></s:Body></s:Envelope>"
    ).encode()


def one_item(items: str, header: str = "", **kwargs: Any) -> ParsedItem:
    body = parse(envelope(items, header), **kwargs).body
    assert isinstance(body, CreateItemRequest)
    item = body.items[0]
    assert isinstance(item, ParsedItem)
    return item


# --- time zones -------------------------------------------------------------------------

ZONE_CASES = [
    # floating Start/End in StartTimeZone/EndTimeZone (Central, UTC-6 in February)
    (
        "create/msdocs_createitem_tz_start_end_timezone_req.xml",
        "2023-02-08T00:00:00+00:00",
        "America/Chicago",
    ),
    # floating Start/End in the header's TimeZoneContext (Mountain, UTC-7)
    (
        "create/msdocs_createitem_tz_timezonecontext_req.xml",
        "2023-02-08T02:00:00+00:00",
        "America/Denver",
    ),
    # explicit UTC, no zone anywhere
    ("create/msdocs_createitem_tz_utc_req.xml", None, None),
]


@pytest.mark.parametrize(("name", "start_utc", "zone"), ZONE_CASES)
def test_floating_times_are_read_in_the_zone_ews_means(
    name: str, start_utc: str | None, zone: str | None
) -> None:
    (item,) = created(name)
    start = item.model.start
    assert start.tzinfo is not None
    if start_utc:
        assert start == dt.datetime.fromisoformat(start_utc)
    if zone:
        assert item.model._start_timezone.key == zone


def test_utc_sample_keeps_its_instant() -> None:
    (item,) = created("create/msdocs_createitem_tz_utc_req.xml")
    raw = load("create/msdocs_createitem_tz_utc_req.xml").decode()
    start_text = raw.split("<t:Start>")[1].split("</t:Start>")[0]
    assert item.model.start == dt.datetime.fromisoformat(start_text).replace(microsecond=0)


def test_offsets_with_milliseconds_keep_their_instant() -> None:
    # "2014-01-08T13:13:37.717-08:00": exchangelib reads offsets; we drop only sub-seconds
    items = created("create/msdocs_createitem_batch3_incl_weekly_recurrence_req.xml")
    assert items[0].model.start == dt.datetime(2014, 1, 8, 21, 13, 37, tzinfo=UTC)
    assert items[0].model.end == dt.datetime(2014, 1, 9, 0, 13, 37, tzinfo=UTC)


def test_utc_with_milliseconds_is_read() -> None:
    # exchangelib alone returns None for "...T04:00:00.000Z"
    item = one_item(
        "<t:CalendarItem><t:Subject>x</t:Subject><t:Start>2014-06-09T04:00:00.000Z</t:Start>"
        "<t:End>2014-06-09T05:30:00.5Z</t:End></t:CalendarItem>"
    )
    assert item.model.start == dt.datetime(2014, 6, 9, 4, tzinfo=UTC)
    assert item.model.end == dt.datetime(2014, 6, 9, 5, 30, tzinfo=UTC)


def test_floating_time_with_no_zone_anywhere_is_utc_with_a_warning() -> None:
    item = one_item(
        "<t:CalendarItem><t:Start>2024-03-10T09:00:00</t:Start>"
        "<t:End>2024-03-10T10:00:00</t:End></t:CalendarItem>"
    )
    assert item.model.start == dt.datetime(2024, 3, 10, 9, tzinfo=UTC)
    assert any("floating Start" in w for w in item.warnings)


def test_end_time_zone_differs_from_start_time_zone() -> None:
    # a flight: leaves Seattle 10:00 local, lands New York 18:30 local
    item = one_item(
        "<t:CalendarItem><t:Start>2024-07-01T10:00:00</t:Start><t:End>2024-07-01T18:30:00</t:End>"
        '<t:StartTimeZone Id="Pacific Standard Time"/><t:EndTimeZone Id="Eastern Standard Time"/>'
        "</t:CalendarItem>"
    )
    assert item.model.start == dt.datetime(2024, 7, 1, 17, tzinfo=UTC)
    assert item.model.end == dt.datetime(2024, 7, 1, 22, 30, tzinfo=UTC)
    assert item.model._end_timezone.key == "America/New_York"


def test_time_zone_context_applies_on_both_sides_of_a_dst_change() -> None:
    header = '<t:TimeZoneContext><t:TimeZoneDefinition Id="W. Europe Standard Time"/></t:TimeZoneContext>'
    winter = one_item(
        "<t:CalendarItem><t:Start>2024-03-30T09:00:00</t:Start><t:End>2024-03-30T10:00:00</t:End></t:CalendarItem>",
        header,
    )
    summer = one_item(
        "<t:CalendarItem><t:Start>2024-03-31T09:00:00</t:Start><t:End>2024-03-31T10:00:00</t:End></t:CalendarItem>",
        header,
    )
    assert winter.model.start == dt.datetime(2024, 3, 30, 8, tzinfo=UTC)  # CET, UTC+1
    assert summer.model.start == dt.datetime(2024, 3, 31, 7, tzinfo=UTC)  # CEST, UTC+2


def test_unknown_zone_is_a_warning_not_a_crash() -> None:
    item = one_item(
        "<t:CalendarItem><t:Start>2024-01-01T09:00:00Z</t:Start><t:End>2024-01-01T10:00:00Z</t:End>"
        '<t:StartTimeZone Id="Atlantis Standard Time"/></t:CalendarItem>'
    )
    assert item.model.start == dt.datetime(2024, 1, 1, 9, tzinfo=UTC)  # the instant survives
    assert any("Atlantis" in w for w in item.warnings)


@pytest.mark.parametrize(
    "bad",
    ["tomorrow", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00", ""],
    ids=["word", "month-13", "hour-25", "empty"],
)
def test_bad_date_times_are_a_parse_error_naming_the_element(bad: str) -> None:
    items = f"<t:CalendarItem><t:Start>{bad}</t:Start></t:CalendarItem>"
    if not bad:
        assert one_item(items).model.start is None  # an empty element is no value at all
        return
    with pytest.raises(EwsParseError, match="Start is not an xs:dateTime"):
        one_item(items)


def test_results_do_not_depend_on_the_machines_time_zone() -> None:
    """exchangelib's own paths read floating times and all-day dates in the process's
    local zone; ours must not. Same files, run under zones on either side of UTC."""
    names = [
        "fixtures/ews/create/msdocs_createitem_allday_vacation_req.xml",
        "fixtures/ews/create/msdocs_createitem_tz_start_end_timezone_req.xml",
        "fixtures/ews/synthetic/createitem_relativemonthly_relativeyearly_req.xml",
        "fixtures/ews/get/pyexchange_getitem_recurring_master_weekly_resp.xml",
    ]
    outputs = []
    for zone in ("UTC", "Pacific/Kiritimati", "America/Adak"):
        env = {**os.environ, "TZ": zone}
        out = subprocess.run(
            [sys.executable, "-m", "ews_parser", *names],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        outputs.append([json.loads(line) for line in out.splitlines()])
    assert outputs[0] == outputs[1] == outputs[2]


# --- all-day -----------------------------------------------------------------------------


def test_all_day_item_is_dated_in_its_own_zone() -> None:
    # Start/End 04:00Z with TimeZoneContext Eastern: midnight to midnight EDT on June 9
    (item,) = created("create/msdocs_createitem_allday_vacation_req.xml")
    assert item.model.is_all_day
    assert item.model.start == dt.date(2014, 6, 9)
    assert item.model.end == dt.date(2014, 6, 9)  # exchangelib's convention: inclusive
    assert item.model.legacy_free_busy_status == "OOF"


def test_all_day_in_a_zone_east_of_utc_is_not_a_day_early() -> None:
    # midnight in Berlin is 22:00Z the day before: a UTC reading would be a day early
    item = one_item(
        "<t:CalendarItem><t:Start>2024-05-09T22:00:00Z</t:Start><t:End>2024-05-11T22:00:00Z</t:End>"
        '<t:IsAllDayEvent>true</t:IsAllDayEvent><t:StartTimeZone Id="W. Europe Standard Time"/>'
        "</t:CalendarItem>"
    )
    assert (item.model.start, item.model.end) == (dt.date(2024, 5, 10), dt.date(2024, 5, 11))


def test_all_day_response_item_uses_the_callers_default_zone() -> None:
    items = (
        "<t:CalendarItem><t:Start>2024-05-09T22:00:00Z</t:Start><t:End>2024-05-10T22:00:00Z</t:End>"
        "<t:IsAllDayEvent>true</t:IsAllDayEvent></t:CalendarItem>"
    )
    assert one_item(items, default_zone="Europe/Berlin").model.start == dt.date(2024, 5, 10)
    no_zone = one_item(items)
    assert no_zone.model.start == dt.date(2024, 5, 9)
    assert any("all-day" in w for w in no_zone.warnings)


# --- legacy MeetingTimeZone --------------------------------------------------------------


def test_legacy_meeting_time_zone_rules_are_kept() -> None:
    (item,) = returned("get/pyexchange_getitem_recurring_master_weekly_resp.xml")
    legacy = item.legacy_time_zone
    assert legacy is not None
    assert legacy.name == "Central Standard Time"
    assert legacy.base_offset == dt.timedelta(minutes=360)
    assert legacy.standard is not None and legacy.daylight is not None
    assert (legacy.standard.month, legacy.standard.day_of_week_index) == (11, 1)
    assert (legacy.daylight.month, legacy.daylight.day_of_week_index) == (3, 2)
    assert legacy.daylight.offset == dt.timedelta(minutes=-60)
    assert item.model._start_timezone.key == "America/Chicago"


def test_legacy_rules_give_the_offsets_they_describe() -> None:
    (item,) = returned("get/pyexchange_getitem_recurring_master_weekly_resp.xml")
    assert item.legacy_time_zone is not None
    tz = legacy_tzinfo(item.legacy_time_zone)
    assert tz is not None
    chicago = ZoneInfo("America/Chicago")
    for moment in (
        dt.datetime(2024, 1, 15, 12),
        dt.datetime(2024, 3, 10, 1, 59),  # just before the second Sunday of March, 2:00
        dt.datetime(2024, 3, 10, 3, 1),
        dt.datetime(2024, 7, 4, 12),
        dt.datetime(2024, 11, 3, 3, 0),
    ):
        assert moment.replace(tzinfo=tz).utcoffset() == moment.replace(tzinfo=chicago).utcoffset()


def test_floating_time_under_an_unnamed_legacy_zone_follows_its_rules() -> None:
    meeting = (
        '<t:MeetingTimeZone TimeZoneName="Custom (no CLDR name)"><t:BaseOffset>PT360M</t:BaseOffset>'
        "<t:Standard><t:Offset>PT0M</t:Offset><t:RelativeYearlyRecurrence><t:DaysOfWeek>Sunday</t:DaysOfWeek>"
        "<t:DayOfWeekIndex>First</t:DayOfWeekIndex><t:Month>November</t:Month></t:RelativeYearlyRecurrence>"
        "<t:Time>02:00:00</t:Time></t:Standard>"
        "<t:Daylight><t:Offset>-PT60M</t:Offset><t:RelativeYearlyRecurrence><t:DaysOfWeek>Sunday</t:DaysOfWeek>"
        "<t:DayOfWeekIndex>Second</t:DayOfWeekIndex><t:Month>March</t:Month></t:RelativeYearlyRecurrence>"
        "<t:Time>02:00:00</t:Time></t:Daylight></t:MeetingTimeZone>"
    )
    winter = one_item(
        f"<t:CalendarItem><t:Start>2024-02-01T09:00:00</t:Start><t:End>2024-02-01T10:00:00</t:End>{meeting}</t:CalendarItem>"
    )
    summer = one_item(
        f"<t:CalendarItem><t:Start>2024-06-01T09:00:00</t:Start><t:End>2024-06-01T10:00:00</t:End>{meeting}</t:CalendarItem>"
    )
    assert winter.model.start == dt.datetime(2024, 2, 1, 15, tzinfo=UTC)
    assert summer.model.start == dt.datetime(2024, 6, 1, 14, tzinfo=UTC)


# --- recurrence ---------------------------------------------------------------------------

RECURRENCE_CASES = [
    # (fixture, item index, pattern type, pattern fields, boundary type, boundary fields)
    (
        "create/msdocs_createitem_batch3_incl_weekly_recurrence_req.xml",
        1,
        WeeklyPattern,
        {"interval": 1, "weekdays": [2]},
        NumberedPattern,
        {"start": dt.date(2014, 1, 7), "number": 10},
    ),
    (
        "get/pyexchange_getitem_recurring_master_weekly_resp.xml",
        0,
        WeeklyPattern,
        {"interval": 1, "weekdays": [1, 2, 5]},
        EndDatePattern,
        {"start": dt.date(2050, 5, 20), "end": dt.date(2050, 5, 31)},
    ),
    (
        "get/pyexchange_getitem_recurring_master_daily_resp.xml",
        0,
        DailyPattern,
        {"interval": 1},
        EndDatePattern,
        {},
    ),
    (
        "get/pyexchange_getitem_recurring_master_absolutemonthly_resp.xml",
        0,
        AbsoluteMonthlyPattern,
        {},
        None,
        {},
    ),
    (
        "get/pyexchange_getitem_recurring_master_absoluteyearly_resp.xml",
        0,
        AbsoluteYearlyPattern,
        {"month": 5},
        None,
        {},
    ),
    # gaps in the corpus, hand-written from the schema
    (
        "synthetic/createitem_relativemonthly_relativeyearly_req.xml",
        0,
        RelativeMonthlyPattern,
        {"interval": 2, "weekday": 2, "week_number": 2},
        NoEndPattern,
        {"start": dt.date(2026, 1, 13)},
    ),
    (
        "synthetic/createitem_relativemonthly_relativeyearly_req.xml",
        1,
        RelativeYearlyPattern,
        {"weekday": 5, "week_number": 5, "month": 11},
        NumberedPattern,
        {"start": dt.date(2026, 11, 27), "number": 5},
    ),
]


@pytest.mark.parametrize(
    ("name", "index", "pattern_type", "pattern", "boundary_type", "boundary"),
    RECURRENCE_CASES,
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_recurrence_patterns(
    name: str,
    index: int,
    pattern_type: type,
    pattern: dict[str, Any],
    boundary_type: type | None,
    boundary: dict[str, Any],
) -> None:
    items = created(name) if name.endswith("_req.xml") else returned(name)
    recurrence = items[index].model.recurrence
    assert isinstance(recurrence.pattern, pattern_type)
    for key, value in pattern.items():
        assert getattr(recurrence.pattern, key) == value, key
    if boundary_type is not None:
        assert isinstance(recurrence.boundary, boundary_type)
    for key, value in boundary.items():
        got = getattr(recurrence.boundary, key)
        assert type(got) is not dt.datetime  # a date must stay a date
        assert got == value, key


def test_stray_text_inside_an_item_is_ignored() -> None:
    # the upstream fixture has a literal editor artefact "^[OB" before t:ItemId
    (item,) = returned("get/pyexchange_getitem_recurring_master_daily_resp.xml")
    assert item.item_id is not None and item.model.subject


# --- people and the rest -------------------------------------------------------------------


def test_meeting_attendees_organizer_and_responses() -> None:
    (item,) = returned("get/pyexchange_getitem_full_meeting_attendees_resp.xml")
    model = item.model
    assert model.organizer.email_address == "noether@test.linkedin.com"
    required = {a.mailbox.email_address: a.response_type for a in model.required_attendees}
    assert required["earheart@test.linkedin.com"] == "Accept"
    assert len(required) >= 2
    assert model.optional_attendees and model.resources
    assert all(a.mailbox.email_address for a in model.resources)


def test_teambuilding_meeting_request_keeps_required_and_optional_attendees() -> None:
    # (its NOTE mentions Resources, but the sample itself has none)
    (item,) = created("create/msdocs_createitem_meeting_teambuilding_req.xml")
    model = item.model
    assert len(model.required_attendees) >= 2
    assert model.optional_attendees
    assert model.resources is None
    assert all("@" in a.mailbox.email_address for a in model.required_attendees)


def test_occurrence_items_from_a_calendar_view() -> None:
    items = returned("find/msdocs_finditem_calendarview_occurrences_resp.xml")
    kinds = {i.model.type for i in items}
    assert kinds <= {"Occurrence", "Exception", "Single", "RecurringMaster"}
    assert "Occurrence" in kinds
    starts = [i.model.start for i in items]
    assert starts == sorted(starts)
    assert all(i.item_id for i in items)


def test_single_occurrence_keeps_its_original_start() -> None:
    (item,) = returned("get/pyexchange_getitem_single_occurrence_resp.xml")
    assert item.model.type == "Occurrence"
    assert item.model.original_start is not None
    assert item.model.original_start.tzinfo is not None


def test_weekly_recurrence_without_days_is_refused() -> None:
    # regression (found by fuzzing): exchangelib reads it, then fails when it is used
    with pytest.raises(EwsParseError, match="invalid Recurrence"):
        one_item(
            "<t:CalendarItem><t:Start>2024-01-01T09:00:00Z</t:Start><t:End>2024-01-01T10:00:00Z</t:End>"
            "<t:Recurrence><t:WeeklyRecurrence><t:Interval>1</t:Interval></t:WeeklyRecurrence>"
            "<t:NoEndRecurrence><t:StartDate>2024-01-01</t:StartDate></t:NoEndRecurrence>"
            "</t:Recurrence></t:CalendarItem>"
        )


def test_every_unknown_zone_element_is_handled_not_just_the_first() -> None:
    # regression (found by fuzzing): a second unknown StartTimeZone reached exchangelib,
    # which printed a UserWarning from inside the pure parser (now an error in tests)
    item = one_item(
        "<t:CalendarItem><t:Start>2024-01-01T09:00:00Z</t:Start>"
        '<t:StartTimeZone Id="dinosaur"/><t:StartTimeZone Id="dinosaur"/></t:CalendarItem>'
    )
    assert item.warnings == ("unknown StartTimeZone 'dinosaur'",) * 2
    assert item.model._start_timezone is None


def test_xs_boolean_one_and_zero() -> None:
    # regression (found by the EWS stand-in): exchangelib sends <t:IsAllDayEvent>1</...>,
    # which its own reader takes for "no value": the all-day item read as a timed one
    item = one_item(
        "<t:CalendarItem><t:ReminderIsSet>0</t:ReminderIsSet>"
        "<t:Start>2024-05-09T00:00:00Z</t:Start><t:End>2024-05-10T00:00:00Z</t:End>"
        "<t:IsAllDayEvent>1</t:IsAllDayEvent></t:CalendarItem>"
    )
    assert item.model.is_all_day is True
    assert item.model.reminder_is_set is False
    assert item.model.start == dt.date(2024, 5, 9)


# --- MimeContent ----------------------------------------------------------------------------

ICALENDAR = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:u1\r\nSUMMARY:Caf\u00e9\r\n"
    "DTSTART;TZID=Europe/Berlin:20270104T090000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
).encode()
#: DavMail's CreateItem item: the iCalendar, base64 with line breaks, then its extras
DAVMAIL_ITEM = (
    "<t:CalendarItem><t:MimeContent{attributes}>{data}</t:MimeContent>"
    "<t:ReminderIsSet>false</t:ReminderIsSet>"
    '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
    "<t:Value>u1.EML</t:Value></t:ExtendedProperty>"
    "<t:LegacyFreeBusyStatus>Busy</t:LegacyFreeBusyStatus></t:CalendarItem>"
)


def _base64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


@pytest.mark.parametrize(
    ("attributes", "character_set"),
    [("", None), (' CharacterSet="UTF-8"', "UTF-8")],  # DavMail; the Managed API
    ids=["davmail", "managed-api"],
)
def test_mime_content_is_decoded_with_what_was_sent_beside_it(
    attributes: str, character_set: str | None
) -> None:
    item = one_item(DAVMAIL_ITEM.format(attributes=attributes, data=_base64_lines(ICALENDAR)))
    assert item.mime_content is not None
    assert item.mime_content.data == ICALENDAR
    assert item.mime_content.character_set == character_set
    assert item.mime_content.sent_beside == {
        "ReminderIsSet",
        "ExtendedProperty",
        "LegacyFreeBusyStatus",
    }
    # the model is exchangelib's read of the other elements, and keeps the bytes
    assert (item.model.mime_content, item.model.reminder_is_set) == (ICALENDAR, False)
    assert item.model.subject is None and item.model.start is None
    assert item.warnings == ()


def test_an_item_without_mime_content_has_none() -> None:
    item = one_item("<t:CalendarItem><t:Subject>x</t:Subject></t:CalendarItem>")
    assert item.mime_content is None and item.model.mime_content is None


@pytest.mark.parametrize(
    "data",
    ["QkVH*SU46", "QkVHSU4", "not base64 at all!"],  # a stray character, bad padding
    ids=["stray-character", "padding", "text"],
)
def test_mime_content_that_is_not_base64_is_a_warning(data: str) -> None:
    # as .NET's Convert.FromBase64String reads it (Exchange answers
    # ErrorMimeContentInvalidBase64String); exchangelib alone would skip the bad characters
    item = one_item(DAVMAIL_ITEM.format(attributes="", data=data))
    assert item.mime_content is None and item.model.mime_content is None
    assert item.warnings == ("MimeContent is not base64: not read",)


def test_mime_content_is_bounded_by_the_body_limit() -> None:
    big = _base64_lines(ICALENDAR * 2000)  # ~330 kB of base64
    body = envelope(DAVMAIL_ITEM.format(attributes="", data=big))
    with pytest.raises(EwsParseError, match="over the"):
        parse(body, max_bytes=len(body) - 1)
    item = parse(body, max_bytes=len(body)).body.items[0]  # type: ignore[union-attr]
    assert isinstance(item, ParsedItem) and item.mime_content is not None
    assert len(item.mime_content.data) == len(ICALENDAR) * 2000 <= len(body) * 3 // 4
