"""The admin fault switch (POST /_admin/faults): ErrorServerBusy with BackOffMilliseconds,
HTTP 500/503, latency, outage; per user or for everyone; for a count or a seeded rate.
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange
"""

from __future__ import annotations

import http.client
import threading

import pytest
from exchangelib import UTC, Account, EWSDateTime
from exchangelib.errors import ErrorServerBusy, ErrorTimeoutExpired
from exchangelib.items import CalendarItem
from exchangelib.protocol import FaultTolerance
from lxml import etree

from emulators.ews import EwsServer, start_server
from ews_parser import classify
from tests.emulators.ews.conftest import (
    GET_CALENDAR,
    USERS,
    AccountFactory,
    admin,
    make_account,
    raw_post,
    soap,
)

FIND_CALENDAR = soap(
    '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>Default</t:BaseShape>'
    "</m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id=\"calendar\"/>"
    "</m:ParentFolderIds></m:FindItem>"
)


def test_server_busy_fault_carries_back_off_milliseconds(server: EwsServer) -> None:
    # Throttling answers with a SOAP fault ErrorServerBusy whose MessageXml holds
    # BackOffMilliseconds; the next request (count 1 used up) succeeds.
    status, fault = admin(server.base_url, "POST", "/_admin/faults",
                          {"kind": "ErrorServerBusy", "count": 1, "backOffMilliseconds": 250})
    assert status == 201 and fault["kind"] == "ErrorServerBusy"
    status, _, body = raw_post(server.url, GET_CALENDAR)
    assert status == 500
    seen = classify(body)
    assert (seen.kind, seen.fault_code, seen.back_off_ms) == ("fault", "ErrorServerBusy", 250)
    assert etree.fromstring(body).prefix == "s"
    status, _, body = raw_post(server.url, GET_CALENDAR)
    assert status == 200 and classify(body).messages[0].response_code == "NoError"


def test_exchangelib_surfaces_server_busy_with_its_back_off(alice: Account,
                                                            server: EwsServer) -> None:
    # exchangelib reads BackOffMilliseconds into ErrorServerBusy.back_off (seconds);
    # a fail-fast client raises it at once.
    alice.calendar  # noqa: B018  # resolve the folder before the fault
    admin(server.base_url, "POST", "/_admin/faults",
          {"kind": "ErrorServerBusy", "count": 1, "backOffMilliseconds": 20})
    with pytest.raises(ErrorServerBusy) as caught:
        list(alice.calendar.all())
    assert caught.value.back_off == 0.02
    assert list(alice.calendar.all()) == []


def test_exchangelib_retries_after_the_back_off(server: EwsServer) -> None:
    # A fault-tolerant client waits BackOffMilliseconds and retries; one fault is
    # invisible to its caller.
    account = make_account(server.url, "alice@example.com", USERS["alice@example.com"],
                           fail_fast=False)
    account.protocol.config.retry_policy = FaultTolerance(max_wait=5)
    account.calendar  # noqa: B018
    admin(server.base_url, "POST", "/_admin/faults",
          {"kind": "ErrorServerBusy", "count": 1, "backOffMilliseconds": 10})
    assert list(account.calendar.all()) == []
    assert admin(server.base_url, "GET", "/_admin/faults") == (200, [])


@pytest.mark.parametrize(("kind", "status"), [("http500", 500), ("http503", 503)])
def test_http_errors(server: EwsServer, alice: Account, kind: str, status: int) -> None:
    # IIS's 500 error page and a 503 are not SOAP; exchangelib treats both as transient
    # and, failing fast, reports them as ErrorServerBusy.
    admin(server.base_url, "POST", "/_admin/faults", {"kind": kind, "count": 2})
    got, _, body = raw_post(server.url, GET_CALENDAR)
    assert got == status and not body.startswith(b"<?xml")
    with pytest.raises(ErrorServerBusy, match="ErrorInternalServerTransientError"):
        alice.calendar  # noqa: B018


def test_outage_closes_the_connection_without_an_answer(server: EwsServer) -> None:
    admin(server.base_url, "POST", "/_admin/faults", {"kind": "outage", "count": 1})
    with pytest.raises(http.client.RemoteDisconnected):
        raw_post(server.url, GET_CALENDAR)
    assert raw_post(server.url, GET_CALENDAR)[0] == 200


