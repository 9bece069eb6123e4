"""calsync's state in one SQLite file (sync/state/base.py's interfaces; STYLE.md, 8 and 14).

Tables, all per mailbox:
- `folders`: calendar and deleted-items folder ids learned from traffic;
- `seen_items`: the item kind (CalendarItem, Message, ...) of ids learned from responses,
  so an UpdateItem naming only an ItemId can be told apart, and an occurrence's series
  master (what real clients edit by);
- `items`: the id map, Exchange item <-> Google event, with change key, etag, content hash,
  the last event written (the snapshot a patch applies to, sealed) and when the pair was
  last reconciled;
- `outbox`: the durable queue of changes to mirror, with each entry's claim;
- `sync_state`: where each user's feeds stand, their current and past error;
- `journal`: the versions calsync wrote (echo suppression), pruned past a retention;
- `conflicts`: the fields both sides changed and who won;
- `channels`: the Google push channels open (the token sealed);
- `runs`, `run_writes`: each run and, per write it made, the pre-image (sealed) and the
  version it left, for `calsync undo`;
- `leases`: who works for a mailbox, with a fencing number;
- `paused_users`: users the admin console paused, since when.

The schema is created with sqlite-utils and migrated at open, version by version; every
statement is a plain prepared one (sqlite-utils' table methods look the columns up on
every call, which cost the proxy's hook most of its time). One connection serves every
thread of a process, serialised by a lock; processes share the file in WAL mode, and a
write transaction starts with BEGIN IMMEDIATE, so a unit sees what it changes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import astuple
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from sync.state.base import (
    Conflict,
    Cursor,
    JsonInput,
    Lease,
    MappedItem,
    OutboxEntry,
    RunWrite,
    State,
    StoreError,
    SyncRun,
    WatchChannel,
    hold_name,
)
from sync.state.rows import (
    CHANNEL_COLUMNS,
    CURSOR_COLUMNS,
    ENTRY_COLUMNS,
    ITEM_COLUMNS,
    JOURNAL_RETENTION_S,
    LOCAL_HOLDER,
    LOCAL_LEASE_S,
    PRUNE_EVERY_S,
    RUN_WRITE_COLUMNS,
    MappingTaken,
    StateUnit,
    mapped_item,
    outbox_entry,
    run_write,
    watch_channel,
)
from sync.state.sealing import Sealer, private_file

SCHEMA_VERSION = 7

#: held while a database file is made and its connection opened: a file made by another
#: thread of this process is closed before this one connects (closing it later would drop
#: this process's SQLite locks; see sealing.private_file)
_OPENING = threading.Lock()


class Database:
    """The connection, its lock, the sealer and the unit of work in progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with _OPENING:  # a file private_file makes is closed before a connection reaches it
            private_file(path)
            conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.sealer = Sealer(path.with_name(path.name + ".key"))
        self.lock = threading.RLock()
        self.depth = 0  # units open on the thread holding the lock
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # survives kill -9; fsync at checkpoints
        conn.execute("PRAGMA busy_timeout=5000")
        self.conn = conn
        self.db = sqlite_utils.Database(conn)

    def unit(self) -> _Unit:
        """One transaction; inside another, a savepoint that only the outer one commits."""
        return _Unit(self, savepoint=True)

    def write(self) -> _Unit:
        """For a write of one statement (or of many rows that fail only together): its own
        transaction, or a part of the unit in progress (no savepoint: one statement is
        atomic, and a savepoint costs the proxy's hook two more)."""
        return _Unit(self, savepoint=False)

    def read(self) -> _Read:
        """For reads: the connection, under the lock (inside a unit, it sees the unit's
        writes)."""
        return _Read(self)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _Unit:
    """`Database.unit()` / `write()`: a class, not a generator, as the hook opens several
    of them per exchange. The lock is taken first: only its holder's depth counts."""

    __slots__ = ("_database", "_depth", "_savepoint")

    def __init__(self, database: Database, *, savepoint: bool) -> None:
        self._database = database
        self._savepoint = savepoint
        self._depth = -1

    def __enter__(self) -> sqlite3.Connection:
        database = self._database
        database.lock.acquire()
        try:
            depth = self._depth = database.depth
            if depth == 0:
                database.conn.execute("BEGIN IMMEDIATE")
            elif self._savepoint:
                database.conn.execute(f"SAVEPOINT unit{depth}")
        except BaseException:
            database.lock.release()
            raise
        database.depth = depth + 1
        return database.conn

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        database, depth = self._database, self._depth
        conn = database.conn
        database.depth = depth
        try:
            if kind is None:
                if depth == 0:
                    try:
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                elif self._savepoint:
                    conn.execute(f"RELEASE unit{depth}")
            elif conn.in_transaction:  # SQLite may have rolled back already (disk full)
                if depth == 0:
                    conn.execute("ROLLBACK")
                elif self._savepoint:
                    conn.execute(f"ROLLBACK TO unit{depth}")
                    conn.execute(f"RELEASE unit{depth}")
        finally:
            database.lock.release()


