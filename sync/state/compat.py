"""`Store`: the flat interface calsync's callers used before the state was split by concern.

Every method is one line over `SqliteState`'s concerns (no SQL here). It goes once every
caller takes a `State` (sync/state/base.py): new code uses `state.ids`, `state.outbox`, ...
and `state.unit()`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from sync.config import Config
from sync.ops import metrics, pause
from sync.state import open_state
from sync.state.base import (
    JsonInput,
    MappedItem,
    OutboxEntry,
    Pokes,
    RunWrite,
    State,
    StoreError,
    SyncRun,
    UnitOfWork,
    WatchChannel,
)
from sync.state.sqlite import SqliteState


class Store:
    """One store for all users (every row carries its mailbox): a SQLite file at a path,
    or any `State` (`Store.open(config)`: PostgreSQL when `[store] url` names one)."""

    def __init__(self, where: str | Path | State) -> None:
        self.state: State = SqliteState(where) if isinstance(where, (str, os.PathLike)) else where
        #: the SQLite file (None for a server's database)
        self.path: Path | None = getattr(self.state, "path", None)
        pause.opened(self)  # its pause flags are this process's while it is open

    @classmethod
    def open(cls, config: Config) -> Store:
        """The store the config names (sync/state `open_state`)."""
        return cls(open_state(config))

    @property
    def db(self) -> sqlite_utils.Database:
        if not isinstance(self.state, SqliteState):
            raise StoreError("this store is not a SQLite file")
        return self.state.db

    def unit(self) -> AbstractContextManager[UnitOfWork]:
        """`State.unit()`: the concerns (`uow.ids`, `uow.outbox`, ...) in one transaction."""
        return self.state.unit()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.state.unit():
            yield

    def close(self) -> None:
        pause.closed(self)
        self.state.close()

    # --- what the proxy learns ------------------------------------------------------------

    def learn_folders(self, mailbox: str, folders: Mapping[str, str]) -> None:
        self.state.learned.learn_folders(mailbox, folders)

    def folders(self, mailbox: str) -> dict[str, str]:
        return self.state.learned.folders(mailbox)

    def learn_items(self, mailbox: str, items: Mapping[str, str]) -> None:
        self.state.learned.learn_items(mailbox, items)

    def master_of(self, mailbox: str, item_id: str) -> str | None:
        return self.state.learned.master_of(mailbox, item_id)

    def item_class(self, mailbox: str, item_id: str) -> str | None:
        return self.state.learned.item_class(mailbox, item_id)

    # --- the id map -------------------------------------------------------------------------

    def mapped(self, mailbox: str, ews_item_id: str) -> MappedItem | None:
        return self.state.ids.mapped(mailbox, ews_item_id)

    def mapped_by_google(self, mailbox: str, google_event_id: str) -> MappedItem | None:
        return self.state.ids.mapped_by_google(mailbox, google_event_id)

    def is_mapped(self, mailbox: str, ews_item_id: str) -> bool:
        return self.state.ids.is_mapped(mailbox, ews_item_id)

    def mapped_ids(self, mailbox: str) -> dict[str, str]:
        return self.state.ids.mapped_ids(mailbox)

    def mapped_count(self, mailbox: str) -> int:
        return self.state.ids.count(mailbox)

    def reconciled_at(self, mailbox: str, ews_item_id: str) -> float | None:
        return self.state.ids.reconciled_at(mailbox, ews_item_id)

    def mapped_items(self, mailbox: str) -> list[MappedItem]:
        return self.state.ids.mapped_items(mailbox)

    def save_mapping(self, mapping: MappedItem, *, now: float, reconciled: bool = False) -> None:
        self.state.ids.save(mapping, now=now, reconciled=reconciled)

    def forget(self, mailbox: str, ews_item_id: str) -> None:
        self.state.ids.forget(mailbox, ews_item_id)

    # --- the outbox -------------------------------------------------------------------------

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
        return self.state.outbox.enqueue(
            mailbox, ews_item_id, op, now=now, change_key=change_key, payload=payload
        )

    def enqueue_many(
        self,
        entries: list[tuple[str, str, str, str | None]],
        *,
        now: float,
        held_for: str | None = None,
        hold_s: float = 0.0,
    ) -> list[int]:
        return self.state.outbox.enqueue_many(entries, now=now, held_for=held_for, hold_s=hold_s)

    def ready(self, now: float, limit: int = 50) -> list[OutboxEntry]:
        return self.state.outbox.ready(now, limit)

    @property
    def shared(self) -> bool:
        """Whether other nodes may drain this outbox too (a server's database, not a file
        one node owns): workers then take entries by `claim`, not `ready`."""
        return not isinstance(self.state, SqliteState)

    @property
    def pokes(self) -> Pokes | None:
        """How nodes sharing this store tell each other a user has something to sync."""
        pokes: Pokes | None = getattr(self.state, "pokes", None) if self.shared else None
        return pokes

    def claim(self, now: float, holder: str, lease_s: float, limit: int = 50) -> list[OutboxEntry]:
        return self.state.outbox.claim(now, holder, lease_s, limit)

    def next_due(self, holder: str | None = None) -> float | None:
        """When this node's worker may next take something: `ready`'s, or, given the
        holder it claims as, `claim`'s."""
        if holder is None:
            return self.state.outbox.next_ready()
        return self.state.outbox.next_due(holder)

    def entry(self, entry_id: int) -> OutboxEntry | None:
        return self.state.outbox.entry(entry_id)

    def pending(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self.state.outbox.pending(mailbox)

    def queued(self, mailbox: str, ews_item_id: str) -> list[tuple[str, str | None]]:
        return self.state.outbox.queued(mailbox, ews_item_id)

    def quarantined(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self.state.outbox.quarantined(mailbox)

    def superseded_by_delete(self, entry: OutboxEntry) -> bool:
        return self.state.outbox.superseded_by_delete(entry)

    def heal(self, entry_id: int) -> bool:
        return self.state.outbox.heal(entry_id)

    def set_payload(self, entry_id: int, payload: Mapping[str, JsonInput]) -> None:
        self.state.outbox.set_payload(entry_id, payload)

    def retry_later(self, entry_id: int, *, error: str, at: float, quarantine: bool) -> None:
        self.state.outbox.retry_later(entry_id, error=error, at=at, quarantine=quarantine)

    def complete(
        self, entry: OutboxEntry, *, mapping: MappedItem | None, forget: bool = False, now: float
    ) -> None:
        """The entry is done: record the new state of the item and drop the entry, at once."""
        with self.state.unit() as uow:
            if mapping is not None:
                uow.ids.save(mapping, now=now)
            if forget:
                uow.ids.forget(entry.mailbox, entry.ews_item_id)
            uow.outbox.complete(entry.id)

    # --- paused users (the admin console) ------------------------------------------------------

    def pause(self, mailbox: str, *, now: float) -> None:
        self.state.pauses.pause(mailbox, now=now)

    def resume(self, mailbox: str) -> None:
        self.state.pauses.resume(mailbox)

    def paused(self) -> dict[str, float]:
        return self.state.pauses.paused()

    def is_paused(self, mailbox: str) -> bool:
        return self.state.pauses.is_paused(mailbox)

    # --- two-way sync: feeds, journal, conflicts -----------------------------------------------

    def sync_state(self, mailbox: str) -> dict[str, Any]:
        return dataclasses.asdict(self.state.cursors.get(mailbox))

    def save_sync_state(self, mailbox: str, **values: Any) -> None:
        with self.state.unit() as uow:
            cursor = uow.cursors.get(mailbox)
            uow.cursors.save(dataclasses.replace(cursor, **values))

    def record_error(self, mailbox: str, error: str, *, now: float) -> None:
        self.state.cursors.record_error(mailbox, error, now=now)

    def clear_error(self, mailbox: str, *, now: float) -> bool:
        return self.state.cursors.clear_error(mailbox, now=now)

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
        self.state.journal.record(mailbox, side, key, version, content_hash, now=now)

    def is_echo(self, mailbox: str, side: str, key: str, version: str | None) -> bool:
        return self.state.journal.is_echo(mailbox, side, key, version)

    def prune_journal(self, older_than: float) -> None:
        self.state.journal.prune(older_than)

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
        self.state.conflicts.record(
            mailbox, ews_item_id, google_event_id, field, winner, reason, now=now
        )
        metrics.conflict(winner)  # calsync_conflicts_total{winner}

    def conflicts(self, mailbox: str) -> list[dict[str, Any]]:
        return [dataclasses.asdict(c) for c in self.state.conflicts.list(mailbox)]

    # --- push channels -------------------------------------------------------------------------

    def save_channel(self, channel: WatchChannel) -> None:
        self.state.channels.save(channel)

    def channel(self, channel_id: str) -> WatchChannel | None:
        return self.state.channels.get(channel_id)

    def channels(self, mailbox: str | None = None) -> list[WatchChannel]:
        return self.state.channels.list(mailbox)

    def forget_channel(self, channel_id: str) -> None:
        self.state.channels.forget(channel_id)

    # --- runs and their writes (undo) ----------------------------------------------------------

    def begin_run(self, mailbox: str, *, now: float) -> int:
        return self.state.runs.begin(mailbox, now=now)

    def finish_run(self, run_id: int, *, now: float) -> None:
        self.state.runs.finish(run_id, now=now)

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
        self.state.runs.record_write(
            run_id,
            side,
            op,
            key,
            other_key=other_key,
            version=version,
            before=before,
            fields=fields,
            now=now,
        )

    def last_run(self, mailbox: str) -> SyncRun | None:
        return self.state.runs.last_run(mailbox)

    def run_writes(self, run_id: int) -> list[RunWrite]:
        return self.state.runs.run_writes(run_id)

    def mark_undone(self, run_id: int, *, now: float) -> None:
        self.state.runs.mark_undone(run_id, now=now)
