"""A trigger that reaches a node while another holds the user's lease (an EWS streaming
notification, a Google push poke) is looked at once more when that lease runs out
(sync/sources/push.py `UserRuns._follow`): a dead holder's user is run then, not at the
next poll, and a live holder's is left to it. Three nodes' `UserRuns` on a real server,
leases of 1 s (tests in test_user_leases.py)."""

from __future__ import annotations

import time

from tests.sync.sources.test_push import wait_until
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
