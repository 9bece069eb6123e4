"""MimeContent end to end: CreateItem whose only content is iCalendar (as DavMail sends
every CalDAV PUT, and the EWS Managed API with CharacterSet="UTF-8"), then GetItem with
IncludeMimeContent (DavMail's read) or item:MimeContent (exchangelib's), and the item as
exchangelib reads its properties.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/mimecontent
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/includemimecontent
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

import icalendar
import pytest
from dateutil import rrule
from exchangelib import Account, EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.recurrence import NumberedPattern, WeeklyPattern
from lxml import etree

from emulators.ews import EwsServer
from ews_parser.calendar_item import zone_from_id
from tests.emulators.ews.conftest import raw_post, soap

UTC = EWSTimeZone("UTC")
BERLIN = EWSTimeZone("Europe/Berlin")
NS = {"m": "http://schemas.microsoft.com/exchange/services/2006/messages",
      "t": "http://schemas.microsoft.com/exchange/services/2006/types"}

BERLIN_VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
X-LIC-LOCATION:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
END:STANDARD
END:VTIMEZONE
"""

#: What Thunderbird hands DavMail for a weekly meeting with one occurrence moved and one
#: cancelled (Thunderbird writes the zone as IANA with its VTIMEZONE).
SERIES = f"""BEGIN:VCALENDAR
PRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN
VERSION:2.0
{BERLIN_VTIMEZONE}BEGIN:VEVENT
CREATED:20261201T100000Z
LAST-MODIFIED:20261201T100000Z
DTSTAMP:20261201T100000Z
UID:7d1c2f0e-5b8a-4f57-9c1e-000000000001
SUMMARY:Weekly planning
ORGANIZER;CN=Alice:mailto:alice@example.com
ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED;ROLE=CHAIR:mailto:alice@example.com
ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:bob@example.com
ATTENDEE;PARTSTAT=NEEDS-ACTION;ROLE=OPT-PARTICIPANT:mailto:carol@example.com
RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=MO
EXDATE;TZID=Europe/Berlin:20270111T090000
DTSTART;TZID=Europe/Berlin:20270104T090000
DTEND;TZID=Europe/Berlin:20270104T100000
LOCATION:Room 1
DESCRIPTION:Agenda:\\n1. numbers
TRANSP:OPAQUE
END:VEVENT
BEGIN:VEVENT
UID:7d1c2f0e-5b8a-4f57-9c1e-000000000001
RECURRENCE-ID;TZID=Europe/Berlin:20270118T090000
SUMMARY:Weekly planning (afternoon)
DTSTART;TZID=Europe/Berlin:20270118T150000
DTEND;TZID=Europe/Berlin:20270118T160000
LOCATION:Room 2
END:VEVENT
END:VCALENDAR
"""

ALL_DAY = """BEGIN:VCALENDAR
PRODID:-//Apple Inc.//macOS 14//EN
VERSION:2.0
BEGIN:VEVENT
UID:all-day-1
SUMMARY:Offsite
DTSTART;VALUE=DATE:20270301
DTEND;VALUE=DATE:20270303
TRANSP:TRANSPARENT
END:VEVENT
END:VCALENDAR
"""

