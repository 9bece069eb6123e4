"""Named regressions of the two-way job's convergence: each replays, step by step, a
sequence the state machine (tests/sync/test_state_machine.py) found, through its own rules
and invariants, against both stand-ins and the unmodified clients; the teardown settles and
checks the invariants (no duplicates, no resurrection, both sides equal, no lost edit).

Each says in one line the cause it pins.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from hypothesis.stateful import INVARIANT_MARKER

from tests.sync.test_state_machine import TwoWaySync


def replay(steps: Callable[[TwoWaySync, Callable[[], None]], None]) -> None:
    """Run `steps(machine, check)` on a new machine, `check()` running its invariants (as
    hypothesis runs them after each step), then its teardown: quiescence and the checks."""
    machine = TwoWaySync()

    def check() -> None:
        for _, member in inspect.getmembers(type(machine)):
            invariant = getattr(member, INVARIANT_MARKER, None)
            if invariant is not None and all(p(machine) for p in invariant.preconditions):
                invariant.function(machine)

    try:
        steps(machine, check)
        check()
    finally:
        machine.teardown()


def test_sm_3_deleted_in_exchange_after_a_failed_tag_patch_stays_deleted() -> None:
    """Issue 12, "sm-3 came back after its deletion". Cause: the Exchange item created for a
    Google event was recorded only after the tag patch; a Google 503 on that patch left an
    item nobody knew about, and once the user deleted it the next run created it again.
    (The issue's seed=1 drew the 503 for the patch on the job of its day, which made one
    Google call more before it; on this job seed=3 draws it for the same patch.)"""

    def steps(m: TwoWaySync, check: Callable[[], None]) -> None:
        e0 = m.first_event()
        m.edit_different_fields(first="summary", second="summary", token=e0)
        m.delete_in_google(e0)
        e1 = m.create_in_google()
        m.run_job_on_a_bad_network(ews_fault=None, google_fault="503", rate=0.5, seed=3)
        check()
        m.edit_same_field_on_both_sides(exchange_first=True, name="summary", token=e1)
        m.delete_in_exchange(e1)
        m.run_job()
        m.run_job()
        m.run_job_on_a_bad_network(ews_fault="ErrorServerBusy", google_fault=None, rate=0.5, seed=0)
        check()
        m.create_in_google()
        m.create_in_google()

    replay(steps)


def test_sm_3_one_copy_in_exchange_after_a_failed_tag_patch() -> None:
    """Issue 12, "sm-3: 2 copies in Exchange". Cause: as above, a Google 500 on the tag
    patch right after the Exchange create left an unrecorded item; the next run listed the
    untagged event again and created a second item."""

    def steps(m: TwoWaySync, check: Callable[[], None]) -> None:
        e0 = m.first_event()
        m.edit_different_fields(first="summary", second="summary", token=e0)
        m.delete_in_google(e0)
        e1 = m.create_in_google()
        m.edit_same_field_on_both_sides(exchange_first=True, name="summary", token=e1)
        m.delete_in_exchange(e1)
        e2 = m.create_in_exchange()
        m.delete_in_exchange(e2)
        m.run_job_on_a_bad_network(ews_fault=None, google_fault="500", rate=0.2, seed=2)
        check()
        e3 = m.create_in_exchange()
        m.create_in_google()
        m.delete_in_google(e3)

    replay(steps)
