"""Events insert / import / get / patch / update / delete and calendars, through the client.

Each test names the documented rule it checks (events reference pages and the errors guide).
"""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError

from emulators.google import GoogleCalendarServer
from tests.emulators.google.conftest import (
    ALICE,
    BOB,
    credentials,
    error_body,
    fixture_error,
    service,
    timed_event,
)


def test_insert_then_get_returns_the_stored_event(calendar: Any) -> None:
    created = calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    # Server-owned fields are filled in; etags are quoted strings.
    assert created["kind"] == "calendar#event"
    assert created["status"] == "confirmed"
    assert created["etag"].startswith('"') and created["etag"].endswith('"')
    assert created["sequence"] == 0
    assert created["organizer"] == {"email": ALICE, "self": True}
    fetched = calendar.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert fetched == created
    assert fetched["start"]["dateTime"] == "2026-05-04T09:00:00+02:00"


def test_primary_is_the_users_address(calendar: Any) -> None:
    entry = calendar.calendarList().list().execute()["items"]
    assert [(e["id"], e.get("primary")) for e in entry] == [(ALICE, True)]
    assert calendar.calendars().get(calendarId="primary").execute()["id"] == ALICE


def test_calendars_insert_adds_a_secondary_calendar(calendar: Any) -> None:
    created = calendar.calendars().insert(body={"summary": "Mirror",
                                                "timeZone": "Europe/Berlin"}).execute()
    assert created["id"].endswith("@group.calendar.google.com")
    ids = [e["id"] for e in calendar.calendarList().list().execute()["items"]]
    assert ids == [ALICE, created["id"]]
    event = calendar.events().insert(calendarId=created["id"], body=timed_event()).execute()
    got = calendar.events().get(calendarId=created["id"], eventId=event["id"]).execute()
    assert got["organizer"]["email"] == created["id"]


# Event ids: "characters allowed in the ID are those used in base32hex encoding, i.e.
# lowercase letters a-v and digits 0-9 ... the length of the ID must be between 5 and 1024".
@pytest.mark.parametrize("event_id", [
    "abcde",                                  # shortest allowed
    "0123456789abcdefghijklmnopqrstuv",       # the whole alphabet
    "v" * 1024,                               # longest allowed
    "3f2c1e4ab9d04c6f8e7a6b5c4d3e2f10",       # a hyphen-less UUID is base32hex
])
def test_client_supplied_ids_in_base32hex_are_kept(calendar: Any, event_id: str) -> None:
    created = calendar.events().insert(calendarId="primary",
                                       body=timed_event(id=event_id)).execute()
    assert created["id"] == event_id


@pytest.mark.parametrize("event_id", [
    "abcd",                                   # too short
    "v" * 1025,                               # too long
    "abcdw",                                  # w is past v
    "ABCDE",                                  # upper case
    "3f2c1e4a-b9d0-4c6f-8e7a-6b5c4d3e2f10",   # hyphens
    "abc_def",                                # underscore (only server ids have it)
])
def test_client_supplied_ids_outside_base32hex_get_400(calendar: Any, event_id: str) -> None:
    with pytest.raises(HttpError) as caught:
        calendar.events().insert(calendarId="primary", body=timed_event(id=event_id)).execute()
    assert caught.value.status_code == 400
    assert error_body(caught.value)["error"]["errors"][0]["reason"] == "invalid"


def test_reusing_an_id_is_409_duplicate_even_after_delete(calendar: Any) -> None:
    # "the ID must be unique per calendar"; errors guide: 409 duplicate.
    calendar.events().insert(calendarId="primary", body=timed_event(id="dup00001")).execute()
    with pytest.raises(HttpError) as caught:
        calendar.events().insert(calendarId="primary", body=timed_event(id="dup00001")).execute()
    assert error_body(caught.value) == fixture_error("409_duplicate")
    calendar.events().delete(calendarId="primary", eventId="dup00001").execute()
    with pytest.raises(HttpError) as caught:
        calendar.events().insert(calendarId="primary", body=timed_event(id="dup00001")).execute()
    assert caught.value.status_code == 409


def test_missing_time_zone_or_end_is_400(calendar: Any) -> None:
    # "A time zone offset is required unless a time zone is explicitly specified in timeZone."
    body = {"start": {"dateTime": "2026-05-04T09:00:00"},
            "end": {"dateTime": "2026-05-04T10:00:00"}}
    with pytest.raises(HttpError) as caught:
        calendar.events().insert(calendarId="primary", body=body).execute()
    assert caught.value.status_code == 400
    with pytest.raises(HttpError) as caught:
        calendar.events().insert(calendarId="primary",
                                 body={"start": {"date": "2026-05-04"}}).execute()
    assert caught.value.status_code == 400


def test_end_before_start_is_time_range_empty(calendar: Any) -> None:
    body = timed_event(end={"dateTime": "2026-05-04T08:00:00+02:00"})
    with pytest.raises(HttpError) as caught:
        calendar.events().insert(calendarId="primary", body=body).execute()
    assert error_body(caught.value) == fixture_error("400_timeRangeEmpty")


def test_patch_changes_etag_updated_and_sequence_only_for_times(calendar: Any,
                                                               server: GoogleCalendarServer
                                                               ) -> None:
    created = calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    renamed = calendar.events().patch(calendarId="primary", eventId=created["id"],
                                      body={"summary": "Retro"}).execute()
    # [V]: a modification returns "the new version of the resource with the new ETag".
    assert renamed["etag"] != created["etag"]
    assert renamed["summary"] == "Retro"
    assert renamed["start"] == created["start"]       # patch keeps what it does not name
    assert renamed["sequence"] == 0                    # no time change: same sequence
    moved = calendar.events().patch(calendarId="primary", eventId=created["id"], body={
        "start": {"dateTime": "2026-05-04T10:00:00+02:00"},
        "end": {"dateTime": "2026-05-04T10:30:00+02:00"}}).execute()
    assert moved["sequence"] == 1                      # rescheduling bumps the sequence
    assert moved["etag"] not in (created["etag"], renamed["etag"])
    assert moved["updated"] >= renamed["updated"]


