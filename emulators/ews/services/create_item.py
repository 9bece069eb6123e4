"""CreateItem: new calendar items, and meeting response objects (AcceptItem,
TentativelyAcceptItem, DeclineItem, CancelCalendarItem) that act on an existing item.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createitem-operation-calendar-item
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-cancel-a-meeting-by-using-ews-in-exchange
"""

from __future__ import annotations

from exchangelib.properties import ItemId as ModelItemId
from lxml import etree

from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import ID_ONLY, item_element, m, success
from ews_parser import EwsResponseError
from ews_parser.values import CreateItemRequest, ParsedItem, ResponseObject

_RESPONSES = frozenset({"AcceptItem", "TentativelyAcceptItem", "DeclineItem",
                        "CancelCalendarItem"})


def handle(ctx: Context, request: CreateItemRequest) -> list[etree._Element]:
    ctx.record("CreateItem", "SendMeetingInvitations", request.send_meeting_invitations)
    messages = []
    for item in request.items:
        try:
            messages.append(_one(ctx, request, item))
        except EwsResponseError as exc:
            messages.append(error_message("CreateItem", exc))
    return messages


def _one(ctx: Context, request: CreateItemRequest,
         item: ParsedItem | ResponseObject) -> etree._Element:
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
    stored = mailbox.create(item.model, folder)
    # CreateItem answers with the new ItemId and ChangeKey only.
    created = type(item.model)(_id=ModelItemId(id=stored.id, changekey=stored.change_key))
    items.append(item_element(created, ID_ONLY))
    return message
