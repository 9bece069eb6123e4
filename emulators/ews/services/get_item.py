"""GetItem: items, occurrences (OccurrenceItemId) and recurring masters
(RecurringMasterItemId), in the requested shape.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getitem-operation-calendar-item
"""

from __future__ import annotations

from lxml import etree

from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import Shape, item_element, m, success
from ews_parser import EwsResponseError
from ews_parser.values import GetItemRequest


def handle(ctx: Context, request: GetItemRequest) -> list[etree._Element]:
    shape = Shape.of(request.base_shape, request.additional_properties)
    messages = []
    for target in request.targets:
        try:
            model = ctx.mailbox.view(ctx.mailbox.resolve(target))
        except EwsResponseError as exc:
            messages.append(error_message("GetItem", exc))
            continue
        message = success("GetItem")
        etree.SubElement(message, m("Items")).append(item_element(model, shape))
        messages.append(message)
    return messages
