"""calsync's state in PostgreSQL, shared by several calsync nodes (sync/state/base.py's
interfaces; issue 15). Chosen by `[store] url = "postgresql://..."`; SQLite stays the
default for one node.

The tables and what they hold are SQLite's (sync/state/sqlite.py), with PostgreSQL's types;
the schema is versioned and migrated at open, its own numbering (`SCHEMA_VERSION`), one
node at a time (an advisory lock). Every statement is here.

- **Connections**: a psycopg 3 pool. A call outside a unit borrows a connection in
  autocommit for one statement: one round trip. `unit()` binds a connection to the thread
  for a real transaction (a unit inside it is a savepoint); its BEGIN goes with its first
  statement, so a unit costs one round trip per statement and its COMMIT.
- **Units are one writer at a time per user**: a unit's first call naming a mailbox takes a
  transaction-scoped advisory lock on that mailbox (sent in one round trip with the call),
  so two units of one user run one after the other, as SQLite's BEGIN IMMEDIATE makes every
  unit run; units of different users run side by side.
- **Outbox claims**: one `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)` hands out
  each item's oldest pending entry to one claimer; concurrent claimers skip what another is
  taking. Ids are in commit order per item (an enqueue holds a lock on its item until its
  transaction ends), so an older entry committed late is never overtaken. A claim ends by
  time: a node that dies holding one loses it when `claim_until` passes. An entry can be
  recorded already held for one claimer (`held_for`, under `hold_name(holder)`): that
  claimer takes it at once, the others once the hold's `claim_until` passes.
- **Leases**: one row per mailbox, taken in one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`;
  the fence grows with every new holder. A holder that calls `renew` inside a unit before
  writing has its writes fenced: the renewal refuses a stale holder, and the row lock it
  takes keeps a new holder out until the unit ends.
- **Sealing**: event text is sealed with a key every node shares, given by the config's
  environment (never a file beside one node's database); a sealed check value in `meta`
  makes a node with another key fail at open, not at its first read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import astuple
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from sync.state.base import (
    Conflict,
    Cursor,
    JsonInput,
    Lease,
    MappedItem,
    OutboxEntry,
    RunWrite,
    StaleLease,
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
from sync.state.sealing import Sealer

log = logging.getLogger("calsync.state")

SCHEMA_VERSION = 2
#: What the sealed check value in `meta` says (any key opens only its own seal).
_KEY_CHECK = "calsync sealing key"

T = TypeVar("T")
Row = tuple[Any, ...]


def describe(url: str) -> str:
    """The server and database of `url`, without its password (for messages)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unreadable [store] url"
    host = info.get("host") or "localhost"
    port = info.get("port") or 5432
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


# --- connections and units ----------------------------------------------------------------------


class _Open:
    """The unit in progress on one thread: its connection, how deep units are nested there,
    how many of them have begun (a unit's BEGIN or SAVEPOINT is sent with the first
    statement inside it, in the same round trip; a unit that sends nothing costs nothing),
    and the mailboxes locked at each depth (a savepoint rolled back gives its locks back)."""

    __slots__ = ("begun", "conn", "locked")

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.conn = conn
        self.begun = 0
        self.locked: list[set[str]] = []  # one set per unit open, outermost first

    def holds(self, mailbox: str) -> bool:
        return any(mailbox in level for level in self.locked)


def _writes(sql: str) -> bool:
    return not sql.lstrip().upper().startswith("SELECT")


_LOCK_MAILBOX = "SELECT pg_advisory_xact_lock(hashtextextended('calsync mailbox ' || %s, 0))"


