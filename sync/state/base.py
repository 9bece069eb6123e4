"""calsync's state behind interfaces: the value types, one Protocol per concern, and the
unit of work that composes them (STYLE.md, conventions 8 and 14).

A `State` offers every concern (`state.ids`, `state.outbox`, ...); each method call is
atomic on its own. `with state.unit() as uow:` runs every call made through `uow` (or
through `state`, on the same thread) in one transaction: all of it is kept, or none of it
when an exception leaves the block. A `unit()` opened inside another joins it: only the
outermost one commits, and an exception leaving an inner one undoes the inner one's
writes (and everything, if the outer one lets it through).

Times are seconds since the epoch, passed in (`now`): no implementation reads a clock.
Event text (snapshots, payloads, pre-images, channel tokens) is stored sealed.

The SQLite implementation is `sync/state/sqlite.py`; every implementation passes the
contract suite in tests/sync/state/test_contract.py.
"""

from __future__ import annotations

import builtins
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from ews_parser.errors import CalsyncError

#: What the state keeps of a Google event (a snapshot, a payload, a pre-image): JSON, as
#: read back (JsonObject), and as given (JsonInput: any mappings and sequences of JSON).
JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = dict[str, JsonValue]
JsonInput: TypeAlias = (
    "str | int | float | bool | Sequence[JsonInput] | Mapping[str, JsonInput] | None"
)


class StoreError(CalsyncError):
    """The state cannot be used as it is (a newer schema, a replaced key, ...)."""


def new_holder() -> str:
    """A name for a claim or lease holder of this process: host, process, and a random
    part (two holders in one process are two workers)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def hold_name(holder: str) -> str:
    """The claim under which entries wait for `holder` (`Outbox.enqueue_many`'s
    `held_for`): a name of its own, so that what `holder` is at work on (claimed under
    `holder`) is never handed to it twice."""
    return f"{holder}/recorded"


class StaleLease(StoreError):
    """A write made under a user's lease after it passed to another node: refused."""


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MappedItem:
    """One pair of the id map: an Exchange item and its Google event, with the versions
    last agreed and the event last written (the base of a three-way merge)."""

    mailbox: str
    ews_item_id: str
    google_event_id: str
    ews_change_key: str | None
    google_etag: str | None
    content_hash: str | None
    snapshot: JsonObject | None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A change to mirror. `claimed_by`/`claim_until`: who is at work on it, until when
    (None: nobody; a claim past its time is handed out again)."""

    id: int
    mailbox: str
    ews_item_id: str
    op: str  # "upsert", "update", "delete", "refresh"
    change_key: str | None
    payload: JsonObject | None
    attempts: int
    next_attempt_at: float
    last_error: str | None
    state: str  # "pending", "quarantined"
    created_at: float
    claimed_by: str | None = None
    claim_until: float | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a user's feeds stand, and the user's current and past error."""

    mailbox: str
    google_sync_token: str | None = None
    ews_sync_state: str | None = None
    last_google_sync: float | None = None
    last_exchange_sync: float | None = None
    #: the current error: the last run failed (None once one succeeds)
    last_error: str | None = None
    last_error_at: float | None = None
    #: the last error resolved, when it happened and when a run succeeded again
    past_error: str | None = None
    past_error_at: float | None = None
    error_resolved_at: float | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """A field both sides changed, and which side the policy let win."""

    id: int
    mailbox: str
    ews_item_id: str | None
    google_event_id: str | None
    field: str
    winner: str
    reason: str
    at: float


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
class SyncRun:
    id: int
    mailbox: str
    started_at: float
    finished_at: float | None
    undone_at: float | None


#: `RunWrite.key` of an Exchange create whose answer was lost: Exchange gives an item's
#: id only in CreateItem's answer.
UNKNOWN_ITEM = ""


