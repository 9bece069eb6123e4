"""`calsync undo USER` through both stand-ins and the unmodified clients: a run that
created in Google, patched in Exchange and deleted in Google is put back; what changed
since the run is skipped and reported; --dry-run changes nothing; a second undo finds
nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from exchangelib import EWSDateTime
from exchangelib.items import CalendarItem

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.cli import main
from sync.config import load_config
from sync.sources.job import SyncJob
from sync.store import SCHEMA_VERSION, Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account


class World:
    def __init__(self, tmp: Path, ews: EwsServer, google: GoogleCalendarServer) -> None:
        self.config_path = write_config(tmp, google, ews_url=ews.url)
        self.config = load_config(self.config_path)
        self.account = ews_account(ews.url)
        self.service = calendar_service(google.api_endpoint)

    def sync(self) -> Any:
        store = Store(self.config.store_path)
        try:
            (report,) = SyncJob(self.config, store).run([self.config.user_named(ALICE)])  # type: ignore[list-item]
        finally:
            store.close()
        assert not report.errors, report.errors
        return report

    def undo(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
        status = main(["undo", "--config", str(self.config_path), ALICE, *extra])
        return status, capsys.readouterr().out.splitlines()

    def create_in_exchange(self, subject: str, hour: int, **fields: Any) -> CalendarItem:
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
        return {e["summary"]: e for e in items if e.get("status") != "cancelled"}

    def patch_google(self, event_id: str, body: dict[str, Any]) -> None:
        self.service.events().patch(calendarId="primary", eventId=event_id, body=body).execute()


@pytest.fixture
def world(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> World:
    """A first run mapped three items; a second one created "New" in Google (new in
    Exchange), patched "Keep" in Exchange (edited in Google), and deleted "Doomed" in
    Google (deleted in Exchange)."""
    world = World(tmp_path, ews, google)
    world.create_in_exchange("Keep", 9, location="Room 1")
    world.create_in_exchange("Doomed", 11, location="Cellar")
    world.create_in_exchange("Other", 13)
    world.sync()
    world.create_in_exchange("New", 15)
    world.patch_google(world.google_events()["Keep"]["id"], {"location": "Room 2"})
    world.exchange_items()["Doomed"].delete()
    report = world.sync()
    assert sorted(a.kind for a in report.actions) == [
        "create-google",
        "delete-google",
        "update-exchange",
    ]
    assert world.exchange_items()["Keep"].location == "Room 2"
    assert "Doomed" not in world.google_events() and "New" in world.google_events()
    return world


def test_undo_puts_back_a_create_a_patch_and_a_delete(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = world.undo(capsys)
    assert status == 0, lines
    verbs = sorted(line.split("\t")[0] for line in lines[1:])
    assert verbs == ["deleted", "re-created", "restored"], lines
    events = world.google_events()
    assert "New" not in events  # created by the run: deleted
    assert events["Doomed"]["location"] == "Cellar"  # deleted by the run: back, a new id
    assert world.exchange_items()["Keep"].location == "Room 1"  # patched: restored
    assert events["Keep"]["location"] == "Room 2"  # the Google edit itself is the user's
    # the next run carries none of undo's own writes across
    again = world.sync()
    assert again.applied == 0, again.actions
    assert world.exchange_items()["Keep"].location == "Room 1"


def test_what_changed_since_the_run_is_skipped_and_reported(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.patch_google(world.google_events()["New"]["id"], {"location": "Hall"})
    status, lines = world.undo(capsys)
    assert status == 1
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 1 and "changed since the run" in skipped[0]
    assert world.google_events()["New"]["location"] == "Hall"  # never overwritten
    assert world.exchange_items()["Keep"].location == "Room 1"  # the rest was undone


def test_dry_run_changes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    before_google = world.google_events()
    before_exchange = {s: i.changekey for s, i in world.exchange_items().items()}
    status, lines = world.undo(capsys, "--dry-run")
    assert status == 0
    assert sorted(line.split("\t")[0] for line in lines[1:]) == [
        "would delete",
        "would re-create",
        "would restore",
    ]
    assert world.google_events() == before_google
    assert {s: i.changekey for s, i in world.exchange_items().items()} == before_exchange
    # still there to undo
    status, _ = world.undo(capsys)
    assert status == 0


def test_undo_twice_finds_nothing_to_undo(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.undo(capsys)[0] == 0
    status, lines = world.undo(capsys)
    assert status == 1
    assert lines == [f"{ALICE}: nothing to undo (no completed sync run that wrote anything)"]


def test_undo_of_an_unknown_user_is_exit_2(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["undo", "--config", str(world.config_path), "nobody@example.com"]) == 2
    assert "no user" in capsys.readouterr().err


def test_pre_images_are_sealed_and_a_dry_run_sync_records_nothing(world: World) -> None:
    store = Store(world.config.store_path)
    try:
        raw = b"".join(
            row[0] or b"" for row in store.db.execute("SELECT before FROM run_writes").fetchall()
        )
        assert raw and b"Cellar" not in raw and b"Room 1" not in raw
        assert {w.op for w in store.run_writes(store.last_run(ALICE).id)} == {  # type: ignore[union-attr]
            "create",
            "patch",
            "delete",
        }
        runs = store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        SyncJob(world.config, store).run([world.config.user_named(ALICE)], dry_run=True)  # type: ignore[list-item]
        assert store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == runs
    finally:
        store.close()


def test_a_v3_store_gains_the_runs_tables(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.save_sync_state(ALICE, google_sync_token="kept")
    store.db.table("run_writes").drop()
    store.db.table("runs").drop()
    store.db.table("meta").upsert({"key": "schema_version", "value": "3"}, pk="key")
    store.close()
    reopened = Store(tmp_path / "s.db")
    try:
        assert {"runs", "run_writes"} <= set(reopened.db.table_names())
        assert reopened.last_run(ALICE) is None
        assert reopened.sync_state(ALICE)["google_sync_token"] == "kept"
        assert reopened.db.table("meta").get("schema_version")["value"] == str(SCHEMA_VERSION)
    finally:
        reopened.close()