#: DavMail's other elements beside MimeContent (EwsExchangeSession.Event.createOrUpdate):
#: ReminderIsSet when there is no VALARM, the item name, the appointment state flags,
#: LegacyFreeBusyStatus.
DAVMAIL_EXTRA = (
    "<t:ReminderIsSet>false</t:ReminderIsSet>"
    '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
    "<t:Value>7d1c2f0e.EML</t:Value></t:ExtendedProperty>"
    '<t:ExtendedProperty><t:ExtendedFieldURI DistinguishedPropertySetId="Appointment"'
    ' PropertyId="33303" PropertyType="Integer"/><t:Value>1</t:Value></t:ExtendedProperty>'
    "<t:LegacyFreeBusyStatus>Busy</t:LegacyFreeBusyStatus>"
)


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def create_with_mime(server: EwsServer, content: bytes | str, *, extra: str = DAVMAIL_EXTRA,
                     character_set: bool = False, zone: str | None = None) -> etree._Element:
    """CreateItem as DavMail writes it (SaveOnly, SendToNone, the calendar folder), and
    with CharacterSet="UTF-8" as the Managed API writes MimeContent."""
    data = base64.b64encode(content).decode() if isinstance(content, bytes) else content
    attribute = ' CharacterSet="UTF-8"' if character_set else ""
    header = (f'<t:TimeZoneContext><t:TimeZoneDefinition Id="{zone}"/></t:TimeZoneContext>'
              if zone else "")
    body = soap(
        '<m:CreateItem MessageDisposition="SaveOnly" SendMeetingInvitations="SendToNone">'
        '<m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId>'
        f"<m:Items><t:CalendarItem><t:MimeContent{attribute}>{data}</t:MimeContent>{extra}"
        "</t:CalendarItem></m:Items></m:CreateItem>", header=header)
    status, _, answer = raw_post(server.url, body)
    assert status == 200
    message = etree.fromstring(answer).find(".//m:CreateItemResponseMessage", NS)
    assert message is not None
    return message


def created_id(message: etree._Element) -> str:
    assert message.get("ResponseClass") == "Success", etree.tostring(message)
    item_id = message.find("m:Items/t:CalendarItem/t:ItemId", NS)
    assert item_id is not None
    return str(item_id.get("Id"))


def get_mime(server: EwsServer, item_xml: str, *, additional: str = "") -> bytes:
    """GetItem as DavMail reads an event: IdOnly, IncludeMimeContent, extra properties."""
    props = f"<t:AdditionalProperties>{additional}</t:AdditionalProperties>" if additional else ""
    body = soap(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
        f"<t:IncludeMimeContent>true</t:IncludeMimeContent>{props}</m:ItemShape>"
        f"<m:ItemIds>{item_xml}</m:ItemIds></m:GetItem>")
    status, _, answer = raw_post(server.url, body)
    assert status == 200, answer
    item = etree.fromstring(answer).find(".//m:Items/t:CalendarItem", NS)
    assert item is not None, answer
    first = item[0]
    assert first.tag == f"{{{NS['t']}}}MimeContent"  # first, as types.xsd orders it
    assert first.get("CharacterSet") == "UTF-8"
    return base64.b64decode(first.text or "")


# --- comparing two iCalendars field by field ----------------------------------------------


def _zone_key(prop: Any) -> str | None:
    tzid = prop.params.get("TZID")
    zone = zone_from_id(str(tzid)) if tzid else None
    return zone.ews.ms_id if zone is not None and zone.ews is not None else tzid


def _when(prop: Any) -> Any:
    value = prop.dt
    return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else value


def _people(event: Any) -> list[tuple[str, str]]:
    organizer = str(event.get("ORGANIZER", "")).lower()
    out = []
    for prop in event.get("ATTENDEE", []) if isinstance(event.get("ATTENDEE"), list) else \
            [event["ATTENDEE"]] if "ATTENDEE" in event else []:
        if str(prop).lower() == organizer:
            continue  # the organizer is no attendee (Exchange drops it)
        role = str(prop.params.get("ROLE", "REQ-PARTICIPANT"))
        out.append((str(prop).lower().removeprefix("mailto:"),
                    "OPT" if role == "OPT-PARTICIPANT" else "REQ"))
    return sorted(out)


def _starts(event: Any) -> list[Any]:
    """The series' starts, RRULE expanded with EXDATEs applied (what the series means)."""
    if "RRULE" not in event:
        return [_when(event["DTSTART"])]
    def moment(value: Any) -> dt.datetime:  # dates as naive midnights, as dateutil wants
        return value if isinstance(value, dt.datetime) else dt.datetime.combine(value,
                                                                                dt.time(0))

    first = moment(event["DTSTART"].dt)
    rules = rrule.rruleset()
    rules.rrule(rrule.rrulestr(event["RRULE"].to_ical().decode(), dtstart=first))
    for value in event.exdates:
        rules.exdate(moment(value))
    return [s.astimezone(dt.UTC) if s.tzinfo else s for s in rules]


