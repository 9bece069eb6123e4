"""DavMail, unmodified (the Debian package, EWS mode, server mode, headless), as the mail
client: driven over CalDAV by the `caldav` library, it talks EWS through a real
`mitmdump -s addon/calsync.py` to the EWS stand-in; every step is checked in the Google
stand-in.

DavMail is started once for the module (a JVM); each test makes its own events. How
DavMail turns CalDAV into EWS (DavMail 6.0.1, `EwsExchangeSession`):
- PUT of a new event: CreateItem whose content is the iCalendar as MimeContent plus
  extended properties (no Subject/Start/End elements); an event with attendees is a
  meeting request (SendToAllAndSaveCopy).
- PUT of an existing event: UpdateItem of the master's fields; then, per EXDATE, GetItem
  of OccurrenceItemIds until the occurrence is found and DeleteItem (HardDelete) of its own
  ItemId; per RECURRENCE-ID, the same search and UpdateItem of the occurrence's own ItemId.
- DELETE: DeleteItem MoveToDeletedItems (HardDelete only in another user's calendar); a
  meeting its user organizes, with attendees, is cancelled instead (CreateItem
  CancelCalendarItem).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import icalendar
import pytest
from caldav.calendarobjectresource import Event
from caldav.collection import Calendar
from caldav.davclient import DAVClient

from tests.e2e.conftest import PASSWORD, Chain
from tests.e2e.davmail import DavMail, missing
from tests.e2e.steps import (
    ALICE,
    Google,
    berlin,
    client_missing,
    expect,
    weekly,
)

MISSING = client_missing(missing())
pytestmark = pytest.mark.usefixtures("ews_operations")

BOB = "bob@example.com"
CAROL = "carol@example.org"


@pytest.fixture(scope="module")
def davmail(chain: Chain, request: pytest.FixtureRequest) -> Iterator[DavMail]:
    if MISSING is not None:
        pytest.fail(MISSING)
    assert chain.proxy.port is not None
    server = DavMail(
        chain.workdir,
        ews_url=chain.ews.url,
        proxy_port=chain.proxy.port,
        proxy_ca=chain.proxy.ca_path,
    )
    failed_before = request.session.testsfailed
    try:
        yield server.start()
    finally:
        server.stop()
        if request.session.testsfailed > failed_before:
            print("--- davmail.log ---\n" + server.log()[-6000:])


@pytest.fixture(scope="module")
def calendar(davmail: DavMail) -> Calendar:
    client = DAVClient(url=davmail.url, username=ALICE, password=PASSWORD)
    return Calendar(client=client, url=davmail.calendar_url(ALICE))


# --- iCalendar as a CalDAV client writes it --------------------------------------------------


def vevent(
    uid: str,
    summary: str,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    **properties: Any,
) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", uid)
    event.add("dtstamp", dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    event.add("summary", summary)
    event.add("dtstart", start)
    event.add("dtend", end)
    for name, value in properties.items():
        if isinstance(value, list) and name != "rrule":
            for one in value:
                event.add(name.replace("_", "-"), one)
        else:
            event.add(name.replace("_", "-"), value)
    return event


def ical(*events: icalendar.Event) -> str:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//calsync e2e//DavMail suite//EN")
    cal.add("version", "2.0")
    for event in events:
        cal.add_component(event)
    cal.add_missing_timezones()
    return str(cal.to_ical().decode())


def put(calendar: Calendar, *events: icalendar.Event) -> Event:
    """PUT the events (a master and its overrides share one resource) as one resource."""
    event = calendar.save_event(ical(*events))
    assert isinstance(event, Event)  # the synchronous client
    return event


def update(event: Event, *events: icalendar.Event) -> None:
    event.data = ical(*events)
    event.save()


def attendee(address: str, role: str) -> icalendar.vCalAddress:
    value = icalendar.vCalAddress(f"mailto:{address}")
    value.params["ROLE"] = role
    value.params["PARTSTAT"] = "NEEDS-ACTION"
    return value


SERIES_RULE = {"freq": "weekly", "count": 5, "byday": "MO"}


# --- the steps -------------------------------------------------------------------------------


def test_create(calendar: Calendar, in_google: Google) -> None:
    put(calendar, vevent("dm-create", "DavMail create", berlin(2, 9), berlin(2, 9, 30)))

    want = expect("DavMail create", berlin(2, 9), berlin(2, 9, 30))
    assert in_google.wait_shape(want) == [want]


def test_update_subject_and_time(calendar: Calendar, in_google: Google) -> None:
    created = put(calendar, vevent("dm-update", "DavMail before", berlin(3, 9), berlin(3, 10)))
    before = expect("DavMail before", berlin(3, 9), berlin(3, 10))
    assert in_google.wait_shape(before) == [before]

    update(created, vevent("dm-update", "DavMail after", berlin(3, 14), berlin(3, 15, 30)))

    after = expect("DavMail after", berlin(3, 14), berlin(3, 15, 30))
    assert in_google.wait_shape(after) == [after]
    assert in_google.titled("DavMail before") == []


def test_all_day(calendar: Calendar, in_google: Google) -> None:
    put(calendar, vevent("dm-allday", "DavMail all day", dt.date(2026, 3, 5), dt.date(2026, 3, 6)))

    want = expect("DavMail all day", dt.date(2026, 3, 5), dt.date(2026, 3, 6))
    assert in_google.wait_shape(want) == [want]


def test_weekly_series(calendar: Calendar, in_google: Google) -> None:
    put(
        calendar,
        vevent("dm-series", "DavMail weekly", berlin(2, 11), berlin(2, 11, 30), rrule=SERIES_RULE),
    )

    want = expect(
        "DavMail weekly",
        berlin(2, 11),
        berlin(2, 11, 30),
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=5;BYDAY=MO"],
    )
    assert in_google.wait_shape(want) == [want]
    assert in_google.starts("DavMail weekly") == weekly(berlin(2, 11), 5)


def series(
    calendar: Calendar, in_google: Google, uid: str, summary: str, first: dt.datetime
) -> tuple[icalendar.Event, Event]:
    """A weekly series of five Mondays from `first`, checked in Google: its VEVENT and its
    CalDAV resource."""
    master = vevent(uid, summary, first, first + dt.timedelta(minutes=30), rrule=SERIES_RULE)
    created = put(calendar, master)
    assert in_google.wait_starts(summary, weekly(first, 5)) == weekly(first, 5)
    return master, created


def test_moved_occurrence(calendar: Calendar, in_google: Google) -> None:
    master, created = series(calendar, in_google, "dm-moved", "DavMail moved", berlin(2, 13))

    moved = vevent(
        "dm-moved",
        "DavMail moved",
        berlin(17, 15),
        berlin(17, 15, 30),
        recurrence_id=berlin(16, 13),
    )
    update(created, master, moved)

    want = weekly(berlin(2, 13), 5)
    want[2] = (berlin(16, 13), berlin(17, 15))
    assert in_google.wait_starts("DavMail moved", want) == want


def test_deleted_occurrence(calendar: Calendar, in_google: Google) -> None:
    master, created = series(calendar, in_google, "dm-exdate", "DavMail exdate", berlin(2, 15))

    # in UTC: DavMail 6.0.1 compares an EXDATE's text with the occurrences' UTC start and
    # ignores its TZID (a TZID=Europe/Berlin EXDATE never matches, and nothing is deleted)
    master.add("exdate", berlin(23, 15).astimezone(dt.UTC))
    update(created, master)

    want = [s for s in weekly(berlin(2, 15), 5) if s[0] != berlin(23, 15)]
    assert in_google.wait_starts("DavMail exdate", want) == want


def test_attendees(calendar: Calendar, in_google: Google) -> None:
    put(
        calendar,
        vevent(
            "dm-meeting",
            "DavMail meeting",
            berlin(4, 10),
            berlin(4, 11),
            organizer=icalendar.vCalAddress(f"mailto:{ALICE}"),
            attendee=[attendee(BOB, "REQ-PARTICIPANT"), attendee(CAROL, "OPT-PARTICIPANT")],
        ),
    )

    want = expect("DavMail meeting", berlin(4, 10), berlin(4, 11), attendees=[BOB, CAROL])
    assert in_google.wait_shape(want) == [want]


def test_delete_to_deleted_items(calendar: Calendar, in_google: Google) -> None:
    created = put(calendar, vevent("dm-delete", "DavMail delete", berlin(6, 9), berlin(6, 10)))
    assert len(in_google.wait("DavMail delete", bool, "the event to arrive")) == 1

    created.delete()  # DeleteItem MoveToDeletedItems

    assert in_google.wait_gone("DavMail delete") == []


def test_delete_meeting(calendar: Calendar, in_google: Google) -> None:
    """DavMail cancels a meeting it organizes when Exchange shows it has attendees
    (item:DisplayTo / DisplayCc in FindItem): CreateItem CancelCalendarItem. Otherwise, as
    with the stand-in while it leaves DisplayTo out, it moves the item to Deleted Items.
    Either way the event leaves Google."""
    created = put(
        calendar,
        vevent(
            "dm-cancel",
            "DavMail cancelled meeting",
            berlin(6, 14),
            berlin(6, 15),
            organizer=icalendar.vCalAddress(f"mailto:{ALICE}"),
            attendee=[attendee(BOB, "REQ-PARTICIPANT")],
        ),
    )
    assert len(in_google.wait("DavMail cancelled meeting", bool, "the meeting to arrive")) == 1

    created.delete()

    assert in_google.wait_gone("DavMail cancelled meeting") == []
