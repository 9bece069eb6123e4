"""MoveItem: an item to another folder, where it gets a new ItemId.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/moveitem-operation
"""

from __future__ import annotations

from exchangelib.items import CalendarItem
from exchangelib.properties import ItemId as ModelItemId
from lxml import etree

from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import ID_ONLY, item_element, m, success
from ews_parser import EwsResponseError
from ews_parser.values import MoveItemRequest


def handle(ctx: Context, request: MoveItemRequest) -> list[etree._Element]:
    messages = []
    try:
        folder = ctx.mailbox.folder(request.to_folder)
    except EwsResponseError as exc:
        return [error_message("MoveItem", exc) for _ in request.targets]
    for target in request.targets:
        try:
            moved = ctx.mailbox.move(ctx.mailbox.resolve(target), folder)
        except EwsResponseError as exc:
            messages.append(error_message("MoveItem", exc))
            continue
        message = success("MoveItem")
        model = CalendarItem(_id=ModelItemId(id=moved.id, changekey=moved.change_key))
        etree.SubElement(message, m("Items")).append(item_element(model, ID_ONLY))
        messages.append(message)
    return messages