@dataclass(frozen=True, slots=True)
class RunWrite:
    """One write a run made, and what it replaced.

    side/op: ("google"|"exchange", "create"|"patch"|"delete"). `key` is the event or item
    written, `other_key` its counterpart on the other side; `version` is the etag or
    ChangeKey the write left (None for a delete), which undo requires to be still current;
    `before` is the pre-image (managed Google fields; for Exchange, `to_google(item)`) and
    `fields` the fields the write set (a patch's body keys). An Exchange create whose
    answer was lost has no item id to keep (`key` is `UNKNOWN_ITEM`): the item carries
    the event's id (`other_key`) from its CreateItem on, and undo finds it by that."""

    id: int
    run_id: int
    side: str
    op: str
    key: str
    other_key: str | None
    version: str | None
    before: JsonObject | None
    fields: JsonObject | None


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may work for a mailbox until when. `fence` grows with every new holder: a write
    carrying an older fence comes from a holder that lost the lease."""

    mailbox: str
    holder: str
    fence: int
    expires_at: float


# --- concerns -------------------------------------------------------------------------------


class IdMap(Protocol):
    """Exchange item <-> Google event, per mailbox."""

    def mapped(self, mailbox: str, ews_item_id: str) -> MappedItem | None: ...

    def mapped_by_google(self, mailbox: str, google_event_id: str) -> MappedItem | None: ...

    def mapped_items(self, mailbox: str) -> list[MappedItem]: ...

    def mapped_ids(self, mailbox: str) -> dict[str, str]:
        """Exchange item id -> Google event id of every pair (no snapshot opened)."""
        ...

    def is_mapped(self, mailbox: str, ews_item_id: str) -> bool:
        """Without opening the snapshot (the proxy's hook asks it for every id it sees)."""
        ...

    def count(self, mailbox: str) -> int: ...

    def reconciled_at(self, mailbox: str, ews_item_id: str) -> float | None:
        """When a save with `reconciled=True` last brought the pair into agreement."""
        ...

    def save(self, mapping: MappedItem, *, now: float, reconciled: bool = False) -> None:
        """Insert or replace the pair; `reconciled`: both sides were just read and agree
        (a save without it keeps the pair's earlier `reconciled_at`)."""
        ...

    def forget(self, mailbox: str, ews_item_id: str) -> None: ...


class Outbox(Protocol):
    """The durable queue of changes to mirror, drained by one or more workers.

    Entries of one item are done in the order they were recorded: only an item's oldest
    pending entry is ever handed out, and only while nobody holds a live claim on it. A
    paused user's entries (`Pauses`) are handed out to nobody until the user is resumed."""

    def enqueue(
        self,
        mailbox: str,
        ews_item_id: str,
        op: str,
        *,
        now: float,
        change_key: str | None = None,
        payload: Mapping[str, JsonInput] | None = None,
    ) -> int: ...

    def enqueue_many(
        self,
        entries: Sequence[tuple[str, str, str, str | None]],
        *,
        now: float,
        held_for: str | None = None,
        hold_s: float = 0.0,
    ) -> list[int]:
        """(mailbox, ews item id, op, change key) each; ids in the same order.

        `held_for`: the holder whose `claim` should take these entries (the node that
        recorded them has what they need in memory). They wait for it alone for `hold_s`
        seconds, then any claimer may take them (that node is dead, stalled or behind)."""
        ...

    def claim(self, now: float, holder: str, lease_s: float, limit: int = 50) -> list[OutboxEntry]:
        """Due pending entries for `holder` to work on for `lease_s` seconds, oldest first
        (those held for `holder`, by enqueue_many's `held_for`, taken first, held or past
        the hold): at most one per item, never one behind an older pending entry of its
        item, never one under a live claim or hold but a hold for `holder`.
        `complete`, `retry_later` and `release` end the claim; a claim or hold not ended
        in time is handed out again (its holder is presumed dead)."""
        ...

    def ready(self, now: float, limit: int = 50) -> list[OutboxEntry]:
        """`claim` for one process draining a store alone: its own earlier claims (a worker
        process that died, a restart cut short) are handed out again at once."""
        ...

    def next_ready(self) -> float | None:
        """When `ready` may next hand something out."""
        ...

    def release(self, entry_id: int) -> None:
        """End the claim without an attempt: the entry is due again at once."""
        ...

    def next_due(self, holder: str | None = None) -> float | None:
        """When `claim` may next hand something out (None: the outbox is empty); to
        `holder`: entries held for it are due without waiting for their hold."""
        ...

    def entry(self, entry_id: int) -> OutboxEntry | None: ...

    def pending(self, mailbox: str | None = None) -> list[OutboxEntry]: ...

    def queued(self, mailbox: str, ews_item_id: str) -> list[tuple[str, str | None]]:
        """The (op, change_key) of the item's pending entries, oldest first: what a
        source already has in hand for it (no payload read or unsealed)."""
        ...

    def quarantined(self, mailbox: str | None = None) -> list[OutboxEntry]: ...

    def count(self, mailbox: str | None = None) -> int:
        """Entries not done yet, pending or quarantined (without opening a payload)."""
        ...

    def superseded_by_delete(self, entry: OutboxEntry) -> bool:
        """Whether a pending delete of the same item was recorded after `entry`."""
        ...

    def set_payload(self, entry_id: int, payload: Mapping[str, JsonInput]) -> None:
        """Keep what the worker prepared, so a retry after a crash need not prepare again."""
        ...

    def retry_later(self, entry_id: int, *, error: str, at: float, quarantine: bool) -> None:
        """One more failed attempt: due again at `at`, or quarantined; the claim ends."""
        ...

    def complete(self, entry_id: int) -> None:
        """The entry is done: it leaves the outbox (with its claim)."""
        ...

    def heal(self, entry_id: int) -> bool:
        """A quarantined entry whose change was carried since leaves the outbox. False
        when it is no longer quarantined."""
        ...


class Cursors(Protocol):
    """Per user: where the Google and Exchange feeds stand, and the user's errors."""

    def get(self, mailbox: str) -> Cursor:
        """The user's cursor (all None for a user never seen)."""
        ...

    def save(self, cursor: Cursor) -> None: ...

    def save_google(self, mailbox: str, sync_token: str | None, *, now: float) -> None:
        """The Google feed read up to `sync_token`, at `now`."""
        ...

    def save_exchange(self, mailbox: str, sync_state: str | None, *, now: float) -> None:
        """The Exchange feed read up to `sync_state` (SyncFolderItems), at `now`."""
        ...

    def record_error(self, mailbox: str, error: str, *, now: float) -> None:
        """A run failed: its error is the current one until a run succeeds."""
        ...

    def clear_error(self, mailbox: str, *, now: float) -> bool:
        """A run succeeded: the current error, if any, becomes the past one. True when
        there was one."""
        ...


class Journal(Protocol):
    """The versions calsync wrote, so that each is ignored when a feed brings it back."""

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
        """Remember a version we wrote (nothing without a version). Entries older than
        the retention are pruned as records come in."""
        ...

    def is_echo(self, mailbox: str, side: str, key: str, version: str | None) -> bool: ...

    def prune(self, older_than: float) -> int:
        """Drop entries recorded before `older_than`; how many went."""
        ...


class Conflicts(Protocol):
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
    ) -> None: ...

    def list(self, mailbox: str) -> builtins.list[Conflict]:
        """Oldest first."""
        ...


