"""The backend contract: what calsync relies on from Google and Exchange, asked of the
in-memory backends and of the real clients on the stand-ins alike (conftest.py runs each
test once per kind). A difference between the two is a bug in the in-memory one, or a
stand-in that stopped answering as the service does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from exchangelib import EWSDateTime, EWSTimeZone

from sync.backends.base import (
    ExchangeBackend,
    ExchangeConflict,
    ExchangeError,
    GoogleBackend,
    GoogleConflict,
    GoogleError,
    google_event_of,
)
from tests.sync.conftest import ALICE

BERLIN = EWSTimeZone("Europe/Berlin")


def event(summary: str, day: int = 2, **fields: object) -> dict[str, object]:
    return {
        "summary": summary,
        "start": {"dateTime": f"2026-03-{day:02d}T09:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": f"2026-03-{day:02d}T10:00:00+01:00", "timeZone": "Europe/Berlin"},
        **fields,
    }


def google_fails(call: Callable[[], object], status: int, reason: str) -> GoogleError:
    with pytest.raises(GoogleError) as caught:
        call()
    assert (caught.value.status, caught.value.reason) == (status, reason)
    assert not caught.value.retryable  # an answer, not an outage
    return caught.value


def listed(backend: GoogleBackend, sync_token: str | None, **kw: str) -> tuple[list[dict[str, object]], str]:
    """Every item of every page, and the last page's nextSyncToken."""
    items: list[dict[str, object]] = []
    token = ""
    for page in backend.list_pages(sync_token=sync_token, **kw):
        items += page.get("items", [])
        if "nextSyncToken" in page:
            token = page["nextSyncToken"]
    assert token, "the last page carries nextSyncToken"
    return items, token


# --- Google: one event ------------------------------------------------------------------------


def test_google_insert_get(google_backend: GoogleBackend) -> None:
    created = google_backend.insert(event("Dentist", location="Main St 4"))
    assert created["status"] == "confirmed" and created["etag"] and created["id"]
    read = google_backend.get(created["id"])
    assert read is not None
    assert (read["summary"], read["location"], read["etag"]) == (
        "Dentist",
        "Main St 4",
        created["etag"],
    )


def test_google_unknown_ids(google_backend: GoogleBackend) -> None:
    assert google_backend.get("unknown000") is None
    google_fails(lambda: google_backend.patch("unknown000", {"summary": "x"}), 404, "notFound")
    google_fails(lambda: google_backend.delete("unknown000"), 404, "notFound")


def test_google_an_id_stays_taken_after_delete(google_backend: GoogleBackend) -> None:
    google_backend.insert(event("First", id="event00001"))
    google_fails(lambda: google_backend.insert(event("Again", id="event00001")), 409, "duplicate")
    google_backend.delete("event00001")
    # Google keeps the id for the tombstone: a re-insert is 409, never a resurrection
    google_fails(lambda: google_backend.insert(event("Back", id="event00001")), 409, "duplicate")
    google_fails(lambda: google_backend.insert(event("Bad", id="NOT-base32hex")), 400, "invalid")


def test_google_every_write_gives_a_new_etag(google_backend: GoogleBackend) -> None:
    created = google_backend.insert(event("Standup"))
    patched = google_backend.patch(created["id"], {"location": "Room 1"}, etag=created["etag"])
    again = google_backend.patch(created["id"], {"location": "Room 2"}, etag=patched["etag"])
    assert len({created["etag"], patched["etag"], again["etag"]}) == 3
    current = google_backend.get(created["id"])
    assert current is not None and current["etag"] == again["etag"]


def test_google_a_stale_etag_is_a_conflict_and_writes_nothing(google_backend: GoogleBackend) -> None:
    created = google_backend.insert(event("Review"))
    google_backend.patch(created["id"], {"location": "Room 1"}, etag=created["etag"])
    error = google_fails(
        lambda: google_backend.patch(created["id"], {"summary": "Lost"}, etag=created["etag"]),
        412,
        "conditionNotMet",
    )
    assert isinstance(error, GoogleConflict)
    google_fails(lambda: google_backend.delete(created["id"], etag=created["etag"]), 412, "conditionNotMet")
    current = google_backend.get(created["id"])
    assert current is not None
    assert (current["summary"], current["status"]) == ("Review", "confirmed")


def test_google_patch_merges_objects_and_null_removes(google_backend: GoogleBackend) -> None:
    created = google_backend.insert(
        event("Tagged", location="Room", extendedProperties={"private": {"a": "1", "b": "2"}})
    )
    patched = google_backend.patch(
        created["id"], {"location": None, "extendedProperties": {"private": {"b": "3"}}}
    )
    assert "location" not in patched
    assert patched["extendedProperties"]["private"] == {"a": "1", "b": "3"}
    assert patched["summary"] == "Tagged"


