"""events.list: filters, pages and the sync-token lifecycle of the "Synchronize resources
efficiently" guide, through the real client."""

from __future__ import annotations

import random
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from emulators.google import GoogleCalendarServer, listing
from emulators.google.state import GoogleCalendarState, utc_now
from tests.emulators.google.conftest import (
    ALICE,
    admin,
    error_body,
    fixture_error,
    timed_event,
)


def _insert(calendar: Any, summary: str, day: int = 4, **extra: Any) -> dict[str, Any]:
    body = timed_event(summary, start={"dateTime": f"2026-05-{day:02d}T09:00:00+02:00"},
                       end={"dateTime": f"2026-05-{day:02d}T10:00:00+02:00"}, **extra)
    return calendar.events().insert(calendarId="primary", body=body).execute()  # type: ignore[no-any-return]


def _pages(calendar: Any, **params: Any) -> list[dict[str, Any]]:
    pages = []
    token = params.pop("pageToken", None)
    while True:
        page = calendar.events().list(calendarId="primary", pageToken=token, **params).execute()
        pages.append(page)
        token = page.get("nextPageToken")
        if token is None:
            return pages


def test_full_sync_puts_the_sync_token_on_the_last_page_only(calendar: Any) -> None:
    for n in range(5):
        _insert(calendar, f"e{n}", day=n + 1)
    pages = _pages(calendar, maxResults=2)
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    # "nextSyncToken ... Omitted if further results are available, in which case
    # nextPageToken is provided."
    assert ["nextSyncToken" in p for p in pages] == [False, False, True]
    assert ["nextPageToken" in p for p in pages] == [True, True, False]
    assert [i["summary"] for p in pages for i in p["items"]] == [f"e{n}" for n in range(5)]


def test_incremental_sync_returns_changes_and_tombstones(calendar: Any) -> None:
    keep = _insert(calendar, "keep")
    change = _insert(calendar, "change")
    gone = _insert(calendar, "gone")
    token = calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    nothing = calendar.events().list(calendarId="primary", syncToken=token).execute()
    assert nothing["items"] == []
    calendar.events().patch(calendarId="primary", eventId=change["id"],
                            body={"summary": "changed"}).execute()
    calendar.events().delete(calendarId="primary", eventId=gone["id"]).execute()
    added = _insert(calendar, "added")
    delta = calendar.events().list(calendarId="primary", syncToken=token).execute()
    by_id = {i["id"]: i for i in delta["items"]}
    # Absent means unchanged: "keep" is not there.
    assert set(by_id) == {change["id"], gone["id"], added["id"]}
    assert keep["id"] not in by_id
    # "the result will always contain deleted entries"; without showDeleted only the
    # minimal details of a deleted event come back.
    assert by_id[gone["id"]]["status"] == "cancelled"
    assert "summary" not in by_id[gone["id"]]
    assert by_id[change["id"]]["summary"] == "changed"
    again = calendar.events().list(calendarId="primary",
                                   syncToken=delta["nextSyncToken"]).execute()
    assert again["items"] == []


def test_incremental_sync_pages_with_the_same_sync_token(calendar: Any) -> None:
    token = calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    for n in range(3):
        _insert(calendar, f"new{n}", day=n + 1)
    # "perform the exact same list query ... with the exact same syncToken, append the
    # pageToken to it and paginate ... until you find another syncToken on the last page."
    pages = _pages(calendar, syncToken=token, maxResults=2)
    assert [len(p["items"]) for p in pages] == [2, 1]
    assert "nextSyncToken" not in pages[0] and "nextSyncToken" in pages[1]


