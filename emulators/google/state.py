"""The stand-in's calendars and events, and every rule the Calendar API applies to them.

References (one per method implemented here):
* https://developers.google.com/workspace/calendar/api/v3/reference/calendarList/list
* https://developers.google.com/workspace/calendar/api/v3/reference/calendars (get, insert)
* https://developers.google.com/workspace/calendar/api/v3/reference/events
  (insert, import, get, list, patch, update, delete, instances)
* https://developers.google.com/workspace/calendar/api/guides/sync
* https://developers.google.com/calendar/api/guides/version-resources (etag / If-Match)

No sockets and no wall clock here: the HTTP layer passes decoded values in and gets
resources (plain JSON-able dicts) or a `GoogleApiError` back, and the clock is injected, so
the same state drives the HTTP server, persistence and direct unit tests. Callers hold
`state.lock` around each call; the HTTP server serves requests on several threads.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from emulators.google import errors, listing, recurrence
from emulators.google.auth import Accounts, User
from emulators.google.times import When, format_timestamp, parse_when, shift, zone

Clock = Callable[[], datetime]
Json = dict[str, Any]

# Events.id rules, verbatim from the reference: "characters allowed in the ID are those used
# in base32hex encoding, i.e. lowercase letters a-v and digits 0-9 ... the length of the ID
# must be between 5 and 1024 characters".
EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")

# Fields the server owns: whatever a client sends for them on insert/update is ignored.
READ_ONLY = frozenset(
    {"kind", "etag", "htmlLink", "created", "updated", "creator", "recurringEventId",
     "originalStartTime", "hangoutLink", "privateCopy", "locked"}
)
# "Updating event reminders will not cause this [updated] to change."
NOT_MAIN_DATA = frozenset({"reminders", "etag", "updated"})


@dataclass(slots=True)
class StoredEvent:
    resource: Json
    # Position in the calendar's change history; sync tokens are positions in it.
    changed: int
    # Creation order, which is the default listing order.
    order: int


@dataclass(slots=True)
class Calendar:
    id: str
    owner: str
    summary: str
    time_zone: str
    etag: str
    primary: bool
    description: str | None = None
    events: dict[str, StoredEvent] = field(default_factory=dict)
    # The change index: every event's id at the position of its last change, oldest first,
    # so a sync-token list reads the changes since its position without a scan.
    changes: OrderedDict[str, int] = field(default_factory=OrderedDict)
    # The latest `updated` of its events (the collection's `updated` in events.list).
    updated: str = ""

    def put(self, stored: StoredEvent) -> None:
        """Keep `stored` (a new position in the history: the latest) and index it."""
        event_id = stored.resource["id"]
        self.events[event_id] = stored
        self.changes[event_id] = stored.changed
        self.changes.move_to_end(event_id)
        self.updated = max(self.updated, stored.resource.get("updated") or "")

    def reindex(self) -> None:
        """The index rebuilt from the events (after they were loaded in another order)."""
        ordered = sorted(self.events.values(), key=lambda s: s.changed)
        self.changes = OrderedDict((s.resource["id"], s.changed) for s in ordered)
        self.updated = max((s.resource.get("updated") or "" for s in ordered), default="")

    def changed_since(self, since: int, until: int) -> list[StoredEvent]:
        """The events whose last change is after position `since` and at or before
        `until`, in the order of those changes: O(changes after `since`)."""
        out = []
        for event_id, changed in reversed(self.changes.items()):
            if changed <= since:
                break
            if changed <= until:
                out.append(self.events[event_id])
        out.reverse()
        return out


class Persistence(Protocol):
    """Where changes go besides memory (`store.SqliteStore`), one transaction per call."""

    @contextmanager
    def transaction(self) -> Iterator[None]: ...

    def save_user(self, user: User) -> None: ...

    def save_calendar(self, calendar: Calendar) -> None: ...

    def save_event(self, calendar_id: str, event: StoredEvent) -> None: ...

    def save_counter(self, counter: int) -> None: ...


class _NoPersistence:
    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield

    def save_user(self, user: User) -> None:
        pass

    def save_calendar(self, calendar: Calendar) -> None:
        pass

    def save_event(self, calendar_id: str, event: StoredEvent) -> None:
        pass

    def save_counter(self, counter: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One mutating call, kept so tests can assert e.g. that calsync sends sendUpdates=none."""

    method: str
    user: str
    calendar_id: str
    event_id: str | None
    send_updates: str | None


def _encode_token(payload: Json) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> Json | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


