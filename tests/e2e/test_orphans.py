"""What a Google outage must not leave behind, through the whole chain (exchangelib ->
mitmdump with the addon -> the EWS stand-in; the worker and `calsync sync` -> the Google
stand-in), issue 10 cases 5 and 6:

- no orphan: an item created through the proxy while Google is down, whose DeleteItem is
  lost in a SIGKILL of mitmdump (Exchange deleted it; calsync never recorded it), never
  reaches Google once it is back, even though the worker had its event prepared and sealed;
- quarantine that heals: entries quarantined during an outage leave the quarantine once the
  two-way job has carried their changes, and the outage's error is reported as past.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from exchangelib import Account

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from tests.e2e.clients import (
    Route,
    google_events,
    outbox_counts,
    send_json,
    wait_for,
)
from tests.e2e.conftest import PASSWORD, USERS, password_env, write_config
from tests.e2e.items import at, converge, create
from tests.e2e.processes import Mitmdump, clean_env

ALICE = "alice@example.com"
#: the calsync command of the interpreter running the tests (the project is installed there)
CALSYNC = Path(sys.executable).parent / "calsync"


@pytest.fixture
def config(
    tmp_path: Path, google: GoogleCalendarServer, ews: EwsServer, request: pytest.FixtureRequest
) -> Path:
    """The e2e config; `indirect` parametrisation sets [outbox] max_attempts."""
    path = write_config(tmp_path, google, ews)
    attempts = getattr(request, "param", None)
    if attempts is not None:
        text = re.sub(r"(?m)^max_attempts = \d+$", f"max_attempts = {attempts}", path.read_text())
        path.write_text(text)
    return path


def calsync(*args: str) -> subprocess.CompletedProcess[str]:
    """`calsync ARGS` as an administrator runs it beside the proxy, never through it."""
    return subprocess.run(
        [str(CALSYNC), *args],
        env=clean_env({password_env(u): PASSWORD for u in USERS}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sealed_and_failed(store: Path, item_id: str) -> bool:
    """Whether the worker prepared and sealed the item's event, then failed to write it."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE ews_item_id = ? AND payload IS NOT NULL"
            " AND attempts >= 1 AND state = 'pending'",
            [item_id],
        ).fetchone()
    finally:
        conn.close()
    return bool(row[0])


def summaries(google: GoogleCalendarServer) -> list[str]:
    return sorted(
        e.get("summary", "")
        for e in google_events(google.api_endpoint, ALICE)
        if e.get("status") != "cancelled"
    )


def test_a_delete_lost_in_a_kill_leaves_no_orphan_in_google(
    alice: Account,
    route: Route,
    proxy: Mitmdump,
    google: GoogleCalendarServer,
    config: Path,
) -> None:
    store = config.parent / "calsync.db"
    faults = google.url + "/_admin/faults"
    kept = create(alice, "Kept", at(9, 9), 30)
    converge(google.api_endpoint, ALICE, store, [kept])

    send_json(faults, "POST", {"kind": "outage"})
    try:
        doomed = create(alice, "Made in the outage, deleted in the kill", at(9, 11), 30)
        survivor = create(alice, "Made in the outage, kept", at(9, 13), 30)
        doomed_id = doomed.id
        sealed = wait_for(
            lambda: sealed_and_failed(store, doomed_id),
            bool,
            timeout=15,
            what="the worker to seal the event and fail to write it",
        )
        assert sealed
        # Alice deletes it; Exchange does, but the kill loses the DeleteItem before calsync
        # records it: here it goes straight to Exchange, and the proxy dies.
        route.proxy_url = None
        doomed.delete()
        proxy.kill()
        proxy.start()  # same config, same store; Google still down
        route.proxy_url = proxy.proxy_url
    finally:
        send_json(faults, "DELETE")

    outbox = wait_for(
        lambda: outbox_counts(store), lambda c: not c, timeout=20, what="the outbox to drain"
    )
    assert outbox == {}
    done = calsync("sync", "--once", "--config", str(config), "--user", ALICE)
    assert done.returncode == 0, done.stderr
    assert summaries(google) == sorted([kept.subject, survivor.subject])
    assert {c.send_updates for c in google.state.calls} == {"none"}


@pytest.mark.parametrize("config", [3], indirect=True, ids=["max_attempts=3"])
def test_quarantine_heals_once_the_job_carried_the_changes(
    alice: Account, google: GoogleCalendarServer, config: Path
) -> None:
    store = config.parent / "calsync.db"
    faults = google.url + "/_admin/faults"
    items = [create(alice, f"Before {n}", at(10, 9 + n), 30) for n in range(4)]
    renamed, deleted = items[0], items[1]
    converge(google.api_endpoint, ALICE, store, items)
    assert calsync("sync", "--once", "--config", str(config), "--user", ALICE).returncode == 0

    send_json(faults, "POST", {"kind": "outage"})
    try:
        made = create(alice, "Made in the outage", at(11, 9), 30)
        renamed.subject = "Renamed in the outage"
        renamed.save(update_fields=["subject"])
        deleted.delete()
        counts = wait_for(
            lambda: outbox_counts(store),
            lambda c: c == {"quarantined": 3},
            timeout=20,
            what="three entries quarantined",
        )
        assert counts == {"quarantined": 3}
        failed = calsync("sync", "--once", "--config", str(config), "--user", ALICE)
        assert failed.returncode == 1, failed.stderr
        during = status(config)
        assert during["last_error"] and len(during["quarantined"]) == 3
    finally:
        send_json(faults, "DELETE")

    done = calsync("sync", "--once", "--config", str(config), "--user", ALICE)
    assert done.returncode == 0, done.stderr
    after = status(config)
    assert after["quarantined"] == []
    assert after["last_error"] is None and after["last_error_at"] is None
    assert after["past_error"]["error"] == during["last_error"]
    assert after["past_error"]["resolved_at"] >= after["past_error"]["at"]
    table = calsync("status", "--config", str(config), "--user", ALICE).stdout.splitlines()
    assert table[1].split("\t")[3] == "0"
    assert table[1].split("\t")[-1].startswith("resolved: ")
    assert outbox_counts(store) == {}
    assert summaries(google) == sorted(
        [made.subject, "Renamed in the outage", items[2].subject, items[3].subject]
    )


def status(config: Path) -> dict[str, Any]:
    done = calsync("status", "--config", str(config), "--user", ALICE, "--json")
    assert done.returncode == 0, done.stderr
    (user,) = json.loads(done.stdout)["users"]
    return dict(user)
