"""The worker's fast path for a CreateItem whose CalendarItem is iCalendar MimeContent only,
as DavMail sends every CalDAV PUT (sync/sources/outbox.py `_prepare`, mapping/ical.py).

Each event is created in the EWS stand-in twice by the same DavMail-shaped CreateItem. One
passes the addon (taddons, as mitmdump loads it) with no `[exchange] ews_url` configured:
the worker can only map it from the request. The other reaches the worker as after a
restart (the request bytes gone), which reads the item from Exchange. Both Google events,
and a series' instances, must be the same.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from mitmproxy.test import taddons

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.config import load_config
from sync.core.events import EWS_ID_PROPERTY
from sync.sources.outbox import Mirror
from sync.store import Store
from tests.addon.conftest import write_config
from tests.addon.test_calsync import Harness
from tests.emulators.ews.conftest import davmail_soap, raw_post
from tests.emulators.ews.services.test_mime_content import BERLIN_VTIMEZONE
from tests.sync.conftest import ALICE, PASSWORDS, calendar_service


def calendar(*lines: str, zones: str = BERLIN_VTIMEZONE) -> bytes:
    """A VCALENDAR as Thunderbird hands it to DavMail (CRLF, IANA TZIDs)."""
    text = "\n".join(
        [
            "BEGIN:VCALENDAR",
            "PRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN",
            "VERSION:2.0",
            zones.rstrip("\n"),
            *lines,
            "END:VCALENDAR",
            "",
        ]
    )
    return text.replace("\n", "\r\n").encode()


TIMED = calendar(
    "BEGIN:VEVENT",
    "UID:fast-path-timed",
    "SUMMARY:Planning",
    "DTSTART;TZID=Europe/Berlin:20270104T090000",
    "DTEND;TZID=Europe/Berlin:20270104T103000",
    "LOCATION:Room 1",
    "DESCRIPTION:Agenda:\\n1. numbers",
    "ORGANIZER;CN=Alice:mailto:alice@example.com",
    "ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED;ROLE=CHAIR:mailto:alice@example.com",
    "ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT:mailto:bob@example.com",
    "ATTENDEE;PARTSTAT=NEEDS-ACTION;ROLE=OPT-PARTICIPANT:mailto:carol@example.com",
    "CLASS:PRIVATE",
    "BEGIN:VALARM",
    "ACTION:DISPLAY",
    "TRIGGER;VALUE=DURATION:-PT15M",
    "END:VALARM",
    "END:VEVENT",
)
ALL_DAY = calendar(
    "BEGIN:VEVENT",
    "UID:fast-path-all-day",
    "SUMMARY:Offsite",
    "DTSTART;VALUE=DATE:20270301",
    "DTEND;VALUE=DATE:20270303",
    "TRANSP:TRANSPARENT",
    "END:VEVENT",
    zones="",
)
WEEKLY = calendar(
    "BEGIN:VEVENT",
    "UID:fast-path-weekly",
    "SUMMARY:Weekly sync",
    "RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=MO",
    "EXDATE;TZID=Europe/Berlin:20270111T090000,20270125T090000",
    "DTSTART;TZID=Europe/Berlin:20270104T090000",
    "DTEND;TZID=Europe/Berlin:20270104T093000",
    "END:VEVENT",
)
#: What the request alone cannot tell: an occurrence moved (what the exception keeps of its
#: master is Exchange's to say)
MOVED_OCCURRENCE = calendar(
    "BEGIN:VEVENT",
    "UID:fast-path-moved",
    "SUMMARY:Weekly sync",
    "RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO",
    "DTSTART;TZID=Europe/Berlin:20270104T090000",
    "DTEND;TZID=Europe/Berlin:20270104T093000",
    "LOCATION:Room 1",
    "END:VEVENT",
    "BEGIN:VEVENT",
    "UID:fast-path-moved",
    "RECURRENCE-ID;TZID=Europe/Berlin:20270111T090000",
    "SUMMARY:Weekly sync (afternoon)",
    "DTSTART;TZID=Europe/Berlin:20270111T150000",
    "DTEND;TZID=Europe/Berlin:20270111T153000",
    "END:VEVENT",
)


def davmail_create(ics: bytes, *, zone: str | None = "W. Europe Standard Time") -> bytes:
    """CreateItem as DavMail 6 writes a CalDAV PUT of a new event
    (EwsExchangeSession.Event.createOrUpdate): the iCalendar as MimeContent, ReminderIsSet
    false when there is no VALARM, PR_URL_COMP_NAME, the appointment state flags and
    LegacyFreeBusyStatus; TimeZoneContext with the mailbox's zone (Exchange 2010 and up)."""
    reminder = "" if b"BEGIN:VALARM" in ics else "<t:ReminderIsSet>false</t:ReminderIsSet>"
    state = "1" if b"ATTENDEE" in ics else "0"
    invitations = "SendToAllAndSaveCopy" if b"ATTENDEE" in ics else "SendToNone"
    disposition = "SendAndSaveCopy" if b"ATTENDEE" in ics else "SaveOnly"
    body = davmail_soap(
        f'<m:CreateItem MessageDisposition="{disposition}"'
        f' SendMeetingInvitations="{invitations}">'
        '<m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId>'
        "<m:Items><t:CalendarItem>"
        f"<t:MimeContent>{base64.b64encode(ics).decode()}</t:MimeContent>{reminder}"
        '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
        "<t:Value>fast-path.EML</t:Value></t:ExtendedProperty>"
        '<t:ExtendedProperty><t:ExtendedFieldURI DistinguishedPropertySetId="Appointment"'
        f' PropertyId="33303" PropertyType="Integer"/><t:Value>{state}</t:Value>'
        "</t:ExtendedProperty>"
        "<t:LegacyFreeBusyStatus>Busy</t:LegacyFreeBusyStatus>"
        "</t:CalendarItem></m:Items></m:CreateItem>"
    )
    if zone:
        context = f'<t:TimeZoneContext><t:TimeZoneDefinition Id="{zone}"/></t:TimeZoneContext>'
        body = body.replace(b"</soap:Header>", context.encode() + b"</soap:Header>")
    return body


