"""What calsync's state *is*, read at scrape time (a prometheus_client custom collector):
outbox depth and the age of its oldest entry, quarantined entries, live push channels,
streaming connections and their subscriptions, lease holders, users and paused users.

One scrape reads the outbox's pending and quarantined entries, the push channels and, on a
shared store, each user's lease: a handful of indexed queries. Reads are cached for
`ttl` seconds, so that several scrapers (and the console) cost one read. Per-user families
(`[admin] per_user_metrics = true`) add three series per user: with hundreds of users that
is thousands of series a scrape, hence off by default.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sync.config import Config
from sync.ops import metrics
from sync.store import Store


@dataclass(slots=True)
class Snapshot:
    """The state one scrape reports."""

    store_up: bool = True
    depth: int = 0
    oldest_age_s: float = 0.0
    quarantined: int = 0
    channels: int = 0
    by_user_depth: Counter[str] = field(default_factory=Counter)
    by_user_quarantined: Counter[str] = field(default_factory=Counter)
    last_sync_age: dict[tuple[str, str], float] = field(default_factory=dict)
    lease_holders: Counter[str] = field(default_factory=Counter)
    paused: int = 0


class StateCollector(Collector):
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        per_user: bool = False,
        clock: Callable[[], float] = time.time,
        ttl: float = 2.0,
    ) -> None:
        self.config = config
        self.store = store
        self.per_user = per_user
        self.clock = clock
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        now = self.clock()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1]
            snap = self._read(now)
            self._cached = (now, snap)
            return snap

    def _read(self, now: float) -> Snapshot:
        snap = Snapshot()
        try:
            paused = self.store.paused()  # one query, not one per user
            snap.paused = sum(1 for u in self.config.users if u.mailbox in paused)
            pending = self.store.pending()
            quarantined = self.store.quarantined()
            channels = self.store.channels()
            if self.store.shared:
                for user in self.config.users:
                    lease = self.store.state.leases.holder(user.mailbox, now=now)
                    if lease is not None:
                        snap.lease_holders[lease.holder] += 1
            if self.per_user:
                for user in self.config.users:
                    cursor = self.store.sync_state(user.mailbox)
                    for side in ("exchange", "google"):
                        last = cursor.get(f"last_{side}_sync")
                        if last:
                            snap.last_sync_age[(user.mailbox, side)] = max(0.0, now - last)
        except Exception:  # the store did not answer: say so, report nothing else
            return Snapshot(store_up=False)  # a store that does not answer pauses nobody
        snap.depth = len(pending)
        snap.oldest_age_s = max((now - e.created_at for e in pending), default=0.0)
        snap.quarantined = len(quarantined)
        snap.channels = sum(1 for c in channels if c.expiration > now)
        snap.by_user_depth.update(e.mailbox for e in pending)
        snap.by_user_quarantined.update(e.mailbox for e in quarantined)
        return snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        yield _gauge(
            "calsync_store_up", "1 when the state store answered this scrape", 1.0 * snap.store_up
        )
        yield _gauge("calsync_users", "Configured users", len(self.config.users))
        yield _gauge("calsync_users_paused", "Users paused in the admin console", snap.paused)
        yield _gauge("calsync_outbox_depth", "Outbox entries waiting to be written", snap.depth)
        yield _gauge(
            "calsync_outbox_oldest_age_seconds",
            "Age of the oldest pending outbox entry (0: none)",
            snap.oldest_age_s,
        )
        yield _gauge(
            "calsync_outbox_quarantined",
            "Outbox entries quarantined (calsync status; retry or discard in the console)",
            snap.quarantined,
        )
        yield _gauge("calsync_push_channels", "Live Google push channels", snap.channels)
        groups = list(_groups())
        subscriptions = sum(len(g.subscriptions) for g in groups if g.connected)
        yield _gauge(
            "calsync_streaming_subscriptions",
            "EWS streaming subscriptions on connections that are up",
            subscriptions,
        )
        connections = GaugeMetricFamily(
            "calsync_streaming_connections",
            "EWS streaming connections, by state (up, down)",
            labels=["state"],
        )
        connections.add_metric(["up"], sum(1 for g in groups if g.connected))
        connections.add_metric(["down"], sum(1 for g in groups if not g.connected))
        yield connections
        leases = GaugeMetricFamily(
            "calsync_lease_holders",
            "Users whose lease each node holds (a store nodes share; none on SQLite)",
            labels=["holder"],
        )
        for holder, count in sorted(snap.lease_holders.items()):
            leases.add_metric([holder], count)
        yield leases
        if self.per_user:
            yield from self._per_user(snap)

    def _per_user(self, snap: Snapshot) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "calsync_user_outbox_depth", "Outbox entries waiting, per user", labels=["user"]
        )
        held = GaugeMetricFamily(
            "calsync_user_outbox_quarantined", "Quarantined entries, per user", labels=["user"]
        )
        age = GaugeMetricFamily(
            "calsync_user_last_sync_age_seconds",
            "Seconds since each side of a user's feeds was last read",
            labels=["user", "side"],
        )
        for user in self.config.users:
            depth.add_metric([user.mailbox], snap.by_user_depth[user.mailbox])
            held.add_metric([user.mailbox], snap.by_user_quarantined[user.mailbox])
            for side in ("exchange", "google"):
                seconds = snap.last_sync_age.get((user.mailbox, side))
                if seconds is not None:
                    age.add_metric([user.mailbox, side], seconds)
        yield from (depth, held, age)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _groups() -> Iterator[Any]:  # sync.sources.streaming.Group
    for streaming in list(metrics.STREAMING):
        yield from list(getattr(streaming, "groups", ()))


class Scrape:
    """What /metrics serves: the counters of `sync.ops.metrics.REGISTRY` and the state."""

    def __init__(self, state: StateCollector) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from metrics.REGISTRY.collect()
        yield from self.state.collect()
