"""CreateItem: new calendar items, and meeting response objects (AcceptItem,
TentativelyAcceptItem, DeclineItem, CancelCalendarItem) that act on an existing item.

A CalendarItem may carry its content as iCalendar MimeContent instead of (or beside)
Subject, Start, End...: DavMail sends every CalDAV PUT so. The iCalendar is converted into
the item (mapping/ical.py, which the worker reads it with too); elements the request also
sends win over it.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createitem-operation-calendar-item
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-cancel-a-meeting-by-using-ews-in-exchange
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/mimecontent
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import ItemId as ModelItemId
from lxml import etree

from emulators.ews.mailbox import Mailbox
from emulators.ews.properties import read_extended_properties
from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import ID_ONLY, item_element, m, success
from ews_parser import EwsResponseError
from ews_parser.calendar_item import zone_from_id
from ews_parser.common import child_elements
from ews_parser.values import CreateItemRequest, FieldUpdate, FieldURI, ParsedItem, ResponseObject
from ews_parser.xml import local, parse_xml, t, text
from mapping import ical

_RESPONSES = frozenset({"AcceptItem", "TentativelyAcceptItem", "DeclineItem",
                        "CancelCalendarItem"})
_FIELD_URIS: Final = {
    f.name: f.field_uri for f in CalendarItem.FIELDS if getattr(f, "field_uri", None)
}
#: Exchange's wording for the MIME response codes.
_MIME_ERRORS: Final = {
    "ErrorMimeContentConversionFailed": "MIME content conversion failed.",
    "ErrorMimeContentInvalidBase64String": "Invalid base64 string for MIME content.",
}


def handle(ctx: Context, request: CreateItemRequest) -> list[etree._Element]:
    ctx.record("CreateItem", "SendMeetingInvitations", request.send_meeting_invitations)
    elements = _item_elements(ctx)
    messages = []
    for position, item in enumerate(request.items):
        element = elements[position] if position < len(elements) else None
        try:
            messages.append(_one(ctx, request, item, element))
        except EwsResponseError as exc:
            messages.append(error_message("CreateItem", exc))
    return messages


def _item_elements(ctx: Context) -> list[etree._Element]:
    """The request's item elements, in order, when one may carry MimeContent or extended
    properties: which elements a request sent, MimeContent exchangelib could not decode and
    ExtendedProperty are not in ews_parser's values."""
    if b"MimeContent" not in ctx.body and b"ExtendedProperty" not in ctx.body:
        return []
    items = parse_xml(ctx.body).find(f".//{m('CreateItem')}/{m('Items')}")
    return list(child_elements(items))


def _one(ctx: Context, request: CreateItemRequest, item: ParsedItem | ResponseObject,
         element: etree._Element | None) -> etree._Element:
    mailbox = ctx.mailbox
    message = success("CreateItem")
    items = etree.SubElement(message, m("Items"))
    if isinstance(item, ResponseObject):
        if item.item_class not in _RESPONSES or item.reference_item_id is None:
            raise EwsResponseError("ErrorInvalidRequest", "The request is invalid.")
        mailbox.respond(mailbox.resolve(item.reference_item_id), item.item_class)
        # The meeting message that would be sent is not kept: Items stays empty.
        return message
    if item.model is None:
        raise EwsResponseError("ErrorInvalidRequest",
                               f"This stand-in stores calendar items only, not {item.item_class}.")
    folder = mailbox.calendar_folder(request.saved_item_folder)
    imported = _imported(ctx, element)
    model = item.model
    if imported is not None:
        ical.merge(model, imported, (local(c.tag) for c in child_elements(element)))
    model.mime_content = None  # Exchange keeps the properties and writes MIME afresh
    stored = mailbox.create(model, folder)
    if element is not None:
        # ExtendedProperty elements: stored, or (PR_SUBJECT, PR_BODY) applied to the item
        mailbox.set_properties(stored, read_extended_properties(element))
    if imported is not None and (imported.modified or imported.deleted):
        mailbox.import_occurrences(
            stored,
            [(o.original_start, _updates(o.fields)) for o in imported.modified],
            imported.deleted,
        )
    # CreateItem answers with the new ItemId and ChangeKey only.
    created = type(item.model)(_id=ModelItemId(id=stored.id, changekey=stored.change_key))
    items.append(item_element(created, ID_ONLY))
    return message


def _imported(ctx: Context, element: etree._Element | None) -> ical.Imported | None:
    mime_elem = element.find(t("MimeContent")) if element is not None else None
    if mime_elem is None:
        return None
    try:
        # strictly, as .NET's Convert.FromBase64String (exchangelib skips bad characters)
        data = base64.b64decode("".join((text(mime_elem) or "").split()), validate=True)
    except (binascii.Error, ValueError):
        code = "ErrorMimeContentInvalidBase64String"
        raise EwsResponseError(code, _MIME_ERRORS[code]) from None
    try:
        return ical.read_calendar(data, owner=ctx.mailbox.address,
                                  default_zone=_request_zone(ctx, ctx.mailbox) or ical.UTC_ZONE)
    except ical.MimeConversionError:
        code = "ErrorMimeContentConversionFailed"
        raise EwsResponseError(code, _MIME_ERRORS[code]) from None


def _request_zone(ctx: Context, mailbox: Mailbox) -> EWSTimeZone | None:
    """What reads floating times and all-day dates: the request's TimeZoneContext, else
    the mailbox's own zone."""
    for name in (ctx.envelope.header.time_zone_context, getattr(mailbox, "time_zone", None)):
        zone = zone_from_id(name) if name else None
        if zone is not None and isinstance(zone.ews, EWSTimeZone):
            return zone.ews
    return None


def _updates(fields: dict[str, Any]) -> list[FieldUpdate]:
    """A modified occurrence's fields as the SetItemFields an UpdateItem would carry."""
    return [FieldUpdate("set", FieldURI(_FIELD_URIS[name]), "CalendarItem", name, value)
            for name, value in fields.items() if name in _FIELD_URIS]
