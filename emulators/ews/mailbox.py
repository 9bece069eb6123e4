"""The mailbox store behind the EWS stand-in: folders, calendar items, change feed.

No HTTP and no XML here: operations take exchangelib models and ews_parser values and
return models, or raise `EwsResponseError` named after the EWS response code Exchange
documents for the case. The clock is passed in, so tests can pin it.

What it follows:
- ids and change keys: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-identifiers-in-exchange
  (a ChangeKey changes on every write; moving an item gives it a new ItemId)
- recurring series, occurrences and exceptions: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/calendars-and-ews-in-exchange
- conflicts: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/updateitem
  (ConflictResolution NeverOverwrite with a stale ChangeKey fails with
  ErrorIrresolvableConflict; AutoResolve and AlwaysOverwrite apply the change)
- the change feed: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderitems
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import lxml.html
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Body, HTMLBody, ParentFolderId
from exchangelib.properties import ItemId as ModelItemId
from exchangelib.properties import Mailbox as ModelMailbox
from exchangelib.recurrence import (
    DeletedOccurrence,
    FirstOccurrence,
    LastOccurrence,
    NoEndPattern,
    Occurrence,
)

from emulators.ews import ids
from emulators.ews import properties as props
from emulators.ews import recurrence as rec
from emulators.ews.well_known import FOLDERS, FolderSpec, element_for, holds_calendar_items
from ews_parser import EwsResponseError
from ews_parser.values import (
    DistinguishedFolderId,
    ExtendedFieldURI,
    FieldUpdate,
    FieldURI,
    FolderId,
    FolderTarget,
    ItemId,
    ItemTarget,
    OccurrenceItemId,
    RecurringMasterItemId,
)

Clock = Callable[[], dt.datetime]
UTC: Final = EWSTimeZone("UTC")

#: Exchange's own wording for each response code calsync can meet here.
MESSAGES: Final = {
    "ErrorItemNotFound": "The specified object was not found in the store.",
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorIrresolvableConflict": "The send or update operation could not be performed because"
    " the change key passed in the request does not match the current change key for the item.",
    "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange": "Occurrence index is out of"
    " recurrence range.",
    "ErrorCalendarOccurrenceIsDeletedFromRecurrence": "Occurrence with this index was"
    " previously deleted from the recurrence.",
    "ErrorCalendarEndDateIsEarlierThanStartDate": "EndDate is earlier than StartDate",
    "ErrorOccurrenceCrossingBoundary": "Modified occurrence is crossing or overlapping"
    " adjacent occurrence.",
    "ErrorInvalidSyncStateData": "Synchronization state data is corrupt or otherwise invalid.",
    "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
    "ErrorInvalidPropertySet": "Set action is invalid for property.",
    "ErrorInvalidRecurrence": "Recurrence pattern is invalid for a calendar item.",
    "ErrorItemSave": "The item could not be saved.",
    "ErrorFolderExists": "A folder with the specified name already exists.",
    "ErrorDeleteDistinguishedFolder": "Distinguished folders cannot be deleted.",
    "ErrorMoveDistinguishedFolder": "Distinguished folders cannot be moved.",
}


def error(code: str, message: str | None = None) -> EwsResponseError:
    return EwsResponseError(code, message or MESSAGES.get(code, code))




@dataclass(slots=True)
class Folder:
    spec: FolderSpec
    id: str
    change_key: str
    created_seq: int
    #: item id -> (seq it entered the folder, seq of its last change)
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: item id -> (seq it entered, seq it left): what SyncFolderItems reports as Delete
    tombstones: dict[str, tuple[int, int]] = field(default_factory=dict)
    created: dt.datetime | None = None
    #: PR_LOCAL_COMMIT_TIME_MAX: the last time anything in the folder changed
    commit_time: dt.datetime | None = None
    #: PR_ARTICLE_NUM_NEXT: the PR_INTERNET_ARTICLE_NUMBER the next item entering gets
    next_article: int = 1
    extended: dict[props.PropKey, props.Value] = field(default_factory=dict)


@dataclass(slots=True)
class ExceptionItem:
    """A modified occurrence: its own fields, change key and original start."""

    model: Any
    change_key: str
    original_start: dt.datetime
    modified: dt.datetime
    extended: dict[props.PropKey, props.Value] = field(default_factory=dict)


@dataclass(slots=True)
class StoredItem:
    id: str
    change_key: str
    folder: str
    model: Any  # exchangelib CalendarItem, start/end as UTC EWSDateTime (all-day included)
    created: dt.datetime
    modified: dt.datetime
    exceptions: dict[int, ExceptionItem] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    #: PR_INTERNET_ARTICLE_NUMBER: its number in its folder, given when it enters one
    article: int = 0
    #: extended properties clients set (ExtendedFieldURI), as EWS writes their values
    extended: dict[props.PropKey, props.Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Target:
    """What an ItemId / OccurrenceItemId / RecurringMasterItemId resolved to."""

    item: StoredItem
    index: int | None = None  # set for an occurrence

    @property
    def change_key(self) -> str:
        if self.index is not None and self.index in self.item.exceptions:
            return self.item.exceptions[self.index].change_key
        return self.item.change_key


@dataclass(frozen=True, slots=True)
class SyncChange:
    change_type: str  # Create, Update, Delete
    item_id: str
    model: Any = None  # for Create and Update


@dataclass(frozen=True, slots=True)
class SyncResult:
    changes: tuple[SyncChange, ...]
    sync_state: str
    includes_last_item_in_range: bool


#: (FolderId, ChangeKey) of a folder, as an event names it
FolderRef = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the mailbox's event table, what notification subscriptions are told
    (`subscriptions.py`): an item or folder Created, Modified, Deleted or Moved, or a
    calendar item's free/busy time changed (FreeBusyChanged). `change_key` is the one the
    object has after the change (for Deleted, its last). A move names the new id and
    parent and the old ones."""

    kind: str
    id: str
    change_key: str
    parent: FolderRef
    at: dt.datetime
    is_folder: bool = False
    old_id: str | None = None
    old_change_key: str | None = None
    old_parent: FolderRef | None = None


# --- values --------------------------------------------------------------------------