def digest(data: bytes) -> dict[str, Any]:
    """Every field the stand-in converts, in a form two writers of the same event share."""
    events = icalendar.Calendar.from_ical(data).walk("VEVENT")
    master = next(e for e in events if "RECURRENCE-ID" not in e)
    return {
        "uid": str(master["UID"]),
        "summary": str(master["SUMMARY"]),
        "location": str(master.get("LOCATION")),
        "description": str(master.get("DESCRIPTION")),
        "start": _when(master["DTSTART"]),
        "end": _when(master["DTEND"]),
        "zones": (_zone_key(master["DTSTART"]), _zone_key(master["DTEND"])),
        "starts": _starts(master),
        "exdates": sorted(_when(type("P", (), {"dt": v})) for v in master.exdates),
        "organizer": str(master.get("ORGANIZER", "")).lower().removeprefix("mailto:"),
        "attendees": _people(master),
        "busy": str(master.get("TRANSP", "OPAQUE")),
        "overrides": sorted(
            (_when(e["RECURRENCE-ID"]), str(e["SUMMARY"]), _when(e["DTSTART"]),
             _when(e["DTEND"]), str(e.get("LOCATION")))
            for e in events if "RECURRENCE-ID" in e),
    }


# --- create, read back ---------------------------------------------------------------------


@pytest.mark.parametrize("character_set", [False, True], ids=["davmail", "managed-api"])
def test_icalendar_round_trips_through_the_item(server: EwsServer, character_set: bool) -> None:
    # A weekly series with attendees, a deleted and a moved occurrence: what GetItem's
    # MimeContent says equals what CreateItem's said, field by field.
    sent = _crlf(SERIES)
    item_id = created_id(create_with_mime(server, sent, character_set=character_set))
    back = get_mime(server, f'<t:ItemId Id="{item_id}"/>')
    assert back.startswith(b"BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\n")
    assert digest(back) == digest(sent)
    # and what the item says, converted again, is still the same event
    again = created_id(create_with_mime(server, back))
    assert digest(get_mime(server, f'<t:ItemId Id="{again}"/>')) == digest(sent)


def test_the_item_has_the_icalendars_properties(server: EwsServer, alice: Account) -> None:
    item_id = created_id(create_with_mime(server, _crlf(SERIES)))
    master = alice.calendar.get(id=item_id)
    assert master.subject == "Weekly planning"
    assert master.type == "RecurringMaster"
    assert master.uid == "7d1c2f0e-5b8a-4f57-9c1e-000000000001"
    assert master.start == EWSDateTime(2027, 1, 4, 8, tzinfo=UTC)
    assert master.end == EWSDateTime(2027, 1, 4, 9, tzinfo=UTC)
    assert master._start_timezone.ms_id == "W. Europe Standard Time"
    assert master.location == "Room 1"
    assert master.body == "Agenda:\n1. numbers"
    assert master.recurrence.pattern == WeeklyPattern(interval=1, weekdays=[1],
                                                      first_day_of_week=1)
    boundary = master.recurrence.boundary
    assert isinstance(boundary, NumberedPattern) and boundary.number == 6
    # (the stand-in writes StartDate without an offset, which exchangelib reads as a
    # date-time at midnight: compare the day)
    assert (boundary.start.year, boundary.start.month, boundary.start.day) == (2027, 1, 4)
    assert [d.start for d in master.deleted_occurrences] == [
        EWSDateTime(2027, 1, 11, 8, tzinfo=UTC)]
    assert [(o.original_start, o.start) for o in master.modified_occurrences] == [
        (EWSDateTime(2027, 1, 18, 8, tzinfo=UTC), EWSDateTime(2027, 1, 18, 14, tzinfo=UTC))]
    assert master.organizer.email_address == "alice@example.com"
    assert [a.mailbox.email_address for a in master.required_attendees] == ["bob@example.com"]
    assert [a.mailbox.email_address for a in master.optional_attendees] == ["carol@example.com"]
    assert master.my_response_type == "Organizer"
    # DavMail's own elements beside the MimeContent win (no VALARM: ReminderIsSet false)
    assert master.reminder_is_set is False
    assert master.legacy_free_busy_status == "Busy"
    view = list(alice.calendar.view(start=EWSDateTime(2027, 1, 1, tzinfo=UTC),
                                    end=EWSDateTime(2027, 3, 1, tzinfo=UTC)))
    assert [(o.type, o.subject, o.start.astimezone(BERLIN).strftime("%d %H")) for o in view] == [
        ("Occurrence", "Weekly planning", "04 09"),
        ("Exception", "Weekly planning (afternoon)", "18 15"),
        ("Occurrence", "Weekly planning", "25 09"),
        ("Occurrence", "Weekly planning", "01 09"),
        ("Occurrence", "Weekly planning", "08 09"),
    ]
    assert view[1].location == "Room 2"


