"""A server's request to wait is scheduled per user by the job: Exchange's ErrorServerBusy
BackOffMilliseconds and Google's Retry-After (429, 503) stop that user's run at once, her
next run waits until then, and the other users go on; nothing sleeps inside a run. Through
both stand-ins (their fault switches, one user's requests only) and the unmodified clients."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import EWSDateTime
from exchangelib.items import CalendarItem

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import load_config
from sync.sources.job import Report, SyncJob
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, BOB, ews_account


class Clock:
    """The job's clock: now, and moved on by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Two:
    """Alice and Bob, one job, and the stand-ins' fault switches."""

    def __init__(self, tmp: Path, ews: EwsServer, google: GoogleCalendarServer) -> None:
        self.ews, self.google = ews, google
        config = load_config(write_config(tmp, google, ews_url=ews.url, users=(ALICE, BOB)))
        self.config = config
        self.store = Store(config.store_path)
        self.clock = Clock()
        self.job = SyncJob(config, self.store, clock=self.clock)
        self.accounts = {user: ews_account(ews.url, user) for user in (ALICE, BOB)}

    def run(self) -> dict[str, Report]:
        started = time.monotonic()
        reports = self.job.run(self.config.users)
        assert time.monotonic() - started < 10, "a run slept"
        return {report.mailbox: report for report in reports}

    def create(self, user: str, subject: str, hour: int = 9) -> None:
        account = self.accounts[user]
        CalendarItem(
            account=account,
            folder=account.calendar,
            subject=subject,
            start=EWSDateTime(2026, 5, 4, hour, tzinfo=BERLIN),
            end=EWSDateTime(2026, 5, 4, hour + 1, tzinfo=BERLIN),
        ).save()

    def mirrored(self, user: str) -> list[str]:
        return sorted(p.ews_item_id for p in self.store.mapped_items(user))

    def fault(self, side: str, spec: dict[str, Any]) -> None:
        _admin(self._faults(side), "POST", spec)

    def clear_faults(self) -> None:
        for side in ("google", "exchange"):
            _admin(self._faults(side), "DELETE")

    def _faults(self, side: str) -> str:
        base = self.google.url if side == "google" else self.ews.base_url
        return base + "/_admin/faults"


def _admin(url: str, method: str, body: Any = None) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    urllib.request.urlopen(request).close()


@pytest.fixture
def two(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Iterator[Two]:
    two = Two(tmp_path, ews, google)
    yield two
    two.store.close()


def _waits(two: Two, seconds: float, then: str) -> None:
    """Alice waits `seconds` (her next run does nothing until then), then `then` arrives."""
    waiting = two.run()
    assert waiting[ALICE].actions == [] and then not in _subjects(two, ALICE)
    assert waiting[ALICE].backing_off_until == pytest.approx(two.clock.now + seconds, abs=1)
    two.clock.now += seconds + 1
    after = two.run()
    assert after[ALICE].backing_off_until is None and not after[ALICE].errors
    assert then in _subjects(two, ALICE)


def _subjects(two: Two, user: str) -> set[str]:
    return {str((p.snapshot or {}).get("summary")) for p in two.store.mapped_items(user)}


def test_exchange_busy_back_off_waits_for_that_user_only(two: Two) -> None:
    two.create(ALICE, "Alice's")
    two.create(BOB, "Bob's")
    two.fault(
        "exchange",
        {"kind": "ErrorServerBusy", "user": ALICE, "count": 1, "backOffMilliseconds": 30_000},
    )
    first = two.run()
    two.clear_faults()
    assert any("ErrorServerBusy" in e for e in first[ALICE].errors)
    assert not first[BOB].errors
    assert _subjects(two, BOB) == {"Bob's"} and two.mirrored(ALICE) == []
    assert first[ALICE].backing_off_until == pytest.approx(two.clock.now + 30, abs=1)
    assert first[BOB].backing_off_until is None
    two.clock.now += 10
    two.create(ALICE, "Alice's later", 11)
    _waits(two, 20, then="Alice's later")
    assert _subjects(two, ALICE) == {"Alice's", "Alice's later"}


@pytest.mark.parametrize(("kind", "items"), [("429", 2), ("503", 1)])
def test_google_retry_after_waits_for_that_user_only(two: Two, kind: str, items: int) -> None:
    """Two new items go to Google as a batch (whose calls would otherwise be sent again
    after sleeping Retry-After), one as a single insert."""
    for n in range(items):
        two.create(ALICE, f"Alice's {n}", 9 + n)
    two.create(BOB, "Bob's")
    two.fault("google", {"kind": kind, "user": ALICE, "retryAfter": 120})
    first = two.run()
    two.clear_faults()
    assert first[ALICE].backing_off_until == pytest.approx(two.clock.now + 120, abs=1)
    assert first[BOB].backing_off_until is None and not first[BOB].errors
    assert _subjects(two, BOB) == {"Bob's"} and two.mirrored(ALICE) == []
    two.clock.now += 60
    two.create(ALICE, "Alice's later", 12)
    _waits(two, 60, then="Alice's later")
    assert _subjects(two, ALICE) == {f"Alice's {n}" for n in range(items)} | {"Alice's later"}


def test_a_busy_exchange_without_a_back_off_is_retried_next_run(two: Two) -> None:
    """ErrorServerBusy that asks for no wait (BackOffMilliseconds 0): nothing scheduled,
    the change comes again with the next run."""
    two.create(ALICE, "Alice's")
    two.fault(
        "exchange", {"kind": "ErrorServerBusy", "user": ALICE, "count": 1, "backOffMilliseconds": 0}
    )
    first = two.run()
    two.clear_faults()
    assert first[ALICE].errors and first[ALICE].backing_off_until is None
    again = two.run()
    assert not again[ALICE].errors and _subjects(two, ALICE) == {"Alice's"}
