"""GetItem: items, occurrences (OccurrenceItemId, or an occurrence's own ItemId) and
recurring masters (RecurringMasterItemId), in the requested shape, with the item as
iCalendar MimeContent when the shape asks for it (IncludeMimeContent, or item:MimeContent
among the AdditionalProperties).

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getitem-operation-calendar-item
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/includemimecontent
"""

from __future__ import annotations

from lxml import etree

from emulators.ews.mime import mime_element
from emulators.ews.properties import asks_for_properties, insert_properties
from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import Shape, item_element, m, success
from ews_parser import EwsResponseError
from ews_parser.values import FieldURI, GetItemRequest
from ews_parser.xml import parse_xml, t, text
from mapping.ical import write_calendar


def handle(ctx: Context, request: GetItemRequest) -> list[etree._Element]:
    shape = Shape.of(request.base_shape, request.additional_properties)
    with_mime = _include_mime_content(ctx) or any(
        isinstance(p, FieldURI) and p.uri == "item:MimeContent"
        for p in request.additional_properties)
    mailbox = ctx.mailbox
    messages = []
    for target in request.targets:
        try:
            resolved = mailbox.resolve(target)
            model = mailbox.view(resolved)
        except EwsResponseError as exc:
            messages.append(error_message("GetItem", exc))
            continue
        elem = item_element(model, shape)
        if asks_for_properties(request.additional_properties):
            insert_properties(elem, mailbox.item_record(resolved).property_elements(
                request.additional_properties))
        if with_mime:
            # MimeContent comes first in an item (ItemType's sequence in types.xsd)
            data = write_calendar(model, mailbox.exception_views(resolved),
                                  now=model.last_modified_time)
            elem.insert(0, mime_element(data))
        message = success("GetItem")
        etree.SubElement(message, m("Items")).append(elem)
        messages.append(message)
    return messages


def _include_mime_content(ctx: Context) -> bool:
    """ItemShape's IncludeMimeContent (ews_parser does not keep it)."""
    if b"IncludeMimeContent" not in ctx.body:
        return False
    found = parse_xml(ctx.body).find(
        f".//{m('GetItem')}/{m('ItemShape')}/{t('IncludeMimeContent')}")
    return (text(found) or "").strip() in ("true", "1")
