"""`calsync store migrate`: a SQLite deployment's state copied into PostgreSQL (issue 15).

Everything a node needs goes across in one transaction on the target, so the target holds
all of it or nothing: the id map with its snapshots, what the proxy learned (folders, item
kinds), where each user's feeds stand, the outbox (pending and quarantined entries with
their ids, attempts and errors: an item's entries keep their order), the journal, the
conflicts, the push channels, the users paused in the admin console, and the runs with
their writes (`calsync undo` works after the move). Ids and times are kept as they were;
the identity sequences continue after the largest id copied.

Not copied: leases and outbox claims. Both belong to live nodes of the SQLite deployment;
the nodes on PostgreSQL take their own (a claimed entry is due at once on the target).

Sealed values (snapshots, payloads, channel tokens, undo pre-images and fields) are opened
with the source's key file and sealed again with the target's key, in memory: no event text
is written anywhere in plain sight.

The source is opened as `SqliteState` opens it (an older schema is migrated first, a newer
one refused) and read in one read transaction, a snapshot consistent across tables. The
target is opened as `PostgresState` opens it (its schema made or migrated, its key checked),
and refused when any table copied into holds a row. Tables written through the state
interfaces (folders, seen_items, sync_state, channels) go through them; the others have no
interface that writes a row as it was (ids, attempts, timestamps) and are copied with COPY.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg

from sync.state.base import Cursor, StoreError
from sync.state.postgres import PostgresState, describe
from sync.state.rows import CHANNEL_COLUMNS, CURSOR_COLUMNS, ENTRY_COLUMNS
from sync.state.sealing import Sealer
from sync.state.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from sync.state.sqlite import SqliteState

#: Every table copied, in the order copied (runs before run_writes: a foreign key), with
#: its columns as both schemas name them (sqlite.py's v7, postgres.py's v2).
COPIED: dict[str, tuple[str, ...]] = {
    "folders": ("mailbox", "folder_id", "role"),
    "seen_items": ("mailbox", "item_id", "item_class", "master_id"),
    "items": (
        "mailbox",
        "ews_item_id",
        "google_event_id",
        "ews_change_key",
        "google_etag",
        "content_hash",
        "snapshot",
        "updated_at",
        "reconciled_at",
    ),
    "outbox": tuple(ENTRY_COLUMNS.split(", ")),
    "sync_state": tuple(CURSOR_COLUMNS.split(", ")),  # as Cursor holds them
    "journal": ("mailbox", "side", "key", "version", "content_hash", "at"),
    "conflicts": (
        "id",
        "mailbox",
        "ews_item_id",
        "google_event_id",
        "field",
        "winner",
        "reason",
        "at",
    ),
    "channels": tuple(CHANNEL_COLUMNS.split(", ")),
    "paused_users": ("mailbox", "paused_at"),
    "runs": ("id", "mailbox", "started_at", "finished_at", "undone_at"),
    "run_writes": (
        "id",
        "run_id",
        "side",
        "op",
        "key",
        "other_key",
        "version",
        "before",
        "fields",
        "at",
    ),
}
#: The sealed columns (every BLOB of SQLite's schema, every bytea of PostgreSQL's but the
#: target's own key check): opened with the source's key, sealed with the target's.
SEALED: dict[str, tuple[str, ...]] = {
    "items": ("snapshot",),
    "outbox": ("payload",),
    "channels": ("token",),
    "run_writes": ("before", "fields"),
}
#: Tables with an identity column whose ids are kept: the sequence continues after them.
IDENTITIES = ("outbox", "conflicts", "runs", "run_writes")
#: Outbox columns a live node's claim fills: not copied.
CLAIM_COLUMNS = ("claimed_by", "claim_until")
#: Not copied, and why (said in the output).
NOT_COPIED = {"leases": "they belong to the live nodes; the nodes on PostgreSQL take their own"}


class MigrateError(StoreError):
    """The copy cannot be made (a usage or configuration problem: nothing was written)."""


class CopyFailed(StoreError):
    """The copy failed part way: the target's transaction was rolled back."""


@dataclass(frozen=True, slots=True)
class TableCount:
    table: str
    source: int
    target: int | None  # None: not copied

    @property
    def matches(self) -> bool:
        return self.target is None or self.source == self.target


