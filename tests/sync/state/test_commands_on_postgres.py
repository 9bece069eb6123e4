"""The operator's commands on a shared PostgreSQL store (`[store] url`): a real server
(pg_server.py), real stand-ins, `calsync` as a process found beside `sys.executable`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from exchangelib import CalendarItem, EWSDateTime

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import load_config
from sync.state import open_state
from sync.state.postgres import PostgresState
from sync.store import Store
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account
from tests.sync.state.conftest import POSTGRES_KEY, SharedStore

ROOT = Path(__file__).resolve().parents[3]


def calsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Shared:
    """The shared store's config, the environment `calsync` is run in (the sealing key
    beside the test's own), and one item in alice's Exchange calendar, not synced yet."""

    path: Path
    env: dict[str, str]
    url: str


@pytest.fixture
def shared(shared_store: SharedStore, ews: EwsServer) -> Shared:
    account = ews_account(ews.url)
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject="On the shared store",
        start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
        end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
    ).save()
    return Shared(shared_store.path, {**os.environ, **shared_store.environ}, shared_store.url)


def test_calsync_sync_status_and_doctor_use_the_shared_store(
    shared: Shared, google: GoogleCalendarServer
) -> None:
    path, env, _ = shared.path, shared.env, shared.url

    done = calsync("sync", "--config", str(path), env=env)
    assert done.returncode == 0, done.stderr
    status = calsync("status", "--config", str(path), "--json", env=env)
    assert status.returncode == 0, status.stderr
    (user,) = json.loads(status.stdout)["users"]
    assert (user["mailbox"], user["mapped_events"]) == (ALICE, 1)
    assert json.loads(status.stdout)["store"].startswith("postgresql://127.0.0.1:")
    doctor = calsync("doctor", "--config", str(path), env=env)
    assert "(PostgreSQL, shared by the nodes)" in doctor.stdout + doctor.stderr
    # the pair is in PostgreSQL, and no SQLite file was made beside the config
    store = Store(open_state(load_config(path), environ=env))
    try:
        (pair,) = store.mapped_items(ALICE)
        events = calendar_service(google.api_endpoint).events().list(calendarId="primary")
        assert [e["id"] for e in events.execute()["items"]] == [pair.google_event_id]
    finally:
        store.close()
    assert not list(path.parent.glob("*.db*"))

    # without the key every command says which variable to set, and touches nothing
    bare = {k: v for k, v in env.items() if k != "CALSYNC_STORE_KEY"}
    refused = calsync("sync", "--config", str(path), env=bare)
    assert refused.returncode == 2 and "set CALSYNC_STORE_KEY" in refused.stderr


def test_calsync_sync_leaves_a_user_another_node_is_syncing_to_it(
    shared: Shared, google: GoogleCalendarServer
) -> None:
    path, env, url = shared.path, shared.env, shared.url
    node = PostgresState(url, key=POSTGRES_KEY, pool_size=1)
    try:
        fence = node.leases.acquire(ALICE, "node-2", 60.0, now=time.time())
        assert fence is not None
        busy = calsync("sync", "--config", str(path), env=env)
        assert busy.returncode == 0, busy.stderr
        assert "another node is syncing this user" in busy.stderr
        assert listed(google) == []
        node.leases.release(ALICE, "node-2", fence)
        done = calsync("sync", "--config", str(path), env=env)
        assert done.returncode == 0, done.stderr
        assert len(listed(google)) == 1
        # and a one-off run gives the lease back when it is done
        assert node.leases.holder(ALICE, now=time.time()) is None
    finally:
        node.close()


def listed(google: GoogleCalendarServer) -> list[dict[str, object]]:
    events = calendar_service(google.api_endpoint).events().list(calendarId="primary")
    items: list[dict[str, object]] = events.execute()["items"]
    return items
