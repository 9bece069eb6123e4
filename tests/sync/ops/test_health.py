"""sync/ops/health.py: /healthz always while alive; /readyz 503 with its reasons when the
store does not answer, the worker is stuck, or a side stopped answering."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.config import Config, UserConfig
from sync.ops import metrics
from sync.ops.health import Health
from sync.store import Store
from tests.sync.conftest import ALICE

NOW = 1_900_000_000.0


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    metrics.reset_for_tests()
    yield
    metrics.reset_for_tests()


def checks(health: Health) -> tuple[int, dict[str, bool]]:
    status, body = health.ready()
    json.dumps(body)  # a JSON body
    return status, {name: check["ok"] for name, check in body["checks"].items()}


def test_alive_and_ready_when_nothing_is_wrong(config: Config, store: Store) -> None:
    health = Health(config, store, clock=lambda: NOW)
    assert health.alive()[0] == 200
    assert checks(health) == (
        200,
        {"store": True, "worker": True, "google": True, "exchange": True},
    )


def test_a_worker_that_left_an_entry_due_is_not_ready_unless_its_user_is_paused(
    config: Config, store: Store
) -> None:
    store.enqueue(ALICE, "AAMk-1", "upsert", now=NOW - 500)
    health = Health(config, store, clock=lambda: NOW, stuck_after_s=120)
    status, body = health.ready()
    assert status == 503
    assert body["status"] == "not ready"
    assert body["checks"]["worker"] == {
        "ok": False,
        "detail": "1 entries due for more than 120 s (the oldest 500 s)",
    }
    assert ALICE not in json.dumps(body)  # reasons carry counts, never a mailbox
    store.pause(ALICE, now=NOW)
    assert checks(health)[0] == 200
    store.resume(ALICE)
    assert checks(health)[0] == 503


def test_an_entry_due_for_less_than_the_limit_is_draining(config: Config, store: Store) -> None:
    store.enqueue(ALICE, "AAMk-1", "upsert", now=NOW - 30)
    assert checks(Health(config, store, clock=lambda: NOW, stuck_after_s=120))[0] == 200


def test_a_store_that_does_not_answer(config: Config, store: Store) -> None:
    health = Health(config, store, clock=lambda: NOW)
    store.close()
    status, found = checks(health)
    assert status == 503
    assert found["store"] is False and "worker" not in found


@pytest.mark.parametrize(
    ("answered", "unreachable", "ready"),
    [
        # answered within the window: ready, whatever failed since
        (NOW - 10, NOW - 5, True),
        # nothing failed since the last answer (an idle node): ready
        (NOW - 3600, None, True),
        (NOW - 3600, NOW - 4000, True),
        (None, None, True),  # never asked
        # unreachable since, and no answer within the window: not ready
        (NOW - 3600, NOW - 60, False),
        (None, NOW - 1, False),
    ],
)
def test_google_answered_recently(
    config: Config, store: Store, answered: float | None, unreachable: float | None, ready: bool
) -> None:
    metrics.ANSWERS["google"] = metrics.Answers(answered, unreachable)
    health = Health(config, store, clock=lambda: NOW, answered_within_s=300)
    status, found = checks(health)
    assert found["google"] is ready
    assert (status == 200) is ready


def test_exchange_is_checked_only_where_an_ews_url_is_set(tmp_path: Path) -> None:
    config = Config(store_path=tmp_path / "calsync.db", users=(UserConfig(ALICE),))
    store = Store(config.store_path)
    try:
        metrics.ANSWERS["exchange"] = metrics.Answers(None, NOW - 1)
        assert "exchange" not in checks(Health(config, store, clock=lambda: NOW))[1]
    finally:
        store.close()


def test_no_users_no_side_checks(tmp_path: Path) -> None:
    config = Config(store_path=tmp_path / "calsync.db", users=())
    store = Store(config.store_path)
    try:
        metrics.ANSWERS["google"] = metrics.Answers(None, time.time())
        assert set(checks(Health(config, store))[1]) == {"store", "worker"}
    finally:
        store.close()