def test_changes_while_paging_are_not_lost(calendar: Any) -> None:
    events = [_insert(calendar, f"e{n}", day=n + 1) for n in range(4)]
    first = calendar.events().list(calendarId="primary", maxResults=2).execute()
    # "You don't need to worry about any new entries appearing while you are paginating —
    # they won't be missed."
    late = _insert(calendar, "late", day=20)
    calendar.events().patch(calendarId="primary", eventId=events[3]["id"],
                            body={"summary": "e3 edited"}).execute()
    rest = _pages(calendar, maxResults=2, pageToken=first["nextPageToken"])
    seen = {i["id"] for i in first["items"]} | {i["id"] for p in rest for i in p["items"]}
    delta = calendar.events().list(calendarId="primary",
                                   syncToken=rest[-1]["nextSyncToken"]).execute()
    changed = {i["id"]: i for i in delta["items"]}
    assert late["id"] in changed and changed[events[3]["id"]]["summary"] == "e3 edited"
    assert seen | set(changed) == {e["id"] for e in events} | {late["id"]}


@pytest.mark.parametrize("token", ["garbage", "", "eyJjIjoibm9wZSJ9"])
def test_an_invalid_sync_token_is_410_full_sync_required(calendar: Any, token: str) -> None:
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId="primary", syncToken=token or "=").execute()
    assert error_body(caught.value) == fixture_error("410_fullSyncRequired")


def test_an_expired_sync_token_is_410(calendar: Any, server: GoogleCalendarServer) -> None:
    # "Sometimes sync tokens are invalidated by the server ... respond ... with 410."
    token = calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    admin(server, f"/users/{ALICE}/expireSyncTokens")
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId="primary", syncToken=token).execute()
    assert caught.value.status_code == 410
    fresh = calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    assert calendar.events().list(calendarId="primary", syncToken=fresh).execute()["items"] == []


# [D] syncToken: "... cannot be specified together with iCalUID, orderBy,
# privateExtendedProperty, q, sharedExtendedProperty, timeMin, timeMax or updatedMin".
@pytest.mark.parametrize("extra", [
    {"timeMin": "2026-01-01T00:00:00Z"},
    {"timeMax": "2026-01-01T00:00:00Z"},
    {"updatedMin": "2026-01-01T00:00:00Z"},
    {"q": "standup"},
    {"iCalUID": "x@google.com"},
    {"orderBy": "updated"},
    {"privateExtendedProperty": "ewsId=1"},
    {"sharedExtendedProperty": "k=v"},
])
def test_sync_token_with_a_forbidden_parameter_is_400(calendar: Any,
                                                     extra: dict[str, str]) -> None:
    token = calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId="primary", syncToken=token, **extra).execute()
    assert caught.value.status_code == 400
    assert error_body(caught.value)["error"]["errors"][0]["location"] == next(iter(extra))


def test_full_sync_may_use_time_min(calendar: Any) -> None:
    # timeMin is allowed on the initial full sync (the guide's Java sample does it).
    _insert(calendar, "early", day=1)
    _insert(calendar, "late", day=20)
    page = calendar.events().list(calendarId="primary",
                                  timeMin="2026-05-10T00:00:00Z").execute()
    assert [i["summary"] for i in page["items"]] == ["late"]
    assert "nextSyncToken" in page


def test_time_window_bounds_are_exclusive(calendar: Any) -> None:
    _insert(calendar, "nine-to-ten", day=4)  # 07:00-08:00Z
    # timeMin: "Lower bound (exclusive) for an event's end time"; timeMax: "Upper bound
    # (exclusive) for an event's start time".
    ends_at_min = calendar.events().list(calendarId="primary", timeMin="2026-05-04T08:00:00Z",
                                         timeMax="2026-05-05T00:00:00Z").execute()
    starts_at_max = calendar.events().list(calendarId="primary",
                                           timeMin="2026-05-04T00:00:00Z",
                                           timeMax="2026-05-04T07:00:00Z").execute()
    inside = calendar.events().list(calendarId="primary", timeMin="2026-05-04T07:59:00Z",
                                    timeMax="2026-05-04T10:01:00+02:00").execute()
    assert ends_at_min["items"] == [] and starts_at_max["items"] == []
    assert len(inside["items"]) == 1


def test_time_max_before_time_min_is_time_range_empty(calendar: Any) -> None:
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId="primary", timeMin="2026-05-04T08:00:00Z",
                               timeMax="2026-05-03T08:00:00Z").execute()
    assert error_body(caught.value) == fixture_error("400_timeRangeEmpty")


