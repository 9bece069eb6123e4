"""The whole chain, as deployed: exchangelib -> mitmdump (with the addon, TLS both ways)
-> the EWS stand-in over HTTPS; the addon's worker -> the Google stand-in.

Fixtures start every process and server and always stop them (finalizers run on failure
too); the mitmdump log is printed when a test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from exchangelib import Account
from exchangelib.protocol import BaseProtocol

from emulators.ews import EwsServer, start_server
from emulators.google.server import GoogleCalendarServer
from tests.addon.conftest import token_file
from tests.e2e.clients import Route, account
from tests.e2e.processes import Mitmdump

PASSWORD = "secret"
USERS = ("alice@example.com", "bob@example.com")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests and httplib2 follow HTTP(S)_PROXY: only the routes set here may proxy.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def ews(tmp_path: Path) -> Iterator[EwsServer]:
    server = start_server(users={u: PASSWORD for u in USERS}, tls_dir=tmp_path / "ews-tls")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(port=0, users=USERS) as server:
        yield server


def write_config(directory: Path, google: GoogleCalendarServer, ews: EwsServer) -> Path:
    """calsync.toml for the stand-ins. Retries come quickly and give up only after a
    minute, so an outage of a few seconds is waited out, not quarantined."""
    tokens = directory / "tokens"
    tokens.mkdir(exist_ok=True)
    lines = [
        "[store]",
        f'path = "{directory / "calsync.db"}"',
        "[google]",
        f'api_endpoint = "{google.api_endpoint}"',
        f'token_uri = "{google.token_uri}"',
        "[exchange]",
        f'ews_url = "{ews.url}"',
        f'ca_file = "{ews.ca_path}"',
        "[outbox]",
        "max_attempts = 200",
        "backoff_base_s = 0.1",
        "backoff_max_s = 0.4",
    ]
    for user in USERS:
        lines += [
            "[[users]]",
            f'mailbox = "{user}"',
            f'google_token_file = "{token_file(tokens, google, user)}"',
            f'exchange_password_env = "{password_env(user)}"',
        ]
    path = directory / "calsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def password_env(user: str) -> str:
    return f"CALSYNC_E2E_{user.split('@')[0].upper()}_PASSWORD"


@pytest.fixture
def config(tmp_path: Path, google: GoogleCalendarServer, ews: EwsServer) -> Path:
    return write_config(tmp_path, google, ews)


@pytest.fixture
def proxy(
    tmp_path: Path, config: Path, ews: EwsServer, request: pytest.FixtureRequest
) -> Iterator[Mitmdump]:
    process = Mitmdump(
        tmp_path,
        options={
            "calsync_config": str(config),
            "ssl_verify_upstream_trusted_ca": str(ews.ca_path),
        },
        env={password_env(u): PASSWORD for u in USERS},
    )
    try:
        yield process.start()
    finally:
        process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(process.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def route(ews: EwsServer, proxy: Mitmdump, monkeypatch: pytest.MonkeyPatch) -> Route:
    assert ews.ca_path is not None
    route = Route(direct_ca=ews.ca_path, proxy_url=proxy.proxy_url, proxy_ca=proxy.ca_path)
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", route.adapter())
    return route


@pytest.fixture
def alice(ews: EwsServer, route: Route) -> Iterator[Account]:
    client = account(ews.url, "alice@example.com", PASSWORD)
    try:
        yield client
    finally:
        client.protocol.close()
