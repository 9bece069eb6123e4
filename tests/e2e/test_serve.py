"""`calsync serve` as an administrator runs it, without mitmdump: its own process, two
users, the EWS stand-in over HTTPS and the Google stand-in, which really POSTs its push
notifications to serve's webhook. Changes are made as the users' other clients make
them: directly in Exchange through the unmodified exchangelib (never through a proxy) and
in Google through google-api-python-client. No poll ([sync] interval_s = 0): what reaches
the other side came by EWS streaming notifications or Google push."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from exchangelib import Account, EWSDateTime
from exchangelib.items import CalendarItem
from exchangelib.protocol import BaseProtocol

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from tests.e2e.clients import ZONE, Route, account, calendar_service, google_events
from tests.e2e.conftest import PASSWORD, USERS, password_env
from tests.e2e.conftest import write_config as e2e_config
from tests.e2e.processes import ROOT, clean_env

ALICE, BOB = USERS
#: a change on one side is on the other within this (streaming and push take well under 1 s)
SECONDS = 5.0
T = TypeVar("T")
#: found beside the interpreter running the tests, as an administrator's service runs it
SERVE = (sys.executable, "-m", "sync.cli", "serve")


def wait_until(read: Callable[[], T | None], what: str, timeout: float = SECONDS) -> T:
    """The first truthy value `read` gives, or a failure naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


class Serve:
    """`calsync serve` in its own process; its output goes to `log` (read on failure)."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"serve-{self.runs}.log"

    def start(self) -> Serve:
        self.runs += 1
        with self.log.open("wb") as out:
            process = subprocess.Popen(
                [*SERVE, "--config", str(self.config), "--port", "0"],
                cwd=ROOT,
                env=clean_env({password_env(u): PASSWORD for u in USERS}),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.process = process
        wait_until(
            lambda: "calsync serve: listening on" in self.log.read_text() or process.poll(),
            "calsync serve listening",
            timeout=30,
        )
        assert process.poll() is None, self.log.read_text()
        return self

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; its exit status and how long it took to exit (30 s at most)."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=30)
        self.process = None
        return status, time.monotonic() - began

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


class Users:
    """Each user's clients: exchangelib straight to Exchange (trusting the stand-in's
    CA, no proxy) and google-api-python-client."""

    def __init__(self, ews: EwsServer, google: GoogleCalendarServer) -> None:
        self.ews = ews
        self.google = google
        self.exchange: dict[str, Account] = {u: account(ews.url, u, PASSWORD) for u in USERS}
        self.calendar = {u: calendar_service(google.api_endpoint, u) for u in USERS}
        #: the Google writes this test made itself, as the stand-in records them
        self.own_google_writes: list[tuple[str, str]] = []

    def create_in_exchange(self, user: str, subject: str, day: int = 2) -> CalendarItem:
        mailbox = self.exchange[user]
        item = CalendarItem(
            account=mailbox,
            folder=mailbox.calendar,
            subject=subject,
            start=EWSDateTime(2026, 3, day, 9, tzinfo=ZONE),
            end=EWSDateTime(2026, 3, day, 10, tzinfo=ZONE),
        )
        item.save(send_meeting_invitations="SendToNone")
        return item

    def exchange_items(self, user: str) -> dict[str, CalendarItem]:
        return {i.subject: i for i in self.exchange[user].calendar.all()}

    def google_events(self, user: str) -> dict[str, dict[str, Any]]:
        return {e["summary"]: e for e in google_events(self.google.api_endpoint, user)}

    def in_google(self, user: str, summary: str) -> dict[str, Any] | None:
        return self.google_events(user).get(summary)

    def in_exchange(self, user: str, subject: str) -> CalendarItem | None:
        return self.exchange_items(user).get(subject)

    def patch_google(self, user: str, event_id: str, body: dict[str, Any]) -> None:
        self.calendar[user].events().patch(
            calendarId="primary", eventId=event_id, body=body
        ).execute()
        self.own_google_writes.append(("patch", event_id))

    def insert_google(self, user: str, summary: str) -> dict[str, Any]:
        body = {
            "summary": summary,
            "start": {"dateTime": "2026-03-05T15:00:00+01:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-03-05T16:00:00+01:00", "timeZone": "Europe/Berlin"},
        }
        created: dict[str, Any] = (
            self.calendar[user].events().insert(calendarId="primary", body=body).execute()
        )
        self.own_google_writes.append(("insert", created["id"]))
        return created


def write_config(directory: Path, google: GoogleCalendarServer, ews: EwsServer) -> Path:
    """Both users both ways, EWS streaming on, no poll."""
    path = e2e_config(directory, google, ews, streaming=True)
    path.write_text(path.read_text() + "[sync]\ninterval_s = 0\n")
    return path


@pytest.fixture
def users(ews: EwsServer, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch) -> Users:
    assert ews.ca_path is not None
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", Route(direct_ca=ews.ca_path).adapter())
    return Users(ews, google)


@pytest.fixture
def serve(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, request: pytest.FixtureRequest
) -> Iterator[Serve]:
    process = Serve(write_config(tmp_path, google, ews), tmp_path)
    try:
        yield process
    finally:
        process.kill()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for run in range(1, process.runs + 1):
                print(f"--- serve-{run}.log ---")
                print((tmp_path / f"serve-{run}.log").read_text(errors="replace")[-6000:])


def caught_up(serve: Serve, ews: EwsServer, google: GoogleCalendarServer) -> None:
    """Serve is listening to both sides for both users: a streaming connection each open
    at Exchange, a push channel each at Google, and the catch-up run the start makes of
    each user past her Exchange feed (so what comes next can only come by a notification)."""
    wait_until(lambda: ews.hub.status()["connections"] == len(USERS), "streams open", 15)
    wait_until(lambda: len(google.notifier.channels) == len(USERS), "push channels open", 15)

    def synced() -> bool:
        with sqlite3.connect(f"file:{serve.workdir / 'calsync.db'}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT COUNT(*) FROM sync_state WHERE last_exchange_sync IS NOT NULL"
            ).fetchone()
        return bool(rows[0] == len(USERS))

    wait_until(synced, "the start's catch-up runs", 15)


def no_invitations(users: Users) -> None:
    """calsync made Google and Exchange write without telling anyone: every Google write
    of calsync's carried sendUpdates=none, every EWS write SendToNone (the stand-ins
    record both; the test's own EWS writes ask for SendToNone too)."""
    calsyncs = list(users.google.state.calls)
    for own in users.own_google_writes:  # one record each, whatever calsync wrote besides
        calsyncs.remove(next(c for c in calsyncs if (c.method, c.event_id) == own))
    assert calsyncs and {c.send_updates for c in calsyncs} == {"none"}, calsyncs
    sent = users.ews.service.records()
    assert {r["value"] for r in sent} == {"SendToNone"}, sent


