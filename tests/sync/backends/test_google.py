"""sync/backends/google.py beyond the contract: what only the real client can show."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from emulators.google.server import GoogleCalendarServer
from sync.backends.base import GoogleError
from sync.backends.google import GoogleCalendar
from tests.sync.backends.conftest import admin
from tests.sync.backends.test_contract import event
from tests.sync.conftest import ALICE


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


# --- the fast path's calls, straight over a kept-alive connection ------------------------------


def test_an_expired_token_is_refreshed_sent_again_and_saved(
    google_calendar: GoogleCalendar, google: GoogleCalendarServer
) -> None:
    """A 401 on a straight call: the token refreshed once, the call sent again, the new
    token written back to its file (owner only)."""
    created = google_calendar.insert(event("Before"))  # the connection is open and kept
    token_file = google_calendar.user.google_token_file
    assert token_file is not None
    before = json.loads(Path(token_file).read_text())["token"]
    admin(google.url, f"/_admin/users/{quote(ALICE)}/expireAccessTokens", method="POST")
    patched = google_calendar.patch(created["id"], {"location": "Room"}, etag=created["etag"])
    assert patched["location"] == "Room"
    saved = Path(token_file)
    assert json.loads(saved.read_text())["token"] != before
    assert saved.stat().st_mode & 0o777 == 0o600
    assert google_calendar.get(created["id"]) == patched  # with the new token, no refresh


@pytest.mark.parametrize(
    ("drops", "answered"),
    [
        (1, True),  # a kept-alive connection the server closed: opened again, sent again
        (2, False),  # dropped again: no answer, GoogleError(0), retryable
    ],
)
def test_a_dropped_connection_is_sent_again_once(
    google_calendar: GoogleCalendar, google: GoogleCalendarServer, drops: int, answered: bool
) -> None:
    created = google_calendar.insert(event("Kept"))
    admin(google.url, "/_admin/faults", {"kind": "outage", "count": drops}, "POST")
    if answered:
        assert google_calendar.get(created["id"]) == created
    else:
        with pytest.raises(GoogleError) as caught:
            google_calendar.get(created["id"])
        assert (caught.value.status, caught.value.retryable) == (0, True)
    assert admin(google.url, "/_admin/faults") == []  # every drop asked for was met
    assert google_calendar.get(created["id"]) == created  # the next call goes on
