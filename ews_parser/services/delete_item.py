"""DeleteItem requests.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/deleteitem
"""

from __future__ import annotations

from lxml import etree

from ews_parser.common import ParseContext, read_item_targets
from ews_parser.values import DeleteItemRequest
from ews_parser.xml import m


def read_request(op: etree._Element, ctx: ParseContext) -> DeleteItemRequest:
    return DeleteItemRequest(
        delete_type=op.get("DeleteType"),
        send_meeting_cancellations=op.get("SendMeetingCancellations"),
        affected_task_occurrences=op.get("AffectedTaskOccurrences"),
        targets=read_item_targets(op.find(m("ItemIds"))),
    )
