"""The SQLite state (sync/state/sqlite.py): its file, its key, its schema versions."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sync.state.base import Cursor, MappedItem, StoreError
from sync.state.sqlite import SCHEMA_VERSION, SqliteState, outbox_size

OLD_STORES = Path(__file__).parent / "old_stores"
ALICE = "alice@example.com"  # the user of old_stores/make.py


def test_files_are_private(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "calsync.db")
    try:
        for name in ("calsync.db", "calsync.db.key", "calsync.db-wal", "calsync.db-shm"):
            mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
            assert mode == 0o600, (name, oct(mode))
    finally:
        state.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db")
    state.db.table("meta").upsert(
        {"key": "schema_version", "value": str(SCHEMA_VERSION + 1)}, pk="key"
    )
    state.close()
    with pytest.raises(StoreError, match="newer than this calsync"):
        SqliteState(tmp_path / "s.db")


def test_a_replaced_key_is_said_plainly(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db")
    state.outbox.enqueue("a@x", "ID", "upsert", now=1.0, payload={"summary": "x"})
    state.close()
    (tmp_path / "s.db.key").unlink()
    reopened = SqliteState(tmp_path / "s.db")
    try:
        with pytest.raises(StoreError, match="key"):
            reopened.outbox.pending()
    finally:
        reopened.close()


def test_what_the_hook_and_the_job_count_opens_no_snapshot(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db")
    for item, event, mailbox in (("I1", "g1", "a@x"), ("I2", "g2", "a@x"), ("I3", "g3", "b@x")):
        state.ids.save(MappedItem(mailbox, item, event, None, None, None, {"s": "x"}), now=1.0)
    state.outbox.enqueue("a@x", "I1", "update", now=1.0, payload={"s": "x"})
    state.close()
    (tmp_path / "s.db.key").unlink()  # every sealed value is now unreadable
    reopened = SqliteState(tmp_path / "s.db")
    try:
        assert reopened.ids.mapped_ids("a@x") == {"I1": "g1", "I2": "g2"}
        assert reopened.ids.is_mapped("a@x", "I1")
        assert reopened.ids.count("a@x") == 2
        assert reopened.outbox.count() == 1
        with pytest.raises(StoreError):
            reopened.ids.mapped_items("a@x")
    finally:
        reopened.close()


def test_outbox_size_reads_beside_a_writer_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    assert outbox_size(path) == 0  # no file yet
    sqlite3.connect(path).close()
    assert outbox_size(path) == 0  # no tables yet
    state = SqliteState(path)
    try:
        with state.unit() as uow:  # a writer in the middle of a unit
            uow.outbox.enqueue("a@x", "I1", "upsert", now=1.0)
            assert outbox_size(path) == 0
        assert outbox_size(path) == 1
    finally:
        state.close()


# --- older schema versions ----------------------------------------------------------------


def old_store(version: int, directory: Path) -> Path:
    """A state file as calsync's code of schema `version` left it (old_stores/make.py)."""
    path = directory / "calsync.db"
    conn = sqlite3.connect(path)
    try:
        conn.executescript((OLD_STORES / f"v{version}.sql").read_text())
        (found,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    assert found == str(version)
    (directory / "calsync.db.key").write_bytes((OLD_STORES / "key").read_bytes())
    return path


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_an_older_store_is_migrated_and_keeps_its_data(version: int, tmp_path: Path) -> None:
    state = SqliteState(old_store(version, tmp_path))
    try:
        assert state.db.table("meta").get("schema_version")["value"] == str(SCHEMA_VERSION)
        # v1: what the proxy learned, the id map and the outbox
        assert state.learned.folders(ALICE) == {"CAL": "calendar", "DEL": "deleteditems"}
        assert state.learned.item_class(ALICE, "MAIL1") == "Message"
        mapped = state.ids.mapped(ALICE, "ITEM1")
        assert mapped is not None and mapped.google_event_id == "gevent1"
        assert mapped.snapshot == {"summary": "Board meeting: the merger"}
        (pending,) = state.outbox.pending(ALICE)
        assert (pending.op, pending.change_key, pending.claimed_by) == ("update", "CK2", None)
        (quarantined,) = state.outbox.quarantined(ALICE)
        assert quarantined.payload == {"summary": "Board meeting: the merger"}
        # and what the newer versions added works on it
        (claimed,) = state.outbox.claim(200.0, "w1", 30.0)
        assert claimed.id == pending.id
        # (v6 left a lapsed lease of fence 1: the next holder's is larger)
        assert state.leases.acquire(ALICE, "w1", 10.0, now=200.0) == (2 if version >= 6 else 1)
        state.journal.record(ALICE, "exchange", "ITEM1", "CK2", None, now=200.0)
        state.runs.finish(state.runs.begin(ALICE, now=200.0), now=201.0)
        state.channels.forget("none")
        assert state.pauses.paused() == {}  # v7: nobody paused until someone is
        state.pauses.pause(ALICE, now=200.0)
        assert state.outbox.next_due() is None
        if version >= 2:
            cursor = state.cursors.get(ALICE)
            assert (cursor.google_sync_token, cursor.ews_sync_state) == ("gtoken", "ewsstate")
            assert state.journal.is_echo(ALICE, "google", "gevent1", '"etag1"')
            assert [c.field for c in state.conflicts.list(ALICE)] == ["location"]
        else:
            assert state.cursors.get(ALICE) == Cursor(ALICE)
        if version >= 3:
            (channel,) = state.channels.list(ALICE)
            assert channel.token == "channel-token-secret"
        if version >= 4:
            run = state.runs.last_run(ALICE)
            assert run is not None
            (write,) = state.runs.run_writes(run.id)
            assert write.before == {"summary": "Board meeting: the merger"}
        if version >= 5:
            assert state.ids.reconciled_at(ALICE, "ITEM3") == 112.0
            assert state.cursors.get(ALICE).last_error == "Google 503 backendError"
            assert state.learned.master_of(ALICE, "OCC1") == "ITEM1"
        else:
            assert state.ids.reconciled_at(ALICE, "ITEM1") is None
            assert state.learned.master_of(ALICE, "ITEM1") is None
    finally:
        state.close()
    # opened again: already current, nothing to do
    SqliteState(tmp_path / "calsync.db").close()


# --- two stores on one file in one process ---------------------------------------------------

_OTHER_PROCESS = """
import sys
from sync.state.sqlite import SqliteState
state = SqliteState(sys.argv[1])
state.outbox.enqueue("b@x", "OTHER", "upsert", now=2.0)
state.close()
"""


def test_a_second_store_in_this_process_keeps_the_file_locked(tmp_path: Path) -> None:
    """The addon opens a second store on the job's file. POSIX locks are the process's: a
    descriptor of the database file opened and closed beside a connection drops that
    connection's locks, and another calsync process, seeing no reader, deletes the WAL
    under it at its exit (this process's next writes then fail or are lost)."""
    path = tmp_path / "s.db"
    first = SqliteState(path)
    try:
        first.outbox.enqueue("a@x", "I1", "upsert", now=1.0)
        SqliteState(path).close()  # the second store
        subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(path)], check=True, timeout=60)
        assert path.with_name("s.db-wal").exists(), "the other process deleted the WAL"
        first.outbox.enqueue("a@x", "I2", "upsert", now=3.0)
        assert first.outbox.count() == 3
    finally:
        first.close()
    again = SqliteState(path)
    try:
        assert again.outbox.count() == 3
        assert again.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        again.close()