def test_patch_null_removes_an_extended_property(calendar: Any) -> None:
    # Extended properties guide: patch a key to null to delete it.
    created = calendar.events().insert(calendarId="primary", body=timed_event(
        extendedProperties={"private": {"ewsId": "AAMk1", "keep": "yes"}})).execute()
    patched = calendar.events().patch(calendarId="primary", eventId=created["id"], body={
        "extendedProperties": {"private": {"ewsId": None}}}).execute()
    assert patched["extendedProperties"] == {"private": {"keep": "yes"}}


def test_reminders_only_change_keeps_updated(calendar: Any) -> None:
    # "Updating event reminders will not cause this [updated] to change."
    created = calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    patched = calendar.events().patch(calendarId="primary", eventId=created["id"], body={
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]},
    }).execute()
    assert patched["updated"] == created["updated"]
    assert patched["etag"] != created["etag"]


def test_update_replaces_the_whole_event(calendar: Any) -> None:
    created = calendar.events().insert(calendarId="primary", body=timed_event(
        description="agenda", location="Room 1")).execute()
    replaced = calendar.events().update(calendarId="primary", eventId=created["id"],
                                        body=timed_event("Standup v2")).execute()
    assert replaced["summary"] == "Standup v2"
    assert "description" not in replaced and "location" not in replaced
    assert replaced["id"] == created["id"] and replaced["created"] == created["created"]


def test_if_match_with_a_stale_etag_is_412(calendar: Any) -> None:
    # [V]: "Otherwise, the server returns a 412 Precondition Failed response code."
    created = calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    calendar.events().patch(calendarId="primary", eventId=created["id"],
                            body={"summary": "changed elsewhere"}).execute()
    stale = calendar.events().patch(calendarId="primary", eventId=created["id"],
                                    body={"summary": "mine"})
    stale.headers["If-Match"] = created["etag"]
    with pytest.raises(HttpError) as caught:
        stale.execute()
    assert error_body(caught.value) == fixture_error("412_conditionNotMet")
    current = calendar.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert current["summary"] == "changed elsewhere"
    fresh = calendar.events().patch(calendarId="primary", eventId=created["id"],
                                    body={"summary": "mine"})
    fresh.headers["If-Match"] = current["etag"]
    assert fresh.execute()["summary"] == "mine"


def test_delete_leaves_a_cancelled_event_and_second_delete_is_410(calendar: Any) -> None:
    created = calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    calendar.events().delete(calendarId="primary", eventId=created["id"],
                             sendUpdates="none").execute()
    # "The get method always returns them [cancelled events]."
    got = calendar.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert got["status"] == "cancelled"
    # Errors guide: deleting an already deleted event gets 410 deleted.
    with pytest.raises(HttpError) as caught:
        calendar.events().delete(calendarId="primary", eventId=created["id"]).execute()
    assert error_body(caught.value) == fixture_error("410_deleted")


def test_unknown_event_is_404(calendar: Any) -> None:
    with pytest.raises(HttpError) as caught:
        calendar.events().get(calendarId="primary", eventId="nosuchevent").execute()
    assert error_body(caught.value) == fixture_error("404_notFound")


def test_import_needs_ical_uid_and_updates_by_it(calendar: Any) -> None:
    # "iCalUID ... must be supplied when importing events via the import method".
    with pytest.raises(HttpError) as caught:
        calendar.events().import_(calendarId="primary", body=timed_event()).execute()
    assert caught.value.status_code == 400
    uid = "040000008200E00074C5B7101A82E0080000000010"
    first = calendar.events().import_(calendarId="primary", body=timed_event(
        iCalUID=uid, organizer={"email": "boss@corp.example"})).execute()
    assert first["iCalUID"] == uid and first["organizer"]["email"] == "boss@corp.example"
    again = calendar.events().import_(calendarId="primary",
                                      body=timed_event("Renamed", iCalUID=uid)).execute()
    assert again["id"] == first["id"] and again["summary"] == "Renamed"


def test_send_updates_is_recorded(calendar: Any, server: GoogleCalendarServer) -> None:
    created = calendar.events().insert(calendarId="primary", body=timed_event(),
                                       sendUpdates="none").execute()
    calendar.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "x"},
                            sendUpdates="all").execute()
    calls = [(c.method, c.send_updates) for c in server.state.calls]
    assert calls == [("insert", "none"), ("patch", "all")]


def test_two_users_never_see_each_other(server: GoogleCalendarServer, calendar: Any) -> None:
    bob = service(server, credentials(server, BOB))
    mine = calendar.events().insert(calendarId="primary", body=timed_event("Alice's")).execute()
    bob.events().insert(calendarId="primary", body=timed_event("Bob's")).execute()
    assert [e["summary"] for e in calendar.events().list(calendarId="primary").execute()[
        "items"]] == ["Alice's"]
    # Another user's calendar is invisible: 404, not 403.
    with pytest.raises(HttpError) as caught:
        bob.events().get(calendarId=ALICE, eventId=mine["id"]).execute()
    assert caught.value.status_code == 404
    with pytest.raises(HttpError) as caught:
        bob.events().list(calendarId=ALICE).execute()
    assert caught.value.status_code == 404
