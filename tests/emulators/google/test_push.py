"""events.watch and channels.stop with a real webhook receiver on loopback (push guide)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from emulators.google import GoogleCalendarServer
from tests.emulators.google.conftest import ALICE, timed_event

Received = queue.Queue[dict[str, str]]


@pytest.fixture
def webhook() -> Iterator[tuple[str, Received]]:
    received: Received = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.put({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/notify", received
    httpd.shutdown()
    httpd.server_close()


def _next(received: Received) -> dict[str, str]:
    # A bound on waiting, not an assertion about speed.
    return received.get(timeout=10)


def test_watch_sends_sync_then_exists_per_change(calendar: Any, server: GoogleCalendarServer,
                                                 webhook: tuple[str, Received]) -> None:
    address, received = webhook
    channel = calendar.events().watch(calendarId="primary", body={
        "id": "calsync-channel-1", "type": "web_hook", "address": address,
        "token": "opaque-client-token"}).execute()
    assert channel["kind"] == "api#channel" and channel["id"] == "calsync-channel-1"
    assert channel["resourceUri"].startswith(f"{server.url}/calendar/v3/calendars/")
    # "the Google Calendar API sends a sync message to indicate that notifications are
    # starting": resource state sync, message number 1.
    sync = _next(received)
    assert sync["x-goog-resource-state"] == "sync"
    assert sync["x-goog-message-number"] == "1"
    assert sync["x-goog-channel-id"] == "calsync-channel-1"
    assert sync["x-goog-channel-token"] == "opaque-client-token"
    assert sync["x-goog-resource-id"] == channel["resourceId"]
    assert sync["x-goog-resource-uri"] == channel["resourceUri"]
    assert sync["x-goog-channel-expiration"].endswith("GMT")

    created = calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    calendar.events().delete(calendarId="primary", eventId=created["id"]).execute()
    changes = [_next(received), _next(received)]
    assert [c["x-goog-resource-state"] for c in changes] == ["exists", "exists"]
    assert [c["x-goog-message-number"] for c in changes] == ["2", "3"]


def test_channels_stop_ends_notifications(calendar: Any, server: GoogleCalendarServer,
                                          webhook: tuple[str, Received]) -> None:
    address, received = webhook
    channel = calendar.events().watch(calendarId="primary", body={
        "id": "calsync-channel-2", "type": "web_hook", "address": address}).execute()
    assert _next(received)["x-goog-resource-state"] == "sync"
    calendar.channels().stop(body={"id": channel["id"],
                                   "resourceId": channel["resourceId"]}).execute()
    calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    # A second watch on the same calendar proves delivery still works, and its sync is the
    # next thing the receiver sees: nothing came for the stopped channel in between.
    calendar.events().watch(calendarId="primary", body={
        "id": "calsync-channel-3", "type": "web_hook", "address": address}).execute()
    following = _next(received)
    assert (following["x-goog-channel-id"], following["x-goog-resource-state"]) == (
        "calsync-channel-3", "sync")
    with pytest.raises(HttpError) as caught:
        calendar.channels().stop(body={"id": channel["id"],
                                       "resourceId": channel["resourceId"]}).execute()
    assert caught.value.status_code == 404


def test_other_users_changes_do_not_notify(calendar: Any, server: GoogleCalendarServer,
                                           webhook: tuple[str, Received]) -> None:
    from tests.emulators.google.conftest import BOB, credentials, service

    address, received = webhook
    calendar.events().watch(calendarId=ALICE, body={
        "id": "alice-only", "type": "web_hook", "address": address}).execute()
    assert _next(received)["x-goog-resource-state"] == "sync"
    service(server, credentials(server, BOB)).events().insert(
        calendarId="primary", body=timed_event()).execute()
    # Notifications go out in order on one queue: a new channel's sync is a barrier behind
    # anything Bob's change could have queued.
    calendar.events().watch(calendarId=ALICE, body={
        "id": "barrier", "type": "web_hook", "address": address}).execute()
    assert _next(received)["x-goog-channel-id"] == "barrier"
    calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    alice_change = sorted((m["x-goog-channel-id"], m["x-goog-message-number"])
                          for m in (_next(received), _next(received)))
    assert alice_change == [("alice-only", "2"), ("barrier", "2")]


def test_watch_refuses_non_loopback_addresses(calendar: Any) -> None:
    with pytest.raises(HttpError) as caught:
        calendar.events().watch(calendarId="primary", body={
            "id": "c", "type": "web_hook", "address": "https://example.com/hook"}).execute()
    assert caught.value.status_code == 400