class _Read:
    __slots__ = ("_database",)

    def __init__(self, database: Database) -> None:
        self._database = database

    def __enter__(self) -> sqlite3.Connection:
        self._database.lock.acquire()
        return self._database.conn

    def __exit__(self, *_: object) -> None:
        self._database.lock.release()


# --- schema -------------------------------------------------------------------------------------


def _migrate(database: Database) -> None:
    db = database.db
    with database.unit():
        if "meta" not in db.table_names():
            db.table("meta").create({"key": str, "value": str}, pk="key")
        row = database.conn.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{database.path} has schema {version}, newer than this calsync"
                f" ({SCHEMA_VERSION}): upgrade calsync"
            )
        for number, step in enumerate(_STEPS, start=1):
            if version < number:
                step(db)
        database.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [str(SCHEMA_VERSION)],
        )


def _create_v1(db: sqlite_utils.Database) -> None:
    db.table("folders").create(
        {"mailbox": str, "folder_id": str, "role": str}, pk=("mailbox", "folder_id")
    )
    db.table("seen_items").create(
        {"mailbox": str, "item_id": str, "item_class": str}, pk=("mailbox", "item_id")
    )
    db.table("items").create(
        {
            "mailbox": str,
            "ews_item_id": str,
            "google_event_id": str,
            "ews_change_key": str,
            "google_etag": str,
            "content_hash": str,
            "snapshot": bytes,
            "updated_at": float,
        },
        pk=("mailbox", "ews_item_id"),
    )
    db.table("items").create_index(["mailbox", "google_event_id"], unique=True)
    db.table("outbox").create(
        {
            "id": int,
            "mailbox": str,
            "ews_item_id": str,
            "op": str,
            "change_key": str,
            "payload": bytes,
            "attempts": int,
            "next_attempt_at": float,
            "last_error": str,
            "state": str,
            "created_at": float,
        },
        pk="id",
    )
    db.table("outbox").create_index(["state", "mailbox", "ews_item_id", "id"])


def _create_v2(db: sqlite_utils.Database) -> None:
    """Two-way sync: where each feed stands, the journal of our own writes (echo
    suppression by exact version), and the conflicts the policy settled."""
    db.table("sync_state").create(
        {
            "mailbox": str,
            "google_sync_token": str,
            "ews_sync_state": str,
            "last_google_sync": float,
            "last_exchange_sync": float,
            "last_error": str,
        },
        pk="mailbox",
    )
    db.table("journal").create(
        {"mailbox": str, "side": str, "key": str, "version": str, "content_hash": str, "at": float},
        pk=("mailbox", "side", "key", "version"),
    )
    db.table("conflicts").create(
        {
            "id": int,
            "mailbox": str,
            "ews_item_id": str,
            "google_event_id": str,
            "field": str,
            "winner": str,
            "reason": str,
            "at": float,
        },
        pk="id",
    )


def _create_v3(db: sqlite_utils.Database) -> None:
    """Push: the events.watch channels open per user (sync/sources/push.py), kept so that a restart
    reuses or renews them. `if_not_exists`: a store taken back to an older version by hand
    keeps its tables."""
    db.table("channels").create(
        {
            "channel_id": str,
            "mailbox": str,
            "resource_id": str,
            "token": bytes,  # sealed: it is what proves a notification is Google's
            "address": str,
            "calendar_id": str,
            "expiration": float,
            "created_at": float,
        },
        pk="channel_id",
        if_not_exists=True,
    )