def test_latency_still_answers(server: EwsServer) -> None:
    admin(server.base_url, "POST", "/_admin/faults", {"kind": "latency", "latencyMs": 5})
    assert raw_post(server.url, GET_CALENDAR)[0] == 200
    assert admin(server.base_url, "DELETE", "/_admin/faults") == (200, [])


def test_a_fault_for_one_user_spares_the_others(server: EwsServer,
                                                account_for: AccountFactory) -> None:
    admin(server.base_url, "POST", "/_admin/faults", {"kind": "http503", "user": "bob@example.com"})
    assert raw_post(server.url, GET_CALENDAR)[0] == 200
    assert raw_post(server.url, GET_CALENDAR, "bob@example.com", "bob-secret")[0] == 503


def _create(alice: Account, subject: str) -> None:
    CalendarItem(account=alice, folder=alice.calendar, subject=subject,
                 start=EWSDateTime(2026, 3, 2, 9, tzinfo=UTC),
                 end=EWSDateTime(2026, 3, 2, 10, tzinfo=UTC)).save()


def test_a_lost_answer_carries_the_write_out(server: EwsServer, alice: Account) -> None:
    # Reads pass untouched (and use none of the count); the CreateItem is done and its
    # answer lost, which exchangelib re-raises as ErrorTimeoutExpired.
    admin(server.base_url, "POST", "/_admin/faults", {"kind": "lostAnswer", "count": 1})
    assert raw_post(server.url, GET_CALENDAR)[0] == 200
    with pytest.raises(ErrorTimeoutExpired, match="Reraised from ConnectionError"):
        _create(alice, "Lost")
    assert admin(server.base_url, "GET", "/_admin/faults") == (200, [])
    assert [i.subject for i in alice.calendar.all()] == ["Lost"]


def test_a_held_answer_waits_for_the_faults_to_be_cleared(server: EwsServer,
                                                          alice: Account) -> None:
    # The write is done while its client still waits: a test can kill the client there.
    alice.calendar  # noqa: B018  # resolve the folder before the fault
    admin(server.base_url, "POST", "/_admin/faults", {"kind": "heldAnswer", "count": 1})
    outcome: list[BaseException | None] = []

    def create() -> None:
        try:
            _create(alice, "Held")
            outcome.append(None)
        except ErrorTimeoutExpired as exc:
            outcome.append(exc)

    writer = threading.Thread(target=create)
    writer.start()
    for _ in range(500):  # a fault whose count is used up leaves the list
        if admin(server.base_url, "GET", "/_admin/faults") == (200, []):
            break
        writer.join(0.01)
    assert writer.is_alive()
    # (not through exchangelib: the writer holds the session its protocol would use)
    assert b"<t:Subject>Held</t:Subject>" in raw_post(server.url, FIND_CALENDAR)[2]
    admin(server.base_url, "DELETE", "/_admin/faults")
    writer.join(5)
    assert not writer.is_alive() and isinstance(outcome[0], ErrorTimeoutExpired)


def test_hits_are_counted(server: EwsServer) -> None:
    admin(server.base_url, "POST", "/_admin/faults", {"kind": "latency", "latencyMs": 0})
    for _ in range(3):
        raw_post(server.url, GET_CALENDAR)
    _, (fault,) = admin(server.base_url, "GET", "/_admin/faults")  # type: ignore[misc]
    assert fault["hits"] == 3


def _pattern(rate: float, seed: int) -> list[int]:
    with start_server(users=USERS) as srv:
        admin(srv.base_url, "POST", "/_admin/faults", {"kind": "http503", "rate": rate, "seed": seed})
        return [raw_post(srv.url, GET_CALENDAR)[0] for _ in range(20)]


def test_a_seeded_rate_fails_the_same_requests_every_run() -> None:
    first = _pattern(0.5, 7)
    assert first == _pattern(0.5, 7)
    assert set(first) == {200, 503}


@pytest.mark.parametrize(
    "spec",
    [{"kind": "nope"}, {"kind": "http500", "count": 0}, {"kind": "http500", "rate": 2},
     {"kind": "latency", "latencyMs": -1}, []],
)
def test_bad_fault_specs_are_400(server: EwsServer, spec: object) -> None:
    status, answer = admin(server.base_url, "POST", "/_admin/faults", spec)
    assert status == 400 and "error" in answer  # type: ignore[operator]
