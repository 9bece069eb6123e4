"""SyncFolderItems requests: the Exchange change feed.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderitems
"""

from __future__ import annotations

from lxml import etree

from ews_parser.common import ParseContext, read_item_targets, read_one_folder
from ews_parser.errors import EwsParseError
from ews_parser.services.get_item import read_shape
from ews_parser.values import ItemId, SyncFolderItemsRequest
from ews_parser.xml import m, text


def read_request(op: etree._Element, ctx: ParseContext) -> SyncFolderItemsRequest:
    base_shape, extra = read_shape(op.find(m("ItemShape")))
    max_changes = text(op.find(m("MaxChangesReturned")))
    if max_changes is not None and not max_changes.isdigit():
        raise EwsParseError(f"not a number: {max_changes[:20]!r}", where="MaxChangesReturned")
    ignore = tuple(
        target for target in read_item_targets(op.find(m("Ignore"))) if isinstance(target, ItemId)
    )
    return SyncFolderItemsRequest(
        base_shape=base_shape,
        sync_folder=read_one_folder(op.find(m("SyncFolderId"))),
        sync_state=text(op.find(m("SyncState"))),
        ignore=ignore,
        max_changes_returned=int(max_changes) if max_changes is not None else None,
        sync_scope=text(op.find(m("SyncScope"))),
        additional_properties=extra,
    )
