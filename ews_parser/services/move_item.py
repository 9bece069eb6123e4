"""MoveItem requests (a move to `deleteditems` is how many clients delete).

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/moveitem
"""

from __future__ import annotations

from lxml import etree

from ews_parser.common import ParseContext, read_item_targets, read_one_folder
from ews_parser.values import MoveItemRequest
from ews_parser.xml import m


def read_request(op: etree._Element, ctx: ParseContext) -> MoveItemRequest:
    return MoveItemRequest(
        to_folder=read_one_folder(op.find(m("ToFolderId"))),
        targets=read_item_targets(op.find(m("ItemIds"))),
    )