def utc(value: dt.datetime) -> EWSDateTime:
    """An aware UTC EWSDateTime (exchangelib serialises those as "...Z")."""
    # EWSDateTime.astimezone only takes EWSTimeZones: convert as a plain datetime.
    plain = dt.datetime.combine(value.date(), value.timetz())
    if plain.tzinfo is None:
        plain = plain.replace(tzinfo=dt.UTC)
    return EWSDateTime.from_datetime(plain.astimezone(dt.UTC))


def _zone(model: Any) -> EWSTimeZone:
    zone = model._start_timezone
    return zone if isinstance(zone, EWSTimeZone) else UTC


def _to_midnight(value: dt.date | dt.datetime, zone: EWSTimeZone, *, ceil: bool) -> EWSDateTime:
    """All-day bounds are midnights in the item's zone; Exchange pushes a start back and an
    end forward to the nearest one (how-to-create-all-day-events-by-using-ews-in-exchange)."""
    if isinstance(value, dt.datetime):
        local = value.astimezone(zone)
        day = local.date()
        if ceil and local.time() != dt.time(0):
            day += dt.timedelta(days=1)
    else:
        # exchangelib's dates: an all-day end date is inclusive
        day = value + dt.timedelta(days=1) if ceil else value
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    return utc(midnight)


def normalise(model: Any) -> None:
    """Bring start and end to the stored form: aware UTC instants, all-day on midnights."""
    if model.start is None or model.end is None:
        raise error("ErrorInvalidRequest", "Start and End are required.")
    if model._start_timezone is None:
        model._start_timezone = UTC
    if model._end_timezone is None:
        model._end_timezone = model._start_timezone
    if model.is_all_day:
        model.start = _to_midnight(model.start, _zone(model), ceil=False)
        model.end = _to_midnight(model.end, model._end_timezone, ceil=True)
    else:
        for name in ("start", "end"):
            value = getattr(model, name)
            if not isinstance(value, dt.datetime):  # a date on a timed item: its midnight
                value = dt.datetime.combine(value, dt.time(0), tzinfo=_zone(model))
            setattr(model, name, utc(value))
    if model.end < model.start:
        raise error("ErrorCalendarEndDateIsEarlierThanStartDate")


def clone(model: Any) -> Any:
    """A CalendarItem with copies of every field value (models are mutable). A field a
    client in the same process registered later on exchangelib's class (an extended
    property) is not the stand-in's: it keeps extended properties apart."""
    values = {
        f.name: copy.deepcopy(getattr(model, f.name))
        for f in CalendarItem.FIELDS
        if hasattr(model, f.name)
    }
    return CalendarItem(**values)


def new_uid() -> str:
    # Exchange's UIDs for items it creates are hex Global Object Ids with this prefix.
    return "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(36).upper()


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"P{days}D" if days else "P"
    if hours or minutes or secs or not days:
        text += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
        text += f"{secs}S" if secs or (not hours and not minutes) else ""
    return text


# --- the mailbox -----------------------------------------------------------------------


