"""`calsync store migrate FROM TO` (sync/state/migrate.py, sync/cli/store.py): a SQLite store
filled through the state interfaces, copied by `calsync` as a process found beside
`sys.executable` into a real PostgreSQL (pg_server.py), and read back with PostgresState."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet, InvalidToken

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.cli import main
from sync.state.base import JsonObject, MappedItem, OutboxEntry, WatchChannel
from sync.state.migrate import CLAIM_COLUMNS, COPIED, IDENTITIES, SEALED
from sync.state.postgres import PostgresState
from sync.state.sqlite import SqliteState
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account
from tests.sync.state.conftest import POSTGRES_KEY
from tests.sync.state.pg_server import PostgresServer
from tests.sync.state.test_sqlite import old_store

ROOT = Path(__file__).resolve().parents[3]
A, B, C = "alice@example.com", "bob@example.com", "carol@example.com"
#: event text: readable only through the keys, never in the target's files
SECRET = "Board meeting: the merger"
OLD_SECRET = "Lunch with the auditors"
TOKEN = "channel-token-secret"
KEY = POSTGRES_KEY.decode()


def calsync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync.cli", *args],
        cwd=ROOT,
        env=env if env is not None else keyed(),
        capture_output=True,
        text=True,
        timeout=120,
    )


Run = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """`calsync` in this process (the same `main`, no interpreter start): for the
    refusals, which end before any copy. `env`: the variables set (the key's unset)."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        monkeypatch.delenv("CALSYNC_STORE_KEY", raising=False)
        for name, value in (env if env is not None else {"CALSYNC_STORE_KEY": KEY}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def keyed() -> dict[str, str]:
    """This process's environment with the target's key."""
    return {**os.environ, "CALSYNC_STORE_KEY": KEY}


def fill(path: Path) -> None:
    """One of every row a node keeps, through the interfaces, as a node writes them."""
    state = SqliteState(path)
    try:
        state.learned.learn_folders(A, {"CAL": "calendar", "DEL": "deleteditems"})
        state.learned.learn_items(A, {"ITEM1": "CalendarItem", "OCC1": "CalendarItem"})
        state.learned.learn_items(A, {"OCC1": "CalendarItem"}, {"OCC1": "ITEM1"})
        state.learned.learn_items(B, {"MAIL1": "Message"})
        snapshot: JsonObject = {
            "summary": SECRET,
            "start": {"dateTime": "2026-03-02T09:00:00+01:00"},
        }
        state.ids.save(
            MappedItem(A, "ITEM1", "gevent1", "CK1", '"etag1"', "hash1", snapshot),
            now=100.0,
            reconciled=True,
        )
        state.ids.save(  # updated later, reconciled earlier: both times must survive
            MappedItem(A, "ITEM1", "gevent1", "CK2", '"etag2"', "hash2", snapshot), now=150.0
        )
        state.ids.save(MappedItem(B, "ITEM9", "gevent9", None, None, None, None), now=90.0)
        # ITEM1: an older entry with a payload before a newer one (order per item)
        first = state.outbox.enqueue(A, "ITEM1", "upsert", now=200.0, payload={"summary": SECRET})
        state.outbox.retry_later(first, error="503 backend", at=210.0, quarantine=False)
        state.outbox.enqueue(A, "ITEM1", "update", now=201.0, change_key="CK3")
        gone = state.outbox.enqueue(A, "ITEM2", "delete", now=202.0, payload={"summary": SECRET})
        state.outbox.retry_later(gone, error="403 forbidden", at=230.0, quarantine=True)
        state.outbox.enqueue_many([(B, "ITEM9", "refresh", None)], now=203.0)
        state.outbox.ready(250.0)  # the SQLite node's claims: left behind
        state.cursors.save_google(A, "gtoken", now=300.0)
        state.cursors.save_exchange(A, "ewsstate", now=301.0)
        state.cursors.record_error(A, "Google 500", now=302.0)
        state.cursors.clear_error(A, now=303.0)
        state.cursors.record_error(A, "EWS busy", now=304.0)
        state.journal.record(A, "google", "gevent1", '"etag2"', "hash2", now=310.0)
        state.journal.record(A, "exchange", "ITEM1", "CK2", None, now=311.0)
        state.conflicts.record(A, "ITEM1", "gevent1", "location", "exchange", "policy", now=320.0)
        state.channels.save(
            WatchChannel("chan1", A, "res1", TOKEN, "https://node/push", "primary", 9e9, 330.0)
        )
        undone = state.runs.begin(A, now=340.0)
        state.runs.record_write(
            undone,
            "google",
            "create",
            "gevent0",
            other_key="ITEM0",
            version='"e0"',
            before=None,
            now=341.0,
        )
        state.runs.finish(undone, now=342.0)
        state.runs.mark_undone(undone, now=343.0)
        run = state.runs.begin(A, now=350.0)
        state.runs.record_write(
            run,
            "google",
            "patch",
            "gevent1",
            other_key="ITEM1",
            version='"etag2"',
            before={"summary": OLD_SECRET},
            fields={"summary": SECRET},
            now=351.0,
        )
        state.runs.record_write(
            run,
            "exchange",
            "delete",
            "ITEM3",
            other_key="gevent3",
            version=None,
            before={"summary": OLD_SECRET, "location": "Room 1"},
            now=352.0,
        )
        state.runs.finish(run, now=353.0)
        state.runs.begin(B, now=360.0)  # a run still going when the node stopped
        state.pauses.pause(C, now=370.0)  # the admin console paused her
        state.leases.acquire(A, "sqlite-node", 30.0, now=400.0)
    finally:
        state.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "calsync.db"
    fill(path)
    return path


@pytest.fixture
def target(postgres_server: PostgresServer, postgres_database: str) -> str:
    """An empty calsync database (schema made, sealed with POSTGRES_KEY)."""
    return postgres_server.url(postgres_database)


def sqlite_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {', '.join(COPIED[table])} FROM {table}").fetchall()
    finally:
        conn.close()


def pg_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT {', '.join(COPIED[table])} FROM {table}").fetchall()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def pg_counts(url: str) -> dict[str, int]:
    return {table: len(pg_rows(url, table)) for table in COPIED}


def plain(rows: list[tuple[Any, ...]], table: str) -> list[tuple[Any, ...]]:
    """The rows without their sealed columns (sealed again: other bytes) and claims."""
    drop = {COPIED[table].index(c) for c in SEALED.get(table, ())}
    if table == "outbox":
        drop |= {COPIED[table].index(c) for c in CLAIM_COLUMNS}
    return sorted((tuple(v for i, v in enumerate(row) if i not in drop) for row in rows), key=repr)


def table_of(stdout: str) -> dict[str, list[str]]:
    """The printed counts (tab-separated: stdout is not a terminal) by table."""
    lines = stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["table", "source rows", "target rows"]
    rows = {}
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != 4:
            break
        rows[cells[0]] = cells[1:]
    return rows


def unclaimed(entries: list[OutboxEntry]) -> list[OutboxEntry]:
    return [replace(e, claimed_by=None, claim_until=None) for e in entries]


# --- the copy -----------------------------------------------------------------------------------


def test_every_concern_reads_back_equal_on_postgres(
    source: Path, target: str, postgres_server: PostgresServer, postgres_database: str
) -> None:
    done = calsync("store", "migrate", str(source), target)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    printed = table_of(done.stdout)
    expected = {table: len(sqlite_rows(source, table)) for table in COPIED}
    assert {t: printed[t] for t in COPIED} == {
        t: [str(n), str(n), "ok"] for t, n in expected.items()
    }
    assert all(expected.values())  # every table had something to copy
    assert printed["leases"] == ["1", "-", "not copied"]
    assert "leases not copied: they belong to the live nodes" in done.stdout
    assert "outbox claims not copied (2)" in done.stdout

    # row for row as they were (ids, times, attempts, errors), sealed columns aside
    for table in COPIED:
        assert plain(pg_rows(target, table), table) == plain(sqlite_rows(source, table), table)

    old = SqliteState(source)
    new = PostgresState(target, key=POSTGRES_KEY)  # the target's key opens every sealed value
    try:
        assert new.learned.folders(A) == {"CAL": "calendar", "DEL": "deleteditems"}
        assert new.learned.master_of(A, "OCC1") == "ITEM1"
        assert new.learned.item_class(B, "MAIL1") == "Message"
        for mailbox in (A, B):
            assert new.ids.mapped_items(mailbox) == old.ids.mapped_items(mailbox)
            assert new.cursors.get(mailbox) == old.cursors.get(mailbox)
            assert new.conflicts.list(mailbox) == old.conflicts.list(mailbox)
            assert new.channels.list(mailbox) == old.channels.list(mailbox)
            assert new.outbox.pending(mailbox) == unclaimed(old.outbox.pending(mailbox))
            assert new.outbox.quarantined(mailbox) == old.outbox.quarantined(mailbox)
            assert new.runs.last_run(mailbox) == old.runs.last_run(mailbox)
        mapped = new.ids.mapped(A, "ITEM1")
        assert mapped is not None and mapped.snapshot is not None
        assert mapped.snapshot["summary"] == SECRET
        assert new.ids.reconciled_at(A, "ITEM1") == 100.0
        (quarantined,) = new.outbox.quarantined(A)
        assert (quarantined.attempts, quarantined.last_error) == (1, "403 forbidden")
        assert quarantined.payload == {"summary": SECRET}
        cursor = new.cursors.get(A)
        assert (cursor.last_error, cursor.past_error) == ("EWS busy", "Google 500")
        assert new.journal.is_echo(A, "google", "gevent1", '"etag2"')
        assert new.journal.is_echo(A, "exchange", "ITEM1", "CK2")
        channel = new.channels.get("chan1")
        assert channel is not None and channel.token == TOKEN
        # undo's record: the last run not undone, its writes with their pre-images
        run = new.runs.last_run(A)
        assert run is not None and run == old.runs.last_run(A)
        assert new.runs.run_writes(run.id) == old.runs.run_writes(run.id)
        patch, delete = new.runs.run_writes(run.id)
        assert (patch.before, patch.fields) == ({"summary": OLD_SECRET}, {"summary": SECRET})
        assert delete.before == {"summary": OLD_SECRET, "location": "Room 1"}
        assert new.leases.holder(A, now=400.0) is None  # the SQLite node's lease stayed behind
        assert new.pauses.paused() == old.pauses.paused() == {C: 370.0}

        # the outbox hands out each item's oldest entry, at once (no claim came across)
        first_of_item1 = old.outbox.pending(A)[0]
        claimed = new.outbox.claim(1000.0, "pg-node", 30.0)
        assert [(e.mailbox, e.ews_item_id, e.id) for e in claimed] == [
            (A, "ITEM1", first_of_item1.id),
            (B, "ITEM9", old.outbox.pending(B)[0].id),
        ]
        assert claimed[0].payload == {"summary": SECRET} and claimed[0].attempts == 1
        # and new ids follow the ones copied: a new entry queues behind the old ones
        newest = max(e.id for e in old.outbox.pending() + old.outbox.quarantined())
        assert new.outbox.enqueue(A, "ITEM1", "delete", now=1001.0) > newest
        assert new.runs.begin(A, now=1002.0) > run.id
        new.conflicts.record(A, None, "gevent1", "summary", "google", "policy", now=1003.0)
        new.runs.record_write(
            run.id,
            "google",
            "create",
            "gevent5",
            other_key=None,
            version='"e5"',
            before=None,
            now=1004.0,
        )
    finally:
        old.close()
        new.close()

    # no event text in the target's files, nor a value the source's key opens
    at_rest = b"".join(p.read_bytes() for p in postgres_server.files_of(postgres_database))
    for text in (SECRET, OLD_SECRET, TOKEN):
        assert text.encode() not in at_rest
    opener = Fernet((source.parent / "calsync.db.key").read_bytes().strip())
    (snapshot,) = [row[6] for row in pg_rows(target, "items") if row[6] is not None]
    with pytest.raises(InvalidToken):
        opener.decrypt(snapshot)


def test_calsync_undo_works_on_postgres_after_the_move(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, target: str
) -> None:
    """A run `calsync sync` made on SQLite, undone by `calsync undo` on PostgreSQL."""
    from exchangelib import CalendarItem, EWSDateTime

    path = write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,))
    account = ews_account(ews.url)
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject=SECRET,
        start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
        end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
    ).save()
    synced = calsync("sync", "--config", str(path))
    assert synced.returncode == 0, synced.stderr
    events = calendar_service(google.api_endpoint).events()
    assert [e["summary"] for e in events.list(calendarId="primary").execute()["items"]] == [SECRET]

    moved = calsync("store", "migrate", str(tmp_path / "calsync.db"), target)
    assert moved.returncode == 0, moved.stderr
    sqlite_line = f'path = "{tmp_path / "calsync.db"}"'
    path.write_text(path.read_text().replace(sqlite_line, f'url = "{target}"'))
    undone = calsync("undo", ALICE, "--config", str(path))
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert "deleted" in undone.stdout
    assert events.list(calendarId="primary").execute()["items"] == []


