"""sync/backends/exchange.py beyond the contract: what only the real client can show."""

from __future__ import annotations

from exchangelib import EWSDateTime

from emulators.ews import EwsServer
from sync.backends.exchange import ExchangeMailbox
from tests.sync.backends.conftest import admin
from tests.sync.conftest import BERLIN


def test_every_write_is_send_to_none(exchange_mailbox: ExchangeMailbox, ews: EwsServer) -> None:
    """Never a meeting request or cancellation: each kind of write, as Exchange saw it."""
    start = EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN)
    item_id, _ = exchange_mailbox.create({"subject": "Meeting", "start": start, "end": start})
    item = exchange_mailbox.calendar_item(item_id)
    exchange_mailbox.update(item, {"location": "Room 9"})
    exchange_mailbox.delete(item_id)
    records = admin(ews.base_url, "/_admin/send-options")
    assert [(r["operation"], r["attribute"], r["value"]) for r in records] == [
        ("CreateItem", "SendMeetingInvitations", "SendToNone"),
        ("UpdateItem", "SendMeetingInvitationsOrCancellations", "SendToNone"),
        ("DeleteItem", "SendMeetingCancellations", "SendToNone"),
    ]

