"""Each backend twice: the in-memory one (sync/backends/memory.py) and the real client
talking to its stand-in (emulators/google, emulators/ews) through the unmodified
google-api-python-client / exchangelib. The contract suite runs its expectations on both."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.backends.base import ExchangeBackend, GoogleBackend
from sync.backends.exchange import ExchangeMailbox
from sync.backends.google import GoogleCalendar
from sync.backends.memory import MemoryExchange, MemoryGoogle
from sync.config import Config, load_config
from tests.addon.conftest import token_file
from tests.sync.conftest import ALICE

KINDS = ["memory", "stand-in"]


def backend_config(
    directory: Path,
    *,
    google: GoogleCalendarServer | None = None,
    ews: EwsServer | None = None,
    password_env: str = "CALSYNC_TEST_ALICE_PASSWORD",
) -> Config:
    """calsync.toml for Alice on the stand-ins given (the EWS password comes from the
    environment tests/sync/conftest.py sets)."""
    tokens = directory / "tokens"
    tokens.mkdir(exist_ok=True)
    lines = ["[store]", f'path = "{directory / "calsync.db"}"']
    user = ["[[users]]", f'mailbox = "{ALICE}"', f'exchange_password_env = "{password_env}"']
    if google is not None:
        lines += [
            "[google]",
            f'api_endpoint = "{google.api_endpoint}"',
            f'token_uri = "{google.token_uri}"',
        ]
        user.append(f'google_token_file = "{token_file(tokens, google, ALICE)}"')
    if ews is not None:
        lines += ["[exchange]", f'ews_url = "{ews.url}"']
    path = directory / "calsync.toml"
    path.write_text("\n".join(lines + user) + "\n")
    return load_config(path)


def alice(config: Config) -> Any:
    user = config.user_named(ALICE)
    assert user is not None
    return user


def admin(base_url: str, path: str, body: Any = None, method: str = "GET") -> Any:
    """A stand-in's own control surface (faults, recorded calls), never the API."""
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request) as reply:
        text = reply.read()
    return json.loads(text) if text else None


@pytest.fixture
def google_calendar(tmp_path: Path, google: GoogleCalendarServer) -> GoogleCalendar:
    """The real client on the Google stand-in, backoff off (the schedule is not timed here)."""
    client = GoogleCalendar(*_pair(backend_config(tmp_path, google=google)))
    client.backoff_s = 0.0
    return client


@pytest.fixture
def exchange_mailbox(tmp_path: Path, ews: EwsServer) -> ExchangeMailbox:
    return ExchangeMailbox(*_pair(backend_config(tmp_path, ews=ews)))


def _pair(config: Config) -> tuple[Config, Any]:
    return config, alice(config)


@pytest.fixture(params=KINDS)
def google_backend(request: pytest.FixtureRequest) -> Iterator[GoogleBackend]:
    if request.param == "memory":
        yield MemoryGoogle(ALICE)
    else:
        yield request.getfixturevalue("google_calendar")


@pytest.fixture(params=KINDS)
def exchange_backend(request: pytest.FixtureRequest) -> Iterator[ExchangeBackend]:
    if request.param == "memory":
        yield MemoryExchange(ALICE)
    else:
        yield request.getfixturevalue("exchange_mailbox")
