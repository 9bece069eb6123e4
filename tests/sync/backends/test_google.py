"""sync/backends/google.py beyond the contract: what only the real client can show."""

from __future__ import annotations

from emulators.google.server import GoogleCalendarServer
from sync.backends.google import GoogleCalendar
from tests.sync.backends.conftest import admin
from tests.sync.backends.test_contract import event


def test_every_write_carries_send_updates_none(
    google_calendar: GoogleCalendar, google: GoogleCalendarServer
) -> None:
    """Never an invitation: each kind of write, alone and batched, as Google saw it."""
    one = google_calendar.insert(event("One"))
    one = google_calendar.patch(one["id"], {"location": "Room"}, etag=one["etag"])
    two, three = google_calendar.insert_many([event("Two"), event("Three")])
    assert isinstance(two, dict) and isinstance(three, dict)
    google_calendar.patch_many([(two["id"], {"location": "Hall"}, two["etag"])])
    google_calendar.delete(one["id"], etag=one["etag"])
    google_calendar.delete(three["id"])
    calls = admin(google.url, "/_admin/calls")
    writes = [(c["method"], c["sendUpdates"]) for c in calls]
    assert writes == [
        ("insert", "none"),
        ("patch", "none"),
        ("insert", "none"),
        ("insert", "none"),
        ("patch", "none"),
        ("delete", "none"),
        ("delete", "none"),
    ]
