"""The clients of the end-to-end tests: exchangelib as the mail client (through the proxy
or, for checks, straight to Exchange), google-api-python-client as the reader of the
Google stand-in, and the stand-ins' admin endpoints.

exchangelib builds its own requests sessions; its documented hook for transport settings
is `BaseProtocol.HTTP_ADAPTER_CLS`. `Route` is read at every send, so one adapter class
serves a proxy that is restarted on another port (exchangelib caches protocols, and their
sessions, per endpoint and credentials).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests.adapters
from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials, EWSTimeZone
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version
from google.oauth2.credentials import Credentials as GoogleCredentials
from googleapiclient.discovery import build

T = TypeVar("T")

ZONE = EWSTimeZone("Europe/Berlin")
_SEND_OPTION = re.compile(
    rb"<m:(CreateItem|UpdateItem|DeleteItem)\b[^>]*?\b"
    rb"(SendMeetingInvitations|SendMeetingInvitationsOrCancellations|SendMeetingCancellations)"
    rb'="([^"]*)"'
)


@dataclass
class Route:
    """Where exchangelib's requests go: through `proxy_url` trusting `proxy_ca`, or (when
    `proxy_url` is None) straight to Exchange trusting `direct_ca`."""

    direct_ca: Path
    proxy_url: str | None = None
    proxy_ca: Path | None = None
    sent: list[bytes] = field(default_factory=list)  # request bodies sent through the proxy
    lock: threading.Lock = field(default_factory=threading.Lock)

    def adapter(self) -> type[requests.adapters.HTTPAdapter]:
        route = self

        class RoutedAdapter(requests.adapters.HTTPAdapter):
            def send(self, request: Any, **kwargs: Any) -> Any:
                if route.proxy_url is None:
                    kwargs["proxies"] = {}
                    kwargs["verify"] = str(route.direct_ca)
                else:
                    # requests tunnels https through an http:// proxy with CONNECT; the
                    # proxy's CA is what the TLS inside the tunnel must verify against.
                    kwargs["proxies"] = {"http": route.proxy_url, "https": route.proxy_url}
                    kwargs["verify"] = str(route.proxy_ca)
                    with route.lock:
                        route.sent.append(bytes(request.body or b""))
                return super().send(request, **kwargs)

        return RoutedAdapter

    def send_options_sent(self) -> list[dict[str, str]]:
        """The meeting-message options the client put on its requests, in order."""
        with self.lock:
            bodies = list(self.sent)
        return [
            {"operation": op.decode(), "attribute": attr.decode(), "value": value.decode()}
            for body in bodies
            for op, attr, value in _SEND_OPTION.findall(body)
        ]


def account(url: str, address: str, password: str) -> Account:
    config = Configuration(
        service_endpoint=url,
        credentials=Credentials(address, password),
        auth_type=BASIC,
        version=Version(build=EXCHANGE_2016),
        retry_policy=FailFast(),
    )
    return Account(
        primary_smtp_address=address,
        config=config,
        autodiscover=False,
        access_type=DELEGATE,
        default_timezone=ZONE,
    )


# --- Google ----------------------------------------------------------------------------------


def calendar_service(api_endpoint: str, user: str) -> Any:
    """google-api-python-client's Calendar service on the stand-in, with the user's token
    (the stand-in's token for a user is the address)."""
    return build(
        "calendar",
        "v3",
        credentials=GoogleCredentials(token=user),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": api_endpoint},
    )


def google_events(api_endpoint: str, user: str) -> list[dict[str, Any]]:
    """Every event in the user's primary calendar (series as masters), through the real
    client."""
    service = calendar_service(api_endpoint, user)
    items: list[dict[str, Any]] = []
    token = None
    while True:
        page = service.events().list(calendarId="primary", pageToken=token).execute()
        items += page.get("items", [])
        token = page.get("nextPageToken")
        if not token:
            return items


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = reply.read()
    return json.loads(body) if body else None


def send_json(url: str, method: str, value: Any = None) -> Any:
    request = urllib.request.Request(
        url,
        data=None if value is None else json.dumps(value).encode(),
        headers={"content-type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        body = reply.read()
    return json.loads(body) if body else None


# --- the addon's state, read from outside ----------------------------------------------------


def outbox_counts(store_path: Path) -> dict[str, int]:
    """Outbox rows by state, read-only (WAL lets a reader in beside the running proxy)."""
    if not store_path.exists():
        return {}
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
    except sqlite3.OperationalError:  # no table yet
        return {}
    finally:
        conn.close()
    return {state: count for state, count in rows}


def outbox_attempts(store_path: Path) -> int:
    """The most attempts any pending outbox entry has had (0: none failed yet)."""
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
    try:
        (value,) = conn.execute(
            "SELECT COALESCE(MAX(attempts), 0) FROM outbox WHERE state = 'pending'"
        ).fetchone()
    finally:
        conn.close()
    return int(value)


def wait_for(read: Callable[[], T], done: Callable[[T], bool], *, timeout: float, what: str) -> T:
    """Read until `done(value)` or `timeout` seconds passed; the last value either way, so
    the caller's assertions say what differs."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    if not done(value):
        print(f"gave up waiting for {what} after {timeout} s")
    return value
