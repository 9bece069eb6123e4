"""A config of two users and its SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.config import Config, UserConfig
from sync.store import Store
from tests.sync.conftest import ALICE, BOB


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(
        store_path=tmp_path / "calsync.db",
        users=(UserConfig(ALICE), UserConfig(BOB)),
        exchange_ews_url="https://127.0.0.1:1/EWS/Exchange.asmx",
    )


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    made = Store(config.store_path)
    yield made
    made.close()
