"""NTLM on the EWS stand-in: exchangelib's NTLM (requests_ntlm) end to end, and the HTTP
exchange by hand (MS-NTHT: 401 offer, NEGOTIATE -> CHALLENGE -> AUTHENTICATE, then the
connection stays authenticated)."""

from __future__ import annotations

import base64
import http.client
import os
import urllib.parse
from collections.abc import Iterator

import pytest
import spnego
from exchangelib import IMPERSONATION, NTLM, Account, CalendarItem, Configuration, Credentials
from exchangelib.errors import UnauthorizedError
from exchangelib.ewsdatetime import EWSDateTime, EWSTimeZone
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version

from emulators.ews import EwsServer, start_server
from tests.emulators.ews.conftest import GET_CALENDAR, SERVICE, USERS

UTC = EWSTimeZone("UTC")


@pytest.fixture
def ntlm_server() -> Iterator[EwsServer]:
    srv = start_server(users=USERS, impersonators=SERVICE, ntlm=True)
    try:
        yield srv
    finally:
        srv.stop()


def _ntlm_account(url: str, address: str, username: str, password: str,
                  access_type: str = "delegate") -> Account:
    config = Configuration(service_endpoint=url, credentials=Credentials(username, password),
                           auth_type=NTLM, version=Version(build=EXCHANGE_2016),
                           retry_policy=FailFast())
    return Account(address, config=config, autodiscover=False, access_type=access_type)


@pytest.mark.parametrize("username", ["alice@example.com", "EXAMPLE\\alice"],
                         ids=["upn", "down-level"])
def test_exchangelib_ntlm_round_trip(ntlm_server: EwsServer, username: str) -> None:
    # An account logs on as user@domain or DOMAIN\user; both are the same mailbox.
    account = _ntlm_account(ntlm_server.url, "alice@example.com", username, "alice-secret")
    start = EWSDateTime(2026, 5, 4, 9, 0, tzinfo=UTC)
    item = CalendarItem(account=account, folder=account.calendar, subject="Over NTLM",
                        start=start, end=start.replace(hour=10))
    item.save()
    assert account.calendar.get(id=item.id).subject == "Over NTLM"
    assert os.environ.get("NTLM_USER_FILE") is None  # only set while pyspnego reads it


def test_exchangelib_ntlm_wrong_password_is_unauthorized(ntlm_server: EwsServer) -> None:
    account = _ntlm_account(ntlm_server.url, "alice@example.com", "alice@example.com", "nope")
    with pytest.raises(UnauthorizedError):
        account.calendar.refresh()


def test_ntlm_service_account_impersonates(ntlm_server: EwsServer) -> None:
    # ExchangeImpersonation works the same whichever scheme authenticated the caller.
    account = _ntlm_account(ntlm_server.url, "bob@example.com", "svc@example.com",
                            "svc-secret", access_type=IMPERSONATION)
    start = EWSDateTime(2026, 5, 4, 9, 0, tzinfo=UTC)
    CalendarItem(account=account, folder=account.calendar, subject="For Bob",
                 start=start, end=start.replace(hour=10)).save()
    assert [i.subject for i in account.calendar.all()] == ["For Bob"]


def _post(conn: http.client.HTTPConnection, path: str,
          authorization: str | None = None) -> http.client.HTTPResponse:
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if authorization is not None:
        headers["Authorization"] = authorization
    conn.request("POST", path, body=GET_CALENDAR, headers=headers)
    response = conn.getresponse()
    response.read()
    return response


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10), parts.path


def test_handshake_authenticates_the_connection(ntlm_server: EwsServer) -> None:
    conn, path = _connection(ntlm_server.url)
    try:
        offer = _post(conn, path)
        assert offer.status == 401
        assert offer.headers.get_all("WWW-Authenticate") == ["NTLM", 'Basic realm="127.0.0.1"']

        client = spnego.client("alice@example.com", "alice-secret", protocol="ntlm",
                               options=spnego.NegotiateOptions.use_ntlm)
        negotiate = base64.b64encode(client.step() or b"").decode()
        challenge = _post(conn, path, f"NTLM {negotiate}")
        assert challenge.status == 401
        (value,) = challenge.headers.get_all("WWW-Authenticate")
        scheme, _, token = value.partition(" ")
        assert scheme == "NTLM" and token
        authenticate = client.step(base64.b64decode(token))
        assert _post(conn, path, f"NTLM {base64.b64encode(authenticate or b'').decode()}"
                     ).status == 200
        # the connection is authenticated now: no Authorization header needed on it
        assert _post(conn, path).status == 200
        assert _post(conn, path).status == 200
    finally:
        conn.close()
    # ... but only that connection
    other, _ = _connection(ntlm_server.url)
    try:
        assert _post(other, path).status == 401
    finally:
        other.close()


def test_authenticate_without_a_challenge_is_refused(ntlm_server: EwsServer) -> None:
    # An AUTHENTICATE_MESSAGE must answer this connection's CHALLENGE_MESSAGE.
    client = spnego.client("alice@example.com", "alice-secret", protocol="ntlm",
                           options=spnego.NegotiateOptions.use_ntlm)
    client.step()
    first, path = _connection(ntlm_server.url)
    try:
        negotiate = spnego.client("alice@example.com", "alice-secret", protocol="ntlm",
                                  options=spnego.NegotiateOptions.use_ntlm).step() or b""
        challenge = _post(first, path, f"NTLM {base64.b64encode(negotiate).decode()}")
        token = challenge.headers["WWW-Authenticate"].partition(" ")[2]
    finally:
        first.close()
    authenticate = client.step(base64.b64decode(token)) or b""
    second, _ = _connection(ntlm_server.url)
    try:
        answer = _post(second, path, f"NTLM {base64.b64encode(authenticate).decode()}")
        assert answer.status == 401
        assert _post(second, path).status == 401
    finally:
        second.close()


@pytest.mark.parametrize("token", ["not base64!", base64.b64encode(b"NTLMSSP\x00junk").decode(),
                                   base64.b64encode(b"\x00" * 40).decode()],
                         ids=["not-base64", "truncated", "not-ntlm"])
def test_garbage_tokens_get_the_offer_again(ntlm_server: EwsServer, token: str) -> None:
    conn, path = _connection(ntlm_server.url)
    try:
        answer = _post(conn, path, f"NTLM {token}")
        assert answer.status == 401
        assert answer.headers.get_all("WWW-Authenticate") == ["NTLM", 'Basic realm="127.0.0.1"']
    finally:
        conn.close()


def test_basic_still_works_with_ntlm_on(ntlm_server: EwsServer) -> None:
    conn, path = _connection(ntlm_server.url)
    basic = base64.b64encode(b"alice@example.com:alice-secret").decode()
    try:
        assert _post(conn, path, f"Basic {basic}").status == 200
        # Basic authenticates the request, not the connection
        assert _post(conn, path).status == 401
    finally:
        conn.close()


def test_without_ntlm_only_basic_is_offered(server: EwsServer) -> None:
    conn, path = _connection(server.url)
    negotiate = spnego.client("alice@example.com", "alice-secret", protocol="ntlm",
                              options=spnego.NegotiateOptions.use_ntlm).step() or b""
    try:
        answer = _post(conn, path, f"NTLM {base64.b64encode(negotiate).decode()}")
        assert answer.status == 401
        assert answer.headers.get_all("WWW-Authenticate") == ['Basic realm="127.0.0.1"']
    finally:
        conn.close()
