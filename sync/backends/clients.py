"""One Google client and one Exchange client per user, shared by every part of a process
(the proxy's worker, the two-way job, push): each client holds a connection, a token and,
for Google, a lock that keeps one call at a time on its connection, so two of them for
one user only cost more and race each other's token refreshes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal, TypeVar

from sync.backends.base import ExchangeBackend, GoogleBackend
from sync.config import Config, UserConfig

Side = Literal["google", "exchange"]
GoogleFactory = Callable[[Config, UserConfig], GoogleBackend]
ExchangeFactory = Callable[[Config, UserConfig], ExchangeBackend]
_Client = TypeVar("_Client", GoogleBackend, ExchangeBackend)


def _google(config: Config, user: UserConfig) -> GoogleBackend:
    from sync.backends.google import GoogleCalendar

    return GoogleCalendar(config, user)


def _exchange(config: Config, user: UserConfig) -> ExchangeBackend:
    from sync.backends.exchange import ExchangeMailbox

    return ExchangeMailbox(config, user)


class Clients:
    """The clients of every configured user, made on first use. Thread-safe: a client is
    made once however many threads ask for it at the same time, and making one user's
    client never waits for another user's. A client whose making failed (a missing
    password, an unreadable token file) is not kept: the next call tries again. A user
    whose configuration changed gets new clients."""

    def __init__(
        self,
        config: Config,
        google_factory: GoogleFactory = _google,
        exchange_factory: ExchangeFactory = _exchange,
    ) -> None:
        self.config = config
        self._google_factory = google_factory
        self._exchange_factory = exchange_factory
        self._lock = threading.Lock()
        self._making: dict[tuple[str, Side], threading.Lock] = {}
        self._google: dict[str, tuple[UserConfig, GoogleBackend]] = {}
        self._exchange: dict[str, tuple[UserConfig, ExchangeBackend]] = {}

    def google(self, user: UserConfig) -> GoogleBackend:
        return self._get(user, "google", self._google, self._google_factory)

    def exchange(self, user: UserConfig) -> ExchangeBackend:
        return self._get(user, "exchange", self._exchange, self._exchange_factory)

    def forget(self, mailbox: str) -> None:
        """Drop the user's clients (the next call makes new ones)."""
        with self._lock:
            self._google.pop(mailbox, None)
            self._exchange.pop(mailbox, None)

    def _get(
        self,
        user: UserConfig,
        side: Side,
        cache: dict[str, tuple[UserConfig, _Client]],
        factory: Callable[[Config, UserConfig], _Client],
    ) -> _Client:
        with self._lock:
            kept = cache.get(user.mailbox)
            if kept is not None and kept[0] == user:
                return kept[1]
            making = self._making.setdefault((user.mailbox, side), threading.Lock())
        with making:  # one maker per user and side; other users' go on meanwhile
            with self._lock:
                kept = cache.get(user.mailbox)
                if kept is not None and kept[0] == user:
                    return kept[1]
            client = factory(self.config, user)
            with self._lock:
                cache[user.mailbox] = (user, client)
            return client
