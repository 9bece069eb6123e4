"""The two-way job through both stand-ins and the unmodified clients: edits made directly
in Exchange (never through the proxy) reach Google, edits in Google reach Exchange, and
nothing echoes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from exchangelib import (
    EWSDateTime,
    EWSTimeZone,
)
from exchangelib.items import CalendarItem

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import load_config
from sync.sources.job import SyncJob
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account


class World:
    def __init__(
        self, tmp: Path, ews: EwsServer, google: GoogleCalendarServer, extra: str = ""
    ) -> None:
        self.tmp = tmp
        self.ews = ews
        self.google = google
        self.config_path = write_config(tmp, google, ews_url=ews.url, extra=extra)
        self.config = load_config(self.config_path)
        self.store = Store(self.config.store_path)
        self.job = SyncJob(self.config, self.store)
        self.account = ews_account(ews.url)
        self.service = calendar_service(google.api_endpoint)

    def run(self, **kwargs: Any) -> Any:
        (report,) = self.job.run([self.config.user_named(ALICE)], **kwargs)  # type: ignore[list-item]
        assert not report.errors, report.errors
        return report

    def create_in_exchange(self, subject: str, hour: int = 9, **fields: Any) -> CalendarItem:
        item = CalendarItem(
            account=self.account,
            folder=self.account.calendar,
            subject=subject,
            start=EWSDateTime(2026, 3, 2, hour, tzinfo=BERLIN),
            end=EWSDateTime(2026, 3, 2, hour + 1, tzinfo=BERLIN),
            **fields,
        )
        item.save()
        return item

    def exchange_items(self) -> dict[str, CalendarItem]:
        return {i.subject: i for i in self.account.calendar.all()}

    def google_events(self) -> dict[str, dict[str, Any]]:
        items = self.service.events().list(calendarId="primary").execute().get("items", [])
        return {e["summary"]: e for e in items}

    def patch_google(self, event_id: str, body: dict[str, Any]) -> None:
        self.service.events().patch(calendarId="primary", eventId=event_id, body=body).execute()


@pytest.fixture
def world(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> World:
    return World(tmp_path, ews, google)


def test_exchange_only_edits_reach_google_and_nothing_echoes(world: World) -> None:
    world.create_in_exchange("Dentist", location="Main St 4")
    report = world.run()
    assert [a.kind for a in report.actions] == ["create-google"]
    dentist = world.google_events()["Dentist"]
    assert dentist["location"] == "Main St 4"
    assert dentist["start"]["dateTime"].startswith("2026-03-02T09:00:00")
    # the next run finds our own writes and nothing else
    again = world.run()
    assert again.applied == 0 and again.conflicts == 0
    assert world.google_events()["Dentist"]["etag"] == dentist["etag"]


def test_google_edits_reach_exchange(world: World) -> None:
    world.create_in_exchange("Standup")
    world.run()
    event = world.google_events()["Standup"]
    world.patch_google(event["id"], {"summary": "Daily standup", "location": "Room 9"})
    report = world.run()
    assert report.conflicts == 0
    item = world.exchange_items()["Daily standup"]
    assert item.location == "Room 9"
    assert world.run().applied == 0  # our Exchange write is not read back as a change


def test_new_google_events_are_created_in_exchange_without_invitations(world: World) -> None:
    created = (
        world.service.events()
        .insert(
            calendarId="primary",
            body={
                "summary": "From Google",
                "start": {"dateTime": "2026-04-01T15:00:00+02:00", "timeZone": "Europe/Berlin"},
                "end": {"dateTime": "2026-04-01T16:00:00+02:00", "timeZone": "Europe/Berlin"},
            },
        )
        .execute()
    )
    world.run()
    item = world.exchange_items()["From Google"]
    assert item.start == EWSDateTime(2026, 4, 1, 13, tzinfo=EWSTimeZone("UTC"))
    tagged = world.service.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert tagged["extendedProperties"]["private"]["calsync_ews_item_id"] == item.id
    with urllib.request.urlopen(world.ews.base_url + "/_admin/send-options") as reply:
        records = json.load(reply)
    # the EWS stand-in records every meeting-message option it is sent: calsync's create
    creates = [r for r in records if r["operation"] == "CreateItem"]
    assert [(r["attribute"], r["value"]) for r in creates] == [
        ("SendMeetingInvitations", "SendToNone")
    ]
    assert world.run().applied == 0


def test_different_fields_changed_on_both_sides_merge(world: World) -> None:
    world.create_in_exchange("Review", location="Room 1")
    world.run()
    event = world.google_events()["Review"]
    world.patch_google(event["id"], {"location": "Room 2"})
    item = world.exchange_items()["Review"]
    item.subject = "Quarterly review"
    item.save(update_fields=["subject"])
    report = world.run()
    assert report.conflicts == 0
    assert world.google_events()["Quarterly review"]["location"] == "Room 2"
    assert world.exchange_items()["Quarterly review"].location == "Room 2"


@pytest.mark.parametrize(("policy", "winner"), [("exchange-wins", "E"), ("google-wins", "G")])
def test_same_field_conflict_follows_the_policy_and_is_recorded(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, policy: str, winner: str
) -> None:
    world = World(tmp_path, ews, google, extra=f'[sync]\npolicy = "{policy}"\n')
    world.create_in_exchange("Plan")
    world.run()
    event = world.google_events()["Plan"]
    world.patch_google(event["id"], {"location": "G"})
    item = world.exchange_items()["Plan"]
    item.location = "E"
    item.save(update_fields=["location"])
    report = world.run()
    assert report.conflicts == 1
    assert world.google_events()["Plan"]["location"] == winner
    assert world.exchange_items()["Plan"].location == winner
    (conflict,) = world.store.conflicts(ALICE)
    assert (conflict["field"], conflict["winner"]) == (
        "location",
        "exchange" if winner == "E" else "google",
    )


def test_deletions_cross_and_never_come_back(world: World) -> None:
    world.create_in_exchange("Gone in Google")
    world.create_in_exchange("Gone in Exchange", hour=11)
    world.run()
    world.service.events().delete(
        calendarId="primary", eventId=world.google_events()["Gone in Google"]["id"]
    ).execute()
    world.exchange_items()["Gone in Exchange"].delete()
    world.run()
    assert "Gone in Google" not in world.exchange_items()
    assert "Gone in Exchange" not in world.google_events()
    world.run()
    assert world.exchange_items() == {} and world.google_events() == {}


def test_an_expired_google_token_means_a_full_list_without_duplicates(world: World) -> None:
    world.create_in_exchange("Keep")
    world.run()
    urllib.request.urlopen(
        urllib.request.Request(
            world.google.url + f"/_admin/users/{ALICE}/expireSyncTokens", method="POST"
        )
    ).close()
    world.run()
    assert list(world.google_events()) == ["Keep"]
    assert list(world.exchange_items()) == ["Keep"]


def test_dry_run_plans_and_changes_nothing(world: World) -> None:
    world.create_in_exchange("Planned")
    result = subprocess.run(
        [sys.executable, "-m", "sync.cli", "sync", "--config", str(world.config_path), "--dry-run"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ},
    )
    assert result.returncode == 0, result.stderr
    assert "create-google" in result.stdout and "new in Exchange" in result.stdout
    assert world.google_events() == {}


def test_safety_stops_a_run_that_would_delete_most_events(world: World) -> None:
    for hour in range(6, 16):
        world.create_in_exchange(f"E{hour}", hour=hour)
    world.run()
    for name, event in world.google_events().items():
        if name != "E6":
            world.service.events().delete(calendarId="primary", eventId=event["id"]).execute()
    report = world.job.run([world.config.user_named(ALICE)])[0]  # type: ignore[list-item]
    assert report.stopped and "would delete 9 of 10" in report.stopped
    assert len(world.exchange_items()) == 10  # nothing was deleted
    forced = world.job.run([world.config.user_named(ALICE)], force_deletes=True)[0]  # type: ignore[list-item]
    assert not forced.stopped
    assert list(world.exchange_items()) == ["E6"]


def test_a_bad_config_is_exit_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "calsync.toml"
    bad.write_text("[sync]\npolicy = 'loudest-wins'\n")
    result = subprocess.run(
        [sys.executable, "-m", "sync.cli", "sync", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "policy must be one of" in result.stderr