def test_all_day_event_in_the_request_zone(server: EwsServer, alice: Account) -> None:
    # VALUE=DATE: an all-day item on the request's zone's midnights, written back as dates.
    sent = _crlf(ALL_DAY)
    item_id = created_id(create_with_mime(server, sent, extra="",
                                          zone="W. Europe Standard Time"))
    item = alice.calendar.get(id=item_id)
    assert item.is_all_day
    assert (item.start, item.end) == (EWSDate(2027, 3, 1), EWSDate(2027, 3, 2))
    assert item.legacy_free_busy_status == "Free"
    back = get_mime(server, f'<t:ItemId Id="{item_id}"/>')
    assert digest(back) == digest(sent)
    event = icalendar.Calendar.from_ical(back).walk("VEVENT")[0]
    assert event["X-MICROSOFT-CDO-ALLDAYEVENT"] == "TRUE"


def test_elements_beside_the_mime_content_win(server: EwsServer, alice: Account) -> None:
    # Subject and LegacyFreeBusyStatus sent as elements override SUMMARY and TRANSP.
    extra = ("<t:Subject>From the element</t:Subject>"
             "<t:LegacyFreeBusyStatus>OOF</t:LegacyFreeBusyStatus>")
    item = alice.calendar.get(id=created_id(create_with_mime(server, _crlf(ALL_DAY),
                                                             extra=extra)))
    assert (item.subject, item.legacy_free_busy_status) == ("From the element", "OOF")
    assert item.is_all_day  # what the elements do not say still comes from the iCalendar


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("this is !! not base64", "ErrorMimeContentInvalidBase64String"),
        (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "ErrorMimeContentConversionFailed"),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:x\r\nRRULE:FREQ=SECONDLY\r\n"
         b"DTSTART:20270101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
         "ErrorMimeContentConversionFailed"),
    ],
    ids=["not-base64", "no-event", "no-ews-pattern"],
)
def test_unconvertible_content_is_an_error_and_nothing_is_stored(
        server: EwsServer, alice: Account, content: bytes | str, code: str) -> None:
    message = create_with_mime(server, content)
    assert message.get("ResponseClass") == "Error"
    assert message.findtext("m:ResponseCode", namespaces=NS) == code
    assert list(alice.calendar.all()) == []


# --- reading MimeContent -------------------------------------------------------------------


def test_exchangelib_reads_mime_content_of_an_item_it_created(alice: Account) -> None:
    # exchangelib asks for item:MimeContent among the AdditionalProperties.
    item = CalendarItem(account=alice, folder=alice.calendar, subject="Lunch",
                        start=EWSDateTime(2027, 5, 3, 12, tzinfo=BERLIN),
                        end=EWSDateTime(2027, 5, 3, 13, tzinfo=BERLIN))
    item.save()
    [fetched] = list(alice.fetch(ids=[item], only_fields=["mime_content"]))
    event = icalendar.Calendar.from_ical(fetched.mime_content).walk("VEVENT")[0]
    assert str(event["SUMMARY"]) == "Lunch"
    assert event["DTSTART"].params["TZID"] == "W. Europe Standard Time"
    assert event.decoded("DTSTART").astimezone(dt.UTC) == dt.datetime(2027, 5, 3, 10,
                                                                       tzinfo=dt.UTC)
    assert event["X-MICROSOFT-CDO-INSTTYPE"] == "0"