def _create_v4(db: sqlite_utils.Database) -> None:
    """Undo: each run, and per write it made the pre-image (sealed: it is event text) and
    the version it left (sync/cli/undo.py)."""
    db.table("runs").create(
        {"id": int, "mailbox": str, "started_at": float, "finished_at": float, "undone_at": float},
        pk="id",
        if_not_exists=True,
    )
    db.table("runs").create_index(["mailbox", "id"], if_not_exists=True)
    db.table("run_writes").create(
        {
            "id": int,
            "run_id": int,
            "side": str,
            "op": str,
            "key": str,
            "other_key": str,
            "version": str,
            "before": bytes,
            "fields": bytes,
            "at": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
        if_not_exists=True,
    )
    db.table("run_writes").create_index(["run_id", "id"], if_not_exists=True)


def _add_columns(db: sqlite_utils.Database, table: str, columns: Mapping[str, type]) -> None:
    have = db.table(table).columns_dict
    for name, kind in columns.items():
        if name not in have:  # a store taken back to an older version by hand
            db.table(table).add_column(name, kind)


def _create_v5(db: sqlite_utils.Database) -> None:
    """Quarantine that heals: when the job last reconciled each pair; a user's current
    error with its time, and the last resolved one with its times; an occurrence's own
    ItemId -> its series master."""
    _add_columns(db, "items", {"reconciled_at": float})
    _add_columns(db, "seen_items", {"master_id": str})
    _add_columns(
        db,
        "sync_state",
        {
            "last_error_at": float,
            "past_error": str,
            "past_error_at": float,
            "error_resolved_at": float,
        },
    )


def _create_v6(db: sqlite_utils.Database) -> None:
    """Several workers: outbox claims, leases with fencing numbers; the journal pruned by
    time."""
    _add_columns(db, "outbox", {"claimed_by": str, "claim_until": float})
    db.table("leases").create(
        {"mailbox": str, "holder": str, "fence": int, "expires_at": float},
        pk="mailbox",
        if_not_exists=True,
    )
    db.table("journal").create_index(["at"], if_not_exists=True)


def _create_v7(db: sqlite_utils.Database) -> None:
    """Paused users in the store (they were in a file beside it: sync/ops/pause.py imports
    it at open), so every process and node sharing the store sees a pause."""
    db.table("paused_users").create(
        {"mailbox": str, "paused_at": float}, pk="mailbox", if_not_exists=True
    )


_STEPS = (_create_v1, _create_v2, _create_v3, _create_v4, _create_v5, _create_v6, _create_v7)


# --- the concerns -------------------------------------------------------------------------------

_SAVE_ITEM = (
    "INSERT INTO items (mailbox, ews_item_id, google_event_id, ews_change_key, google_etag,"
    " content_hash, snapshot, updated_at, reconciled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (mailbox, ews_item_id) DO UPDATE SET"
    " google_event_id = excluded.google_event_id, ews_change_key = excluded.ews_change_key,"
    " google_etag = excluded.google_etag, content_hash = excluded.content_hash,"
    " snapshot = excluded.snapshot, updated_at = excluded.updated_at,"
    " reconciled_at = COALESCE(excluded.reconciled_at, items.reconciled_at)"
)


class SqliteIdMap:
    def __init__(self, database: Database) -> None:
        self._db = database

    def mapped(self, mailbox: str, ews_item_id: str) -> MappedItem | None:
        return self._one("ews_item_id", mailbox, ews_item_id)

    def mapped_by_google(self, mailbox: str, google_event_id: str) -> MappedItem | None:
        return self._one("google_event_id", mailbox, google_event_id)

    def _one(self, column: str, mailbox: str, key: str) -> MappedItem | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE mailbox = ? AND {column} = ?",  # noqa: S608 - a column of ours
                [mailbox, key],
            ).fetchone()
        return self._mapped(row) if row else None

    def mapped_items(self, mailbox: str) -> list[MappedItem]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE mailbox = ?",  # noqa: S608 - constant
                [mailbox],
            ).fetchall()
        return [self._mapped(r) for r in rows]

    def _mapped(self, row: Sequence[Any]) -> MappedItem:
        return mapped_item(row, self._db.sealer)

    def mapped_ids(self, mailbox: str) -> dict[str, str]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT ews_item_id, google_event_id FROM items WHERE mailbox = ?", [mailbox]
            ).fetchall()
        return dict(rows)

    def is_mapped(self, mailbox: str, ews_item_id: str) -> bool:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM items WHERE mailbox = ? AND ews_item_id = ?", [mailbox, ews_item_id]
            ).fetchone()
        return row is not None

    def count(self, mailbox: str) -> int:
        with self._db.read() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM items WHERE mailbox = ?", [mailbox]
            ).fetchone()
        return int(count)

    def reconciled_at(self, mailbox: str, ews_item_id: str) -> float | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT reconciled_at FROM items WHERE mailbox = ? AND ews_item_id = ?",
                [mailbox, ews_item_id],
            ).fetchone()
        return row[0] if row else None

    def save(self, mapping: MappedItem, *, now: float, reconciled: bool = False) -> None:
        values = (
            mapping.mailbox,
            mapping.ews_item_id,
            mapping.google_event_id,
            mapping.ews_change_key,
            mapping.google_etag,
            mapping.content_hash,
            self._db.sealer.seal_optional(mapping.snapshot),
            now,
            now if reconciled else None,
        )
        with self._db.write() as conn:
            try:
                conn.execute(_SAVE_ITEM, values)
            except sqlite3.IntegrityError:
                raise MappingTaken(mapping) from None

    def forget(self, mailbox: str, ews_item_id: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM items WHERE mailbox = ? AND ews_item_id = ?", [mailbox, ews_item_id]
            )


