"""The first sync of a big calendar goes to Google as batch requests (sync/backends/google.py's
`insert_many`), through the Google stand-in's batch endpoint and the unmodified
BatchHttpRequest: request counts, per-call errors, 409 adoption, and the journal and the
id map left exactly as one request per event leaves them."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import EWSDateTime
from exchangelib.items import CalendarItem

from emulators.ews import EwsServer
from emulators.google.api import Request
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.backends.google import BATCH_SIZE, GoogleCalendar, batch_uri_for
from tests.sync.conftest import ALICE, BERLIN
from tests.sync.sources.test_job import World

pytest_plugins = ["tests.sync.sources.test_job"]


class Requests:
    """What reached the Google stand-in's socket: (method, path) per HTTP request, batch
    envelopes as one (their parts are counted in `parts`)."""

    def __init__(self, server: GoogleCalendarServer) -> None:
        self.top: Counter[tuple[str, str]] = Counter()
        self.parts: Counter[str] = Counter()
        handle: Callable[..., Any] = server.api.handle

        def counting(request: Request, in_batch: bool = False) -> Any:
            if in_batch:
                self.parts[request.method] += 1
            elif not request.path.startswith("/_admin"):
                path = "batch" if request.path.startswith("/batch") else request.path
                self.top[(request.method, path)] += 1
            return handle(request, in_batch=in_batch)

        server.api.handle = counting  # type: ignore[method-assign]

    @property
    def batches(self) -> int:
        return self.top[("POST", "batch")]

    @property
    def inserts(self) -> int:
        return sum(n for (m, p), n in self.top.items() if m == "POST" and p.endswith("/events"))


@pytest.fixture
def requests(google: GoogleCalendarServer) -> Requests:
    return Requests(google)


@pytest.fixture
def world(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Iterator[World]:
    world = World(tmp_path, ews, google)
    google_client, _ = world.job.clients(world.config.user_named(ALICE))  # type: ignore[arg-type]
    google_client.backoff_s = 0.0  # the backoff schedule is not what these tests time
    yield world
    world.store.close()


def seed_exchange(world: World, count: int) -> list[CalendarItem]:
    """`count` items in Alice's calendar, made with one CreateItem."""
    items = [
        CalendarItem(
            account=world.account,
            folder=world.account.calendar,
            subject=f"Item {n:04d}",
            location=f"Room {n}",
            start=EWSDateTime(2026, 3, 2, 8, tzinfo=BERLIN) + dt.timedelta(minutes=30 * n),
            end=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN) + dt.timedelta(minutes=30 * n),
        )
        for n in range(count)
    ]
    created = world.account.bulk_create(folder=world.account.calendar, items=items)
    assert all(not isinstance(c, Exception) for c in created)
    return [i for i in world.account.calendar.all()]


def add_fault(world: World, **spec: Any) -> None:
    request = urllib.request.Request(
        world.google.url + "/_admin/faults",
        data=json.dumps(spec).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


def google_calls(world: World) -> list[dict[str, Any]]:
    with urllib.request.urlopen(world.google.url + "/_admin/calls") as reply:
        return list(json.load(reply))


def run(world: World) -> Any:
    (report,) = world.job.run([world.config.user_named(ALICE)])  # type: ignore[list-item]
    return report


def test_batch_uri_comes_from_the_api_endpoint_unless_configured(world: World) -> None:
    assert batch_uri_for(world.config) == world.google.batch_uri
    google_client, _ = world.job.clients(world.config.user_named(ALICE))  # type: ignore[arg-type]
    assert isinstance(google_client, GoogleCalendar)
    assert google_client.batch_uri == world.google.batch_uri


def test_a_first_sync_creates_events_in_batches_of_50(world: World, requests: Requests) -> None:
    count = 2 * BATCH_SIZE + 20
    seed_exchange(world, count)
    report = run(world)
    assert not report.errors
    assert report.applied == count
    # three envelopes carry the 120 inserts; no event went one request each
    assert requests.batches == 3
    assert requests.inserts == 0
    assert requests.parts["POST"] == count
    inserts = [c for c in google_calls(world) if c["method"] == "insert"]
    assert len(inserts) == count and {c["sendUpdates"] for c in inserts} == {"none"}
    # mapped and journaled as the single-request path does: the next run is all echoes
    events = world.google_events()
    assert len(events) == count
    for item in world.exchange_items().values():
        mapped = world.store.mapped(ALICE, item.id)
        assert mapped is not None and mapped.google_event_id == event_id_for(item.id)
        event = events[item.subject]
        assert mapped.google_etag == event["etag"]
        assert world.store.is_echo(ALICE, "google", event["id"], event["etag"])
        assert event["extendedProperties"]["private"]["calsync_ews_item_id"] == item.id
    again = run(world)
    assert again.applied == 0 and not again.errors


def test_rate_limited_calls_are_sent_again_and_only_they(world: World, requests: Requests) -> None:
    seed_exchange(world, 2 * BATCH_SIZE)
    # Google refuses five calls inside the first batch: 429 twice, 403 rateLimitExceeded
    add_fault(world, kind="429", count=3)
    add_fault(world, kind="403", count=2)
    report = run(world)
    assert not report.errors
    assert report.applied == 2 * BATCH_SIZE
    # two envelopes, then one more carrying the five refused calls
    assert requests.batches == 3
    assert requests.parts["POST"] == 2 * BATCH_SIZE + 5
    assert len(world.google_events()) == 2 * BATCH_SIZE


def test_a_call_that_keeps_failing_is_its_own_error_and_is_retried_next_run(
    world: World, requests: Requests
) -> None:
    seed_exchange(world, 60)
    google_client, _ = world.job.clients(world.config.user_named(ALICE))  # type: ignore[arg-type]
    google_client.retries = 0
    add_fault(world, kind="500", count=2)
    report = run(world)
    assert len(report.errors) == 2 and all("500" in e for e in report.errors)
    assert report.applied == 58
    assert len(world.google_events()) == 58
    # the Exchange feed was not moved on: the next run brings the two, and adopts nothing
    # twice (the 58 are already mapped)
    again = run(world)
    assert not again.errors
    assert len(world.google_events()) == 60
    assert run(world).applied == 0


def test_an_event_already_holding_the_id_is_adopted_not_duplicated(
    world: World, requests: Requests
) -> None:
    items = seed_exchange(world, 5)
    taken, deleted = items[0], items[1]
    # a run that crashed after Google took two inserts: one still there, one since deleted
    for item in (taken, deleted):
        world.service.events().insert(
            calendarId="primary",
            body={
                "id": event_id_for(item.id),
                "summary": item.subject,
                "start": {"dateTime": item.start.isoformat()},
                "end": {"dateTime": item.end.isoformat()},
            },
        ).execute()
    world.service.events().delete(calendarId="primary", eventId=event_id_for(deleted.id)).execute()
    report = run(world)
    assert not report.errors
    events = world.google_events()
    assert sorted(events) == sorted(i.subject for i in items if i is not deleted)
    assert world.store.mapped(ALICE, taken.id) is not None
    # deleted in Google: never brought back by itself, and not mapped
    assert world.store.mapped(ALICE, deleted.id) is None
    assert requests.batches == 2  # the inserts, then the read of the two that were taken