def test_google_delete_leaves_a_tombstone(google_backend: GoogleBackend) -> None:
    created = google_backend.insert(event("Gone"))
    google_backend.delete(created["id"], etag=created["etag"])
    tombstone = google_backend.get(created["id"])
    assert tombstone is not None and tombstone["status"] == "cancelled"
    assert tombstone["etag"] != created["etag"]
    google_fails(lambda: google_backend.delete(created["id"]), 410, "deleted")


def test_google_an_event_needs_its_times(google_backend: GoogleBackend) -> None:
    google_fails(lambda: google_backend.insert({"summary": "No times"}), 400, "required")


# --- Google: the change feed ------------------------------------------------------------------


def test_google_full_list_then_changes_since_the_token(google_backend: GoogleBackend) -> None:
    kept = google_backend.insert(event("Kept"))
    edited = google_backend.insert(event("Edited"))
    removed = google_backend.insert(event("Removed"))
    google_backend.delete(removed["id"])
    items, token = listed(google_backend, None)
    assert sorted(i["summary"] for i in items) == ["Edited", "Kept"]  # no tombstones
    # nothing changed: nothing listed, and a token again
    assert listed(google_backend, token)[0] == []
    google_backend.patch(edited["id"], {"summary": "Edited twice"})
    google_backend.delete(kept["id"])
    fleeting = google_backend.insert(event("Fleeting"))
    google_backend.delete(fleeting["id"])
    added = google_backend.insert(event("Added"))
    changes, next_token = listed(google_backend, token)
    by_id = {i["id"]: i for i in changes}
    assert set(by_id) == {edited["id"], kept["id"], fleeting["id"], added["id"]}
    assert by_id[edited["id"]]["summary"] == "Edited twice"
    assert by_id[added["id"]]["status"] == "confirmed"
    for gone in (kept["id"], fleeting["id"]):
        # without showDeleted, a tombstone says only what it is and that it is gone
        assert by_id[gone]["status"] == "cancelled" and "summary" not in by_id[gone]
    assert listed(google_backend, next_token)[0] == []


def test_google_a_token_it_never_gave_is_410(google_backend: GoogleBackend) -> None:
    google_fails(lambda: listed(google_backend, "not-a-token"), 410, "fullSyncRequired")


def test_google_time_min_leaves_out_what_ended_before(google_backend: GoogleBackend) -> None:
    google_backend.insert(event("Early", day=2))
    google_backend.insert(event("Late", day=20))
    items, _ = listed(google_backend, None, time_min="2026-03-10T00:00:00Z")
    assert [i["summary"] for i in items] == ["Late"]


def test_google_pages_are_followed(google_backend: GoogleBackend) -> None:
    answers = google_backend.insert_many([event(f"E{n:03d}") for n in range(260)])
    assert not [a for a in answers if isinstance(a, GoogleError)]
    pages = list(google_backend.list_pages(sync_token=None))
    assert len(pages) == 2 and "nextPageToken" in pages[0] and "nextSyncToken" in pages[1]
    summaries = [i["summary"] for p in pages for i in p.get("items", [])]
    assert sorted(summaries) == [f"E{n:03d}" for n in range(260)]


# --- Google: batches --------------------------------------------------------------------------


def test_google_batches_answer_each_call_on_its_own(google_backend: GoogleBackend) -> None:
    google_backend.insert(event("Taken", id="taken00001"))
    told: list[int] = []
    answers = google_backend.insert_many(
        [event("A", id="fresh00001"), event("B", id="taken00001"), event("C")],
        progress=told.append,
    )
    assert sum(told) == 3
    a, b, c = answers
    assert not isinstance(a, GoogleError) and a["id"] == "fresh00001"
    assert isinstance(b, GoogleError) and (b.status, b.reason) == (409, "duplicate")
    assert not isinstance(c, GoogleError) and c["summary"] == "C"
    assert not isinstance(a, GoogleError) and not isinstance(c, GoogleError)
    patched = google_backend.patch_many(
        [(a["id"], {"location": "1"}, a["etag"]), (c["id"], {"location": "2"}, a["etag"])]
    )
    assert not isinstance(patched[0], GoogleError) and patched[0]["location"] == "1"
    assert isinstance(patched[1], GoogleConflict)
    google_backend.delete(c["id"])
    got = google_backend.get_many([a["id"], "unknown000", c["id"]])
    assert [g if g is None else (g["summary"], g["status"]) for g in got] == [  # type: ignore[index]
        ("A", "confirmed"),
        None,
        ("C", "cancelled"),
    ]