class Mailbox:
    """One user's mailbox. Not thread safe: `Store` serialises access."""

    def __init__(self, address: str, clock: Clock,
                 directory: Callable[[bytes], Mailbox | None] | None = None) -> None:
        self.address = address
        self._clock = clock
        self._seq = 0
        self._counter = 0
        #: the mailbox whose ids carry a mailbox tag (ConvertId), from the Store
        self.directory = directory or (lambda tag: self if tag == ids.mailbox_tag(address)
                                       else None)
        #: the mailbox's time zone, a Windows zone id (OWA.UserOptions "timezone")
        self.time_zone = "UTC"
        self.items: dict[str, StoredItem] = {}
        self.folders: dict[str, Folder] = {}
        #: folder id -> seq it was deleted at (SyncFolderHierarchy's Delete)
        self.folder_tombstones: dict[str, int] = {}
        for spec in FOLDERS:
            seq = self._next_seq()
            now = self._now()
            self.folders[spec.name] = Folder(
                spec, ids.folder_id(address, spec.name), self._change_key(), seq,
                created=now, commit_time=now,
            )
        self._folders_by_id = {f.id: f for f in self.folders.values()}
        #: told of every change (the Store sets it; notifications are made from it)
        self.observer: Callable[[Change], None] | None = None

    # -- bookkeeping

    def _emit(self, kind: str, item: StoredItem, *, old: tuple[str, str, str] | None = None,
              free_busy: bool = False) -> None:
        """An item event (and FreeBusyChanged beside it); `old`: id, change key and folder
        name before a move."""
        if self.observer is None:
            return
        folder = self.folders[item.folder]
        parent = (folder.id, folder.change_key)
        now = self._now()
        old_parent = None
        if old is not None:
            was = self.folders.get(old[2])
            old_parent = (was.id, was.change_key) if was is not None else None
        self.observer(Change(kind, item.id, item.change_key, parent, now,
                             old_id=old[0] if old else None,
                             old_change_key=old[1] if old else None, old_parent=old_parent))
        if free_busy:
            # The free/busy time is the calendar's, also when the item just left it.
            calendar = old_parent if old_parent and item.folder != "calendar" else parent
            self.observer(Change("FreeBusyChanged", item.id, item.change_key, calendar, now))

    def _emit_folder(self, kind: str, folder: Folder, old_parent: Folder | None = None) -> None:
        """A folder event: Modified when what it holds changed (its counts), Created,
        Deleted or Moved (from `old_parent`) for the folder itself."""
        if self.observer is None:
            return
        parent = self.parent(folder) or folder
        self.observer(Change(
            kind, folder.id, folder.change_key, (parent.id, parent.change_key), self._now(),
            is_folder=True, old_id=folder.id if old_parent else None,
            old_change_key=folder.change_key if old_parent else None,
            old_parent=(old_parent.id, old_parent.change_key) if old_parent else None))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _change_key(self) -> str:
        self._counter += 1
        return ids.change_key(self._counter)

    def _now(self) -> dt.datetime:
        # Exchange stamps whole seconds ("2013-08-28T04:07:38Z"); exchangelib cannot read
        # a fraction there and returns None for the field.
        return utc(self._clock()).replace(microsecond=0)

    def _enter(self, item: StoredItem, folder: str) -> None:
        seq = self._next_seq()
        item.folder = folder
        entries = self.folders[folder].entries
        self.folders[folder].tombstones.pop(item.id, None)
        entries[item.id] = (seq, seq)
        item.article = self.folders[folder].next_article
        self.folders[folder].next_article += 1
        self._committed(self.folders[folder])

    def _leave(self, item: StoredItem) -> None:
        folder = self.folders[item.folder]
        entered, _ = folder.entries.pop(item.id)
        folder.tombstones[item.id] = (entered, self._next_seq())
        self._committed(folder)

    def _committed(self, folder: Folder) -> None:
        """A change in `folder`: its PR_LOCAL_COMMIT_TIME_MAX moves on. Clients use it as
        the folder's change tag (DavMail's CalDAV ctag), and it is written in whole
        seconds, so two changes within one second still give two values here."""
        now = self._now()
        if folder.commit_time is not None and now <= folder.commit_time:
            now = folder.commit_time + dt.timedelta(seconds=1)
        folder.commit_time = now

    def _touch(self, item: StoredItem) -> None:
        """Record a write: new ChangeKey, new LastModifiedTime, a change in the feed."""
        item.change_key = self._change_key()
        item.modified = self._now()
        entries = self.folders[item.folder].entries
        entered, _ = entries[item.id]
        entries[item.id] = (entered, self._next_seq())
        self._committed(self.folders[item.folder])

    # -- folders

    def folder(self, target: FolderTarget | None, *, default: str = "calendar") -> Folder:
        if target is None:
            return self.folders[default]
        if isinstance(target, DistinguishedFolderId):
            if target.mailbox and target.mailbox.lower() != self.address.lower():
                # Delegate access to another mailbox is not granted to anyone here.
                raise error("ErrorAccessDenied")
            found = self.folders.get(target.id)
            if found is not None and not found.spec.distinguished:
                found = None
        else:
            assert isinstance(target, FolderId)
            found = self._folders_by_id.get(target.id)
        if found is None:
            raise error("ErrorFolderNotFound")
        return found

    def calendar_folder(self, target: FolderTarget | None) -> Folder:
        folder = self.folder(target)
        if not holds_calendar_items(folder.spec):
            # Only calendar items are stored; other folders are empty and stay so.
            raise error("ErrorInvalidRequest", "This stand-in stores calendar items only.")
        return folder

    # -- resolving targets

    def resolve(self, target: ItemTarget | ItemId) -> Target:
        if isinstance(target, OccurrenceItemId):
            master = self._master(target.recurring_master_id)
            return Target(master, self._check_index(master, target.instance_index))
        if isinstance(target, RecurringMasterItemId):
            ref = ids.read_occurrence_id(target.occurrence_id)
            if ref is not None:
                return Target(self._master(ref.master_id))
            item = self._item(target.occurrence_id)
            if item.model.recurrence is None:
                raise error("ErrorItemNotFound")
            return Target(item)
        ref = ids.read_occurrence_id(target.id)
        if ref is not None:
            return self._occurrence(ref)
        return Target(self._item(target.id))

    def _occurrence(self, ref: ids.OccurrenceRef) -> Target:
        """An occurrence's own ItemId binds to one original start of one master: once the
        master is gone or moved, the occurrence deleted, or the series changed so that no
        occurrence starts there any more, the id names nothing (ErrorItemNotFound), where
        an OccurrenceItemId of a deleted index gets the documented
        ErrorCalendarOccurrenceIsDeletedFromRecurrence."""
        master = self.items.get(ref.master_id)
        if master is None or master.model.recurrence is None or ref.index in master.deleted:
            raise error("ErrorItemNotFound")
        start = rec.occurrence_start(master.model.recurrence, master.model.start,
                                     _zone(master.model), ref.index)
        if start is None or int(start.timestamp()) != int(ref.original_start.timestamp()):
            raise error("ErrorItemNotFound")
        return Target(master, ref.index)

    def item_id(self, target: Target) -> str:
        """The ItemId a response gives the target: the item's, or the occurrence's own."""
        if target.index is None:
            return target.item.id
        model = target.item.model
        start = rec.occurrence_start(model.recurrence, model.start, _zone(model), target.index)
        assert start is not None  # resolve() checked the index
        return ids.occurrence_id(target.item.id, target.index, start)

    def occurrence_index(self, item: StoredItem, original: dt.datetime | dt.date) -> int | None:
        """The index of the occurrence whose original start is `original` (an instant, or
        for an all-day series a date in its zone), or None when none starts there."""
        model = item.model
        zone = _zone(model)
        plain = rec.plain_zone(zone)
        if isinstance(original, dt.datetime):
            instant: dt.datetime | None = original
            day = original.astimezone(plain).date()
        else:
            instant, day = None, original
        for index, when in rec.occurrences(model.recurrence, model.start, zone):
            when_day = when.astimezone(plain).date()
            if when == instant or (instant is None and when_day == day):
                return index
            if when_day > day:
                return None
        return None

    def _item(self, item_id: str) -> StoredItem:
        item = self.items.get(item_id)
        if item is None:
            raise error("ErrorItemNotFound")
        return item

    def _master(self, item_id: str) -> StoredItem:
        item = self._item(item_id)
        if item.model.recurrence is None:
            raise error("ErrorItemNotFound")
        return item

    def _check_index(self, master: StoredItem, index: int) -> int:
        if rec.occurrence_start(master.model.recurrence, master.model.start, _zone(master.model),
                                index) is None:
            raise error("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange")
        if index in master.deleted:
            raise error("ErrorCalendarOccurrenceIsDeletedFromRecurrence")
        return index

    # -- views: the models a response serialises

    def view(self, target: Target) -> Any:
        if target.index is None:
            return self._item_view(target.item)
        return self._occurrence_view(target.item, target.index)

    def exception_views(self, target: Target) -> list[Any]:
        """A master's modified occurrences, by index (what its MimeContent lists after it)."""
        if target.index is not None or target.item.model.recurrence is None:
            return []
        return [self._occurrence_view(target.item, i) for i in sorted(target.item.exceptions)]

    def _base_view(self, item: StoredItem, model: Any) -> Any:
        out = clone(model)
        out.parent_folder_id = ParentFolderId(
            id=self.folders[item.folder].id, changekey=self.folders[item.folder].change_key
        )
        out.item_class = "IPM.Appointment"
        out.datetime_created = item.created
        out.datetime_received = item.created
        out.datetime_sent = item.created
        out.last_modified_time = item.modified
        out.last_modified_name = self.address.partition("@")[0]
        # Items created here are organised by the mailbox owner; received meetings keep
        # the organizer they came with.
        out.organizer = out.organizer or ModelMailbox(
            email_address=self.address, routing_type="SMTP", mailbox_type="Mailbox")
        out.is_meeting = bool(out.required_attendees or out.optional_attendees or out.resources)
        out.is_cancelled = bool(out.is_cancelled)
        out.my_response_type = out.my_response_type or "Organizer"
        out.culture = out.culture or "en-US"
        out.has_attachments = False
        out.is_associated = False
        out.is_draft = False
        out.is_from_me = False
        out.is_submitted = False
        out.is_unmodified = False
        out.is_resend = False
        out.size = 1024
        out.duration = _duration(out.end - out.start)
        out.appointment_sequence_number = 0
        out.appointment_state = 1 if out.is_meeting else 0
        out.meeting_request_was_sent = False
        return out

    def _item_view(self, item: StoredItem) -> Any:
        out = self._base_view(item, item.model)
        out._id = ModelItemId(id=item.id, changekey=item.change_key)
        recurrence = item.model.recurrence
        out.is_recurring = recurrence is not None
        out.type = "RecurringMaster" if recurrence is not None else "Single"
        if recurrence is not None:
            self._series_fields(item, out)
        return out

    def _series_fields(self, item: StoredItem, out: Any) -> None:
        model = item.model
        zone = _zone(model)
        # First/LastOccurrence: the first and last occurrences still in the series, as
        # they are (an exception's own times and ChangeKey)
        first = next(
            ((i, s) for i, s in rec.occurrences(model.recurrence, model.start, zone)
             if i not in item.deleted),
            None,
        )
        if first is not None:
            out.first_occurrence = self._occurrence_info(item, FirstOccurrence, *first)
        if not isinstance(model.recurrence.boundary, NoEndPattern):
            last = None
            for index, start in rec.occurrences(model.recurrence, model.start, zone):
                if index not in item.deleted:
                    last = (index, start)
            if last is not None:
                out.last_occurrence = self._occurrence_info(item, LastOccurrence, *last)
        out.modified_occurrences = [
            Occurrence(
                _id=ModelItemId(id=ids.occurrence_id(item.id, index, exc.original_start),
                                changekey=exc.change_key),
                start=exc.model.start, end=exc.model.end, original_start=utc(exc.original_start),
            )
            for index, exc in sorted(item.exceptions.items())
        ] or None
        deleted = []
        for index in sorted(item.deleted):
            start = rec.occurrence_start(model.recurrence, model.start, zone, index)
            if start is not None:
                deleted.append(DeletedOccurrence(start=utc(start)))
        out.deleted_occurrences = deleted or None

    def _occurrence_info(self, item: StoredItem, kind: type, index: int,
                         original: dt.datetime) -> Any:
        """A FirstOccurrence / LastOccurrence (OccurrenceInfoType) of a master."""
        exc = item.exceptions.get(index)
        if exc is not None:
            start, end, key = exc.model.start, exc.model.end, exc.change_key
        else:
            start, end = original, original + (item.model.end - item.model.start)
            key = item.change_key
        return kind(_id=ModelItemId(id=ids.occurrence_id(item.id, index, original),
                                    changekey=key),
                    start=utc(start), end=utc(end), original_start=utc(original))

    def _occurrence_view(self, item: StoredItem, index: int) -> Any:
        model = item.model
        original = rec.occurrence_start(model.recurrence, model.start, _zone(model), index)
        assert original is not None  # resolve() checked the index
        exc = item.exceptions.get(index)
        if exc is not None:
            out = self._base_view(item, exc.model)
            out.type = "Exception"
            out._id = ModelItemId(id=ids.occurrence_id(item.id, index, original),
                                  changekey=exc.change_key)
            out.last_modified_time = exc.modified
        else:
            out = self._base_view(item, model)
            out.type = "Occurrence"
            out._id = ModelItemId(id=ids.occurrence_id(item.id, index, original),
                                  changekey=item.change_key)
            duration = model.end - model.start
            out.start = utc(original)
            out.end = utc(original + duration)
            out.duration = _duration(duration)
        out.recurrence = None
        out.is_recurring = True
        out.original_start = utc(original)
        out.recurrence_id = utc(original)
        return out

    # -- writes

    def create(self, model: Any, folder: Folder) -> StoredItem:
        model = clone(model)
        model._id = None
        normalise(model)
        if model.uid is None:
            model.uid = new_uid()
        if model.recurrence is not None:
            self._check_recurrence(model)
        now = self._now()
        item = StoredItem(
            id=ids.new_item_id(self.address), change_key=self._change_key(),
            folder=folder.spec.name, model=model, created=now, modified=now,
        )
        self.items[item.id] = item
        self._enter(item, folder.spec.name)
        self._emit("Created", item, free_busy=_busy(item))
        self._emit_folder("Modified", folder)
        return item

    def _check_recurrence(self, model: Any) -> None:
        """Refuse a pattern without occurrences; move the master onto its first one.

        "For a recurring series, the value of this property [the start] is the start date
        and time of the first instance according to the recurrence pattern" (MS-OXOCAL
        2.2.1.5 PidLidAppointmentStartWhole): a series created on a day its pattern skips
        starts at its first occurrence, with its duration kept.
        """
        try:
            first = next(rec.occurrences(model.recurrence, model.start, _zone(model)), None)
        except rec.UnsupportedRecurrence as exc:
            raise error("ErrorInvalidRecurrence", str(exc)) from None
        if first is None:
            raise error("ErrorInvalidRecurrence")
        _, first_start = first
        if first_start != model.start:
            duration = model.end - model.start
            model.start = utc(first_start)
            model.end = utc(first_start + duration)

    def check_change_key(self, target: Target, change_key: str | None, resolution: str) -> None:
        """A stale ChangeKey fails only under NeverOverwrite; AutoResolve and
        AlwaysOverwrite apply the change (UpdateItem's ConflictResolution)."""
        if change_key and change_key != target.change_key and resolution == "NeverOverwrite":
            raise error("ErrorIrresolvableConflict")

    def update(self, target: Target, updates: Sequence[FieldUpdate]) -> Target:
        item = target.item
        updates, extended = _split_properties(updates)
        if target.index is None:
            model = clone(item.model)
            old = (model.start, model.recurrence)
            _apply(model, updates)
            normalise(model)
            if model.recurrence is not None:
                self._check_recurrence(model)
            before = _free_busy(item)
            if (model.start, model.recurrence) != old:
                # Changing a series' pattern or time discards its exceptions (Exchange
                # regenerates the series).
                item.exceptions.clear()
                item.deleted.clear()
            item.model = model
            _set_properties(item.extended, extended)
            self._touch(item)
            self._emit("Modified", item, free_busy=_free_busy(item) != before)
            return target
        base = self._occurrence_view(item, target.index)
        for name in ("recurrence", "uid"):
            if any(u.field == name for u in updates):
                raise error("ErrorInvalidPropertySet",
                            f"{name} cannot be set on an occurrence.")
        _apply(base, updates)
        normalise(base)
        self._check_neighbours(item, target.index, base)
        original = base.original_start
        before = _free_busy(item)
        self._touch(item)  # the master's ModifiedOccurrences changed too
        previous = item.exceptions.get(target.index)
        item.exceptions[target.index] = ExceptionItem(
            model=_strip_server_fields(base), change_key=self._change_key(),
            original_start=original, modified=self._now(),
            extended=dict(previous.extended) if previous is not None else {},
        )
        _set_properties(item.exceptions[target.index].extended, extended)
        # An occurrence is part of its master's item: the event names the master.
        self._emit("Modified", item, free_busy=_free_busy(item) != before)
        return target

    def _check_neighbours(self, item: StoredItem, index: int, occurrence: Any) -> None:
        """A modified occurrence may neither cross nor overlap the occurrences beside it
        as they now are (deleted ones skipped): ErrorOccurrenceCrossingBoundary."""
        model = item.model
        before = after = None
        for i, _ in rec.occurrences(model.recurrence, model.start, _zone(model)):
            if i in item.deleted or i == index:
                continue
            if i > index:
                after = i
                break
            before = i
        previous = self._occurrence_view(item, before) if before is not None else None
        following = self._occurrence_view(item, after) if after is not None else None
        if (previous is not None and occurrence.start < previous.end) or (
            following is not None and occurrence.end > following.start
        ):
            raise error("ErrorOccurrenceCrossingBoundary")

    def import_occurrences(
        self, item: StoredItem,
        modified: Sequence[tuple[dt.datetime | dt.date, Sequence[FieldUpdate]]],
        deleted: Iterable[dt.datetime | dt.date],
    ) -> None:
        """A new series' modified and deleted occurrences, as an iCalendar brings them
        (RECURRENCE-ID VEVENTs, EXDATEs): each applied as UpdateItem / DeleteItem on that
        occurrence would be. One that names no occurrence of the series is dropped; one
        that cannot be applied fails the whole item, which is not kept."""
        try:
            for original, updates in modified:
                index = self.occurrence_index(item, original)
                if index is not None:
                    self.update(Target(item, index), updates)
            for original in deleted:
                index = self.occurrence_index(item, original)
                if index is not None and index not in item.deleted:
                    self.delete(Target(item, index), "HardDelete")
        except EwsResponseError:
            self.delete(Target(item), "HardDelete")
            raise

    def delete(self, target: Target, delete_type: str) -> None:
        item = target.item
        if target.index is not None:
            # Deleting one occurrence turns it into a DeletedOccurrence of the master.
            before = _free_busy(item)
            item.exceptions.pop(target.index, None)
            item.deleted.add(target.index)
            self._touch(item)
            self._emit("Modified", item, free_busy=_free_busy(item) != before)
            return
        if delete_type == "MoveToDeletedItems" and item.folder != "deleteditems":
            self.move(target, self.folders["deleteditems"])
            return
        # HardDelete, SoftDelete (into the dumpster, which no client here can see), or a
        # second delete from Deleted Items.
        self._leave(item)
        del self.items[item.id]
        self._emit("Deleted", item, free_busy=_busy(item))
        self._emit_folder("Modified", self.folders[item.folder])

    def move(self, target: Target, folder: Folder) -> StoredItem:
        if target.index is not None:
            raise error("ErrorInvalidRequest", "An occurrence cannot be moved on its own.")
        item = target.item
        if not holds_calendar_items(folder.spec):
            raise error("ErrorInvalidRequest", "This stand-in stores calendar items only.")
        old = (item.id, item.change_key, item.folder)
        self._leave(item)
        del self.items[item.id]
        # A moved item gets a new ItemId (ews-identifiers-in-exchange).
        item.id = ids.new_item_id(self.address)
        item.change_key = self._change_key()
        item.modified = self._now()
        self.items[item.id] = item
        self._enter(item, folder.spec.name)
        # Free/busy time is the calendar's: it changes when an item leaves or enters one.
        crossed = (old[2] == "calendar") != (folder.spec.name == "calendar")
        self._emit("Moved", item, old=old, free_busy=crossed and _busy(item))
        self._emit_folder("Modified", self.folders[old[2]])
        self._emit_folder("Modified", folder)
        return item

    def respond(self, target: Target, response: str) -> StoredItem | None:
        """AcceptItem / TentativelyAcceptItem / DeclineItem / CancelCalendarItem."""
        item = target.item
        if target.index is not None:
            raise error("ErrorItemNotFound")
        if response == "CancelCalendarItem":
            # The organizer's copy of a cancelled meeting goes to Deleted Items.
            item.model.is_cancelled = True
            self.move(target, self.folders["deleteditems"])
            return None
        if item.model.my_response_type in (None, "Organizer"):
            raise error("ErrorItemSave", "The organizer of a meeting cannot respond to it.")
        item.model.my_response_type = {
            "AcceptItem": "Accept",
            "TentativelyAcceptItem": "Tentative",
            "DeclineItem": "Decline",
        }[response]
        self._touch(item)
        self._emit("Modified", item)
        if response == "DeclineItem":
            # A declined meeting leaves the attendee's calendar for Deleted Items.
            self.move(target, self.folders["deleteditems"])
        return item

    def add_received_meeting(self, model: Any, organizer: str) -> str:
        """Put a meeting `organizer` invited this user to into their calendar, awaiting a
        response (set-up for Accept/Decline: this stand-in does not deliver invitations)."""
        item = self.create(model, self.folders["calendar"])
        item.model.organizer = ModelMailbox(email_address=organizer, routing_type="SMTP",
                                            mailbox_type="Mailbox")
        item.model.my_response_type = "NoResponseReceived"
        return item.id

    # -- reads

    def folder_items(self, folder: Folder) -> list[Any]:
        """Singles and recurring masters, as FindItem without a CalendarView returns them."""
        items = [self.items[item_id] for item_id in folder.entries]
        items.sort(key=lambda i: (i.model.start, i.id))
        return [self._item_view(i) for i in items]

    def calendar_view(self, folder: Folder, start: dt.datetime, end: dt.datetime) -> list[Any]:
        """Singles, occurrences and exceptions overlapping [start, end), by start."""
        out: list[Any] = []
        for item_id in folder.entries:
            item = self.items[item_id]
            model = item.model
            if model.recurrence is None:
                if _overlaps(model.start, model.end, start, end, model.is_all_day):
                    out.append(self._item_view(item))
                continue
            duration = model.end - model.start
            longest = max([duration] + [e.model.end - e.model.start
                                        for e in item.exceptions.values()])
            for index, when in rec.occurrences(model.recurrence, model.start, _zone(model),
                                               until=end + longest + duration):
                if index in item.deleted:
                    continue
                exc = item.exceptions.get(index)
                o_start, o_end = (exc.model.start, exc.model.end) if exc else (
                    when, when + duration)
                if _overlaps(o_start, o_end, start, end, model.is_all_day):
                    out.append(self._occurrence_view(item, index))
        out.sort(key=lambda m: (m.start, m._id.id))
        return out

    def sync(
        self, folder: Folder, state: str | None, max_changes: int, ignore: Iterable[str]
    ) -> SyncResult:
        watermark = 0
        if state:
            read = ids.read_sync_state(state)
            if read is None or read[0] != folder.id:
                raise error("ErrorInvalidSyncStateData")
            watermark = read[1]
        skip = set(ignore)
        pending: list[tuple[int, SyncChange]] = []
        for item_id, (entered, changed) in folder.entries.items():
            if changed > watermark:
                kind = "Create" if entered > watermark else "Update"
                pending.append((changed, SyncChange(kind, item_id)))
        for item_id, (entered, left) in folder.tombstones.items():
            if left > watermark and entered <= watermark:
                pending.append((left, SyncChange("Delete", item_id)))
        pending.sort(key=lambda p: p[0])
        chosen: list[SyncChange] = []
        new_mark = watermark
        for seq, change in pending:
            if len(chosen) >= max_changes:
                break
            new_mark = seq
            if change.item_id in skip:
                continue  # Ignore: the client made this change itself
            if change.change_type != "Delete":
                change = SyncChange(change.change_type, change.item_id,
                                    self._item_view(self.items[change.item_id]))
            chosen.append(change)
        includes_last = all(seq <= new_mark for seq, _ in pending)
        if not pending:
            new_mark = max(watermark, self._seq)
        return SyncResult(tuple(chosen), ids.sync_state(folder.id, new_mark), includes_last)

    # -- extended properties (ExtendedFieldURI) and the MAPI properties clients read

    def set_properties(self, item: StoredItem, updates: Sequence[FieldUpdate]) -> None:
        """The ExtendedProperty elements of a new item (CreateItem): PR_SUBJECT and PR_BODY
        set its subject and body, other properties are stored. Part of the creation, so
        no new ChangeKey."""
        fields, extended = _split_properties(updates)
        model = clone(item.model)
        _apply(model, fields)
        item.model = model
        _set_properties(item.extended, extended)

    def item_record(self, target: Target) -> props.Record:
        """The item's (or occurrence's) values by path, for restrictions and responses."""
        item = target.item
        view = self.view(target)
        fields = {uri: _field_value(view, uri) for uri in props.ITEM_QUERYABLE}
        computed: dict[props.PropKey, Any] = {
            props.PR_SUBJECT: view.subject,
            props.PR_BODY: _body_text(view.body),
            props.PR_MESSAGE_CLASS: view.item_class,
            props.PR_CREATION_TIME: item.created,
            props.PR_LAST_MODIFICATION_TIME: view.last_modified_time,
            props.PR_MESSAGE_SIZE: view.size,
            props.PR_INTERNET_ARTICLE_NUMBER: item.article,
            # Exchange names an item's URL from its subject unless a client set the name
            # (DavMail sets it to the CalDAV resource name on every create).
            props.PR_URL_COMP_NAME: f"{item.model.subject or 'Untitled'}.EML",
            props.PID_LID_RECURRING: item.model.recurrence is not None,
            props.PID_LID_APPOINTMENT_START_WHOLE: view.start,
            props.PID_LID_APPOINTMENT_END_WHOLE: view.end,
        }
        values: dict[props.PropKey, props.Value] = {
            key: props.encode(key.base_type, value) for key, value in computed.items()
            if value is not None
        }
        values.update(item.extended)
        if target.index is not None and target.index in item.exceptions:
            values.update(item.exceptions[target.index].extended)
        return props.Record(fields, values)

    def folder_record(self, folder: Folder) -> props.Record:
        children = self.children(folder)
        # CalendarFolder and ContactsFolder have no UnreadCount (types.xsd)
        unread = 0 if folder.spec.element in ("Folder", "SearchFolder", "TasksFolder") else None
        fields = {
            "folder:DisplayName": folder.spec.display_name, "folder:FolderClass":
            folder.spec.folder_class, "folder:TotalCount": len(folder.entries),
            "folder:ChildFolderCount": len(children), "folder:UnreadCount": unread,
        }
        computed: dict[props.PropKey, Any] = {
            props.PR_DISPLAY_NAME: folder.spec.display_name,
            props.PR_CONTAINER_CLASS: folder.spec.folder_class,
            props.PR_CONTENT_COUNT: len(folder.entries),
            props.PR_CONTENT_UNREAD: 0,
            props.PR_SUBFOLDERS: bool(children),
            props.PR_CREATION_TIME: folder.created,
            props.PR_LAST_MODIFICATION_TIME: folder.commit_time,
            props.PR_LOCAL_COMMIT_TIME_MAX: folder.commit_time,
            props.PR_ARTICLE_NUM_NEXT: folder.next_article,
            props.PR_IMAP_LAST_ARTICLE_ID: folder.next_article - 1,
        }
        values: dict[props.PropKey, props.Value] = {
            key: props.encode(key.base_type, value) for key, value in computed.items()
            if value is not None
        }
        values.update(folder.extended)
        return props.Record(fields, values)

    # -- the folder hierarchy (CreateFolder, DeleteFolder)

    def children(self, folder: Folder) -> list[Folder]:
        return [f for f in self.folders.values() if f.spec.parent == folder.spec.name]

    def descendants(self, folder: Folder) -> list[Folder]:
        out = []
        for child in self.children(folder):
            out.append(child)
            out.extend(self.descendants(child))
        return out

    def parent(self, folder: Folder) -> Folder | None:
        return self.folders[folder.spec.parent] if folder.spec.parent else None

    def create_folder(self, parent: Folder, display_name: str | None, folder_class: str | None,
                      element: str, extended: Sequence[FieldUpdate] = ()) -> Folder:
        """A folder a client creates. Its element follows its FolderClass (a t:Folder of
        class IPF.Appointment is a calendar, as DavMail's MKCALENDAR creates one), and a
        folder without a class gets its element's."""
        if not display_name:
            raise error("ErrorInvalidRequest", "A folder needs a DisplayName.")
        if any(c.spec.display_name.lower() == display_name.lower()
               for c in self.children(parent)):
            raise error("ErrorFolderExists")
        if folder_class is None:
            folder_class = {"CalendarFolder": "IPF.Appointment", "ContactsFolder": "IPF.Contact",
                            "TasksFolder": "IPF.Task"}.get(element, "IPF.Note")
        _, properties = _split_properties(extended)
        key = f"folder:{secrets.token_hex(12)}"
        spec = FolderSpec(key, parent.spec.name, display_name, element_for(folder_class),
                          folder_class, distinguished=False)
        now = self._now()
        folder = Folder(spec, ids.folder_id(self.address, key), self._change_key(),
                        self._next_seq(), created=now, commit_time=now)
        _set_properties(folder.extended, properties)
        self.folders[key] = folder
        self._folders_by_id[folder.id] = folder
        self._committed(parent)
        self._emit_folder("Created", folder)
        self._emit_folder("Modified", parent)
        return folder

    def delete_folder(self, folder: Folder, delete_type: str) -> None:
        """HardDelete and SoftDelete remove the folder with its subfolders and items;
        MoveToDeletedItems moves it into Deleted Items (from there it is removed)."""
        if folder.spec.distinguished:
            raise error("ErrorDeleteDistinguishedFolder")
        parent = self.parent(folder)
        trash = self.folders["deleteditems"]
        if delete_type == "MoveToDeletedItems" and trash not in [parent, *self._ancestors(folder)]:
            folder.spec = dataclasses.replace(folder.spec, parent=trash.spec.name)
            folder.created_seq = self._next_seq()  # SyncFolderHierarchy reports it anew
            if parent is not None:
                self._committed(parent)
            self._committed(trash)
            self._emit_folder("Moved", folder, parent)
            return
        for gone in [folder, *self.descendants(folder)]:
            for item_id in list(gone.entries):
                del self.items[item_id]
            self._emit_folder("Deleted", gone)
            del self.folders[gone.spec.name]
            del self._folders_by_id[gone.id]
            self.folder_tombstones[gone.id] = self._next_seq()
        if parent is not None:
            self._committed(parent)
            self._emit_folder("Modified", parent)

    def _ancestors(self, folder: Folder) -> list[Folder]:
        out = []
        parent = self.parent(folder)
        while parent is not None:
            out.append(parent)
            parent = self.parent(parent)
        return out

    @property
    def seq(self) -> int:
        """The last change's sequence number (SyncFolderHierarchy's watermark)."""
        return self._seq