@dataclass(frozen=True, slots=True)
class Report:
    counts: tuple[TableCount, ...]
    #: outbox entries a node of the source held a claim on (copied without it)
    claims_dropped: int
    #: whether the copy is in the target (False: a dry run, or counts that differ)
    committed: bool

    @property
    def matches(self) -> bool:
        return all(c.matches for c in self.counts)


def sqlite_path(text: str) -> Path:
    """FROM: a path, or `sqlite:///absolute/path`."""
    if "://" not in text:
        return Path(text)
    parts = urlsplit(text)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path:
        raise MigrateError(f"FROM is a SQLite file: a path or sqlite:///path, not {text!r}")
    return Path(unquote(parts.path))


def check_target_url(url: str) -> str:
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise MigrateError("TO is a PostgreSQL database: postgresql://user@host:port/database")
    return url


def open_source(path: Path) -> SqliteState:
    """The SQLite store at `path` as a node opens it (migrated when older, refused when
    newer), never one made here: a missing file or key file is refused first (SqliteState
    would make a new, empty one)."""
    if not path.is_file():
        raise MigrateError(f"no SQLite store at {path}")
    key = path.with_name(path.name + ".key")
    if not key.is_file():
        raise MigrateError(f"no key file beside {path} ({key}): its sealed text cannot be opened")
    try:
        state = SqliteState(path)
    except sqlite3.DatabaseError as exc:
        raise MigrateError(f"{path} is not a calsync SQLite store ({exc})") from None
    try:
        _check_source_schema(state)
    except BaseException:
        state.close()
        raise
    return state


def open_target(url: str, key: bytes) -> PostgresState:
    """The PostgreSQL store at `url` as a node opens it (schema made or migrated, `key`
    checked against the one it was made with)."""
    return PostgresState(url, key=key, pool_size=2)


def migrate(source: SqliteState, target: PostgresState, *, dry_run: bool = False) -> Report:
    """Copy `source` into `target` (empty) in one transaction and count both: committed
    only when every count matches and it is not a dry run (which copies, counts, and rolls
    back). CopyFailed when a row is refused part way; nothing is then in the target."""
    database = target._database
    try:
        with _snapshot(source) as read, database.unit() as conn:
            database.begin()
            # no node writes into these tables until the copy commits or rolls back
            conn.execute(f"LOCK TABLE {', '.join(COPIED)} IN EXCLUSIVE MODE")
            held = {t: n for t, n in _target_counts(conn).items() if n}
            if held:
                rows = ", ".join(f"{t}: {n}" for t, n in held.items())
                raise MigrateError(
                    f"{describe(target.url)} already holds calsync data ({rows}): calsync store"
                    " migrate copies into an empty database only (drop and create it again)"
                )
            claims = _copy(read, source, target, conn)
            copied = _target_counts(conn)
            counts = tuple(TableCount(t, n, copied[t]) for t, n in _source_counts(read).items())
            counts += tuple(TableCount(t, _count(read, t), None) for t in NOT_COPIED)
            report = Report(counts, claims, committed=False)
            if dry_run or not report.matches:
                raise _RollBack(report)
    except _RollBack as rolled_back:
        return rolled_back.report
    except psycopg.Error as exc:
        raise CopyFailed(
            f"the copy into {describe(target.url)} failed: {_reason(exc)}; nothing was committed"
        ) from None
    except sqlite3.Error as exc:
        raise CopyFailed(f"reading {source.path} failed: {exc}; nothing was committed") from None
    except StoreError as exc:  # a sealed value that does not open with the source's key
        if isinstance(exc, MigrateError):
            raise
        raise CopyFailed(f"{exc}; nothing was committed") from None
    return Report(report.counts, report.claims_dropped, committed=True)


class _RollBack(Exception):  # the unit's way out without a commit
    def __init__(self, report: Report) -> None:
        super().__init__("rolled back")
        self.report = report


