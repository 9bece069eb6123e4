"""Fixtures for the EWS stand-in's contract suite: a fresh server per test, and real
exchangelib Accounts pointed at it (Basic auth, no autodiscover, Exchange 2016)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from exchangelib import BASIC, DELEGATE, IMPERSONATION, Account, Configuration, Credentials
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version

from emulators.ews import EwsServer, start_server

USERS = {"alice@example.com": "alice-secret", "bob@example.com": "bob-secret"}
SERVICE = {"svc@example.com": "svc-secret"}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # exchangelib (through requests) follows HTTP(S)_PROXY: keep loopback direct.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[EwsServer]:
    srv = start_server(users=USERS, impersonators=SERVICE)
    try:
        yield srv
    finally:
        srv.stop()


def make_account(
    url: str,
    address: str,
    password: str,
    *,
    username: str | None = None,
    access_type: str = DELEGATE,
    fail_fast: bool = True,
) -> Account:
    config = Configuration(
        service_endpoint=url,
        credentials=Credentials(username or address, password),
        auth_type=BASIC,
        version=Version(build=EXCHANGE_2016),
        # Fail fast: exchangelib would otherwise retry 401s and faults for minutes.
        retry_policy=FailFast() if fail_fast else None,
    )
    return Account(address, config=config, autodiscover=False, access_type=access_type)


AccountFactory = Callable[..., Account]


@pytest.fixture
def account_for(server: EwsServer) -> AccountFactory:
    def make(address: str = "alice@example.com", **kwargs: object) -> Account:
        password = USERS.get(address) or SERVICE[address]
        return make_account(server.url, address, password, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def alice(account_for: AccountFactory) -> Account:
    return account_for("alice@example.com")


@pytest.fixture
def bob(account_for: AccountFactory) -> Account:
    return account_for("bob@example.com")


@pytest.fixture
def impersonating(server: EwsServer) -> Callable[[str], Account]:
    def make(address: str) -> Account:
        return make_account(server.url, address, SERVICE["svc@example.com"],
                            username="svc@example.com", access_type=IMPERSONATION)

    return make

