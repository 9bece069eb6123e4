"""Notification subscriptions of the EWS stand-in: the mailboxes' event tables, pull and
streaming subscriptions, the open streaming connections, and the limits Exchange puts on
them. No HTTP and no XML here (`services/subscribe.py`, `get_events.py` and
`get_streaming_events.py` answer the operations; `server.py` holds the connections).

What it follows:
- https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/notification-subscriptions-mailbox-events-and-ews-in-exchange
- https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-maintain-affinity-between-group-of-subscriptions-and-mailbox-server
  (affinity: X-AnchorMailbox, X-PreferServerAffinity, the X-BackEndOverrideCookie a
  Subscribe answers with; the subscription owner is the account that created it; the
  connection and subscription budgets are the target mailbox's when impersonating:
  HangingConnectionLimit 3 on-premises, EWSMaxSubscriptions 5000 on-premises)
- https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/handling-notification-related-errors-in-ews-in-exchange
  (ErrorExceededConnectionCount, ErrorExceededSubscriptionCount, ErrorInvalidWatermark,
  ErrorMissedNotificationEvents, ErrorSubscriptionNotFound after an EWS restart)
- https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getevents-operation
  (at most 50 events a notification; the subscription's timeout starts over on each call)

Each mailbox's event table lives with the mailbox (the store), so a watermark outlives an
EWS restart; subscriptions and connections live in the EWS process and a `recycle()` (an
application pool recycle) loses them. A watermark names a position in one mailbox's event
table; one older than the table keeps is lost (ErrorInvalidWatermark). Time here is
`time.monotonic`, with a configurable length of a minute so that tests need not wait for
Exchange's.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import itertools
import secrets
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from emulators.ews import ids
from emulators.ews.mailbox import Change, Store
from ews_parser import EwsResponseError

#: The event types a subscription may ask for (NotificationEventTypeType).
EVENT_TYPES: Final = frozenset({
    "CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent",
    "NewMailEvent", "FreeBusyChangedEvent",
})

#: Exchange's wording for each code these operations answer with.
MESSAGES: Final = {
    "ErrorSubscriptionNotFound": "The specified subscription was not found.",
    "ErrorInvalidSubscription": "Subscription is invalid.",
    "ErrorInvalidPullSubscriptionId": "The subscription is not a pull subscription.",
    "ErrorSubscriptionAccessDenied": "Access is denied. Only the subscription owner may"
    " access the subscription.",
    "ErrorInvalidWatermark": "Watermark is invalid.",
    "ErrorMissedNotificationEvents": "Events were missed for this subscription.",
    "ErrorExceededConnectionCount": "You have exceeded the available concurrent connections"
    " for your account.  Try again once your other requests have completed.",
    "ErrorExceededSubscriptionCount": "You have exceeded the available subscriptions for your"
    " account. Remove unnecessary subscriptions and try your request again.",
    "ErrorSubscriptionDelegateAccessNotSupported": "Subscriptions are not supported for"
    " delegate user access.",
    "ErrorInvalidSubscriptionRequest": "The subscription request is invalid.",
}


def error(code: str, message: str | None = None) -> EwsResponseError:
    return EwsResponseError(code, message or MESSAGES.get(code, code))


@dataclass(frozen=True, slots=True)
class Policy:
    """Exchange's notification limits and timings (the defaults are Exchange 2016
    on-premises'); `minute` and `heartbeat` are seconds of real time."""

    #: streaming connections open at once per budget (HangingConnectionLimit; Online: 10)
    hanging_connection_limit: int = 3
    #: live subscriptions per budget (EWSMaxSubscriptions; Online: 20)
    max_subscriptions: int = 5000
    #: subscription ids one GetStreamingEvents may name
    max_subscriptions_per_connection: int = 200
    #: events in one notification (GetEvents' and a stream's)
    events_per_notification: int = 50
    #: the length of a minute of ConnectionTimeout and of a pull subscription's Timeout
    minute: float = 60.0
    #: seconds between the ConnectionStatus OK messages of an idle stream
    heartbeat: float = 45.0
    #: minutes a streaming subscription lives without an open connection
    streaming_lifetime: int = 30
    #: events each mailbox's event table keeps (older watermarks are lost)
    event_retention: int = 100_000
    #: mailbox servers behind the stand-in (affinity decides which one a request reaches)
    backends: int = 1

    def __post_init__(self) -> None:
        for name in ("hanging_connection_limit", "max_subscriptions",
                     "max_subscriptions_per_connection", "events_per_notification",
                     "event_retention", "backends"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.minute <= 0 or self.heartbeat <= 0:
            raise ValueError("minute and heartbeat must be positive")


# --- identifiers ---------------------------------------------------------------------

_WATERMARK_PREFIX: Final = b"\x01\x00\x00\x00"
_GUID_LENGTH: Final = b"\x10\x00\x00\x00"


def backend_name(index: int) -> str:
    return f"mbx{index + 1:02d}.stand-in.local"


def watermark(address: str, seq: int) -> str:
    """A position in the mailbox's event table (Exchange's is a base64 blob too)."""
    return base64.b64encode(_WATERMARK_PREFIX + ids.mailbox_tag(address)[:16]
                            + struct.pack("<Q", seq)).decode("ascii")


def read_watermark(text: str, address: str) -> int | None:
    """The position a watermark of `address`'s table names, None for anything else."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    head = _WATERMARK_PREFIX + ids.mailbox_tag(address)[:16]
    if len(raw) != len(head) + 8 or not raw.startswith(head):
        return None
    seq: int = struct.unpack("<Q", raw[len(head):])[0]
    return seq


def new_subscription_id(backend: int) -> str:
    """Shaped as Exchange's: the length-prefixed name of the mailbox server that holds
    the subscription, then a GUID and 8 more bytes."""
    name = backend_name(backend).encode("ascii")
    return base64.b64encode(struct.pack("<H", len(name)) + name + _GUID_LENGTH
                            + secrets.token_bytes(24)).decode("ascii")


def well_formed_subscription_id(text: str) -> bool:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    if len(raw) < 2:
        return False
    size: int = struct.unpack("<H", raw[:2])[0]
    rest = raw[2 + size:]
    return len(rest) == 28 and rest.startswith(_GUID_LENGTH)


# --- the event tables ----------------------------------------------------------------


@dataclass(slots=True)
class EventTable:
    """One mailbox's events, numbered from 1; `floor` is the first one still kept."""

    retention: int
    events: collections.deque[Change] = field(default_factory=collections.deque)
    latest: int = 0

    @property
    def floor(self) -> int:
        return self.latest - len(self.events) + 1

    def add(self, change: Change) -> int:
        self.latest += 1
        self.events.append(change)
        while len(self.events) > self.retention:
            self.events.popleft()
        return self.latest

    def kept(self, seq: int) -> bool:
        """Whether every event after `seq` is still here (a watermark that is not lost)."""
        return self.floor - 1 <= seq <= self.latest

    def after(self, seq: int) -> Iterable[tuple[int, Change]]:
        start = max(seq + 1, self.floor)
        return zip(itertools.count(start),
                   itertools.islice(self.events, start - self.floor, None), strict=False)


# --- subscriptions and connections ---------------------------------------------------


@dataclass(slots=True)
class Subscription:
    id: str
    streaming: bool
    #: the authenticated account that created it (only it may use it)
    owner: str
    #: whose budget it counts against: the impersonated mailbox, or the owner
    budget: str
    mailbox: str
    backend: int
    #: FolderIds watched; None for SubscribeToAllFolders
    folders: frozenset[str] | None
    event_types: frozenset[str]
    #: minutes without a GetEvents (pull) or without a connection (streaming) it lives
    timeout: int
    #: pull: the position the client last confirmed; streaming: the last one delivered
    position: int
    last_used: float
    connection: Connection | None = None

    def wants(self, change: Change) -> bool:
        if change.kind + "Event" not in self.event_types:
            return False
        if self.folders is None:
            return True
        watched = self.folders
        return (change.parent[0] in watched or change.id in watched
                or (change.old_parent is not None and change.old_parent[0] in watched))

    def expired(self, now: float, minute: float) -> bool:
        if self.connection is not None:
            return False
        return now - self.last_used > self.timeout * minute


class Connection:
    """An open GetStreamingEvents: its subscriptions, its deadline, and a socket pair the
    hub writes to so that the thread serving it wakes up (no polling)."""

    def __init__(self, budget: str, owner: str, deadline: float) -> None:
        self.budget = budget
        self.owner = owner
        self.deadline = deadline
        self.subscriptions: list[Subscription] = []
        #: why it must end now: "closed" (no subscription left), "lost" (EWS restarted)
        self.ending: str | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def fileno(self) -> int:
        """Readable when the hub has news for this connection (for select)."""
        return self._wake_r.fileno()

    def wake(self) -> None:
        # OSError: already awake (the buffer is full) or closed
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def close(self) -> None:
        self._wake_r.close()
        self._wake_w.close()


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request lands: the mailbox server, and whether it asked for affinity (the
    Subscribe that does gets an X-BackEndOverrideCookie)."""

    backend: int
    affinity: bool = False


#: (the subscription, the events for it, the position after them)
Batch = tuple[Subscription, list[tuple[int, Change]], int]


class Hub:
    """Every subscription and streaming connection of one stand-in, and the event tables
    of its mailboxes. Thread safe; its lock is taken after the store's, never before."""

    def __init__(self, store: Store, policy: Policy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or Policy()
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._tables: dict[str, EventTable] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._by_mailbox: dict[str, set[str]] = collections.defaultdict(set)
        self._connections: set[Connection] = set()
        self._addresses = set(store.addresses())
        store.observe(self.record)

    # -- the event tables (the store calls this under its lock)

    def record(self, address: str, change: Change) -> None:
        with self._lock:
            self._addresses.add(address)
            self._table(address).add(change)
            for sub_id in self._by_mailbox.get(address, ()):
                sub = self._subscriptions[sub_id]
                if sub.connection is not None and sub.wants(change):
                    sub.connection.wake()

    def _table(self, address: str) -> EventTable:
        table = self._tables.get(address)
        if table is None:
            table = self._tables[address] = EventTable(self.policy.event_retention)
        return table

    def now(self) -> float:
        return self._clock()

    # -- affinity

    def home(self, address: str) -> int:
        """The mailbox server a mailbox lives on."""
        return zlib.crc32(address.lower().encode("utf-8")) % self.policy.backends

    def route(self, headers: Mapping[str, str], acting: str) -> Route:
        """The mailbox server a request reaches: the one its X-BackEndOverrideCookie names
        when it prefers affinity, else its X-AnchorMailbox's, else the acting mailbox's.
        `headers` by lower-case name. The cookie is read as a cookie (the EWS Managed API)
        or as a header of that name (exchangelib)."""
        prefer = (headers.get("x-preferserveraffinity") or "").strip().lower() == "true"
        anchor = (headers.get("x-anchormailbox") or "").strip().lower()
        if prefer:
            backend = _cookie_backend(headers, self.policy.backends)
            if backend is not None:
                return Route(backend, affinity=bool(anchor))
        if anchor and anchor in self._addresses:
            return Route(self.home(anchor), affinity=prefer)
        return Route(self.home(acting), affinity=prefer and bool(anchor))

    def cookie(self, route: Route, secure: bool) -> str:
        value = f"{backend_name(route.backend)}~{zlib.crc32(backend_name(route.backend).encode())}"
        return f"X-BackEndOverrideCookie={value}; path=/;{' secure;' if secure else ''} HttpOnly"

    # -- subscribing

    def subscribe(self, *, streaming: bool, owner: str, budget: str, mailbox: str,
                  route: Route, folders: frozenset[str] | None, event_types: frozenset[str],
                  timeout: int | None = None, start: str | None = None) -> tuple[str, str]:
        """A new subscription; its id and (pull) the watermark to start from."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if sum(1 for s in self._subscriptions.values() if s.budget == budget) \
                    >= self.policy.max_subscriptions:
                raise error("ErrorExceededSubscriptionCount")
            table = self._table(mailbox)
            position = table.latest
            if start is not None:
                seq = read_watermark(start, mailbox)
                if seq is None or not table.kept(seq):
                    raise error("ErrorInvalidWatermark")
                position = seq
            sub = Subscription(
                id=new_subscription_id(route.backend), streaming=streaming, owner=owner,
                budget=budget, mailbox=mailbox, backend=route.backend, folders=folders,
                event_types=event_types,
                timeout=self.policy.streaming_lifetime if streaming else timeout or 1,
                position=position, last_used=now)
            self._subscriptions[sub.id] = sub
            self._by_mailbox[mailbox].add(sub.id)
            return sub.id, watermark(mailbox, position)

    def unsubscribe(self, sub_id: str, owner: str, route: Route) -> None:
        with self._lock:
            sub = self._find(sub_id, route)
            if sub.owner != owner:
                raise error("ErrorSubscriptionAccessDenied")
            self._drop(sub)

    def _find(self, sub_id: str, route: Route) -> Subscription:
        if not well_formed_subscription_id(sub_id):
            raise error("ErrorInvalidSubscription")
        self._expire(self._clock())
        sub = self._subscriptions.get(sub_id)
        # A subscription lives on one mailbox server: a request routed elsewhere does not
        # find it (what affinity is for).
        if sub is None or sub.backend != route.backend:
            raise error("ErrorSubscriptionNotFound")
        return sub

    def _drop(self, sub: Subscription) -> None:
        del self._subscriptions[sub.id]
        self._by_mailbox[sub.mailbox].discard(sub.id)
        connection = sub.connection
        if connection is not None:
            connection.subscriptions.remove(sub)
            sub.connection = None
            if not connection.subscriptions:
                connection.ending = "closed"
            connection.wake()

    def _expire(self, now: float) -> None:
        for sub in [s for s in self._subscriptions.values()
                    if s.expired(now, self.policy.minute)]:
            self._drop(sub)

    # -- pull

    def get_events(self, sub_id: str, mark: str, owner: str,
                   route: Route) -> tuple[Subscription, list[tuple[int, Change]], int, int, bool]:
        """GetEvents: the next events of the subscription's queue (at most one
        notification's worth), which leave it; the position before and after them, and
        whether more wait. As Exchange documents it, the queue goes on from the last
        event returned: `mark` must be a watermark of the mailbox the table still keeps
        (exchangelib sends the same one again while MoreEvents), but it does not rewind."""
        with self._lock:
            sub = self._find(sub_id, route)
            if sub.owner != owner:
                raise error("ErrorSubscriptionAccessDenied")
            if sub.streaming:
                raise error("ErrorInvalidPullSubscriptionId")
            table = self._table(sub.mailbox)
            seq = read_watermark(mark, sub.mailbox)
            if seq is None or not table.kept(seq) or not table.kept(sub.position):
                raise error("ErrorInvalidWatermark")
            previous = sub.position
            events, sub.position, more = self._take(sub, table, previous)
            sub.last_used = self._clock()
            return sub, events, previous, sub.position, more

    def _take(self, sub: Subscription, table: EventTable,
              seq: int) -> tuple[list[tuple[int, Change]], int, bool]:
        limit = self.policy.events_per_notification
        events: list[tuple[int, Change]] = []
        position = seq
        for number, change in table.after(seq):
            if sub.wants(change):
                if len(events) == limit:
                    return events, position, True
                events.append((number, change))
            position = number
        return events, position, False

    # -- streaming

    def connect(self, sub_ids: list[str], owner: str, budget: str, route: Route,
                timeout_minutes: int) -> Connection:
        """Open a streaming connection for `sub_ids`. Raises ErrorExceededConnectionCount,
        or a `StreamRefused` naming the ids that cannot be streamed."""
        with self._lock:
            now = self._clock()
            bad: list[tuple[str, str]] = []
            subs: list[Subscription] = []
            for sub_id in sub_ids:
                try:
                    sub = self._find(sub_id, route)
                    if not sub.streaming or sub.owner != owner:
                        raise error("ErrorInvalidSubscription")
                    table = self._table(sub.mailbox)
                    if not table.kept(sub.position):
                        # The table moved past what was never delivered.
                        self._drop(sub)
                        raise error("ErrorMissedNotificationEvents")
                except EwsResponseError as exc:
                    bad.append((sub_id, exc.code))
                    continue
                if sub not in subs:
                    subs.append(sub)
            if bad:
                raise StreamRefused(bad)
            if sum(1 for c in self._connections if c.budget == budget and c.ending is None) \
                    >= self.policy.hanging_connection_limit:
                raise error("ErrorExceededConnectionCount")
            connection = Connection(budget, owner, now + timeout_minutes * self.policy.minute)
            for sub in subs:
                previous = sub.connection
                if previous is not None:
                    # A subscription streams on one connection: the newer takes it over.
                    previous.subscriptions.remove(sub)
                    if not previous.subscriptions:
                        previous.ending = "closed"
                    previous.wake()
                sub.connection = connection
                sub.last_used = now
                connection.subscriptions.append(sub)
            self._connections.add(connection)
            return connection

    def pending(self, connection: Connection) -> tuple[list[Batch], bool]:
        """The events waiting for each subscription of the connection (at most one
        notification's worth each), not yet marked delivered, and whether more wait.
        Taken under the store's lock too, so that a request's events (a create's item
        and folder) come in one notification, never split by a request under way."""
        with self._store.lock, self._lock:
            out: list[Batch] = []
            more = False
            for sub in connection.subscriptions:
                events, position, rest = self._take(sub, self._table(sub.mailbox), sub.position)
                more = more or rest
                if events or position != sub.position:
                    out.append((sub, events, position))
            return out, more

    def delivered(self, batches: Iterable[Batch]) -> None:
        with self._lock:
            for sub, _, position in batches:
                sub.position = max(sub.position, position)

    def disconnect(self, connection: Connection) -> None:
        """The connection ended: its subscriptions wait for the next one."""
        with self._lock:
            now = self._clock()
            for sub in connection.subscriptions:
                sub.connection = None
                sub.last_used = now
            connection.subscriptions.clear()
            self._connections.discard(connection)
        connection.close()

    # -- the EWS process

    def recycle(self) -> None:
        """An application pool recycle: every subscription is lost and every open stream
        breaks off; the event tables (the store's) stay."""
        with self._lock:
            for connection in self._connections:
                connection.ending = "lost"
                connection.wake()
            for sub in self._subscriptions.values():
                sub.connection = None
            self._subscriptions.clear()
            self._by_mailbox.clear()

    def status(self) -> dict[str, object]:
        """For the admin surface and benchmarks: what is open, per budget."""
        with self._lock:
            self._expire(self._clock())
            per_budget: dict[str, dict[str, int]] = {}
            for sub in self._subscriptions.values():
                entry = per_budget.setdefault(sub.budget, {"subscriptions": 0, "connections": 0})
                entry["subscriptions"] += 1
            live = [c for c in self._connections if c.ending is None]
            for connection in live:
                entry = per_budget.setdefault(connection.budget,
                                              {"subscriptions": 0, "connections": 0})
                entry["connections"] += 1
            return {"subscriptions": len(self._subscriptions), "connections": len(live),
                    "budgets": per_budget}


class StreamRefused(Exception):
    """GetStreamingEvents names subscriptions it cannot stream: (id, code) of each."""

    def __init__(self, bad: list[tuple[str, str]]) -> None:
        super().__init__(bad[0][1])
        self.bad = bad
        self.code = bad[0][1]


def _cookie_backend(headers: Mapping[str, str], backends: int) -> int | None:
    values = [headers.get("x-backendoverridecookie") or ""]
    for part in (headers.get("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "X-BackEndOverrideCookie":
            values.append(value)
    for value in values:
        name = value.strip().split("~", 1)[0].lower()
        for index in range(backends):
            if name == backend_name(index):
                return index
    return None
