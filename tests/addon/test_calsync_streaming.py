"""The addon runs EWS streaming notifications as `calsync serve` does (issue 14): inside
mitmproxy (taddons), with the two-way job's poll off, a change made directly in Exchange
(exchangelib, never through the proxy) reaches Google; the connections start and stop on
threads, never holding up mitmproxy's event loop, and done() closes them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from mitmproxy.test import taddons

from emulators.ews import EwsServer, start_server
from emulators.google.server import GoogleCalendarServer
from tests.addon.conftest import write_config
from tests.addon.test_calsync import events, load
from tests.sync.conftest import ALICE, PASSWORDS, ews_account


@pytest.fixture
def ews(monkeypatch: pytest.MonkeyPatch) -> Iterator[EwsServer]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CALSYNC_TEST_ALICE_PASSWORD", PASSWORDS[ALICE])
    server = start_server(users={ALICE: PASSWORDS[ALICE]})
    try:
        yield server
    finally:
        server.stop()


def create_in_exchange(ews: EwsServer, subject: str) -> None:
    account = ews_account(ews.url)
    utc = EWSTimeZone("UTC")
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=EWSDateTime(2027, 3, 4, 12, tzinfo=utc),
        end=EWSDateTime(2027, 3, 4, 13, tzinfo=utc),
    ).save(send_meeting_invitations="SendToNone")


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` in a thread (it may call the stand-ins) until it is true."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


def test_the_addon_mirrors_a_change_made_without_the_proxy_through_streaming(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    config = write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,))

    async def scenario(addon: Any) -> tuple[float, float]:
        worst_gap, beating = 0.0, True

        async def heartbeat() -> None:
            nonlocal worst_gap
            while beating:
                started = time.monotonic()
                await asyncio.sleep(0.01)
                worst_gap = max(worst_gap, time.monotonic() - started)

        beat = asyncio.create_task(heartbeat())
        addon.running()  # the worker and streaming, as in mitmdump; no poll, no push
        await until(lambda: ews.hub.status()["connections"] == 1, "the stream open")
        # the start's catch-up run (a gap: the feed catches up) is over
        await until(lambda: addon.runs.runs.get(ALICE) and addon.runs.idle(), "the catch-up run")
        caught_up = addon.runs.runs[ALICE]

        made = time.monotonic()
        await asyncio.to_thread(create_in_exchange, ews, "Made in OWA")
        await until(
            lambda: "Made in OWA" in {e["summary"] for e in events(google, ALICE)},
            "the Exchange change in Google",
            timeout=5.0,
        )
        took = time.monotonic() - made
        # the run the notification triggered (counted once it has ended)
        await until(lambda: addon.runs.runs[ALICE] > caught_up, "the triggered run's end")

        beating = False  # the hooks' and the sources' time, not the shutdown's
        await beat
        await addon.done()  # closes the stream
        assert ews.hub.status()["connections"] == 0
        return took, worst_gap

    with taddons.context() as tctx:
        addon = load(tctx, config)
        tctx.options.update(calsync_sync_interval=0, calsync_worker_processes=0)
        addon.configure({"calsync_sync_interval"})
        took, worst_gap = asyncio.run(scenario(addon))
    figures = f"in Google after {took:.3f} s; the event loop's worst gap {worst_gap:.3f} s"
    assert took < 2.0, figures
    # a blocking wait on the loop (a run, a stream's start, a store lock) shows as seconds;
    # two loaded cores have descheduled the loop for 0.55 s (a whole run beside a soak)
    assert worst_gap < 1.0, figures


def test_streaming_off_in_the_config_opens_no_stream(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    config = write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,))
    config.write_text(config.read_text().replace("[exchange]\n", "[exchange]\nstreaming = false\n"))

    async def scenario(addon: Any) -> None:
        addon.running()
        await asyncio.sleep(1.0)
        assert addon._streaming_task is None
        assert ews.hub.status() == {"subscriptions": 0, "connections": 0, "budgets": {}}
        await addon.done()

    with taddons.context() as tctx:
        addon = load(tctx, config)
        tctx.options.update(calsync_sync_interval=0, calsync_worker_processes=0)
        addon.configure({"calsync_sync_interval"})
        asyncio.run(scenario(addon))
