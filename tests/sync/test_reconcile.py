"""One reconciler for every change (issue 11), through the public entry points: the addon's
worker (taddons, fed the flows a client's changes made) and the two-way job (`SyncJob`,
`calsync undo`), both stand-ins and the unmodified clients. Each sequence here failed when
the worker and the job wrote with rules of their own."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import EWSDateTime
from exchangelib.items import CalendarItem
from mitmproxy.test import taddons

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.cli import main
from sync.config import load_config
from sync.sources.job import SyncJob
from sync.store import Store
from tests.addon.conftest import create_request, response, update_request, write_config
from tests.addon.test_calsync import Harness
from tests.sync.conftest import ALICE, BERLIN, BOB, calendar_service, ews_account


class World:
    """Alice's mailbox and calendar, calsync's store, its job, and its addon (in taddons)
    sharing one config: what an administrator runs."""

    def __init__(
        self, tmp: Path, ews: EwsServer, google: GoogleCalendarServer, tctx: Any, extra: str = ""
    ) -> None:
        self.google = google
        self.config_path = write_config(tmp, google, ews_url=ews.url, extra=extra)
        self.config = load_config(self.config_path)
        self.store = Store(self.config.store_path)
        self.job = SyncJob(self.config, self.store)
        self.account = ews_account(ews.url)
        self.service = calendar_service(google.api_endpoint)
        self.proxy = Harness(tctx, self.config_path)

    def sync(self, user: str = ALICE) -> Any:
        (report,) = self.job.run([self.config.user_named(user)])  # type: ignore[list-item]
        assert not report.errors, report.errors
        return report

    def create_in_exchange(self, subject: str, **fields: Any) -> CalendarItem:
        item = CalendarItem(
            account=self.account,
            folder=self.account.calendar,
            subject=subject,
            start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
            end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
            **fields,
        )
        item.save()
        return item

    def edit_through_proxy(self, item: CalendarItem, subject: str) -> None:
        """The client renames the item through the proxy: Exchange applies it, the addon
        sees the request and the answer, its worker mirrors it."""
        item.subject = subject
        item.save(update_fields=["subject"])
        self.proxy.see(update_request(item.id, subject=subject), response("UpdateItem", item.id))
        self.proxy.drain()

    def event(self, item: CalendarItem) -> dict[str, Any]:
        mapped = self.store.mapped(ALICE, item.id)
        assert mapped is not None
        return dict(
            self.service.events()
            .get(calendarId="primary", eventId=mapped.google_event_id)
            .execute()
        )

    def patch_google(self, event_id: str, body: dict[str, Any]) -> None:
        self.service.events().patch(calendarId="primary", eventId=event_id, body=body).execute()

    def exchange_item(self, item_id: str) -> CalendarItem:
        (fresh,) = self.account.fetch(ids=[(item_id, None)])
        assert isinstance(fresh, CalendarItem)
        return fresh


@pytest.fixture
def world(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Iterator[World]:
    with taddons.context() as tctx:
        made = World(tmp_path, ews, google, tctx)
        yield made
        made.store.close()


def test_a_google_edit_survives_a_proxy_edit_of_another_field(world: World) -> None:
    """Lost update: the location is edited in Google, then the subject through the proxy.
    The worker's patch meets a newer Google version (412) and merges both sides; the next
    job run changes nothing back."""
    item = world.create_in_exchange("Standup", location="Room 1")
    world.sync()
    world.patch_google(world.event(item)["id"], {"location": "Room 9"})
    world.edit_through_proxy(item, "Daily standup")
    world.sync()
    world.sync()
    event = world.event(item)
    assert (event["summary"], event["location"]) == ("Daily standup", "Room 9")
    fresh = world.exchange_item(item.id)
    assert (fresh.subject, fresh.location) == ("Daily standup", "Room 9")
    assert world.store.conflicts(ALICE) == []


@pytest.fixture
def google_wins(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Iterator[World]:
    with taddons.context() as tctx:
        made = World(tmp_path, ews, google, tctx, extra='[sync]\npolicy = "google-wins"\n')
        yield made
        made.store.close()


def test_the_policy_rules_when_the_proxy_sees_the_change_first(google_wins: World) -> None:
    world = google_wins
    item = world.create_in_exchange("Standup")
    world.sync()
    world.patch_google(world.event(item)["id"], {"summary": "Google's title"})
    world.edit_through_proxy(item, "Exchange's title")
    assert world.event(item)["summary"] == "Google's title"
    assert world.exchange_item(item.id).subject == "Google's title"
    (conflict,) = world.store.conflicts(ALICE)
    assert (conflict["field"], conflict["winner"]) == ("summary", "google")
    world.sync()
    assert world.event(item)["summary"] == "Google's title"


def _squat(world: World, item: CalendarItem, tag: str | None, location: str) -> None:
    """An event already holding the item's deterministic id (a crashed earlier insert)."""
    body: dict[str, Any] = {
        "id": event_id_for(item.id),
        "summary": item.subject,
        "location": location,
        "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-03-02T10:00:00+01:00", "timeZone": "Europe/Berlin"},
    }
    if tag is not None:
        body["extendedProperties"] = {"private": {"calsync_ews_item_id": tag}}
    world.service.events().insert(calendarId="primary", body=body).execute()


