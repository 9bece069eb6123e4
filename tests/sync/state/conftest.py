"""`state_impl`: a fresh implementation of sync/state/base.py's `State`, one per backend.

Each backend gives a `Backing`: `open()` a `State` on one backing store (twice for two
workers, or to see what another process would see), and `at_rest()`, every byte the backend
keeps (to show no event text is stored in plain sight).

- SQLite: a file in the test's temporary directory.
- PostgreSQL: a real server (pg_server.py), started once for the session on a free port of
  127.0.0.1 and stopped after; each test gets a database of its own, copied from a template
  holding the migrated schema. Without PostgreSQL installed its tests are left out with one
  line, and fail under CI=true (scripts/test installs it as root)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from cryptography.fernet import Fernet

from sync.config import Config, load_config
from sync.state import open_state
from sync.state.base import State
from sync.state.postgres import PostgresState
from sync.state.sqlite import SqliteState
from sync.store import Store
from tests.sync.state.pg_server import PostgresServer, find_bindir

#: the sealing key every node of a shared store is given (one per test session)
POSTGRES_KEY = Fernet.generate_key()


class Backing(Protocol):
    def open(self, *, journal_retention_s: float = ...) -> State: ...

    def at_rest(self) -> bytes: ...


class SqliteBacking:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.opened: list[SqliteState] = []

    def open(self, *, journal_retention_s: float = 30 * 86400) -> State:
        state = SqliteState(self.directory / "state.db", journal_retention_s=journal_retention_s)
        self.opened.append(state)
        return state

    def at_rest(self) -> bytes:
        # the database, its WAL and shared memory (the key file holds no event text)
        return b"".join(p.read_bytes() for p in sorted(self.directory.iterdir()) if p.is_file())

    def close(self) -> None:
        for state in self.opened:
            state.close()


class PostgresBacking:
    def __init__(self, server: PostgresServer, database: str) -> None:
        self.server = server
        self.database = database
        self.url = server.url(database)
        self.opened: list[PostgresState] = []

    def open(self, *, journal_retention_s: float = 30 * 86400) -> State:
        state = PostgresState(
            self.url, key=POSTGRES_KEY, journal_retention_s=journal_retention_s, pool_size=4
        )
        self.opened.append(state)
        return state

    def at_rest(self) -> bytes:
        # the database's own files and the server's write-ahead log
        return b"".join(p.read_bytes() for p in self.server.files_of(self.database))

    def close(self) -> None:
        for state in self.opened:
            state.close()


NOT_INSTALLED = "PostgreSQL is not installed (as root: apt-get install postgresql)"


def needs_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("state_impl") == "postgres"
    return on_postgres or "postgres_server" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without PostgreSQL, outside CI, its tests are left out, said in one line at the end
    (under CI=true they run, and fail: scripts/test installs it)."""
    if find_bindir() is not None or os.environ.get("CI"):
        return
    left_out = [item for item in items if needs_postgres(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not needs_postgres(item)]
        config.stash[_LEFT_OUT] = len(left_out)


_LEFT_OUT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.stash.get(_LEFT_OUT, 0):
        terminalreporter.write_line(
            f"{NOT_INSTALLED}: {config.stash[_LEFT_OUT]} state tests on it left out"
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(NOT_INSTALLED)
    server = PostgresServer(bindir)
    try:
        server.start()
        template = server.create_database()
        PostgresState(server.url(template), key=POSTGRES_KEY).close()
        server.template = template
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A database of this test's own, with the schema already migrated."""
    name = postgres_server.create_database(template=postgres_server.template)
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def state_impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    backing: SqliteBacking | PostgresBacking
    if request.param == "sqlite":
        backing = SqliteBacking(tmp_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        backing = PostgresBacking(server, request.getfixturevalue("postgres_database"))
    try:
        yield backing
    finally:
        backing.close()


@pytest.fixture
def state(state_impl: Backing) -> State:
    return state_impl.open()


@dataclass
class SharedStore:
    """tests.addon.conftest's config for alice, with the store a PostgreSQL database of
    the test's own (`[store] url`); `open()` is one more node's `Store` on it."""

    path: Path
    config: Config
    url: str
    #: the environment every node is given: the sealing key
    environ: dict[str, str]

    def open(self) -> Store:
        return Store(open_state(self.config, environ=self.environ))


@pytest.fixture
def shared_store(
    tmp_path: Path,
    ews: Any,
    google: Any,
    postgres_server: PostgresServer,
    postgres_database: str,
) -> SharedStore:
    from tests.addon.conftest import write_config

    url = postgres_server.url(postgres_database)
    path = write_config(tmp_path, google, ews_url=ews.url, users=("alice@example.com",))
    path.write_text(
        path.read_text().replace(f'path = "{tmp_path / "calsync.db"}"', f'url = "{url}"')
    )
    environ = {"CALSYNC_STORE_KEY": POSTGRES_KEY.decode()}
    return SharedStore(path, load_config(path), url, environ)