class GoogleCalendarState:
    def __init__(self, clock: Clock, persistence: Persistence | None = None) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.accounts = Accounts()
        self.calendars: dict[str, Calendar] = {}
        # One counter for the whole stand-in: etags and sync positions both come from it.
        self.counter = 0
        # Names this history in sync tokens: a token from another run of the stand-in
        # (restarted without --db: the positions begin again) is unknown, 410. With --db
        # the history, and this, are kept.
        self.incarnation = uuid.uuid4().hex[:16]
        self.calls: list[RecordedCall] = []
        self.change_listeners: list[Callable[[str], None]] = []
        self.persistence: Persistence = persistence or _NoPersistence()

    # -- users and calendars ---------------------------------------------------------------

    def add_user(self, email: str, time_zone: str = "UTC") -> User:
        with self.persistence.transaction():
            user = self.accounts.add(email, time_zone)
            if email not in self.calendars:
                self._new_calendar(email, email, email, time_zone, primary=True)
            self.persistence.save_user(user)
            return user

    def authenticate(self, token: str | None) -> User:
        if not token:
            raise errors.auth_error()
        user = self.accounts.user_for_access_token(token, self.clock())
        if user is None:
            raise errors.auth_error()
        return user

    def refresh(self, form: dict[str, str]) -> dict[str, object]:
        with self.persistence.transaction():
            user, answer = self.accounts.refresh(form, self.clock())
            self.persistence.save_user(user)
            return answer

    def expire_access_tokens(self, email: str) -> None:
        self._known_user(email)
        with self.persistence.transaction():
            self.accounts.expire_access_tokens(email)
            self.persistence.save_user(self.accounts.users[email])

    def expire_sync_tokens(self, email: str) -> None:
        self._known_user(email)
        with self.persistence.transaction():
            self.accounts.expire_sync_tokens(email)
            self.persistence.save_user(self.accounts.users[email])

    def _known_user(self, email: str) -> User:
        try:
            return self.accounts.users[email]
        except KeyError:
            raise errors.not_found() from None

    def _next(self) -> int:
        self.counter += 1
        self.persistence.save_counter(self.counter)
        return self.counter

    def _etag(self, counter: int) -> str:
        # Real event etags are a quoted 16-digit decimal; any change gives a new one.
        return f'"{3_500_000_000_000_000 + counter}"'

    def _new_calendar(
        self, calendar_id: str, owner: str, summary: str, time_zone: str, primary: bool
    ) -> Calendar:
        calendar = Calendar(calendar_id, owner, summary, time_zone,
                            self._etag(self._next()), primary)
        self.calendars[calendar_id] = calendar
        self.persistence.save_calendar(calendar)
        return calendar

    def calendar_for(self, user: User, calendar_id: str) -> Calendar:
        """Resolve `primary`; another user's calendar is invisible (404), as at Google."""
        if calendar_id == "primary":
            calendar_id = user.email
        calendar = self.calendars.get(calendar_id)
        if calendar is None or calendar.owner != user.email:
            raise errors.not_found()
        return calendar

    def calendar_resource(self, calendar: Calendar) -> Json:
        out: Json = {"kind": "calendar#calendar", "etag": calendar.etag, "id": calendar.id,
                     "summary": calendar.summary}
        if calendar.description:
            out["description"] = calendar.description
        out["timeZone"] = calendar.time_zone
        out["conferenceProperties"] = {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}
        return out

    def calendar_list_entry(self, calendar: Calendar) -> Json:
        out = self.calendar_resource(calendar)
        out["kind"] = "calendar#calendarListEntry"
        out.update({"colorId": "14", "backgroundColor": "#9fe1e7", "foregroundColor": "#000000",
                    "selected": True, "accessRole": "owner", "defaultReminders": []})
        if calendar.primary:
            out["primary"] = True
        return out

    def calendar_list(self, user: User) -> Json:
        items = [self.calendar_list_entry(c) for c in self.calendars.values()
                 if c.owner == user.email]
        return {"kind": "calendar#calendarList", "etag": self._etag(self.counter),
                "nextSyncToken": _encode_token({"l": user.email, "n": self.counter}),
                "items": items}

    def insert_calendar(self, user: User, body: Json) -> Json:
        summary = body.get("summary")
        if not summary:
            raise errors.required("Missing title.")
        time_zone = body.get("timeZone") or user.time_zone
        zone(time_zone)
        with self.persistence.transaction():
            calendar_id = f"{uuid.uuid4().hex[:26]}@group.calendar.google.com"
            calendar = self._new_calendar(calendar_id, user.email, summary, time_zone, False)
            calendar.description = body.get("description")
            self.persistence.save_calendar(calendar)
        return self.calendar_resource(calendar)

    # -- events: writes --------------------------------------------------------------------

    def _record(self, method: str, user: User, calendar: Calendar, event_id: str | None,
                params: dict[str, list[str]]) -> None:
        send = params.get("sendUpdates", [None])[-1]
        if send is None and "sendNotifications" in params:
            # The deprecated boolean maps onto the newer parameter.
            send = "all" if params["sendNotifications"][-1] == "true" else "none"
        self.calls.append(RecordedCall(method, user.email, calendar.id, event_id, send))

    def _changed(self, calendar: Calendar) -> None:
        for listener in list(self.change_listeners):
            listener(calendar.id)

    def _validate_times(self, resource: Json) -> tuple[When, When]:
        start = parse_when(resource.get("start"), "start")
        end = parse_when(resource.get("end"), "end")
        if start.all_day != end.all_day:
            raise errors.invalid("Invalid start time.")
        tz = zone("UTC")
        if end.as_instant(tz) < start.as_instant(tz):
            raise errors.time_range_empty()
        if resource.get("recurrence"):
            if not isinstance(resource["recurrence"], list):
                raise errors.invalid("Invalid recurrence rule.")
            recurrence.expand(resource["recurrence"], start)
        return start, end

    def _normalise_times(self, resource: Json) -> None:
        start, end = self._validate_times(resource)
        resource["start"] = start.to_json()
        resource["end"] = end.to_json()

    def _store(self, calendar: Calendar, resource: Json, order: int | None = None) -> Json:
        counter = self._next()
        resource["etag"] = self._etag(counter)
        existing = calendar.events.get(resource["id"])
        stored = StoredEvent(resource, counter,
                             order if order is not None else
                             (existing.order if existing else counter))
        calendar.put(stored)
        self.persistence.save_event(calendar.id, stored)
        return resource

    def _base_resource(self, user: User, calendar: Calendar, event_id: str) -> Json:
        now = format_timestamp(self.clock())
        eid = base64.urlsafe_b64encode(f"{event_id} {calendar.id}".encode()).decode().rstrip("=")
        return {
            "kind": "calendar#event", "etag": "", "id": event_id, "status": "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
            "created": now, "updated": now,
            "creator": {"email": user.email, "self": True},
            "organizer": {"email": calendar.id, "self": True},
        }

    def insert_event(self, user: User, calendar_id: str, body: Json,
                     params: dict[str, list[str]], imported: bool = False) -> Json:
        calendar = self.calendar_for(user, calendar_id)
        with self.persistence.transaction():
            if imported:
                resource = self._import(user, calendar, body)
            else:
                resource = self._insert(user, calendar, body)
            self._record("import" if imported else "insert", user, calendar,
                         resource["id"], params)
        self._changed(calendar)
        return copy.deepcopy(resource)

    def _insert(self, user: User, calendar: Calendar, body: Json) -> Json:
        event_id = body.get("id")
        if event_id is not None:
            if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
                raise errors.invalid("Invalid resource id value.")
            # Ids stay taken after delete: the cancelled tombstone still holds it.
            if event_id in calendar.events:
                raise errors.duplicate()
        else:
            # uuid4 hex is valid base32hex, as the reference recommends for clients too.
            event_id = uuid.uuid4().hex
        resource = self._base_resource(user, calendar, event_id)
        resource.update({k: v for k, v in body.items() if k not in READ_ONLY and k != "id"})
        resource["id"] = event_id
        resource.setdefault("status", "confirmed")
        self._normalise_times(resource)
        resource.setdefault("iCalUID", f"{event_id}@google.com")
        resource.setdefault("sequence", 0)
        resource.setdefault("reminders", {"useDefault": True})
        resource.setdefault("eventType", "default")
        return self._store(calendar, _ordered(resource))

    def _import(self, user: User, calendar: Calendar, body: Json) -> Json:
        ical_uid = body.get("iCalUID")
        if not ical_uid:
            raise errors.required("Missing iCalUID.")
        # Importing an iCalUID the calendar already holds updates that event in place.
        existing = next((s for s in calendar.events.values()
                         if s.resource.get("iCalUID") == ical_uid
                         and "recurringEventId" not in s.resource), None)
        if existing is None:
            resource = self._base_resource(user, calendar, uuid.uuid4().hex)
        else:
            old = existing.resource
            resource = {k: old[k] for k in ("kind", "etag", "id", "htmlLink", "created",
                                            "creator", "organizer") if k in old}
            resource["updated"] = format_timestamp(self.clock())
        resource.update({k: v for k, v in body.items() if k not in READ_ONLY and k != "id"})
        if "organizer" in body:
            # "organizer" is writable on import only.
            resource["organizer"] = body["organizer"]
        resource.setdefault("status", "confirmed")
        self._normalise_times(resource)
        resource.setdefault("sequence", 0)
        resource.setdefault("reminders", {"useDefault": True})
        resource.setdefault("eventType", "default")
        return self._store(calendar, _ordered(resource))

    def _check_if_match(self, current: Json, if_match: str | None) -> None:
        if if_match is not None and if_match != "*" and if_match != current["etag"]:
            raise errors.condition_not_met()

    def _editable(self, calendar: Calendar, event_id: str) -> Json:
        """The current resource for a write: a stored event or a synthesised instance."""
        stored = calendar.events.get(event_id)
        if stored is not None:
            return stored.resource
        instance = self._synthesised_instance(calendar, event_id)
        if instance is None:
            raise errors.not_found()
        return instance

    def update_event(self, user: User, calendar_id: str, event_id: str, body: Json,
                     params: dict[str, list[str]], if_match: str | None,
                     patch: bool) -> Json:
        calendar = self.calendar_for(user, calendar_id)
        with self.persistence.transaction():
            current = self._editable(calendar, event_id)
            self._check_if_match(current, if_match)
            if patch:
                resource = _merge_patch(copy.deepcopy(current),
                                        {k: v for k, v in body.items() if k not in READ_ONLY})
            else:
                resource = {k: v for k, v in current.items() if k in READ_ONLY}
                resource.update({k: v for k, v in body.items() if k not in READ_ONLY})
                resource.setdefault("status", "confirmed")
                resource.setdefault("reminders", {"useDefault": True})
            for fixed in ("id", "iCalUID", "eventType"):
                if fixed in current:
                    resource[fixed] = current[fixed]
            if "organizer" in current:
                resource["organizer"] = current["organizer"]
            if "recurringEventId" in current:
                # Instances cannot carry their own recurrence.
                resource.pop("recurrence", None)
            self._normalise_times(resource)
            resource["sequence"] = _next_sequence(current, resource, body)
            if _main_data(resource) != _main_data(current):
                resource["updated"] = format_timestamp(self.clock())
            else:
                resource["updated"] = current.get("updated")
            resource = self._store(calendar, _ordered(resource))
            self._record("patch" if patch else "update", user, calendar, event_id, params)
        self._changed(calendar)
        return copy.deepcopy(resource)

    def delete_event(self, user: User, calendar_id: str, event_id: str,
                     params: dict[str, list[str]], if_match: str | None) -> None:
        calendar = self.calendar_for(user, calendar_id)
        with self.persistence.transaction():
            current = self._editable(calendar, event_id)
            if current.get("status") == "cancelled":
                raise errors.deleted()
            self._check_if_match(current, if_match)
            self._cancel(calendar, current)
            if current.get("recurrence"):
                # Deleting a series deletes its modified instances with it.
                for stored in list(calendar.events.values()):
                    if (stored.resource.get("recurringEventId") == event_id
                            and stored.resource.get("status") != "cancelled"):
                        self._cancel(calendar, stored.resource)
            self._record("delete", user, calendar, event_id, params)
        self._changed(calendar)

    def _cancel(self, calendar: Calendar, current: Json) -> None:
        resource = copy.deepcopy(current)
        resource["status"] = "cancelled"
        resource["updated"] = format_timestamp(self.clock())
        self._store(calendar, resource)

    # -- events: reads ---------------------------------------------------------------------

    def get_event(self, user: User, calendar_id: str, event_id: str) -> Json:
        calendar = self.calendar_for(user, calendar_id)
        # "The get method always returns them [cancelled events]."
        return copy.deepcopy(self._editable(calendar, event_id))

    def _synthesised_instance(self, calendar: Calendar, event_id: str) -> Json | None:
        master_id, sep, _suffix = event_id.rpartition("_")
        master = calendar.events.get(master_id) if sep else None
        if master is None or not master.resource.get("recurrence"):
            return None
        if master.resource.get("status") == "cancelled":
            return None
        for instance in self._instances_of(master.resource):
            if instance["id"] == event_id:
                return instance
        return None

    def _instances_of(self, master: Json) -> list[Json]:
        """A series' instances without overrides applied, in order."""
        start = parse_when(master["start"], "start")
        end = parse_when(master["end"], "end")
        out = []
        for occurrence in recurrence.expand(master["recurrence"], start):
            new_start = recurrence.occurrence_start(occurrence.start, start)
            instance = {k: copy.deepcopy(v) for k, v in master.items() if k != "recurrence"}
            instance["id"] = recurrence.instance_id(master["id"], occurrence.start)
            instance["start"] = new_start.to_json()
            anchor = new_start.instant if new_start.instant is not None else new_start.day
            assert anchor is not None
            instance["end"] = shift(end, anchor, start).to_json()
            instance["recurringEventId"] = master["id"]
            instance["originalStartTime"] = new_start.to_json()
            out.append(_ordered(instance))
        return out

    def expanded_instances(self, calendar: Calendar, master: StoredEvent) -> list[
            tuple[Json, int, int]]:
        """(instance, changed, order) for each instance, overrides applied."""
        out = []
        for instance in self._instances_of(master.resource):
            override = calendar.events.get(instance["id"])
            if override is not None:
                out.append((override.resource, max(override.changed, master.changed),
                            master.order))
            else:
                out.append((instance, master.changed, master.order))
        return out

    def list_events(self, user: User, calendar_id: str,
                    params: dict[str, list[str]]) -> Json:
        calendar = self.calendar_for(user, calendar_id)
        return listing.list_events(self, user, calendar, params)

    def instances(self, user: User, calendar_id: str, event_id: str,
                  params: dict[str, list[str]]) -> Json:
        calendar = self.calendar_for(user, calendar_id)
        stored = calendar.events.get(event_id)
        if stored is None:
            raise errors.not_found()
        return listing.list_instances(self, calendar, stored, params)

    def calendar_zone_now(self, calendar: Calendar) -> datetime:
        return self.clock().astimezone(zone(calendar.time_zone))

    def sync_token(self, user: User, calendar: Calendar, position: int) -> str:
        return _encode_token({"c": calendar.id, "n": position, "e": user.sync_epoch,
                              "i": self.incarnation})

    def read_sync_token(self, user: User, calendar: Calendar, token: str) -> int:
        """The position a sync token names; 410 fullSyncRequired for a token this history
        never handed out (malformed, another calendar's, another run's) or one the user's
        tokens were expired past."""
        payload = _decode_token(token)
        if (payload is None or payload.get("c") != calendar.id
                or payload.get("e") != user.sync_epoch
                or payload.get("i") != self.incarnation
                or not isinstance(payload.get("n"), int) or payload["n"] > self.counter):
            raise errors.full_sync_required()
        return int(payload["n"])

    encode_token = staticmethod(_encode_token)
    decode_token = staticmethod(_decode_token)