class Database:
    """The pool, the sealer, and the unit in progress on each thread."""

    def __init__(
        self,
        url: str,
        *,
        key: bytes,
        pool_size: int,
        connect_timeout: float,
        stall_s: float | None = None,
    ) -> None:
        self.url = url
        self.sealer = Sealer.from_key(key)
        self.local = threading.local()
        connection: dict[str, Any] = {"autocommit": True}
        if stall_s is not None:  # a node's sessions, which other nodes' reapers may end
            connection["application_name"] = NODE_APPLICATION
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=connection,
            open=False,
            name="calsync-state",
            timeout=connect_timeout,
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self.pool.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {describe(url)} within {connect_timeout:g} s"
                " ([store] url; the password goes in PGPASSWORD or ~/.pgpass)"
            ) from None
        self.reaper = None if stall_s is None else Reaper(self.pool, stall_s)

    def _unit_open(self) -> _Open | None:
        return getattr(self.local, "unit", None)

    def run(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        mailbox: str | None = None,
        result: Callable[[psycopg.Cursor[Row]], T],
    ) -> T:
        """One statement: in the thread's unit (after its BEGIN and the mailbox's lock when
        they are still to be sent, in the same round trip), else on a pooled connection in
        autocommit."""
        try:
            unit = self._unit_open()
            if unit is None:
                if mailbox is not None and mailbox in self.fences() and _writes(sql):
                    with self.write():  # the lease checked in the write's own transaction
                        return self.run(sql, params, mailbox=mailbox, result=result)
                with self.pool.connection() as conn:
                    return result(conn.execute(sql, params))
            conn = unit.conn
            if unit.begun < len(unit.locked) or (mailbox is not None and not unit.holds(mailbox)):
                with conn.pipeline():
                    self.begin(*(() if mailbox is None else (mailbox,)))
                    cursor = conn.execute(sql, params)
                return result(cursor)
            return result(conn.execute(sql, params))
        except psycopg.OperationalError as exc:
            # the connection lost (a restarted server, a session a reaper ended): the
            # caller's work is undone and is to be tried again, as after any outage
            raise StoreError(f"the store's connection failed: {type(exc).__name__}") from exc

    def begin(self, *mailboxes: str) -> None:
        """Inside a unit: send what is still to be sent before its next statement, its BEGIN
        (or SAVEPOINT) and the locks of `mailboxes` it does not hold yet (each held until
        the unit ends). Inside `conn.pipeline()`, all of it goes in one round trip."""
        unit = self._unit_open()
        assert unit is not None, "begin() is for a unit"
        while unit.begun < len(unit.locked):
            unit.conn.execute("BEGIN" if unit.begun == 0 else f"SAVEPOINT unit{unit.begun}")
            unit.begun += 1
        for mailbox in mailboxes:
            if not unit.holds(mailbox):
                unit.conn.execute(_LOCK_MAILBOX, [mailbox])
                unit.locked[-1].add(mailbox)
                fence = self.fences().get(mailbox)
                if fence is not None:
                    self._check_fence(unit.conn, mailbox, fence)

    def fences(self) -> dict[str, tuple[str, int]]:
        """The leases this thread works under, per mailbox: (holder, fencing number)."""
        fences: dict[str, tuple[str, int]] | None = getattr(self.local, "fences", None)
        if fences is None:
            fences = self.local.fences = {}
        return fences

    @staticmethod
    def _check_fence(
        conn: psycopg.Connection[Row], mailbox: str, fence: tuple[str, int]
    ) -> None:
        # under the mailbox's lock, which a takeover (acquire) takes too
        row = conn.execute(
            "SELECT holder, fence FROM leases WHERE mailbox = %s", [mailbox]
        ).fetchone()
        if row is None or (row[0], int(row[1])) != fence:
            raise StaleLease(
                f"this node's lease on a user ({fence[0]}, fence {fence[1]}) has passed to"
                " another node: its write is refused"
            )

    def rows(self, sql: str, params: Any = (), *, mailbox: str | None = None) -> list[Row]:
        return self.run(sql, params, mailbox=mailbox, result=_all)

    def one(self, sql: str, params: Any = (), *, mailbox: str | None = None) -> Row | None:
        return self.run(sql, params, mailbox=mailbox, result=_one)

    def change(self, sql: str, params: Any = (), *, mailbox: str | None = None) -> int:
        return self.run(sql, params, mailbox=mailbox, result=_rowcount)

    def unit(self) -> _Unit:
        """One transaction; inside another, a savepoint that only the outer one commits."""
        return _Unit(self, savepoint=True)

    def write(self) -> _Unit:
        """For statements that fail only together: their own transaction, or a part of the
        unit in progress (no savepoint: it would cost a round trip more)."""
        return _Unit(self, savepoint=False)

    def close(self) -> None:
        if self.reaper is not None:
            self.reaper.stop()
        self.pool.close()


#: the application_name of a node's sessions (`pg_stat_activity`), which reapers look for
NODE_APPLICATION = "calsync node"
#: Sessions of nodes idle inside a transaction for longer than `stall_s`: ended. calsync never
#: waits for anything but the server inside a transaction, so such a node is stopped (a
#: paused VM, a SIGSTOP) and its lease gone: its locks must not hold up the new holder.
_REAP = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = %(app)s"
    " AND state IN ('idle in transaction', 'idle in transaction (aborted)')"
    " AND state_change < now() - make_interval(secs => %(stall)s) AND pid <> pg_backend_pid()"
)


class Reaper(threading.Thread):
    """Every `stall_s / 2`: ends the sessions of nodes stopped inside a transaction (`_REAP`).
    Each node runs one; a stopped node's are ended by the others. (The server's own
    idle_in_transaction_session_timeout is not armed after a pipeline, whose end psycopg
    follows with a Flush.)"""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Row]], stall_s: float) -> None:
        super().__init__(name="calsync-reaper", daemon=True)
        self.pool = pool
        self.stall_s = stall_s
        self._stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stopping.wait(self.stall_s / 2):
            try:
                with self.pool.connection() as conn:
                    ended = conn.execute(
                        _REAP, {"app": NODE_APPLICATION, "stall": self.stall_s}
                    ).fetchall()
            except psycopg.Error as exc:  # the server is away: nothing to reap either
                log.debug("reaper: %s", type(exc).__name__)
                continue
            if ended:
                log.warning(
                    "ended %d session(s) of a node stopped inside a transaction for over %g s",
                    len(ended),
                    self.stall_s,
                )

    def stop(self) -> None:
        self._stopping.set()
        self.join(5)


def _all(cursor: psycopg.Cursor[Row]) -> list[Row]:
    return cursor.fetchall()


def _one(cursor: psycopg.Cursor[Row]) -> Row | None:
    return cursor.fetchone()


def _rowcount(cursor: psycopg.Cursor[Row]) -> int:
    return cursor.rowcount


class _Unit:
    """`Database.unit()`: the outermost one borrows a connection for the thread and opens a
    transaction; one inside it is a savepoint that only the outer one commits. Statements
    sent on the connection yielded go after `Database.begin()`."""

    __slots__ = ("_database", "_joined", "_owner", "_savepoint")

    def __init__(self, database: Database, *, savepoint: bool) -> None:
        self._database = database
        self._savepoint = savepoint
        self._owner = self._joined = False

    def __enter__(self) -> psycopg.Connection[Row]:
        database = self._database
        unit = database._unit_open()
        if unit is None:
            unit = _Open(database.pool.getconn())
            database.local.unit = unit
            self._owner = True
        elif not self._savepoint:
            self._joined = True
            return unit.conn
        unit.locked.append(set())
        return unit.conn

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._joined:
            return
        database = self._database
        unit = database._unit_open()
        assert unit is not None
        level = len(unit.locked) - 1
        locked = unit.locked.pop()
        try:
            if unit.begun > level:  # else nothing was sent inside it: nothing to end
                unit.begun = level
                try:
                    self._end(unit.conn, level, commit=kind is None)
                except psycopg.OperationalError as exc:
                    if kind is not None:  # the connection is gone: so is the transaction
                        return
                    raise StoreError(
                        f"the store's connection failed: {type(exc).__name__}"
                    ) from exc
                if kind is None and level > 0:
                    unit.locked[-1] |= locked  # a savepoint released: its locks are the outer's
        finally:
            if self._owner:
                database.local.unit = None
                database.pool.putconn(unit.conn)  # (the pool rolls back what is left open)

    @staticmethod
    def _end(conn: psycopg.Connection[Row], level: int, *, commit: bool) -> None:
        if level == 0:
            ended = conn.execute("COMMIT" if commit else "ROLLBACK")
            if commit and ended.statusmessage == "ROLLBACK":
                # a statement failed inside and the caller went on: PostgreSQL undid it all
                raise StoreError("a unit of work failed part way and was rolled back whole")
        elif commit:
            conn.execute(f"RELEASE SAVEPOINT unit{level}")
        else:
            conn.execute(f"ROLLBACK TO SAVEPOINT unit{level}; RELEASE SAVEPOINT unit{level}")


