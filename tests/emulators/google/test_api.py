"""Routing and the admin endpoints (everything under /_admin, a prefix no Google path uses)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from emulators.google import GoogleCalendarServer
from tests.emulators.google.conftest import (
    ALICE,
    admin,
    credentials,
    fixture_error,
    service,
    timed_event,
)


def test_admin_creates_users_with_the_documented_tokens(server: GoogleCalendarServer) -> None:
    admin(server, "/users", {"email": "carol@example.com", "timeZone": "Europe/Paris"})
    carol = service(server, credentials(server, "carol@example.com"))
    entry = carol.calendarList().list().execute()["items"][0]
    assert (entry["id"], entry["timeZone"]) == ("carol@example.com", "Europe/Paris")


def test_admin_lists_recorded_calls_without_tokens(calendar: Any,
                                                   server: GoogleCalendarServer) -> None:
    created = calendar.events().insert(calendarId="primary", body=timed_event(),
                                       sendUpdates="none").execute()
    calendar.events().delete(calendarId="primary", eventId=created["id"],
                             sendNotifications=False).execute()
    _, calls = admin(server, "/calls", method="GET")
    assert calls == [
        {"method": "insert", "user": ALICE, "calendarId": ALICE, "eventId": created["id"],
         "sendUpdates": "none"},
        # The deprecated sendNotifications=false is the same as sendUpdates=none.
        {"method": "delete", "user": ALICE, "calendarId": ALICE, "eventId": created["id"],
         "sendUpdates": "none"},
    ]


def test_unknown_paths_are_404_and_wrong_verbs_405(calendar: Any,
                                                   server: GoogleCalendarServer) -> None:
    response, content = calendar._http.request(f"{server.url}/calendar/v3/nowhere")
    assert response.status == 404 and json.loads(content) == fixture_error("404_notFound")
    response, _ = calendar._http.request(f"{server.url}/calendar/v3/users/me/calendarList",
                                         "DELETE")
    assert response.status == 405
    with pytest.raises(urllib.error.HTTPError) as caught:
        admin(server, "/nothing-here", method="GET")
    assert caught.value.code == 404


def test_token_endpoint_speaks_oauth_errors(server: GoogleCalendarServer) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{server.token_uri}", data=b"grant_type=password",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=10)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"] == "unsupported_grant_type"
