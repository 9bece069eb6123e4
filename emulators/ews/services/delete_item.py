"""DeleteItem: HardDelete, SoftDelete and MoveToDeletedItems of items; deleting an
occurrence records a DeletedOccurrence on its master.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/deleteitem-operation
"""

from __future__ import annotations

from lxml import etree

from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import success
from ews_parser import EwsResponseError
from ews_parser.values import DeleteItemRequest


def handle(ctx: Context, request: DeleteItemRequest) -> list[etree._Element]:
    ctx.record("DeleteItem", "SendMeetingCancellations", request.send_meeting_cancellations)
    # DeleteType is required by the schema.
    delete_type = request.delete_type or "HardDelete"
    messages = []
    for target in request.targets:
        try:
            ctx.mailbox.delete(ctx.mailbox.resolve(target), delete_type)
        except EwsResponseError as exc:
            messages.append(error_message("DeleteItem", exc))
            continue
        messages.append(success("DeleteItem"))
    return messages