_ENQUEUE = (
    "INSERT INTO outbox (mailbox, ews_item_id, op, change_key, payload, attempts,"
    " next_attempt_at, last_error, state, created_at, claimed_by, claim_until)"
    " VALUES (?, ?, ?, ?, ?, 0, ?, NULL, 'pending', ?, ?, ?)"
)
#: An item's oldest pending entry (the only one of the item that may be handed out).
_HEAD = (
    "o.state = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending'"
    " AND p.mailbox = o.mailbox AND p.ews_item_id = o.ews_item_id AND p.id < o.id)"
)
#: Not a paused user's (those wait, handed out to nobody, until the user is resumed).
_UNPAUSED = "NOT EXISTS (SELECT 1 FROM paused_users z WHERE z.mailbox = o.mailbox)"
#: Due heads under no live claim, or under `:own`'s: entries held for this claimer (`claim`),
#: or a lone drainer's own earlier claims (`ready`); those first, then the oldest.
_CLAIMABLE = (
    f"SELECT {ENTRY_COLUMNS} FROM outbox o WHERE {_HEAD} AND {_UNPAUSED}"  # noqa: S608 - constants
    " AND o.next_attempt_at <= :now"
    " AND (o.claim_until IS NULL OR o.claim_until <= :now OR o.claimed_by = :own)"
    " ORDER BY o.claimed_by IS :own DESC, o.id LIMIT :limit"
)