def _busy(item: StoredItem) -> bool:
    """Whether the item (or one of its exceptions) takes time on the calendar."""
    states = [item.model.legacy_free_busy_status] + [
        e.model.legacy_free_busy_status for e in item.exceptions.values()]
    # An appointment without LegacyFreeBusyStatus is Busy (Exchange's default).
    return any(state != "Free" for state in states)


def _free_busy(item: StoredItem) -> tuple[Any, ...] | None:
    """What the item contributes to free/busy: None when it takes no time."""
    if not _busy(item):
        return None
    model = item.model
    return (model.start, model.end, model.legacy_free_busy_status, str(model.recurrence),
            sorted(item.deleted),
            sorted((i, e.model.start, e.model.end, e.model.legacy_free_busy_status)
                   for i, e in item.exceptions.items()))


def _overlaps(a_start: dt.datetime, a_end: dt.datetime, start: dt.datetime, end: dt.datetime,
              all_day: bool) -> bool:
    if a_start == a_end:  # a zero-length item shows on the instant it is at
        return start <= a_start < end
    return a_start < end and a_end > start


_SERVER_FIELDS: Final = (
    "_id", "parent_folder_id", "item_class", "datetime_created", "datetime_received",
    "datetime_sent", "last_modified_time", "last_modified_name", "organizer", "type",
    "original_start", "recurrence_id", "duration", "is_recurring", "first_occurrence",
    "last_occurrence", "modified_occurrences", "deleted_occurrences", "size",
)


