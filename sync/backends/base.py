"""The two calendars calsync reads and writes, as typed interfaces, and their errors.

- `GoogleBackend`: one user's Google calendar (events.get / insert / patch / delete,
  events.list pages with sync tokens, batched inserts / patches / gets, events.watch and
  channels.stop). Writes are conditioned on the event's etag (If-Match): a stale one is
  `GoogleConflict` (412 conditionNotMet).
  https://developers.google.com/workspace/calendar/api/v3/reference/events
- `ExchangeBackend`: one user's Exchange calendar (GetItem, CreateItem, UpdateItem,
  DeleteItem, SyncFolderItems). Updates are conditioned on the item's ChangeKey
  (ConflictResolution NeverOverwrite): a stale one is `ExchangeConflict`
  (ErrorIrresolvableConflict).
  https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/updateitem
- Neither ever makes the server send a message: Google writes carry sendUpdates=none,
  Exchange writes SendToNone.

Errors keep what the server said: `GoogleError` its HTTP status and Google's reason
(error.errors[0].reason), `ExchangeError` Exchange's ResponseCode and message. Only a
failure of the transport (unreachable, timed out, 5xx, 429, throttled) is `retryable`; any
other answer is final, and an exception that is neither (a TypeError of ours) is not
translated at all: it propagates as the bug it is.

Nothing here imports exchangelib or googleapiclient at run time (mitmdump's start-up).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, NotRequired, Protocol, TypedDict

from ews_parser.errors import CalsyncError

if TYPE_CHECKING:
    from exchangelib.items import CalendarItem

    from mapping.event import GoogleEvent

_register_lock = threading.Lock()

# --- Google's resources ----------------------------------------------------------------------


class EventsPage(TypedDict, total=False):
    """One page of events.list: the last one carries nextSyncToken, the others
    nextPageToken. Deleted events come back (status "cancelled") in incremental pages."""

    kind: str
    etag: str
    summary: str
    updated: str
    timeZone: str
    accessRole: str
    items: list[GoogleEvent]
    nextPageToken: str
    nextSyncToken: str


class ChannelRequest(TypedDict):
    """The body of events.watch."""

    id: str
    type: str  # "web_hook"
    address: str
    token: NotRequired[str]
    expiration: NotRequired[str]  # milliseconds since the epoch, as a string


class Channel(TypedDict, total=False):
    """events.watch's answer: the channel Google opened."""

    kind: str
    id: str
    resourceId: str
    resourceUri: str
    token: str
    expiration: str  # milliseconds since the epoch, as a string


class CalendarResource(TypedDict, total=False):
    """calendars.get's answer."""

    kind: str
    etag: str
    id: str
    summary: str
    description: str
    timeZone: str


# --- Exchange's change feed -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One change SyncFolderItems reported."""

    kind: Literal["create", "update", "delete"]
    item_id: str
    change_key: str | None
    item: CalendarItem | None = None  # the item, for create and update


def differs(a: object, b: object) -> bool:
    """Whether two field values differ. exchangelib models compare by hashing their
    fields, which fails on list fields: their reprs then decide."""
    try:
        return bool(a != b)
    except TypeError:
        return repr(a) != repr(b)


#: to_ews keys Exchange does not let a client write.
READ_ONLY_ITEM_FIELDS: Final = frozenset({"is_cancelled", "uid"})

#: The extended property an item calsync creates for a Google event carries from its
#: CreateItem on: the event's id, so that a retried create finds the item an earlier
#: attempt made (an answer lost, a crash before the record) instead of making another.
#: A named MAPI property of calsync's own property set (PS_PUBLIC_STRINGS is shared).
#: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/properties-and-extended-properties-in-ews-in-exchange
GOOGLE_EVENT_PROPERTY_SET: Final = "eca1b18d-11d5-4757-8c56-ab3c2af8b441"
GOOGLE_EVENT_PROPERTY_NAME: Final = "calsync-google-event-id"
#: Its name on exchangelib's CalendarItem once registered (`register_google_event_field`).
GOOGLE_EVENT_FIELD: Final = "calsync_google_event_id"