class SqliteOutbox:
    def __init__(self, database: Database) -> None:
        self._db = database

    def enqueue(
        self,
        mailbox: str,
        ews_item_id: str,
        op: str,
        *,
        now: float,
        change_key: str | None = None,
        payload: Mapping[str, JsonInput] | None = None,
    ) -> int:
        sealed = self._db.sealer.seal_optional(payload)
        with self._db.write() as conn:
            cursor = conn.execute(
                _ENQUEUE, (mailbox, ews_item_id, op, change_key, sealed, now, now, None, None)
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def enqueue_many(
        self,
        entries: Sequence[tuple[str, str, str, str | None]],
        *,
        now: float,
        held_for: str | None = None,
        hold_s: float = 0.0,
    ) -> list[int]:
        ids: list[int] = []
        if not entries:
            return ids
        hold = (None, None) if held_for is None else (hold_name(held_for), now + hold_s)
        # no savepoint inside a unit: an insert fails only when the whole transaction does
        with self._db.write() as conn:
            for mailbox, ews_item_id, op, change_key in entries:
                cursor = conn.execute(
                    _ENQUEUE, (mailbox, ews_item_id, op, change_key, None, now, now, *hold)
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def claim(self, now: float, holder: str, lease_s: float, limit: int = 50) -> list[OutboxEntry]:
        return self._claim(now, holder, lease_s, limit, own=hold_name(holder))

    def ready(self, now: float, limit: int = 50) -> list[OutboxEntry]:
        """`claim` for one process draining alone (today's worker): it takes the claims of
        LOCAL_HOLDER, and gets its own claims back, so an entry a dead worker process left
        (or a restart cut short) is handed out again at once, as it always was."""
        return self._claim(now, LOCAL_HOLDER, LOCAL_LEASE_S, limit, own=LOCAL_HOLDER)

    def _claim(
        self, now: float, holder: str, lease_s: float, limit: int, own: str
    ) -> list[OutboxEntry]:
        until = now + lease_s
        with self._db.unit():
            conn = self._db.conn
            rows = conn.execute(_CLAIMABLE, {"now": now, "own": own, "limit": limit}).fetchall()
            rows.sort(key=lambda row: int(row[0]))  # oldest first, as handed out
            conn.executemany(
                "UPDATE outbox SET claimed_by = ?, claim_until = ? WHERE id = ?",
                [(holder, until, row[0]) for row in rows],
            )
        return [self._entry((*row[:-2], holder, until)) for row in rows]

    def release(self, entry_id: int) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE outbox SET claimed_by = NULL, claim_until = NULL WHERE id = ?", [entry_id]
            )

    def next_due(self, holder: str | None = None) -> float | None:
        return self._next_due(None if holder is None else hold_name(holder))

    def next_ready(self) -> float | None:
        """When `ready` may next hand something out (its own claims do not hold it back)."""
        return self._next_due(LOCAL_HOLDER)

    def _next_due(self, own: str | None) -> float | None:
        # an entry behind its item's oldest is not due before that one is done; one under
        # a live claim is due when the claim ends
        with self._db.read() as conn:
            (due,) = conn.execute(
                "SELECT MIN(CASE WHEN o.claim_until > o.next_attempt_at"  # noqa: S608 - constant
                " AND o.claimed_by IS NOT :own THEN o.claim_until ELSE o.next_attempt_at END)"
                f" FROM outbox o WHERE {_HEAD} AND {_UNPAUSED}",
                {"own": own},
            ).fetchone()
        return None if due is None else float(due)

    def entry(self, entry_id: int) -> OutboxEntry | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM outbox WHERE id = ?",  # noqa: S608 - constant
                [entry_id],
            ).fetchone()
        return self._entry(row) if row else None

    def pending(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self._entries("pending", mailbox)

    def queued(self, mailbox: str, ews_item_id: str) -> list[tuple[str, str | None]]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT op, change_key FROM outbox WHERE state = 'pending' AND mailbox = ?"
                " AND ews_item_id = ? ORDER BY id",
                [mailbox, ews_item_id],
            ).fetchall()
        return [(str(op), change_key) for op, change_key in rows]

    def quarantined(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self._entries("quarantined", mailbox)

    def _entries(self, state: str, mailbox: str | None) -> list[OutboxEntry]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM outbox WHERE state = ?"  # noqa: S608 - constant
                " AND (? IS NULL OR mailbox = ?) ORDER BY id",
                [state, mailbox, mailbox],
            ).fetchall()
        return [self._entry(r) for r in rows]

    def count(self, mailbox: str | None = None) -> int:
        with self._db.read() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE ? IS NULL OR mailbox = ?", [mailbox, mailbox]
            ).fetchone()
        return int(count)

    def _entry(self, row: Sequence[Any]) -> OutboxEntry:
        return outbox_entry(row, self._db.sealer)

    def superseded_by_delete(self, entry: OutboxEntry) -> bool:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM outbox WHERE mailbox = ? AND ews_item_id = ? AND op = 'delete'"
                " AND state = 'pending' AND id > ? LIMIT 1",
                [entry.mailbox, entry.ews_item_id, entry.id],
            ).fetchone()
        return row is not None

    def set_payload(self, entry_id: int, payload: Mapping[str, JsonInput]) -> None:
        sealed = self._db.sealer.seal(payload)
        with self._db.write() as conn:
            conn.execute("UPDATE outbox SET payload = ? WHERE id = ?", [sealed, entry_id])

    def retry_later(self, entry_id: int, *, error: str, at: float, quarantine: bool) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
                " state = ?, claimed_by = NULL, claim_until = NULL WHERE id = ?",
                [at, error[:500], "quarantined" if quarantine else "pending", entry_id],
            )

    def complete(self, entry_id: int) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", [entry_id])

    def heal(self, entry_id: int) -> bool:
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM outbox WHERE id = ? AND state = 'quarantined'", [entry_id]
            )
        return cursor.rowcount > 0