def _reason(exc: psycopg.Error) -> str:
    """PostgreSQL's primary message only: its detail may quote a row (ids, addresses)."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return primary or type(exc).__name__


# --- the source -------------------------------------------------------------------------------


def _check_source_schema(state: SqliteState) -> None:
    with _snapshot(state) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version != SQLITE_SCHEMA_VERSION:  # SqliteState migrates older ones, refuses newer
            raise MigrateError(
                f"{state.path} has schema {version}, this calsync copies schema"
                f" {SQLITE_SCHEMA_VERSION} only"
            )
        for table, columns in COPIED.items():
            have = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            if sorted(have) != sorted(columns):
                raise MigrateError(
                    f"{state.path}: table {table} is not as this calsync knows it (columns"
                    f" {', '.join(have) or 'none'}; expected {', '.join(columns)})"
                )


@contextmanager
def _snapshot(state: SqliteState) -> Iterator[sqlite3.Connection]:
    """One read transaction on the source (WAL: a running node may write meanwhile; this
    reads the store as it was at the first read), under the state's lock, so its own
    interface calls made inside read the same snapshot. Joins one already open."""
    with state._database.read() as conn:
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def _count(conn: sqlite3.Connection, table: str) -> int:
    (n,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 - a table of ours
    return int(n)


def _source_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {table: _count(conn, table) for table in COPIED}


def _rows(conn: sqlite3.Connection, table: str, order: str) -> Iterator[tuple[Any, ...]]:
    return iter(
        conn.execute(f"SELECT {', '.join(COPIED[table])} FROM {table} ORDER BY {order}")  # noqa: S608 - names of ours
    )


# --- the target -------------------------------------------------------------------------------


Connection = psycopg.Connection[tuple[Any, ...]]


def _target_counts(conn: Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in COPIED:
        row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 - a table of ours
        assert row is not None
        counts[table] = int(row[0])
    return counts


def _copy(
    read: sqlite3.Connection, source: SqliteState, target: PostgresState, conn: Connection
) -> int:
    """Every table, in COPIED's order; how many outbox claims were left behind."""
    opener, sealer = source._database.sealer, target._database.sealer
    mailbox = operator.itemgetter(0)

    for box, rows in itertools.groupby(_rows(read, "folders", "mailbox"), key=mailbox):
        target.learned.learn_folders(box, {folder: role for _, folder, role in rows})
    for box, rows in itertools.groupby(_rows(read, "seen_items", "mailbox"), key=mailbox):
        kinds, masters = {}, {}
        for _, item, kind, master in rows:
            kinds[item] = kind
            if master is not None:
                masters[item] = master
        target.learned.learn_items(box, kinds, masters)

    def copy(table: str, order: str, rows: Iterable[tuple[Any, ...]] | None = None) -> None:
        rows = _rows(read, table, order) if rows is None else rows
        if table in SEALED:
            rows = _resealed(rows, table, opener, sealer)
        with conn.cursor().copy(f"COPY {table} ({', '.join(COPIED[table])}) FROM STDIN") as out:
            for row in rows:
                out.write_row(row)

    copy("items", "mailbox, ews_item_id")
    claims = 0
    claim_at = COPIED["outbox"].index(CLAIM_COLUMNS[0])

    def unclaimed(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        nonlocal claims
        for row in rows:
            claims += row[claim_at] is not None
            yield (*row[:claim_at], None, None)

    copy("outbox", "id", unclaimed(_rows(read, "outbox", "id")))
    for row in _rows(read, "sync_state", "mailbox"):
        target.cursors.save(Cursor(*row))
    copy("journal", "at")
    copy("conflicts", "id")
    for channel in source.channels.list():  # opened with the source's key, sealed by save
        target.channels.save(channel)
    copy("paused_users", "mailbox")
    copy("runs", "id")
    copy("run_writes", "id")
    for table in IDENTITIES:  # the next id given is after every id copied
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id))"  # noqa: S608 - a table of ours
            f" FROM {table} HAVING MAX(id) IS NOT NULL"
        )
    return claims


def _resealed(
    rows: Iterable[tuple[Any, ...]], table: str, opener: Sealer, sealer: Sealer
) -> Iterator[tuple[Any, ...]]:
    at = [COPIED[table].index(column) for column in SEALED[table]]
    for row in rows:
        values = list(row)
        for i in at:
            if values[i] is not None:
                values[i] = sealer.seal(opener.open(values[i]))
        yield tuple(values)
