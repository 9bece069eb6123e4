"""A trigger that reaches a node while another holds the user's lease (an EWS streaming
notification, a Google push poke) is looked at once more when that lease runs out
(sync/sources/push.py `UserRuns._follow`): a dead holder's user is run then, not at the
next poll, and a live holder's is left to it. Three nodes' `UserRuns` on a real server,
leases of 1 s (tests in test_user_leases.py). And a node stopped inside a transaction
holds the user's lock no longer than its lease (`PostgresState(stall_s=...)`)."""

from __future__ import annotations

import threading
import time

from sync.state.postgres import PostgresState
from tests.sync.sources.test_push import wait_until
from tests.sync.state.conftest import POSTGRES_KEY
from tests.sync.state.pg_server import PostgresServer
from tests.sync.state.test_user_leases import ALICE, USERS, Node, nodes, ran

__all__ = ["nodes"]  # the fixture


def test_a_trigger_left_to_a_dead_holder_runs_once_its_lease_lapses(nodes: list[Node]) -> None:
    first, second, _ = nodes
    first.runs.run_now(USERS[ALICE])  # n1 takes alice's lease, then dies: never renews it
    second.runs.trigger(USERS[ALICE])  # a notification at n2, while n1's lease is live
    wait_until(lambda: second.runs.elsewhere.get(ALICE) == 1, timeout=5)
    # nothing else triggers n2: no poll, no other notification
    wait_until(lambda: ran(nodes, ALICE) == ["n1", "n2"], timeout=5)


def test_a_trigger_left_to_a_live_holder_is_looked_at_once(nodes: list[Node]) -> None:
    first, second, _ = nodes
    first.runs.run_now(USERS[ALICE])
    second.runs.trigger(USERS[ALICE])
    deadline = time.monotonic() + 3.0  # three leases long
    while time.monotonic() < deadline:  # n1 lives on, running alice now and then
        first.runs.run_now(USERS[ALICE])
        time.sleep(0.3)
    assert set(ran(nodes, ALICE)) == {"n1"}
    # the trigger, and one look when n1's lease was due to run out: not followed further
    assert second.runs.elsewhere == {ALICE: 2}


def test_a_holder_that_renewed_after_a_trigger_and_then_died_is_followed_anew(
    nodes: list[Node],
) -> None:
    first, second, _ = nodes
    first.runs.run_now(USERS[ALICE])
    second.runs.trigger(USERS[ALICE])  # left to n1: looked at when its lease is due out
    wait_until(lambda: second.runs.elsewhere.get(ALICE) == 1, timeout=5)
    time.sleep(0.3)
    first.runs.run_now(USERS[ALICE])  # n1 renews its lease past that look, and dies
    second.runs.trigger(USERS[ALICE])  # a change made after its death, at n2
    wait_until(lambda: ran(nodes, ALICE) == ["n1", "n1", "n2"], timeout=5)


def test_a_node_stalled_inside_a_transaction_holds_up_the_others_only_for_its_lease(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    """A node stopped mid-transaction (a paused VM) holds the user's lock: the server ends
    its session once idle in it for `stall_s` (the lease), and the next holder writes."""
    url = postgres_server.url(postgres_database)
    stalled, other = (PostgresState(url, key=POSTGRES_KEY, stall_s=1.0) for _ in range(2))
    holding = threading.Event()
    outcome: list[BaseException | None] = []

    def stall() -> None:
        try:
            with stalled.unit():
                stalled.cursors.save_google(ALICE, "token-stalled", now=1.0)
                holding.set()
                time.sleep(4.0)  # stopped, holding alice's lock
        except Exception as exc:  # its session is gone when it wakes
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=stall)
    try:
        thread.start()
        assert holding.wait(10)
        began = time.monotonic()
        with other.unit():
            other.cursors.save_google(ALICE, "token-new", now=2.0)
        waited = time.monotonic() - began
        thread.join(10)
        assert waited < 3.0, f"waited {waited:.1f} s for the stalled node"
        assert outcome and outcome[0] is not None  # the stalled node's transaction is undone
        assert other.cursors.get(ALICE).google_sync_token == "token-new"
    finally:
        thread.join(10)
        stalled.close()
        other.close()
