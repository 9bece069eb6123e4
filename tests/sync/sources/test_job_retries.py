"""The two-way job across failed writes, through both stand-ins and the unmodified clients:
a write whose answer is lost, or whose follow-up fails, is never made a second time by the
next run (the stand-ins' fault switches make the failures)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import Account

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import Config, load_config
from sync.sources.job import Report, SyncJob
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, calendar_service, ews_account


class Calendars:
    """Alice's two calendars, her job, and the stand-ins' fault switches."""

    def __init__(
        self, tmp: Path, ews: EwsServer, google: GoogleCalendarServer, extra: str = ""
    ) -> None:
        self.ews = ews
        self.google = google
        path = write_config(tmp, google, ews_url=ews.url, users=(ALICE,), extra=extra)
        self.config: Config = load_config(path)
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
