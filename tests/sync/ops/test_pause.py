"""Pausing a user in the admin console: the flag outlives the process and is seen by every
process of the node; the user's runs and outbox entries wait while it is set, and the
outbox worker waits without spinning."""

from __future__ import annotations

import asyncio
import contextlib
import time

from sync.config import Config
from sync.ops import pause
from sync.ops.pause import Pauses
from sync.sources.outbox import Mirror
from sync.sources.push import UserRuns
from sync.store import Store
from tests.sync.conftest import ALICE, BOB


def test_the_flag_is_kept_beside_the_store_and_read_anew_when_changed(config: Config) -> None:
    one, other = Pauses.for_config(config), Pauses.for_config(config)  # two processes' views
    assert one.path == config.store_path.with_name("calsync.db.paused")
    assert other.paused() == {}
    one.pause(ALICE, now=5.0)
    one.pause(ALICE, now=9.0)  # paused once: the first time is kept
    assert other.paused() == {ALICE: 5.0}
    one.pause(BOB, now=6.0)
    other.resume(ALICE)
    assert one.paused() == {BOB: 6.0}
    one.path.write_text("not json")
    assert other.paused() == {}  # a damaged file pauses nobody


def test_nothing_is_paused_in_a_process_without_the_console(config: Config) -> None:
    pause.unregister(config)  # the fixture registers it, as the console does
    Pauses.for_config(config).pause(ALICE)
    assert not pause.is_paused(ALICE)
    pause.register(config)
    assert pause.is_paused(ALICE) and not pause.is_paused(BOB)


def test_a_paused_users_runs_wait(config: Config) -> None:
    ran: list[str] = []
    runs = UserRuns(lambda user: ran.append(user.mailbox))
    pause.register(config).pause(ALICE)
    assert runs.run_now(config.users[0]) is None
    runs.run_now(config.users[1])
    assert ran == [BOB]
    pause.register(config).resume(ALICE)
    runs.run_now(config.users[0])
    assert ran == [BOB, ALICE]


def test_the_worker_leaves_a_paused_users_entries_and_does_not_spin(config: Config) -> None:
    store = Store(config.store_path)
    # no Google client configured: the worker, once it takes the entry, quarantines it
    entry = store.enqueue(ALICE, "AAMk-never-mapped", "delete", now=time.time())
    pause.register(config).pause(ALICE)
    mirror = Mirror(config, store)

    def taken() -> bool:
        left = store.entry(entry)
        return left is None or left.attempts > 0

    async def main() -> float:
        task = asyncio.create_task(mirror.run())
        cpu = time.process_time()
        await asyncio.sleep(1.5)
        used = time.process_time() - cpu
        assert store.entry(entry) is not None  # waits, untouched
        assert store.entry(entry).attempts == 0  # type: ignore[union-attr]
        pause.register(config).resume(ALICE)
        mirror.wake()
        deadline = time.monotonic() + 10
        while taken() is False and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return used

    try:
        used = asyncio.run(main())
        assert taken()  # resumed: the worker took it
        assert used < 0.5, f"the worker spun while the entry waited ({used:.2f} s CPU)"
    finally:
        store.close()