class Channels(Protocol):
    """The Google push channels open, per user."""

    def save(self, channel: WatchChannel) -> None: ...

    def get(self, channel_id: str) -> WatchChannel | None: ...

    def list(self, mailbox: str | None = None) -> builtins.list[WatchChannel]:
        """Newest last."""
        ...

    def forget(self, channel_id: str) -> None: ...


class Runs(Protocol):
    """Each sync run, and per write it made what that write replaced (for undo)."""

    def begin(self, mailbox: str, *, now: float) -> int: ...

    def finish(self, run_id: int, *, now: float) -> None:
        """The run is over: one that wrote nothing is dropped (there is nothing to undo)."""
        ...

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
    ) -> None: ...

    def last_run(self, mailbox: str) -> SyncRun | None:
        """The user's last finished run that wrote something, unless it was undone."""
        ...

    def run_writes(self, run_id: int) -> list[RunWrite]:
        """In the order they were made."""
        ...

    def mark_undone(self, run_id: int, *, now: float) -> None: ...


class Learned(Protocol):
    """What the proxy learns from traffic: folder roles, and the kind (and series master)
    of item ids seen in responses."""

    def learn_folders(self, mailbox: str, folders: Mapping[str, str]) -> None:
        """folder id -> role ("calendar", "deleteditems")."""
        ...

    def folders(self, mailbox: str) -> dict[str, str]: ...

    def learn_items(
        self, mailbox: str, items: Mapping[str, str], masters: Mapping[str, str] | None = None
    ) -> None:
        """item id -> item class; `masters`: occurrence id -> its series master (a master
        learned earlier is kept when none is given)."""
        ...

    def item_class(self, mailbox: str, item_id: str) -> str | None: ...

    def master_of(self, mailbox: str, item_id: str) -> str | None:
        """The series master of an occurrence known by its own ItemId."""
        ...


