"""One module per EWS operation, as exchangelib's services/ is laid out.

Each reads its operation's request element into a typed value. Responses share one shape
(ResponseMessages) and are read once, in `ews_parser.responses`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from lxml import etree

from ews_parser.common import KNOWN_OPERATIONS, ParseContext
from ews_parser.services import (
    create_item,
    delete_item,
    find_item,
    folders,
    get_item,
    move_item,
    sync_folder_items,
    update_item,
)
from ews_parser.values import Request

RequestReader = Callable[[etree._Element, ParseContext], Request]

REQUEST_READERS: Final[dict[str, RequestReader]] = {
    "CreateItem": create_item.read_request,
    "UpdateItem": update_item.read_request,
    "DeleteItem": delete_item.read_request,
    "MoveItem": move_item.read_request,
    "GetItem": get_item.read_request,
    "FindItem": find_item.read_request,
    "SyncFolderItems": sync_folder_items.read_request,
    "GetFolder": folders.read_get_folder,
    "FindFolder": folders.read_find_folder,
    "SyncFolderHierarchy": folders.read_sync_folder_hierarchy,
}

assert set(REQUEST_READERS) <= KNOWN_OPERATIONS
__all__ = ["KNOWN_OPERATIONS", "REQUEST_READERS", "RequestReader"]
