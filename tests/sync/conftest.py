"""Both stand-ins and an exchangelib mailbox for the sync tests, set up once here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials, EWSTimeZone
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version
from google.oauth2.credentials import Credentials as GoogleCredentials
from googleapiclient.discovery import build

from emulators.ews import EwsServer, start_server
from emulators.google.server import GoogleCalendarServer

ALICE = "alice@example.com"
BOB = "bob@example.com"
PASSWORDS = {ALICE: "alice-secret", BOB: "bob-secret"}
BERLIN = EWSTimeZone("Europe/Berlin")


@pytest.fixture(autouse=True)
def _stand_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback stays direct (exchangelib and httplib2 follow HTTP(S)_PROXY), and the
    config written by tests.addon.conftest.write_config finds the EWS passwords."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CALSYNC_TEST_ALICE_PASSWORD", PASSWORDS[ALICE])
    monkeypatch.setenv("CALSYNC_TEST_BOB_PASSWORD", PASSWORDS[BOB])


@pytest.fixture
def ews() -> Iterator[EwsServer]:
    server = start_server(users=PASSWORDS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(port=0, users=tuple(PASSWORDS)) as server:
        yield server


def ews_account(url: str, address: str = ALICE, **options: Any) -> Account:
    """The user's mailbox through the unmodified exchangelib: Basic auth, no
    autodiscover, Exchange 2016, fail fast (exchangelib would retry for minutes)."""
    return Account(
        address,
        config=Configuration(
            service_endpoint=url,
            credentials=Credentials(address, PASSWORDS[address]),
            auth_type=BASIC,
            version=Version(build=EXCHANGE_2016),
            retry_policy=FailFast(),
        ),
        autodiscover=False,
        access_type=DELEGATE,
        **options,
    )


def calendar_service(api_endpoint: str, user: str = ALICE) -> Any:
    """google-api-python-client's Calendar service on the Google stand-in, as the user (the
    stand-in's token for a user is the address)."""
    return build(
        "calendar",
        "v3",
        credentials=GoogleCredentials(token=user),
        static_discovery=True,
        client_options={"api_endpoint": api_endpoint},
    )