class SqliteCursors:
    def __init__(self, database: Database) -> None:
        self._db = database

    def get(self, mailbox: str) -> Cursor:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {CURSOR_COLUMNS} FROM sync_state WHERE mailbox = ?",  # noqa: S608 - constant
                [mailbox],
            ).fetchone()
        return Cursor(*row) if row else Cursor(mailbox)

    def save(self, cursor: Cursor) -> None:
        names = CURSOR_COLUMNS.split(", ")
        updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
        with self._db.write() as conn:
            conn.execute(
                f"INSERT INTO sync_state ({CURSOR_COLUMNS})"  # noqa: S608 - constants
                f" VALUES ({', '.join('?' * len(names))})"
                f" ON CONFLICT (mailbox) DO UPDATE SET {updates}",
                astuple(cursor),
            )

    def save_google(self, mailbox: str, sync_token: str | None, *, now: float) -> None:
        self._set(mailbox, "google_sync_token", sync_token, "last_google_sync", now)

    def save_exchange(self, mailbox: str, sync_state: str | None, *, now: float) -> None:
        self._set(mailbox, "ews_sync_state", sync_state, "last_exchange_sync", now)

    def record_error(self, mailbox: str, error: str, *, now: float) -> None:
        self._set(mailbox, "last_error", error[:500], "last_error_at", now)

    def _set(self, mailbox: str, what: str, value: str | None, when: str, now: float) -> None:
        with self._db.write() as conn:
            conn.execute(
                f"INSERT INTO sync_state (mailbox, {what}, {when}) VALUES (?, ?, ?)"  # noqa: S608 - columns of ours
                f" ON CONFLICT (mailbox) DO UPDATE SET {what} = excluded.{what},"
                f" {when} = excluded.{when}",
                [mailbox, value, now],
            )

    def clear_error(self, mailbox: str, *, now: float) -> bool:
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE sync_state SET past_error = last_error, past_error_at = last_error_at,"
                " error_resolved_at = ?, last_error = NULL, last_error_at = NULL"
                " WHERE mailbox = ? AND last_error IS NOT NULL AND last_error != ''",
                [now, mailbox],
            )
        return cursor.rowcount > 0


class SqliteJournal:
    def __init__(self, database: Database, retention_s: float) -> None:
        self._db = database
        self.retention_s = retention_s
        self._pruned_at = float("-inf")

    def record(
        self,
        mailbox: str,
        side: str,
        key: str,
        version: str | None,
        content_hash: str | None,
        *,
        now: float,
    ) -> None:
        if not version:
            return
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO journal (mailbox, side, key, version, content_hash, at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (mailbox, side, key, version)"
                " DO UPDATE SET content_hash = excluded.content_hash, at = excluded.at",
                [mailbox, side, key, version, content_hash, now],
            )
            if now - self._pruned_at >= PRUNE_EVERY_S:
                # in the same transaction: a record never waits for a second one
                self._pruned_at = now
                conn.execute("DELETE FROM journal WHERE at < ?", [now - self.retention_s])

    def is_echo(self, mailbox: str, side: str, key: str, version: str | None) -> bool:
        if not version:
            return False
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM journal WHERE mailbox = ? AND side = ? AND key = ? AND version = ?",
                [mailbox, side, key, version],
            ).fetchone()
        return row is not None

    def prune(self, older_than: float) -> int:
        with self._db.write() as conn:
            cursor = conn.execute("DELETE FROM journal WHERE at < ?", [older_than])
        return cursor.rowcount


class SqliteConflicts:
    def __init__(self, database: Database) -> None:
        self._db = database

    def record(
        self,
        mailbox: str,
        ews_item_id: str | None,
        google_event_id: str | None,
        field: str,
        winner: str,
        reason: str,
        *,
        now: float,
    ) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO conflicts (mailbox, ews_item_id, google_event_id, field, winner,"
                " reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [mailbox, ews_item_id, google_event_id, field, winner, reason, now],
            )

    def list(self, mailbox: str) -> list[Conflict]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id, mailbox, ews_item_id, google_event_id, field, winner, reason, at"
                " FROM conflicts WHERE mailbox = ? ORDER BY id",
                [mailbox],
            ).fetchall()
        return [Conflict(*r) for r in rows]


