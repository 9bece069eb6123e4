"""One change that cannot be applied never holds back the others: it is quarantined with
its reason (`calsync status`, `calsync explain`), the feed's cursor moves on, and it is tried
again when it changes again. The Google side through both stand-ins and the unmodified
clients; the Exchange side on the honest in-memory backends (no stand-in makes Google refuse
an event Exchange holds: `fail_next` makes it answer 400)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchangelib import EWSDateTime, EWSTimeZone

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.backends.base import GoogleError
from sync.backends.clients import Clients
from sync.backends.memory import MemoryExchange, MemoryGoogle
from sync.cli.explain import facts
from sync.cli.status import user_status
from sync.config import load_config
from sync.sources.job import SyncJob
from sync.store import Store
from tests.sync.conftest import ALICE
from tests.sync.sources.test_job_retries import Calendars

UTC = EWSTimeZone("UTC")
EVERY_OTHER_YEAR = "RRULE:FREQ=YEARLY;INTERVAL=2"  # no EWS pattern: a yearly one has no interval


def _times(hour: int) -> dict[str, Any]:
    return {
        "start": {"dateTime": f"2026-04-01T{hour:02d}:00:00+02:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": f"2026-04-01T{hour + 1:02d}:00:00+02:00", "timeZone": "Europe/Berlin"},
    }


def test_a_google_event_exchange_cannot_hold_is_quarantined_and_holds_nothing_back(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    calendars = Calendars(tmp_path, ews, google)
    events = calendars.service.events()
    odd = events.insert(
        calendarId="primary",
        body={"summary": "Every other year", "recurrence": [EVERY_OTHER_YEAR], **_times(9)},
    ).execute()
    calendars.google_event("Plain")
    first = calendars.run()
    assert calendars.exchange_subjects() == ["Plain"]
    # the sync token is stored: the next run lists only what changed since
    assert calendars.store.sync_state(ALICE)["google_sync_token"]
    assert first.quarantined == [f"create-exchange {odd['id']}"], first.errors
    (entry,) = user_status(calendars.store, ALICE)["quarantined"]
    assert entry["ews_item_id"] == odd["id"] and entry["op"] == "google-change"
    assert "RRULE" in entry["last_error"]
    (known,) = facts(calendars.store, [ALICE], odd["id"])
    assert known["mapping"] is None and known["outbox"][0]["state"] == "quarantined"
    quiet = calendars.run()
    assert (quiet.actions, quiet.errors) == ([], [])
    later_id = calendars.google_event("Later")["id"]
    later = calendars.run()
    assert [a.google_event_id for a in later.actions] == [later_id] and not later.errors
    # changed into what Exchange holds: tried again, created, and out of the quarantine
    events.patch(
        calendarId="primary", eventId=odd["id"], body={"recurrence": ["RRULE:FREQ=YEARLY"]}
    ).execute()
    fixed = calendars.run()
    assert not fixed.errors, fixed.errors
    assert calendars.exchange_subjects() == ["Every other year", "Later", "Plain"]
    assert user_status(calendars.store, ALICE)["quarantined"] == []
    calendars.store.close()


def test_an_exchange_item_google_refuses_is_quarantined_until_it_changes(
    tmp_path: Path,
) -> None:
    (tmp_path / "calsync.toml").write_text(
        f'[store]\npath = "{tmp_path / "calsync.db"}"\n[[users]]\nmailbox = "{ALICE}"\n'
    )
    config = load_config(tmp_path / "calsync.toml")
    google, exchange = MemoryGoogle(ALICE), MemoryExchange(ALICE)
    store = Store(config.store_path)
    job = SyncJob(config, store, clients=Clients(config, lambda *_: google, lambda *_: exchange))
    refused, _ = exchange.create(
        {
            "subject": "Refused",
            "start": EWSDateTime(2026, 3, 2, 8, tzinfo=UTC),
            "end": EWSDateTime(2026, 3, 2, 9, tzinfo=UTC),
        }
    )
    exchange.create(
        {
            "subject": "Fine",
            "start": EWSDateTime(2026, 3, 2, 10, tzinfo=UTC),
            "end": EWSDateTime(2026, 3, 2, 11, tzinfo=UTC),
        }
    )
    google.fail_next(GoogleError(400, "invalid", "Invalid value"))  # the first insert
    (first,) = job.run()
    assert not store.is_mapped(ALICE, refused)
    (entry,) = user_status(store, ALICE)["quarantined"]
    assert (entry["ews_item_id"], entry["op"]) == (refused, "exchange-change")
    assert len(first.quarantined) == 1
    assert "Google 400 invalid" in entry["last_error"]
    assert facts(store, [ALICE], refused)[0]["outbox"][0]["state"] == "quarantined"
    (quiet,) = job.run()
    assert (quiet.actions, quiet.errors) == ([], [])
    item = exchange.calendar_item(refused)
    assert item is not None
    exchange.update(item, {"location": "Room 4"})
    (again,) = job.run()
    assert not again.errors and store.is_mapped(ALICE, refused)
    assert user_status(store, ALICE)["quarantined"] == []
    store.close()
