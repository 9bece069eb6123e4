"""Pausing a user in the admin console (sync/ops/pause.py): the flag is in the state store, so
every process that has the store open sees it at once; the user's runs and outbox entries
wait while it is set, and the outbox worker waits without spinning. A flag file an older
calsync kept beside the store is imported once, at open. (On a store several nodes share:
tests/sync/state/test_nodes_share_the_outbox.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from sync.config import Config
from sync.ops import pause
from sync.sources.outbox import Mirror
from sync.sources.push import UserRuns
from sync.store import Store
from tests.sync.conftest import ALICE, BOB

ROOT = Path(__file__).resolve().parents[3]

#: another process of the node (a worker process, `calsync status`): what it sees of Alice
_ANOTHER_PROCESS = """
import sys
from sync.ops import pause
from sync.store import Store
store = Store(sys.argv[1])
print(pause.is_paused(sys.argv[2]), store.paused())
store.close()
"""


def seen_by_another_process(config: Config) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _ANOTHER_PROCESS, str(config.store_path), ALICE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_pause_is_seen_by_every_process_at_once(config: Config, store: Store) -> None:
    assert seen_by_another_process(config) == "False {}"
    store.pause(ALICE, now=5.0)
    assert seen_by_another_process(config) == f"True {{'{ALICE}': 5.0}}"
    other = Store(config.store_path)  # another connection of this process
    try:
        other.resume(ALICE)
        assert not store.is_paused(ALICE) and not pause.is_paused(ALICE)
    finally:
        other.close()
    assert seen_by_another_process(config) == "False {}"


def test_is_paused_asks_the_stores_open_in_this_process(config: Config) -> None:
    assert not pause.is_paused(ALICE)  # none open
    store = Store(config.store_path)
    store.pause(ALICE, now=1.0)
    assert pause.is_paused(ALICE) and not pause.is_paused(BOB)
    store.close()
    assert not pause.is_paused(ALICE)  # a closed store is asked no more
    again = Store(config.store_path)
    try:
        assert pause.is_paused(ALICE)  # kept in the store
    finally:
        again.close()


def test_a_paused_users_runs_wait(config: Config, store: Store) -> None:
    ran: list[str] = []
    runs = UserRuns(lambda user: ran.append(user.mailbox))
    store.pause(ALICE, now=1.0)
    assert runs.run_now(config.users[0]) is None
    runs.run_now(config.users[1])
    assert ran == [BOB]
    store.resume(ALICE)
    runs.run_now(config.users[0])
    assert ran == [BOB, ALICE]


def test_the_worker_leaves_a_paused_users_entries_and_does_not_spin(
    config: Config, store: Store
) -> None:
    # no Google client configured: the worker, once it takes the entry, quarantines it
    entry = store.enqueue(ALICE, "AAMk-never-mapped", "delete", now=time.time())
    store.pause(ALICE, now=time.time())
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
        store.resume(ALICE)
        mirror.wake()
        deadline = time.monotonic() + 10
        while taken() is False and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return used

    used = asyncio.run(main())
    assert taken()  # resumed: the worker took it
    assert used < 0.5, f"the worker spun while the entry waited ({used:.2f} s CPU)"


# --- the file an older calsync kept -------------------------------------------------------------


def test_an_older_calsyncs_flag_file_is_imported_once_at_open(config: Config) -> None:
    flags = pause.file_of(config)
    assert flags == config.store_path.with_name("calsync.db.paused")
    flags.write_text(json.dumps({"paused": {ALICE: 5.0, BOB: 6.0}}))
    store = Store.open(config)
    try:
        assert store.paused() == {ALICE: 5.0, BOB: 6.0}
        assert not flags.exists() and flags.with_name("calsync.db.paused.imported").exists()
        store.resume(BOB)
    finally:
        store.close()
    again = Store.open(config)  # the file is not read again: Bob stays resumed
    try:
        assert again.paused() == {ALICE: 5.0}
    finally:
        again.close()


def test_a_user_paused_in_the_store_and_the_file_keeps_the_first_time(config: Config) -> None:
    with contextlib.closing(Store.open(config)) as store:
        store.pause(ALICE, now=7.0)
    pause.file_of(config).write_text(json.dumps({"paused": {ALICE: 9.0}}))
    with contextlib.closing(Store.open(config)) as store:
        assert store.paused() == {ALICE: 7.0}


def test_a_damaged_flag_file_pauses_nobody_and_is_not_read_again(config: Config) -> None:
    flags = pause.file_of(config)
    flags.write_text("not json")
    with contextlib.closing(Store.open(config)) as store:
        assert store.paused() == {}
    assert not flags.exists()