def register_google_event_field() -> None:
    """Register calsync's extended property on exchangelib's CalendarItem (once per
    process; exchangelib keeps registrations on the class), so items read carry it as
    `item.calsync_google_event_id` and FindItem can be restricted on it."""
    from exchangelib.extended_properties import ExtendedProperty
    from exchangelib.items import CalendarItem

    with _register_lock:
        if any(f.name == GOOGLE_EVENT_FIELD for f in CalendarItem.FIELDS):
            return

        class GoogleEventId(ExtendedProperty):  # type: ignore[misc]
            property_set_id = GOOGLE_EVENT_PROPERTY_SET
            property_name = GOOGLE_EVENT_PROPERTY_NAME
            property_type = "String"

        CalendarItem.register(GOOGLE_EVENT_FIELD, GoogleEventId)


def google_event_of(item: CalendarItem) -> str | None:
    """The Google event id an item calsync created carries (None for any other item)."""
    value = getattr(item, GOOGLE_EVENT_FIELD, None)
    return str(value) if value else None


def set_differences(item: CalendarItem, values: Mapping[str, object]) -> list[str]:
    """Set on `item` the writable fields of `values` that differ from its own: their
    names, for UpdateItem's update_fields (empty when nothing differs)."""
    changed = [
        name
        for name, value in values.items()
        if name not in READ_ONLY_ITEM_FIELDS and differs(getattr(item, name, None), value)
    ]
    for name in changed:
        setattr(item, name, values[name])
    return changed


# --- errors ----------------------------------------------------------------------------------


class BackendError(CalsyncError):
    """Google or Exchange failed a call. `retryable`: only a failure of the transport
    (the same call may succeed later); `retry_after`: seconds the server asked for."""

    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return False


class VersionConflict(BackendError):
    """The event or item changed since the version the write was conditioned on: read it
    again and decide again (never a retry of the same write)."""


#: Google reasons that mean "slow down", whatever the status (errors guide: "use
#: exponential backoff"). https://developers.google.com/workspace/calendar/api/guides/errors
RETRYABLE_GOOGLE_REASONS: Final = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "backendError"}
)


class GoogleError(BackendError):
    """Google's answer to a call: `status` (0 when no answer came), `reason` (Google's
    error.errors[0].reason, e.g. notFound, conditionNotMet, rateLimitExceeded), `message`.
    `sent_again`: the answer is to a write sent a second time, its first sending dropped
    with no answer: the first may have been made, whatever this answer says (a 409 for an
    insert, a 412 for an If-Match patch, a 410 for a delete may be that write's own)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str = "",
        *,
        retry_after: float | None = None,
        sent_again: bool = False,
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.sent_again = sent_again
        super().__init__(f"Google {status} {reason}: {message}".rstrip(": "))

    @property
    def retryable(self) -> bool:
        return (
            self.status == 0
            or self.status == 429
            or self.status >= 500
            or self.reason in RETRYABLE_GOOGLE_REASONS
        )


class GoogleConflict(GoogleError, VersionConflict):
    """412 conditionNotMet: the event's etag is not the one the write named."""


def google_error(
    status: int, content: bytes, retry_after: str | None = None, *, sent_again: bool = False
) -> GoogleError:
    """The GoogleError for an error response (its status, JSON body and Retry-After)."""
    reason = ""
    message = ""
    try:
        error = json.loads(content.decode("utf-8"))["error"]
        message = str(error.get("message", ""))[:200]
        errors = error.get("errors") or []
        reason = str(errors[0].get("reason", "")) if errors else str(error.get("status", ""))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError):
        pass
    after: float | None = None
    if retry_after:
        try:
            after = float(retry_after)
        except ValueError:
            after = None
    cls = GoogleConflict if status == 412 else GoogleError
    return cls(status, reason or "error", message, retry_after=after, sent_again=sent_again)


