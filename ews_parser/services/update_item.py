"""UpdateItem requests: only the changed fields, each a SetItemField, AppendToItemField or
DeleteItemField on an item named by ItemId, OccurrenceItemId or RecurringMasterItemId.

The partial item inside Set/Append is read through the exchangelib field that the
FieldURI names, so the value has exactly the type a full item would give it. Floating
date-times are read in the zone the same change sets (StartTimeZone / EndTimeZone /
MeetingTimeZone), else the request's TimeZoneContext.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/updateitem
"""

from __future__ import annotations

from typing import Any, Final

from lxml import etree

from ews_parser.calendar_item import (
    normalise_values,
    read_legacy_time_zone,
    validate_recurrence,
    zones_for,
)
from ews_parser.common import (
    ParseContext,
    child_elements,
    partial_item,
    read_item_target,
    read_one_folder,
)
from ews_parser.errors import EwsParseError
from ews_parser.fields import (
    field_for,
    find_path,
    read_extended_value,
    read_field_value,
    well_known_field,
)
from ews_parser.values import (
    ExtendedFieldURI,
    FieldUpdate,
    FieldURI,
    ItemChange,
    UpdateAction,
    UpdateItemRequest,
)
from ews_parser.xml import local, m, t

_ACTIONS: Final[dict[str, UpdateAction]] = {
    t("SetItemField"): "set",
    t("AppendToItemField"): "append",
    t("DeleteItemField"): "delete",
}


def read_request(op: etree._Element, ctx: ParseContext) -> UpdateItemRequest:
    changes = tuple(
        _read_change(change, ctx) for change in child_elements(op.find(m("ItemChanges")))
    )
    return UpdateItemRequest(
        conflict_resolution=op.get("ConflictResolution"),
        message_disposition=op.get("MessageDisposition"),
        send_meeting_invitations_or_cancellations=op.get("SendMeetingInvitationsOrCancellations"),
        saved_item_folder=read_one_folder(op.find(m("SavedItemFolderId"))),
        changes=changes,
    )


def _read_change(change: etree._Element, ctx: ParseContext) -> ItemChange:
    target = None
    updates_elem = None
    for child in change:
        if not isinstance(child.tag, str):
            continue
        if child.tag == t("Updates"):
            updates_elem = child
        elif target is None:
            target = read_item_target(child)
    if target is None:
        raise EwsParseError("ItemChange names no item", where="ItemChange")
    raw_updates = [u for u in child_elements(updates_elem) if u.tag in _ACTIONS]
    partials = [p for p in (partial_item(u) for u in raw_updates) if p is not None]
    zones = zones_for(partials, ctx.context_zone)
    for item in partials:
        normalise_values(item, zones)
    return ItemChange(target=target, updates=tuple(_read_update(u) for u in raw_updates))


def _read_update(update: etree._Element) -> FieldUpdate:
    action = _ACTIONS[update.tag]
    path = find_path(update)
    if action == "delete":
        field = field_for(path, "CalendarItem")
        name = field.name if field else well_known_field(path)
        return FieldUpdate(action=action, path=path, field=name)
    item = partial_item(update)
    if item is None:
        raise EwsParseError(f"{local(update.tag)} without the item that carries the value")
    element_name = local(item.tag)
    value: Any
    field_name: str | None = None
    if isinstance(path, ExtendedFieldURI):
        value = read_extended_value(item)
        field_name = well_known_field(path)
        if field_name == "body" and isinstance(value, str):
            from exchangelib.properties import Body

            value = Body(value)  # PidTagBody is the plain-text body
    elif isinstance(path, FieldURI) and path.uri == "calendar:MeetingTimeZone":
        # exchangelib cannot read the legacy element (see calendar_item.py)
        meeting = item.find(t("MeetingTimeZone"))
        value = read_legacy_time_zone(meeting) if meeting is not None else None
        field_name = "_meeting_timezone"
    else:
        field = field_for(path, element_name)
        if field is None:
            value = None
        else:
            field_name = field.name
            value = read_field_value(field, item)
            if field_name == "recurrence" and value is not None:
                validate_recurrence(value)
    return FieldUpdate(
        action=action, path=path, item_class=element_name, field=field_name, value=value
    )