def test_show_deleted_lists_cancelled_events(calendar: Any) -> None:
    gone = _insert(calendar, "gone")
    calendar.events().delete(calendarId="primary", eventId=gone["id"]).execute()
    # "The list method returns cancelled events only on incremental sync ... or if the
    # showDeleted flag is set to true."
    assert calendar.events().list(calendarId="primary").execute()["items"] == []
    shown = calendar.events().list(calendarId="primary", showDeleted=True).execute()["items"]
    assert [(i["id"], i["status"], i["summary"]) for i in shown] == [
        (gone["id"], "cancelled", "gone")]


def test_updated_min_includes_deleted_events(calendar: Any) -> None:
    gone = _insert(calendar, "gone")
    calendar.events().delete(calendarId="primary", eventId=gone["id"]).execute()
    # updatedMin: "entries deleted since this time will always be included regardless of
    # showDeleted".
    page = calendar.events().list(calendarId="primary",
                                  updatedMin="2000-01-01T00:00:00Z").execute()
    assert [(i["id"], i["status"]) for i in page["items"]] == [(gone["id"], "cancelled")]


def test_filters_q_ical_uid_and_private_extended_property(calendar: Any) -> None:
    a = _insert(calendar, "Budget review", location="Room 7",
                extendedProperties={"private": {"ewsId": "AAMk1", "kind": "mirror"}})
    b = _insert(calendar, "Lunch", extendedProperties={"private": {"ewsId": "AAMk2",
                                                                   "kind": "mirror"}})
    ids = lambda page: [i["id"] for i in page["items"]]  # noqa: E731 - a local shorthand
    assert ids(calendar.events().list(calendarId="primary", q="budget room").execute()) == [
        a["id"]]
    assert ids(calendar.events().list(calendarId="primary", iCalUID=b["iCalUID"]).execute()) == [
        b["id"]]
    # Repeated constraints "return events that match all given constraints".
    both = calendar.events().list(calendarId="primary",
                                  privateExtendedProperty=["kind=mirror", "ewsId=AAMk2"]
                                  ).execute()
    assert ids(both) == [b["id"]]


def test_order_by_start_time_needs_single_events(calendar: Any) -> None:
    later = _insert(calendar, "later", day=9)
    earlier = _insert(calendar, "earlier", day=2)
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId="primary", orderBy="startTime").execute()
    assert caught.value.status_code == 400
    page = calendar.events().list(calendarId="primary", orderBy="startTime",
                                  singleEvents=True).execute()
    assert [i["id"] for i in page["items"]] == [earlier["id"], later["id"]]


# --- the change index: a sync-token list reads the changes since its token -------------------


def test_an_incremental_list_returns_only_what_changed_since_its_token(
        calendar: Any, server: GoogleCalendarServer) -> None:
    quiet = [_insert(calendar, f"quiet{n}", day=n % 28 + 1) for n in range(30)]
    edited, deleted = quiet[3], quiet[17]
    token = calendar.events().list(calendarId="primary", maxResults=2500).execute()[
        "nextSyncToken"]
    calendar.events().patch(calendarId="primary", eventId=edited["id"],
                            body={"summary": "edited"}).execute()
    calendar.events().delete(calendarId="primary", eventId=deleted["id"]).execute()
    added = _insert(calendar, "added", day=2)
    calendar.events().patch(calendarId="primary", eventId=edited["id"],
                            body={"summary": "edited twice"}).execute()
    pages = _pages(calendar, syncToken=token, maxResults=2)
    items = [i for p in pages for i in p["items"]]
    # each change once, as it is now, in the listing's order (creation); nothing else
    assert [(i["id"], i.get("summary")) for i in items] == [
        (edited["id"], "edited twice"), (deleted["id"], None), (added["id"], "added")]
    assert items[1]["status"] == "cancelled"
    assert ["nextSyncToken" in p for p in pages] == [False, True]
    # the calendar's index holds each event once, at its last change, oldest change first
    alice = server.state.calendars[ALICE]
    since = server.state.decode_token(token)["n"]  # type: ignore[index]
    assert [s.resource["id"] for s in alice.changed_since(since, server.state.counter)] == [
        deleted["id"], added["id"], edited["id"]]
    assert list(alice.changes) == [e["id"] for e in quiet if e not in (edited, deleted)] + [
        deleted["id"], added["id"], edited["id"]]


