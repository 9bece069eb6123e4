"""One node at a time syncs a user, when several share a PostgreSQL store
(sync/sources/push.py `Leasing`, `UserRuns`): a real server (pg_server.py), two nodes'
`UserRuns` in one process, each with its own connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sync.config import UserConfig
from sync.sources.push import Leasing, UserRuns
from sync.state.postgres import PostgresState
from tests.sync.conftest import ALICE, BOB
from tests.sync.state.conftest import POSTGRES_KEY
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