def test_identities_cover_every_table_with_an_id_column() -> None:
    assert sorted(IDENTITIES) == sorted(t for t, columns in COPIED.items() if "id" in columns)


def test_copied_and_sealed_columns_are_both_schemas(tmp_path: Path, target: str) -> None:
    """Every table and column of both schemas is copied (or said not to be), and every
    column that holds sealed bytes is sealed again."""
    state = SqliteState(tmp_path / "fresh.db")
    try:
        conn = state.db.conn
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name not in ("meta", "leases")
        ]
        sqlite_columns = {
            t: sorted(r[1] for r in conn.execute(f"PRAGMA table_info({t})")) for t in tables
        }
        sqlite_sealed = {
            t: sorted(r[1] for r in conn.execute(f"PRAGMA table_info({t})") if r[2] == "BLOB")
            for t in tables
        }
    finally:
        state.close()
    with psycopg.connect(target) as pg:
        rows = pg.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name NOT IN ('meta', 'leases')"
        ).fetchall()
    pg_columns: dict[str, list[str]] = {}
    pg_sealed: dict[str, list[str]] = {}
    for table, column, kind in rows:
        pg_columns.setdefault(table, []).append(column)
        pg_sealed.setdefault(table, [])
        if kind == "bytea":
            pg_sealed[table].append(column)
    copied = {t: sorted(c) for t, c in COPIED.items()}
    sealed = {t: sorted(SEALED.get(t, ())) for t in COPIED}
    assert sqlite_columns == copied
    assert {t: sorted(c) for t, c in pg_columns.items()} == copied
    assert sqlite_sealed == sealed
    assert {t: sorted(c) for t, c in pg_sealed.items()} == sealed


