"""Fixtures for the EWS stand-in's contract suite: a fresh server per test, and real
exchangelib Accounts pointed at it (Basic auth, no autodiscover, Exchange 2016)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from exchangelib import BASIC, DELEGATE, IMPERSONATION, Account, Configuration, Credentials
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version
from lxml import etree

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



def raw_post(
    url: str, body: bytes, user: str | None = "alice@example.com",
    password: str | None = "alice-secret", path: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP POST without exchangelib, for what a client library hides (status codes,
    raw faults, headers)."""
    import base64
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("POST", path or parts.path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def admin(url: str, verb: str, path: str, value: object = None) -> tuple[int, object]:
    import http.client
    import json
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    body = json.dumps(value).encode() if value is not None else None
    try:
        conn.request(verb, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def soap(operation_xml: str, header: str = "") -> bytes:
    """A request envelope as exchangelib writes one (RequestServerVersion Exchange2016)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
        ' xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        f'<s:Header><t:RequestServerVersion Version="Exchange2016"/>{header}</s:Header>'
        f"<s:Body>{operation_xml}</s:Body></s:Envelope>"
    ).encode()


GET_CALENDAR = soap(
    '<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>'
    '<m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>'
)


def davmail_soap(operation_xml: str, version: str = "Exchange2013_SP1") -> bytes:
    """A request envelope as DavMail 6 writes one (EWSMethod.generateSoapEnvelope): prefix
    soap:, no XML declaration, RequestServerVersion from the server's ServerVersionInfo
    (15.1 reads as Exchange2013_SP1), no other header."""
    return (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"'
        ' xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">'
        f'<soap:Header><t:RequestServerVersion Version="{version}"/></soap:Header>'
        f"<soap:Body>{operation_xml}</soap:Body></soap:Envelope>"
    ).encode()


def messages_of(body: bytes) -> list[etree._Element]:
    """The response messages of a (non-fault) EWS response body."""
    root = etree.fromstring(body)
    container = root.find(f".//{{{M}}}ResponseMessages")
    assert container is not None, body[:500]
    return list(container)


def code_of(message: etree._Element) -> str:
    return message.findtext(f"{{{M}}}ResponseCode") or ""


M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
