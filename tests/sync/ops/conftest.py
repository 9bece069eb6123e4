"""A config of two users and its SQLite store, with the admin console's pause flags
honoured (as in a process that serves the console)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.config import Config, UserConfig
from sync.ops import pause
from sync.store import Store
from tests.sync.conftest import ALICE, BOB


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Config]:
    made = Config(
        store_path=tmp_path / "calsync.db",
        users=(UserConfig(ALICE), UserConfig(BOB)),
        exchange_ews_url="https://127.0.0.1:1/EWS/Exchange.asmx",
    )
    pause.register(made)
    yield made
    pause.unregister(made)


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    made = Store(config.store_path)
    yield made
    made.close()
