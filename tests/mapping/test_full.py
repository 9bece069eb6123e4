"""The full-fidelity mapping (mapping/full.py, people.py, online.py, zones.legacy_zone):
tables from the corpus, hand-made cases for the gaps, one test per LOSSY_FIELDS rule it
adds."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Attendee, Body, Mailbox
from exchangelib.recurrence import (
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    WeeklyPattern,
)

from ews_parser import parse
from ews_parser.values import LegacyTimeZone, Response, TransitionRule
from mapping.event import LOSSY_FIELDS, GoogleEvent
from mapping.full import FULL_MANAGED_FIELDS, to_ews_full, to_google_full
from mapping.online import conference_data, find_meeting_url
from mapping.zones import legacy_zone
from tests.mapping.conftest import FIXTURES, item

UTC = EWSTimeZone("UTC")


def trip(event: GoogleEvent) -> GoogleEvent:
    return to_google_full(CalendarItem(**to_ews_full(event))).event


def attendee(email: str, response: str = "Unknown", name: str | None = None,
             routing: str = "SMTP") -> Attendee:
    return Attendee(mailbox=Mailbox(name=name, email_address=email, routing_type=routing),
                    response_type=response)


def timed_item(**fields: Any) -> CalendarItem:
    start = EWSDateTime(2026, 6, 1, 7, 0, tzinfo=UTC)
    base: dict[str, Any] = {
        "subject": "Call",
        "start": start,
        "end": start + dt.timedelta(minutes=30),
        "_start_timezone": EWSTimeZone("Europe/Berlin"),
    }
    base.update(fields)
    return CalendarItem(**base)


# --- people, from the corpus ------------------------------------------------------------------

FULL_MEETING = "get/pyexchange_getitem_full_meeting_attendees_resp.xml"

ATTENDEES = [
    # required: every ResponseType pyexchange's fixture has
    ("earheart@test.linkedin.com", {"responseStatus": "accepted"}),
    ("curie@test.linkedin.com", {"responseStatus": "tentative"}),
    ("suggia@test.linkedin.com", {"responseStatus": "declined"}),
    ("franklin@test.linkedin.com", {"responseStatus": "needsAction"}),
    # optional
    ("meitner@test.linkedin.com", {"responseStatus": "accepted", "optional": True}),
    ("lovelace@test.linkedin.com", {"responseStatus": "tentative", "optional": True}),
    ("hopper@test.linkedin.com", {"responseStatus": "declined", "optional": True}),
    ("atwood@test.linkedin.com", {"responseStatus": "needsAction", "optional": True}),
    # the room
    ("dinosaur@test.linkedin.com", {"responseStatus": "accepted", "resource": True}),
]


def test_corpus_meeting_attendees_responses_and_organizer() -> None:
    event = to_google_full(item(FULL_MEETING)).event
    got = {a["email"]: a for a in event["attendees"]}
    assert [a["email"] for a in event["attendees"]] == [email for email, _ in ATTENDEES]
    for email, expected in ATTENDEES:
        assert {k: v for k, v in got[email].items() if k not in ("email", "displayName")} == {
            "responseStatus": expected["responseStatus"],
            **{k: v for k, v in expected.items() if k != "responseStatus"},
        }, email
    assert got["curie@test.linkedin.com"]["displayName"] == "máŕíé ćúŕíé"
    assert event["organizer"] == {"email": "noether@test.linkedin.com",
                                  "displayName": "émmý ńőéthéŕ"}
    # and back: three EWS lists; Unknown comes back NoResponseReceived (LOSSY_FIELDS)
    kwargs = to_ews_full(event)
    assert [a.mailbox.email_address for a in kwargs["required_attendees"]] == [
        e for e, _ in ATTENDEES[:4]]
    assert [a.response_type for a in kwargs["required_attendees"]] == [
        "Accept", "Tentative", "Decline", "NoResponseReceived"]
    assert [a.mailbox.email_address for a in kwargs["optional_attendees"]] == [
        e for e, _ in ATTENDEES[4:8]]
    assert [a.mailbox.email_address for a in kwargs["resources"]] == [ATTENDEES[8][0]]
    assert kwargs["organizer"].email_address == "noether@test.linkedin.com"
    assert trip(event) == event


def test_nothing_the_full_mapping_writes_can_invite() -> None:
    # Google's guest permissions and sendUpdates are never in the body; EWS's
    # IsResponseRequested and meeting flags are never in the kwargs.
    event = to_google_full(item(FULL_MEETING)).event
    assert set(event) <= set(FULL_MANAGED_FIELDS)
    kwargs = to_ews_full(event)
    assert not {"is_response_requested", "meeting_request_was_sent", "is_meeting"} & set(kwargs)


RESPONSES = [
    # (EWS ResponseType, Google responseStatus, EWS back)
    ("Accept", "accepted", "Accept"),
    ("Tentative", "tentative", "Tentative"),
    ("Decline", "declined", "Decline"),
    ("NoResponseReceived", "needsAction", "NoResponseReceived"),
    ("Unknown", "needsAction", "NoResponseReceived"),
    ("Organizer", "accepted", "Organizer"),
]


@pytest.mark.parametrize(("ews", "google", "back"), RESPONSES)
def test_response_statuses_both_ways(ews: str, google: str, back: str) -> None:
    event = to_google_full(timed_item(required_attendees=[attendee("a@x.example", ews)])).event
    assert event["attendees"][0]["responseStatus"] == google
    assert ("organizer" in event["attendees"][0]) == (ews == "Organizer")
    assert to_ews_full(event)["required_attendees"][0].response_type == back


def test_start_and_end_in_different_zones_across_dst() -> None:
    # a flight: leaves Frankfurt on the day Europe changes to summer time, lands in New York
    start = EWSDateTime(2026, 3, 29, 9, 0, tzinfo=UTC)
    flight = timed_item(start=start, end=start + dt.timedelta(hours=9),
                        _start_timezone=EWSTimeZone("Europe/Berlin"),
                        _end_timezone=EWSTimeZone("America/New_York"))
    event = to_google_full(flight).event
    assert event["start"] == {"dateTime": "2026-03-29T11:00:00+02:00", "timeZone": "Europe/Berlin"}
    assert event["end"] == {"dateTime": "2026-03-29T14:00:00-04:00",
                            "timeZone": "America/New_York"}
    assert trip(event) == event


def test_floating_google_times_are_read_in_their_zone() -> None:
    # no offset: the wall clock of timeZone, across the DST change in Sydney
    event: GoogleEvent = {
        "start": {"dateTime": "2026-04-05T01:30:00", "timeZone": "Australia/Sydney"},
        "end": {"dateTime": "2026-04-05T04:30:00", "timeZone": "Australia/Sydney"},
    }
    kwargs = to_ews_full(event)
    assert kwargs["start"].astimezone(UTC) == EWSDateTime(2026, 4, 4, 14, 30, tzinfo=UTC)
    assert kwargs["end"].astimezone(UTC) == EWSDateTime(2026, 4, 4, 18, 30, tzinfo=UTC)
    assert trip(event)["end"] == {"dateTime": "2026-04-05T04:30:00+10:00",
                                  "timeZone": "Australia/Sydney"}


# --- online meetings ---------------------------------------------------------------------------

TEAMS = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_N2Q%40thread.v2/0?context=%7b%7d"
MEET = "https://meet.google.com/abc-defg-hij"
ZOOM = "https://us02web.zoom.us/j/81234567890?pwd=QWERTY"

ONLINE = [
    # where the URL is in EWS -> the join URL, the solution, the Google location
    ({"location": TEAMS}, TEAMS, ("addOn", "Microsoft Teams Meeting"), None),
    ({"location": f"Room 1; {MEET}."}, MEET, ("hangoutsMeet", "Google Meet"), f"Room 1; {MEET}."),
    ({"body": Body(f"Join Zoom Meeting\n{ZOOM}\nMeeting ID: 812")}, ZOOM,
     ("addOn", "Zoom Meeting"), None),
    # NetShowUrl first, even an unknown provider's
    ({"net_show_url": "https://video.example/r/1", "location": TEAMS}, "https://video.example/r/1",
     None, TEAMS),
    # not a meeting: a provider's home page, a download link
    ({"location": "https://zoom.us/download", "body": Body("https://teams.microsoft.com/")},
     None, None, "https://zoom.us/download"),
]


@pytest.mark.parametrize(("fields", "url", "solution", "location"), ONLINE)
def test_online_meeting_urls_become_conference_data(
    fields: dict[str, Any], url: str | None, solution: tuple[str, str] | None,
    location: str | None,
) -> None:
    event = to_google_full(timed_item(**fields)).event
    assert event.get("location") == location
    if url is None:
        assert "conferenceData" not in event
        return
    data = event["conferenceData"]
    assert data["entryPoints"] == [{"entryPointType": "video", "uri": url}]
    if solution is None:
        assert "conferenceSolution" not in data
    else:
        assert data["conferenceSolution"] == {"key": {"type": solution[0]}, "name": solution[1]}
    kwargs = to_ews_full(event)
    assert kwargs["net_show_url"] == url
    assert trip(event) == event


def test_find_meeting_url_strips_trailing_punctuation() -> None:
    assert find_meeting_url(f"(see {MEET}).") == MEET
    assert find_meeting_url("nothing here") is None


# --- legacy MeetingTimeZone rules -------------------------------------------------------------


def rule(month: int, index: int, offset_minutes: int = 0, hour: int = 2) -> TransitionRule:
    return TransitionRule(offset=dt.timedelta(minutes=offset_minutes), month=month,
                          day_of_week=6, day_of_week_index=index, time=dt.time(hour))


def legacy(name: str | None, base_minutes: int, standard: TransitionRule | None = None,
           daylight: TransitionRule | None = None) -> LegacyTimeZone:
    return LegacyTimeZone(name=name, base_offset=dt.timedelta(minutes=base_minutes),
                          standard=standard, daylight=daylight)


US_CENTRAL_2007 = legacy(None, 360, rule(11, 1), rule(3, 2, -60))
US_CENTRAL_1987 = legacy(None, 360, rule(10, -1), rule(4, 1, -60))
EU_CENTRAL = legacy(None, -60, rule(10, -1, 0, 3), rule(3, -1, -60, 2))
AUS_EASTERN = legacy(None, -600, rule(4, 1, 0, 3), rule(10, 1, -60, 2))
INDIA = legacy(None, -330)
ODD = legacy(None, 437)

LEGACY = [
    # (legacy zone, years, IANA zone or None when none keeps those rules)
    (US_CENTRAL_2007, (2024, 2028), "America/Chicago"),
    # the rules the name had before 2007: Chicago kept them until 2006 (another zone of
    # the same rules, first in CLDR order, is as right), none since
    (US_CENTRAL_1987, (2005, 2006), "America/Cancun"),
    (US_CENTRAL_1987, (2024, 2025), None),
    (dataclasses.replace(US_CENTRAL_1987, name="Central Standard Time"), (2005, 2006),
     "America/Chicago"),
    (EU_CENTRAL, (2026, 2027), "Europe/Berlin"),
    # Sydney's rules, and Hobart's: Tasmania comes first in CLDR order, same instants
    (AUS_EASTERN, (2026, 2030), "Australia/Hobart"),
    (INDIA, (2026, 2026), "Asia/Calcutta"),
    (legacy(None, 0), (2026, 2026), "UTC"),
    (ODD, (2026, 2026), None),
]


@pytest.mark.parametrize(("zone", "years", "expected"), LEGACY)
def test_legacy_rules_become_the_iana_zone_that_keeps_them(
    zone: LegacyTimeZone, years: tuple[int, int], expected: str | None
) -> None:
    match = legacy_zone(zone, *years)
    assert (match.zone.key if match.zone else None) == expected
    assert bool(match.warnings) == (expected is None)


def test_corpus_meeting_time_zone_rules_match_central_time() -> None:
    name = "get/pyexchange_getitem_recurring_master_weekly_resp.xml"
    body = parse((FIXTURES / name).read_bytes()).body
    assert isinstance(body, Response)
    parsed = body.messages[0].items[0]
    assert parsed.legacy_time_zone is not None
    mapped = to_google_full(parsed.model, legacy_time_zone=parsed.legacy_time_zone)
    assert mapped.warnings == ()
    assert mapped.event["start"]["timeZone"] == "America/Chicago"
    assert mapped.event["start"]["dateTime"] == "2050-05-20T15:42:50-05:00"


def _series(zone: LegacyTimeZone, start: EWSDateTime, recurrence: Recurrence | None) -> Any:
    # as ews_parser leaves an item whose MeetingTimeZone names no zone it knows: instants
    # read with the rules, no _start_timezone
    return to_google_full(CalendarItem(subject="s", start=start, end=start + dt.timedelta(hours=1),
                                       recurrence=recurrence), legacy_time_zone=zone)


def test_unnamed_legacy_rules_give_the_series_a_zone_that_keeps_its_wall_clock() -> None:
    start = EWSDateTime(2026, 1, 6, 15, 0, tzinfo=UTC)  # 09:00 Central
    recurrence = Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[2]),
                            boundary=EndDatePattern(start=EWSDate(2026, 1, 6),
                                                    end=EWSDate(2027, 12, 28)))
    mapped = _series(US_CENTRAL_2007, start, recurrence)
    assert mapped.warnings == ()
    assert mapped.event["start"] == {"dateTime": "2026-01-06T09:00:00-06:00",
                                     "timeZone": "America/Chicago"}


def test_legacy_rules_no_zone_keeps_has_the_right_instant_and_a_warning() -> None:
    start = EWSDateTime(2026, 1, 6, 15, 0, tzinfo=UTC)
    recurrence = Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[2]),
                            boundary=NumberedPattern(start=EWSDate(2026, 1, 6), number=60))
    mapped = _series(US_CENTRAL_1987, start, recurrence)
    assert "no IANA zone" in mapped.warnings[0] and "2026-2027" in mapped.warnings[0]
    assert mapped.event["start"] == {"dateTime": "2026-01-06T15:00:00+00:00", "timeZone": "UTC"}
    # and a series with no end is checked over five years
    endless = Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[2]),
                         boundary=NoEndPattern(start=EWSDate(2026, 1, 6)))
    assert "2026-2030" in _series(US_CENTRAL_1987, start, endless).warnings[0]


# --- what does not survive, and the rule it follows ---------------------------------------------


def event(**fields: Any) -> GoogleEvent:
    base: GoogleEvent = {
        "summary": "Call",
        "start": {"dateTime": "2026-06-01T09:00:00+02:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-06-01T09:30:00+02:00", "timeZone": "Europe/Berlin"},
        "reminders": {"useDefault": False, "overrides": []},
        "visibility": "default",
        "transparency": "opaque",
        "extendedProperties": {"private": {"ews_free_busy": "Busy"}},
    }
    base.update(fields)
    return base


#: (the LOSSY_FIELDS entries, Google event in, the fields that come back)
FULL_LOSSES = [
    (
        ("attendees",),
        event(attendees=[
            {"email": "a@x.example", "responseStatus": "accepted", "self": True,
             "comment": "see you", "additionalGuests": 2, "id": "1"},
            {"email": "A@X.example", "responseStatus": "declined"},
            {"email": "room@x.example", "resource": True, "optional": True},
            {"displayName": "no address"},
        ]),
        {"attendees": [
            {"email": "a@x.example", "responseStatus": "accepted"},
            {"email": "room@x.example", "resource": True, "responseStatus": "needsAction"},
        ]},
    ),
    (
        ("attendees.responseStatus",),
        event(
            organizer={"email": "boss@x.example"},
            attendees=[{"email": "boss@x.example", "organizer": True,
                        "responseStatus": "tentative"},
                       {"email": "x@x.example", "organizer": True,
                        "responseStatus": "tentative"}],
        ),
        {"attendees": [
            {"email": "boss@x.example", "organizer": True, "responseStatus": "tentative"},
            {"email": "x@x.example", "responseStatus": "tentative"},
        ]},
    ),
    (
        ("organizer",),
        event(organizer={"email": "boss@x.example", "displayName": "Boss", "self": True,
                         "id": "7"}),
        {"organizer": {"email": "boss@x.example", "displayName": "Boss"}},
    ),
    (
        ("conferenceData",),
        event(conferenceData={
            "conferenceId": "abc-defg-hij",
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Meet",
                                   "iconUri": "https://x.example/i.png"},
            "entryPoints": [
                {"entryPointType": "phone", "uri": "tel:+1-555-0100", "pin": "123"},
                {"entryPointType": "video", "uri": MEET, "label": "meet.google.com/abc"},
            ],
            "notes": "bring coffee",
        }),
        {"conferenceData": conference_data(MEET), "location": None},
    ),
    (
        ("hangoutLink",),
        event(hangoutLink=MEET),
        {"conferenceData": conference_data(MEET), "hangoutLink": None},
    ),
    (
        ("location",),
        event(location=ZOOM, conferenceData=conference_data(ZOOM)),
        {"location": None, "conferenceData": conference_data(ZOOM)},
    ),
]


@pytest.mark.parametrize(
    ("rules", "google", "expected"), FULL_LOSSES, ids=["+".join(r) for r, _, _ in FULL_LOSSES]
)
def test_what_does_not_survive_follows_its_rule(
    rules: tuple[str, ...], google: GoogleEvent, expected: dict[str, Any]
) -> None:
    assert set(rules) <= set(LOSSY_FIELDS)
    back = trip(google)
    for key, value in expected.items():
        assert back.get(key) == value, key
    assert trip(back) == back


@pytest.mark.parametrize(
    ("wall", "instant"),
    [
        # the repeated hour when Berlin leaves summer time: both 02:45s, an hour apart
        ("2026-10-25T02:45:00+02:00", dt.datetime(2026, 10, 25, 0, 45, tzinfo=dt.UTC)),
        ("2026-10-25T02:45:00+01:00", dt.datetime(2026, 10, 25, 1, 45, tzinfo=dt.UTC)),
        # and the hour that does not exist in spring is never written
        ("2026-03-29T03:30:00+02:00", dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)),
    ],
)
def test_the_repeated_hour_keeps_its_instant_both_ways(wall: str, instant: dt.datetime) -> None:
    # EWSTimeZone drops `fold`: read naively the second 02:45 would come back an hour early
    google = event(start={"dateTime": wall, "timeZone": "Europe/Berlin"},
                   end={"dateTime": wall, "timeZone": "Europe/Berlin"})
    kwargs = to_ews_full(google)
    assert kwargs["start"].timestamp() == instant.timestamp()
    item_ = timed_item(start=EWSDateTime.from_datetime(instant),
                       end=EWSDateTime.from_datetime(instant))
    assert to_google_full(item_).event["start"]["dateTime"] == wall
    assert trip(google)["start"] == {"dateTime": wall, "timeZone": "Europe/Berlin"}
