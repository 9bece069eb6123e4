"""Honest in-memory calendars: the `GoogleBackend` and `ExchangeBackend` of
sync/backends/base.py without a network, for fast tests of what decides and writes.

"Honest" means they answer as the servers do wherever calsync can tell (the contract
suite, tests/sync/backends/test_contract.py, runs the same expectations against these and
against the real clients talking to the stand-ins):

- Google: every write gives the event a new etag; If-Match with another etag is 412
  conditionNotMet (GoogleConflict); a deleted event stays as a tombstone (status
  "cancelled", still returned by get) and its id stays taken (insert: 409 duplicate;
  delete again: 410 deleted); an unknown id is 404 notFound. events.list: a full list
  leaves deleted events out, an incremental one (sync token) returns every event changed
  since, deleted ones as minimal tombstones; a token from before `expire_sync_tokens` is
  410 fullSyncRequired.
  https://developers.google.com/workspace/calendar/api/guides/sync
- Exchange: every write gives the item a new ChangeKey; UpdateItem with another ChangeKey
  is ErrorIrresolvableConflict (ExchangeConflict); SyncFolderItems reports an item
  created since the state as one create (whatever happened to it after), an item that
  existed and changed as an update, one that existed and is gone as a delete, and
  nothing for one created and deleted in between; a SyncState it did not give is
  ErrorInvalidSyncStateData.
  https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderitems

  Series: a master's occurrences come from its pattern (as mapping/exceptions.py expands
  it), each with an ItemId of its own; GetItem takes it, UpdateItem makes it an Exception
  (its own ChangeKey; the master's changes too, and SyncFolderItems reports the master),
  DeleteItem makes it a DeletedOccurrence; the master lists both (ModifiedOccurrences,
  DeletedOccurrences); a change of the series' start or pattern discards them.
  https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/calendars-and-ews-in-exchange

Not modelled: Google's instances (series deletes included), a series whose first start its
pattern skips (Exchange moves it onto the first occurrence), time zones beyond what
`timeMin` needs, free/busy, attendees' copies. `fail_next(error)` makes the next call
raise a given error (an outage, a throttle) for tests of what the caller does with it.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from sync.backends.base import (
    GOOGLE_EVENT_FIELD,
    READ_ONLY_ITEM_FIELDS,
    CalendarResource,
    Channel,
    ChannelRequest,
    EventsPage,
    ExchangeBackend,
    ExchangeConflict,
    ExchangeError,
    GoogleBackend,
    GoogleConflict,
    GoogleError,
    ItemChange,
    google_event_of,
    register_google_event_field,
    set_differences,
)

if TYPE_CHECKING:
    from exchangelib.ewsdatetime import EWSDateTime
    from exchangelib.items import CalendarItem

    from mapping.event import GoogleEvent

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Google's event ids: base32hex characters, 5 to 1024 of them (events.insert, `id`).
EVENT_ID: Final = re.compile(r"[a-v0-9]{5,1024}")
#: Fields of an event a client cannot set (Google ignores them in a request body).
GOOGLE_READ_ONLY: Final = frozenset(
    {"kind", "etag", "htmlLink", "created", "updated", "creator", "recurringEventId",
     "originalStartTime", "hangoutLink", "privateCopy", "locked"}
)
#: The page size of events.list (Google's default).
PAGE_SIZE: Final = 250
#: How long Google keeps a push channel open without an `expiration` asked for.
CHANNEL_TTL_S: Final = 7 * 24 * 3600
BATCH_SIZE: Final = 50
BATCH_RETRIES: Final = 5


def _timestamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")[
        :-6
    ] + "Z"


def _merge_patch(target: dict[str, object], patch: Mapping[str, object]) -> None:
    """Google's patch semantics: objects merge field by field, arrays and scalars replace,
    null removes."""
    for key, value in patch.items():
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            _merge_patch(current, value)
        else:
            target[key] = copy.deepcopy(value)


def _end_instant(event: Mapping[str, object]) -> dt.datetime | None:
    """The event's end as an instant (all-day ends at midnight UTC), for timeMin."""
    end = event.get("end")
    if not isinstance(end, dict):
        return None
    if isinstance(end.get("dateTime"), str):
        when = dt.datetime.fromisoformat(end["dateTime"].replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    if isinstance(end.get("date"), str):
        return dt.datetime.fromisoformat(end["date"]).replace(tzinfo=dt.UTC)
    return None


@dataclass(slots=True)
class _Stored:
    resource: dict[str, object]
    changed: int  # the calendar's change counter at this event's last write
    order: int  # creation order: events.list's order without orderBy


class MemoryGoogle:
    """One user's Google calendar, in memory. Thread-safe."""

    def __init__(
        self,
        owner: str = "alice@example.com",
        calendar_id: str = "primary",
        *,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owner = owner
        self.calendar_id = calendar_id
        self.page_size = page_size
        self.clock = clock
        self.channels: dict[str, Channel] = {}
        #: (method, event id) of every call that reached the calendar, in order
        self.calls: list[tuple[str, str | None]] = []
        self._events: dict[str, _Stored] = {}
        self._counter = 0
        self._oldest_token = 0  # tokens from before this position are 410
        self._faults: list[GoogleError] = []
        self._lock = threading.RLock()

    # --- test controls ---------------------------------------------------------------------

    def fail_next(self, *errors: GoogleError) -> None:
        """The next calls raise these errors, one each, in order."""
        with self._lock:
            self._faults.extend(errors)

    def expire_sync_tokens(self) -> None:
        """Every sync token given so far is answered 410 fullSyncRequired, as Google does
        when it invalidates them."""
        with self._lock:
            self._oldest_token = self._counter + 1

    # --- GoogleBackend ---------------------------------------------------------------------

    def get(self, event_id: str) -> GoogleEvent | None:
        with self._lock:
            self._call("get", event_id)
            stored = self._events.get(event_id)
            return copy.deepcopy(stored.resource) if stored else None

    def insert(self, event: GoogleEvent) -> GoogleEvent:
        with self._lock:
            self._call("insert", event.get("id"))
            return self._insert(event)

    def patch(self, event_id: str, body: GoogleEvent, *, etag: str | None = None) -> GoogleEvent:
        with self._lock:
            self._call("patch", event_id)
            return self._patch(event_id, body, etag)

    def delete(self, event_id: str, *, etag: str | None = None) -> None:
        with self._lock:
            self._call("delete", event_id)
            stored = self._events.get(event_id)
            if stored is None:
                raise GoogleError(404, "notFound", "Not Found")
            if stored.resource.get("status") == "cancelled":
                raise GoogleError(410, "deleted", "Resource has been deleted")
            self._check_etag(stored, etag)
            resource = copy.deepcopy(stored.resource)
            resource["status"] = "cancelled"
            self._store(resource, stored.order)

    def list_pages(
        self, *, sync_token: str | None, time_min: str | None = None
    ) -> Iterator[EventsPage]:
        with self._lock:
            self._call("list", None)
            since = self._read_token(sync_token) if sync_token else None
            snapshot = self._counter
            rows = sorted(self._events.values(), key=lambda s: s.order)
            items: list[GoogleEvent] = []
            after = (
                dt.datetime.fromisoformat(time_min.replace("Z", "+00:00"))
                if time_min and since is None
                else None
            )
            for stored in rows:
                resource = stored.resource
                cancelled = resource.get("status") == "cancelled"
                if since is not None:
                    if stored.changed <= since:
                        continue
                    if cancelled:  # without showDeleted: only what says it is gone
                        items.append(
                            {k: resource[k] for k in ("kind", "etag", "id", "status")}
                        )
                        continue
                elif cancelled:
                    continue
                elif after is not None:
                    end = _end_instant(resource)
                    if end is not None and end <= after:
                        continue
                items.append(copy.deepcopy(resource))
        # pages of the snapshot taken above: what changes while a client pages comes back
        # in its next incremental list, as Google's page tokens arrange
        chunks = [items[i : i + self.page_size] for i in range(0, len(items), self.page_size)]
        for index, chunk in enumerate(chunks or [[]]):
            page: EventsPage = {"kind": "calendar#events", "items": chunk}
            if index < len(chunks) - 1:
                page["nextPageToken"] = f"page-{snapshot}-{index + 1}"
            else:
                page["nextSyncToken"] = f"sync-{snapshot}"
            if index:
                with self._lock:
                    self._call("list", None)
            yield page

    def insert_many(
        self,
        events: Sequence[GoogleEvent],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[GoogleEvent | GoogleError]:
        answers: list[GoogleEvent | GoogleError] = []
        for first in range(0, len(events), BATCH_SIZE):
            chunk = events[first : first + BATCH_SIZE]
            answers.extend(self._batched(lambda e: self.insert(e), chunk))
            if progress is not None:
                progress(len(chunk))
        return answers

    def patch_many(
        self, patches: Sequence[tuple[str, GoogleEvent, str | None]]
    ) -> list[GoogleEvent | GoogleError]:
        return self._batched(lambda p: self.patch(p[0], p[1], etag=p[2]), patches)

    def get_many(self, event_ids: Sequence[str]) -> list[GoogleEvent | GoogleError | None]:
        return list(self._batched(self.get, event_ids))

    def watch(self, body: ChannelRequest) -> Channel:
        with self._lock:
            self._call("watch", None)
            if not body.get("id"):
                raise GoogleError(400, "required", "Required: id")
            if body.get("type") not in ("web_hook", "webhook"):
                raise GoogleError(400, "invalid", "Invalid value for: type")
            if not str(body.get("address", "")).startswith(("http://", "https://")):
                raise GoogleError(400, "required", "Required: address")
            if body["id"] in self.channels:
                raise GoogleError(409, "duplicate", "The requested identifier already exists.")
            longest = self.clock() + CHANNEL_TTL_S
            asked = body.get("expiration")
            expiration = min(int(asked) / 1000, longest) if asked else longest
            channel: Channel = {
                "kind": "api#channel",
                "id": body["id"],
                "resourceId": uuid.uuid4().hex,
                "resourceUri": f"memory://calendars/{self.calendar_id}/events",
                "expiration": str(int(expiration * 1000)),
            }
            if "token" in body:
                channel["token"] = body["token"]
            self.channels[body["id"]] = channel
            return copy.copy(channel)

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        with self._lock:
            self._call("stop", None)
            channel = self.channels.get(channel_id)
            if channel is None or channel.get("resourceId") != resource_id:
                raise GoogleError(404, "notFound", "Not Found")
            del self.channels[channel_id]

    def calendar(self) -> CalendarResource:
        with self._lock:
            self._call("calendar", None)
            calendar_id = self.owner if self.calendar_id == "primary" else self.calendar_id
            return {"kind": "calendar#calendar", "id": calendar_id, "summary": calendar_id,
                    "timeZone": "UTC"}

    # --- inside ----------------------------------------------------------------------------

    def _call(self, method: str, event_id: object) -> None:
        self.calls.append((method, event_id if isinstance(event_id, str) else None))
        if self._faults:
            raise self._faults.pop(0)

    def _batched(self, call: Callable[[_T], _R], args: Sequence[_T]) -> list[_R | GoogleError]:
        """Each call's own answer; one that met a retryable error is made again, as the
        real client sends it again in a later batch."""
        answers: list[_R | GoogleError] = []
        for arg in args:
            for attempt in itertools.count():
                try:
                    answers.append(call(arg))
                except GoogleError as exc:
                    if exc.retryable and attempt < BATCH_RETRIES:
                        continue
                    answers.append(exc)
                break
        return answers

    def _insert(self, body: Mapping[str, object]) -> GoogleEvent:
        event_id = body.get("id")
        if event_id is not None:
            if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
                raise GoogleError(400, "invalid", "Invalid resource id value.")
            if event_id in self._events:  # a tombstone holds its id too
                raise GoogleError(409, "duplicate", "The requested identifier already exists.")
        else:
            event_id = uuid.uuid4().hex
        self._check_times(body)
        now = _timestamp(self.clock())
        resource: dict[str, object] = {
            "kind": "calendar#event",
            "id": event_id,
            "status": "confirmed",
            "created": now,
            "updated": now,
            "creator": {"email": self.owner, "self": True},
            "organizer": {"email": self.owner, "self": True},
        }
        resource.update(
            {k: copy.deepcopy(v) for k, v in body.items() if k not in GOOGLE_READ_ONLY}
        )
        resource["id"] = event_id
        resource.setdefault("iCalUID", f"{event_id}@google.com")
        resource.setdefault("sequence", 0)
        return copy.deepcopy(self._store(resource, None))

    def _patch(self, event_id: str, body: Mapping[str, object], etag: str | None) -> GoogleEvent:
        stored = self._events.get(event_id)
        if stored is None:
            raise GoogleError(404, "notFound", "Not Found")
        self._check_etag(stored, etag)
        resource = copy.deepcopy(stored.resource)
        _merge_patch(resource, {k: v for k, v in body.items() if k not in GOOGLE_READ_ONLY})
        resource["id"] = event_id
        self._check_times(resource)
        resource["updated"] = _timestamp(self.clock())
        return copy.deepcopy(self._store(resource, stored.order))

    @staticmethod
    def _check_times(resource: Mapping[str, object]) -> None:
        for name in ("start", "end"):
            when = resource.get(name)
            if not isinstance(when, dict) or not ("dateTime" in when or "date" in when):
                raise GoogleError(400, "required", f"Missing {name} time.")

    def _check_etag(self, stored: _Stored, etag: str | None) -> None:
        if etag is not None and etag != "*" and etag != stored.resource.get("etag"):
            raise GoogleConflict(412, "conditionNotMet", "Precondition Failed")

    def _store(self, resource: dict[str, object], order: int | None) -> dict[str, object]:
        self._counter += 1
        resource["etag"] = f'"{3_600_000_000_000_000 + self._counter}"'
        self._events[str(resource["id"])] = _Stored(
            resource, self._counter, self._counter if order is None else order
        )
        return resource

    def _read_token(self, token: str) -> int:
        prefix, _, position = token.partition("-")
        if prefix != "sync" or not position.isdigit():
            raise GoogleError(
                410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
            )
        value = int(position)
        if value > self._counter or value + 1 < self._oldest_token:
            raise GoogleError(
                410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
            )
        return value


@dataclass(slots=True)
class _Exception:
    model: CalendarItem  # the occurrence as modified, with its own ChangeKey


@dataclass(slots=True)
class _Item:
    model: CalendarItem
    entered: int  # change counter when it entered the calendar
    changed: int  # ... at its last write
    #: a series' modified occurrences by InstanceIndex, and its deleted ones
    exceptions: dict[int, _Exception] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)


#: An occurrence's own ItemId here: its index and its master's ItemId.
_OCCURRENCE_ID: Final = re.compile(r"AAMkOCC(\d+)\.(.+)")


class MemoryExchange:
    """One user's Exchange calendar, in memory. Thread-safe. Items are exchangelib
    CalendarItem models without an account."""

    def __init__(self, mailbox: str = "alice@example.com") -> None:
        self.mailbox = mailbox
        #: (operation, item id) of every call that reached the mailbox, in order
        self.calls: list[tuple[str, str | None]] = []
        self._items: dict[str, _Item] = {}
        self._tombstones: dict[str, tuple[int, int]] = {}  # id -> (entered, left)
        self._counter = 0
        self._faults: list[ExchangeError] = []
        self._lock = threading.RLock()
        self._folder_id = f"memory-calendar-{uuid.uuid4().hex[:12]}"
        register_google_event_field()  # items carry calsync's extended property

    def fail_next(self, *errors: ExchangeError) -> None:
        """The next calls raise these errors, one each, in order."""
        with self._lock:
            self._faults.extend(errors)

    # --- ExchangeBackend -------------------------------------------------------------------

    def calendar_item(self, item_id: str) -> CalendarItem | None:
        with self._lock:
            self._call("GetItem", item_id)
            return self._view(item_id)

    def calendar_items(self, item_ids: list[str]) -> list[CalendarItem]:
        with self._lock:
            self._call("GetItem", None)
            views = [self._view(i) for i in item_ids]
            return [v for v in views if v is not None]

    def missing(self, item_ids: Sequence[str]) -> set[str]:
        with self._lock:
            if not item_ids:
                return set()
            self._call("GetItem", None)
            return {i for i in item_ids if self._view(i) is None}

    def master_item_id(self, occurrence: CalendarItem) -> str | None:
        with self._lock:
            found = _OCCURRENCE_ID.fullmatch(str(occurrence.id))
            master = found.group(2) if found else None
            self._call("GetItem", master)
            return master if master in self._items else None

    def calendar_folder_id(self) -> str:
        with self._lock:
            self._call("GetFolder", None)
            return self._folder_id

    def all_items(self) -> list[CalendarItem]:
        with self._lock:
            self._call("FindItem", None)
            rows = sorted(self._items.items(), key=lambda i: i[1].entered)
            return [self._master_view(item_id, stored) for item_id, stored in rows]

    def create(
        self, values: Mapping[str, object], *, google_event_id: str | None = None
    ) -> tuple[str, str]:
        from exchangelib.items import CalendarItem

        with self._lock:
            self._call("CreateItem", None)
            writable = {k: v for k, v in values.items() if k not in READ_ONLY_ITEM_FIELDS}
            if google_event_id is not None:
                writable[GOOGLE_EVENT_FIELD] = google_event_id
            model = CalendarItem(**copy.deepcopy(writable))
            item_id = f"AAMkMEM{uuid.uuid4().hex}="
            self._counter += 1
            self._set_id(model, item_id)
            self._items[item_id] = _Item(model, self._counter, self._counter)
            return item_id, model.changekey

    def created_for(self, google_event_ids: Sequence[str]) -> dict[str, str]:
        with self._lock:
            if not google_event_ids:
                return {}
            self._call("FindItem", None)
            wanted = set(google_event_ids)
            found: dict[str, str] = {}
            for item_id, stored in sorted(self._items.items(), key=lambda i: i[1].entered):
                event_id = google_event_of(stored.model)
                if event_id in wanted:
                    found.setdefault(event_id, item_id)
            return found

    def update(self, item: CalendarItem, values: Mapping[str, object]) -> tuple[str, str] | None:
        with self._lock:
            changed = set_differences(item, values)
            if not changed:
                return None
            self._call("UpdateItem", item.id)
            if _OCCURRENCE_ID.fullmatch(str(item.id)):
                return self._update_occurrence(item, values, changed)
            stored = self._items.get(item.id)
            if stored is None:
                raise ExchangeError(
                    "ErrorItemNotFound", "The specified object was not found in the store."
                )
            if item.changekey != stored.model.changekey:
                raise ExchangeConflict(
                    "The send or update operation could not be performed because the change"
                    " key passed in the request does not match the current change key for"
                    " the item."
                )
            series = (stored.model.start, stored.model.recurrence)
            for name in changed:
                setattr(stored.model, name, copy.deepcopy(values[name]))
            if (stored.model.start, stored.model.recurrence) != series:
                # a series' new time or pattern discards its exceptions (Exchange regenerates it)
                stored.exceptions.clear()
                stored.deleted.clear()
            self._counter += 1
            stored.changed = self._counter
            self._set_id(stored.model, item.id)
            self._set_id(item, item.id, stored.model.changekey)
            return item.id, stored.model.changekey

    def delete(self, item_id: str, *, change_key: str | None = None) -> None:
        with self._lock:
            self._call("DeleteItem", item_id)
            if _OCCURRENCE_ID.fullmatch(item_id):
                self._delete_occurrence(item_id, change_key)
                return
            stored = self._items.get(item_id)
            if stored is None:
                return
            if change_key is not None and change_key != stored.model.changekey:
                raise ExchangeConflict()
            del self._items[item_id]
            self._counter += 1
            self._tombstones[item_id] = (stored.entered, self._counter)

    def changes(
        self, sync_state: str | None, ignore: Iterable[str] = ()
    ) -> tuple[list[ItemChange], str | None]:
        with self._lock:
            self._call("SyncFolderItems", None)
            watermark = 0
            if sync_state:
                folder, _, position = sync_state.rpartition(":")
                if folder != self._folder_id or not position.isdigit():
                    raise ExchangeError(
                        "ErrorInvalidSyncStateData", "Synchronization state data is corrupt."
                    )
                watermark = int(position)
            skip = set(ignore)
            pending: list[tuple[int, ItemChange]] = []
            for item_id, item in self._items.items():
                if item.changed > watermark and item_id not in skip:
                    kind: Literal["create", "update"] = (
                        "create" if item.entered > watermark else "update"
                    )
                    model = self._master_view(item_id, item)
                    change = ItemChange(kind, item_id, model.changekey, model)
                    pending.append((item.changed, change))
            for item_id, (entered, left) in self._tombstones.items():
                if left > watermark and entered <= watermark and item_id not in skip:
                    pending.append((left, ItemChange("delete", item_id, None)))
            pending.sort(key=lambda p: p[0])
            return [change for _, change in pending], f"{self._folder_id}:{self._counter}"

    def occurrence(self, master_id: str, index: int) -> CalendarItem | None:
        with self._lock:
            self._call("GetItem", master_id)
            return self._view(_occurrence_id(master_id, index))

    def delete_occurrence(self, occurrence: CalendarItem) -> None:
        with self._lock:
            self._call("DeleteItem", occurrence.id)
            self._delete_occurrence(str(occurrence.id), occurrence.changekey)

    # --- series ------------------------------------------------------------------------------

    def _series_starts(self, model: CalendarItem, last: int) -> list[dt.date]:
        """The original starts of a series' first `last` occurrences (fewer when it ends):
        aware UTC datetimes, dates for an all-day series."""
        from mapping.event import to_google
        from mapping.exceptions import occurrences

        return list(itertools.islice(occurrences(to_google(model)), last))

    def _view(self, item_id: str) -> CalendarItem | None:
        """GetItem's answer for an ItemId: a master or single item, or an occurrence."""
        found = _OCCURRENCE_ID.fullmatch(item_id)
        if found is None:
            stored = self._items.get(item_id)
            return self._master_view(item_id, stored) if stored is not None else None
        return self._occurrence_view(found.group(2), int(found.group(1)))

    def _master_view(self, item_id: str, stored: _Item) -> CalendarItem:
        from exchangelib.properties import ItemId
        from exchangelib.recurrence import DeletedOccurrence, Occurrence

        model = copy.deepcopy(stored.model)
        model.type = "RecurringMaster" if model.recurrence is not None else "Single"
        if model.recurrence is None:
            return model
        wanted = max([*stored.exceptions, *stored.deleted], default=0)
        starts = self._series_starts(stored.model, wanted)
        modified = []
        for index in sorted(stored.exceptions):
            exception = stored.exceptions[index].model
            modified.append(
                Occurrence(
                    _id=ItemId(id=_occurrence_id(item_id, index), changekey=exception.changekey),
                    start=exception.start,
                    end=exception.end,
                    original_start=_ews_start(starts[index - 1], stored.model),
                )
            )
        model.modified_occurrences = modified or None
        deleted = [
            DeletedOccurrence(start=_ews_start(starts[i - 1], stored.model))
            for i in sorted(stored.deleted)
        ]
        model.deleted_occurrences = deleted or None
        return model

    def _occurrence_view(self, master_id: str, index: int) -> CalendarItem | None:
        from exchangelib.ewsdatetime import EWSDate, EWSDateTime

        stored = self._items.get(master_id)
        if stored is None or stored.model.recurrence is None or index < 1:
            return None
        if index in stored.deleted:
            return None
        starts = self._series_starts(stored.model, index)
        if len(starts) < index:
            return None  # past the series' end
        original = starts[index - 1]
        exception = stored.exceptions.get(index)
        if exception is not None:
            model = copy.deepcopy(exception.model)
            model.type = "Exception"
        else:
            model = copy.deepcopy(stored.model)
            span = stored.model.end - stored.model.start
            if isinstance(original, dt.datetime):
                model.start = EWSDateTime.from_datetime(original)
            else:
                model.start = EWSDate(original.year, original.month, original.day)
            model.end = model.start + span
            model.type = "Occurrence"
            self._set_id(model, _occurrence_id(master_id, index), stored.model.changekey)
        model.recurrence = None
        model.modified_occurrences = None
        model.deleted_occurrences = None
        model.original_start = _ews_start(original, stored.model)
        model.is_recurring = True
        return model

    def _update_occurrence(
        self, item: CalendarItem, values: Mapping[str, object], changed: list[str]
    ) -> tuple[str, str]:
        found = _OCCURRENCE_ID.fullmatch(str(item.id))
        assert found is not None
        master_id, index = found.group(2), int(found.group(1))
        current = self._occurrence_view(master_id, index)
        if current is None:
            raise ExchangeError(
                "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if item.changekey != current.changekey:
            raise ExchangeConflict(
                "The send or update operation could not be performed because the change"
                " key passed in the request does not match the current change key for"
                " the item."
            )
        if "recurrence" in changed or "uid" in changed:
            raise ExchangeError(
                "ErrorInvalidPropertySet", "recurrence cannot be set on an occurrence."
            )
        for name in changed:
            setattr(current, name, copy.deepcopy(values[name]))
        stored = self._items[master_id]
        self._counter += 1
        current.type = "Exception"
        self._set_id(current, str(item.id), f"DwAAAE{self._counter:010d}")
        stored.exceptions[index] = _Exception(current)
        # the master's ModifiedOccurrences changed: it has a new ChangeKey too
        stored.changed = self._counter
        self._set_id(stored.model, master_id)
        self._set_id(item, str(item.id), current.changekey)
        return str(item.id), str(current.changekey)

    def _delete_occurrence(self, item_id: str, change_key: str | None) -> None:
        found = _OCCURRENCE_ID.fullmatch(item_id)
        assert found is not None
        master_id, index = found.group(2), int(found.group(1))
        current = self._occurrence_view(master_id, index)
        if current is None:
            return
        if change_key is not None and change_key != current.changekey:
            raise ExchangeConflict()
        stored = self._items[master_id]
        stored.exceptions.pop(index, None)
        stored.deleted.add(index)
        self._counter += 1
        stored.changed = self._counter
        self._set_id(stored.model, master_id)

    # --- inside ----------------------------------------------------------------------------

    def _call(self, operation: str, item_id: str | None) -> None:
        self.calls.append((operation, item_id))
        if self._faults:
            raise self._faults.pop(0)

    def _set_id(self, model: CalendarItem, item_id: str, change_key: str | None = None) -> None:
        from exchangelib.properties import ItemId

        key = change_key or f"DwAAAB{self._counter:010d}"
        model._id = ItemId(id=item_id, changekey=key)


def _occurrence_id(master_id: str, index: int) -> str:
    return f"AAMkOCC{index}.{master_id}"


def _ews_start(original: dt.date, master: CalendarItem) -> EWSDateTime:
    """An occurrence's OriginalStart as EWS gives it: UTC, an all-day one at the series'
    local midnight."""
    from exchangelib.ewsdatetime import EWSDateTime

    if isinstance(original, dt.datetime):
        return EWSDateTime.from_datetime(original.astimezone(dt.UTC))
    zone = master._start_timezone
    midnight = dt.datetime(original.year, original.month, original.day)
    local = midnight.replace(tzinfo=zone) if zone is not None else midnight.replace(tzinfo=dt.UTC)
    return EWSDateTime.from_datetime(local.astimezone(dt.UTC))


_google: type[GoogleBackend] = MemoryGoogle
_exchange: type[ExchangeBackend] = MemoryExchange
