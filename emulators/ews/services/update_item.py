"""UpdateItem: Set/Append/DeleteItemField on items, occurrences and masters, with
ChangeKey conflict detection.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/updateitem-operation-calendar-item
"""

from __future__ import annotations

from exchangelib.items import CalendarItem
from exchangelib.properties import ItemId as ModelItemId
from lxml import etree

from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import ID_ONLY, item_element, m, success, t
from ews_parser import EwsResponseError
from ews_parser.values import UpdateItemRequest


def handle(ctx: Context, request: UpdateItemRequest) -> list[etree._Element]:
    ctx.record("UpdateItem", "SendMeetingInvitationsOrCancellations",
               request.send_meeting_invitations_or_cancellations)
    # ConflictResolution is required by the schema; AutoResolve is its documented default.
    resolution = request.conflict_resolution or "AutoResolve"
    mailbox = ctx.mailbox
    messages = []
    for change in request.changes:
        try:
            target = mailbox.resolve(change.target)
            key = change.target.change_key
            mailbox.check_change_key(target, key, resolution)
            target = mailbox.update(target, change.updates)
        except EwsResponseError as exc:
            messages.append(error_message("UpdateItem", exc))
            continue
        message = success("UpdateItem")
        updated = CalendarItem(_id=ModelItemId(id=mailbox.item_id(target),
                                               changekey=target.change_key))
        etree.SubElement(message, m("Items")).append(item_element(updated, ID_ONLY))
        conflicts = etree.SubElement(message, m("ConflictResults"))
        etree.SubElement(conflicts, t("Count")).text = "0"
        messages.append(message)
    return messages

