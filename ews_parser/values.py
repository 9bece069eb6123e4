"""Typed values the parser returns (STYLE.md, convention 5).

Names are EWS names in snake_case, so that `ItemId.change_key` is the `ChangeKey` attribute
of a `t:ItemId` and `DeleteItemRequest.delete_type` is `DeleteType`. Calendar items
themselves are exchangelib's own `CalendarItem` models, wrapped in `ParsedItem` with what
exchangelib cannot carry (the legacy MeetingTimeZone rules, warnings).

Reference: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-xml-elements-in-exchange
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

Kind: TypeAlias = Literal["request", "response", "fault"]
UpdateAction: TypeAlias = Literal["set", "append", "delete"]

# --- ids and folders -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemId:
    """`t:ItemId` (also `ReferenceItemId`, and the ids inside SyncFolderItems' Ignore)."""

    id: str
    change_key: str | None = None


@dataclass(frozen=True, slots=True)
class OccurrenceItemId:
    """`t:OccurrenceItemId`: the Nth occurrence (1-based) of a recurring master."""

    recurring_master_id: str
    instance_index: int
    change_key: str | None = None


@dataclass(frozen=True, slots=True)
class RecurringMasterItemId:
    """`t:RecurringMasterItemId`: the master of the series an occurrence belongs to."""

    occurrence_id: str
    change_key: str | None = None


ItemTarget: TypeAlias = ItemId | OccurrenceItemId | RecurringMasterItemId


@dataclass(frozen=True, slots=True)
class FolderId:
    id: str
    change_key: str | None = None


@dataclass(frozen=True, slots=True)
class DistinguishedFolderId:
    """`t:DistinguishedFolderId`: a well-known folder (`calendar`, `deleteditems`, ...),
    of another mailbox when `mailbox` is set (delegate access)."""

    id: str
    mailbox: str | None = None
    change_key: str | None = None


FolderTarget: TypeAlias = FolderId | DistinguishedFolderId


# --- SOAP header -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impersonation:
    """`t:ExchangeImpersonation/t:ConnectingSID`: exactly one of these is set."""

    primary_smtp_address: str | None = None
    smtp_address: str | None = None
    principal_name: str | None = None
    sid: str | None = None

    @property
    def mailbox(self) -> str | None:
        """The address or name that identifies the impersonated user, best first."""
        return self.primary_smtp_address or self.smtp_address or self.principal_name or self.sid


@dataclass(frozen=True, slots=True)
class ServerVersionInfo:
    major_version: int | None = None
    minor_version: int | None = None
    major_build_number: int | None = None
    minor_build_number: int | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Header:
    request_server_version: str | None = None
    #: `t:TimeZoneContext/t:TimeZoneDefinition/@Id`: a Windows time zone id
    time_zone_context: str | None = None
    impersonation: Impersonation | None = None
    mailbox_culture: str | None = None
    server_version_info: ServerVersionInfo | None = None


# --- field paths (UpdateItem, GetItem AdditionalProperties) ---------------------------


@dataclass(frozen=True, slots=True)
class FieldURI:
    uri: str  # e.g. "calendar:Start", "item:Subject"


@dataclass(frozen=True, slots=True)
class IndexedFieldURI:
    uri: str
    index: str


@dataclass(frozen=True, slots=True)
class ExtendedFieldURI:
    """A MAPI property: by tag, or by property set and name/id, with its type."""

    property_type: str
    distinguished_property_set_id: str | None = None
    property_set_id: str | None = None
    property_tag: str | None = None
    property_name: str | None = None
    property_id: int | None = None

    @property
    def uri(self) -> str:
        """A readable, stable name for the property (EWS has none)."""
        where = self.distinguished_property_set_id or self.property_set_id or ""
        what = (
            self.property_tag
            or self.property_name
            or (str(self.property_id) if self.property_id is not None else "")
        )
        return f"extended:{where}/{what}" if where else f"extended:{what}"


FieldPath: TypeAlias = FieldURI | IndexedFieldURI | ExtendedFieldURI


# --- time zones exchangelib cannot read ------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransitionRule:
    """One half of a legacy `MeetingTimeZone`: when standard or daylight time starts.

    `day_of_week_index` is 1..4 for First..Fourth and -1 for Last.
    """

    offset: dt.timedelta  # added to BaseOffset (EWS offsets are UTC minus local)
    month: int
    day_of_week: int  # Monday = 0, as datetime.weekday()
    day_of_week_index: int
    time: dt.time


@dataclass(frozen=True, slots=True)
class LegacyTimeZone:
    """Exchange 2007's `t:MeetingTimeZone`: a name and, often, the rules themselves.

    Offsets follow EWS: BaseOffset is UTC minus local time (PT360M for US Central).
    """

    name: str | None
    base_offset: dt.timedelta | None = None
    standard: TransitionRule | None = None
    daylight: TransitionRule | None = None


# --- items -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MimeContent:
    """An item's `t:MimeContent`, decoded: for a calendar item, the iCalendar itself.

    `character_set` is the CharacterSet attribute as sent (Exchange ignores it on input:
    base64 is ASCII, and the iCalendar names its own charset). `sent_beside` names the
    item's other child elements: on Exchange they win over what the MimeContent says.
    """

    data: bytes = field(repr=False)
    character_set: str | None = None
    sent_beside: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """One item element: its EWS element name, its id and, for calendar items, the
    exchangelib model read from it.

    `model` is an `exchangelib.items.CalendarItem` for `t:CalendarItem`; for other item
    kinds (Message, MeetingRequest, ...) only the ids are read, so `model` is None.
    Date-times in the model are time zone aware (UTC), except all-day `start`/`end`, which
    are dates as exchangelib returns them (end inclusive). `mime_content`: the item's
    `t:MimeContent` decoded, when it carries one (DavMail sends every event as iCalendar
    MimeContent with no Subject, Start or End: mapping.ical reads it).
    """

    item_class: str
    item_id: ItemId | None
    model: Any = None
    legacy_time_zone: LegacyTimeZone | None = None
    warnings: tuple[str, ...] = ()
    mime_content: MimeContent | None = None


@dataclass(frozen=True, slots=True)
class ResponseObject:
    """A meeting response object sent in a CreateItem: `CancelCalendarItem`,
    `AcceptItem`, `TentativelyAcceptItem`, `DeclineItem`, ..."""

    item_class: str
    reference_item_id: ItemId | None


@dataclass(frozen=True, slots=True)
class ParsedFolder:
    """A folder element of a GetFolder / FindFolder / SyncFolderHierarchy response."""

    folder_type: str  # element name: "CalendarFolder", "Folder", ...
    folder_id: FolderId | None
    parent_folder_id: FolderId | None = None
    folder_class: str | None = None  # e.g. "IPF.Appointment"
    display_name: str | None = None


# --- requests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldUpdate:
    """One `SetItemField` / `AppendToItemField` / `DeleteItemField`.

    `field` is the exchangelib field name the path maps to (None for extended properties
    and for paths exchangelib's CalendarItem does not have); `value` is that field's value
    as exchangelib reads it from the partial item (None for deletes), or the raw text of an
    extended property.
    """

    action: UpdateAction
    path: FieldPath
    item_class: str | None = None
    field: str | None = None
    value: Any = None


@dataclass(frozen=True, slots=True)
class ItemChange:
    target: ItemTarget
    updates: tuple[FieldUpdate, ...]


@dataclass(frozen=True, slots=True)
class CreateItemRequest:
    message_disposition: str | None
    send_meeting_invitations: str | None
    saved_item_folder: FolderTarget | None
    items: tuple[ParsedItem | ResponseObject, ...]


@dataclass(frozen=True, slots=True)
class UpdateItemRequest:
    conflict_resolution: str | None
    message_disposition: str | None
    send_meeting_invitations_or_cancellations: str | None
    saved_item_folder: FolderTarget | None
    changes: tuple[ItemChange, ...]


@dataclass(frozen=True, slots=True)
class DeleteItemRequest:
    delete_type: str | None
    send_meeting_cancellations: str | None
    affected_task_occurrences: str | None
    targets: tuple[ItemTarget, ...]


@dataclass(frozen=True, slots=True)
class MoveItemRequest:
    to_folder: FolderTarget | None
    targets: tuple[ItemTarget, ...]


@dataclass(frozen=True, slots=True)
class GetItemRequest:
    base_shape: str | None
    additional_properties: tuple[FieldPath, ...]
    targets: tuple[ItemTarget, ...]


@dataclass(frozen=True, slots=True)
class CalendarView:
    start: dt.datetime | None
    end: dt.datetime | None
    max_entries_returned: int | None = None


@dataclass(frozen=True, slots=True)
class IndexedPageView:
    offset: int
    base_point: str
    max_entries_returned: int | None = None


@dataclass(frozen=True, slots=True)
class FindItemRequest:
    traversal: str | None
    base_shape: str | None
    view: CalendarView | IndexedPageView | None
    parent_folders: tuple[FolderTarget, ...]
    additional_properties: tuple[FieldPath, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncFolderItemsRequest:
    base_shape: str | None
    sync_folder: FolderTarget | None
    sync_state: str | None
    ignore: tuple[ItemId, ...]
    max_changes_returned: int | None
    sync_scope: str | None = None
    additional_properties: tuple[FieldPath, ...] = ()


@dataclass(frozen=True, slots=True)
class GetFolderRequest:
    base_shape: str | None
    folders: tuple[FolderTarget, ...]


@dataclass(frozen=True, slots=True)
class FindFolderRequest:
    traversal: str | None
    base_shape: str | None
    parent_folders: tuple[FolderTarget, ...]


@dataclass(frozen=True, slots=True)
class SyncFolderHierarchyRequest:
    base_shape: str | None
    sync_folder: FolderTarget | None
    sync_state: str | None


@dataclass(frozen=True, slots=True)
class UnknownOperation:
    """A well-formed EWS envelope for an operation calsync does not read."""

    name: str


Request: TypeAlias = (
    CreateItemRequest
    | UpdateItemRequest
    | DeleteItemRequest
    | MoveItemRequest
    | GetItemRequest
    | FindItemRequest
    | SyncFolderItemsRequest
    | GetFolderRequest
    | FindFolderRequest
    | SyncFolderHierarchyRequest
    | UnknownOperation
)

# --- responses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncChange:
    """One change of a SyncFolderItems (items) or SyncFolderHierarchy (folders) response."""

    change_type: Literal["Create", "Update", "Delete", "ReadFlagChange"]
    item: ParsedItem | None = None
    item_id: ItemId | None = None  # for Delete and ReadFlagChange, which carry only the id
    folder: ParsedFolder | None = None
    is_read: bool | None = None


@dataclass(frozen=True, slots=True)
class FindPaging:
    """The paging attributes of FindItem's / FindFolder's `m:RootFolder`."""

    total_items_in_view: int | None
    includes_last_item_in_range: bool | None
    indexed_paging_offset: int | None = None


@dataclass(frozen=True, slots=True)
class ResponseMessage:
    """One `*ResponseMessage`, in the order of the request's items.

    Fields after `message_xml` are filled only by the operations that have them.
    """

    response_class: str  # Success, Warning, Error
    response_code: str | None
    message_text: str | None = None
    descriptive_link_key: int | None = None
    #: `m:MessageXml` children: (Name attribute or element name, text)
    message_xml: tuple[tuple[str, str], ...] = ()
    items: tuple[ParsedItem, ...] = ()
    folders: tuple[ParsedFolder, ...] = ()
    conflict_results: int | None = None
    paging: FindPaging | None = None
    sync_state: str | None = None
    includes_last_item_in_range: bool | None = None
    changes: tuple[SyncChange, ...] = ()

    @property
    def back_off_ms(self) -> int | None:
        return back_off_from(self.message_xml)

    @property
    def ok(self) -> bool:
        """Exchange applied the change (a Warning still means it did)."""
        return self.response_class in ("Success", "Warning")


@dataclass(frozen=True, slots=True)
class Response:
    messages: tuple[ResponseMessage, ...]


@dataclass(frozen=True, slots=True)
class Fault:
    """A SOAP fault: the whole request failed, nothing was applied."""

    faultcode: str | None
    faultstring: str | None
    response_code: str | None
    message: str | None
    message_xml: tuple[tuple[str, str], ...] = ()

    @property
    def back_off_ms(self) -> int | None:
        return back_off_from(self.message_xml)


def back_off_from(message_xml: tuple[tuple[str, str], ...]) -> int | None:
    for name, value in message_xml:
        if name == "BackOffMilliseconds":
            try:
                return int(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A whole parsed SOAP envelope."""

    kind: Kind
    operation: str | None  # None for faults, which do not say
    header: Header
    body: Request | Response | Fault = field(repr=False)

    @property
    def known(self) -> bool:
        return not isinstance(self.body, UnknownOperation)


# --- the cheap classification ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemRef:
    """An item a response names: its element name, id and change key (and for
    SyncFolderItems, the kind of change). `calendar_item_type`: a calendar item's
    CalendarItemType when the response carries it (Single, Occurrence, Exception,
    RecurringMaster): an occurrence has an ItemId of its own, and is no event of its own."""

    item_class: str
    id: str
    change_key: str | None = None
    change_type: str | None = None
    calendar_item_type: str | None = None


@dataclass(frozen=True, slots=True)
class FolderRef:
    folder_type: str
    id: str
    change_key: str | None = None
    folder_class: str | None = None
    change_type: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSummary:
    response_class: str
    response_code: str | None
    items: tuple[ItemRef, ...] = ()
    folders: tuple[FolderRef, ...] = ()
    back_off_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.response_class in ("Success", "Warning")


@dataclass(frozen=True, slots=True)
class Classification:
    """What the proxy's hooks need to know about a flow, read in microseconds.

    For requests: the folders named (SavedItemFolderId, ParentFolderIds, ToFolderId,
    SyncFolderId, FolderIds), the items targeted (ItemIds, OccurrenceItemIds, ... and the
    ReferenceItemId of response objects), and `item_classes`: for CreateItem the element
    name of each item created, for UpdateItem the element name of each change's partial
    item ("" when a change only deletes fields), aligned with `targets`.
    For responses: one summary per response message, in order. For faults: the code.
    """

    kind: Kind
    operation: str | None
    known: bool
    impersonation: Impersonation | None = None
    time_zone_context: str | None = None
    folders: tuple[FolderTarget, ...] = ()
    targets: tuple[ItemTarget, ...] = ()
    item_classes: tuple[str, ...] = ()
    messages: tuple[MessageSummary, ...] = ()
    fault_code: str | None = None
    back_off_ms: int | None = None
