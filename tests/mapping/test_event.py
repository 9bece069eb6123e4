"""The core field mapping EWS <-> Google, table tests from the fixture corpus
(mapping/event.py)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Body, HTMLBody

from mapping.errors import MappingError
from mapping.event import (
    LOSSY_FIELDS,
    MANAGED_FIELDS,
    content_hash,
    event_id_for,
    to_ews,
    to_google,
)
from mapping.recurrence import parse_rrule
from tests.mapping.conftest import item

UTC = EWSTimeZone("UTC")


def rrule(line: str) -> dict[str, list[Any]]:
    """RRULE parts, so that tests do not depend on the order vRecur writes them in."""
    return parse_rrule(line)


def timed(value: str, zone: str) -> dict[str, str]:
    return {"dateTime": value, "timeZone": zone}


# --- start/end and zones from the corpus ---------------------------------------------------

CORPUS_TIMES = [
    # all-day June 9 2014, TimeZoneContext Eastern: Google's end is exclusive
    (
        "create/msdocs_createitem_allday_vacation_req.xml",
        0,
        "Vacation",
        {"date": "2014-06-09"},
        {"date": "2014-06-10"},
    ),
    # legacy MeetingTimeZone "Pacific Standard Time" -> IANA
    (
        "create/msdocs_createitem_appointment_tennis_req.xml",
        0,
        "Tennis lesson",
        timed("2013-09-21T12:00:00-07:00", "America/Los_Angeles"),
        timed("2013-09-21T13:00:00-07:00", "America/Los_Angeles"),
    ),
    # StartTimeZone/EndTimeZone "Central Standard Time"
    (
        "create/msdocs_createitem_tz_start_end_timezone_req.xml",
        0,
        "Appointment created using Central time zone",
        timed("2023-02-07T18:00:00-06:00", "America/Chicago"),
        timed("2023-02-07T19:00:00-06:00", "America/Chicago"),
    ),
    # only the request's TimeZoneContext names the zone
    (
        "create/msdocs_createitem_tz_timezonecontext_req.xml",
        0,
        "Appointment created using Mountain time zone",
        timed("2023-02-07T19:00:00-07:00", "America/Denver"),
        timed("2023-02-07T20:00:00-07:00", "America/Denver"),
    ),
    # "Z" times and no zone anywhere: UTC
    (
        "create/msdocs_createitem_tz_utc_req.xml",
        0,
        "Appointment created using UTC",
        timed("2023-02-07T17:00:00+00:00", "UTC"),
        timed("2023-02-07T18:00:00+00:00", "UTC"),
    ),
    # unicode subject, a response with MeetingTimeZone rules named "Central Standard Time"
    (
        "get/pyexchange_getitem_recurring_master_weekly_resp.xml",
        0,
        "\u043dy\u0432r\u03b9d \u0455ol\u03b1r ecl\u03b9p\u0455e",  # the look-alike letters of the fixture
        timed("2050-05-20T15:42:50-05:00", "America/Chicago"),
        timed("2050-05-20T16:43:51-05:00", "America/Chicago"),
    ),
    # the third item of a batch
    (
        "create/msdocs_createitem_batch3_incl_weekly_recurrence_req.xml",
        2,
        "Code Blast",
        timed("2014-01-09T13:13:44-08:00", "America/Los_Angeles"),
        timed("2014-01-09T19:13:44-08:00", "America/Los_Angeles"),
    ),
]


@pytest.mark.parametrize(("name", "index", "summary", "start", "end"), CORPUS_TIMES)
def test_summary_start_end_from_the_corpus(
    name: str, index: int, summary: str, start: dict[str, str], end: dict[str, str]
) -> None:
    event = to_google(item(name, index))
    assert event["summary"] == summary
    assert event["start"] == start
    assert event["end"] == end


def test_an_item_without_a_zone_takes_default_zone_windows_or_iana() -> None:
    model = item("find/pyexchange_finditem_calendarview_resp.xml")
    assert to_google(model)["start"] == timed("2050-05-01T14:30:00+00:00", "UTC")
    for zone in ("Pacific Standard Time", "America/Los_Angeles"):
        event = to_google(model, default_zone=zone)
        assert event["start"] == timed("2050-05-01T07:30:00-07:00", "America/Los_Angeles")


def test_a_zone_of_its_own_wins_over_default_zone() -> None:
    model = item("create/msdocs_createitem_tz_start_end_timezone_req.xml")
    event = to_google(model, default_zone="Tokyo Standard Time")
    assert event["start"]["timeZone"] == "America/Chicago"


def test_end_zone_differs_from_start_zone() -> None:
    model = CalendarItem(
        subject="Flight",
        start=EWSDateTime(2026, 3, 1, 9, 0, tzinfo=UTC),
        end=EWSDateTime(2026, 3, 1, 21, 0, tzinfo=UTC),
        _start_timezone=EWSTimeZone("Europe/London"),
        _end_timezone=EWSTimeZone("Asia/Tokyo"),
    )
    event = to_google(model)
    assert event["start"] == timed("2026-03-01T09:00:00+00:00", "Europe/London")
    assert event["end"] == timed("2026-03-02T06:00:00+09:00", "Asia/Tokyo")


# --- all-day -------------------------------------------------------------------------------

ALL_DAY = [
    # exchangelib's inclusive end -> Google's exclusive end
    (dt.date(2014, 6, 9), dt.date(2014, 6, 9), "2014-06-09", "2014-06-10"),
    (dt.date(2026, 2, 27), dt.date(2026, 3, 2), "2026-02-27", "2026-03-03"),
    # a year boundary
    (dt.date(2025, 12, 31), dt.date(2026, 1, 1), "2025-12-31", "2026-01-02"),
    # an inclusive end before the start (a zero-length all-day item): one day
    (dt.date(2026, 5, 5), dt.date(2026, 5, 4), "2026-05-05", "2026-05-06"),
]


@pytest.mark.parametrize(("start", "end", "google_start", "google_end"), ALL_DAY)
def test_all_day_dates(start: dt.date, end: dt.date, google_start: str, google_end: str) -> None:
    model = CalendarItem(
        subject="Off", start=EWSDate.from_date(start), end=EWSDate.from_date(end), is_all_day=True
    )
    event = to_google(model)
    assert event["start"] == {"date": google_start}
    assert event["end"] == {"date": google_end}
    back = to_ews(event)
    assert back["is_all_day"] is True
    assert back["start"] == start
    assert back["end"] == max(end, start)


def test_all_day_given_as_utc_midnights_is_dated_in_its_zone() -> None:
    # EWS sends all-day bounds as the UTC instants of local midnights, end exclusive
    sydney = EWSTimeZone("Australia/Sydney")
    model = CalendarItem(
        start=EWSDateTime(2026, 1, 9, 13, 0, tzinfo=UTC),  # Jan 10 00:00 in Sydney
        end=EWSDateTime(2026, 1, 11, 13, 0, tzinfo=UTC),  # Jan 12 00:00 in Sydney
        is_all_day=True,
        _start_timezone=sydney,
        _end_timezone=sydney,
    )
    event = to_google(model)
    assert event["start"] == {"date": "2026-01-10"}
    assert event["end"] == {"date": "2026-01-12"}


# --- the other core fields -----------------------------------------------------------------


def base(**fields: Any) -> CalendarItem:
    values: dict[str, Any] = {
        "subject": "Standup",
        "start": EWSDateTime(2026, 4, 1, 8, 0, tzinfo=UTC),
        "end": EWSDateTime(2026, 4, 1, 8, 15, tzinfo=UTC),
        "_start_timezone": EWSTimeZone("Europe/Paris"),
        "_end_timezone": EWSTimeZone("Europe/Paris"),
    }
    values.update(fields)
    return CalendarItem(**values)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # reminders: one popup, or none
        (
            {"reminder_is_set": True, "reminder_minutes_before_start": 10},
            {"reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 10}]}},
        ),
        (
            {"reminder_is_set": False, "reminder_minutes_before_start": 10},
            {"reminders": {"useDefault": False, "overrides": []}},
        ),
        # Google's maximum is four weeks
        (
            {"reminder_is_set": True, "reminder_minutes_before_start": 50000},
            {
                "reminders": {
                    "useDefault": False,
                    "overrides": [{"method": "popup", "minutes": 40320}],
                }
            },
        ),
        # sensitivity -> visibility; Personal is recorded
        ({"sensitivity": "Normal"}, {"visibility": "default"}),
        ({"sensitivity": "Private"}, {"visibility": "private"}),
        ({"sensitivity": "Confidential"}, {"visibility": "confidential"}),
        (
            {"sensitivity": "Personal"},
            {
                "visibility": "private",
                "extendedProperties": {
                    "private": {"ews_free_busy": "Busy", "ews_sensitivity": "Personal"}
                },
            },
        ),
        # free/busy -> transparency; the exact value is recorded
        (
            {"legacy_free_busy_status": "Free"},
            {
                "transparency": "transparent",
                "extendedProperties": {"private": {"ews_free_busy": "Free"}},
            },
        ),
        (
            {"legacy_free_busy_status": "Tentative"},
            {
                "transparency": "opaque",
                "extendedProperties": {"private": {"ews_free_busy": "Tentative"}},
            },
        ),
        (
            {"legacy_free_busy_status": "OOF"},
            {"transparency": "opaque", "extendedProperties": {"private": {"ews_free_busy": "OOF"}}},
        ),
        (
            {"legacy_free_busy_status": "WorkingElsewhere"},
            {
                "transparency": "opaque",
                "extendedProperties": {"private": {"ews_free_busy": "WorkingElsewhere"}},
            },
        ),
        # categories as a JSON list
        (
            {"categories": ["Red category", "Ünïcode"]},
            {
                "extendedProperties": {
                    "private": {"ews_free_busy": "Busy", "categories": '["Red category","Ünïcode"]'}
                }
            },
        ),
        # a cancelled meeting stays confirmed, recorded
        (
            {"is_cancelled": True},
            {
                "extendedProperties": {
                    "private": {"ews_free_busy": "Busy", "ews_is_cancelled": "true"}
                }
            },
        ),
        # UID <-> iCalUID
        (
            {"uid": "040000008200E00074C5B7101A82E00800000000"},
            {"iCalUID": "040000008200E00074C5B7101A82E00800000000"},
        ),
        # text body as it is; location
        (
            {"body": Body("Line 1\r\nLine 2  "), "location": "Room 1"},
            {"description": "Line 1\r\nLine 2  ", "location": "Room 1"},
        ),
        # HTML body as readable text
        (
            {
                "body": HTMLBody(
                    '<html><body><p>Agenda</p><p>See <a href="https://x.example/a">the doc</a></p></body></html>'
                )
            },
            {"description": "Agenda\n\nSee the doc <https://x.example/a>"},
        ),
    ],
)
def test_core_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    event = to_google(base(**fields))
    for key, value in expected.items():
        assert event[key] == value
    assert "status" not in event


def test_no_attendees_organizer_or_id_are_ever_written() -> None:
    event = to_google(item("get/pyexchange_getitem_full_meeting_attendees_resp.xml"))
    assert not {"attendees", "organizer", "id", "status"} & set(event)
    assert set(event) <= set(MANAGED_FIELDS)


def test_empty_subject_location_body_are_left_out() -> None:
    event = to_google(base(subject="", location="", body=Body("")))
    assert not {"summary", "location", "description"} & set(event)


def test_categories_past_googles_value_limit_are_dropped_from_the_end() -> None:
    categories = [f"category {i:03d} " + "x" * 40 for i in range(40)]
    value = to_google(base(categories=categories))["extendedProperties"]["private"]["categories"]
    kept = json.loads(value)
    assert len(value) <= 1024
    assert kept == categories[: len(kept)]
    assert 0 < len(kept) < len(categories)


def test_an_item_without_start_cannot_be_mapped() -> None:
    with pytest.raises(MappingError):
        to_google(CalendarItem(subject="x"))


# --- Google -> EWS -------------------------------------------------------------------------


def test_to_ews_builds_a_calendar_item() -> None:
    event = {
        "summary": "Design review",
        "description": "Bring the drafts",
        "location": "Room 4",
        "start": timed("2026-07-01T10:00:00+10:00", "Australia/Sydney"),
        "end": timed("2026-07-01T11:30:00+10:00", "Australia/Sydney"),
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=WE;COUNT=4"],
        "iCalUID": "abc@google.com",
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 30}]},
        "visibility": "confidential",
        "transparency": "transparent",
        "extendedProperties": {"private": {"categories": '["Blue"]', "other": "kept"}},
        "attendees": [{"email": "someone@example.com"}],
    }
    kwargs = to_ews(event)
    model = CalendarItem(**kwargs)
    assert model.subject == "Design review"
    assert isinstance(model.body, Body) and not isinstance(model.body, HTMLBody)
    assert model.start == EWSDateTime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert model._start_timezone == EWSTimeZone("Australia/Sydney")
    assert model._start_timezone.ms_id == "AUS Eastern Standard Time"
    assert model.recurrence.boundary.number == 4
    assert model.recurrence.boundary.start == dt.date(2026, 7, 1)
    assert (model.reminder_is_set, model.reminder_minutes_before_start) == (True, 30)
    assert (model.sensitivity, model.legacy_free_busy_status) == ("Confidential", "Free")
    assert model.categories == ["Blue"]
    assert model.uid == "abc@google.com"
    assert "required_attendees" not in kwargs  # attendees are the next issue's


@pytest.mark.parametrize(
    "event",
    [
        {"summary": "no times"},
        {"start": {"date": "2026-01-01"}, "end": {"dateTime": "2026-01-02T00:00:00Z"}},
        {"start": {"dateTime": "2026-01-01T10:00:00"}, "end": {"dateTime": "2026-01-01T11:00:00"}},
        {"start": {"dateTime": "soon"}, "end": {"dateTime": "later"}},
    ],
)
def test_to_ews_refuses_events_without_readable_times(event: dict[str, Any]) -> None:
    with pytest.raises(MappingError):
        to_ews(event)


# --- ids and hashes ------------------------------------------------------------------------

ITEM_IDS = [
    "AAMkADk0ZjA3ZGRkLTY1ZjctNDM2OC1hNjE2LTk5MzI0ZGEwNzhlYgBGAAAAAAC4Cq2pA8xPQb1hJ0Z6FnLvBwC7WEq3ZAcYRZl8Lg3n0w+PAAAAAAENAAC7WEq3ZAcYRZl8Lg3n0w+PAAAJ7Vq9AAA=",
    "AAMkA",
    "",
    "ünïcode/+=",
]


@pytest.mark.parametrize("item_id", ITEM_IDS)
def test_event_id_is_base32hex_and_deterministic(item_id: str) -> None:
    event_id = event_id_for(item_id)
    assert re.fullmatch(r"[0-9a-v]{5,1024}", event_id)
    assert event_id == event_id_for(item_id)


def test_event_ids_differ_for_ids_differing_in_case() -> None:
    # Exchange ids are base64: case matters
    assert event_id_for("AAMkA") != event_id_for("aamka")
    assert len({event_id_for(i) for i in ITEM_IDS}) == len(ITEM_IDS)


def test_content_hash_ignores_google_owned_keys_and_spellings() -> None:
    event = to_google(item("create/msdocs_createitem_appointment_tennis_req.xml"))
    fetched = {
        **json.loads(json.dumps(event)),
        "id": "abc",
        "etag": '"3522546226014142"',
        "updated": "2026-01-01T00:00:00.000Z",
        "created": "2026-01-01T00:00:00.000Z",
        "htmlLink": "https://www.google.com/calendar/event?eid=x",
        "sequence": 3,
        "status": "confirmed",
        "kind": "calendar#event",
        "creator": {"email": "me@example.com"},
        # Google writes UTC times with "Z" and leaves its defaults out
        "start": {"dateTime": "2013-09-21T19:00:00Z", "timeZone": "America/Los_Angeles"},
    }
    del fetched["transparency"]
    fetched["visibility"] = "default"
    fetched["extendedProperties"]["private"]["calsync_other"] = "not ours"
    fetched["extendedProperties"]["shared"] = {"x": "y"}
    assert content_hash(fetched) == content_hash(event)


@pytest.mark.parametrize(
    "change",
    [
        {"summary": "Tennis lesson (moved)"},
        {"start": timed("2013-09-21T12:30:00-07:00", "America/Los_Angeles")},
        {"start": timed("2013-09-21T12:00:00-07:00", "America/Denver")},
        {"reminders": {"useDefault": True}},
        {"transparency": "transparent"},
        {"extendedProperties": {"private": {"ews_free_busy": "Tentative"}}},
        {"recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]},
        {"status": "cancelled"},
    ],
)
def test_content_hash_sees_every_managed_change(change: dict[str, Any]) -> None:
    event = to_google(item("create/msdocs_createitem_appointment_tennis_req.xml"))
    assert content_hash({**event, **change}) != content_hash(event)


def test_content_hash_is_a_stable_value() -> None:
    event = to_google(item("create/msdocs_createitem_allday_vacation_req.xml"))
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash(event))
    assert content_hash(json.loads(json.dumps(event))) == content_hash(event)


# --- LOSSY_FIELDS --------------------------------------------------------------------------


def test_lossy_fields_say_what_they_do() -> None:
    assert all(isinstance(rule, str) and len(rule) > 40 for rule in LOSSY_FIELDS.values())
