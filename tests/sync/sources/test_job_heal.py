"""What the two-way job mends beside the feeds (sync/sources/job.py), through both stand-ins and the
unmodified clients: pairs whose Exchange item is gone though no feed said so, quarantined
entries whose change the job has carried since, and a user's error once a run succeeds."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.sources.job import SyncJob, carried
from sync.sources.outbox import Mirror
from sync.store import OutboxEntry
from tests.sync.conftest import ALICE
from tests.sync.sources.test_job import World


@pytest.fixture
def world(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> World:
    return World(tmp_path, ews, google)


class Clock:
    """The wall clock, moved on by hand: for `[sync] verify_interval_s`."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


def run(job: SyncJob, world: World, **kwargs: Any) -> Any:
    (report,) = job.run([world.config.user_named(ALICE)], **kwargs)  # type: ignore[list-item]
    return report


def mirrored_then_lost(world: World, subject: str, hour: int) -> str:
    """An item created after the job's stored SyncState, mirrored by the worker, then
    deleted directly in Exchange with nothing recorded (the DeleteItem was lost in a kill
    of the proxy): SyncFolderItems will never report it. Its id."""
    item = world.create_in_exchange(subject, hour=hour)
    item_id = str(item.id)
    world.store.enqueue(ALICE, item_id, "upsert", now=time.time())
    asyncio.run(Mirror(world.config, world.store).drain())
    assert world.store.mapped(ALICE, item_id) is not None
    item.delete()
    return item_id


