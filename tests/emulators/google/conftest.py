"""Shared set-up: a stand-in per test, and real clients pointed at it.

Everything goes through the unmodified google-api-python-client and google-auth, exactly
as calsync's Google writer will: `build(..., client_options={"api_endpoint": ...})` and
`google.oauth2.credentials.Credentials` whose `token_uri` is the stand-in's `/token`.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httplib2
import pytest
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from emulators.google import GoogleCalendarServer

ALICE = "alice@example.com"
BOB = "bob@example.com"
ERRORS = Path(__file__).resolve().parents[3] / "fixtures" / "google" / "errors"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httplib2 and urllib follow HTTP(S)_PROXY; the stand-in is on loopback only.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(users=[ALICE, BOB]) as running:
        yield running


def credentials(server: GoogleCalendarServer, email: str, token: str | None = None) -> Credentials:
    return Credentials(
        token=email if token is None else token,
        refresh_token=f"refresh-{email}",
        token_uri=server.token_uri,
        client_id="calsync-tests.apps.googleusercontent.com",
        client_secret="not-a-secret",
    )


def service(server: GoogleCalendarServer, creds: Credentials) -> Any:
    return build("calendar", "v3", static_discovery=True, credentials=creds,
                 client_options={"api_endpoint": server.api_endpoint})


def service_without_refresh(server: GoogleCalendarServer, token: str) -> Any:
    """A client that shows a 401 as it comes instead of refreshing and retrying."""
    http = AuthorizedHttp(Credentials(token=token), http=httplib2.Http(),
                          refresh_status_codes=())
    return build("calendar", "v3", static_discovery=True, http=http,
                 client_options={"api_endpoint": server.api_endpoint})


@pytest.fixture
def calendar(server: GoogleCalendarServer) -> Any:
    """Alice's client."""
    return service(server, credentials(server, ALICE))


def admin(server: GoogleCalendarServer, path: str, body: Any = None,
          method: str = "POST") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.url}/_admin{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as answer:
        raw = answer.read()
        return answer.status, json.loads(raw) if raw else None


def error_body(exc: HttpError) -> Any:
    return json.loads(exc.content)


def fixture_error(name: str) -> Any:
    return json.loads((ERRORS / f"{name}.json").read_text())


def timed_event(summary: str = "Standup", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": summary,
        "start": {"dateTime": "2026-05-04T09:00:00+02:00"},
        "end": {"dateTime": "2026-05-04T09:30:00+02:00"},
    }
    body.update(extra)
    return body
