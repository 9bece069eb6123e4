"""The two-way job across failed writes, through both stand-ins and the unmodified clients:
a write whose answer is lost, or whose follow-up fails, is never made a second time by the
next run (the stand-ins' fault switches make the failures)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import Account, EWSDateTime
from exchangelib.items import CalendarItem

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.backends.base import GoogleError
from sync.backends.clients import Clients
from sync.backends.memory import BATCH_RETRIES, MemoryExchange, MemoryGoogle
from sync.config import Config, load_config
from sync.sources.job import Report, SyncJob
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account


class Calendars:
    """Alice's two calendars, her job, and the stand-ins' fault switches."""

    def __init__(
        self, tmp: Path, ews: EwsServer, google: GoogleCalendarServer, extra: str = ""
    ) -> None:
        self.ews = ews
        self.google = google
        self.config_path = write_config(tmp, google, ews_url=ews.url, users=(ALICE,), extra=extra)
        self.config: Config = load_config(self.config_path)
        self.store = Store(self.config.store_path)
        self.job = SyncJob(self.config, self.store)
        self.account: Account = ews_account(ews.url)
        self.service = calendar_service(google.api_endpoint)

    def run(self) -> Report:
        (report,) = self.job.run(self.config.users)
        return report

    def google_event(self, summary: str = "From Google") -> dict[str, Any]:
        body = {
            "summary": summary,
            "start": {"dateTime": "2026-04-01T15:00:00+02:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-04-01T16:00:00+02:00", "timeZone": "Europe/Berlin"},
        }
        event: dict[str, Any] = (
            self.service.events().insert(calendarId="primary", body=body).execute()
        )
        return event

    def read_event(self, event_id: str) -> dict[str, Any]:
        event: dict[str, Any] = (
            self.service.events().get(calendarId="primary", eventId=event_id).execute()
        )
        return event

    def exchange_subjects(self) -> list[str]:
        return sorted(str(i.subject) for i in self.account.calendar.all())

    def google_summaries(self) -> list[str]:
        page = self.service.events().list(calendarId="primary").execute()
        return sorted(e.get("summary", "") for e in page.get("items", []))

    def fault(self, side: str, **spec: Any) -> None:
        _admin(self._faults(side), "POST", spec)

    def hits(self, side: str) -> int:
        return sum(f["hits"] for f in _admin(self._faults(side), "GET"))

    def sync_killed_while_google_holds_a_write(self) -> None:
        """`calsync sync` (beside this interpreter) SIGKILLed while Google holds the
        answer of its first write (heldAnswer: carried out, answered once cleared)."""
        self.fault("google", kind="heldAnswer")
        calsync = Path(sys.executable).with_name("calsync")
        process = subprocess.Popen(
            [str(calsync), "sync", "--config", str(self.config_path), "--force-deletes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while self.hits("google") == 0:
                assert process.poll() is None, "calsync sync ended before its first write"
                assert time.monotonic() < deadline, "no write reached Google"
                time.sleep(0.05)
        finally:
            process.kill()
            process.wait()
            self.clear_faults()

    def clear_faults(self) -> None:
        _admin(self._faults("google"), "DELETE")
        _admin(self._faults("exchange"), "DELETE")

    def _faults(self, side: str) -> str:
        base = self.google.url if side == "google" else self.ews.base_url
        return base + "/_admin/faults"


def _admin(url: str, method: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request) as reply:
        text = reply.read()
    return json.loads(text) if text else None


@pytest.fixture
def calendars(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Iterator[Calendars]:
    calendars = Calendars(tmp_path, ews, google)
    yield calendars
    calendars.store.close()


@pytest.mark.parametrize("kind", ["429", "500", "503"])
def test_a_failed_tag_patch_after_an_exchange_create_makes_no_second_item(
    calendars: Calendars, kind: str
) -> None:
    """The Google event is listed, its Exchange item created, then the patch that tags the
    event as that item's fails: the next run settles the pair, it creates nothing."""
    event = calendars.google_event()
    # seed 0 draws 0.84 (the list passes), then 0.76: the tag patch fails
    calendars.fault("google", kind=kind, rate=0.8, seed=0)
    failed = calendars.run()
    assert failed.errors and calendars.hits("google") == 1
    calendars.clear_faults()
    assert calendars.exchange_subjects() == ["From Google"]
    assert "extendedProperties" not in calendars.read_event(event["id"])
    again = calendars.run()
    assert not again.errors, again.errors
    assert calendars.exchange_subjects() == ["From Google"]
    (item,) = calendars.account.calendar.all()
    tag = calendars.read_event(event["id"])["extendedProperties"]["private"]
    assert tag["calsync_ews_item_id"] == item.id
    assert calendars.run().applied == 0