def _merge_patch(target: Json, patch: Json) -> Json:
    """Google's patch semantics: objects merge field by field, arrays and scalars replace,
    and null removes (the extended-properties guide deletes a key by patching it to null)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key] = _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _times_key(resource: Json) -> tuple[Any, Any]:
    return resource.get("start"), resource.get("end")


def _next_sequence(current: Json, resource: Json, body: Json) -> int:
    sequence = int(current.get("sequence", 0))
    if _times_key(resource) != _times_key(current) or resource.get("recurrence") != current.get(
            "recurrence"):
        # A change of time is a significant change to an iCalendar event (RFC 5546 2.1.4).
        sequence += 1
    sent = body.get("sequence")
    if isinstance(sent, int) and sent > sequence:
        sequence = sent
    return sequence


def _main_data(resource: Json) -> Json:
    return {k: v for k, v in resource.items() if k not in NOT_MAIN_DATA}


_ORDER = ("kind", "etag", "id", "status", "htmlLink", "created", "updated", "summary",
          "description", "location", "colorId", "creator", "organizer", "start", "end",
          "endTimeUnspecified", "recurrence", "recurringEventId", "originalStartTime",
          "transparency", "visibility", "iCalUID", "sequence", "attendees",
          "extendedProperties", "reminders", "eventType")


def _ordered(resource: Json) -> Json:
    """Google's field order, so a response reads like a real one."""
    out = {k: resource[k] for k in _ORDER if k in resource}
    out.update({k: v for k, v in resource.items() if k not in out})
    return out


def utc_now() -> datetime:
    """The default clock; tests pass their own."""
    return datetime.now(UTC)


__all__ = ["Calendar", "GoogleCalendarState", "RecordedCall", "StoredEvent", "date", "utc_now"]