#: Exchange response codes for a server that cannot answer now (throttled, busy, timed
#: out, its store or a connection of its own down): the same call may succeed later.
#: exchangelib also raises ErrorServerBusy / ErrorTimeoutExpired ("Reraised from ...")
#: for HTTP 5xx answers and dropped connections.
#: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange
RETRYABLE_EXCHANGE_CODES: Final = frozenset(
    {
        "ErrorServerBusy",
        "ErrorTimeoutExpired",
        "ErrorInternalServerTransientError",
        "ErrorMailboxStoreUnavailable",
        "ErrorConnectionFailed",
        "ErrorMailboxMoveInProgress",
    }
)


class ExchangeError(BackendError):
    """Exchange's answer to a call: `code` (the EWS ResponseCode as exchangelib names its
    error, e.g. ErrorItemNotFound, or the transport's error class when no answer came;
    empty for a configuration error), `message` (Exchange's MessageText), `back_off`
    (seconds, ErrorServerBusy's BackOffMilliseconds)."""

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        retryable: bool | None = None,
        back_off: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.back_off = back_off
        self.retry_after = back_off
        self._retryable = code in RETRYABLE_EXCHANGE_CODES if retryable is None else retryable
        super().__init__(self._text())

    @property
    def retryable(self) -> bool:
        return self._retryable

    def _text(self) -> str:
        if not self.code:
            return self.message
        if self.code == "UnauthorizedError":
            text = f"Exchange refused the credentials ({self.code})"
        elif self.retryable:
            text = f"Exchange unavailable: {self.code}"
        else:
            text = f"Exchange {self.code}"
        if self.message:
            text += f": {self.message}"
        if self.back_off is not None:
            text += f" (back off {self.back_off:g} s)"
        return text


class ExchangeConflict(ExchangeError, VersionConflict):
    """ErrorIrresolvableConflict: the item's ChangeKey is not the one the write named."""

    def __init__(self, message: str = "the Exchange item changed since it was read") -> None:
        super().__init__("ErrorIrresolvableConflict", message, retryable=False)


# --- the interfaces --------------------------------------------------------------------------


