"""What calsync's two SQL backends share (sqlite.py, postgres.py): the columns each value
is read from, rows made into values (opening what is sealed), the limits both keep, and
the unit wrapper that yields the state itself."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sync.state.base import MappedItem, OutboxEntry, RunWrite, StoreError, WatchChannel
from sync.state.sealing import Sealer

#: How long the journal remembers a version calsync wrote. A feed brings our own write back
#: within minutes (the next run); a month covers a calsync stopped for weeks.
JOURNAL_RETENTION_S = 30 * 86400
#: The journal is pruned at most this often (seconds of the callers' clock).
PRUNE_EVERY_S = 3600.0
#: The claim `ready()` takes: its own claims are handed out to it again (see sqlite.py).
LOCAL_HOLDER = "local"
LOCAL_LEASE_S = 300.0


class MappingTaken(StoreError):
    """The Google event is already paired with another Exchange item."""

    def __init__(self, mapping: MappedItem) -> None:
        super().__init__(
            f"{mapping.mailbox}: Google event {mapping.google_event_id} is paired with"
            " another Exchange item"
        )


ITEM_COLUMNS = (
    "mailbox, ews_item_id, google_event_id, ews_change_key, google_etag, content_hash, snapshot"
)
ENTRY_COLUMNS = (
    "id, mailbox, ews_item_id, op, change_key, payload, attempts, next_attempt_at, last_error,"
    " state, created_at, claimed_by, claim_until"
)
CURSOR_COLUMNS = (
    "mailbox, google_sync_token, ews_sync_state, last_google_sync, last_exchange_sync,"
    " last_error, last_error_at, past_error, past_error_at, error_resolved_at"
)
CHANNEL_COLUMNS = (
    "channel_id, mailbox, resource_id, token, address, calendar_id, expiration, created_at"
)
RUN_WRITE_COLUMNS = "id, run_id, side, op, key, other_key, version, before, fields"


def mapped_item(row: Sequence[Any], sealer: Sealer) -> MappedItem:
    """A row of ITEM_COLUMNS."""
    mailbox, ews_item_id, google_event_id, change_key, etag, content_hash, snapshot = row
    return MappedItem(
        mailbox,
        ews_item_id,
        google_event_id,
        change_key,
        etag,
        content_hash,
        sealer.open_object(snapshot),
    )


def outbox_entry(row: Sequence[Any], sealer: Sealer) -> OutboxEntry:
    """A row of ENTRY_COLUMNS."""
    return OutboxEntry(
        id=row[0],
        mailbox=row[1],
        ews_item_id=row[2],
        op=row[3],
        change_key=row[4],
        payload=sealer.open_object(row[5]),
        attempts=row[6],
        next_attempt_at=row[7],
        last_error=row[8],
        state=row[9],
        created_at=row[10],
        claimed_by=row[11],
        claim_until=row[12],
    )


def watch_channel(row: Sequence[Any], sealer: Sealer) -> WatchChannel:
    """A row of CHANNEL_COLUMNS."""
    channel_id, mailbox, resource_id, token, address, calendar_id, expiration, created = row
    return WatchChannel(
        channel_id,
        mailbox,
        resource_id,
        sealer.open_text(token),
        address,
        calendar_id,
        expiration,
        created,
    )


def run_write(row: Sequence[Any], sealer: Sealer) -> RunWrite:
    """A row of RUN_WRITE_COLUMNS."""
    return RunWrite(
        id=row[0],
        run_id=row[1],
        side=row[2],
        op=row[3],
        key=row[4],
        other_key=row[5],
        version=row[6],
        before=sealer.open_object(row[7]),
        fields=sealer.open_object(row[8]),
    )


S = TypeVar("S")


class StateUnit(Generic[S]):
    """`state.unit()`: the state itself, inside the backend's transaction (on this thread,
    every call between enter and exit is part of it)."""

    __slots__ = ("_state", "_unit")

    def __init__(self, state: S, unit: AbstractContextManager[Any]) -> None:
        self._state, self._unit = state, unit

    def __enter__(self) -> S:
        self._unit.__enter__()
        return self._state

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        self._unit.__exit__(kind, *rest)
