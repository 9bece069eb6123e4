"""`events.list` and `events.instances`: filters, ordering, pages and sync tokens.

References:
* https://developers.google.com/workspace/calendar/api/v3/reference/events/list
* https://developers.google.com/workspace/calendar/api/v3/reference/events/instances
* https://developers.google.com/workspace/calendar/api/guides/sync

How the rules are met:
* A page token carries the snapshot position taken on the first page plus the sort key of
  the last item returned ("The information needed for the server to generate a correct
  sync token is encoded in the page token"). Later pages only show events unchanged since
  that snapshot, continuing after that key, so an event changed while a client pages is not
  lost: it is newer than the snapshot and comes back in the next incremental sync.
* `nextSyncToken` is on the last page only, `nextPageToken` on every other page.
* An incremental list returns every event changed after the token's position, deleted ones
  included whatever `showDeleted` says; without `showDeleted` a deleted event carries only
  its id and status ("incremental sync requests with showDeleted set to false will not
  return these details"). It reads the calendar's change index, not every event: its cost
  follows the changes since the token, not the calendar's size.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from emulators.google import errors, recurrence
from emulators.google.times import format_timestamp, parse_timestamp, parse_when, shift, zone

if TYPE_CHECKING:
    from emulators.google.auth import User
    from emulators.google.state import Calendar, GoogleCalendarState, StoredEvent

Json = dict[str, Any]
Row = tuple[Json, int, int]  # (resource, changed position, creation order)

# Verbatim list from the syncToken parameter's description.
FORBIDDEN_WITH_SYNC_TOKEN = ("iCalUID", "orderBy", "privateExtendedProperty", "q",
                             "sharedExtendedProperty", "timeMin", "timeMax", "updatedMin")
DEFAULT_MAX_RESULTS = 250
MAX_MAX_RESULTS = 2500


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return _one(params, name) == "true"


def _max_results(params: dict[str, list[str]]) -> int:
    raw = _one(params, "maxResults")
    if raw is None:
        return DEFAULT_MAX_RESULTS
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_parameter("maxResults", "Invalid value for: maxResults") from None
    if value < 1:
        raise errors.invalid_parameter("maxResults", "Invalid value for: maxResults")
    # Larger values are clamped, not refused: "maxResults ... never more than 2500".
    return min(value, MAX_MAX_RESULTS)


def _span(resource: Json, calendar_zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = parse_when(resource["start"], "start")
    end = parse_when(resource["end"], "end")
    first = start.as_instant(calendar_zone)
    last_end = end.as_instant(calendar_zone)
    if resource.get("recurrence"):
        occurrences = recurrence.expand(resource["recurrence"], start)
        if occurrences:
            last = occurrences[-1].start
            last_end = shift(end, last, start).as_instant(calendar_zone)
    return first, last_end


def _matches_text(resource: Json, query: str) -> bool:
    people = [*resource.get("attendees", []), resource.get("organizer") or {},
              resource.get("creator") or {}]
    haystack = " ".join(
        str(resource.get(k, "")) for k in ("summary", "description", "location")
    ) + " " + " ".join(f"{p.get('email', '')} {p.get('displayName', '')}" for p in people)
    haystack = haystack.lower()
    return all(term.lower() in haystack for term in query.split())


def _matches_properties(resource: Json, scope: str, constraints: list[str]) -> bool:
    # "Multiple constraints ... return events that match all given constraints."
    props = (resource.get("extendedProperties") or {}).get(scope) or {}
    for constraint in constraints:
        key, sep, value = constraint.partition("=")
        if not sep:
            raise errors.invalid_parameter(f"{scope}ExtendedProperty",
                                           f"Invalid value for: {constraint}")
        if props.get(key) != value:
            return False
    return True


def _minimal_tombstone(resource: Json) -> Json:
    out: Json = {k: resource[k] for k in ("kind", "etag", "id", "status") if k in resource}
    # Cancelled exceptions "are only guaranteed to have values for the id, recurringEventId
    # and originalStartTime fields populated".
    for key in ("recurringEventId", "originalStartTime"):
        if key in resource:
            out[key] = resource[key]
    return out


def _sort_key(row: Row, order_by: str | None, calendar_zone: ZoneInfo) -> list[Any]:
    resource, _changed, order = row
    start = parse_when(resource["start"], "start").as_instant(calendar_zone)
    start_text = start.astimezone(UTC).isoformat()
    if order_by == "startTime":
        return [start_text, resource["id"]]
    if order_by == "updated":
        return [resource.get("updated", ""), resource["id"]]
    return [order, start_text, resource["id"]]


def _page_state(state: GoogleCalendarState, params: dict[str, list[str]]) -> tuple[
        int, list[Any] | None]:
    token = _one(params, "pageToken")
    if token is None:
        return state.counter, None
    payload = state.decode_token(token)
    if payload is None or not isinstance(payload.get("s"), int) or "k" not in payload:
        raise errors.invalid_parameter("pageToken", "Invalid page token value.")
    return int(payload["s"]), payload["k"]


def _touched(calendar: Calendar, since: int, snapshot: int, single: bool) -> list[StoredEvent]:
    """What an incremental list reads: the events changed after `since` (up to the
    snapshot), from the calendar's change index; with singleEvents also the series of each
    changed override, whose expansion carries it. Rows of the others cannot be newer than
    `since`, so a scan of the calendar would find no more."""
    changed = calendar.changed_since(since, snapshot)
    if not single:
        return changed
    out: dict[str, StoredEvent] = {}
    for stored in changed:
        master_id = stored.resource.get("recurringEventId")
        master = calendar.events.get(master_id) if isinstance(master_id, str) else None
        if master is not None:
            out.setdefault(master.resource["id"], master)
        out.setdefault(stored.resource["id"], stored)
    return list(out.values())


def _rows(state: GoogleCalendarState, calendar: Calendar, single: bool,
          incremental: bool, events: Iterable[StoredEvent]) -> list[Row]:
    rows: list[Row] = []
    for stored in events:
        resource = stored.resource
        if single and resource.get("recurrence"):
            if resource.get("status") == "cancelled":
                # Deviation: Google reports a deleted series as its cancelled instances; the
                # stand-in reports the series' own tombstone on incremental sync only.
                if incremental:
                    rows.append((resource, stored.changed, stored.order))
                continue
            rows.extend(state.expanded_instances(calendar, stored))
            continue
        if single and "recurringEventId" in resource:
            continue  # already applied as an override in its series' expansion
        rows.append((resource, stored.changed, stored.order))
    return rows


def list_events(state: GoogleCalendarState, user: User, calendar: Calendar,
                params: dict[str, list[str]]) -> Json:
    sync_token = _one(params, "syncToken")
    since: int | None = None
    if sync_token is not None:
        clashing = [name for name in FORBIDDEN_WITH_SYNC_TOKEN if name in params]
        if clashing:
            raise errors.invalid_parameter(
                clashing[0], f"Sync token cannot be used with the {clashing[0]} parameter.")
        since = state.read_sync_token(user, calendar, sync_token)
    max_results = _max_results(params)
    single = _flag(params, "singleEvents")
    show_deleted = _flag(params, "showDeleted")
    order_by = _one(params, "orderBy")
    if order_by not in (None, "startTime", "updated"):
        raise errors.invalid_parameter("orderBy", f"Invalid value for: {order_by}")
    if order_by == "startTime" and not single:
        # orderBy=startTime: "only available when querying single events".
        raise errors.bad_request(
            "The requested ordering is not available for the particular query.")
    time_min = _timestamp(params, "timeMin")
    time_max = _timestamp(params, "timeMax")
    if time_min is not None and time_max is not None and time_max <= time_min:
        raise errors.time_range_empty()
    updated_min = _timestamp(params, "updatedMin")
    ical_uid = _one(params, "iCalUID")
    query = _one(params, "q")
    private = params.get("privateExtendedProperty", [])
    shared = params.get("sharedExtendedProperty", [])
    snapshot, after = _page_state(state, params)
    calendar_zone = zone(calendar.time_zone)
    # updatedMin and syncToken both mean "changes": deleted events always come back.
    changes_only = since is not None or updated_min is not None

    events: Iterable[StoredEvent] = (
        calendar.events.values() if since is None else _touched(calendar, since, snapshot, single)
    )
    selected: list[Row] = []
    for row in _rows(state, calendar, single, since is not None, events):
        resource, changed, _order = row
        if changed > snapshot:
            continue
        cancelled = resource.get("status") == "cancelled"
        if since is not None:
            if changed <= since:
                continue
            selected.append(row)
            continue
        if updated_min is not None:
            if datetime.fromisoformat(resource["updated"]) < updated_min:
                continue
        elif cancelled and not show_deleted and (single or "recurringEventId" not in resource):
            # "Cancelled instances of recurring events (but not the underlying recurring
            # event) will still be included if showDeleted and singleEvents are both False."
            continue
        if time_min is not None or time_max is not None:
            first, last = _span(resource, calendar_zone)
            if time_min is not None and last <= time_min:
                continue  # "Lower bound (exclusive) for an event's end time"
            if time_max is not None and first >= time_max:
                continue  # "Upper bound (exclusive) for an event's start time"
        if ical_uid is not None and resource.get("iCalUID") != ical_uid:
            continue
        if query and not _matches_text(resource, query):
            continue
        if private and not _matches_properties(resource, "private", private):
            continue
        if shared and not _matches_properties(resource, "shared", shared):
            continue
        selected.append(row)

    keyed = sorted(((_sort_key(r, order_by, calendar_zone), r) for r in selected),
                   key=lambda pair: pair[0])
    if after is not None:
        keyed = [pair for pair in keyed if pair[0] > after]
    page = keyed[:max_results]
    items = []
    for _key, (resource, _changed, _order) in page:
        if resource.get("status") == "cancelled" and changes_only and not show_deleted:
            items.append(_minimal_tombstone(resource))
        else:
            items.append(copy.deepcopy(resource))
    out = _collection(state, calendar, snapshot, items)
    if len(keyed) > max_results:
        out["nextPageToken"] = state.encode_token({"s": snapshot, "k": page[-1][0]})
    else:
        out["nextSyncToken"] = state.sync_token(user, calendar, snapshot)
    return out


def _timestamp(params: dict[str, list[str]], name: str) -> datetime | None:
    raw = _one(params, name)
    return parse_timestamp(raw, name) if raw is not None else None


def _collection(state: GoogleCalendarState, calendar: Calendar, snapshot: int,
                items: list[Json]) -> Json:
    updated = calendar.updated or format_timestamp(state.clock())
    out: Json = {"kind": "calendar#events", "etag": f'"p{snapshot:014x}g"',
                 "summary": calendar.summary}
    if calendar.description:
        out["description"] = calendar.description
    out.update({"updated": updated, "timeZone": calendar.time_zone, "accessRole": "owner",
                "defaultReminders": [], "items": items})
    return out


def list_instances(state: GoogleCalendarState, calendar: Calendar, master: StoredEvent,
                   params: dict[str, list[str]]) -> Json:
    if master.resource.get("status") == "cancelled":
        raise errors.deleted()
    max_results = _max_results(params)
    show_deleted = _flag(params, "showDeleted")
    time_min = _timestamp(params, "timeMin")
    time_max = _timestamp(params, "timeMax")
    if time_min is not None and time_max is not None and time_max <= time_min:
        raise errors.time_range_empty()
    original_start = _one(params, "originalStart")
    calendar_zone = zone(calendar.time_zone)
    rows = state.expanded_instances(calendar, master) if master.resource.get(
        "recurrence") else []
    items = []
    for resource, _changed, _order in rows:
        if resource.get("status") == "cancelled" and not show_deleted:
            continue
        first, last = _span(resource, calendar_zone)
        if time_min is not None and last <= time_min:
            continue
        if time_max is not None and first >= time_max:
            continue
        if original_start is not None:
            wanted = parse_timestamp(original_start, "originalStart")
            original = parse_when(resource["originalStartTime"], "originalStartTime")
            if original.as_instant(calendar_zone) != wanted:
                continue
        items.append(copy.deepcopy(resource))
    offset = 0
    token = _one(params, "pageToken")
    if token is not None:
        payload = state.decode_token(token)
        if payload is None or not isinstance(payload.get("o"), int):
            raise errors.invalid_parameter("pageToken", "Invalid page token value.")
        offset = payload["o"]
    page = items[offset:offset + max_results]
    out = _collection(state, calendar, state.counter, page)
    if offset + max_results < len(items):
        out["nextPageToken"] = state.encode_token({"o": offset + max_results})
    return out