# --- schema -------------------------------------------------------------------------------------

_V1 = """
CREATE TABLE folders (
    mailbox text NOT NULL, folder_id text NOT NULL, role text NOT NULL,
    PRIMARY KEY (mailbox, folder_id));
CREATE TABLE seen_items (
    mailbox text NOT NULL, item_id text NOT NULL, item_class text, master_id text,
    PRIMARY KEY (mailbox, item_id));
CREATE TABLE items (
    mailbox text NOT NULL, ews_item_id text NOT NULL, google_event_id text NOT NULL,
    ews_change_key text, google_etag text, content_hash text, snapshot bytea,
    updated_at double precision, reconciled_at double precision,
    PRIMARY KEY (mailbox, ews_item_id), UNIQUE (mailbox, google_event_id));
CREATE TABLE outbox (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    mailbox text NOT NULL, ews_item_id text NOT NULL, op text NOT NULL, change_key text,
    payload bytea, attempts integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL, last_error text,
    state text NOT NULL DEFAULT 'pending', created_at double precision NOT NULL,
    claimed_by text, claim_until double precision);
CREATE INDEX outbox_pending_item ON outbox (mailbox, ews_item_id, id) WHERE state = 'pending';
CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending';
CREATE TABLE sync_state (
    mailbox text PRIMARY KEY, google_sync_token text, ews_sync_state text,
    last_google_sync double precision, last_exchange_sync double precision,
    last_error text, last_error_at double precision, past_error text,
    past_error_at double precision, error_resolved_at double precision);
CREATE TABLE journal (
    mailbox text NOT NULL, side text NOT NULL, key text NOT NULL, version text NOT NULL,
    content_hash text, at double precision NOT NULL,
    PRIMARY KEY (mailbox, side, key, version));
CREATE INDEX journal_at ON journal (at);
CREATE TABLE conflicts (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    mailbox text NOT NULL, ews_item_id text, google_event_id text, field text NOT NULL,
    winner text NOT NULL, reason text NOT NULL, at double precision NOT NULL);
CREATE INDEX conflicts_mailbox ON conflicts (mailbox, id);
CREATE TABLE channels (
    channel_id text PRIMARY KEY, mailbox text NOT NULL, resource_id text NOT NULL,
    token bytea NOT NULL, address text NOT NULL, calendar_id text NOT NULL,
    expiration double precision NOT NULL, created_at double precision NOT NULL);
CREATE TABLE runs (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, mailbox text NOT NULL,
    started_at double precision NOT NULL, finished_at double precision,
    undone_at double precision);
CREATE INDEX runs_mailbox ON runs (mailbox, id);
CREATE TABLE run_writes (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES runs (id), side text NOT NULL, op text NOT NULL,
    key text NOT NULL, other_key text, version text, before bytea, fields bytea,
    at double precision NOT NULL);
CREATE INDEX run_writes_run ON run_writes (run_id, id);
CREATE TABLE leases (
    mailbox text PRIMARY KEY, holder text, fence bigint NOT NULL,
    expires_at double precision);
"""

#: Paused users in the store (they were in a file beside each node's [store] path).
_V2 = """
CREATE TABLE paused_users (mailbox text PRIMARY KEY, paused_at double precision NOT NULL);
"""

#: Version n+1 is `_STEPS[n]`; a step is run once, in the migrating transaction.
_STEPS: tuple[str, ...] = (_V1, _V2)


def _migrate(database: Database) -> None:
    describe_url = describe(database.url)
    with database.unit() as conn:
        database.begin()
        # one node migrates; the others wait here and find the schema current
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('calsync migrate', 0))")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)")
        rows: dict[str, str] = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        version = int(rows.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{describe_url} has calsync schema {version}, newer than this calsync"
                f" ({SCHEMA_VERSION}): upgrade calsync"
            )
        for number, step in enumerate(_STEPS, start=1):
            if version < number:
                conn.execute(step)
        check = rows.get("key_check")
        if check is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('key_check', %s)",
                [database.sealer.seal(_KEY_CHECK).decode()],
            )
        else:
            try:
                database.sealer.open_text(check.encode())
            except StoreError:
                raise StoreError(
                    f"the sealing key does not open the store at {describe_url}: every node"
                    " needs the key the store was made with ([store] key_env)"
                ) from None
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [str(SCHEMA_VERSION)],
        )


# --- the concerns -------------------------------------------------------------------------------

#: Insert or replace the pair, unless its Google event is another item's: then no row comes
#: back (an error would abort the caller's whole transaction, where SQLite's does not).
_SAVE_ITEM = (
    "INSERT INTO items (mailbox, ews_item_id, google_event_id, ews_change_key, google_etag,"
    " content_hash, snapshot, updated_at, reconciled_at)"
    " SELECT %(mailbox)s, %(item)s, %(event)s, %(change_key)s, %(etag)s, %(hash)s,"
    " %(snapshot)s, %(now)s, %(reconciled)s"
    " WHERE NOT EXISTS (SELECT 1 FROM items WHERE mailbox = %(mailbox)s"
    " AND google_event_id = %(event)s AND ews_item_id <> %(item)s)"
    " ON CONFLICT (mailbox, ews_item_id) DO UPDATE SET"
    " google_event_id = excluded.google_event_id, ews_change_key = excluded.ews_change_key,"
    " google_etag = excluded.google_etag, content_hash = excluded.content_hash,"
    " snapshot = excluded.snapshot, updated_at = excluded.updated_at,"
    " reconciled_at = COALESCE(excluded.reconciled_at, items.reconciled_at)"
    " RETURNING 1"
)