@pytest.mark.parametrize("source", ["proxy", "job"])
def test_a_taken_event_id_follows_one_rule_from_every_source(world: World, source: str) -> None:
    """409: the event already there is this item's: it is mapped and merged, Exchange's
    fields reach it, no duplicate; the same outcome from the worker and from the job."""
    item = world.create_in_exchange("Standup", location="Room 4")
    _squat(world, item, item.id, location="Room 1")
    if source == "proxy":
        world.proxy.see(create_request("Standup"), response("CreateItem", item.id))
        world.proxy.drain()
    else:
        world.sync()
    events = world.service.events().list(calendarId="primary").execute()["items"]
    assert len(events) == 1
    assert events[0]["location"] == "Room 4"
    assert world.store.mapped(ALICE, item.id) is not None


@pytest.mark.parametrize("source", ["proxy", "job"])
def test_an_event_id_tagged_as_another_items_is_never_taken_over(world: World, source: str) -> None:
    item = world.create_in_exchange("Standup")
    _squat(world, item, "some-other-item", location="Room 1")
    if source == "proxy":
        world.proxy.see(create_request("Standup"), response("CreateItem", item.id))
        world.proxy.drain()
        (entry,) = world.store.quarantined(ALICE)
        assert "belongs to another item" in (entry.last_error or "")
    else:
        (report,) = world.job.run([world.config.user_named(ALICE)])  # type: ignore[list-item]
        assert any("belongs to another item" in e for e in report.errors)
    (event,) = world.service.events().list(calendarId="primary").execute()["items"]
    assert event["location"] == "Room 1"
    assert world.store.mapped(ALICE, item.id) is None


