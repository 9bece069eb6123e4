"""The state store's old home: `Store` and the value types, from sync/state/.

Kept while callers move to sync/state's interfaces; new code imports from sync.state.
"""

from sync.state.base import (
    Conflict,
    Cursor,
    JsonObject,
    Lease,
    MappedItem,
    OutboxEntry,
    RunWrite,
    StoreError,
    SyncRun,
    WatchChannel,
)
from sync.state.compat import Store
from sync.state.rows import MappingTaken
from sync.state.sealing import Sealer
from sync.state.sqlite import SCHEMA_VERSION, SqliteState

__all__ = [
    "SCHEMA_VERSION",
    "Conflict",
    "Cursor",
    "JsonObject",
    "Lease",
    "MappedItem",
    "MappingTaken",
    "OutboxEntry",
    "RunWrite",
    "Sealer",
    "SqliteState",
    "Store",
    "StoreError",
    "SyncRun",
    "WatchChannel",
]
