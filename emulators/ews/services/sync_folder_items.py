"""SyncFolderItems: the change feed of a calendar folder, paged by MaxChangesReturned,
resumed from an opaque SyncState, skipping the ids in Ignore.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderitems
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from emulators.ews.properties import asks_for_properties, insert_properties
from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import Shape, item_element, m, success, t
from ews_parser import EwsResponseError
from ews_parser.values import ItemId, SyncFolderItemsRequest

#: MaxChangesReturned's documented range.
MAX_CHANGES: Final = 512


def handle(ctx: Context, request: SyncFolderItemsRequest) -> list[etree._Element]:
    base, paths = ctx.shape("SyncFolderItems")
    shape = Shape.of(base, paths)
    try:
        limit = request.max_changes_returned
        if limit is None or not 1 <= limit <= MAX_CHANGES:
            raise EwsResponseError("ErrorInvalidRequest",
                                   "MaxChangesReturned must be between 1 and 512.")
        folder = ctx.mailbox.calendar_folder(request.sync_folder)
        result = ctx.mailbox.sync(folder, request.sync_state, limit,
                                  (i.id for i in request.ignore))
    except EwsResponseError as exc:
        # Exchange's error message still carries an empty SyncState and
        # IncludesLastItemInRange (see the ConcurrentSyncCalls sample in the corpus).
        message = error_message("SyncFolderItems", exc)
        etree.SubElement(message, m("SyncState"))
        etree.SubElement(message, m("IncludesLastItemInRange")).text = "true"
        return [message]
    message = success("SyncFolderItems")
    etree.SubElement(message, m("SyncState")).text = result.sync_state
    etree.SubElement(message, m("IncludesLastItemInRange")).text = (
        "true" if result.includes_last_item_in_range else "false")
    changes = etree.SubElement(message, m("Changes"))
    for change in result.changes:
        elem = etree.SubElement(changes, t(change.change_type))
        if change.model is None:
            etree.SubElement(elem, t("ItemId"), Id=change.item_id)
        else:
            item = item_element(change.model, shape)
            if asks_for_properties(paths):
                record = ctx.mailbox.item_record(ctx.mailbox.resolve(ItemId(change.item_id)))
                insert_properties(item, record.property_elements(paths))
            elem.append(item)
    return [message]
