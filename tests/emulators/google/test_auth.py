"""Bearer tokens, 401s and the OAuth refresh path of google-auth against POST /token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from emulators.google import GoogleCalendarServer
from tests.emulators.google.conftest import (
    ALICE,
    admin,
    credentials,
    error_body,
    fixture_error,
    service,
    service_without_refresh,
    timed_event,
)


def test_unknown_token_is_401_auth_error(server: GoogleCalendarServer) -> None:
    client = service_without_refresh(server, "ya29.nobody")
    with pytest.raises(HttpError) as caught:
        client.calendarList().list().execute()
    assert error_body(caught.value) == fixture_error("401_authError")
    assert "invalid_token" in caught.value.resp["www-authenticate"]


def test_missing_authorization_is_401(server: GoogleCalendarServer) -> None:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(f"{server.url}/calendar/v3/users/me/calendarList", timeout=10)
    assert caught.value.code == 401
    assert json.loads(caught.value.read()) == fixture_error("401_authError")


def test_unknown_token_is_refreshed_through_the_token_endpoint(
        server: GoogleCalendarServer) -> None:
    # Errors guide, 401: "Get a new access token using the long-lived refresh token."
    creds = credentials(server, ALICE, token="ya29.stale")
    client = service(server, creds)
    items = client.calendarList().list().execute()["items"]
    assert [i["id"] for i in items] == [ALICE]
    assert creds.token != "ya29.stale" and creds.token is not None
    assert creds.expiry is not None  # expires_in was honoured


def test_authorized_user_file_refreshes_after_admin_expiry(server: GoogleCalendarServer,
                                                          tmp_path: Path) -> None:
    token_file = tmp_path / "token.json"
    token_file.write_text(json.dumps({
        "token": ALICE, "refresh_token": f"refresh-{ALICE}", "token_uri": server.token_uri,
        "client_id": "calsync.apps.googleusercontent.com", "client_secret": "s",
        "scopes": ["https://www.googleapis.com/auth/calendar"],
    }))
    loaded = Credentials.from_authorized_user_file(str(token_file))
    # google-auth (2.62) replaces the file's token_uri with Google's own endpoint
    # ("always overrides"), so a token file alone cannot point at the stand-in:
    # `with_token_uri` is how calsync must aim the refresh here.
    assert loaded.token_uri == "https://oauth2.googleapis.com/token"
    creds = loaded.with_token_uri(server.token_uri)
    client = service(server, creds)
    client.events().insert(calendarId="primary", body=timed_event()).execute()
    # `with_token_uri` copies the credentials without the file's (absent) expiry, so the
    # stored access token is used as it is.
    assert creds.token == ALICE
    # Expire every access token the user holds (the address token included): the next
    # call gets 401, google-auth refreshes at /token and retries.
    admin(server, f"/users/{ALICE}/expireAccessTokens")
    assert client.events().list(calendarId="primary").execute()["items"]
    assert creds.token not in (None, ALICE)
    # The old address token is now refused.
    with pytest.raises(HttpError) as caught:
        service_without_refresh(server, ALICE).calendarList().list().execute()
    assert caught.value.status_code == 401


def test_a_revoked_refresh_token_fails_with_invalid_grant(server: GoogleCalendarServer) -> None:
    creds = Credentials(token="ya29.stale", refresh_token="refresh-nobody@example.com",
                        token_uri=server.token_uri, client_id="c", client_secret="s")
    with pytest.raises(RefreshError) as caught:
        service(server, creds).calendarList().list().execute()
    assert "invalid_grant" in str(caught.value)


def test_refreshed_token_expires_on_the_stand_in_clock(server: GoogleCalendarServer) -> None:
    import datetime as dt

    now = [dt.datetime(2026, 5, 1, tzinfo=dt.UTC)]
    server.state.clock = lambda: now[0]
    creds = credentials(server, ALICE, token="ya29.stale")
    client: Any = service(server, creds)
    client.calendarList().list().execute()
    refreshed = creds.token
    # Google's access tokens last an hour; past that the same token is refused with 401
    # and the client refreshes again.
    now[0] += dt.timedelta(hours=2)
    client.calendarList().list().execute()
    assert creds.token != refreshed
    with pytest.raises(HttpError) as caught:
        service_without_refresh(server, refreshed).calendarList().list().execute()
    assert caught.value.status_code == 401