def _strip_server_fields(model: Any) -> Any:
    for name in _SERVER_FIELDS:
        setattr(model, name, None)
    return model


_FIELDS_BY_NAME: Final = {f.name: f for f in CalendarItem.FIELDS}
_FIELDS_BY_URI: Final = {
    f.field_uri: f for f in CalendarItem.FIELDS if getattr(f, "field_uri", None)
}


def _field_name(update: FieldUpdate) -> str | None:
    if update.field is not None:
        return update.field
    # ews_parser leaves `field` unset on DeleteItemField (reported as an ews_parser gap):
    # map the FieldURI through exchangelib's field_uri the same way it does for sets.
    uri = getattr(update.path, "uri", None)
    if update.action == "delete" and isinstance(update.path, FieldURI) and uri in _FIELDS_BY_URI:
        return str(_FIELDS_BY_URI[uri].name)
    return None


#: Computed properties a client cannot set.
_READ_ONLY: Final = frozenset({
    props.PR_MESSAGE_CLASS, props.PR_MESSAGE_SIZE, props.PR_INTERNET_ARTICLE_NUMBER,
    props.PR_CREATION_TIME, props.PR_LAST_MODIFICATION_TIME, props.PID_LID_RECURRING,
    props.PID_LID_APPOINTMENT_START_WHOLE, props.PID_LID_APPOINTMENT_END_WHOLE,
})
PropertyChange = tuple[str, props.PropKey, props.Value | None]