@pytest.mark.parametrize("direction", ["both", "google-to-exchange"])
def test_a_create_whose_answer_was_lost_is_found_not_made_again(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, direction: str
) -> None:
    """Exchange carried the CreateItem out and the answer was lost (lostAnswer: the
    connection closed after the write, as a crash between a write and its record leaves
    it). The next run finds the item by the Google event id it carries: through the
    Exchange feed (both directions), or the Google feed's lookup before it creates."""
    calendars = Calendars(tmp_path, ews, google, extra=f'direction = "{direction}"\n')
    event = calendars.google_event()
    calendars.fault("exchange", kind="lostAnswer", count=1)
    failed = calendars.run()
    assert any("ErrorTimeoutExpired" in error for error in failed.errors), failed.errors
    calendars.clear_faults()
    assert calendars.exchange_subjects() == ["From Google"]
    again = calendars.run()
    assert not again.errors, again.errors
    assert calendars.exchange_subjects() == ["From Google"]
    assert calendars.google_summaries() == ["From Google"]
    (item,) = calendars.account.calendar.all()
    tag = calendars.read_event(event["id"])["extendedProperties"]["private"]
    assert tag["calsync_ews_item_id"] == item.id
    assert calendars.store.mapped(ALICE, item.id) is not None
    assert calendars.run().applied == 0
    calendars.store.close()


class ShiftedClock:
    """The Google stand-in's clock, moved on by hand (a user's edit comes later than the
    insert before it, as it does outside a test)."""

    def __init__(self) -> None:
        self.shift = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.shift


@pytest.mark.parametrize("then", ["delete_in_exchange", "edit_in_google"])
def test_an_event_whose_insert_answer_was_lost(tmp_path: Path, ews: EwsServer, then: str) -> None:
    """`calsync sync` killed once Google carried the insert of a new item's event out,
    before it heard so (let alone recorded it). Then the user deletes the item (the event
    goes too), or edits the event in Google (the edit wins: it is not taken for the
    version calsync wrote)."""
    clock = ShiftedClock()
    with GoogleCalendarServer(port=0, users=(ALICE,), clock=clock) as google:
        calendars = Calendars(tmp_path, ews, google)
        item = CalendarItem(
            account=calendars.account,
            folder=calendars.account.calendar,
            subject="From Exchange",
            location="Room 1",
            start=EWSDateTime(2026, 4, 1, 9, tzinfo=BERLIN),
            end=EWSDateTime(2026, 4, 1, 10, tzinfo=BERLIN),
        )
        item.save()
        calendars.sync_killed_while_google_holds_a_write()
        (event,) = calendars.service.events().list(calendarId="primary").execute()["items"]
        clock.shift += dt.timedelta(seconds=5)
        if then == "delete_in_exchange":
            item.delete()
        else:
            calendars.service.events().patch(
                calendarId="primary", eventId=event["id"], body={"location": "Room 2"}
            ).execute()
        again = calendars.run()
        assert not again.errors, again.errors
        if then == "delete_in_exchange":
            assert calendars.google_summaries() == []
        else:
            (kept,) = calendars.account.calendar.all()
            assert kept.location == "Room 2"
            assert calendars.read_event(event["id"])["location"] == "Room 2"
        assert calendars.run().applied == 0
        calendars.store.close()


def test_an_item_deleted_while_the_first_read_was_held_back_takes_its_event(
    tmp_path: Path,
) -> None:
    """The first run maps one item and fails another for a while (Google 503 on every
    try): the Exchange feed keeps no state. The mapped item is deleted; the next run reads
    the feed in full again, which lists every item: the one it no longer lists is gone,
    and its event goes too. (On the honest in-memory backends: `fail_next` fails exactly
    the first item's inserts.)"""
    (tmp_path / "calsync.toml").write_text(
        f'[store]\npath = "{tmp_path / "calsync.db"}"\n[[users]]\nmailbox = "{ALICE}"\n'
    )
    config = load_config(tmp_path / "calsync.toml")
    google, exchange = MemoryGoogle(ALICE), MemoryExchange(ALICE)
    store = Store(config.store_path)
    job = SyncJob(config, store, clients=Clients(config, lambda *_: google, lambda *_: exchange))
    hours = {"Failing": 8, "Mapped": 10}
    made = {
        subject: exchange.create(
            {
                "subject": subject,
                "start": EWSDateTime(2026, 3, 2, hour, tzinfo=BERLIN),
                "end": EWSDateTime(2026, 3, 2, hour + 1, tzinfo=BERLIN),
            }
        )[0]
        for subject, hour in hours.items()
    }
    unavailable = GoogleError(503, "backendError", "The service is currently unavailable.")
    google.fail_next(*[unavailable] * (BATCH_RETRIES + 1))  # every try of the first insert
    (first,) = job.run()
    assert first.retry_exchange_feed and store.is_mapped(ALICE, made["Mapped"])
    assert not store.is_mapped(ALICE, made["Failing"])
    exchange.delete(made["Mapped"])
    (second,) = job.run()
    assert not second.errors, second.errors
    live = [e for e in google.list_pages(sync_token=None) for e in e.get("items", [])]
    assert sorted(e["summary"] for e in live) == ["Failing"]
    store.close()