def fault(url: str, **spec: Any) -> None:
    method = "POST" if spec else "DELETE"
    request = urllib.request.Request(
        url + "/_admin/faults",
        data=json.dumps(spec).encode() if spec else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    urllib.request.urlopen(request, timeout=10).close()


# --- mapped pairs whose Exchange item is gone --------------------------------------------------


def test_a_lost_item_goes_on_the_first_run_then_at_each_verify_interval(world: World) -> None:
    for hour in (8, 9, 10):
        world.create_in_exchange(f"Kept {hour}", hour=hour)
    world.run()  # mapped; the feed's SyncState stored
    first = mirrored_then_lost(world, "Lost in a kill", hour=12)
    clock = Clock()
    job = SyncJob(world.config, world.store, clock=clock)

    report = run(job, world)
    assert not report.errors, report.errors
    deletions = [(a.kind, a.ews_item_id, a.reason) for a in report.actions if a.kind != "skip"]
    assert ("delete-google", first, "gone from Exchange") in deletions
    assert sorted(world.google_events()) == ["Kept 10", "Kept 8", "Kept 9"]
    assert world.store.mapped(ALICE, first) is None
    # recorded like every write of a run, so that `calsync undo` can put it back
    recorded = world.store.run_writes(world.store.last_run(ALICE).id)  # type: ignore[union-attr]
    assert [(w.side, w.op, w.key) for w in recorded] == [("google", "delete", event_id_for(first))]

    second = mirrored_then_lost(world, "Lost later", hour=13)
    clock.ahead = 60.0  # within the hour: the feed alone cannot tell, and is all we ask
    assert not run(job, world).errors
    assert "Lost later" in world.google_events()
    clock.ahead = world.config.sync.verify_interval_s + 1.0
    assert not run(job, world).errors
    assert "Lost later" not in world.google_events()
    assert world.store.mapped(ALICE, second) is None


def test_nothing_is_deleted_while_exchange_cannot_say(world: World, ews: EwsServer) -> None:
    for hour in (8, 9, 10):
        world.create_in_exchange(f"Kept {hour}", hour=hour)
    world.run()
    lost = mirrored_then_lost(world, "Lost in a kill", hour=12)
    job = SyncJob(world.config, world.store)
    # the GetItem asking which mapped items exist (the run's first request to Exchange)
    # fails as a whole: "unknown", not "gone"
    world.create_in_exchange("Made meanwhile", hour=14)
    fault(ews.base_url, kind="ErrorServerBusy", count=1, backOffMilliseconds=0)
    failed = run(job, world)
    assert [e.split(":")[0] for e in failed.errors] == ["verify"]
    assert "Lost in a kill" in world.google_events()
    assert "Made meanwhile" in world.google_events()  # the feeds ran all the same
    assert world.store.mapped(ALICE, lost) is not None
    fault(ews.base_url)
    assert not run(job, world).errors  # asked again at once: the failed check did not count
    assert "Lost in a kill" not in world.google_events()


def test_deletions_found_by_verification_obey_the_safety_rule(world: World) -> None:
    for hour in (8, 9):
        world.create_in_exchange(f"Kept {hour}", hour=hour)
    world.run()
    for hour in range(10, 14):
        mirrored_then_lost(world, f"Lost {hour}", hour=hour)
    job = SyncJob(world.config, world.store)
    stopped = run(job, world)
    assert stopped.stopped and "would delete 4 of 6" in stopped.stopped
    assert len(world.google_events()) == 6  # nothing deleted
    forced = run(job, world, force_deletes=True)
    assert not forced.stopped and not forced.errors
    assert sorted(world.google_events()) == ["Kept 8", "Kept 9"]


def test_a_dry_run_plans_the_deletions_and_makes_none(world: World) -> None:
    for hour in (8, 9, 10):
        world.create_in_exchange(f"Kept {hour}", hour=hour)
    world.run()
    lost = mirrored_then_lost(world, "Lost in a kill", hour=12)
    job = SyncJob(world.config, world.store)
    planned = run(job, world, dry_run=True)
    assert [(a.kind, a.ews_item_id) for a in planned.actions] == [("delete-google", lost)]
    assert "Lost in a kill" in world.google_events()
    assert not run(job, world).errors  # a dry run is no verification: the real run deletes
    assert "Lost in a kill" not in world.google_events()


# --- quarantine that heals -----------------------------------------------------------------


def _entry(op: str, created_at: float) -> OutboxEntry:
    return OutboxEntry(
        1, ALICE, "I", op, None, None, 8, 0.0, "Google 0 unreachable", "quarantined", created_at
    )


@pytest.mark.parametrize(
    ("op", "created_at", "reconciled_at", "healed"),
    [
        # the job read the item after Exchange accepted the change: carried
        ("upsert", 10.0, 20.0, True),
        ("update", 10.0, 10.0, True),
        ("refresh", 10.0, 20.0, True),
        # reconciled before the change, or never: not carried
        ("update", 10.0, 5.0, False),
        ("upsert", 10.0, None, False),
        # a delete is never carried while its pair is still mapped
        ("delete", 10.0, 20.0, False),
    ],
)
def test_carried(op: str, created_at: float, reconciled_at: float | None, healed: bool) -> None:
    assert carried(_entry(op, created_at), reconciled_at=reconciled_at) is healed


def quarantine(world: World, item_id: str, op: str) -> int:
    """An entry as the worker leaves it after its last attempt failed."""
    entry = world.store.enqueue(ALICE, item_id, op, now=time.time())
    world.store.retry_later(entry, error="Google 0 unreachable", at=0.0, quarantine=True)
    return entry


def test_quarantined_entries_the_job_carried_leave_the_quarantine(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    renamed = world.create_in_exchange("Before", hour=8)
    untouched = world.create_in_exchange("Untouched", hour=9)
    deleted = world.create_in_exchange("Deleted", hour=10)
    still = world.create_in_exchange("Still there", hour=11)
    orphaned = world.create_in_exchange("Its pair forgotten, its event left", hour=16)
    for hour in (12, 13, 14):
        world.create_in_exchange(f"Filler {hour}", hour=hour)
    world.run()
    # what the worker quarantined during an outage, each recorded after Exchange took it
    renamed.subject = "Renamed in the outage"
    renamed.save(update_fields=["subject"])
    healed = {quarantine(world, str(renamed.id), "update")}
    kept = {quarantine(world, str(untouched.id), "update")}  # no run has carried it since
    deleted_id = str(deleted.id)
    deleted.delete()
    healed.add(quarantine(world, deleted_id, "delete"))
    kept.add(quarantine(world, str(still.id), "delete"))  # its pair is still mapped
    made = world.create_in_exchange("Made and deleted in the outage", hour=15)
    made_id = str(made.id)
    made.delete()
    healed.add(quarantine(world, made_id, "upsert"))  # nothing on either side
    orphaned_id = str(orphaned.id)
    world.store.forget(ALICE, orphaned_id)
    orphaned.delete()
    kept.add(quarantine(world, orphaned_id, "delete"))  # Google still shows its event

    with caplog.at_level(logging.INFO, logger="calsync.job"):
        world.run()
    assert {e.id for e in world.store.quarantined(ALICE)} == kept
    assert "Renamed in the outage" in world.google_events()
    lines = [r.getMessage() for r in caplog.records if "healed" in r.getMessage()]
    assert len(lines) == len(healed)
    assert all(f"entry {n} " in " ".join(lines) for n in healed)
    assert not any("Renamed" in line or "Deleted" in line for line in lines)  # ids only


def test_quarantine_stays_when_google_cannot_be_asked(world: World) -> None:
    made = world.create_in_exchange("Made and deleted in the outage", hour=15)
    made_id = str(made.id)
    made.delete()
    entry = quarantine(world, made_id, "delete")
    fault(world.google.url, kind="outage")
    try:
        assert run(world.job, world).errors
    finally:
        fault(world.google.url)
    assert [e.id for e in world.store.quarantined(ALICE)] == [entry]
    world.run()
    assert world.store.quarantined(ALICE) == []


# --- the user's error: current until a run succeeds, then past -----------------------------


def test_a_failed_runs_error_is_current_until_a_run_succeeds(world: World) -> None:
    world.create_in_exchange("Standup", hour=9)
    fault(world.google.url, kind="outage")
    try:
        failed = run(world.job, world)
    finally:
        fault(world.google.url)
    assert failed.errors
    state = world.store.sync_state(ALICE)
    assert state["last_error"] and "unreachable" in state["last_error"]
    failed_at = state["last_error_at"]
    assert failed_at is not None
    world.run()
    state = world.store.sync_state(ALICE)
    assert state["last_error"] is None and state["last_error_at"] is None
    assert state["past_error"] == failed.errors[0].split(": ", 1)[1]
    assert state["past_error_at"] == failed_at
    assert state["error_resolved_at"] >= failed_at
    assert "Standup" in world.google_events()
