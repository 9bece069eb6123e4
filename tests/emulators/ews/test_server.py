"""The EWS stand-in's HTTP serving: what every response shares, whatever the operation."""

from __future__ import annotations

import base64

from emulators.ews import EwsServer
from tests.emulators.ews.conftest import GET_CALENDAR, USERS
from tests.emulators.keep_alive import STALL_MS, body_wait_ms

ALICE = "alice@example.com"


def test_a_kept_alive_connection_never_waits_for_a_delayed_ack(server: EwsServer) -> None:
    """Headers and body go out as two sends: with Nagle's algorithm on, each body would
    wait ~40 ms for the client's delayed ACK (what IIS never makes a client do)."""
    login = base64.b64encode(f"{ALICE}:{USERS[ALICE]}".encode()).decode()
    headers = {"Content-Type": "text/xml; charset=utf-8", "Authorization": f"Basic {login}"}
    waited = body_wait_ms(server.url, "POST", "/EWS/Exchange.asmx", GET_CALENDAR, headers)
    assert waited < STALL_MS, f"median {waited:.1f} ms between headers and body"
