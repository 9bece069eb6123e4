"""The PostgreSQL state (sync/state/postgres.py): its schema versions, its shared key, and
what an operator is told when it cannot be used. What every backend does is in
test_contract.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from cryptography.fernet import Fernet

from sync.state.base import StoreError
from sync.state.postgres import SCHEMA_VERSION, PostgresState, describe
from tests.sync.state.conftest import POSTGRES_KEY
from tests.sync.state.pg_server import PostgresServer, free_port

A = "a@x"


@pytest.fixture
def empty_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A database with nothing in it (no calsync schema yet)."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def state(postgres_server: PostgresServer, postgres_database: str) -> Iterator[PostgresState]:
    opened = PostgresState(postgres_server.url(postgres_database), key=POSTGRES_KEY)
    try:
        yield opened
    finally:
        opened.close()


def test_ready_hands_its_own_unfinished_entries_out_again(state: PostgresState) -> None:
    """What today's one-process worker drains with (as SQLite's: test_compat.py)."""
    entry = state.outbox.enqueue(A, "ITEM", "upsert", now=1.0)
    assert [e.id for e in state.outbox.ready(1.0)] == [entry]
    assert [e.id for e in state.outbox.ready(1.0)] == [entry]
    assert state.outbox.next_ready() == 1.0
    other = state.outbox.enqueue(A, "OTHER", "upsert", now=1.0)
    state.outbox.claim(1.0, "w2", 60.0)  # never one another worker holds a live claim on
    assert [e.id for e in state.outbox.ready(2.0)] == [entry]
    state.outbox.complete(entry)
    assert state.outbox.ready(2.0) == [] and state.outbox.next_ready() == 61.0
    assert [e.id for e in state.outbox.ready(61.0)] == [other]


def test_an_empty_database_is_migrated_at_open_and_kept_after(empty_url: str) -> None:
    state = PostgresState(empty_url, key=POSTGRES_KEY)
    state.outbox.enqueue(A, "I1", "upsert", now=1.0, payload={"summary": "x"})
    state.close()
    with psycopg.connect(empty_url) as conn:
        (version,) = conn.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone() or (None,)
    assert version == str(SCHEMA_VERSION)
    again = PostgresState(empty_url, key=POSTGRES_KEY)  # migrated already: nothing redone
    try:
        assert [e.payload for e in again.outbox.pending(A)] == [{"summary": "x"}]
    finally:
        again.close()


def test_a_version_1_store_gets_paused_users_and_keeps_its_data(empty_url: str) -> None:
    """Version 2 added the paused users (they were a file beside each node's store)."""
    state = PostgresState(empty_url, key=POSTGRES_KEY)
    entry = state.outbox.enqueue(A, "I1", "upsert", now=1.0, payload={"summary": "x"})
    state.close()
    with psycopg.connect(empty_url) as conn:  # the store as version 1 left it
        conn.execute("DROP TABLE paused_users")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    again = PostgresState(empty_url, key=POSTGRES_KEY)
    try:
        assert again.pauses.paused() == {}
        assert [e.id for e in again.outbox.claim(2.0, "w", 60.0)] == [entry]
        again.pauses.pause(A, now=3.0)
        assert again.pauses.paused() == {A: 3.0}
    finally:
        again.close()
    with psycopg.connect(empty_url) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert row == (str(SCHEMA_VERSION),) and SCHEMA_VERSION == 2


def test_nodes_starting_together_migrate_once(empty_url: str) -> None:
    opened: list[PostgresState] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def node() -> None:
        start.wait()
        try:
            opened.append(PostgresState(empty_url, key=POSTGRES_KEY))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == [] and len(opened) == 3
        opened[0].ids.count(A)
    finally:
        for state in opened:
            state.close()


def test_a_newer_schema_is_refused(empty_url: str) -> None:
    PostgresState(empty_url, key=POSTGRES_KEY).close()
    with psycopg.connect(empty_url) as conn:
        conn.execute(
            "UPDATE meta SET value = %s WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)]
        )
    with pytest.raises(StoreError, match="newer than this calsync"):
        PostgresState(empty_url, key=POSTGRES_KEY)


def test_a_node_with_another_key_is_stopped_at_open(empty_url: str) -> None:
    PostgresState(empty_url, key=POSTGRES_KEY).close()
    with pytest.raises(StoreError, match="every node needs the key the store was made with"):
        PostgresState(empty_url, key=Fernet.generate_key())


def test_a_key_that_is_no_key_is_said_plainly(empty_url: str) -> None:
    with pytest.raises(StoreError, match="not a Fernet key"):
        PostgresState(empty_url, key=b"correct horse battery staple")


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    url = f"postgresql://calsync:hunter2@127.0.0.1:{free_port()}/calsync"
    with pytest.raises(StoreError) as raised:
        PostgresState(url, key=POSTGRES_KEY, connect_timeout=1.0)
    message = str(raised.value)
    assert "127.0.0.1" in message and "/calsync" in message
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@db.example.com:6432/calsync", "db.example.com:6432/calsync"),
        ("postgresql://u@db.example.com/calsync?sslmode=require", "db.example.com:5432/calsync"),
        ("postgresql:///calsync?host=/run/postgresql", "/run/postgresql:5432/calsync"),
    ],
)
def test_describe_names_the_server_never_the_password(url: str, shown: str) -> None:
    assert describe(url) == shown


def test_a_unit_whose_statement_failed_is_not_taken_for_committed(state: PostgresState) -> None:
    """PostgreSQL answers COMMIT of a transaction a failed statement aborted with ROLLBACK,
    and no error: the unit says so rather than lose its writes without a word."""
    with pytest.raises(StoreError, match="rolled back whole"), state.unit() as uow:
        uow.outbox.enqueue(A, "I1", "upsert", now=1.0)
        with pytest.raises(psycopg.errors.UndefinedTable):
            uow.ids._db.one("SELECT * FROM no_such_table")
    assert state.outbox.count() == 0
