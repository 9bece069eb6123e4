"""`state_impl`: a fresh implementation of sync/state/base.py's `State`, one per backend.

Each backend gives a `Backing`: `open()` a `State` on one backing store (twice for two
workers, or to see what another process would see), and `at_rest()`, every byte the backend
keeps (to show no event text is stored in plain sight). Issue 15 adds PostgreSQL here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from sync.state.base import State
from sync.state.sqlite import SqliteState


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


@pytest.fixture(params=["sqlite"])
def state_impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    backing = SqliteBacking(tmp_path)
    try:
        yield backing
    finally:
        backing.close()


@pytest.fixture
def state(state_impl: Backing) -> State:
    return state_impl.open()