def created(ews: EwsServer, request: bytes) -> tuple[bytes, str]:
    """Exchange's answer to the CreateItem, and the new item's id."""
    status, _, answer = raw_post(ews.url, request, ALICE, PASSWORDS[ALICE])
    assert status == 200, answer
    ns = {"t": "http://schemas.microsoft.com/exchange/services/2006/types"}
    item_id = etree.fromstring(answer).find(".//t:CalendarItem/t:ItemId", ns)
    assert item_id is not None, answer
    return answer, str(item_id.get("Id"))


#: What differs between two Google events made for two Exchange items: ids and versions.
_PER_EVENT = ("id", "etag", "htmlLink", "created", "updated", "iCalUID", "recurringEventId")


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if k not in _PER_EVENT}
    private = dict(out.get("extendedProperties", {}).get("private", {}))
    private.pop(EWS_ID_PROPERTY, None)
    if private:
        out["extendedProperties"] = {**out["extendedProperties"], "private": private}
    return out


class Paths:
    """Both stand-ins, the addon without Exchange access (the fast path can only use the
    request) and a worker whose entries carry no request (it reads from Exchange)."""

    def __init__(self, tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> None:
        self.ews = ews
        self.service = calendar_service(google.api_endpoint)
        (tmp_path / "fast").mkdir()
        (tmp_path / "full").mkdir()
        self._fast_config = write_config(tmp_path / "fast", google, users=(ALICE,))
        config = load_config(
            write_config(tmp_path / "full", google, ews_url=ews.url, users=(ALICE,))
        )
        self.full_store = Store(config.store_path)
        self.full = Mirror(config, self.full_store)

    def fast_path(self, tctx: Any, ics: bytes, **create: Any) -> str:
        harness = Harness(tctx, self._fast_config)
        request = davmail_create(ics, **create)
        answer, item_id = created(self.ews, request)
        harness.see(request, answer)
        assert harness.drain() == 1
        store = harness.addon.store
        assert store.pending() == [] and store.quarantined() == []
        return item_id

    def full_read(self, ics: bytes, **create: Any) -> str:
        _, item_id = created(self.ews, davmail_create(ics, **create))
        self.full_store.enqueue(ALICE, item_id, "upsert", now=0.0)
        asyncio.run(self.full.drain())
        assert self.full_store.pending() == [] and self.full_store.quarantined() == []
        return item_id

    def event(self, item_id: str) -> dict[str, Any]:
        found: dict[str, Any] = (
            self.service.events().get(calendarId="primary", eventId=event_id_for(item_id)).execute()
        )
        return found

    def instances(self, item_id: str) -> list[dict[str, Any]]:
        listed = (
            self.service.events()
            .instances(calendarId="primary", eventId=event_id_for(item_id), showDeleted=True)
            .execute()
        )
        return [comparable(i) for i in listed["items"]]


@pytest.fixture
def paths(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Iterator[Paths]:
    made = Paths(tmp_path, ews, google)
    try:
        yield made
    finally:
        made.full_store.close()


@pytest.mark.parametrize(
    ("ics", "expected"),
    [
        # a timed meeting in Berlin: zone, times, text, people, reminder, visibility
        (
            TIMED,
            {
                "summary": "Planning",
                "start": {"dateTime": "2027-01-04T09:00:00+01:00", "timeZone": "Europe/Berlin"},
                "attendees": 2,  # Bob and Carol: the organizer is no attendee
                "reminders": {
                    "useDefault": False,
                    "overrides": [{"method": "popup", "minutes": 15}],
                },
            },
        ),
        # all-day, two days (Google's end date is exclusive); DavMail's LegacyFreeBusyStatus
        # element wins over the iCalendar's TRANSP, as on Exchange
        (
            ALL_DAY,
            {
                "start": {"date": "2027-03-01"},
                "end": {"date": "2027-03-03"},
                "transparency": "opaque",
            },
        ),
        # a weekly series with two occurrences deleted: cancelled instances
        (
            WEEKLY,
            {
                "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=MO"],
                "cancelled": ["2027-01-11T09:00:00+01:00", "2027-01-25T09:00:00+01:00"],
            },
        ),
    ],
    ids=["timed-with-zone", "all-day", "weekly-with-exdate"],
)
def test_the_fast_path_writes_what_the_full_read_gives(
    paths: Paths, ics: bytes, expected: dict[str, Any]
) -> None:
    with taddons.context() as tctx:
        fast_id = paths.fast_path(tctx, ics)
    full_id = paths.full_read(ics)
    fast, full = paths.event(fast_id), paths.event(full_id)
    assert comparable(fast) == comparable(full)
    assert paths.instances(fast_id) == paths.instances(full_id)
    # ... and what they agree on is the event
    for key, value in expected.items():
        if key == "attendees":
            assert len(fast["attendees"]) == value
        elif key == "cancelled":
            cancelled = [
                i["originalStartTime"]["dateTime"]
                for i in paths.instances(fast_id)
                if i["status"] == "cancelled"
            ]
            assert cancelled == value
        else:
            assert fast[key] == value


@pytest.mark.parametrize(
    ("ics", "create"),
    [
        (MOVED_OCCURRENCE, {}),
        # a floating time and no TimeZoneContext: the mailbox's zone decides
        (
            calendar(
                "BEGIN:VEVENT",
                "UID:fast-path-floating",
                "SUMMARY:Floating",
                "DTSTART:20270104T090000",
                "DTEND:20270104T100000",
                "END:VEVENT",
                zones="",
            ),
            {"zone": None},
        ),
    ],
    ids=["moved-occurrence", "floating-without-context"],
)
def test_what_the_request_cannot_tell_is_read_from_exchange(
    tmp_path: Path,
    ews: EwsServer,
    google: GoogleCalendarServer,
    paths: Paths,
    ics: bytes,
    create: dict[str, Any],
) -> None:
    # the mailbox's zone, which only Exchange knows, reads floating times
    ews.store.mailbox(ALICE).time_zone = "W. Europe Standard Time"  # type: ignore[union-attr]
    # the same addon, now with Exchange access: it falls back to the full read
    config = write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,))
    with taddons.context() as tctx:
        harness = Harness(tctx, config)
        request = davmail_create(ics, **create)
        answer, fast_id = created(ews, request)
        harness.see(request, answer)
        assert harness.drain() == 1
    full_id = paths.full_read(ics, **create)
    fast = paths.event(fast_id)
    assert comparable(fast) == comparable(paths.event(full_id))
    assert paths.instances(fast_id) == paths.instances(full_id)
    assert fast["start"]["dateTime"] == "2027-01-04T09:00:00+01:00"
    if ics is MOVED_OCCURRENCE:
        moved = [i for i in paths.instances(fast_id) if "afternoon" in i.get("summary", "")]
        assert [i["start"]["dateTime"] for i in moved] == ["2027-01-11T15:00:00+01:00"]
