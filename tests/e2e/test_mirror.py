"""A mail client's calendar changes, through a real mitmdump with the addon, end up in
Google exactly: created, edited (subject, time, location), a weekly series, deleted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from exchangelib import Account
from exchangelib.fields import MONDAY
from exchangelib.items import SEND_ONLY_TO_ALL
from exchangelib.recurrence import Recurrence, WeeklyPattern

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from tests.e2e.clients import Route, google_events
from tests.e2e.items import at, converge, create

ALICE = "alice@example.com"


def test_calendar_changes_through_the_proxy_reach_google(
    alice: Account, route: Route, ews: EwsServer, google: GoogleCalendarServer, config: Path
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
    doomed.delete()  # DeleteItem HardDelete
    trashed.move_to_trash()  # DeleteItem MoveToDeletedItems

    expected, got, outbox = converge(
        google.api_endpoint, ALICE, config.parent / "calsync.db", [standup, retro, series]
    )
    assert got == expected
    assert outbox == {}
    events = {e["id"]: e for e in google_events(google.api_endpoint, ALICE)}
    (rule,) = events[event_id_for(series.id)]["recurrence"]
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
