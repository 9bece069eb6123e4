"""The operator's commands on a shared PostgreSQL store (`[store] url`): a real server
(pg_server.py), real stand-ins, `calsync` as a process found beside `sys.executable`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import load_config
from sync.state import open_state
from sync.store import Store
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account
from tests.sync.state.conftest import POSTGRES_KEY, shared_store_config
from tests.sync.state.pg_server import PostgresServer

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


def test_calsync_sync_status_and_doctor_use_the_shared_store(
    tmp_path: Path,
    ews: EwsServer,
    google: GoogleCalendarServer,
    postgres_server: PostgresServer,
    postgres_database: str,
) -> None:
    from exchangelib import CalendarItem, EWSDateTime

    url = postgres_server.url(postgres_database)
    path = shared_store_config(tmp_path, google, ews.url, url)
    account = ews_account(ews.url)
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Kept on the shared store",
        start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
        end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
    ).save()
    env = {**os.environ, "CALSYNC_STORE_KEY": POSTGRES_KEY.decode()}

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
    assert not list(tmp_path.glob("*.db*"))

    # without the key every command says which variable to set, and touches nothing
    bare = {k: v for k, v in env.items() if k != "CALSYNC_STORE_KEY"}
    refused = calsync("sync", "--config", str(path), env=bare)
    assert refused.returncode == 2 and "set CALSYNC_STORE_KEY" in refused.stderr
