"""`--db PATH`: state survives a restart, sync tokens included."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils
from googleapiclient.errors import HttpError

from emulators.google import GoogleCalendarServer
from emulators.google.store import StoreError
from tests.emulators.google.conftest import (
    ALICE,
    BOB,
    credentials,
    error_body,
    service,
    timed_event,
)


def test_events_tokens_and_sync_position_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "google.db"
    with GoogleCalendarServer(users=[ALICE], db=db) as first:
        creds = credentials(first, ALICE, token="ya29.stale")   # forces a refresh
        client = service(first, creds)
        kept = client.events().insert(calendarId="primary", body=timed_event("kept")).execute()
        gone = client.events().insert(calendarId="primary", body=timed_event("gone")).execute()
        client.events().delete(calendarId="primary", eventId=gone["id"]).execute()
        sync_token = client.events().list(calendarId="primary").execute()["nextSyncToken"]
        refreshed = creds.token

    # A new process would get a new port; users come from the file, not the command line.
    with GoogleCalendarServer(db=db) as second:
        again = service(second, credentials(second, ALICE, token=refreshed))
        assert again.events().get(calendarId="primary", eventId=kept["id"]).execute() == kept
        assert again.events().get(calendarId="primary",
                                  eventId=gone["id"]).execute()["status"] == "cancelled"
        # The old sync token still means "nothing changed since".
        assert again.events().list(calendarId="primary",
                                   syncToken=sync_token).execute()["items"] == []
        later = again.events().insert(calendarId="primary", body=timed_event("later")).execute()
        delta = again.events().list(calendarId="primary", syncToken=sync_token).execute()
        assert [i["id"] for i in delta["items"]] == [later["id"]]
        assert later["etag"] not in (kept["etag"], gone["etag"])
        # Deleted ids stay taken across the restart too.
        with pytest.raises(HttpError) as caught:
            again.events().insert(calendarId="primary",
                                  body=timed_event(id=gone["id"])).execute()
        assert caught.value.status_code == 409


def test_users_added_after_a_restart_join_the_file(tmp_path: Path) -> None:
    db = tmp_path / "google.db"
    with GoogleCalendarServer(users=[ALICE], db=db):
        pass
    with GoogleCalendarServer(users=[ALICE, BOB], db=db):
        pass
    with GoogleCalendarServer(db=db) as third:
        for email in (ALICE, BOB):
            items = service(third, credentials(third, email)).calendarList().list().execute()
            assert [i["id"] for i in items["items"]] == [email]


def test_memory_only_by_default(tmp_path: Path) -> None:
    with GoogleCalendarServer(users=[ALICE]) as first:
        service(first, credentials(first, ALICE)).events().insert(
            calendarId="primary", body=timed_event()).execute()
    with GoogleCalendarServer(users=[ALICE]) as second:
        assert service(second, credentials(second, ALICE)).events().list(
            calendarId="primary").execute()["items"] == []


def test_a_file_from_another_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "google.db"
    with GoogleCalendarServer(db=db):
        pass
    sqlite_utils.Database(db)["meta"].upsert({"key": "schema", "value": "99"}, pk="key")
    with pytest.raises(StoreError, match="schema 99"):
        GoogleCalendarServer(db=db)


def test_a_sync_token_of_an_earlier_run_without_the_file_is_410() -> None:
    """Restarted without --db, positions begin again: a token of the earlier run is
    unknown (410 fullSyncRequired), also once the new run's positions have passed it."""
    with GoogleCalendarServer(users=[ALICE]) as first:
        client = service(first, credentials(first, ALICE))
        client.events().insert(calendarId="primary", body=timed_event("before")).execute()
        token = client.events().list(calendarId="primary").execute()["nextSyncToken"]
    with GoogleCalendarServer(users=[ALICE]) as second:
        client = service(second, credentials(second, ALICE))
        for n in range(4):
            client.events().insert(calendarId="primary", body=timed_event(f"after{n}")).execute()
        with pytest.raises(HttpError) as caught:
            client.events().list(calendarId="primary", syncToken=token).execute()
        assert caught.value.status_code == 410
        assert error_body(caught.value)["error"]["errors"][0]["reason"] == "fullSyncRequired"


def test_the_change_index_is_rebuilt_from_the_file(tmp_path: Path) -> None:
    db = tmp_path / "google.db"
    with GoogleCalendarServer(users=[ALICE], db=db) as first:
        client = service(first, credentials(first, ALICE))
        early, late = (client.events().insert(calendarId="primary",
                                              body=timed_event(name)).execute()
                       for name in ("early", "late"))
        token = client.events().list(calendarId="primary").execute()["nextSyncToken"]
        # changed after the token: the index puts it after "late"
        client.events().patch(calendarId="primary", eventId=early["id"],
                              body={"summary": "early, edited"}).execute()
    with GoogleCalendarServer(db=db) as second:
        client = service(second, credentials(second, ALICE))
        delta = client.events().list(calendarId="primary", syncToken=token).execute()
        assert [i["summary"] for i in delta["items"]] == ["early, edited"]
        assert list(second.state.calendars[ALICE].changes) == [late["id"], early["id"]]
        client.events().patch(calendarId="primary", eventId=late["id"],
                              body={"summary": "late, edited"}).execute()
        delta = client.events().list(calendarId="primary", syncToken=token).execute()
        assert [i["summary"] for i in delta["items"]] == ["early, edited", "late, edited"]