def test_changed_since_stops_at_the_snapshot(calendar: Any, server: GoogleCalendarServer) -> None:
    first, second, third = (_insert(calendar, name) for name in ("first", "second", "third"))
    alice = server.state.calendars[ALICE]
    position = {e["id"]: s.changed for e, s in
                ((e, alice.events[e["id"]]) for e in (first, second, third))}
    between = alice.changed_since(position[first["id"]], position[second["id"]])
    assert [s.resource["id"] for s in between] == [second["id"]]
    assert alice.changed_since(position[third["id"]], server.state.counter) == []


def _random_history(state: GoogleCalendarState, seed: int) -> list[int]:
    """Inserts, edits and deletes of single events, weekly series and their instances, in
    an order drawn from `seed`; the positions a client took a sync token at."""
    rng = random.Random(seed)
    user = state.accounts.users[ALICE]
    alice = state.calendars[ALICE]
    positions = [state.counter]
    for step in range(120):
        live = [s.resource for s in alice.events.values()
                if s.resource.get("status") != "cancelled"]
        masters = [r for r in live if r.get("recurrence")]
        choice = rng.random()
        day = rng.randint(1, 28)
        body = timed_event(
            f"s{step}",
            start={"dateTime": f"2026-05-{day:02d}T09:00:00Z", "timeZone": "Europe/Berlin"},
            end={"dateTime": f"2026-05-{day:02d}T10:00:00Z", "timeZone": "Europe/Berlin"})
        if choice < 0.25 or not live:
            if rng.random() < 0.3:
                body["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=4"]
            state.insert_event(user, "primary", body, {})
        elif choice < 0.45 and masters:
            master = rng.choice(masters)
            stored = alice.events[master["id"]]
            instance = rng.choice(state.expanded_instances(alice, stored))[0]
            if instance.get("status") == "cancelled":
                continue
            if rng.random() < 0.5:
                state.delete_event(user, "primary", instance["id"], {}, None)
            else:
                state.update_event(user, "primary", instance["id"], {"summary": f"i{step}"},
                                   {}, None, patch=True)
        elif choice < 0.8:
            target = rng.choice(live)
            state.update_event(user, "primary", target["id"], {"summary": f"e{step}"}, {},
                               None, patch=True)
        else:
            state.delete_event(user, "primary", rng.choice(live)["id"], {}, None)
        if rng.random() < 0.3:
            positions.append(state.counter)
    return positions


@pytest.mark.parametrize("seed", range(6))
def test_the_index_finds_every_row_a_scan_of_the_calendar_finds(seed: int) -> None:
    """Series make it subtle: with singleEvents an instance changes when its series or its
    override does. For tokens taken all along a random history, the rows read through the
    index are exactly the rows a scan of every event finds newer than the token."""
    state = GoogleCalendarState(utc_now)
    state.add_user(ALICE)
    with state.lock:
        positions = _random_history(state, seed)
        alice = state.calendars[ALICE]
        snapshots = (state.counter, positions[len(positions) // 2])
        for single in (False, True):
            scanned = listing._rows(state, alice, single, True, alice.events.values())
            for since in positions:
                for snapshot in (s for s in snapshots if s >= since):
                    indexed = listing._rows(state, alice, single, True,
                                            listing._touched(alice, since, snapshot, single))

                    def newer(rows: list[Any], since: int = since,
                              snapshot: int = snapshot) -> list[tuple[str, str, int]]:
                        return sorted((r["id"], r["etag"], changed) for r, changed, _ in rows
                                      if since < changed <= snapshot)

                    assert newer(indexed) == newer(scanned), (single, since, snapshot)