def test_serve_keeps_two_users_in_step_both_ways_and_apart(
    serve: Serve, users: Users, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    serve.start()
    caught_up(serve, ews, google)

    # made directly in Exchange (OWA, a phone, Windows Outlook): in Google within seconds
    made = time.monotonic()
    users.create_in_exchange(ALICE, "Dentist")
    dentist = wait_until(lambda: users.in_google(ALICE, "Dentist"), "Alice's Exchange create")
    streamed = time.monotonic() - made
    users.create_in_exchange(BOB, "Bob's lunch", day=3)
    wait_until(lambda: users.in_google(BOB, "Bob's lunch"), "Bob's Exchange create")

    # made in Google: in Exchange by push (the channel) and the stored sync token
    users.patch_google(ALICE, dentist["id"], {"summary": "Dentist (moved)", "location": "Main St"})
    moved = wait_until(lambda: users.in_exchange(ALICE, "Dentist (moved)"), "Alice's Google edit")
    assert moved.location == "Main St"
    users.insert_google(BOB, "Planning")
    wait_until(lambda: users.in_exchange(BOB, "Planning"), "Bob's Google create")

    # nothing crossed between the two users, and every pair is there once
    assert set(users.google_events(ALICE)) == {"Dentist (moved)"}
    assert set(users.exchange_items(ALICE)) == {"Dentist (moved)"}
    assert set(users.google_events(BOB)) == {"Bob's lunch", "Planning"}
    assert set(users.exchange_items(BOB)) == {"Bob's lunch", "Planning"}
    no_invitations(users)
    assert any(r["operation"] == "UpdateItem" for r in ews.service.records())  # calsync's
    assert streamed < SECONDS

    status, took = serve.terminate()
    assert status == 0
    assert took < 5.0
    # its streams and channels are closed, not left to time out
    wait_until(lambda: ews.hub.status()["connections"] == 0, "streams closed", 2)
    assert google.notifier.channels == {}


def test_serve_stops_on_sigterm_and_a_restart_resumes_where_it_stopped(
    serve: Serve, users: Users, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    serve.start()
    caught_up(serve, ews, google)
    users.create_in_exchange(ALICE, "Kept", day=2)
    users.create_in_exchange(ALICE, "Edited in Google", day=3)
    wait_until(
        lambda: {"Kept", "Edited in Google"} <= set(users.google_events(ALICE)), "both mirrored"
    )
    before = users.google_events(ALICE)
    kept_item = users.in_exchange(ALICE, "Kept")
    assert kept_item is not None

    status, took = serve.terminate()
    assert status == 0 and took < 5.0

    # while it is down: one change on each side
    users.create_in_exchange(ALICE, "While down", day=4)
    users.patch_google(ALICE, before["Edited in Google"]["id"], {"summary": "Edited while down"})

    serve.start()
    wait_until(lambda: users.in_google(ALICE, "While down"), "the Exchange change made while down")
    wait_until(
        lambda: users.in_exchange(ALICE, "Edited while down"), "the Google edit made while down"
    )
    caught_up(serve, ews, google)

    # resumed from the stored SyncState and sync token: the pair nobody touched was not
    # written again on either side, and nothing is there twice
    after = users.google_events(ALICE)
    assert set(after) == {"Kept", "Edited while down", "While down"}
    assert after["Kept"]["etag"] == before["Kept"]["etag"]
    assert users.in_exchange(ALICE, "Kept").changekey == kept_item.changekey  # type: ignore[union-attr]
    assert len(google_events(google.api_endpoint, ALICE)) == 3
    assert users.google_events(BOB) == {} and users.exchange_items(BOB) == {}
    no_invitations(users)
    status, took = serve.terminate()
    assert status == 0 and took < 5.0