# --- Google: push and the calendar ------------------------------------------------------------


def test_google_watch_and_stop(google_backend: GoogleBackend) -> None:
    channel = google_backend.watch(
        {"id": "channel-1", "type": "web_hook", "address": "http://127.0.0.1:9/hook", "token": "t"}
    )
    assert channel["id"] == "channel-1" and channel["resourceId"]
    assert int(channel["expiration"]) > 0
    google_fails(
        lambda: google_backend.watch(
            {"id": "channel-1", "type": "web_hook", "address": "http://127.0.0.1:9/hook"}
        ),
        409,
        "duplicate",
    )
    google_backend.stop_channel("channel-1", channel["resourceId"])
    google_fails(lambda: google_backend.stop_channel("channel-1", channel["resourceId"]), 404, "notFound")


def test_google_calendar_names_the_primary_calendar(google_backend: GoogleBackend) -> None:
    assert google_backend.calendar()["id"] == ALICE


# --- Exchange: one item -----------------------------------------------------------------------


def values(subject: str, hour: int = 9, **fields: object) -> dict[str, object]:
    return {
        "subject": subject,
        "start": EWSDateTime(2026, 3, 2, hour, tzinfo=BERLIN),
        "end": EWSDateTime(2026, 3, 2, hour + 1, tzinfo=BERLIN),
        **fields,
    }


def gone_id(backend: ExchangeBackend) -> str:
    """The id of an item that existed and is deleted."""
    item_id, _ = backend.create(values("Deleted"))
    backend.delete(item_id)
    return item_id


def test_exchange_create_then_read(exchange_backend: ExchangeBackend) -> None:
    # uid and is_cancelled come from to_ews but Exchange does not let a client write them
    item_id, change_key = exchange_backend.create(
        values("Dentist", location="Main St 4", uid="x@example.com", is_cancelled=False)
    )
    item = exchange_backend.calendar_item(item_id)
    assert item is not None
    assert (item.id, item.changekey) == (item_id, change_key)
    assert (item.subject, item.location) == ("Dentist", "Main St 4")
    assert item.start == dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC)


def test_exchange_unknown_items(exchange_backend: ExchangeBackend) -> None:
    gone = gone_id(exchange_backend)
    assert exchange_backend.calendar_item(gone) is None
    exchange_backend.delete(gone)  # already gone: no error


def test_exchange_every_write_gives_a_new_change_key(exchange_backend: ExchangeBackend) -> None:
    item_id, first = exchange_backend.create(values("Standup"))
    item = exchange_backend.calendar_item(item_id)
    assert item is not None
    written = exchange_backend.update(item, {"location": "Room 9", "subject": "Standup"})
    assert written is not None and written[0] == item_id and written[1] != first
    assert item.changekey == written[1]  # the item given is updated in place
    again = exchange_backend.calendar_item(item_id)
    assert again is not None
    assert (again.location, again.changekey) == ("Room 9", written[1])
    assert exchange_backend.update(again, {"location": "Room 9"}) is None  # nothing differs


def test_exchange_a_stale_change_key_is_a_conflict_and_writes_nothing(
    exchange_backend: ExchangeBackend,
) -> None:
    item_id, _ = exchange_backend.create(values("Review", location="Room 1"))
    stale = exchange_backend.calendar_item(item_id)
    fresh = exchange_backend.calendar_item(item_id)
    assert stale is not None and fresh is not None
    exchange_backend.update(fresh, {"location": "Room 2"})
    with pytest.raises(ExchangeConflict) as caught:
        exchange_backend.update(stale, {"subject": "Lost"})
    assert caught.value.code == "ErrorIrresolvableConflict" and not caught.value.retryable
    with pytest.raises(ExchangeConflict):
        exchange_backend.delete(item_id, change_key=stale.changekey)
    current = exchange_backend.calendar_item(item_id)
    assert current is not None
    assert (current.subject, current.location) == ("Review", "Room 2")
    exchange_backend.delete(item_id, change_key=current.changekey)
    assert exchange_backend.calendar_item(item_id) is None


def test_exchange_updating_a_deleted_item_is_item_not_found(
    exchange_backend: ExchangeBackend,
) -> None:
    item_id, _ = exchange_backend.create(values("Short-lived"))
    item = exchange_backend.calendar_item(item_id)
    exchange_backend.delete(item_id)
    with pytest.raises(ExchangeError) as caught:
        exchange_backend.update(item, {"subject": "Too late"})
    assert caught.value.code == "ErrorItemNotFound" and not caught.value.retryable
    assert not isinstance(caught.value, ExchangeConflict)


