"""The state store and its outbox (sync/store.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from sync.store import SCHEMA_VERSION, MappedItem, Store, StoreError


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "calsync.db")


def test_files_are_private(store: Store, tmp_path: Path) -> None:
    for name in ("calsync.db", "calsync.db.key"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))


def test_event_text_is_never_stored_in_plain_sight(store: Store, tmp_path: Path) -> None:
    secret = "Quarterly layoffs, do not forward"
    entry = store.enqueue("a@x", "ID1", "upsert", now=1.0, payload={"summary": secret})
    store.complete(
        store.ready(2.0)[0],
        mapping=MappedItem("a@x", "ID1", "g1", "ck", "etag", "hash", {"summary": secret}),
        now=2.0,
    )
    assert store.mapped("a@x", "ID1").snapshot == {"summary": secret}  # it opens again
    store.close()
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path
    assert entry == 1


def test_one_entry_per_item_at_a_time_oldest_first(store: Store) -> None:
    first = store.enqueue("a@x", "ITEM", "upsert", now=1.0)
    store.enqueue("a@x", "ITEM", "update", now=1.0)
    other = store.enqueue("a@x", "OTHER", "delete", now=1.0)
    assert [e.id for e in store.ready(5.0)] == [first, other]
    store.complete(store.ready(5.0)[0], mapping=None, now=5.0)
    assert [e.op for e in store.ready(5.0)] == ["update", "delete"]


def test_a_failing_item_waits_without_holding_back_others(store: Store) -> None:
    failing = store.enqueue("a@x", "BAD", "upsert", now=1.0)
    good = store.enqueue("a@x", "GOOD", "upsert", now=1.0)
    store.retry_later(failing, error="Google 503 backendError", at=100.0, quarantine=False)
    assert [e.id for e in store.ready(10.0)] == [good]
    assert [e.id for e in store.ready(100.0)] == [failing, good]
    assert store.next_due() == 1.0


def test_quarantined_entries_are_kept_with_their_error_and_release_the_item(store: Store) -> None:
    entry = store.enqueue("a@x", "BAD", "upsert", now=1.0)
    later = store.enqueue("a@x", "BAD", "update", now=1.0)
    store.retry_later(entry, error="Google 400 invalid: bad", at=2.0, quarantine=True)
    (kept,) = store.quarantined("a@x")
    assert (kept.id, kept.attempts, kept.last_error) == (entry, 1, "Google 400 invalid: bad")
    assert [e.id for e in store.ready(3.0)] == [later]


def test_complete_is_one_transaction(store: Store) -> None:
    # Two Exchange items can never map to one Google event (a unique index says so): when
    # recording the mapping fails, the outbox entry must still be there, untouched.
    store.enqueue("a@x", "A", "upsert", now=1.0)
    store.complete(
        store.ready(1.0)[0], mapping=MappedItem("a@x", "A", "g1", None, "e", "h", {}), now=1.0
    )
    entry_b = store.enqueue("a@x", "B", "upsert", now=2.0)
    (ready,) = store.ready(2.0)
    with pytest.raises(sqlite3.IntegrityError):
        store.complete(ready, mapping=MappedItem("a@x", "B", "g1", None, "e", "h", {}), now=2.0)
    assert [e.id for e in store.pending("a@x")] == [entry_b]
    assert store.mapped("a@x", "B") is None
    assert store.mapped("a@x", "A") is not None


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION + 1)}, pk="key")
    store.close()
    with pytest.raises(StoreError, match="newer than this calsync"):
        Store(tmp_path / "s.db")


def test_a_replaced_key_is_said_plainly(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.enqueue("a@x", "ID", "upsert", now=1.0, payload={"summary": "x"})
    store.close()
    (tmp_path / "s.db.key").unlink()
    with pytest.raises(StoreError, match="key"):
        Store(tmp_path / "s.db").pending()


def test_users_do_not_see_each_others_state(store: Store) -> None:
    store.learn_folders("a@x", {"F": "calendar"})
    store.learn_items("a@x", {"I": "CalendarItem"})
    assert store.folders("b@x") == {}
    assert store.item_class("b@x", "I") is None
    assert store.item_class("a@x", "I") == "CalendarItem"


def test_a_v1_store_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.enqueue("a@x", "ID", "upsert", now=1.0, payload={"summary": "kept"})
    # make it look like schema 1: the v2 tables gone, the version back to 1
    for table in ("sync_state", "journal", "conflicts"):
        store.db.table(table).drop()
    store.db.table("meta").upsert({"key": "schema_version", "value": "1"}, pk="key")
    store.close()
    reopened = Store(tmp_path / "s.db")
    assert {"sync_state", "journal", "conflicts"} <= set(reopened.db.table_names())
    assert reopened.pending()[0].payload == {"summary": "kept"}
    assert reopened.db.table("meta").get("schema_version")["value"] == str(SCHEMA_VERSION)


def test_journal_recognises_exactly_our_versions(store: Store) -> None:
    store.journal("a@x", "google", "ev1", '"123"', "h", now=1.0)
    assert store.is_echo("a@x", "google", "ev1", '"123"')
    assert not store.is_echo("a@x", "google", "ev1", '"124"')  # someone edited it since
    assert not store.is_echo("b@x", "google", "ev1", '"123"')
    assert not store.is_echo("a@x", "exchange", "ev1", '"123"')


# --- no orphans, quarantine that heals (schema 5) ----------------------------------------


def test_a_later_pending_delete_supersedes_an_entry(store: Store) -> None:
    upsert = store.enqueue("a@x", "ITEM", "upsert", now=1.0)
    update = store.enqueue("a@x", "ITEM", "update", now=2.0)
    store.enqueue("a@x", "OTHER", "delete", now=2.0)  # another item's
    store.enqueue("b@x", "ITEM", "delete", now=2.0)  # another user's
    entries = {e.id: e for e in store.pending("a@x")}
    assert not store.superseded_by_delete(entries[upsert])
    delete = store.enqueue("a@x", "ITEM", "delete", now=3.0)
    assert store.superseded_by_delete(entries[upsert])
    assert store.superseded_by_delete(entries[update])
    # a delete recorded before the entry does not supersede it (a re-created id)
    assert not store.superseded_by_delete(store.entry(delete))  # type: ignore[arg-type]
    store.complete(store.entry(delete), mapping=None, now=4.0)  # type: ignore[arg-type]
    assert not store.superseded_by_delete(entries[upsert])  # done: nothing follows


def test_only_a_quarantined_entry_heals(store: Store) -> None:
    pending = store.enqueue("a@x", "A", "upsert", now=1.0)
    quarantined = store.enqueue("a@x", "B", "upsert", now=1.0)
    store.retry_later(quarantined, error="Google 0 unreachable", at=2.0, quarantine=True)
    assert not store.heal(pending)
    assert store.heal(quarantined)
    assert not store.heal(quarantined)  # gone already
    assert store.quarantined("a@x") == []
    assert [e.id for e in store.pending("a@x")] == [pending]


def test_an_error_stays_current_until_a_run_succeeds_then_is_past(store: Store) -> None:
    assert not store.clear_error("a@x", now=1.0)  # nothing to clear, nothing made up
    store.save_sync_state("a@x", google_sync_token="kept")
    store.record_error("a@x", "Google 0 unreachable", now=10.0)
    store.record_error("a@x", "Google 503 backendError", now=20.0)
    state = store.sync_state("a@x")
    assert (state["last_error"], state["last_error_at"]) == ("Google 503 backendError", 20.0)
    assert state["past_error"] is None
    assert store.clear_error("a@x", now=30.0)
    state = store.sync_state("a@x")
    assert state["last_error"] is None and state["last_error_at"] is None
    assert (state["past_error"], state["past_error_at"], state["error_resolved_at"]) == (
        "Google 503 backendError",
        20.0,
        30.0,
    )
    assert state["google_sync_token"] == "kept"
    assert not store.clear_error("a@x", now=40.0)  # a second success keeps the past as it was
    assert store.sync_state("a@x")["error_resolved_at"] == 30.0
    assert store.sync_state("b@x").get("last_error") is None


def test_only_a_reconciling_save_says_when_the_pair_last_agreed(store: Store) -> None:
    pair = MappedItem("a@x", "ID", "g1", "ck1", '"1"', "h1", {"summary": "x"})
    store.save_mapping(pair, now=1.0)
    assert store.reconciled_at("a@x", "ID") is None
    store.save_mapping(pair, now=2.0, reconciled=True)
    assert store.reconciled_at("a@x", "ID") == 2.0
    # the worker's later write of the pair keeps when the job last reconciled it
    store.enqueue("a@x", "ID", "update", now=3.0)
    store.complete(store.ready(3.0)[0], mapping=pair, now=3.0)
    assert store.reconciled_at("a@x", "ID") == 2.0
    assert store.reconciled_at("a@x", "NONE") is None


def test_mapped_ids_open_no_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.save_mapping(MappedItem("a@x", "I1", "g1", None, None, None, {"summary": "x"}), now=1.0)
    store.save_mapping(MappedItem("a@x", "I2", "g2", None, None, None, {"summary": "y"}), now=1.0)
    store.save_mapping(MappedItem("b@x", "I3", "g3", None, None, None, {"summary": "z"}), now=1.0)
    store.close()
    (tmp_path / "s.db.key").unlink()  # every snapshot is now unreadable
    reopened = Store(tmp_path / "s.db")
    try:
        assert reopened.mapped_ids("a@x") == {"I1": "g1", "I2": "g2"}
        with pytest.raises(StoreError):
            reopened.mapped_items("a@x")
    finally:
        reopened.close()


def test_a_v4_store_gains_the_v5_columns_and_keeps_its_data(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.save_mapping(MappedItem("a@x", "I1", "g1", "ck", '"1"', "h", {"summary": "x"}), now=1.0)
    store.save_sync_state("a@x", google_sync_token="kept", last_error="Google 503")
    # make it look like schema 4: the v5 columns gone, the version back to 4
    store.db.table("items").transform(drop={"reconciled_at"})
    store.db.table("sync_state").transform(
        drop={"last_error_at", "past_error", "past_error_at", "error_resolved_at"}
    )
    store.db.table("meta").upsert({"key": "schema_version", "value": "4"}, pk="key")
    store.close()
    reopened = Store(tmp_path / "s.db")
    try:
        assert reopened.db.table("meta").get("schema_version")["value"] == str(SCHEMA_VERSION)
        assert reopened.mapped("a@x", "I1").snapshot == {"summary": "x"}  # type: ignore[union-attr]
        assert reopened.reconciled_at("a@x", "I1") is None
        assert reopened.clear_error("a@x", now=5.0)  # an error from before the upgrade
        state = reopened.sync_state("a@x")
        assert (state["past_error"], state["past_error_at"], state["google_sync_token"]) == (
            "Google 503",
            None,
            "kept",
        )
    finally:
        reopened.close()