def test_mime_content_of_an_occurrence_and_of_an_exception(server: EwsServer) -> None:
    # GetItem of one occurrence (OccurrenceItemId, as DavMail asks) returns that instance:
    # RECURRENCE-ID, no RRULE, X-MICROSOFT-CDO-INSTTYPE 2 (3 for an exception).
    master_id = created_id(create_with_mime(server, _crlf(SERIES)))
    cases = [(1, "2", "20270104T090000", "Weekly planning"),
             (3, "3", "20270118T090000", "Weekly planning (afternoon)")]
    for index, kind, original, summary in cases:
        data = get_mime(server, f'<t:OccurrenceItemId RecurringMasterId="{master_id}"'
                                f' InstanceIndex="{index}"/>')
        [event] = icalendar.Calendar.from_ical(data).walk("VEVENT")
        assert "RRULE" not in event
        assert event["X-MICROSOFT-CDO-INSTTYPE"] == kind
        assert event["RECURRENCE-ID"].to_ical().decode() == original
        assert str(event["SUMMARY"]) == summary


def test_mime_content_is_only_sent_when_asked_for(server: EwsServer) -> None:
    item_id = created_id(create_with_mime(server, _crlf(ALL_DAY)))
    body = soap("<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape>"
                "</m:ItemShape><m:ItemIds>"
                f'<t:ItemId Id="{item_id}"/></m:ItemIds></m:GetItem>')
    _, _, answer = raw_post(server.url, body)
    assert b"Offsite" in answer and not re.search(rb"<t:MimeContent", answer)


def test_all_day_series_with_date_exclusions_and_overrides(server: EwsServer,
                                                           alice: Account) -> None:
    # An all-day daily series: EXDATE and RECURRENCE-ID are dates, matched to occurrences
    # by their day in the item's zone.
    sent = _crlf("""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:days
SUMMARY:Conference
DTSTART;VALUE=DATE:20270301
DTEND;VALUE=DATE:20270302
RRULE:FREQ=DAILY;COUNT=4
EXDATE;VALUE=DATE:20270302
END:VEVENT
BEGIN:VEVENT
UID:days
RECURRENCE-ID;VALUE=DATE:20270303
SUMMARY:Conference (remote day)
DTSTART;VALUE=DATE:20270303
DTEND;VALUE=DATE:20270304
END:VEVENT
END:VCALENDAR
""")
    item_id = created_id(create_with_mime(server, sent, extra="",
                                          zone="W. Europe Standard Time"))
    view = list(alice.calendar.view(start=EWSDateTime(2027, 2, 27, tzinfo=UTC),
                                    end=EWSDateTime(2027, 3, 10, tzinfo=UTC)))
    assert [(o.start, o.subject) for o in view] == [
        (EWSDate(2027, 3, 1), "Conference"), (EWSDate(2027, 3, 3), "Conference (remote day)"),
        (EWSDate(2027, 3, 4), "Conference")]
    assert digest(get_mime(server, f'<t:ItemId Id="{item_id}"/>')) == digest(sent)


def test_a_date_exdate_drops_that_days_occurrence_of_a_timed_series(
        server: EwsServer, alice: Account) -> None:
    # EXDATE;VALUE=DATE on a timed series (some clients write it so): that day's goes.
    sent = _crlf("""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:timed
SUMMARY:Stand-up
DTSTART;TZID=W. Europe Standard Time:20270301T093000
DTEND;TZID=W. Europe Standard Time:20270301T094500
RRULE:FREQ=DAILY;COUNT=3
EXDATE;VALUE=DATE:20270302
END:VEVENT
END:VCALENDAR
""")
    created_id(create_with_mime(server, sent, extra=""))
    starts = [o.start.astimezone(BERLIN) for o in alice.calendar.view(
        start=EWSDateTime(2027, 2, 27, tzinfo=UTC), end=EWSDateTime(2027, 3, 10, tzinfo=UTC))]
    assert [(s.day, s.hour, s.minute) for s in starts] == [(1, 9, 30), (3, 9, 30)]