def test_exchange_missing_and_several_items(exchange_backend: ExchangeBackend) -> None:
    a, _ = exchange_backend.create(values("A", 9))
    b, _ = exchange_backend.create(values("B", 11))
    gone = gone_id(exchange_backend)
    assert exchange_backend.missing([a, gone, b]) == {gone}
    assert exchange_backend.missing([gone]) == {gone}
    assert exchange_backend.missing([]) == set()
    assert [i.subject for i in exchange_backend.calendar_items([a, gone, b])] == ["A", "B"]
    assert sorted(i.subject for i in exchange_backend.all_items()) == ["A", "B"]
    folder = exchange_backend.calendar_folder_id()
    assert folder and folder == exchange_backend.calendar_folder_id()


def test_exchange_an_item_created_for_a_google_event_is_found_by_its_id(
    exchange_backend: ExchangeBackend,
) -> None:
    made, _ = exchange_backend.create(values("From Google"), google_event_id="evt0001abc")
    other, _ = exchange_backend.create(values("Made in Outlook", 11))
    dropped, _ = exchange_backend.create(values("Deleted", 12), google_event_id="evt0002abc")
    exchange_backend.delete(dropped)
    found = exchange_backend.created_for(["evt0001abc", "evt0002abc", "evt9999abc"])
    assert found == {"evt0001abc": made}
    assert exchange_backend.created_for(["evt0001abc"]) == {"evt0001abc": made}
    assert exchange_backend.created_for([]) == {}
    # the item read back carries it; one made otherwise carries nothing
    item = exchange_backend.calendar_item(made)
    assert item is not None and google_event_of(item) == "evt0001abc"
    plain = exchange_backend.calendar_item(other)
    assert plain is not None and google_event_of(plain) is None
    changes, _ = exchange_backend.changes(None)
    assert {c.item_id: google_event_of(c.item) for c in changes if c.item} == {
        made: "evt0001abc",
        other: None,
    }


def test_exchange_created_for_many_ids(exchange_backend: ExchangeBackend) -> None:
    made = {
        f"evt{n:04d}many": exchange_backend.create(
            values(f"E{n}", 8 + n % 8), google_event_id=f"evt{n:04d}many"
        )[0]
        for n in range(60)  # more than one FindItem's worth of restrictions
    }
    assert exchange_backend.created_for([*made, "evtnonemany"]) == made


# --- Exchange: the change feed ----------------------------------------------------------------


def test_exchange_changes_since_a_sync_state(exchange_backend: ExchangeBackend) -> None:
    kept, _ = exchange_backend.create(values("Kept", 8))
    edited, _ = exchange_backend.create(values("Edited", 10))
    removed, _ = exchange_backend.create(values("Removed", 12))
    first, state = exchange_backend.changes(None)
    assert {(c.kind, c.item_id) for c in first} == {
        ("create", kept),
        ("create", edited),
        ("create", removed),
    }
    assert all(c.item is not None and c.change_key == c.item.changekey for c in first)
    assert state
    item = exchange_backend.calendar_item(edited)
    assert item is not None
    exchange_backend.update(item, {"subject": "Edited twice"})
    exchange_backend.delete(removed)
    added, _ = exchange_backend.create(values("Added", 14))
    added_item = exchange_backend.calendar_item(added)
    assert added_item is not None
    exchange_backend.update(added_item, {"location": "Later"})
    fleeting = gone_id(exchange_backend)
    changes, next_state = exchange_backend.changes(state)
    seen = {c.item_id: c for c in changes}
    # created and changed since: one create; created and deleted since: nothing
    assert {(c.kind, c.item_id) for c in changes} == {
        ("update", edited),
        ("delete", removed),
        ("create", added),
    }
    assert fleeting not in seen
    assert seen[edited].item is not None and seen[edited].item.subject == "Edited twice"
    assert seen[added].item is not None and seen[added].item.location == "Later"
    assert seen[removed].item is None
    assert exchange_backend.changes(next_state)[0] == []
    # Ignore: the changes a client made itself are left out
    ignored, _ = exchange_backend.changes(state, ignore=[edited, added])
    assert {(c.kind, c.item_id) for c in ignored} == {("delete", removed)}


def test_exchange_a_sync_state_it_never_gave_is_refused(exchange_backend: ExchangeBackend) -> None:
    with pytest.raises(ExchangeError) as caught:
        exchange_backend.changes("bm90IGEgc3luYyBzdGF0ZQ==")
    assert caught.value.code == "ErrorInvalidSyncStateData" and not caught.value.retryable