class SqliteChannels:
    def __init__(self, database: Database) -> None:
        self._db = database

    def save(self, channel: WatchChannel) -> None:
        values = list(astuple(channel))
        values[3] = self._db.sealer.seal(channel.token)
        with self._db.write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO channels ({CHANNEL_COLUMNS})"  # noqa: S608 - constant
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

    def get(self, channel_id: str) -> WatchChannel | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE channel_id = ?",  # noqa: S608 - constant
                [channel_id],
            ).fetchone()
        return self._channel(row) if row else None

    def list(self, mailbox: str | None = None) -> list[WatchChannel]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {CHANNEL_COLUMNS} FROM channels"  # noqa: S608 - constant
                " WHERE ? IS NULL OR mailbox = ? ORDER BY created_at",
                [mailbox, mailbox],
            ).fetchall()
        return [self._channel(r) for r in rows]

    def forget(self, channel_id: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM channels WHERE channel_id = ?", [channel_id])

    def _channel(self, row: Sequence[Any]) -> WatchChannel:
        return watch_channel(row, self._db.sealer)


class SqliteRuns:
    def __init__(self, database: Database) -> None:
        self._db = database

    def begin(self, mailbox: str, *, now: float) -> int:
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (mailbox, started_at) VALUES (?, ?)", [mailbox, now]
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish(self, run_id: int, *, now: float) -> None:
        with self._db.unit():
            conn = self._db.conn
            wrote = conn.execute(
                "SELECT 1 FROM run_writes WHERE run_id = ? LIMIT 1", [run_id]
            ).fetchone()
            if wrote:
                conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", [now, run_id])
            else:
                conn.execute("DELETE FROM runs WHERE id = ?", [run_id])

    def record_write(
        self,
        run_id: int,
        side: str,
        op: str,
        key: str,
        *,
        other_key: str | None,
        version: str | None,
        before: Mapping[str, JsonInput] | None,
        fields: Mapping[str, JsonInput] | None = None,
        now: float,
    ) -> None:
        seal = self._db.sealer.seal_optional
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO run_writes (run_id, side, op, key, other_key, version, before,"
                " fields, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, side, op, key, other_key, version, seal(before), seal(fields), now],
            )

    def last_run(self, mailbox: str) -> SyncRun | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT id, mailbox, started_at, finished_at, undone_at FROM runs"
                " WHERE mailbox = ? AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                [mailbox],
            ).fetchone()
        if row is None or row[4] is not None:
            return None
        return SyncRun(*row)

    def run_writes(self, run_id: int) -> list[RunWrite]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {RUN_WRITE_COLUMNS} FROM run_writes WHERE run_id = ? ORDER BY id",  # noqa: S608 - constant
                [run_id],
            ).fetchall()
        return [run_write(r, self._db.sealer) for r in rows]

    def mark_undone(self, run_id: int, *, now: float) -> None:
        with self._db.write() as conn:
            conn.execute("UPDATE runs SET undone_at = ? WHERE id = ?", [now, run_id])


#: The hook's writes (one exchange: a few rows), prepared once by sqlite3's statement cache.
_LEARN_FOLDER = (
    "INSERT INTO folders (mailbox, folder_id, role) VALUES (?, ?, ?)"
    " ON CONFLICT (mailbox, folder_id) DO UPDATE SET role = excluded.role"
)
_LEARN_ITEM = (
    "INSERT INTO seen_items (mailbox, item_id, item_class, master_id) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (mailbox, item_id) DO UPDATE SET item_class = excluded.item_class,"
    " master_id = COALESCE(excluded.master_id, seen_items.master_id)"
)


class SqliteLearned:
    def __init__(self, database: Database) -> None:
        self._db = database

    def learn_folders(self, mailbox: str, folders: Mapping[str, str]) -> None:
        if not folders:
            return
        with self._db.write() as conn:
            conn.executemany(_LEARN_FOLDER, [(mailbox, f, r) for f, r in folders.items()])

    def folders(self, mailbox: str) -> dict[str, str]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT folder_id, role FROM folders WHERE mailbox = ?", [mailbox]
            ).fetchall()
        return dict(rows)

    def learn_items(
        self, mailbox: str, items: Mapping[str, str], masters: Mapping[str, str] | None = None
    ) -> None:
        if not items:
            return
        masters = masters or {}
        with self._db.write() as conn:
            conn.executemany(
                _LEARN_ITEM, [(mailbox, i, c, masters.get(i)) for i, c in items.items()]
            )

    def item_class(self, mailbox: str, item_id: str) -> str | None:
        return self._seen("item_class", mailbox, item_id)

    def master_of(self, mailbox: str, item_id: str) -> str | None:
        return self._seen("master_id", mailbox, item_id)

    def _seen(self, column: str, mailbox: str, item_id: str) -> str | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {column} FROM seen_items WHERE mailbox = ? AND item_id = ?",  # noqa: S608 - a column of ours
                [mailbox, item_id],
            ).fetchone()
        return row[0] if row else None