def _split_properties(
    updates: Sequence[FieldUpdate],
) -> tuple[list[FieldUpdate], list[PropertyChange]]:
    """Updates of ExtendedFieldURIs out of `updates`, their values checked (before anything
    is applied). PR_SUBJECT and PR_BODY become updates of item:Subject and item:Body, as
    Exchange applies them to the item itself."""
    fields: list[FieldUpdate] = []
    extended: list[PropertyChange] = []
    for update in updates:
        if not isinstance(update.path, ExtendedFieldURI):
            fields.append(update)
            continue
        key = props.key_of(update.path)
        if key in _READ_ONLY:
            raise error("ErrorInvalidPropertySet")
        if update.action == "append":
            raise error("ErrorInvalidPropertyAppend",
                        "An object within a change description must contain one and only one"
                        " property to modify.")
        value = None if update.action == "delete" else props.canonical(key, update.value)
        name = props.ITEM_FIELD_TAGS.get(key)
        if name is not None:
            uri = "item:Subject" if name == "subject" else "item:Body"
            text = value if isinstance(value, str) else None
            fields.append(FieldUpdate(action=update.action, path=FieldURI(uri), field=name,
                                      value=Body(text) if name == "body" and text else text))
        else:
            extended.append((update.action, key, value))
    return fields, extended


