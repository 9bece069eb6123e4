"""The worker processes that write to Google for the proxy (sync/sources/outbox.py,
`Mirror.use_processes`): a thread hands each entry to a process over its pipe, so an
entry costs the proxy's event loop nothing (issue 17), and a process that dies is
replaced. Against the Google stand-in, through the unmodified client in the process."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.config import load_config
from sync.core.notice import RequestHint
from sync.sources import outbox
from sync.sources.outbox import Mirror
from sync.store import Store
from tests.addon.conftest import create_request, long_id, write_config
from tests.sync.conftest import ALICE


def _until(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"{what} within {limit:.0f} s"
        time.sleep(0.05)


@contextmanager
def running(mirror: Mirror) -> Iterator[asyncio.AbstractEventLoop]:
    """`mirror.run()` on an event loop of its own thread, as the addon runs it on
    mitmproxy's; cancelled, the processes stopped and the loop ended afterwards."""
    loop = asyncio.new_event_loop()
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="test-loop-executor"))
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    task = asyncio.run_coroutine_threadsafe(mirror.run(), loop)
    try:
        yield loop
    finally:
        task.cancel()
        mirror.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Changes:
    """Entries the proxy would record for Alice's creates, with their requests in memory."""

    def __init__(self, store: Store, mirror: Mirror) -> None:
        self.store, self.mirror = store, mirror

    def create(self, name: str) -> str:
        item = long_id(name)
        entry = self.store.enqueue(
            ALICE, item, "upsert", now=time.time(), change_key="DwAAAB" + item[-12:]
        )
        self.mirror.note(entry, RequestHint(create_request(name), 0, "W. Europe Standard Time"))
        self.mirror.wake()
        return event_id_for(item)


@pytest.fixture
def mirror(tmp_path: Path, google: GoogleCalendarServer) -> Iterator[tuple[Mirror, Changes]]:
    path = write_config(tmp_path, google, users=(ALICE,))
    config = load_config(path)
    store = Store(config.store_path)
    mirror = Mirror(config, store)
    mirror.use_processes(str(path))
    try:
        yield mirror, Changes(store, mirror)
    finally:
        mirror.close()
        store.close()


def test_an_entry_is_written_while_the_event_loop_is_held_up(
    mirror: tuple[Mirror, Changes], google: GoogleCalendarServer
) -> None:
    """With worker processes, the loop that runs `Mirror.run()` takes no part in an entry:
    held up (a long callback of the proxy's), the change still reaches Google."""
    worker, changes = mirror
    events = google.state.calendars[ALICE].events
    with running(worker) as loop:
        _until(lambda: not worker.completed and _serving(), "the worker's thread to start")
        released = threading.Event()
        loop.call_soon_threadsafe(released.wait, 60)  # the loop is held from here on
        try:
            event_id = changes.create("written while the loop is held")
            _until(lambda: event_id in events, "the event in Google")
        finally:
            released.set()


def test_a_worker_process_that_died_is_replaced(
    mirror: tuple[Mirror, Changes],
    google: GoogleCalendarServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed (out of memory, an administrator), the process is replaced at the next
    entry, which stays pending and is handed out again; the changes after it are written.
    The request of the entry it died with is not handed to the new process: a request that
    made a process die is read from Exchange instead."""
    worker, changes = mirror
    pool = worker.pool
    assert pool is not None and len(pool) == 1
    first = pool[0].process
    events = google.state.calendars[ALICE].events
    with caplog.at_level(logging.WARNING, logger="calsync.mirror"), running(worker):
        first.kill()
        first.join(10)
        changes.create("handed to the dead process")
        _until(lambda: pool[0].process is not first, "a new worker process")
        assert "calsync worker process died; starting a new one" in caplog.messages
        assert pool[0].process.is_alive()
        event_id = changes.create("after the new process started")
        _until(lambda: event_id in events, "the next change in Google")


def _serving() -> bool:
    """`Mirror.run()` has its thread (the loop's executor's only one)."""
    return any(t.name.startswith("test-loop-executor") for t in threading.enumerate())


def test_a_worker_says_each_entry_done_once_it_keeps_no_more_of_them(
    tmp_path: Path, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process keeps the latest `COMPLETED_KEPT` completed entries, not all (it runs
    for months); with as many kept, each further entry is still said done, with its time."""
    monkeypatch.setattr(outbox, "COMPLETED_KEPT", 2)
    config = load_config(write_config(tmp_path, google, users=(ALICE,)))
    store = Store(config.store_path)
    worker = Mirror(config, store)
    monkeypatch.setattr(outbox, "_worker", worker)  # this process serves as the worker
    try:
        for n in range(4):
            item = long_id(f"kept-{n}")
            entry = store.enqueue(
                ALICE, item, "upsert", now=time.time(), change_key="DwAAAB" + item[-12:]
            )
            hint = RequestHint(create_request(f"kept {n}"), 0, "W. Europe Standard Time")
            assert outbox.process_in_worker(entry, hint) is not None
            assert event_id_for(item) in google.state.calendars[ALICE].events
        assert len(worker.completed) == 2
    finally:
        store.close()
