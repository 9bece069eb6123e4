"""`Store`, the flat interface of before (sync/state/compat.py), as today's callers use it.

Goes with the module once every caller takes a `State`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.state.base import MappedItem, StoreError
from sync.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "calsync.db")


def test_ready_hands_its_own_unfinished_entries_out_again(store: Store) -> None:
    # one process drains alone: an entry a dead worker process left (or a restart cut
    # short) is handed out again at once, as before claims
    entry = store.enqueue("a@x", "ITEM", "upsert", now=1.0)
    assert [e.id for e in store.ready(1.0)] == [entry]
    assert [e.id for e in store.ready(1.0)] == [entry]
    assert store.next_due() == 1.0
    # ... but never one another worker holds a live claim on
    other = store.enqueue("a@x", "OTHER", "upsert", now=1.0)
    store.state.outbox.claim(1.0, "w2", 60.0)
    assert [e.id for e in store.ready(2.0)] == [entry]
    store.complete(store.entry(entry), mapping=None, now=2.0)  # type: ignore[arg-type]
    assert store.ready(2.0) == [] and store.next_due() == 61.0
    assert [e.id for e in store.ready(61.0)] == [other]


def test_complete_is_one_unit(store: Store) -> None:
    # Two Exchange items can never map to one Google event: when recording the mapping
    # fails, the outbox entry must still be there, untouched.
    store.enqueue("a@x", "A", "upsert", now=1.0)
    store.complete(
        store.ready(1.0)[0], mapping=MappedItem("a@x", "A", "g1", None, "e", "h", {}), now=1.0
    )
    entry_b = store.enqueue("a@x", "B", "upsert", now=2.0)
    (ready,) = store.ready(2.0)
    with pytest.raises(StoreError):
        store.complete(ready, mapping=MappedItem("a@x", "B", "g1", None, "e", "h", {}), now=2.0)
    assert [e.id for e in store.pending("a@x")] == [entry_b]
    assert store.mapped("a@x", "B") is None
    assert store.mapped("a@x", "A") is not None
    store.complete(store.ready(2.0)[0], mapping=None, forget=True, now=3.0)
    assert store.pending("a@x") == [] and store.mapped("a@x", "B") is None


def test_sync_state_reads_and_writes_by_name(store: Store) -> None:
    assert store.sync_state("a@x").get("google_sync_token") is None
    store.save_sync_state("a@x", google_sync_token="t", last_google_sync=5.0)
    store.save_sync_state("a@x", ews_sync_state="s")
    state = store.sync_state("a@x")
    assert (state["google_sync_token"], state["last_google_sync"], state["ews_sync_state"]) == (
        "t",
        5.0,
        "s",
    )
    store.record_conflict("a@x", "I", "g", "summary", "google", "policy", now=1.0)
    (conflict,) = store.conflicts("a@x")
    assert (conflict["field"], conflict["at"]) == ("summary", 1.0)
