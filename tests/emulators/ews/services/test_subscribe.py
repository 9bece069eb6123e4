"""Subscribe and Unsubscribe through the real exchangelib and raw SOAP: what a subscription
answers, server affinity (X-AnchorMailbox, X-PreferServerAffinity, the
X-BackEndOverrideCookie), EWSMaxSubscriptions, delegate access, faults.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/subscribe-operation
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-maintain-affinity-between-group-of-subscriptions-and-mailbox-server
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from exchangelib.errors import (
    ErrorExceededSubscriptionCount,
    ErrorSchemaValidation,
    ErrorServerBusy,
    ErrorSubscriptionNotFound,
)
from exchangelib.properties import CreatedEvent

from emulators.ews import EwsServer
from emulators.ews.subscriptions import backend_name
from tests.emulators.ews.conftest import M, admin, code_of, messages_of, raw_post
from tests.emulators.ews.services.notifying import (
    RawStream,
    account,
    create,
    impersonating,
    running,
    streaming_xml,
    sub_id_of,
    subscribe_xml,
)


@pytest.fixture
def server() -> Iterator[EwsServer]:
    with running() as srv:  # short minutes and heartbeats
        yield srv


def test_subscribe_and_unsubscribe(server: EwsServer) -> None:
    alice = account(server, "alice@example.com")
    streaming = alice.calendar.subscribe_to_streaming()
    pull, mark = alice.calendar.subscribe_to_pull()
    assert streaming and pull and mark and streaming != pull
    assert alice.calendar.unsubscribe(streaming) is True
    alice.calendar.unsubscribe(pull)
    # the second time, it is gone
    with pytest.raises(ErrorSubscriptionNotFound):
        alice.calendar.unsubscribe(streaming)


def test_a_streaming_subscribe_answers_no_watermark(server: EwsServer) -> None:
    (message,) = messages_of(raw_post(server.url, subscribe_xml())[2])
    assert code_of(message) == "NoError"
    assert [c.tag.rpartition("}")[2] for c in message] == ["ResponseCode", "SubscriptionId"]


def test_subscribe_to_all_folders(server: EwsServer) -> None:
    # exchangelib's Account.subscribe_to_pull watches the whole mailbox.
    alice = account(server, "alice@example.com")
    sub_id, mark = alice.subscribe_to_pull()
    item = create(alice)
    events = [e for n in alice.calendar.get_events(sub_id, mark) for e in n.events]
    assert any(isinstance(e, CreatedEvent) and e.item_id.id == item.id for e in events)


def test_exchangelib_writes_the_pull_watermark_where_the_schema_refuses_it(
    server: EwsServer,
) -> None:
    # exchangelib sends m:Watermark inside PullSubscriptionRequest; Exchange 2016's schema
    # declares t:Watermark there. Raw, as the schema has it, the same watermark works
    # (test_get_events.py resumes from one).
    alice = account(server, "alice@example.com")
    _, mark = alice.calendar.subscribe_to_pull()
    with pytest.raises(ErrorSchemaValidation, match="Watermark"):
        alice.calendar.subscribe_to_pull(watermark=mark)


@pytest.mark.parametrize(("folders", "code"), [
    # someone else's calendar: subscriptions need the mailbox's own access
    ('<t:DistinguishedFolderId Id="calendar"><t:Mailbox><t:EmailAddress>bob@example.com'
     "</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>",
     "ErrorSubscriptionDelegateAccessNotSupported"),
    ('<t:FolderId Id="AAEuAAAA"/>', "ErrorFolderNotFound"),
])
def test_subscribe_errors(server: EwsServer, folders: str, code: str) -> None:
    (message,) = messages_of(raw_post(server.url, subscribe_xml(folders=folders))[2])
    assert code_of(message) == code


def test_ews_max_subscriptions() -> None:
    with running(max_subscriptions=2) as srv:
        alice = account(srv, "alice@example.com")
        first = alice.calendar.subscribe_to_streaming()
        alice.calendar.subscribe_to_pull()
        with pytest.raises(ErrorExceededSubscriptionCount):
            alice.calendar.subscribe_to_streaming()
        # impersonating bob spends bob's budget, not the service account's
        account(srv, "bob@example.com", service=True).calendar.subscribe_to_streaming()
        alice.calendar.unsubscribe(first)
        alice.calendar.subscribe_to_streaming()


def test_server_busy_through_the_fault_switch(server: EwsServer) -> None:
    admin(server.base_url, "POST", "/_admin/faults",
          {"kind": "ErrorServerBusy", "count": 1, "backOffMilliseconds": 5000})
    with pytest.raises(ErrorServerBusy) as busy:
        account(server, "alice@example.com").calendar.subscribe_to_streaming()
    assert busy.value.back_off == 5


def test_exchangelib_gets_and_resends_the_affinity_cookie(server: EwsServer) -> None:
    # exchangelib sends X-AnchorMailbox and X-PreferServerAffinity on Subscribe, keeps
    # the X-BackEndOverrideCookie and sends it again with the subscription's calls.
    alice = account(server, "alice@example.com")
    assert alice.affinity_cookie is None
    alice.calendar.subscribe_to_streaming()
    assert alice.affinity_cookie is not None
    assert alice.affinity_cookie.startswith(backend_name(0) + "~")


def test_no_cookie_without_affinity_asked_for(server: EwsServer) -> None:
    status, headers, _ = raw_post(server.url, subscribe_xml())
    assert status == 200 and "Set-Cookie" not in headers


def _homes(server: EwsServer) -> tuple[int, int]:
    hub = server.hub
    return hub.home("alice@example.com"), hub.home("bob@example.com")


def test_affinity_groups_subscriptions_on_one_mailbox_server() -> None:
    # Two mailbox servers, alice and bob homed on different ones. A service account
    # groups them the documented way: alice's Subscribe is the anchor's and gets the
    # cookie; bob's carries the cookie, so both live where the one connection goes.
    with running(backends=2) as srv:
        assert len(set(_homes(srv))) == 2, "the addresses should live on different servers"
        as_alice = account(srv, "alice@example.com", service=True)
        as_bob = account(srv, "bob@example.com", service=True)
        first = as_alice.calendar.subscribe_to_streaming()
        cookie = as_alice.affinity_cookie
        assert cookie is not None and cookie.startswith(backend_name(_homes(srv)[0]))
        as_bob.affinity_cookie = cookie
        second = as_bob.calendar.subscribe_to_streaming()
        assert list(as_alice.calendar.get_streaming_events([first, second],
                                                           connection_timeout=1)) == []


def test_exchangelib_accounts_of_one_service_account_share_the_cookie() -> None:
    # exchangelib's Accounts with the same credentials share a session pool, and so the
    # cookie jar: bob's Subscribe carries the cookie alice's got and lands beside it.
    with running(backends=2) as srv:
        as_alice = account(srv, "alice@example.com", service=True)
        as_bob = account(srv, "bob@example.com", service=True)
        first = as_alice.calendar.subscribe_to_streaming()
        second = as_bob.calendar.subscribe_to_streaming()
        assert as_bob.affinity_cookie == as_alice.affinity_cookie
        assert list(as_alice.calendar.get_streaming_events([first, second],
                                                           connection_timeout=1)) == []


def test_without_affinity_a_subscription_is_not_found_elsewhere() -> None:
    # bob's subscription lives on bob's server (his anchor routed it there); a connection
    # routed by alice's anchor reaches the other server, which does not know it; with
    # bob's cookie and affinity preferred, it reaches bob's.
    with running(backends=2) as srv:
        subscribe = RawStream(
            srv.url, subscribe_xml(header=impersonating("bob@example.com")),
            user="svc@example.com",
            headers={"X-AnchorMailbox": "bob@example.com", "X-PreferServerAffinity": "true"})
        cookie = subscribe.headers["set-cookie"].split(";")[0]
        assert cookie.startswith(f"X-BackEndOverrideCookie={backend_name(_homes(srv)[1])}~")
        sub_id = sub_id_of(subscribe.body())
        subscribe.close()
        alices = {"X-AnchorMailbox": "alice@example.com"}
        stream = streaming_xml(sub_id, header=impersonating("alice@example.com"))
        refused = RawStream(srv.url, stream, user="svc@example.com", headers=alices)
        (message,) = messages_of(refused.body())
        refused.close()
        assert code_of(message) == "ErrorSubscriptionNotFound"
        # the cookie as a cookie, as the EWS Managed API sends it
        raw = RawStream(srv.url, stream, user="svc@example.com",
                        headers={**alices, "X-PreferServerAffinity": "true", "Cookie": cookie})
        try:
            assert raw.chunked and raw.next().status == "OK"  # type: ignore[union-attr]
        finally:
            raw.close()


def test_subscription_ids_and_watermarks_are_opaque_base64(server: EwsServer) -> None:
    import base64

    body = raw_post(server.url, subscribe_xml("Pull", extra="<t:Timeout>5</t:Timeout>"))[2]
    (message,) = messages_of(body)
    for name in ("SubscriptionId", "Watermark"):
        base64.b64decode(message.findtext(f"{{{M}}}{name}") or "", validate=True)
    assert sub_id_of(body)
