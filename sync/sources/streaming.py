"""Changes that never pass the proxy, within a second: EWS streaming notifications.

Classic Outlook (MAPI/HTTP), phones and web mail change the calendar without EWS; Exchange
tells subscribers at once. Each configured user's calendar gets a streaming subscription;
a notification is a **trigger**, never a change to apply: the user's Exchange feed
(SyncFolderItems, its SyncState stored) stays the source of truth, so nothing is lost
when a notification is. Its item events become change notices for the reconciler's
`known` (`Reconciler.known`): when the pair holds every one already (an echo of calsync's
own write, by its ChangeKey) or a source has it in hand (the proxy's outbox entry), the
notification costs no run. Exchange may tell of a change before its writer has recorded
it (calsync's job between its write and the record, the proxy between the response and its
outbox entry): while a writer may be at work (`busy`: the user's run in flight, an EWS
request through the proxy lately), what is not known at once is looked at again
`settle_s` after it came (one look for what came meanwhile; a change that came late in a
look's wait waits its own `settle_s` more), and only then triggers the user's run; else
it triggers at once.

- Connections: with impersonation, up to `per_connection` users (Exchange's limit is 200)
  share one connection anchored on the group's first mailbox; with each user's own
  credentials, one connection per user.
- Each connection lasts `connection_timeout` minutes (at most 30) and is opened again at
  once: the subscriptions outlive it, nothing is missed.
- After any gap (start, a lost subscription, an outage, back-off) the users concerned
  are triggered: their feed catches up from its stored SyncState.
- ErrorSubscriptionNotFound (and expired or invalid subscriptions, lost watermarks):
  subscribe again. ErrorServerBusy: wait BackOffMilliseconds. Anything else: back off
  exponentially (1 s to 5 min). ErrorExceededConnectionCount or
  ErrorExceededSubscriptionCount: the group falls back to pull subscriptions (GetEvents
  every `pull_interval` seconds).
- `stop()` ends every connection at once (shutdown within seconds, never the timeout).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.backends import notifications as ews
from sync.backends.clients import Clients
from sync.backends.exchange import ExchangeMailbox
from sync.config import Config, UserConfig
from sync.core.notice import ChangeNotice
from sync.ops import metrics

log = logging.getLogger("calsync.streaming")

MAX_BACKOFF_S = 300.0
#: sessions an Exchange client keeps beside its streams, for the job's calls and
#: (re)subscribing (sync/backends/exchange.py gives each client one stream and this room)
ROOM_BESIDE_STREAMS = 3
#: how long a notification's change that is not known yet waits for its writer's record
#: (a proxy's outbox entry, calsync's own write) before it triggers a run
SETTLE_S = 0.2


@dataclass
class Group:
    """The users one connection serves, and how it fares (for status and metrics)."""

    users: list[UserConfig]
    mode: str = "streaming"  # or "pull"
    #: subscription id -> user, for the connection's current subscriptions
    subscriptions: dict[str, UserConfig] = field(default_factory=dict)
    #: pull mode: subscription id -> watermark
    watermarks: dict[str, str | None] = field(default_factory=dict)
    #: subscription id -> the calendar's FolderId (a move's direction)
    calendars: dict[str, str] = field(default_factory=dict)
    connected: bool = False
    reconnects: int = 0
    last_error: str | None = None
    stream: ews.Stream | None = None


class Streaming:
    def __init__(
        self,
        config: Config,
        clients: Clients,
        trigger: Callable[[UserConfig], None],
        *,
        known: Callable[[ChangeNotice], bool] | None = None,
        busy: Callable[[UserConfig], bool] | None = None,
        settle_s: float = SETTLE_S,
        connection_timeout: int = 29,
        per_connection: int = 200,
        pull_interval: float = 10.0,
        pull_timeout: int = 30,
    ) -> None:
        if not 1 <= connection_timeout <= 30:
            raise ValueError("connection_timeout is in minutes, 1 to 30")
        self.config = config
        self.clients = clients
        self.trigger = metrics.streaming_source(self, trigger)  # counted in /metrics
        self.known = known
        self.busy = busy
        self.settle_s = settle_s
        self.held = 0  # notifications that needed no run
        #: per mailbox, the look due and what it looks at: (when each came, the notice)
        self._settling: dict[str, tuple[threading.Timer, list[tuple[float, ChangeNotice]]]] = {}
        self._settle_lock = threading.Lock()
        self.connection_timeout = connection_timeout
        self.per_connection = max(1, min(200, per_connection))
        self.pull_interval = pull_interval
        self.pull_timeout = pull_timeout
        self.groups: list[Group] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, users: Sequence[UserConfig] | None = None) -> None:
        chosen = [
            u for u in (users if users is not None else self.config.users) if u.mirrors_to_google
        ]
        if not chosen or not self.config.exchange_ews_url:
            return
        self.groups = self._grouped(chosen)
        self._make_room()
        for number, group in enumerate(self.groups):
            thread = threading.Thread(
                target=self._run, args=(group,), name=f"calsync-streaming-{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End every connection now; wait at most `timeout` seconds in all."""
        self._stop.set()
        with self._settle_lock:
            settling, self._settling = list(self._settling.values()), {}
        for timer, _ in settling:
            timer.cancel()
        for group in self.groups:
            if group.stream is not None:
                group.stream.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def _grouped(self, users: list[UserConfig]) -> list[Group]:
        if self.config.exchange_impersonation_username:
            size = self.per_connection
            return [Group(users[i : i + size]) for i in range(0, len(users), size)]
        return [Group([user]) for user in users]

    def _make_room(self) -> None:
        """With impersonation every user's client shares one exchangelib protocol (one per
        endpoint and credentials) and so one pool of sessions, which each open stream
        holds one of for its whole connection: the pool must hold every group's stream
        and room beside them, else the streams past the pool's size, and every call of
        every user's sync, wait for a session for ever."""
        streams: dict[int, tuple[Any, int]] = {}
        for group in self.groups:
            try:
                protocol = self._mailbox(group.users[0]).account.protocol
            except Exception:  # noqa: S112 - no client (a password missing): the group's thread says so
                continue
            _, count = streams.get(id(protocol), (protocol, 0))
            streams[id(protocol)] = (protocol, count + 1)
        for protocol, count in streams.values():
            protocol.max_connections = max(protocol.max_connections, count + ROOM_BESIDE_STREAMS)

    # --- one connection -------------------------------------------------------------------

    def _mailbox(self, user: UserConfig) -> ExchangeMailbox:
        mailbox = self.clients.exchange(user)
        assert isinstance(mailbox, ExchangeMailbox)
        return mailbox

    def _run(self, group: Group) -> None:
        failures = 0
        gap = True  # at start, the feed catches up
        while not self._stop.is_set():
            try:
                self._subscribe(group, gap)
                gap = False
                if group.mode == "streaming":
                    self._stream(group)
                else:
                    self._pull(group)
                failures = 0
            except ews.NotificationError as exc:
                group.connected = False
                group.last_error = exc.code
                if self._stop.is_set():
                    return
                gap = True
                wait = self._after(group, exc, failures)
                failures += 1
                self._stop.wait(wait)
            except Exception as exc:  # a bug or a library's: log, back off, go on
                group.connected = False
                group.last_error = type(exc).__name__
                log.error("streaming for %s: %s: %s", _names(group), type(exc).__name__, exc)
                gap = True
                failures += 1
                self._stop.wait(_backoff(failures))

    def _after(self, group: Group, exc: ews.NotificationError, failures: int) -> float:
        """What to do after `exc`; how long to wait first."""
        if exc.trouble in ("subscription-gone", "watermark"):
            log.info("streaming for %s: %s; subscribing again", _names(group), exc.code)
            group.subscriptions.clear()
            group.watermarks.clear()
            group.calendars.clear()
            return 0.0 if failures == 0 else _backoff(failures)
        if exc.trouble == "busy":
            wait = exc.back_off if exc.back_off is not None else _backoff(failures + 1)
            log.info("streaming for %s: Exchange busy; waiting %.1f s", _names(group), wait)
            return wait
        if exc.trouble in ("connections", "subscriptions") and group.mode == "streaming":
            log.warning(
                "streaming for %s refused (%s): pulling every %.0f s instead",
                _names(group),
                exc.code,
                self.pull_interval,
            )
            group.mode = "pull"
            group.subscriptions.clear()
            group.calendars.clear()
            return 0.0
        wait = _backoff(failures + 1)
        log.warning("streaming for %s: %s; again in %.0f s", _names(group), exc.code, wait)
        return wait

    def _subscribe(self, group: Group, gap: bool) -> None:
        """Subscribe the group's users that hold no subscription (streaming or pull, as
        the group runs); after a gap, or a new subscription, every user's feed catches up."""
        missing = _unsubscribed(group)
        for user in missing:
            mailbox = self._mailbox(user)
            if group.mode == "streaming":
                subscription_id = ews.subscribe_streaming(mailbox)
            else:
                subscription_id, watermark = ews.subscribe_pull(mailbox, self.pull_timeout)
                group.watermarks[subscription_id] = watermark
            group.subscriptions[subscription_id] = user
            group.calendars[subscription_id] = mailbox.calendar_folder_id()
        if gap or missing:
            for user in group.users:
                self.trigger(user)

    def _stream(self, group: Group) -> None:
        stream = ews.Stream(self._mailbox(group.users[0]))
        group.stream = stream
        if self._stop.is_set():
            return
        group.connected = True
        try:
            for notified in stream.notifications(
                list(group.subscriptions), self.connection_timeout, group.calendars
            ):
                user = group.subscriptions.get(notified.subscription_id)
                if user is not None:
                    self._notified(user, notified.items)
        finally:
            group.connected = False
            group.stream = None
        group.reconnects += 1  # the connection's timeout: open it again at once

    def _pull(self, group: Group) -> None:
        group.connected = True
        for subscription_id, user in list(group.subscriptions.items()):
            pulled = ews.pull(
                self._mailbox(user), subscription_id, group.watermarks.get(subscription_id)
            )
            group.watermarks[subscription_id] = pulled.watermark
            if pulled.changed:
                self._notified(user, pulled.items)
        self._stop.wait(self.pull_interval)

    def _notified(self, user: UserConfig, items: tuple[ews.ItemEvent, ...] | None) -> None:
        """The user's calendar changed: the user's run, unless each item change told is
        one the pair holds or a source has in hand (`known`), at once or, while a writer
        may be at work (`busy`; None: always), `settle_s` later (one look for all that came
        meanwhile). A notification whose changes cannot be told item by item, or a store
        that cannot answer, leaves it to the feed."""
        if items is None or self.known is None:
            self.trigger(user)
            return
        notices = [
            ChangeNotice(user.mailbox, "exchange", i.item_id, i.change_key, i.kind, "streaming")
            for i in items
        ]
        unknown = self._unknown(user, notices)
        if unknown is None:
            self.trigger(user)
        elif not unknown:
            self._held()
        elif self.settle_s <= 0 or (self.busy is not None and not self._busy(user)):
            self.trigger(user)
        else:
            now = time.monotonic()
            self._settle(user, [(now, notice) for notice in unknown], self.settle_s)

    def _settle(
        self, user: UserConfig, notices: list[tuple[float, ChangeNotice]], wait: float
    ) -> None:
        """Look at `notices` again in `wait` seconds, or with the look already due."""
        with self._settle_lock:
            if self._stop.is_set():
                return
            pending = self._settling.get(user.mailbox)
            if pending is not None:  # one look is due already: it covers these too
                pending[1].extend(notices)
                return
            timer = threading.Timer(wait, self._settled, args=(user,))
            timer.daemon = True
            self._settling[user.mailbox] = (timer, list(notices))
        timer.start()

    def _settled(self, user: UserConfig) -> None:
        with self._settle_lock:
            pending = self._settling.pop(user.mailbox, None)
        if pending is None:  # stopped meanwhile
            return
        unknown = self._unknown(user, [notice for _, notice in pending[1]])
        if unknown == []:
            self._held()
            return
        if unknown is None:  # the store could not say: the feed decides
            self.trigger(user)
            return
        now = time.monotonic()
        still = {id(notice) for notice in unknown}
        young = [(came, n) for came, n in pending[1] if id(n) in still]
        if any(now - came >= 0.95 * self.settle_s for came, _ in young):
            self.trigger(user)  # waited its settle_s and still not known: the run covers all
        else:  # each came late in this look's wait: its own settle_s first
            self._settle(user, young, self.settle_s - (now - min(came for came, _ in young)))

    def _unknown(self, user: UserConfig, notices: list[ChangeNotice]) -> list[ChangeNotice] | None:
        """The notices `known` does not hold (None: the store could not say)."""
        assert self.known is not None
        try:
            return [notice for notice in notices if not self.known(notice)]
        except Exception as exc:  # the store away: the feed decides
            log.warning("streaming for %s: %s", user.mailbox, type(exc).__name__)
            return None

    def _busy(self, user: UserConfig) -> bool:
        assert self.busy is not None
        try:
            return self.busy(user)
        except Exception:  # waiting a little more is harmless
            return True

    def _held(self) -> None:
        self.held += 1
        metrics.NOTIFICATIONS_HELD.labels("streaming").inc()


def _backoff(failures: int) -> float:
    base = min(MAX_BACKOFF_S, 2.0 ** max(0, failures - 1))
    return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


def _unsubscribed(group: Group) -> list[UserConfig]:
    held = {user.mailbox for user in group.subscriptions.values()}
    return [user for user in group.users if user.mailbox not in held]


def _names(group: Group) -> str:
    first = group.users[0].mailbox
    return first if len(group.users) == 1 else f"{first} and {len(group.users) - 1} more"
