"""One node at a time syncs a user, when several share a PostgreSQL store
(sync/sources/push.py `Leasing`, `UserRuns`): a real server (pg_server.py), two nodes'
`UserRuns` in one process, each with its own connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from emulators.google.server import GoogleCalendarServer
from sync.config import UserConfig
from sync.sources.push import Leasing, PushService, UserRuns
from sync.state.base import StaleLease
from sync.state.postgres import PostgresState
from tests.sync.conftest import ALICE, BOB
from tests.sync.sources.test_push import post, wait_until
from tests.sync.state.conftest import POSTGRES_KEY, SharedStore
from tests.sync.state.pg_server import PostgresServer

USERS = {m: UserConfig(mailbox=m) for m in (ALICE, BOB)}


class Node:
    """A node's runs: what it ran, when; a run takes `seconds` (the stand-in's work)."""

    def __init__(self, name: str, url: str, log: list[tuple[str, str, float, float]]) -> None:
        self.name = name
        self.state = PostgresState(url, key=POSTGRES_KEY, pool_size=2)
        self.seconds = 0.2
        self.log = log
        self.runs = UserRuns(self.run, leasing=Leasing(self.state.leases, holder=name, ttl=1.0))

    def run(self, user: UserConfig) -> None:
        started = time.monotonic()
        time.sleep(self.seconds)
        self.log.append((self.name, user.mailbox, started, time.monotonic()))


@pytest.fixture
def nodes(postgres_server: PostgresServer, postgres_database: str) -> Iterator[list[Node]]:
    log: list[tuple[str, str, float, float]] = []
    made = [Node(n, postgres_server.url(postgres_database), log) for n in ("n1", "n2", "n3")]
    try:
        yield made
    finally:
        for node in made:
            node.runs.close(timeout=5)
            node.state.close()


def ran(nodes: list[Node], mailbox: str) -> list[str]:
    return [name for name, user, _, _ in nodes[0].log if user == mailbox]


def at_once(node: Node, barrier: threading.Barrier) -> None:
    barrier.wait()
    node.runs.run_now(USERS[ALICE])


def test_a_user_is_synced_by_one_node_while_its_lease_is_live(nodes: list[Node]) -> None:
    for _ in range(5):
        barrier = threading.Barrier(len(nodes))

        threads = [threading.Thread(target=at_once, args=(n, barrier)) for n in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    (holder,) = set(ran(nodes, ALICE))  # every run on one node: the first to take the lease
    assert len(ran(nodes, ALICE)) == 5
    assert sum(n.runs.elsewhere.get(ALICE, 0) for n in nodes) == 10
    # another user is free for any node
    other = next(n for n in nodes if n.name != holder)
    other.runs.run_now(USERS[BOB])
    assert ran(nodes, BOB) == [other.name]


def test_a_run_longer_than_the_lease_keeps_it_and_a_silent_node_loses_it(
    nodes: list[Node],
) -> None:
    first, second, _ = nodes
    first.seconds = 2.5  # 2.5 leases long: renewed while it runs
    running = threading.Thread(target=first.runs.run_now, args=(USERS[ALICE],))
    running.start()
    time.sleep(0.3)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        second.runs.run_now(USERS[ALICE])
        time.sleep(0.2)
    running.join(10)
    assert ran(nodes, ALICE) == ["n1"]
    # n1 goes quiet (stalled or dead): its lease lapses, and n2's next trigger runs
    time.sleep(1.2)
    second.runs.run_now(USERS[ALICE])
    assert ran(nodes, ALICE) == ["n1", "n2"]
    spans = [(start, end) for _, user, start, end in first.log if user == ALICE]
    assert spans[0][1] <= spans[1][0]  # never two runs of one user at once


def test_a_push_notification_at_any_node_runs_the_user_where_the_lease_is(
    shared_store: SharedStore, google: GoogleCalendarServer
) -> None:
    """Google's notification reaches the node the load balancer picks; the user's lease
    is another node's: that one runs (told through the server), the first does not."""
    config = shared_store.config
    ran_on: list[tuple[str, str]] = []
    stores = [shared_store.open() for _ in range(2)]
    services = [
        PushService(config, store, lambda u, n=name: ran_on.append((n, u.mailbox)), port=0)
        for name, store in zip(("n1", "n2"), stores, strict=True)
    ]
    try:
        for service in services:
            service.start()
        alice = config.user_named(ALICE)
        assert alice is not None
        services[0].runs.run_now(alice)  # n1 takes alice's lease
        channel = stores[1].channels(ALICE)[0]
        headers = {
            "X-Goog-Channel-ID": channel.channel_id,
            "X-Goog-Channel-Token": channel.token,
            "X-Goog-Resource-ID": channel.resource_id or "",
            "X-Goog-Resource-State": "exists",
            "X-Goog-Message-Number": "2",
        }
        for service in services:
            assert service._listening is not None
            assert service._listening.listening.wait(10)  # type: ignore[attr-defined]
        assert post(services[1].server.url, headers) == 200
        wait_until(lambda: ran_on.count(("n1", ALICE)) == 2)
        assert ("n2", ALICE) not in ran_on
        wait_until(lambda: services[1].runs.elsewhere == {ALICE: 1})
        # a node that stops leaves the channels to the others
        services.pop().stop(timeout=5)
        assert stores[0].channel(channel.channel_id) is not None
        assert channel.channel_id in google.notifier.channels
    finally:
        for service in services:
            service.stop(timeout=5)
        for store in stores:
            store.close()


def test_a_node_whose_lease_passed_on_has_its_writes_refused(nodes: list[Node]) -> None:
    """A node that stalled past its lease (paused, swapping, a long GC) wakes up mid-run:
    its writes of the user's rows are refused, the new holder's stay."""
    first, second, _ = nodes
    outcome: list[BaseException | None] = []

    def run(user: UserConfig) -> None:
        first.state.cursors.save_google(user.mailbox, "token-1", now=1.0)  # while it holds
        # ... it stalls; the lease runs out and the second node takes the user
        assert second.state.leases.acquire(user.mailbox, "n2", 30.0, now=time.time() + 60)
        second.state.cursors.save_google(user.mailbox, "token-2", now=2.0)
        try:
            first.state.cursors.save_google(user.mailbox, "token-stale", now=3.0)
            with first.state.unit() as uow:
                uow.ids.forget(user.mailbox, "ITEM")
        except StaleLease as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    leasing = Leasing(first.state.leases, holder="n1", ttl=30.0, fencing=first.state)
    UserRuns(run, leasing=leasing).run_now(USERS[ALICE])
    assert isinstance(outcome[0], StaleLease)
    assert first.state.cursors.get(ALICE).google_sync_token == "token-2"
    # outside a run (no lease), the same state writes as before
    first.state.cursors.save_google(ALICE, "token-3", now=4.0)
    assert second.state.cursors.get(ALICE).google_sync_token == "token-3"
