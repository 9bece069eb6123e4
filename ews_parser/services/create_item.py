"""CreateItem requests: new calendar items, and meeting response objects
(CancelCalendarItem, AcceptItem, ...), which are created to act on another item.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createitem
"""

from __future__ import annotations

from lxml import etree

from ews_parser.common import ParseContext, child_elements, read_one_folder
from ews_parser.items import read_request_item
from ews_parser.values import CreateItemRequest
from ews_parser.xml import m


def read_request(op: etree._Element, ctx: ParseContext) -> CreateItemRequest:
    items = list(child_elements(op.find(m("Items"))))
    return CreateItemRequest(
        message_disposition=op.get("MessageDisposition"),
        send_meeting_invitations=op.get("SendMeetingInvitations"),
        saved_item_folder=read_one_folder(op.find(m("SavedItemFolderId"))),
        items=tuple(read_request_item(item, ctx) for item in items),
    )
