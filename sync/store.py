"""Per-user state in SQLite, through sqlite-utils (STYLE.md, convention 8).

- `folders`: calendar and deleted-items folder ids learned from traffic, per mailbox;
- `seen_items`: the item kind (CalendarItem, Message, ...) of ids learned from responses,
  so an UpdateItem naming only an ItemId can be told apart;
- `items`: the id map, Exchange item <-> Google event, with change key, etag, content hash
  and the last event written (the snapshot a patch applies to);
- `outbox`: the durable queue of changes to mirror;
- `channels`: the Google push channels open per user (schema 3);
- `runs`, `run_writes`: each two-way job run and, per write it made, what that write
  replaced (the pre-image, sealed) and the version it left, for `calsync undo` (schema 4);
- when the two-way job last brought each pair into agreement (`items.reconciled_at`), and
  each user's current and past error with their times (`sync_state`), so a quarantined
  entry the job has since carried heals and `calsync status` tells now from then (schema 5).

Event text (subjects, descriptions) is stored only sealed (Fernet, with a key kept beside
the database in a 0600 file): snapshots and outbox payloads are never in plain sight.
Every multi-row change is one transaction; the schema version is checked at open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from cryptography.fernet import Fernet, InvalidToken

from ews_parser.errors import CalsyncError

SCHEMA_VERSION = 5


class StoreError(CalsyncError):
    pass


@dataclass(frozen=True, slots=True)
class MappedItem:
    mailbox: str
    ews_item_id: str
    google_event_id: str
    ews_change_key: str | None
    google_etag: str | None
    content_hash: str | None
    snapshot: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class WatchChannel:
    """An events.watch channel (https://developers.google.com/workspace/calendar/api/guides/push)."""

    channel_id: str
    mailbox: str
    resource_id: str
    token: str
    address: str
    calendar_id: str
    expiration: float  # seconds since the epoch
    created_at: float


@dataclass(frozen=True, slots=True)
class RunWrite:
    """One write a job run made, and what it replaced.

    side/op: ("google"|"exchange", "create"|"patch"|"delete"). `key` is the event or item
    written, `other_key` its counterpart on the other side; `version` is the etag or
    ChangeKey the write left (None for a delete), which undo requires to be still current;
    `before` is the pre-image (managed Google fields; for Exchange, `to_google(item)`) and
    `fields` the fields the write set (a patch's body keys)."""

    id: int
    run_id: int
    side: str
    op: str
    key: str
    other_key: str | None
    version: str | None
    before: dict[str, Any] | None
    fields: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SyncRun:
    id: int
    mailbox: str
    started_at: float
    finished_at: float | None
    undone_at: float | None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    mailbox: str
    ews_item_id: str
    op: str  # "upsert", "update", "delete", "refresh"
    change_key: str | None
    payload: dict[str, Any] | None
    attempts: int
    next_attempt_at: float
    last_error: str | None
    state: str  # "pending", "quarantined"
    created_at: float


def _private_file(path: Path) -> None:
    """Create `path` if missing and make it readable by its owner only."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class Sealer:
    """Seals JSON values with a key kept in a 0600 file beside the database."""

    def __init__(self, key_path: Path) -> None:
        if not key_path.exists():
            _private_file(key_path)
            key_path.write_bytes(Fernet.generate_key())
        os.chmod(key_path, 0o600)
        self._fernet = Fernet(key_path.read_bytes().strip())

    def seal(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def open(self, token: bytes | None) -> Any:
        if token is None:
            return None
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise StoreError(
                "a sealed value does not open with this store's key: was the .key file replaced?"
            ) from None


class Store:
    """One SQLite file for all users; every row carries its mailbox."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(self.path)
        self._sealer = Sealer(self.path.with_name(self.path.name + ".key"))
        # One connection shared by the event loop and worker threads, serialised by a lock:
        # SQLite calls here are short, and one connection keeps transactions simple.
        self._lock = threading.RLock()
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # survives kill -9; fsync at checkpoints
        conn.execute("PRAGMA busy_timeout=5000")
        self.db = sqlite_utils.Database(conn)
        self._migrate()

    # --- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction():
            if "meta" not in self.db.table_names():
                self.db.table("meta").create({"key": str, "value": str}, pk="key")
            row = self._meta("schema_version")
            version = int(row) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema {version}, newer than this calsync ({SCHEMA_VERSION}):"
                    " upgrade calsync"
                )
            if version < 1:
                self._create_v1()
            if version < 2:
                self._create_v2()
            if version < 3:
                self._create_v3()
            if version < 4:
                self._create_v4()
            if version < 5:
                self._create_v5()
            self.db.table("meta").upsert(
                {"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key"
            )

    def _create_v1(self) -> None:
        self.db.table("folders").create(
            {"mailbox": str, "folder_id": str, "role": str}, pk=("mailbox", "folder_id")
        )
        self.db.table("seen_items").create(
            {"mailbox": str, "item_id": str, "item_class": str}, pk=("mailbox", "item_id")
        )
        self.db.table("items").create(
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
        self.db.table("items").create_index(["mailbox", "google_event_id"], unique=True)
        self.db.table("outbox").create(
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
        self.db.table("outbox").create_index(["state", "mailbox", "ews_item_id", "id"])

    def _create_v2(self) -> None:
        """Two-way sync: where each feed stands, the journal of our own writes (echo
        suppression by exact version), and the conflicts the policy settled."""
        self.db.table("sync_state").create(
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
        self.db.table("journal").create(
            {
                "mailbox": str,
                "side": str,
                "key": str,
                "version": str,
                "content_hash": str,
                "at": float,
            },
            pk=("mailbox", "side", "key", "version"),
        )
        self.db.table("conflicts").create(
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

    def _create_v3(self) -> None:
        """Push: the events.watch channels open per user (sync/push.py), kept so that a
        restart reuses or renews them. `if_not_exists`: a store taken back to an older
        version by hand keeps its tables."""
        self.db.table("channels").create(
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

    def _create_v4(self) -> None:
        """Undo: each two-way job run, and per write it made the pre-image (sealed: it is
        event text) and the version it left (sync/cli_undo.py)."""
        self.db.table("runs").create(
            {
                "id": int,
                "mailbox": str,
                "started_at": float,
                "finished_at": float,
                "undone_at": float,
            },
            pk="id",
            if_not_exists=True,
        )
        self.db.table("runs").create_index(["mailbox", "id"], if_not_exists=True)
        self.db.table("run_writes").create(
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
        self.db.table("run_writes").create_index(["run_id", "id"], if_not_exists=True)

    def _create_v5(self) -> None:
        """Quarantine that heals: when the job last reconciled each pair; a user's current
        error with its time, and the last resolved one with its times."""
        for table, columns in (
            ("items", {"reconciled_at": float}),
            # an occurrence's own ItemId -> its series master (what real clients edit by)
            ("seen_items", {"master_id": str}),
            (
                "sync_state",
                {
                    "last_error_at": float,
                    "past_error": str,
                    "past_error_at": float,
                    "error_resolved_at": float,
                },
            ),
        ):
            have = self.db.table(table).columns_dict
            for name, kind in columns.items():
                if name not in have:  # a store taken back to an older version by hand
                    self.db.table(table).add_column(name, kind)

    def _meta(self, key: str) -> str | None:
        rows = list(self.db.query("SELECT value FROM meta WHERE key = ?", [key]))
        return rows[0]["value"] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    # --- what the proxy learns ------------------------------------------------------------------

    def learn_folders(self, mailbox: str, folders: dict[str, str]) -> None:
        """folder id -> role ("calendar", "deleteditems")."""
        if not folders:
            return
        with self.transaction():
            self.db.table("folders").upsert_all(
                [{"mailbox": mailbox, "folder_id": f, "role": r} for f, r in folders.items()],
                pk=("mailbox", "folder_id"),
            )

    def folders(self, mailbox: str) -> dict[str, str]:
        with self._lock:
            rows = self.db.query("SELECT folder_id, role FROM folders WHERE mailbox = ?", [mailbox])
            return {r["folder_id"]: r["role"] for r in rows}

    def learn_items(self, mailbox: str, items: dict[str, str]) -> None:
        """item id -> item class."""
        if not items:
            return
        with self.transaction():
            self.db.table("seen_items").upsert_all(
                [{"mailbox": mailbox, "item_id": i, "item_class": c} for i, c in items.items()],
                pk=("mailbox", "item_id"),
            )

    def master_of(self, mailbox: str, item_id: str) -> str | None:
        """The series master of an occurrence known by its own ItemId."""
        with self._lock:
            row = self.db.execute(
                "SELECT master_id FROM seen_items WHERE mailbox = ? AND item_id = ?",
                [mailbox, item_id],
            ).fetchone()
        return row[0] if row else None

    def item_class(self, mailbox: str, item_id: str) -> str | None:
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT item_class FROM seen_items WHERE mailbox = ? AND item_id = ?",
                    [mailbox, item_id],
                )
            )
            return rows[0]["item_class"] if rows else None

    # --- the id map -------------------------------------------------------------------------------

    def mapped(self, mailbox: str, ews_item_id: str) -> MappedItem | None:
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT * FROM items WHERE mailbox = ? AND ews_item_id = ?",
                    [mailbox, ews_item_id],
                )
            )
        return self._mapped(rows[0]) if rows else None

    def is_mapped(self, mailbox: str, ews_item_id: str) -> bool:
        """Whether the item is mapped, without opening its sealed snapshot (the proxy's
        hook asks this for every item id a request names)."""
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT 1 FROM items WHERE mailbox = ? AND ews_item_id = ?",
                    [mailbox, ews_item_id],
                )
            )
        return bool(rows)

    def mapped_ids(self, mailbox: str) -> dict[str, str]:
        """Exchange item id -> Google event id of every pair, without opening a snapshot."""
        with self._lock:
            rows = self.db.execute(
                "SELECT ews_item_id, google_event_id FROM items WHERE mailbox = ?", [mailbox]
            ).fetchall()
        return dict(rows)

    def reconciled_at(self, mailbox: str, ews_item_id: str) -> float | None:
        """When the two-way job last brought the pair into agreement (None: never, or no
        such pair)."""
        with self._lock:
            row = self.db.execute(
                "SELECT reconciled_at FROM items WHERE mailbox = ? AND ews_item_id = ?",
                [mailbox, ews_item_id],
            ).fetchone()
        return row[0] if row else None

    def mapped_items(self, mailbox: str) -> list[MappedItem]:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM items WHERE mailbox = ?", [mailbox]))
        return [self._mapped(r) for r in rows]

    def _mapped(self, row: dict[str, Any]) -> MappedItem:
        return MappedItem(
            mailbox=row["mailbox"],
            ews_item_id=row["ews_item_id"],
            google_event_id=row["google_event_id"],
            ews_change_key=row["ews_change_key"],
            google_etag=row["google_etag"],
            content_hash=row["content_hash"],
            snapshot=self._sealer.open(row["snapshot"]),
        )

    # --- the outbox ----------------------------------------------------------------------

    def enqueue(
        self,
        mailbox: str,
        ews_item_id: str,
        op: str,
        *,
        now: float,
        change_key: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> int:
        with self.transaction():
            return self._enqueue(mailbox, ews_item_id, op, now, change_key, payload)

    def enqueue_many(
        self, entries: list[tuple[str, str, str, str | None]], *, now: float
    ) -> list[int]:
        """(mailbox, ews item id, op, change key) each, in one transaction."""
        with self.transaction():
            return [self._enqueue(m, i, op, now, ck, None) for m, i, op, ck in entries]

    def _enqueue(
        self,
        mailbox: str,
        ews_item_id: str,
        op: str,
        now: float,
        change_key: str | None,
        payload: dict[str, Any] | None,
    ) -> int:
        table = self.db.table("outbox")
        table.insert(
            {
                "mailbox": mailbox,
                "ews_item_id": ews_item_id,
                "op": op,
                "change_key": change_key,
                "payload": self._sealer.seal(payload) if payload is not None else None,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": None,
                "state": "pending",
                "created_at": now,
            }
        )
        last = table.last_pk
        assert isinstance(last, int)
        return last

    def ready(self, now: float, limit: int = 50) -> list[OutboxEntry]:
        """Pending entries due now, at most one per item (the oldest: per-item order)."""
        with self._lock:
            rows = list(
                self.db.query(
                    """
                    SELECT * FROM outbox o
                    WHERE o.state = 'pending' AND o.next_attempt_at <= ?
                      AND NOT EXISTS (
                        SELECT 1 FROM outbox p
                        WHERE p.state = 'pending' AND p.mailbox = o.mailbox
                          AND p.ews_item_id = o.ews_item_id AND p.id < o.id)
                    ORDER BY o.id LIMIT ?
                    """,
                    [now, limit],
                )
            )
        return [self._entry(r) for r in rows]

    def next_due(self) -> float | None:
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state = 'pending'"
                )
            )
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None

    def entry(self, entry_id: int) -> OutboxEntry | None:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM outbox WHERE id = ?", [entry_id]))
        return self._entry(rows[0]) if rows else None

    def pending(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self._entries("pending", mailbox)

    def quarantined(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self._entries("quarantined", mailbox)

    def _entries(self, state: str, mailbox: str | None) -> list[OutboxEntry]:
        with self._lock:
            if mailbox is None:
                rows = self.db.query("SELECT * FROM outbox WHERE state = ? ORDER BY id", [state])
            else:
                rows = self.db.query(
                    "SELECT * FROM outbox WHERE state = ? AND mailbox = ? ORDER BY id",
                    [state, mailbox],
                )
            return [self._entry(r) for r in rows]

    def _entry(self, row: dict[str, Any]) -> OutboxEntry:
        return OutboxEntry(
            id=row["id"],
            mailbox=row["mailbox"],
            ews_item_id=row["ews_item_id"],
            op=row["op"],
            change_key=row["change_key"],
            payload=self._sealer.open(row["payload"]),
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            state=row["state"],
            created_at=row["created_at"],
        )

    def superseded_by_delete(self, entry: OutboxEntry) -> bool:
        """Whether a delete of the same item was recorded after `entry` and is still to be
        done: the delete wins, so writing the event first would only leave one behind if the
        delete then failed for good."""
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT 1 FROM outbox WHERE mailbox = ? AND ews_item_id = ? AND op = 'delete'"
                    " AND state = 'pending' AND id > ? LIMIT 1",
                    [entry.mailbox, entry.ews_item_id, entry.id],
                )
            )
        return bool(rows)

    def heal(self, entry_id: int) -> bool:
        """A quarantined entry whose change has been carried since leaves the quarantine
        (and the outbox). False when it is no longer quarantined."""
        with self.transaction():
            cursor = self.db.execute(
                "DELETE FROM outbox WHERE id = ? AND state = 'quarantined'", [entry_id]
            )
            return cursor.rowcount > 0

    def set_payload(self, entry_id: int, payload: dict[str, Any]) -> None:
        """Keep what the worker prepared, so a retry after a crash need not prepare again."""
        with self.transaction():
            self.db.table("outbox").update(entry_id, {"payload": self._sealer.seal(payload)})

    def retry_later(self, entry_id: int, *, error: str, at: float, quarantine: bool) -> None:
        with self.transaction():
            row = self.db.table("outbox").get(entry_id)
            self.db.table("outbox").update(
                entry_id,
                {
                    "attempts": row["attempts"] + 1,
                    "next_attempt_at": at,
                    "last_error": error[:500],
                    "state": "quarantined" if quarantine else "pending",
                },
            )

    def complete(
        self,
        entry: OutboxEntry,
        *,
        mapping: MappedItem | None,
        forget: bool = False,
        now: float,
    ) -> None:
        """The entry is done: record the new state of the item and drop the entry, at once."""
        with self.transaction():
            if mapping is not None:
                self._upsert_mapping(mapping, now)
            if forget:
                self.db.execute(
                    "DELETE FROM items WHERE mailbox = ? AND ews_item_id = ?",
                    [entry.mailbox, entry.ews_item_id],
                )
            self.db.table("outbox").delete(entry.id)

    # --- two-way sync: feeds, journal, conflicts ---------------------------------------

    def sync_state(self, mailbox: str) -> dict[str, Any]:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM sync_state WHERE mailbox = ?", [mailbox]))
        return rows[0] if rows else {"mailbox": mailbox}

    def save_sync_state(self, mailbox: str, **values: Any) -> None:
        with self.transaction():
            self.db.table("sync_state").upsert({"mailbox": mailbox, **values}, pk="mailbox")

    def record_error(self, mailbox: str, error: str, *, now: float) -> None:
        """A run for `mailbox` failed: its error is the current one until a run succeeds."""
        self.save_sync_state(mailbox, last_error=error[:500], last_error_at=now)

    def clear_error(self, mailbox: str, *, now: float) -> bool:
        """A run for `mailbox` succeeded: the current error, if any, becomes the past one
        (kept with when it happened and when it was resolved). True when there was one."""
        with self.transaction():
            rows = list(
                self.db.query(
                    "SELECT last_error, last_error_at FROM sync_state WHERE mailbox = ?",
                    [mailbox],
                )
            )
            if not rows or not rows[0]["last_error"]:
                return False
            self.db.table("sync_state").upsert(
                {
                    "mailbox": mailbox,
                    "last_error": None,
                    "last_error_at": None,
                    "past_error": rows[0]["last_error"],
                    "past_error_at": rows[0]["last_error_at"],
                    "error_resolved_at": now,
                },
                pk="mailbox",
            )
            return True

    def journal(
        self,
        mailbox: str,
        side: str,
        key: str,
        version: str | None,
        content_hash: str | None,
        *,
        now: float,
    ) -> None:
        """Remember a version we wrote, so that it is ignored when it comes back."""
        if not version:
            return
        with self.transaction():
            self.db.table("journal").upsert(
                {
                    "mailbox": mailbox,
                    "side": side,
                    "key": key,
                    "version": version,
                    "content_hash": content_hash,
                    "at": now,
                },
                pk=("mailbox", "side", "key", "version"),
            )

    def is_echo(self, mailbox: str, side: str, key: str, version: str | None) -> bool:
        if not version:
            return False
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT 1 FROM journal"
                    " WHERE mailbox = ? AND side = ? AND key = ? AND version = ?",
                    [mailbox, side, key, version],
                )
            )
        return bool(rows)

    def prune_journal(self, older_than: float) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM journal WHERE at < ?", [older_than])

    def record_conflict(
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
        with self.transaction():
            self.db.table("conflicts").insert(
                {
                    "mailbox": mailbox,
                    "ews_item_id": ews_item_id,
                    "google_event_id": google_event_id,
                    "field": field,
                    "winner": winner,
                    "reason": reason,
                    "at": now,
                }
            )

    def conflicts(self, mailbox: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(
                self.db.query("SELECT * FROM conflicts WHERE mailbox = ? ORDER BY id", [mailbox])
            )

    def mapped_by_google(self, mailbox: str, google_event_id: str) -> MappedItem | None:
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT * FROM items WHERE mailbox = ? AND google_event_id = ?",
                    [mailbox, google_event_id],
                )
            )
        return self._mapped(rows[0]) if rows else None

    def save_mapping(self, mapping: MappedItem, *, now: float, reconciled: bool = False) -> None:
        """`reconciled`: the two-way job has just brought both sides into agreement."""
        with self.transaction():
            self._upsert_mapping(mapping, now, reconciled=reconciled)

    def forget(self, mailbox: str, ews_item_id: str) -> None:
        with self.transaction():
            self.db.execute(
                "DELETE FROM items WHERE mailbox = ? AND ews_item_id = ?", [mailbox, ews_item_id]
            )

    def _upsert_mapping(self, mapping: MappedItem, now: float, *, reconciled: bool = False) -> None:
        agreed = {"reconciled_at": now} if reconciled else {}
        self.db.table("items").upsert(
            {
                **agreed,
                "mailbox": mapping.mailbox,
                "ews_item_id": mapping.ews_item_id,
                "google_event_id": mapping.google_event_id,
                "ews_change_key": mapping.ews_change_key,
                "google_etag": mapping.google_etag,
                "content_hash": mapping.content_hash,
                "snapshot": self._sealer.seal(mapping.snapshot)
                if mapping.snapshot is not None
                else None,
                "updated_at": now,
            },
            pk=("mailbox", "ews_item_id"),
        )

    # --- push channels ------------------------------------------------------------------

    def save_channel(self, channel: WatchChannel) -> None:
        with self.transaction():
            self.db.table("channels").upsert(
                {
                    "channel_id": channel.channel_id,
                    "mailbox": channel.mailbox,
                    "resource_id": channel.resource_id,
                    "token": self._sealer.seal(channel.token),
                    "address": channel.address,
                    "calendar_id": channel.calendar_id,
                    "expiration": channel.expiration,
                    "created_at": channel.created_at,
                },
                pk="channel_id",
            )

    def channel(self, channel_id: str) -> WatchChannel | None:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM channels WHERE channel_id = ?", [channel_id]))
        return self._channel(rows[0]) if rows else None

    def channels(self, mailbox: str | None = None) -> list[WatchChannel]:
        """Newest last."""
        with self._lock:
            if mailbox is None:
                rows = list(self.db.query("SELECT * FROM channels ORDER BY created_at"))
            else:
                rows = list(
                    self.db.query(
                        "SELECT * FROM channels WHERE mailbox = ? ORDER BY created_at", [mailbox]
                    )
                )
        return [self._channel(r) for r in rows]

    def forget_channel(self, channel_id: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM channels WHERE channel_id = ?", [channel_id])

    def _channel(self, row: dict[str, Any]) -> WatchChannel:
        return WatchChannel(
            channel_id=row["channel_id"],
            mailbox=row["mailbox"],
            resource_id=row["resource_id"],
            token=self._sealer.open(row["token"]),
            address=row["address"],
            calendar_id=row["calendar_id"],
            expiration=row["expiration"],
            created_at=row["created_at"],
        )

    # --- runs and their writes (undo) ---------------------------------------------------

    def begin_run(self, mailbox: str, *, now: float) -> int:
        with self.transaction():
            table = self.db.table("runs")
            table.insert({"mailbox": mailbox, "started_at": now})
            last = table.last_pk
        assert isinstance(last, int)
        return last

    def finish_run(self, run_id: int, *, now: float) -> None:
        """The run is over: one that wrote nothing is dropped (there is nothing to undo)."""
        with self.transaction():
            wrote = list(
                self.db.query("SELECT 1 FROM run_writes WHERE run_id = ? LIMIT 1", [run_id])
            )
            if wrote:
                self.db.table("runs").update(run_id, {"finished_at": now})
            else:
                self.db.execute("DELETE FROM runs WHERE id = ?", [run_id])

    def record_write(
        self,
        run_id: int,
        side: str,
        op: str,
        key: str,
        *,
        other_key: str | None,
        version: str | None,
        before: dict[str, Any] | None,
        fields: dict[str, Any] | None = None,
        now: float,
    ) -> None:
        with self.transaction():
            self.db.table("run_writes").insert(
                {
                    "run_id": run_id,
                    "side": side,
                    "op": op,
                    "key": key,
                    "other_key": other_key,
                    "version": version,
                    "before": self._sealer.seal(before) if before is not None else None,
                    "fields": self._sealer.seal(fields) if fields is not None else None,
                    "at": now,
                }
            )

    def last_run(self, mailbox: str) -> SyncRun | None:
        """The user's last completed run that wrote something and is not undone."""
        with self._lock:
            rows = list(
                self.db.query(
                    "SELECT * FROM runs WHERE mailbox = ? AND finished_at IS NOT NULL"
                    " ORDER BY id DESC LIMIT 1",
                    [mailbox],
                )
            )
        if not rows or rows[0]["undone_at"] is not None:
            return None
        row = rows[0]
        return SyncRun(
            row["id"], row["mailbox"], row["started_at"], row["finished_at"], row["undone_at"]
        )

    def run_writes(self, run_id: int) -> list[RunWrite]:
        """In the order they were made."""
        with self._lock:
            rows = list(
                self.db.query("SELECT * FROM run_writes WHERE run_id = ? ORDER BY id", [run_id])
            )
        return [
            RunWrite(
                id=r["id"],
                run_id=r["run_id"],
                side=r["side"],
                op=r["op"],
                key=r["key"],
                other_key=r["other_key"],
                version=r["version"],
                before=self._sealer.open(r["before"]),
                fields=self._sealer.open(r["fields"]),
            )
            for r in rows
        ]

    def mark_undone(self, run_id: int, *, now: float) -> None:
        with self.transaction():
            self.db.table("runs").update(run_id, {"undone_at": now})