class GoogleBackend(Protocol):
    """One user's Google calendar. Calls block (run them in a thread); each raises
    GoogleError (GoogleConflict for a stale etag)."""

    def get(self, event_id: str) -> GoogleEvent | None:
        """events.get: the event, a cancelled tombstone for a deleted one, None when
        Google has no such id."""
        ...

    def insert(self, event: GoogleEvent) -> GoogleEvent:
        """events.insert (sendUpdates=none). An id Google already holds, deleted or not,
        is 409 duplicate."""
        ...

    def patch(self, event_id: str, body: GoogleEvent, *, etag: str | None = None) -> GoogleEvent:
        """events.patch (sendUpdates=none), If-Match `etag` when given."""
        ...

    def delete(self, event_id: str, *, etag: str | None = None) -> None:
        """events.delete (sendUpdates=none), If-Match `etag` when given. An event already
        deleted is 410 deleted, an unknown one 404 notFound."""
        ...

    def list_pages(
        self, *, sync_token: str | None, time_min: str | None = None
    ) -> Iterator[EventsPage]:
        """events.list, every page followed: in full (from `time_min`) without a token,
        else the changes since it. A token Google no longer honours is 410."""
        ...

    def insert_many(
        self,
        events: Sequence[GoogleEvent],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[GoogleEvent | GoogleError]:
        """insert for each event, batched: each answer is the event or its own error."""
        ...

    def patch_many(
        self, patches: Sequence[tuple[str, GoogleEvent, str | None]]
    ) -> list[GoogleEvent | GoogleError]:
        """patch for each (event id, body, If-Match etag), batched."""
        ...

    def get_many(self, event_ids: Sequence[str]) -> list[GoogleEvent | GoogleError | None]:
        """get for each id, batched: the event, None when unknown, or the error."""
        ...

    def watch(self, body: ChannelRequest) -> Channel:
        """events.watch on the calendar: opens a push channel."""
        ...

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """channels.stop. An unknown channel is 404."""
        ...

    def calendar(self) -> CalendarResource:
        """calendars.get of the calendar: proves the credentials and the calendar id."""
        ...


class ExchangeBackend(Protocol):
    """One user's Exchange calendar. Calls block (run them in a thread); each raises
    ExchangeError (ExchangeConflict for a stale ChangeKey)."""

    def calendar_item(self, item_id: str) -> CalendarItem | None:
        """GetItem: the full item, None when Exchange has none (or not a calendar item)."""
        ...

    def calendar_items(self, item_ids: list[str]) -> list[CalendarItem]:
        """GetItem of several: the calendar items Exchange still has, in the order asked."""
        ...

    def missing(self, item_ids: Sequence[str]) -> set[str]:
        """The ids Exchange answers ErrorItemNotFound for (any other answer: not gone)."""
        ...

    def master_item_id(self, occurrence: CalendarItem) -> str | None:
        """The series master's id of an occurrence or exception, None when it is gone."""
        ...

    def calendar_folder_id(self) -> str:
        """GetFolder of the calendar: its FolderId."""
        ...

    def all_items(self) -> list[CalendarItem]:
        """FindItem: every item of the calendar (masters, not occurrences)."""
        ...

    def create(
        self, values: Mapping[str, object], *, google_event_id: str | None = None
    ) -> tuple[str, str]:
        """CreateItem (SendToNone) of a calendar item with `values` (exchangelib field
        names): its (ItemId, ChangeKey). With `google_event_id`, the item carries it in
        calsync's extended property from its creation on (`created_for` finds it)."""
        ...

    def created_for(self, google_event_ids: Sequence[str]) -> dict[str, str]:
        """FindItem on the calendar restricted on calsync's extended property: Google event
        id -> ItemId of an item created for it, for the ids Exchange holds one for."""
        ...

    def update(self, item: CalendarItem, values: Mapping[str, object]) -> tuple[str, str] | None:
        """UpdateItem (SendToNone, NeverOverwrite with `item`'s ChangeKey) of the fields of
        `values` that differ on `item`: the new (ItemId, ChangeKey), None when none
        differed. `item` is updated in place."""
        ...

    def delete(self, item_id: str, *, change_key: str | None = None) -> None:
        """DeleteItem (SendToNone). An item already gone is no error; with `change_key`,
        an item whose ChangeKey differs is ExchangeConflict (DeleteItem itself does not
        check ChangeKeys: the item is read first)."""
        ...

    def occurrence(self, master_id: str, index: int) -> CalendarItem | None:
        """GetItem on an OccurrenceItemId: the `index`-th occurrence of a series (1-based,
        deleted ones counted, as EWS's InstanceIndex), with its own ItemId and ChangeKey and
        its OriginalStart: an Occurrence, or an Exception once modified. `update` writes it
        (it becomes an Exception; its master's ChangeKey changes too). None when it was
        deleted from the series, the index is past the series' end, or the master is gone."""
        ...

    def delete_occurrence(self, occurrence: CalendarItem) -> None:
        """DeleteItem (SendToNone, SpecifiedOccurrenceOnly) of one occurrence as read by
        `occurrence`, conditioned on its ChangeKey (another is ExchangeConflict): it becomes
        one of its master's DeletedOccurrences. One already deleted is no error."""
        ...

    def changes(
        self, sync_state: str | None, ignore: Iterable[str] = ()
    ) -> tuple[list[ItemChange], str | None]:
        """SyncFolderItems: what changed in the calendar since `sync_state` (everything
        when None), skipping the ids in `ignore`, and the state to resume from."""
        ...
