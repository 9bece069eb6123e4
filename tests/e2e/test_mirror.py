"""A mail client's calendar changes, through a real mitmdump with the addon, end up in
Google exactly: created, edited (subject, time, location), a weekly series, deleted."""

from __future__ import annotations

import datetime as dt
from typing import Any

from exchangelib import Account, CalendarItem, EWSDateTime
from exchangelib.fields import MONDAY
from exchangelib.items import SEND_ONLY_TO_ALL, SEND_TO_NONE
from exchangelib.recurrence import Recurrence, WeeklyPattern

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from tests.e2e.clients import ZONE, Route, google_events, outbox_counts, wait_for
from tests.e2e.processes import Mitmdump

ALICE = "alice@example.com"


def at(day: int, hour: int, minute: int = 0) -> EWSDateTime:
    return EWSDateTime(2026, 3, day, hour, minute, tzinfo=ZONE)


def create(
    account: Account,
    subject: str,
    start: EWSDateTime,
    minutes: int,
    send: str = SEND_TO_NONE,
    **kw: Any,
) -> Any:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=start,
        end=start + dt.timedelta(minutes=minutes),
        **kw,
    )
    item.save(send_meeting_invitations=send)
    return item


def expected_event(item: Any) -> dict[str, Any]:
    """What the Google event of `item` must say, in the terms the test compares."""
    return {
        "id": event_id_for(item.id),
        "summary": item.subject,
        "start": item.start,
        "end": item.end,
        "location": item.location,
    }


def seen(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "summary": event.get("summary"),
        "start": dt.datetime.fromisoformat(event["start"]["dateTime"]),
        "end": dt.datetime.fromisoformat(event["end"]["dateTime"]),
        "location": event.get("location"),
    }


def test_calendar_changes_through_the_proxy_reach_google(
    alice: Account,
    route: Route,
    proxy: Mitmdump,
    ews: EwsServer,
    google: GoogleCalendarServer,
    config: Any,
) -> None:
    standup = create(alice, "Standup", at(2, 9), 30, location="Room 1")
    retro = create(alice, "Retro", at(3, 14), 60, location="Room 2")
    doomed = create(alice, "Doomed", at(4, 10), 30)
    trashed = create(alice, "Trashed", at(4, 11), 30, send=SEND_ONLY_TO_ALL)
    series = create(
        alice,
        "Weekly sync",
        at(2, 11),
        30,
        recurrence=Recurrence(
            pattern=WeeklyPattern(interval=1, weekdays=[MONDAY]),
            start=dt.date(2026, 3, 2),
            number=5,
        ),
    )

    standup.subject = "Daily standup"
    standup.save(update_fields=["subject"])
    retro.start, retro.end = at(3, 16), at(3, 17)
    retro.save(update_fields=["start", "end"])
    retro.location = "Room 3"
    retro.save(update_fields=["location"])
    doomed.delete()  # HardDelete
    trashed.move_to_trash()  # DeleteItem MoveToDeletedItems

    expected = {e["id"]: e for e in map(expected_event, (standup, retro, series))}
    store = config.parent / "calsync.db"
    events, outbox = wait_for(
        lambda: (google_events(google.api_endpoint, ALICE), outbox_counts(store)),
        lambda got: {e["id"]: seen(e) for e in got[0]} == expected and not got[1],
        timeout=20,
        what="Google to show the three events and the outbox to drain",
    )
    assert outbox == {}
    assert {e["id"]: seen(e) for e in events} == expected
    by_id = {e["id"]: e for e in events}
    assert by_id[expected_event(retro)["id"]]["location"] == "Room 3"
    (rule,) = by_id[expected_event(series)["id"]]["recurrence"]
    assert rule.startswith("RRULE:FREQ=WEEKLY")
    assert "COUNT=5" in rule and "BYDAY=MO" in rule
    assert google_events(google.api_endpoint, "bob@example.com") == []

    # The sync never made Google notify anyone.
    calls = google.state.calls
    assert calls and {c.send_updates for c in calls} == {"none"}
    # The proxy passed every request unchanged: Exchange saw exactly the meeting-message
    # options the client asked for (SendToNone only where it asked for it).
    sent = route.send_options_sent()
    assert {o["value"] for o in sent} == {"SendToNone", "SendOnlyToAll"}
    received = [
        {k: r[k] for k in ("operation", "attribute", "value")} for r in ews.service.records()
    ]
    assert received == sent