class Leases(Protocol):
    """Who works for a mailbox: one holder at a time, each with a fencing number."""

    def acquire(self, mailbox: str, holder: str, ttl: float, *, now: float) -> int | None:
        """The lease for `ttl` seconds and its fencing number, or None while another
        holder's lease is live. The holder of a live lease gets its own fence back (and
        the lease extended); every new holder gets a larger fence than any before."""
        ...

    def renew(self, mailbox: str, holder: str, fence: int, ttl: float, *, now: float) -> bool:
        """Extend the lease; False when `holder` with `fence` no longer holds it."""
        ...

    def release(self, mailbox: str, holder: str, fence: int) -> None:
        """Give the lease up (nothing when it is no longer held so)."""
        ...

    def holder(self, mailbox: str, *, now: float) -> Lease | None:
        """The live lease, if any."""
        ...


class Pauses(Protocol):
    """Users an administrator paused (the admin console): their runs do not start and the
    outbox hands none of their entries out (`claim`, `ready`, `next_due` leave them out)
    until they are resumed; what they changed meanwhile waits in the feeds and the outbox."""

    def pause(self, mailbox: str, *, now: float) -> None:
        """Paused since `now` (a user paused already keeps the first time)."""
        ...

    def resume(self, mailbox: str) -> None: ...

    def paused(self) -> dict[str, float]:
        """mailbox -> since when."""
        ...

    def is_paused(self, mailbox: str) -> bool: ...


class Listening(Protocol):
    def stop(self, timeout: float = ...) -> None: ...


@runtime_checkable
class Fencing(Protocol):
    def fenced(self, mailbox: str, holder: str, fence: int) -> AbstractContextManager[None]:
        """This thread's writes of `mailbox`'s rows, for the body's duration, only while
        `holder` holds the user's lease with `fence` (else StaleLease)."""
        ...


class Pokes(Protocol):
    """Nodes sharing a store telling each other that a user has something to sync (a hint:
    one lost costs the change its real-time path, never the change)."""

    def poke(self, mailbox: str, *, sender: str) -> None: ...

    def listen(self, on_poke: Callable[[str, str], None]) -> Listening:
        """`on_poke(mailbox, sender)` for every poke, until `stop()`."""
        ...


class UnitOfWork(Protocol):
    """Every concern, inside one transaction."""

    @property
    def ids(self) -> IdMap: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def cursors(self) -> Cursors: ...

    @property
    def journal(self) -> Journal: ...

    @property
    def conflicts(self) -> Conflicts: ...

    @property
    def channels(self) -> Channels: ...

    @property
    def runs(self) -> Runs: ...

    @property
    def learned(self) -> Learned: ...

    @property
    def leases(self) -> Leases: ...

    @property
    def pauses(self) -> Pauses: ...


class State(UnitOfWork, Protocol):
    """calsync's state: every concern (each call atomic), and units of work."""

    def unit(self) -> AbstractContextManager[UnitOfWork]:
        """A transaction over every concern; a unit opened inside it joins it."""
        ...

    def close(self) -> None: ...
