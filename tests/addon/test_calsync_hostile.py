"""The addon (taddons + the real script, writing to the Google stand-in) under hostile
traffic, issue 10 cases 1 to 4:

- a routing hint (X-AnchorMailbox) from a user calsync does not know, and a delegate write
  into an unconfigured mailbox, reach nobody's Google calendar;
- a gzip body that inflates a thousandfold costs the response hook nothing: no decoding on
  the event loop, and `calsync_max_body` caps the decoded bytes;
- the store locked by another connection holds up neither the hook nor the event loop.

Whatever calsync does off the event loop, a control flow after the hostile ones (the hooks
hand exchanges over in order) says when it is done: once the control's event is in Google,
everything before it has been observed.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.test import taddons

from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from tests.addon.conftest import ADDON, create_request, ews_flow, long_id, response, write_config
from tests.addon.test_calsync import events
from tests.e2e.hostile import REQUEST_PREFIX, RESPONSE_PREFIX, MiB, gzip_bomb, write_lock_held

ALICE, BOB = "alice@example.com", "bob@example.com"
#: calsync reads at most this much of a decoded body here (the option's floor is 1 KiB)
MAX_BODY = 1 * MiB
BOMB = 64 * MiB  # sixty-four times the cap: decoding it in full is what must not happen


@pytest.fixture
def addon(google: GoogleCalendarServer, tmp_path: Path) -> Iterator[Any]:
    """The script's addon for alice only (bob is a valid Exchange user calsync does not
    know), reading at most MAX_BODY decoded bytes of a body, writing from threads."""
    config = write_config(tmp_path, google, users=(ALICE,))
    with taddons.context() as tctx:
        addon = tctx.script(str(ADDON)).addons[0]
        tctx.options.update(
            calsync_config=str(config), calsync_max_body=MAX_BODY, calsync_worker_processes=0
        )
        # tctx.script keeps the addon out of the hook chain: configure as the change would
        addon.configure({"calsync_config", "calsync_max_body"})
        yield addon
        asyncio.run(addon.done())


def see(addon: Any, flow: Any) -> float:
    """Both hooks, as mitmproxy calls them; how long they took. The flow passes untouched."""
    before = flow.get_state()
    started = time.monotonic()
    addon.request(flow)
    addon.response(flow)
    took = time.monotonic() - started
    assert flow.get_state() == before
    return took


def control(addon: Any, google: GoogleCalendarServer, timeout: float = 15.0) -> list[str]:
    """alice creates "Control" (after the flows under test) and the outbox is drained until
    it is in her Google calendar; her calendar's summaries, sorted."""
    item = long_id("control")
    see(addon, ews_flow(create_request("Control"), response("CreateItem", item)))
    deadline = time.monotonic() + timeout
    while True:
        asyncio.run(addon.mirror.drain())
        found = events(google, ALICE)
        if event_id_for(item) in {e["id"] for e in found} or time.monotonic() > deadline:
            return sorted(e["summary"] for e in found)
        time.sleep(0.05)


def in_mailbox(mailbox: str) -> str:
    return (
        '<t:DistinguishedFolderId Id="calendar"><t:Mailbox>'
        f"<t:EmailAddress>{mailbox}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
    )


# --- issue 10 cases 1 and 2 -------------------------------------------------------------------


def test_a_routing_hint_or_a_delegate_write_reaches_nobodys_calendar(
    addon: Any, google: GoogleCalendarServer
) -> None:
    for anchor in (ALICE, f"SMTP:{ALICE}", f"smtp:{ALICE.upper()}"):
        see(
            addon,
            ews_flow(
                create_request("BOB PRIVATE"),
                response("CreateItem", long_id(f"bob-private-{anchor}")),
                user=BOB,
                headers={"x-anchormailbox": anchor},
            ),
        )
    see(  # no Authorization at all: nobody's, whatever the hint says
        addon,
        ews_flow(
            create_request("Nobody's"),
            response("CreateItem", long_id("nobody")),
            user=None,
            headers={"x-anchormailbox": ALICE},
        ),
    )
    see(  # alice, as bob's delegate, writes into bob's calendar: bob is not configured
        addon,
        ews_flow(
            create_request("For bob", folder=in_mailbox(BOB)),
            response("CreateItem", long_id("alice-in-bob")),
        ),
    )
    see(  # bob, as alice's delegate, writes into her calendar: hers
        addon,
        ews_flow(
            create_request("From bob", folder=in_mailbox(ALICE)),
            response("CreateItem", long_id("bob-in-alice")),
            user=BOB,
            headers={"x-anchormailbox": BOB},
        ),
    )
    assert control(addon, google) == ["Control", "From bob"]
    assert events(google, BOB) == []