class SqlitePauses:
    def __init__(self, database: Database) -> None:
        self._db = database

    def pause(self, mailbox: str, *, now: float) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO paused_users (mailbox, paused_at) VALUES (?, ?)"
                " ON CONFLICT (mailbox) DO NOTHING",
                [mailbox, now],
            )

    def resume(self, mailbox: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM paused_users WHERE mailbox = ?", [mailbox])

    def paused(self) -> dict[str, float]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT mailbox, paused_at FROM paused_users").fetchall()
        return {str(mailbox): float(at) for mailbox, at in rows}

    def is_paused(self, mailbox: str) -> bool:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM paused_users WHERE mailbox = ?", [mailbox]
            ).fetchone()
        return row is not None


class SqliteLeases:
    """One row per mailbox; the fence stays when the lease is released, so the next
    holder's is larger."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def acquire(self, mailbox: str, holder: str, ttl: float, *, now: float) -> int | None:
        with self._db.unit():
            conn = self._db.conn
            row = conn.execute(
                "SELECT holder, fence, expires_at FROM leases WHERE mailbox = ?", [mailbox]
            ).fetchone()
            live = row is not None and row[0] is not None and row[2] > now
            if live and row[0] != holder:
                return None
            fence: int = row[1] if live else (row[1] if row else 0) + 1
            conn.execute(
                "INSERT INTO leases (mailbox, holder, fence, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (mailbox) DO UPDATE SET holder = excluded.holder,"
                " fence = excluded.fence, expires_at = excluded.expires_at",
                [mailbox, holder, fence, now + ttl],
            )
        return fence

    def renew(self, mailbox: str, holder: str, fence: int, ttl: float, *, now: float) -> bool:
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE mailbox = ? AND holder = ? AND fence = ?",
                [now + ttl, mailbox, holder, fence],
            )
        return cursor.rowcount > 0

    def release(self, mailbox: str, holder: str, fence: int) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE leases SET holder = NULL, expires_at = NULL"
                " WHERE mailbox = ? AND holder = ? AND fence = ?",
                [mailbox, holder, fence],
            )

    def holder(self, mailbox: str, *, now: float) -> Lease | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT mailbox, holder, fence, expires_at FROM leases"
                " WHERE mailbox = ? AND holder IS NOT NULL AND expires_at > ?",
                [mailbox, now],
            ).fetchone()
        return Lease(*row) if row else None


class SqliteState:
    """calsync's state in one SQLite file (every user's; each row carries its mailbox).

    A `State` (sync/state/base.py); `unit()` yields the state itself: on this thread,
    every call between enter and exit is inside the unit's transaction."""

    def __init__(
        self, path: str | Path, *, journal_retention_s: float = JOURNAL_RETENTION_S
    ) -> None:
        self.path = Path(path)
        self._database = Database(self.path)
        try:
            _migrate(self._database)
        except BaseException:
            self._database.close()
            raise
        self.ids = SqliteIdMap(self._database)
        self.outbox = SqliteOutbox(self._database)
        self.cursors = SqliteCursors(self._database)
        self.journal = SqliteJournal(self._database, journal_retention_s)
        self.conflicts = SqliteConflicts(self._database)
        self.channels = SqliteChannels(self._database)
        self.runs = SqliteRuns(self._database)
        self.learned = SqliteLearned(self._database)
        self.leases = SqliteLeases(self._database)
        self.pauses = SqlitePauses(self._database)

    @property
    def db(self) -> sqlite_utils.Database:
        """The file itself, through sqlite-utils (for tests and migrations)."""
        return self._database.db

    def unit(self) -> StateUnit[SqliteState]:
        return StateUnit(self, self._database.unit())

    def close(self) -> None:
        self._database.close()


def outbox_size(path: Path) -> int:
    """Entries in the outbox of the state file at `path` (0 when it has none yet), read
    without writing: WAL lets a reader in beside the running proxy, and no key is needed."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()
    return int(count)


if TYPE_CHECKING:

    def _is_a_state(state: SqliteState) -> State:
        return state  # mypy holds SqliteState to the State protocol here