def _set_properties(stored: dict[props.PropKey, props.Value],
                    changes: Sequence[PropertyChange]) -> None:
    for action, key, value in changes:
        if action == "delete" or value is None:
            stored.pop(key, None)
        else:
            stored[key] = value


_FIELD_NAMES_BY_URI: Final = {
    f.field_uri: f.name for f in CalendarItem.FIELDS if getattr(f, "field_uri", None)
}


def _field_value(view: Any, uri: str) -> Any:
    name = _FIELD_NAMES_BY_URI.get(uri)
    if name is None:
        return None
    value = getattr(view, name, None)
    if uri == "item:Body":
        return _body_text(value)
    return value


def _body_text(body: Any) -> str | None:
    """The text of item:Body, as PR_BODY holds it (an HTML body's text)."""
    if not body:
        return None
    if isinstance(body, HTMLBody):
        return "".join(str(text) for text in lxml.html.fromstring(str(body)).itertext())
    return str(body)


def _apply(model: Any, updates: Sequence[FieldUpdate]) -> None:
    """Apply UpdateItem's Set/Append/DeleteItemField to a model, field by field."""
    for update in updates:
        name = _field_name(update)
        if name is None or name == "_meeting_timezone":
            # Extended properties and fields a CalendarItem does not have: not stored
            # (see the README's list of what the stand-in does not emulate).
            continue
        model_field = _FIELDS_BY_NAME.get(name)
        if model_field is None or model_field.is_read_only:
            raise error("ErrorInvalidPropertySet", f"{name} is read-only.")
        if update.action == "delete":
            setattr(model, name, model_field.default)
        elif update.action == "append":
            current = getattr(model, name)
            if isinstance(current, list):
                setattr(model, name, current + list(update.value or []))
            elif current is not None and update.value is not None:
                setattr(model, name, current + update.value)
            else:
                setattr(model, name, update.value)
        else:
            setattr(model, name, update.value)
    if isinstance(model.start, EWSDate | dt.date) and not isinstance(model.start, dt.datetime):
        model.is_all_day = True