class PostgresIdMap:
    def __init__(self, database: Database) -> None:
        self._db = database

    def mapped(self, mailbox: str, ews_item_id: str) -> MappedItem | None:
        return self._one("ews_item_id", mailbox, ews_item_id)

    def mapped_by_google(self, mailbox: str, google_event_id: str) -> MappedItem | None:
        return self._one("google_event_id", mailbox, google_event_id)

    def _one(self, column: str, mailbox: str, key: str) -> MappedItem | None:
        row = self._db.one(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE mailbox = %s AND {column} = %s",  # noqa: S608 - a column of ours
            [mailbox, key],
            mailbox=mailbox,
        )
        return self._mapped(row) if row else None

    def mapped_items(self, mailbox: str) -> list[MappedItem]:
        rows = self._db.rows(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE mailbox = %s ORDER BY ews_item_id",  # noqa: S608 - constant
            [mailbox],
            mailbox=mailbox,
        )
        return [self._mapped(r) for r in rows]

    def _mapped(self, row: Row) -> MappedItem:
        return mapped_item(row, self._db.sealer)

    def mapped_ids(self, mailbox: str) -> dict[str, str]:
        rows = self._db.rows(
            "SELECT ews_item_id, google_event_id FROM items WHERE mailbox = %s",
            [mailbox],
            mailbox=mailbox,
        )
        return dict(rows)

    def is_mapped(self, mailbox: str, ews_item_id: str) -> bool:
        row = self._db.one(
            "SELECT 1 FROM items WHERE mailbox = %s AND ews_item_id = %s",
            [mailbox, ews_item_id],
            mailbox=mailbox,
        )
        return row is not None

    def count(self, mailbox: str) -> int:
        row = self._db.one(
            "SELECT COUNT(*) FROM items WHERE mailbox = %s", [mailbox], mailbox=mailbox
        )
        assert row is not None
        return int(row[0])

    def reconciled_at(self, mailbox: str, ews_item_id: str) -> float | None:
        row = self._db.one(
            "SELECT reconciled_at FROM items WHERE mailbox = %s AND ews_item_id = %s",
            [mailbox, ews_item_id],
            mailbox=mailbox,
        )
        return row[0] if row else None

    def save(self, mapping: MappedItem, *, now: float, reconciled: bool = False) -> None:
        values = {
            "mailbox": mapping.mailbox,
            "item": mapping.ews_item_id,
            "event": mapping.google_event_id,
            "change_key": mapping.ews_change_key,
            "etag": mapping.google_etag,
            "hash": mapping.content_hash,
            "snapshot": self._db.sealer.seal_optional(mapping.snapshot),
            "now": now,
            "reconciled": now if reconciled else None,
        }
        try:
            saved = self._db.one(_SAVE_ITEM, values, mailbox=mapping.mailbox)
        except pg_errors.UniqueViolation:  # the other item was saved meanwhile
            saved = None
        if saved is None:
            raise MappingTaken(mapping)

    def forget(self, mailbox: str, ews_item_id: str) -> None:
        self._db.change(
            "DELETE FROM items WHERE mailbox = %s AND ews_item_id = %s",
            [mailbox, ews_item_id],
            mailbox=mailbox,
        )


#: The item's lock is held until the enqueueing transaction ends: ids of one item are handed
#: out in commit order, so a claimer never sees a newer entry before an older one commits.
_ENQUEUE = (
    "WITH item AS (SELECT pg_advisory_xact_lock("
    "hashtextextended('calsync item ' || %(mailbox)s || ' ' || %(item)s, 0)))"
    " INSERT INTO outbox (mailbox, ews_item_id, op, change_key, payload, next_attempt_at,"
    " created_at, claimed_by, claim_until) SELECT %(mailbox)s, %(item)s, %(op)s,"
    " %(change_key)s, %(payload)s, %(now)s, %(now)s, %(held)s, %(until)s FROM item RETURNING id"
)
#: An item's oldest pending entry (the only one of the item that may be handed out).
_HEAD = (
    "o.state = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending'"
    " AND p.mailbox = o.mailbox AND p.ews_item_id = o.ews_item_id AND p.id < o.id)"
)
#: Not a paused user's (those wait, handed out to nobody, until the user is resumed).
_UNPAUSED = "NOT EXISTS (SELECT 1 FROM paused_users z WHERE z.mailbox = o.mailbox)"
_RETURNING_ENTRY = ", ".join(f"outbox.{c}" for c in ENTRY_COLUMNS.split(", "))
#: Rows another claimer is taking are skipped, not waited for; a row claimed and committed
#: since this statement's snapshot is checked again once locked (its claim is then live).
#: `own`: a claim that does not hold this claimer back, and is taken first: entries held for
#: it (`claim`), or a lone drainer's own earlier claims (`ready`).
_CLAIM = (
    f"UPDATE outbox SET claimed_by = %(holder)s, claim_until = %(until)s"  # noqa: S608 - constants
    f" FROM (SELECT o.id FROM outbox o WHERE {_HEAD} AND {_UNPAUSED}"
    " AND o.next_attempt_at <= %(now)s"
    " AND (o.claim_until IS NULL OR o.claim_until <= %(now)s OR o.claimed_by = %(own)s::text)"
    " ORDER BY o.claimed_by IS NOT DISTINCT FROM %(own)s::text DESC, o.id"
    " LIMIT %(limit)s FOR UPDATE OF o SKIP LOCKED) AS picked"
    f" WHERE outbox.id = picked.id RETURNING {_RETURNING_ENTRY}"
)