def test_a_proxy_write_can_be_undone(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    item = world.create_in_exchange("Standup")
    world.proxy.see(create_request("Standup"), response("CreateItem", item.id))
    world.proxy.drain()
    assert world.store.mapped(ALICE, item.id) is not None
    status = main(["undo", "--config", str(world.config_path), ALICE])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "deleted" in out
    events = world.service.events().list(calendarId="primary").execute()["items"]
    assert [e for e in events if e.get("status") != "cancelled"] == []


@pytest.mark.parametrize("modified_beats_delete", [False, True])
def test_modified_beats_delete_decides_an_edit_against_a_delete(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, modified_beats_delete: bool
) -> None:
    extra = f"[sync]\nmodified_beats_delete = {str(modified_beats_delete).lower()}\n"
    with taddons.context() as tctx:
        world = World(tmp_path, ews, google, tctx, extra=extra)
        item = world.create_in_exchange("Standup")
        world.sync()
        event_id = world.event(item)["id"]
        world.patch_google(event_id, {"summary": "Edited in Google"})
        item.delete()
        world.sync()
        world.sync()
        live = [
            e
            for e in world.service.events().list(calendarId="primary").execute()["items"]
            if e.get("status") != "cancelled"
        ]
        subjects = [i.subject for i in world.account.calendar.all()]
        if modified_beats_delete:
            # the edit survives, and Exchange gets it back as a new item
            assert [e["summary"] for e in live] == ["Edited in Google"]
            assert subjects == ["Edited in Google"]
        else:
            assert live == [] and subjects == []
        world.store.close()


def test_overlapping_runs_of_two_users_keep_their_own_undo_records(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    """Push and poll (or two users at once) run the job concurrently: each run's writes
    are recorded in its own run, never in the other's or nowhere."""
    config_path = write_config(tmp_path, google, ews_url=ews.url)
    config = load_config(config_path)
    store = Store(config.store_path)
    job = SyncJob(config, store)
    for user in (ALICE, BOB):
        account = ews_account(ews.url, user)
        CalendarItem(
            account=account,
            folder=account.calendar,
            subject=f"{user}'s",
            start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
            end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
        ).save()
    # alice's Google calls are slow, so bob's whole run happens inside hers
    fault = json.dumps({"kind": "latency", "user": ALICE, "latencyMs": 300}).encode()
    request = urllib.request.Request(
        google.url + "/_admin/faults",
        data=fault,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()
    reports: dict[str, Any] = {}

    def run(user: str) -> None:
        reports[user] = job.run_user(config.user_named(user))  # type: ignore[arg-type]

    slow = threading.Thread(target=run, args=(ALICE,))
    slow.start()
    time.sleep(0.2)
    run(BOB)
    slow.join(timeout=60)
    assert not reports[ALICE].errors and not reports[BOB].errors
    for user in (ALICE, BOB):
        last = store.last_run(user)
        assert last is not None, user
        writes = store.run_writes(last.id)
        assert [(w.side, w.op) for w in writes] == [("google", "create")], user
        mapped = store.mapped(user, writes[0].other_key or "")
        assert mapped is not None and mapped.google_event_id == writes[0].key
    store.close()


def _with_attendees(subject: str) -> bytes:
    people = "".join(
        f"<t:Attendee><t:Mailbox><t:EmailAddress>{a}</t:EmailAddress></t:Mailbox></t:Attendee>"
        for a in ("carol@example.com", "dave@example.com")
    )
    return create_request(subject).replace(
        b"<t:Location>Room 4</t:Location>",
        b"<t:Location>Room 4</t:Location><t:RequiredAttendees>"
        + people.encode()
        + b"</t:RequiredAttendees>",
    )


@pytest.mark.parametrize("source", ["proxy", "job"])
def test_attendees_reach_google_from_every_path_without_invitations(
    world: World, source: str
) -> None:
    """The real-time path writes the same fields as the job: the attendees too, with
    sendUpdates=none (issue 13)."""
    from exchangelib.properties import Attendee, Mailbox

    people = [
        Attendee(mailbox=Mailbox(email_address=a))
        for a in ("carol@example.com", "dave@example.com")
    ]
    item = world.create_in_exchange("Planning", location="Room 4", required_attendees=people)
    if source == "proxy":
        world.proxy.see(_with_attendees("Planning"), response("CreateItem", item.id))
        world.proxy.drain()
    else:
        world.sync()
    event = world.event(item)
    assert sorted(a["email"] for a in event["attendees"]) == [
        "carol@example.com",
        "dave@example.com",
    ]
    # the job carries the rest of the item, then nothing moves: the attendees compare
    # equal as Google spells them
    world.sync()
    settled = world.event(item)
    assert world.sync().applied == 0
    assert world.event(item)["etag"] == settled["etag"]
    with urllib.request.urlopen(world.google.url + "/_admin/calls") as reply:
        writes = [c for c in json.load(reply) if c["method"] in ("insert", "patch", "delete")]
    assert writes and all(c["sendUpdates"] == "none" for c in writes), writes