class Store:
    """Every mailbox, behind one lock (the HTTP layer runs a thread per request)."""

    def __init__(self, addresses: Iterable[str], clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self._mailboxes = {a.lower(): Mailbox(a, clock, self.by_tag) for a in addresses}
        self._observer: Callable[[str, Change], None] | None = None

    def mailbox(self, address: str) -> Mailbox | None:
        return self._mailboxes.get(address.lower())

    def add_mailbox(self, address: str) -> Mailbox:
        with self.lock:
            mailbox = self._mailboxes.setdefault(address.lower(),
                                                 Mailbox(address, self.clock, self.by_tag))
            self._watch(mailbox)
            return mailbox

    def observe(self, callback: Callable[[str, Change], None]) -> None:
        """Tell `callback` (address, change) of every change in every mailbox."""
        with self.lock:
            self._observer = callback
            for mailbox in self._mailboxes.values():
                self._watch(mailbox)

    def _watch(self, mailbox: Mailbox) -> None:
        callback = self._observer
        if callback is not None:
            address = mailbox.address.lower()
            mailbox.observer = lambda change: callback(address, change)

    def addresses(self) -> list[str]:
        return list(self._mailboxes)

    def by_tag(self, tag: bytes) -> Mailbox | None:
        """The mailbox whose ids carry `tag` (ids.mailbox_tag)."""
        return next((m for m in self._mailboxes.values() if ids.mailbox_tag(m.address) == tag),
                    None)