# --- issue 10 case 3 -----------------------------------------------------------------------------


def gzip_flow(request_bomb: bool) -> Any:
    """alice's CreateItem with a gzip bomb as its request body, or as its response's."""
    if request_bomb:
        flow = ews_flow(b"", response("CreateItem", long_id("request-bomb")))
        flow.request.headers["content-encoding"] = "gzip"
        flow.request.raw_content = gzip_bomb(REQUEST_PREFIX, BOMB)
    else:
        flow = ews_flow(create_request("Response bomb"), b"")
        flow.response.headers["content-encoding"] = "gzip"
        flow.response.raw_content = gzip_bomb(RESPONSE_PREFIX, BOMB)
    return flow


@pytest.mark.parametrize("request_bomb", [True, False], ids=["request", "response"])
def test_a_gzip_bomb_is_not_decoded_on_the_event_loop(
    request_bomb: bool, addon: Any, google: GoogleCalendarServer
) -> None:
    flow = gzip_flow(request_bomb)
    tracemalloc.start()
    try:
        took = see(addon, flow)
    finally:
        # The observing thread is decoding the bomb, zlib allocating without the GIL:
        # tracemalloc.stop() meanwhile can crash CPython before 3.12.9 (gh-128679; it
        # killed a whole run). What that thread allocates counts too.
        observed = addon.flush()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert observed
    figures = f"hooks took {took:.3f} s; hooks and decoding allocated at most {peak / MiB:.1f} MiB"
    assert peak < 8 * MiB, figures  # the bomb is 64 MiB decoded, the cap 1 MiB
    assert took < 0.25, figures
    # over the cap: not mirrored; the flows after it still are
    assert control(addon, google) == ["Control"]


# --- issue 10 case 4 -----------------------------------------------------------------------------


def test_a_locked_store_holds_up_neither_the_hook_nor_the_event_loop(
    addon: Any, google: GoogleCalendarServer
) -> None:
    store = addon.store.path
    assert control(addon, google) == ["Control"]  # the store's tables are there
    created = long_id("during-the-lock")

    async def go() -> tuple[float, float]:
        addon.running()  # the worker, as in mitmdump
        worst_gap = 0.0
        beating = True

        async def heartbeat() -> None:
            nonlocal worst_gap
            while beating:
                started = time.monotonic()
                await asyncio.sleep(0.01)
                worst_gap = max(worst_gap, time.monotonic() - started)

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        with write_lock_held(store, 1.5):
            took = see(
                addon, ews_flow(create_request("During the lock"), response("CreateItem", created))
            )
            # the worker keeps looking for work meanwhile, as it does while it drains
            for _ in range(32):  # 1.6 s: the lock is released meanwhile
                addon.mirror.wake()
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + 15
        while event_id_for(created) not in {e["id"] for e in events(google, ALICE)}:
            assert time.monotonic() < deadline, "the create never reached Google"
            await asyncio.sleep(0.1)
        beating = False
        await beat
        return took, worst_gap

    took, worst_gap = asyncio.run(go())
    figures = f"hooks took {took:.3f} s; the event loop's worst gap {worst_gap:.3f} s"
    assert took < 0.25, figures
    assert worst_gap < 0.3, figures
    assert sorted(e["summary"] for e in events(google, ALICE)) == ["Control", "During the lock"]