def test_an_older_sqlite_store_is_migrated_first_then_copied(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A store of schema 5 (as that calsync left it) into a database with no schema yet."""
    path = old_store(5, tmp_path)
    name = postgres_server.create_database()
    try:
        url = postgres_server.url(name)
        done = calsync("store", "migrate", f"sqlite://{path}", url)
        assert done.returncode == 0, done.stderr
        new = PostgresState(url, key=POSTGRES_KEY)
        try:
            mapped = new.ids.mapped("alice@example.com", "ITEM1")
            assert mapped is not None and mapped.snapshot == {"summary": SECRET}
            (channel,) = new.channels.list("alice@example.com")
            assert channel.token == "channel-token-secret"
        finally:
            new.close()
    finally:
        postgres_server.drop_database(name)


# --- refusals -----------------------------------------------------------------------------------


def test_a_second_migrate_into_the_same_target_is_refused(source: Path, target: str) -> None:
    assert calsync("store", "migrate", str(source), target).returncode == 0
    before = {table: plain(pg_rows(target, table), table) for table in COPIED}
    again = calsync("store", "migrate", str(source), target)
    assert again.returncode == 2
    assert again.stdout == ""
    (line,) = again.stderr.splitlines()
    assert line.startswith("calsync store migrate: 127.0.0.1:")
    assert "already holds calsync data (folders: 2, seen_items: 3, items: 2, outbox: 4," in line
    assert {table: plain(pg_rows(target, table), table) for table in COPIED} == before


@pytest.mark.parametrize(
    ("env", "says"),
    [
        # no key: which variable to set
        ({"OTHER": KEY}, "set CALSYNC_STORE_KEY to the sealing key"),
        # a key the target was not made with
        ({"CALSYNC_STORE_KEY": Fernet.generate_key().decode()}, "does not open the store at"),
        # not a key at all
        ({"CALSYNC_STORE_KEY": "not-a-key"}, "not a Fernet key"),
    ],
    ids=["missing", "wrong", "malformed"],
)
def test_a_wrong_or_missing_key_is_refused_in_one_line(
    in_process: Run, source: Path, target: str, env: dict[str, str], says: str
) -> None:
    done = in_process("store", "migrate", str(source), target, env=env)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert says in line
    assert pg_counts(target) == dict.fromkeys(COPIED, 0)


def test_the_key_is_read_from_the_variable_key_env_names(
    in_process: Run, source: Path, target: str
) -> None:
    done = in_process(
        "store", "migrate", "--key-env", "OTHER", str(source), target, env={"OTHER": KEY}
    )
    assert done.returncode == 0, done.stderr


def test_a_replaced_source_key_file_fails_and_commits_nothing(
    in_process: Run, source: Path, target: str
) -> None:
    (source.parent / "calsync.db.key").write_bytes(Fernet.generate_key())
    done = in_process("store", "migrate", str(source), target)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "does not open with this store's key" in line and "nothing was committed" in line
    assert pg_counts(target) == dict.fromkeys(COPIED, 0)


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "no SQLite store at"), (b"not a database", "not a calsync SQLite store")],
    ids=["missing", "not-sqlite"],
)
def test_a_source_that_is_not_a_store_is_refused_and_left_as_it_was(
    in_process: Run, tmp_path: Path, target: str, content: bytes | None, says: str
) -> None:
    path = tmp_path / "s.db"
    if content is not None:
        path.write_bytes(content)
        path.with_name("s.db.key").write_bytes(Fernet.generate_key())
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    done = in_process("store", "migrate", str(path), target)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert says in line
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # no store made


def test_a_source_of_a_newer_schema_is_refused(in_process: Run, source: Path, target: str) -> None:
    conn = sqlite3.connect(source)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    done = in_process("store", "migrate", str(source), target)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "schema 99, newer than this calsync" in line
    assert pg_counts(target) == dict.fromkeys(COPIED, 0)


def test_a_source_with_a_column_this_calsync_does_not_copy_is_refused(
    in_process: Run, source: Path, target: str
) -> None:
    """A column added without teaching migrate.py to copy it would be lost on the way."""
    conn = sqlite3.connect(source)
    with conn:
        conn.execute("ALTER TABLE items ADD COLUMN colour TEXT")
    conn.close()
    done = in_process("store", "migrate", str(source), target)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "table items is not as this calsync knows it" in line and "colour" in line
    assert pg_counts(target) == dict.fromkeys(COPIED, 0)


@pytest.mark.parametrize(
    ("source_arg", "target_arg", "says"),
    [
        ("mysql://x/y", "postgresql://127.0.0.1/x", "FROM is a SQLite file"),
        ("calsync.db", "sqlite:///calsync.db", "TO is a PostgreSQL database"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(
    in_process: Run, source_arg: str, target_arg: str, says: str
) -> None:
    done = in_process("store", "migrate", source_arg, target_arg)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert says in line


# --- all or nothing -----------------------------------------------------------------------------


@pytest.fixture
def target_with(target: str) -> Iterator[Any]:
    """Run DDL of the test's own on the target (a constraint, a trigger)."""

    def run(sql: str) -> None:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(sql)

    yield run


def test_a_row_refused_part_way_leaves_the_target_unchanged(
    source: Path, target: str, target_with: Any
) -> None:
    # run_writes is copied last but one step: everything before it was in the transaction
    target_with("ALTER TABLE run_writes ADD CONSTRAINT no_deletes CHECK (op <> 'delete')")
    done = calsync("store", "migrate", str(source), target)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert 'violates check constraint "no_deletes"' in line
    assert line.endswith("nothing was committed")
    assert SECRET not in done.stderr and "ITEM3" not in done.stderr  # no row quoted
    assert pg_counts(target) == dict.fromkeys(COPIED, 0)
    target_with("ALTER TABLE run_writes DROP CONSTRAINT no_deletes")
    assert calsync("store", "migrate", str(source), target).returncode == 0  # then it can


def test_counts_that_differ_exit_1_and_commit_nothing(
    source: Path, target: str, target_with: Any
) -> None:
    # a trigger that drops one journal row on the way in: the copy "succeeds", short
    target_with(
        "CREATE FUNCTION lose() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN IF NEW.side = 'exchange' THEN RETURN NULL; END IF; RETURN NEW; END $$;"
        " CREATE TRIGGER lose BEFORE INSERT ON journal FOR EACH ROW EXECUTE FUNCTION lose()"
    )
    done = calsync("store", "migrate", str(source), target)
    assert done.returncode == 1, done.stderr
    printed = table_of(done.stdout)
    assert printed["journal"] == ["2", "1", "DIFFERS"]
    assert printed["items"] == ["2", "2", "ok"]
    assert "the counts differ: nothing was committed" in done.stdout
    assert pg_counts(target) == dict.fromkeys(COPIED, 0)


def test_a_dry_run_counts_and_commits_nothing(source: Path, target: str) -> None:
    done = calsync("store", "migrate", "--dry-run", str(source), target)
    assert done.returncode == 0, done.stderr
    assert table_of(done.stdout)["outbox"] == ["4", "4", "ok"]
    assert "dry run: every count would match; nothing was committed" in done.stdout
    assert pg_counts(target) == dict.fromkeys(COPIED, 0)
