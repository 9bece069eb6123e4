"""sync/backends/clients.py: one client per user and side, whoever asks and however many
threads ask at once."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sync.backends.base import ExchangeBackend, GoogleBackend
from sync.backends.clients import Clients
from sync.backends.memory import MemoryExchange, MemoryGoogle
from sync.config import Config, UserConfig
from tests.sync.backends.conftest import alice, backend_config


class Factories:
    """Client makers that count what they made (the in-memory calendars as clients)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: set[str] = set()
        self.slow: str | None = None  # only this user's maker waits for the gate
        self._lock = threading.Lock()

    def google(self, config: Config, user: UserConfig) -> GoogleBackend:
        if self.slow in (None, user.mailbox):
            self.gate.wait(5)
        if user.mailbox in self.fail:
            raise RuntimeError("cannot read the token file")
        with self._lock:
            self.made.append(("google", user.mailbox))
        return MemoryGoogle(user.mailbox)

    def exchange(self, config: Config, user: UserConfig) -> ExchangeBackend:
        with self._lock:
            self.made.append(("exchange", user.mailbox))
        return MemoryExchange(user.mailbox)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return backend_config(tmp_path)


def test_one_client_per_user_and_side_across_threads(config: Config) -> None:
    factories = Factories()
    clients = Clients(config, factories.google, factories.exchange)
    user = alice(config)
    factories.gate.clear()  # every thread asks before the first client is made
    with ThreadPoolExecutor(16) as pool:
        asked = [pool.submit(clients.google, user) for _ in range(32)]
        factories.gate.set()
        googles = {id(f.result()) for f in asked}
    assert len(googles) == 1
    assert clients.exchange(user) is clients.exchange(user)
    assert factories.made == [("google", user.mailbox), ("exchange", user.mailbox)]


def test_a_slow_user_does_not_hold_up_another(config: Config) -> None:
    factories = Factories()
    clients = Clients(config, factories.google, factories.exchange)
    slow = alice(config)
    other = dataclasses.replace(slow, mailbox="bob@example.com")
    factories.slow = slow.mailbox
    factories.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(clients.google, slow)  # stuck in its maker until the gate opens
        try:
            assert pool.submit(clients.google, other).result(2) is not None
            assert clients.exchange(slow) is not None  # the other side: no wait either
            assert not waiting.done()
        finally:
            factories.gate.set()
        waiting.result(5)


def test_a_failed_client_is_made_again_and_a_changed_user_gets_new_ones(config: Config) -> None:
    factories = Factories()
    clients = Clients(config, factories.google, factories.exchange)
    user = alice(config)
    factories.fail.add(user.mailbox)
    with pytest.raises(RuntimeError):
        clients.google(user)
    factories.fail.clear()
    first = clients.google(user)
    assert clients.google(user) is first
    moved = dataclasses.replace(user, google_calendar="work@example.com")
    assert clients.google(moved) is not first
    clients.forget(user.mailbox)
    assert clients.google(moved) is not first
    assert factories.made.count(("google", user.mailbox)) == 3
