"""`open_state` (sync/state/__init__.py): the backend `[store]` names, and the `[store]` keys
that name it (sync/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.config import ConfigError, parse_config
from sync.state import open_state
from sync.state.base import StoreError
from sync.state.postgres import PostgresState
from sync.state.sqlite import SqliteState
from tests.sync.state.conftest import POSTGRES_KEY
from tests.sync.state.pg_server import PostgresServer


def store(tmp_path: Path, **keys: str) -> object:
    return parse_config({"store": keys}, base=tmp_path)


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ({"url": "mysql://db/calsync"}, "[store] url must be a postgresql:// URL"),
        ({"url": "calsync.db"}, "[store] url must be a postgresql:// URL"),
        (
            {"url": "postgresql://db/calsync", "path": "calsync.db"},
            "path (SQLite, one node) or url (PostgreSQL), not both",
        ),
        ({"url": ""}, "[store]: url must be a non-empty string"),
        ({"secret_key": "x"}, "secret_key"),
    ],
)
def test_store_keys_that_cannot_work_are_one_line(
    tmp_path: Path, keys: dict[str, str], error: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        store(tmp_path, **keys)
    assert error in str(raised.value)


def test_sqlite_at_path_is_the_default(tmp_path: Path) -> None:
    config = parse_config({"store": {"path": "state/s.db"}}, base=tmp_path)
    assert (config.store_url, config.store_key_env) == (None, "CALSYNC_STORE_KEY")
    state = open_state(config, environ={})
    try:
        assert isinstance(state, SqliteState) and state.path == tmp_path / "state/s.db"
    finally:
        state.close()


def test_a_shared_store_needs_its_key_from_the_environment(tmp_path: Path) -> None:
    config = parse_config(
        {"store": {"url": "postgresql://calsync@127.0.0.1:1/calsync", "key_env": "NODE_KEY"}},
        base=tmp_path,
    )
    with pytest.raises(StoreError, match="set NODE_KEY to its sealing key"):
        open_state(config, environ={"CALSYNC_STORE_KEY": POSTGRES_KEY.decode()})
    assert not list(tmp_path.iterdir())  # and no key file is made beside anything


def test_a_url_opens_postgresql_with_the_key_it_is_given(
    tmp_path: Path, postgres_server: PostgresServer, postgres_database: str
) -> None:
    url = postgres_server.url(postgres_database)
    config = parse_config({"store": {"url": url}}, base=tmp_path)
    state = open_state(config, environ={"CALSYNC_STORE_KEY": POSTGRES_KEY.decode()})
    try:
        assert isinstance(state, PostgresState)
        state.outbox.enqueue("a@x", "I1", "upsert", now=1.0, payload={"summary": "x"})
        assert [e.payload for e in state.outbox.pending()] == [{"summary": "x"}]
    finally:
        state.close()
