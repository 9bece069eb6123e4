"""What every implementation of calsync's state (sync/state/base.py) must do.

Run against each backend of the `state_impl` fixture (conftest.py). Times are plain
numbers: the state reads no clock."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from sync.state.base import (
    Conflict,
    Cursor,
    Lease,
    MappedItem,
    RunWrite,
    State,
    StoreError,
    SyncRun,
    WatchChannel,
)
from tests.sync.state.conftest import Backing

A, B = "a@x", "b@x"
SECRET = "Quarterly layoffs, do not forward"


def pair(item: str = "I1", event: str = "g1", mailbox: str = A, **changes: object) -> MappedItem:
    base = MappedItem(mailbox, item, event, "ck", '"1"', "hash", {"summary": "x"})
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class Boom(Exception):
    pass


# --- the id map ---------------------------------------------------------------------------


def test_a_pair_round_trips_by_either_id(state: State) -> None:
    saved = pair(snapshot={"summary": "Standup", "start": {"dateTime": "2026-01-05T09:00:00Z"}})
    state.ids.save(saved, now=1.0)
    assert state.ids.mapped(A, "I1") == saved
    assert state.ids.mapped_by_google(A, "g1") == saved
    assert state.ids.mapped_items(A) == [saved]
    assert state.ids.mapped_ids(A) == {"I1": "g1"}
    assert state.ids.is_mapped(A, "I1") and not state.ids.is_mapped(A, "I2")
    assert state.ids.count(A) == 1
    # saved again: replaced, not added
    newer = dataclasses.replace(saved, google_etag='"2"', snapshot=None)
    state.ids.save(newer, now=2.0)
    assert state.ids.mapped(A, "I1") == newer
    assert state.ids.count(A) == 1
    state.ids.forget(A, "I1")
    assert state.ids.mapped(A, "I1") is None and state.ids.mapped_by_google(A, "g1") is None
    assert state.ids.count(A) == 0


def test_users_do_not_see_each_others_state(state: State) -> None:
    state.ids.save(pair(), now=1.0)
    state.learned.learn_folders(A, {"F": "calendar"})
    state.learned.learn_items(A, {"I": "CalendarItem"})
    state.outbox.enqueue(A, "I", "upsert", now=1.0)
    assert state.ids.mapped(B, "I1") is None and state.ids.mapped_ids(B) == {}
    assert state.ids.count(B) == 0
    assert state.learned.folders(B) == {}
    assert state.learned.item_class(B, "I") is None
    assert state.learned.item_class(A, "I") == "CalendarItem"
    assert state.outbox.pending(B) == [] and state.outbox.count(B) == 0
    assert state.outbox.count(A) == 1 and state.outbox.count() == 1


def test_only_a_reconciling_save_says_when_the_pair_last_agreed(state: State) -> None:
    state.ids.save(pair(), now=1.0)
    assert state.ids.reconciled_at(A, "I1") is None
    state.ids.save(pair(), now=2.0, reconciled=True)
    assert state.ids.reconciled_at(A, "I1") == 2.0
    state.ids.save(pair(google_etag='"3"'), now=3.0)  # the worker's later write keeps it
    assert state.ids.reconciled_at(A, "I1") == 2.0
    assert state.ids.reconciled_at(A, "NONE") is None


def test_one_google_event_never_pairs_with_two_items(state: State) -> None:
    state.ids.save(pair("I1", "g1"), now=1.0)
    with pytest.raises(StoreError):
        state.ids.save(pair("I2", "g1"), now=2.0)
    assert state.ids.mapped(A, "I2") is None
    state.ids.save(pair("I1", "g1", mailbox=B), now=2.0)  # another user's event of that id


# --- sealing ------------------------------------------------------------------------------


def test_event_text_is_never_stored_in_plain_sight(state_impl: Backing) -> None:
    state = state_impl.open()
    text = {"summary": SECRET}
    state.ids.save(pair(snapshot=text), now=1.0)
    entry = state.outbox.enqueue(A, "I2", "upsert", now=1.0, payload=text)
    later = state.outbox.enqueue(A, "I3", "upsert", now=1.0)
    state.outbox.set_payload(later, text)
    run = state.runs.begin(A, now=1.0)
    state.runs.record_write(
        run,
        "google",
        "patch",
        "g1",
        other_key="I1",
        version='"2"',
        before=text,
        fields=text,
        now=1.0,
    )
    state.runs.finish(run, now=2.0)
    token = "channel-token-" + SECRET
    state.channels.save(WatchChannel("c1", A, "r1", token, "https://x", "primary", 9.0, 1.0))
    # everything opens again
    assert state.ids.mapped(A, "I1").snapshot == text  # type: ignore[union-attr]
    assert state.outbox.entry(entry).payload == text  # type: ignore[union-attr]
    assert state.outbox.entry(later).payload == text  # type: ignore[union-attr]
    (write,) = state.runs.run_writes(run)
    assert (write.before, write.fields) == (text, text)
    assert state.channels.get("c1").token == token  # type: ignore[union-attr]
    at_rest = state_impl.at_rest()
    assert b"Quarterly" in SECRET.encode() and b"Quarterly" not in at_rest
    assert b"channel-token" not in at_rest
    assert b"I1" in at_rest  # ids are kept plain: the test reads what is stored


# --- the outbox ---------------------------------------------------------------------------


def test_one_entry_per_item_at_a_time_oldest_first(state: State) -> None:
    first = state.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
    state.outbox.enqueue(A, "ITEM", "update", now=1.0)
    other = state.outbox.enqueue(A, "OTHER", "delete", now=1.0)
    claimed = state.outbox.claim(5.0, "w1", 30.0)
    assert [e.id for e in claimed] == [first, other]
    assert {(e.claimed_by, e.claim_until) for e in claimed} == {("w1", 35.0)}
    state.outbox.complete(first)
    state.outbox.complete(other)
    assert [e.op for e in state.outbox.claim(5.0, "w1", 30.0)] == ["update"]


def test_a_failing_item_waits_without_holding_back_others(state: State) -> None:
    failing = state.outbox.enqueue(A, "BAD", "upsert", now=1.0)
    good = state.outbox.enqueue(A, "GOOD", "upsert", now=1.0)
    behind = state.outbox.enqueue(A, "BAD", "update", now=1.0)
    state.outbox.retry_later(failing, error="Google 503 backendError", at=100.0, quarantine=False)
    # the entry behind the failing one waits with it: it is not due before it
    assert state.outbox.next_due() == 1.0
    assert [e.id for e in state.outbox.claim(10.0, "w", 30.0)] == [good]
    state.outbox.complete(good)
    assert state.outbox.next_due() == 100.0
    assert state.outbox.claim(99.0, "w", 30.0) == []
    (retried,) = state.outbox.claim(100.0, "w", 30.0)
    assert (retried.id, retried.attempts, retried.last_error) == (
        failing,
        1,
        "Google 503 backendError",
    )
    state.outbox.complete(failing)
    assert [e.id for e in state.outbox.claim(100.0, "w", 30.0)] == [behind]
    state.outbox.complete(behind)
    assert state.outbox.next_due() is None


def test_quarantined_entries_are_kept_with_their_error_and_release_the_item(state: State) -> None:
    entry = state.outbox.enqueue(A, "BAD", "upsert", now=1.0)
    later = state.outbox.enqueue(A, "BAD", "update", now=1.0)
    (claimed,) = state.outbox.claim(1.0, "w", 30.0)
    state.outbox.retry_later(claimed.id, error="Google 400 invalid: bad", at=2.0, quarantine=True)
    (kept,) = state.outbox.quarantined(A)
    assert (kept.id, kept.attempts, kept.last_error, kept.state) == (
        entry,
        1,
        "Google 400 invalid: bad",
        "quarantined",
    )
    assert kept.claimed_by is None  # retry_later ended the claim
    assert [e.id for e in state.outbox.claim(3.0, "w", 30.0)] == [later]
    assert state.outbox.count(A) == 2


def test_a_later_pending_delete_supersedes_an_entry(state: State) -> None:
    upsert = state.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
    update = state.outbox.enqueue(A, "ITEM", "update", now=2.0)
    state.outbox.enqueue(A, "OTHER", "delete", now=2.0)  # another item's
    state.outbox.enqueue(B, "ITEM", "delete", now=2.0)  # another user's
    entries = {e.id: e for e in state.outbox.pending(A)}
    assert not state.outbox.superseded_by_delete(entries[upsert])
    delete = state.outbox.enqueue(A, "ITEM", "delete", now=3.0)
    assert state.outbox.superseded_by_delete(entries[upsert])
    assert state.outbox.superseded_by_delete(entries[update])
    # a delete recorded before the entry does not supersede it (a re-created id)
    assert not state.outbox.superseded_by_delete(state.outbox.entry(delete))  # type: ignore[arg-type]
    state.outbox.complete(delete)
    assert not state.outbox.superseded_by_delete(entries[upsert])  # done: nothing follows


def test_queued_tells_an_items_pending_versions_without_their_payloads(state: State) -> None:
    assert state.outbox.queued(A, "ITEM") == []
    first = state.outbox.enqueue(
        A, "ITEM", "upsert", now=1.0, change_key="ck1", payload={"summary": SECRET}
    )
    state.outbox.enqueue(A, "ITEM", "delete", now=2.0)
    state.outbox.enqueue(A, "OTHER", "upsert", now=2.0, change_key="ck9")  # another item's
    state.outbox.enqueue(B, "ITEM", "update", now=2.0, change_key="ck8")  # another user's
    quarantined = state.outbox.enqueue(A, "ITEM", "update", now=3.0, change_key="ck2")
    state.outbox.retry_later(quarantined, error="refused", at=4.0, quarantine=True)
    assert state.outbox.queued(A, "ITEM") == [("upsert", "ck1"), ("delete", None)]
    state.outbox.complete(first)
    assert state.outbox.queued(A, "ITEM") == [("delete", None)]
    assert state.outbox.queued(B, "ITEM") == [("update", "ck8")]


def test_only_a_quarantined_entry_heals(state: State) -> None:
    pending = state.outbox.enqueue(A, "A", "upsert", now=1.0)
    quarantined = state.outbox.enqueue(A, "B", "upsert", now=1.0)
    state.outbox.retry_later(quarantined, error="Google 0 unreachable", at=2.0, quarantine=True)
    assert not state.outbox.heal(pending)
    assert state.outbox.heal(quarantined)
    assert not state.outbox.heal(quarantined)  # gone already
    assert state.outbox.quarantined(A) == []
    assert [e.id for e in state.outbox.pending(A)] == [pending]


def test_enqueue_many_keeps_the_order_given(state: State) -> None:
    ids = state.outbox.enqueue_many(
        [(A, "I1", "upsert", "ck1"), (A, "I1", "update", None), (B, "I2", "delete", None)],
        now=5.0,
    )
    assert len(set(ids)) == 3
    got = [state.outbox.entry(i) for i in ids]
    assert [(e.mailbox, e.ews_item_id, e.op, e.change_key) for e in got if e] == [
        (A, "I1", "upsert", "ck1"),
        (A, "I1", "update", None),
        (B, "I2", "delete", None),
    ]
    assert state.outbox.enqueue_many([], now=5.0) == []


# --- outbox claims ------------------------------------------------------------------------


def test_a_claimed_item_is_handed_to_nobody_else_until_its_claim_ends(state: State) -> None:
    first = state.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
    second = state.outbox.enqueue(A, "ITEM", "update", now=1.0)
    other = state.outbox.enqueue(A, "OTHER", "upsert", now=1.0)
    assert [e.id for e in state.outbox.claim(1.0, "w1", 60.0, limit=1)] == [first]
    # neither the claimed entry nor the one behind it, for anyone (w1 included)
    assert [e.id for e in state.outbox.claim(2.0, "w2", 60.0)] == [other]
    assert state.outbox.claim(2.0, "w1", 60.0) == []
    claimed = state.outbox.entry(first)
    assert claimed is not None and (claimed.claimed_by, claimed.claim_until) == ("w1", 61.0)
    # the claim holds the item back from next_due too: due when the claim would run out
    state.outbox.complete(other)
    assert state.outbox.next_due() == 61.0
    state.outbox.complete(first)
    assert [e.id for e in state.outbox.claim(3.0, "w2", 60.0)] == [second]


def test_a_lone_drainer_takes_its_own_claims_back_and_no_one_elses(state: State) -> None:
    # `ready`: one process drains the store alone; what it claimed before dying or being
    # restarted is its own, handed out again at once, while another holder's claim holds
    mine = state.outbox.enqueue(A, "MINE", "upsert", now=1.0)
    theirs = state.outbox.enqueue(A, "THEIRS", "upsert", now=1.0)
    assert [e.id for e in state.outbox.claim(1.0, "node-2", 30.0)] == [mine, theirs]
    assert state.outbox.ready(2.0) == [] and state.outbox.next_ready() == 31.0
    state.outbox.release(mine)
    assert [e.id for e in state.outbox.ready(2.0)] == [mine]
    assert [e.id for e in state.outbox.ready(2.0)] == [mine]  # its own claim: again
    assert state.outbox.next_ready() == 1.0  # due since it was queued


def test_an_expired_claim_is_handed_out_again(state: State) -> None:
    entry = state.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
    state.outbox.claim(1.0, "dead", 10.0)  # its worker dies holding it
    assert state.outbox.claim(10.9, "w2", 10.0) == []
    (again,) = state.outbox.claim(11.0, "w2", 10.0)
    assert (again.id, again.claimed_by, again.claim_until, again.attempts) == (entry, "w2", 21.0, 0)


def test_release_and_retry_later_end_a_claim(state: State) -> None:
    released = state.outbox.enqueue(A, "R", "upsert", now=1.0)
    retried = state.outbox.enqueue(A, "T", "upsert", now=1.0)
    assert len(state.outbox.claim(1.0, "w1", 60.0)) == 2
    state.outbox.release(released)
    state.outbox.retry_later(retried, error="Google 503", at=5.0, quarantine=False)
    (again,) = state.outbox.claim(2.0, "w2", 60.0)
    assert (again.id, again.attempts) == (released, 0)  # a release is no attempt
    assert [e.id for e in state.outbox.claim(5.0, "w2", 60.0)] == [retried]


def test_two_workers_drain_one_outbox_each_entry_once_in_item_order(
    state_impl: Backing,
) -> None:
    setup = state_impl.open()
    items = [f"ITEM{i}" for i in range(6)]
    expected = {
        item: setup.outbox.enqueue_many([(A, item, "update", None)] * 8, now=0.0) for item in items
    }
    done: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        state = state_impl.open()  # each its own connection, as another process would
        try:
            start.wait()
            while True:
                claimed = state.outbox.claim(time.time(), name, 30.0, limit=2)
                if not claimed:
                    if state.outbox.count() == 0:
                        return
                    time.sleep(0.001)
                    continue
                for entry in claimed:
                    with lock:
                        done.append((entry.ews_item_id, entry.id, name))
                    time.sleep(0.001)  # the write to Google
                    state.outbox.complete(entry.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(i for _, i, _ in done) == sorted(i for ids in expected.values() for i in ids)
    for item, ids in expected.items():
        assert [i for it, i, _ in done if it == item] == ids  # each once, oldest first
    assert {name for _, _, name in done} == {"w1", "w2"}  # both did work


def test_claimers_at_the_same_instant_share_no_item_and_skip_no_entry(
    state_impl: Backing,
) -> None:
    """Four connections claim at once, again and again: every item's oldest entry goes to
    exactly one of them, and nothing behind it goes to anyone; one held for a claimer
    goes to it while the hold lasts (a third of the items each: held for nobody, held,
    held past its hold)."""
    setup = state_impl.open()
    claimers = [state_impl.open() for _ in range(4)]
    for round_ in range(5):
        entries = [
            setup.outbox.enqueue_many(
                [(A, f"R{round_}I{i}", "update", None)] * 3,
                now=0.0,
                held_for=None if i % 3 == 0 else f"w{i % 4}",
                hold_s=10.0 if i % 3 == 1 else 0.5,
            )
            for i in range(12)
        ]
        heads = [ids[0] for ids in entries]
        held = {ids[0]: i % 4 for i, ids in enumerate(entries) if i % 3 == 1}
        start = threading.Barrier(len(claimers))
        got: dict[int, list[int]] = {}

        def claim(
            n: int, state: State, start: threading.Barrier, got: dict[int, list[int]]
        ) -> None:
            start.wait()
            got[n] = [e.id for e in state.outbox.claim(1.0, f"w{n}", 60.0, limit=100)]

        threads = [
            threading.Thread(target=claim, args=(n, s, start, got)) for n, s in enumerate(claimers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        claimed = [i for ids in got.values() for i in ids]
        assert len(got) == len(claimers)
        assert sorted(claimed) == heads  # each head once, nothing behind a head
        assert {i: n for n, ids in got.items() for i in ids if i in held} == held
        for entry_id in (i for ids in entries for i in ids):
            setup.outbox.complete(entry_id)


def test_a_dead_workers_claim_runs_out_and_passes_on(state_impl: Backing) -> None:
    dead = state_impl.open()
    entry = dead.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
    behind = dead.outbox.enqueue(A, "ITEM", "update", now=1.0)
    assert [e.id for e in dead.outbox.claim(1.0, "dead", 10.0)] == [entry]
    dead.close()  # its process is gone: nothing ended the claim
    alive = state_impl.open()
    assert alive.outbox.claim(10.9, "alive", 10.0) == []  # neither it nor the one behind
    assert alive.outbox.next_due() == 11.0
    (again,) = alive.outbox.claim(11.0, "alive", 10.0)
    assert (again.id, again.claimed_by, again.attempts) == (entry, "alive", 0)
    alive.outbox.complete(entry)
    assert [e.id for e in alive.outbox.claim(11.0, "alive", 10.0)] == [behind]


# --- entries held for the node that recorded them ------------------------------------------
# (enqueue_many's `held_for`: that node's worker has the request's bytes in memory)


def test_held_entries_wait_for_their_recorder_alone_until_the_hold_lapses(state: State) -> None:
    held = state.outbox.enqueue_many(
        [(A, "I1", "upsert", None), (A, "I2", "upsert", None)], now=1.0, held_for="n1", hold_s=2.0
    )
    free = state.outbox.enqueue(A, "I3", "upsert", now=1.0)
    # another claimer takes only what is held for nobody, and is due again when the hold ends
    assert [e.id for e in state.outbox.claim(1.5, "n2", 60.0)] == [free]
    assert state.outbox.next_due("n2") == 3.0 and state.outbox.next_due() == 3.0
    assert state.outbox.claim(2.9, "n2", 60.0) == []
    # the recorder's worker: due at once, taken under its own name, never handed it twice
    assert state.outbox.next_due("n1") == 1.0
    claimed = state.outbox.claim(1.5, "n1", 60.0)
    assert [(e.id, e.claimed_by, e.claim_until) for e in claimed] == [
        (held[0], "n1", 61.5),
        (held[1], "n1", 61.5),
    ]
    assert state.outbox.claim(1.6, "n1", 60.0) == []
    # from then on its claim holds them, for everyone, past the hold too
    assert state.outbox.claim(5.0, "n2", 60.0) == [] and state.outbox.claim(5.0, "n1", 60.0) == []
    assert state.outbox.next_due("n1") == 61.5 and state.outbox.next_due("n2") == 61.5


def test_a_recorder_takes_its_own_first_and_shares_them_once_the_hold_lapses(state: State) -> None:
    free = state.outbox.enqueue(A, "I0", "upsert", now=0.5)  # older, held for nobody
    first, second = state.outbox.enqueue_many(
        [(A, "I1", "upsert", None), (A, "I2", "upsert", None)], now=1.0, held_for="n1", hold_s=2.0
    )
    # n1's worker was busy for longer than the hold: its own entries still come first to it
    assert [e.id for e in state.outbox.claim(4.0, "n1", 60.0, limit=1)] == [first]
    # another claimer takes the oldest, whoever recorded them
    assert [e.id for e in state.outbox.claim(4.0, "n2", 60.0, limit=2)] == [free, second]


def test_a_dead_recorders_entries_pass_on_after_the_hold_in_item_order(
    state_impl: Backing,
) -> None:
    dead = state_impl.open()
    older, newer = dead.outbox.enqueue_many(
        [(A, "ITEM", "upsert", None), (A, "ITEM", "update", None)],
        now=1.0,
        held_for="dead",
        hold_s=2.0,
    )
    dead.close()  # its process is gone: its worker never claims them
    alive = state_impl.open()
    assert alive.outbox.claim(2.9, "alive", 60.0) == []
    assert alive.outbox.next_due("alive") == 3.0
    (taken,) = alive.outbox.claim(3.0, "alive", 60.0)  # the oldest alone
    assert (taken.id, taken.claimed_by, taken.claim_until, taken.attempts) == (
        older,
        "alive",
        63.0,
        0,
    )
    alive.outbox.complete(older)
    assert [e.id for e in alive.outbox.claim(3.0, "alive", 60.0)] == [newer]


def test_an_items_changes_recorded_on_two_nodes_go_in_order_one_claim_at_a_time(
    state: State,
) -> None:
    (older,) = state.outbox.enqueue_many(
        [(A, "ITEM", "upsert", None)], now=1.0, held_for="n1", hold_s=2.0
    )
    (newer,) = state.outbox.enqueue_many(
        [(A, "ITEM", "update", None)], now=1.1, held_for="n2", hold_s=2.0
    )
    # n2's own entry waits behind n1's older one, held or claimed
    assert state.outbox.claim(1.2, "n2", 60.0) == []
    assert [e.id for e in state.outbox.claim(1.2, "n1", 60.0)] == [older]
    assert state.outbox.claim(1.3, "n2", 60.0) == []  # one claim of an item at a time
    state.outbox.complete(older)
    assert state.outbox.claim(1.3, "n1", 60.0) == []  # n2's hold now
    assert [e.id for e in state.outbox.claim(1.3, "n2", 60.0)] == [newer]


def test_an_entry_committed_late_is_never_overtaken_by_a_newer_one(state_impl: Backing) -> None:
    """A unit records an item's change and is slow to commit; meanwhile another connection
    records a newer change of that item and a worker claims: the newer one is not handed
    out before the older one is done."""
    slow, fast, worker = state_impl.open(), state_impl.open(), state_impl.open()
    recorded, commit = threading.Event(), threading.Event()
    ids: dict[str, int] = {}

    def record_slowly() -> None:
        with slow.unit() as uow:
            ids["older"] = uow.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
            recorded.set()
            commit.wait(10)

    def record_newer() -> None:
        ids["newer"] = fast.outbox.enqueue(A, "ITEM", "update", now=1.0)

    older = threading.Thread(target=record_slowly)
    older.start()
    assert recorded.wait(10)
    newer = threading.Thread(target=record_newer)
    newer.start()
    time.sleep(0.2)  # the newer change is sent, and committed unless something holds it
    timer = threading.Timer(0.3, commit.set)  # (SQLite's claim waits for the slow unit)
    timer.start()
    claimed = worker.outbox.claim(2.0, "w", 60.0)
    for thread in (older, newer, timer):
        thread.join(10)
    assert [e.op for e in claimed] in ([], ["upsert"])
    if not claimed:
        claimed = worker.outbox.claim(2.0, "w", 60.0)
    assert [e.id for e in claimed] == [ids["older"]] and ids["newer"] > ids["older"]
    worker.outbox.complete(ids["older"])
    assert [e.id for e in worker.outbox.claim(2.0, "w", 60.0)] == [ids["newer"]]


# --- paused users -------------------------------------------------------------------------


def test_a_pause_is_kept_from_its_first_time_until_resumed_and_seen_by_every_node(
    state_impl: Backing,
) -> None:
    console, other = state_impl.open(), state_impl.open()  # two processes, or two nodes
    assert other.pauses.paused() == {} and not other.pauses.is_paused(A)
    console.pauses.pause(A, now=5.0)
    console.pauses.pause(A, now=9.0)  # paused once: the first time is kept
    console.pauses.pause(B, now=6.0)
    assert other.pauses.paused() == {A: 5.0, B: 6.0}
    assert other.pauses.is_paused(A) and other.pauses.is_paused(B)
    other.pauses.resume(A)
    other.pauses.resume(A)  # resumed already: nothing to do
    assert console.pauses.paused() == {B: 6.0} and not console.pauses.is_paused(A)


def test_a_paused_users_entries_wait_for_everyone_until_resumed(state: State) -> None:
    theirs = state.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
    behind = state.outbox.enqueue(A, "ITEM", "update", now=1.0)
    held = state.outbox.enqueue_many([(A, "HELD", "upsert", None)], now=1.0, held_for="n1")
    others = state.outbox.enqueue(B, "ITEM", "upsert", now=2.0)
    state.pauses.pause(A, now=1.5)
    # nobody takes them, not even the node they are held for, and nothing is due for them
    assert [e.id for e in state.outbox.claim(3.0, "n1", 60.0)] == [others]
    assert state.outbox.ready(3.0) == [] and state.outbox.claim(3.0, "n2", 60.0) == []
    assert state.outbox.next_due() == state.outbox.next_ready() == 63.0  # B's claim's end
    state.outbox.complete(others)
    assert state.outbox.next_due() is None and state.outbox.next_due("n1") is None
    # kept as they were: pending, in their order, no attempt made
    assert [(e.id, e.attempts) for e in state.outbox.pending(A)] == [
        (theirs, 0),
        (behind, 0),
        (held[0], 0),
    ]
    state.pauses.resume(A)
    assert state.outbox.next_due() == 1.0
    assert [e.id for e in state.outbox.claim(4.0, "n1", 60.0)] == [theirs, held[0]]


# --- units of work ------------------------------------------------------------------------


def test_a_unit_keeps_all_of_its_writes_or_none(state_impl: Backing) -> None:
    state = state_impl.open()
    entry = state.outbox.enqueue(A, "I1", "upsert", now=1.0)
    with pytest.raises(Boom), state.unit() as uow:
        uow.ids.save(pair(), now=2.0)
        uow.outbox.complete(entry)
        uow.journal.record(A, "google", "g1", '"1"', "hash", now=2.0)
        uow.conflicts.record(A, "I1", "g1", "summary", "google", "policy", now=2.0)
        uow.cursors.save_google(A, "token", now=2.0)
        run = uow.runs.begin(A, now=2.0)
        uow.learned.learn_folders(A, {"F": "calendar"})
        uow.leases.acquire(A, "w1", 10.0, now=2.0)
        raise Boom
    assert state.ids.mapped(A, "I1") is None
    assert [e.id for e in state.outbox.pending(A)] == [entry]
    assert not state.journal.is_echo(A, "google", "g1", '"1"')
    assert state.conflicts.list(A) == []
    assert state.cursors.get(A) == Cursor(A)
    assert state.learned.folders(A) == {}
    assert state.leases.holder(A, now=2.0) is None
    state.runs.finish(run, now=3.0)  # (the run is gone: finishing it changes nothing)
    assert state.runs.last_run(A) is None

    with state.unit() as uow:
        uow.ids.save(pair(), now=2.0)
        uow.outbox.complete(entry)
    assert state.ids.mapped(A, "I1") is not None and state.outbox.count() == 0


def test_a_nested_unit_joins_the_outer_one(state_impl: Backing) -> None:
    state = state_impl.open()
    other = state_impl.open()  # another process's view
    with pytest.raises(Boom), state.unit() as outer:
        outer.ids.save(pair("I1", "g1"), now=1.0)
        with state.unit() as inner:
            inner.ids.save(pair("I2", "g2"), now=1.0)
            inner.outbox.enqueue(A, "I2", "upsert", now=1.0)
        # the inner unit is over, but nothing is committed before the outer one is
        assert other.ids.count(A) == 0 and other.outbox.count() == 0
        assert state.ids.count(A) == 2  # inside the unit, its own writes are seen
        raise Boom
    assert state.ids.count(A) == 0 and state.outbox.count() == 0  # the inner's undone too

    with state.unit() as outer:
        outer.ids.save(pair("I1", "g1"), now=1.0)
        with state.unit() as inner:
            inner.ids.save(pair("I2", "g2"), now=1.0)
    assert other.ids.mapped_ids(A) == {"I1": "g1", "I2": "g2"}


def test_an_inner_unit_that_fails_undoes_only_its_own_writes(state: State) -> None:
    with state.unit() as outer:
        outer.ids.save(pair("I1", "g1"), now=1.0)
        with pytest.raises(Boom), state.unit() as inner:
            inner.ids.save(pair("I2", "g2"), now=1.0)
            raise Boom
        with pytest.raises(StoreError), state.unit() as inner:  # a failing call, likewise
            inner.outbox.enqueue(A, "I3", "upsert", now=1.0)
            inner.ids.save(pair("I3", "g1"), now=1.0)  # g1 is I1's
        outer.outbox.enqueue(A, "I1", "upsert", now=1.0)
    assert state.ids.mapped_ids(A) == {"I1": "g1"}
    assert [e.ews_item_id for e in state.outbox.pending(A)] == ["I1"]


def test_a_refused_save_leaves_the_unit_usable(state: State) -> None:
    """The caller may catch a refused pairing and go on in the same unit (a PostgreSQL
    transaction is unusable after an error: the refusal must not be one)."""
    state.ids.save(pair("I1", "g1"), now=1.0)
    with state.unit() as uow:
        with pytest.raises(StoreError):
            uow.ids.save(pair("I2", "g1"), now=2.0)
        uow.ids.save(pair("I2", "g2"), now=2.0)
    assert state.ids.mapped_ids(A) == {"I1": "g1", "I2": "g2"}


def test_a_unit_is_one_writer_at_a_time(state_impl: Backing) -> None:
    """Two units read-modify-write one counter from two connections: none is lost."""
    first, second = state_impl.open(), state_impl.open()
    first.cursors.save(Cursor(A, google_sync_token="0"))

    def bump(state: State) -> None:
        for _ in range(20):
            with state.unit() as uow:
                token = uow.cursors.get(A).google_sync_token
                uow.cursors.save_google(A, str(int(token or "0") + 1), now=1.0)

    threads = [threading.Thread(target=bump, args=(s,)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert first.cursors.get(A).google_sync_token == "40"


# --- journal ------------------------------------------------------------------------------


def test_journal_recognises_exactly_our_versions(state: State) -> None:
    state.journal.record(A, "google", "ev1", '"123"', "h", now=1.0)
    state.journal.record(A, "google", "ev1", None, "h", now=1.0)  # no version: nothing
    assert state.journal.is_echo(A, "google", "ev1", '"123"')
    assert not state.journal.is_echo(A, "google", "ev1", '"124"')  # someone edited it since
    assert not state.journal.is_echo(B, "google", "ev1", '"123"')
    assert not state.journal.is_echo(A, "exchange", "ev1", '"123"')
    assert not state.journal.is_echo(A, "google", "ev1", None)


def test_prune_drops_what_is_older_and_keeps_the_rest(state: State) -> None:
    state.journal.record(A, "google", "old", '"1"', None, now=100.0)
    state.journal.record(A, "google", "young", '"1"', None, now=200.0)
    assert state.journal.prune(150.0) == 1
    assert not state.journal.is_echo(A, "google", "old", '"1"')
    assert state.journal.is_echo(A, "google", "young", '"1"')
    assert state.journal.prune(150.0) == 0


def test_recording_prunes_past_the_retention(state_impl: Backing) -> None:
    state = state_impl.open(journal_retention_s=3600.0)
    state.journal.record(A, "google", "old", '"1"', None, now=0.0)
    state.journal.record(A, "google", "hour", '"1"', None, now=9000.0)
    state.journal.record(A, "google", "new", '"1"', None, now=10000.0)
    assert not state.journal.is_echo(A, "google", "old", '"1"')  # 2.8 hours old: gone
    # anything younger than the retention is still recognised
    assert state.journal.is_echo(A, "google", "hour", '"1"')
    assert state.journal.is_echo(A, "google", "new", '"1"')


# --- cursors ------------------------------------------------------------------------------


def test_each_feed_moves_its_own_cursor(state: State) -> None:
    assert state.cursors.get(A) == Cursor(A)
    state.cursors.save_google(A, "gtoken", now=10.0)
    state.cursors.save_exchange(A, "ewsstate", now=20.0)
    assert state.cursors.get(A) == Cursor(
        A,
        google_sync_token="gtoken",
        last_google_sync=10.0,
        ews_sync_state="ewsstate",
        last_exchange_sync=20.0,
    )
    state.cursors.save_google(A, None, now=30.0)  # a token Google no longer honours
    assert state.cursors.get(A).google_sync_token is None
    assert state.cursors.get(A).ews_sync_state == "ewsstate"
    whole = Cursor(B, "t", "s", 1.0, 2.0, "e", 3.0, "p", 4.0, 5.0)
    state.cursors.save(whole)
    assert state.cursors.get(B) == whole


def test_an_error_stays_current_until_a_run_succeeds_then_is_past(state: State) -> None:
    assert not state.cursors.clear_error(A, now=1.0)  # nothing to clear, nothing made up
    state.cursors.save_google(A, "kept", now=1.0)
    state.cursors.record_error(A, "Google 0 unreachable", now=10.0)
    state.cursors.record_error(A, "Google 503 backendError", now=20.0)
    cursor = state.cursors.get(A)
    assert (cursor.last_error, cursor.last_error_at) == ("Google 503 backendError", 20.0)
    assert cursor.past_error is None
    assert state.cursors.clear_error(A, now=30.0)
    cursor = state.cursors.get(A)
    assert cursor.last_error is None and cursor.last_error_at is None
    assert (cursor.past_error, cursor.past_error_at, cursor.error_resolved_at) == (
        "Google 503 backendError",
        20.0,
        30.0,
    )
    assert cursor.google_sync_token == "kept"
    assert not state.cursors.clear_error(A, now=40.0)  # a second success keeps the past
    assert state.cursors.get(A).error_resolved_at == 30.0
    assert state.cursors.get(B).last_error is None
    state.cursors.record_error(A, "x" * 2000, now=50.0)
    assert len(state.cursors.get(A).last_error or "") == 500


# --- conflicts, channels ------------------------------------------------------------------


def test_conflicts_are_listed_oldest_first_per_user(state: State) -> None:
    state.conflicts.record(A, "I1", "g1", "location", "google", "google-wins", now=1.0)
    state.conflicts.record(B, "I9", None, "summary", "exchange", "policy", now=2.0)
    state.conflicts.record(A, None, "g2", "summary", "exchange", "exchange-wins", now=3.0)
    listed = state.conflicts.list(A)
    assert [dataclasses.replace(c, id=0) for c in listed] == [
        Conflict(0, A, "I1", "g1", "location", "google", "google-wins", 1.0),
        Conflict(0, A, None, "g2", "summary", "exchange", "exchange-wins", 3.0),
    ]
    assert listed[0].id < listed[1].id


def test_channels_round_trip_newest_last(state: State) -> None:
    old = WatchChannel("c1", A, "r1", "t1", "https://x/push", "primary", 100.0, 1.0)
    new = WatchChannel("c2", A, "r2", "t2", "https://x/push", "primary", 200.0, 2.0)
    bobs = WatchChannel("c3", B, "r3", "t3", "https://x/push", "primary", 300.0, 1.5)
    for channel in (new, bobs, old):
        state.channels.save(channel)
    assert state.channels.get("c1") == old
    assert state.channels.list(A) == [old, new]
    assert state.channels.list() == [old, bobs, new]
    renewed = dataclasses.replace(old, expiration=500.0)
    state.channels.save(renewed)
    assert state.channels.get("c1") == renewed
    state.channels.forget("c1")
    assert state.channels.get("c1") is None and state.channels.list(A) == [new]


# --- runs and undo ------------------------------------------------------------------------


def test_a_run_records_its_writes_in_order_for_undo(state: State) -> None:
    run = state.runs.begin(A, now=1.0)
    assert state.runs.last_run(A) is None  # not finished yet
    state.runs.record_write(
        run, "google", "create", "g1", other_key="I1", version='"1"', before=None, now=2.0
    )
    state.runs.record_write(
        run,
        "exchange",
        "patch",
        "I2",
        other_key="g2",
        version="CK2",
        before={"summary": "old"},
        fields={"summary": "new"},
        now=3.0,
    )
    state.runs.finish(run, now=4.0)
    assert state.runs.last_run(A) == SyncRun(run, A, 1.0, 4.0, None)
    assert state.runs.last_run(B) is None
    writes = state.runs.run_writes(run)
    assert [dataclasses.replace(w, id=0) for w in writes] == [
        RunWrite(0, run, "google", "create", "g1", "I1", '"1"', None, None),
        RunWrite(
            0, run, "exchange", "patch", "I2", "g2", "CK2", {"summary": "old"}, {"summary": "new"}
        ),
    ]
    state.runs.mark_undone(run, now=5.0)
    assert state.runs.last_run(A) is None  # undone: nothing left to undo


def test_a_run_that_wrote_nothing_is_not_kept(state: State) -> None:
    wrote = state.runs.begin(A, now=1.0)
    state.runs.record_write(
        wrote, "google", "delete", "g1", other_key="I1", version=None, before={}, now=1.0
    )
    state.runs.finish(wrote, now=2.0)
    idle = state.runs.begin(A, now=3.0)
    state.runs.finish(idle, now=4.0)
    last = state.runs.last_run(A)
    assert last is not None and last.id == wrote
    assert state.runs.run_writes(idle) == []


# --- learned from traffic -----------------------------------------------------------------


def test_folders_items_and_series_masters_are_learned(state: State) -> None:
    state.learned.learn_folders(A, {"CAL": "calendar", "DEL": "deleteditems"})
    state.learned.learn_folders(A, {"CAL": "calendar"})
    state.learned.learn_folders(A, {})
    assert state.learned.folders(A) == {"CAL": "calendar", "DEL": "deleteditems"}
    state.learned.learn_items(A, {"OCC": "CalendarItem", "M": "Message"}, {"OCC": "MASTER"})
    assert state.learned.item_class(A, "M") == "Message"
    assert state.learned.master_of(A, "OCC") == "MASTER"
    assert state.learned.master_of(A, "M") is None
    # seen again without its master (a GetItem of the occurrence): the master is kept
    state.learned.learn_items(A, {"OCC": "CalendarItem"})
    assert state.learned.master_of(A, "OCC") == "MASTER"
    assert state.learned.master_of(B, "OCC") is None
    assert state.learned.item_class(A, "NEVER") is None


# --- leases -------------------------------------------------------------------------------


def test_one_holder_at_a_time_each_with_a_larger_fence(state: State) -> None:
    first = state.leases.acquire(A, "w1", 10.0, now=0.0)
    assert first is not None
    assert state.leases.acquire(A, "w2", 10.0, now=5.0) is None  # w1's is live
    assert state.leases.acquire(A, "w1", 10.0, now=5.0) == first  # its own, extended
    assert state.leases.holder(A, now=14.0) == Lease(A, "w1", first, 15.0)
    assert state.leases.acquire(B, "w2", 10.0, now=5.0) is not None  # another mailbox's
    # w1 stops renewing (a pause, a dead process): w2 takes over with a larger fence
    second = state.leases.acquire(A, "w2", 10.0, now=15.0)
    assert second is not None and second > first
    assert not state.leases.renew(A, "w1", first, 10.0, now=16.0)  # w1 is stale
    state.leases.release(A, "w1", first)  # and cannot release w2's lease either
    assert state.leases.holder(A, now=16.0) == Lease(A, "w2", second, 25.0)
    assert state.leases.renew(A, "w2", second, 10.0, now=20.0)
    assert state.leases.holder(A, now=29.0) == Lease(A, "w2", second, 30.0)
    state.leases.release(A, "w2", second)
    assert state.leases.holder(A, now=21.0) is None
    third = state.leases.acquire(A, "w1", 10.0, now=21.0)
    assert third is not None and third > second  # fences never go back


def test_two_contenders_one_lease(state_impl: Backing) -> None:
    states = [state_impl.open() for _ in range(4)]
    fences: dict[str, int | None] = {}
    start = threading.Barrier(len(states))

    def contend(name: str, state: State) -> None:
        start.wait()
        fences[name] = state.leases.acquire(A, name, 60.0, now=1.0)

    threads = [threading.Thread(target=contend, args=(f"w{i}", s)) for i, s in enumerate(states)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = {n: f for n, f in fences.items() if f is not None}
    assert len(fences) == 4 and len(winners) == 1
    ((name, fence),) = winners.items()
    assert states[0].leases.holder(A, now=2.0) == Lease(A, name, fence, 61.0)


class LeaseLost(Exception):
    pass


def fenced_unit_writes(
    state: State, holder: str, fence: int, *, now: float, renewed: threading.Event | None = None
) -> None:
    """A leased run's writes: inside one unit, the lease renewed first (refused for a stale
    holder), then the writes."""
    with state.unit() as uow:
        if not uow.leases.renew(A, holder, fence, 10.0, now=now):
            raise LeaseLost
        if renewed is not None:
            renewed.set()
            time.sleep(0.3)  # the run's writes take a while
        uow.cursors.save_google(A, f"{holder} wrote", now=now)


def test_a_stale_holders_writes_are_refused(state: State) -> None:
    first = state.leases.acquire(A, "w1", 10.0, now=0.0)
    assert first is not None
    fenced_unit_writes(state, "w1", first, now=5.0)
    assert state.cursors.get(A).google_sync_token == "w1 wrote"
    # w1 pauses past its lease; w2 takes over
    second = state.leases.acquire(A, "w2", 10.0, now=16.0)
    assert second is not None and second > first
    with pytest.raises(LeaseLost):
        fenced_unit_writes(state, "w1", first, now=17.0)
    fenced_unit_writes(state, "w2", second, now=17.0)
    assert state.cursors.get(A).google_sync_token == "w2 wrote"


def test_a_fenced_unit_and_a_takeover_never_both_win(state_impl: Backing) -> None:
    """w1 renews inside its unit and writes for a while; w2 tries to take over meanwhile,
    at a time when w1's lease would have run out but for the renewal: w2 must wait for the
    unit and then find the lease held, never take it while w1's writes go in."""
    w1, w2 = state_impl.open(), state_impl.open()
    fence = w1.leases.acquire(A, "w1", 10.0, now=0.0)
    assert fence is not None
    renewed = threading.Event()
    outcome: dict[str, object] = {}

    def holder() -> None:
        try:
            fenced_unit_writes(w1, "w1", fence, now=9.0, renewed=renewed)  # until 19.0
            outcome["w1"] = "wrote"
        except LeaseLost:
            outcome["w1"] = "refused"

    thread = threading.Thread(target=holder)
    thread.start()
    assert renewed.wait(10)
    outcome["w2"] = w2.leases.acquire(A, "w2", 10.0, now=12.0)
    thread.join(10)
    assert outcome == {"w1": "wrote", "w2": None}
    assert w2.leases.holder(A, now=12.0) == Lease(A, "w1", fence, 19.0)
    assert w2.cursors.get(A).google_sync_token == "w1 wrote"