class PostgresOutbox:
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
        row = self._db.one(
            _ENQUEUE,
            {
                "mailbox": mailbox,
                "item": ews_item_id,
                "op": op,
                "change_key": change_key,
                "payload": self._db.sealer.seal_optional(payload),
                "now": now,
                "held": None,
                "until": None,
            },
            mailbox=mailbox,
        )
        assert row is not None
        return int(row[0])

    def enqueue_many(
        self,
        entries: Sequence[tuple[str, str, str, str | None]],
        *,
        now: float,
        held_for: str | None = None,
        hold_s: float = 0.0,
    ) -> list[int]:
        if not entries:
            return []
        held, until = (None, None) if held_for is None else (hold_name(held_for), now + hold_s)
        params = [
            {"mailbox": m, "item": i, "op": op, "change_key": ck, "payload": None, "now": now}
            | {"held": held, "until": until}
            for m, i, op, ck in entries
        ]
        with self._db.write() as conn:
            # one round trip (executemany would wait for its results before the Sync); the
            # inserts run in the order given, so their ids grow in it
            with conn.pipeline():
                self._db.begin(*sorted({m for m, *_ in entries}))
                cursors = [conn.execute(_ENQUEUE, p) for p in params]
            rows = [cursor.fetchone() for cursor in cursors]
        return [int(row[0]) for row in rows if row is not None]

    def claim(self, now: float, holder: str, lease_s: float, limit: int = 50) -> list[OutboxEntry]:
        return self._claim(now, holder, lease_s, limit, own=hold_name(holder))

    def ready(self, now: float, limit: int = 50) -> list[OutboxEntry]:
        """`claim` for one process draining alone (sqlite.py's `ready`)."""
        return self._claim(now, LOCAL_HOLDER, LOCAL_LEASE_S, limit, own=LOCAL_HOLDER)

    def _claim(
        self, now: float, holder: str, lease_s: float, limit: int, own: str
    ) -> list[OutboxEntry]:
        rows = self._db.rows(
            _CLAIM,
            {"holder": holder, "until": now + lease_s, "now": now, "own": own, "limit": limit},
        )
        return sorted((self._entry(r) for r in rows), key=lambda e: e.id)

    def release(self, entry_id: int) -> None:
        self._db.change(
            "UPDATE outbox SET claimed_by = NULL, claim_until = NULL WHERE id = %s", [entry_id]
        )

    def next_due(self, holder: str | None = None) -> float | None:
        return self._next_due(None if holder is None else hold_name(holder))

    def next_ready(self) -> float | None:
        """When `ready` may next hand something out (its own claims do not hold it back)."""
        return self._next_due(LOCAL_HOLDER)

    def _next_due(self, own: str | None) -> float | None:
        row = self._db.one(
            "SELECT MIN(CASE WHEN o.claim_until > o.next_attempt_at"  # noqa: S608 - constant
            " AND o.claimed_by IS DISTINCT FROM %(own)s::text THEN o.claim_until"
            f" ELSE o.next_attempt_at END) FROM outbox o WHERE {_HEAD} AND {_UNPAUSED}",
            {"own": own},
        )
        return None if row is None or row[0] is None else float(row[0])

    def entry(self, entry_id: int) -> OutboxEntry | None:
        row = self._db.one(
            f"SELECT {ENTRY_COLUMNS} FROM outbox WHERE id = %s",  # noqa: S608 - constant
            [entry_id],
        )
        return self._entry(row) if row else None

    def pending(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self._entries("pending", mailbox)

    def queued(self, mailbox: str, ews_item_id: str) -> list[tuple[str, str | None]]:
        rows = self._db.rows(
            "SELECT op, change_key FROM outbox WHERE state = 'pending' AND mailbox = %(mailbox)s"
            " AND ews_item_id = %(item)s ORDER BY id",
            {"mailbox": mailbox, "item": ews_item_id},
            mailbox=mailbox,
        )
        return [(str(op), change_key) for op, change_key in rows]

    def quarantined(self, mailbox: str | None = None) -> list[OutboxEntry]:
        return self._entries("quarantined", mailbox)

    def _entries(self, state: str, mailbox: str | None) -> list[OutboxEntry]:
        rows = self._db.rows(
            f"SELECT {ENTRY_COLUMNS} FROM outbox WHERE state = %(state)s"  # noqa: S608 - constant
            " AND (%(mailbox)s::text IS NULL OR mailbox = %(mailbox)s) ORDER BY id",
            {"state": state, "mailbox": mailbox},
            mailbox=mailbox,
        )
        return [self._entry(r) for r in rows]

    def count(self, mailbox: str | None = None) -> int:
        row = self._db.one(
            "SELECT COUNT(*) FROM outbox WHERE %(mailbox)s::text IS NULL OR mailbox = %(mailbox)s",
            {"mailbox": mailbox},
            mailbox=mailbox,
        )
        assert row is not None
        return int(row[0])

    def _entry(self, row: Row) -> OutboxEntry:
        return outbox_entry(row, self._db.sealer)

    def superseded_by_delete(self, entry: OutboxEntry) -> bool:
        row = self._db.one(
            "SELECT 1 FROM outbox WHERE mailbox = %s AND ews_item_id = %s AND op = 'delete'"
            " AND state = 'pending' AND id > %s LIMIT 1",
            [entry.mailbox, entry.ews_item_id, entry.id],
            mailbox=entry.mailbox,
        )
        return row is not None

    def set_payload(self, entry_id: int, payload: Mapping[str, JsonInput]) -> None:
        self._db.change(
            "UPDATE outbox SET payload = %s WHERE id = %s",
            [self._db.sealer.seal(payload), entry_id],
        )

    def retry_later(self, entry_id: int, *, error: str, at: float, quarantine: bool) -> None:
        self._db.change(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = %s, last_error = %s,"
            " state = %s, claimed_by = NULL, claim_until = NULL WHERE id = %s",
            [at, error[:500], "quarantined" if quarantine else "pending", entry_id],
        )

    def complete(self, entry_id: int) -> None:
        self._db.change("DELETE FROM outbox WHERE id = %s", [entry_id])

    def heal(self, entry_id: int) -> bool:
        return (
            self._db.change(
                "DELETE FROM outbox WHERE id = %s AND state = 'quarantined'", [entry_id]
            )
            > 0
        )


_CURSOR_NAMES = CURSOR_COLUMNS.split(", ")
_SAVE_CURSOR = (
    f"INSERT INTO sync_state ({CURSOR_COLUMNS})"  # noqa: S608 - constants
    f" VALUES ({', '.join(['%s'] * len(_CURSOR_NAMES))}) ON CONFLICT (mailbox) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in _CURSOR_NAMES[1:])
)


class PostgresCursors:
    def __init__(self, database: Database) -> None:
        self._db = database

    def get(self, mailbox: str) -> Cursor:
        row = self._db.one(
            f"SELECT {CURSOR_COLUMNS} FROM sync_state WHERE mailbox = %s",  # noqa: S608 - constant
            [mailbox],
            mailbox=mailbox,
        )
        return Cursor(*row) if row else Cursor(mailbox)

    def save(self, cursor: Cursor) -> None:
        self._db.change(_SAVE_CURSOR, astuple(cursor), mailbox=cursor.mailbox)

    def save_google(self, mailbox: str, sync_token: str | None, *, now: float) -> None:
        self._set(mailbox, "google_sync_token", sync_token, "last_google_sync", now)

    def save_exchange(self, mailbox: str, sync_state: str | None, *, now: float) -> None:
        self._set(mailbox, "ews_sync_state", sync_state, "last_exchange_sync", now)

    def record_error(self, mailbox: str, error: str, *, now: float) -> None:
        self._set(mailbox, "last_error", error[:500], "last_error_at", now)

    def _set(self, mailbox: str, what: str, value: str | None, when: str, now: float) -> None:
        self._db.change(
            f"INSERT INTO sync_state (mailbox, {what}, {when}) VALUES (%s, %s, %s)"  # noqa: S608 - columns of ours
            f" ON CONFLICT (mailbox) DO UPDATE SET {what} = excluded.{what},"
            f" {when} = excluded.{when}",
            [mailbox, value, now],
            mailbox=mailbox,
        )

    def clear_error(self, mailbox: str, *, now: float) -> bool:
        changed = self._db.change(
            "UPDATE sync_state SET past_error = last_error, past_error_at = last_error_at,"
            " error_resolved_at = %s, last_error = NULL, last_error_at = NULL"
            " WHERE mailbox = %s AND last_error IS NOT NULL AND last_error <> ''",
            [now, mailbox],
            mailbox=mailbox,
        )
        return changed > 0


class PostgresJournal:
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
        self._db.change(
            "INSERT INTO journal (mailbox, side, key, version, content_hash, at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (mailbox, side, key, version)"
            " DO UPDATE SET content_hash = excluded.content_hash, at = excluded.at",
            [mailbox, side, key, version, content_hash, now],
            mailbox=mailbox,
        )
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self.prune(now - self.retention_s)

    def is_echo(self, mailbox: str, side: str, key: str, version: str | None) -> bool:
        if not version:
            return False
        row = self._db.one(
            "SELECT 1 FROM journal WHERE mailbox = %s AND side = %s AND key = %s"
            " AND version = %s",
            [mailbox, side, key, version],
            mailbox=mailbox,
        )
        return row is not None

    def prune(self, older_than: float) -> int:
        return self._db.change("DELETE FROM journal WHERE at < %s", [older_than])


class PostgresConflicts:
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
        self._db.change(
            "INSERT INTO conflicts (mailbox, ews_item_id, google_event_id, field, winner,"
            " reason, at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [mailbox, ews_item_id, google_event_id, field, winner, reason, now],
            mailbox=mailbox,
        )

    def list(self, mailbox: str) -> list[Conflict]:
        rows = self._db.rows(
            "SELECT id, mailbox, ews_item_id, google_event_id, field, winner, reason, at"
            " FROM conflicts WHERE mailbox = %s ORDER BY id",
            [mailbox],
            mailbox=mailbox,
        )
        return [Conflict(*r) for r in rows]




class PostgresChannels:
    def __init__(self, database: Database) -> None:
        self._db = database

    def save(self, channel: WatchChannel) -> None:
        values = list(astuple(channel))
        values[3] = self._db.sealer.seal(channel.token)
        self._db.change(
            f"INSERT INTO channels ({CHANNEL_COLUMNS})"  # noqa: S608 - constant
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (channel_id) DO UPDATE SET"
            " mailbox = excluded.mailbox, resource_id = excluded.resource_id,"
            " token = excluded.token, address = excluded.address,"
            " calendar_id = excluded.calendar_id, expiration = excluded.expiration,"
            " created_at = excluded.created_at",
            values,
            mailbox=channel.mailbox,
        )

    def get(self, channel_id: str) -> WatchChannel | None:
        row = self._db.one(
            f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE channel_id = %s",  # noqa: S608 - constant
            [channel_id],
        )
        return self._channel(row) if row else None

    def list(self, mailbox: str | None = None) -> list[WatchChannel]:
        rows = self._db.rows(
            f"SELECT {CHANNEL_COLUMNS} FROM channels"  # noqa: S608 - constant
            " WHERE %(mailbox)s::text IS NULL OR mailbox = %(mailbox)s"
            " ORDER BY created_at, channel_id",
            {"mailbox": mailbox},
            mailbox=mailbox,
        )
        return [self._channel(r) for r in rows]

    def forget(self, channel_id: str) -> None:
        self._db.change("DELETE FROM channels WHERE channel_id = %s", [channel_id])

    def _channel(self, row: Row) -> WatchChannel:
        return watch_channel(row, self._db.sealer)


class PostgresRuns:
    def __init__(self, database: Database) -> None:
        self._db = database

    def begin(self, mailbox: str, *, now: float) -> int:
        row = self._db.one(
            "INSERT INTO runs (mailbox, started_at) VALUES (%s, %s) RETURNING id",
            [mailbox, now],
            mailbox=mailbox,
        )
        assert row is not None
        return int(row[0])

    def finish(self, run_id: int, *, now: float) -> None:
        # one statement: kept with its time when it wrote something, dropped otherwise
        self._db.change(
            "WITH kept AS (UPDATE runs SET finished_at = %(now)s WHERE id = %(run)s"
            " AND EXISTS (SELECT 1 FROM run_writes WHERE run_id = %(run)s))"
            " DELETE FROM runs WHERE id = %(run)s"
            " AND NOT EXISTS (SELECT 1 FROM run_writes WHERE run_id = %(run)s)",
            {"now": now, "run": run_id},
        )

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
        self._db.change(
            "INSERT INTO run_writes (run_id, side, op, key, other_key, version, before,"
            " fields, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [run_id, side, op, key, other_key, version, seal(before), seal(fields), now],
        )

    def last_run(self, mailbox: str) -> SyncRun | None:
        row = self._db.one(
            "SELECT id, mailbox, started_at, finished_at, undone_at FROM runs"
            " WHERE mailbox = %s AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
            [mailbox],
            mailbox=mailbox,
        )
        if row is None or row[4] is not None:
            return None
        return SyncRun(*row)

    def run_writes(self, run_id: int) -> list[RunWrite]:
        rows = self._db.rows(
            f"SELECT {RUN_WRITE_COLUMNS} FROM run_writes WHERE run_id = %s ORDER BY id",  # noqa: S608 - constant
            [run_id],
        )
        return [run_write(r, self._db.sealer) for r in rows]

    def mark_undone(self, run_id: int, *, now: float) -> None:
        self._db.change("UPDATE runs SET undone_at = %s WHERE id = %s", [now, run_id])


_LEARN_FOLDERS = (
    "INSERT INTO folders (mailbox, folder_id, role)"
    " SELECT %s, f, r FROM unnest(%s::text[], %s::text[]) AS t(f, r)"
    " ON CONFLICT (mailbox, folder_id) DO UPDATE SET role = excluded.role"
)
_LEARN_ITEMS = (
    "INSERT INTO seen_items (mailbox, item_id, item_class, master_id)"
    " SELECT %s, i, c, m FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(i, c, m)"
    " ON CONFLICT (mailbox, item_id) DO UPDATE SET item_class = excluded.item_class,"
    " master_id = COALESCE(excluded.master_id, seen_items.master_id)"
)


class PostgresLearned:
    """Each learn is one statement over arrays (unnest): one round trip for any number."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def learn_folders(self, mailbox: str, folders: Mapping[str, str]) -> None:
        if not folders:
            return
        self._db.change(
            _LEARN_FOLDERS, [mailbox, list(folders), list(folders.values())], mailbox=mailbox
        )

    def folders(self, mailbox: str) -> dict[str, str]:
        rows = self._db.rows(
            "SELECT folder_id, role FROM folders WHERE mailbox = %s", [mailbox], mailbox=mailbox
        )
        return dict(rows)

    def learn_items(
        self, mailbox: str, items: Mapping[str, str], masters: Mapping[str, str] | None = None
    ) -> None:
        if not items:
            return
        masters = masters or {}
        self._db.change(
            _LEARN_ITEMS,
            [mailbox, list(items), list(items.values()), [masters.get(i) for i in items]],
            mailbox=mailbox,
        )

    def item_class(self, mailbox: str, item_id: str) -> str | None:
        return self._seen("item_class", mailbox, item_id)

    def master_of(self, mailbox: str, item_id: str) -> str | None:
        return self._seen("master_id", mailbox, item_id)

    def _seen(self, column: str, mailbox: str, item_id: str) -> str | None:
        row = self._db.one(
            f"SELECT {column} FROM seen_items WHERE mailbox = %s AND item_id = %s",  # noqa: S608 - a column of ours
            [mailbox, item_id],
            mailbox=mailbox,
        )
        return row[0] if row else None


#: Taken when free, expired or already this holder's; the fence grows with every new holder
#: (and stays when the lease is released, so the next one's is larger). ON CONFLICT locks the
#: row and decides on its latest version: contenders queue, and one wins.
_ACQUIRE = (
    "INSERT INTO leases (mailbox, holder, fence, expires_at)"
    " VALUES (%(mailbox)s, %(holder)s, 1, %(until)s)"
    " ON CONFLICT (mailbox) DO UPDATE SET holder = excluded.holder,"
    " fence = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > %(now)s"
    " THEN leases.fence ELSE leases.fence + 1 END, expires_at = excluded.expires_at"
    " WHERE leases.holder IS NULL OR leases.expires_at <= %(now)s"
    " OR leases.holder = excluded.holder"
    " RETURNING fence"
)


class PostgresPauses:
    def __init__(self, database: Database) -> None:
        self._db = database

    def pause(self, mailbox: str, *, now: float) -> None:
        self._db.change(
            "INSERT INTO paused_users (mailbox, paused_at) VALUES (%s, %s)"
            " ON CONFLICT (mailbox) DO NOTHING",
            [mailbox, now],
            mailbox=mailbox,
        )

    def resume(self, mailbox: str) -> None:
        self._db.change(
            "DELETE FROM paused_users WHERE mailbox = %s", [mailbox], mailbox=mailbox
        )

    def paused(self) -> dict[str, float]:
        rows = self._db.rows("SELECT mailbox, paused_at FROM paused_users")
        return {str(mailbox): float(at) for mailbox, at in rows}

    def is_paused(self, mailbox: str) -> bool:
        row = self._db.one("SELECT 1 FROM paused_users WHERE mailbox = %s", [mailbox])
        return row is not None


class PostgresLeases:
    def __init__(self, database: Database) -> None:
        self._db = database

    def acquire(self, mailbox: str, holder: str, ttl: float, *, now: float) -> int | None:
        row = self._db.one(
            _ACQUIRE, {"mailbox": mailbox, "holder": holder, "until": now + ttl, "now": now},
            mailbox=mailbox,
        )
        return None if row is None else int(row[0])

    def renew(self, mailbox: str, holder: str, fence: int, ttl: float, *, now: float) -> bool:
        changed = self._db.change(
            "UPDATE leases SET expires_at = %s WHERE mailbox = %s AND holder = %s AND fence = %s",
            [now + ttl, mailbox, holder, fence],
            mailbox=mailbox,
        )
        return changed > 0

    def release(self, mailbox: str, holder: str, fence: int) -> None:
        self._db.change(
            "UPDATE leases SET holder = NULL, expires_at = NULL"
            " WHERE mailbox = %s AND holder = %s AND fence = %s",
            [mailbox, holder, fence],
            mailbox=mailbox,
        )

    def holder(self, mailbox: str, *, now: float) -> Lease | None:
        row = self._db.one(
            "SELECT mailbox, holder, fence, expires_at FROM leases"
            " WHERE mailbox = %s AND holder IS NOT NULL AND expires_at > %s",
            [mailbox, now],
            mailbox=mailbox,
        )
        return Lease(*row) if row else None


#: the NOTIFY channel nodes tell each other on that a user has something to sync
POKE_CHANNEL = "calsync_poke"


class PostgresPokes:
    """Nodes telling each other, through the server (NOTIFY / LISTEN), that a user has
    something to sync: a Google push notification reaches whichever node the load balancer
    picks, and the user's lease may be another's. A poke is a hint, not state: one lost
    (no listener, a reconnect) costs the change its real-time path only, never the change
    (the holder's next poll or feed run carries it). Payload: the sender, the mailbox."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def poke(self, mailbox: str, *, sender: str) -> None:
        self._db.one("SELECT pg_notify(%s, %s)", [POKE_CHANNEL, f"{sender} {mailbox}"])

    def listen(self, on_poke: Callable[[str, str], None]) -> PokeListener:
        """`on_poke(mailbox, sender)` on a thread of its own for every poke, until the
        listener's `stop()`; a lost connection is made again (1 s, then up to 30 s apart)."""
        listener = PokeListener(self._db.url, on_poke)
        listener.start()
        return listener


class PokeListener(threading.Thread):
    def __init__(self, url: str, on_poke: Callable[[str, str], None]) -> None:
        super().__init__(name="calsync-pokes", daemon=True)
        self.url = url
        self.on_poke = on_poke
        self.listening = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        wait = 1.0
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {POKE_CHANNEL}")
                    self.listening.set()
                    wait = 1.0
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            sender, _, mailbox = note.payload.partition(" ")
                            try:
                                self.on_poke(mailbox, sender)
                            except Exception as exc:  # one poke's handler, not the listener
                                log.error("poke for a user failed: %s", type(exc).__name__)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("pokes: %s; listening again in %g s", type(exc).__name__, wait)
                self._stopping.wait(wait)
                wait = min(30.0, wait * 2)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self.join(timeout)


class PostgresState:
    """calsync's state in one PostgreSQL database, shared by every node (every user's; each
    row carries its mailbox).

    A `State` (sync/state/base.py); `unit()` yields the state itself: on this thread, every
    call between enter and exit is inside the unit's transaction. `key` is the sealing key
    (a Fernet key, the same on every node). `stall_s` (`[store] lease_s`, on a node): the
    sessions of any node stopped inside a transaction for longer are ended (`Reaper`), so
    a stalled node's locks go with its lease."""

    def __init__(
        self,
        url: str,
        *,
        key: bytes,
        journal_retention_s: float = JOURNAL_RETENTION_S,
        pool_size: int = 8,
        connect_timeout: float = 10.0,
        stall_s: float | None = None,
    ) -> None:
        self.url = url
        self._database = Database(
            url, key=key, pool_size=pool_size, connect_timeout=connect_timeout, stall_s=stall_s
        )
        try:
            _migrate(self._database)
        except BaseException:
            self._database.close()
            raise
        self.ids = PostgresIdMap(self._database)
        self.outbox = PostgresOutbox(self._database)
        self.cursors = PostgresCursors(self._database)
        self.journal = PostgresJournal(self._database, journal_retention_s)
        self.conflicts = PostgresConflicts(self._database)
        self.channels = PostgresChannels(self._database)
        self.runs = PostgresRuns(self._database)
        self.learned = PostgresLearned(self._database)
        self.leases = PostgresLeases(self._database)
        self.pauses = PostgresPauses(self._database)
        self.pokes = PostgresPokes(self._database)

    def unit(self) -> StateUnit[PostgresState]:
        return StateUnit(self, self._database.unit())

    @contextlib.contextmanager
    def fenced(self, mailbox: str, holder: str, fence: int) -> Iterator[None]:
        """On this thread, for the body's duration, every write of `mailbox`'s rows is made
        only while `holder` holds the user's lease with `fence` (checked in the write's
        transaction, under the user's lock): a node that stalled past its lease and wakes
        up finds its writes refused (StaleLease), never overwriting the new holder's."""
        fences = self._database.fences()
        fences[mailbox] = (holder, fence)
        try:
            yield
        finally:
            fences.pop(mailbox, None)

    def close(self) -> None:
        self._database.close()


if TYPE_CHECKING:

    def _is_a_state(state: PostgresState) -> State:
        return state  # mypy holds PostgresState to the State protocol here
