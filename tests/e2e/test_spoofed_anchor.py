"""Issue 10 case 1 through the deployed chain: X-AnchorMailbox is a routing hint any client
can set, never whose calendar a flow is.

bob is a valid user of the EWS stand-in but not configured in calsync. He creates events in
his own calendar through mitmdump with the addon, naming alice in X-AnchorMailbox: once
with exchangelib (its transport sets the header, as a hostile or misconfigured client
would), once as a raw SOAP POST with `SMTP:alice@...` and no Mailbox element at all.
Exchange files both in bob's mailbox; alice's Google calendar must never see them. alice's
own event, made afterwards through the same proxy, is the control: once it is in Google and
the outbox is empty, the worker has drained everything recorded before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from exchangelib import Account
from exchangelib.protocol import BaseProtocol

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.cli.users import without_user
from tests.addon.conftest import basic, create_request
from tests.e2e.clients import Route, account, google_events, outbox_counts, wait_for
from tests.e2e.conftest import PASSWORD, write_config
from tests.e2e.items import at, create, expected_event, seen
from tests.e2e.processes import Mitmdump

ALICE = "alice@example.com"
BOB = "bob@example.com"
#: what the log says for every intent recorded for alice (sync/sources/proxy.py)
RECORDED_FOR_ALICE = re.compile(r"alice@example\.com \w+ \w+ recorded")


@pytest.fixture
def config(tmp_path: Path, google: GoogleCalendarServer, ews: EwsServer) -> Path:
    """Only alice is configured; bob keeps his Exchange mailbox (the stand-in has him)."""
    path = write_config(tmp_path, google, ews)
    text = without_user(path.read_text(), BOB)
    assert text is not None
    path.write_text(text)
    return path


def spoofing(route: Route, anchor: str) -> type[Any]:
    """exchangelib's transport, sending `anchor` as X-AnchorMailbox on every request
    (exchangelib itself names the account's own address there)."""

    class Spoofing(route.adapter()):  # type: ignore[misc]
        def send(self, request: Any, **kwargs: Any) -> Any:
            request.headers["X-AnchorMailbox"] = anchor
            return super().send(request, **kwargs)

    return Spoofing


@pytest.fixture
def bob(ews: EwsServer, route: Route, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", spoofing(route, ALICE))
    client = account(ews.url, BOB, PASSWORD)
    try:
        yield client
    finally:
        client.protocol.close()
        monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", route.adapter())


def raw_post(proxy: Mitmdump, url: str, user: str, body: bytes, headers: dict[str, str]) -> str:
    """One SOAP request through the proxy, as a client with its own SOAP code sends it."""
    session = requests.Session()
    session.trust_env = False  # NO_PROXY names 127.0.0.1: this request must take the proxy
    try:
        reply = session.post(
            url,
            data=body,
            headers={
                "Content-Type": "text/xml; charset=utf-8",
                "Authorization": basic(user, PASSWORD),
                **headers,
            },
            proxies={"https": proxy.proxy_url},
            verify=str(proxy.ca_path),
            timeout=30,
        )
    finally:
        session.close()
    assert reply.status_code == 200, reply.text[:500]
    assert b'ResponseClass="Success"' in reply.content
    return reply.text


def test_a_spoofed_anchor_mailbox_puts_nothing_in_alices_calendar(
    bob: Account,
    ews: EwsServer,
    google: GoogleCalendarServer,
    config: Path,
    proxy: Mitmdump,
    route: Route,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private = create(bob, "BOB PRIVATE", at(5, 9), 30)
    assert private.id  # Exchange filed it, in bob's own calendar
    raw_post(
        proxy,
        ews.url,
        BOB,
        create_request("BOB PRIVATE, raw SOAP"),  # DistinguishedFolderId calendar, no Mailbox
        {"X-AnchorMailbox": f"SMTP:{ALICE}"},
    )

    # the control, after bob's: alice's own event through the same proxy
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", route.adapter())
    alice = account(ews.url, ALICE, PASSWORD)
    try:
        own = create(alice, "Alice's own", at(5, 10), 30)
    finally:
        alice.protocol.close()
    store = config.parent / "calsync.db"
    events, outbox = wait_for(
        lambda: (google_events(google.api_endpoint, ALICE), outbox_counts(store)),
        lambda got: event_id_for(own.id) in {e["id"] for e in got[0]} and not got[1],
        timeout=20,
        what="alice's own event in Google, the outbox empty",
    )
    assert outbox == {}
    assert sorted(e["summary"] for e in events) == ["Alice's own"]  # no "BOB PRIVATE"
    assert {e["id"]: seen(e) for e in events} == {event_id_for(own.id): expected_event(own)}
    assert google_events(google.api_endpoint, BOB) == []  # bob is not configured
    # the log names one intent for alice: her own create
    assert len(RECORDED_FOR_ALICE.findall(proxy.log())) == 1, proxy.log()[-3000:]
