"""One module per EWS operation, as exchangelib's services/ is laid out.

Each module has `handle(ctx, request)`, returning the operation's response messages in
the order of the request's items; a failure of one item is an Error message for that item
and does not stop the others, as Exchange does for batch requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from lxml import etree

from emulators.ews.services import (
    convert_id,
    create_item,
    delete_item,
    find_item,
    folders,
    get_events,
    get_item,
    move_item,
    subscribe,
    sync_folder_items,
    update_item,
    user_configuration,
)
from emulators.ews.services.context import Context

Handler = Callable[[Context, Any], list[etree._Element]]

HANDLERS: Final[dict[str, Handler]] = {
    "CreateItem": create_item.handle,
    "GetItem": get_item.handle,
    "UpdateItem": update_item.handle,
    "DeleteItem": delete_item.handle,
    "MoveItem": move_item.handle,
    "FindItem": find_item.handle,
    "SyncFolderItems": sync_folder_items.handle,
    "GetFolder": folders.handle_get_folder,
    "FindFolder": folders.handle_find_folder,
    "SyncFolderHierarchy": folders.handle_sync_folder_hierarchy,
    "CreateFolder": folders.handle_create_folder,
    "DeleteFolder": folders.handle_delete_folder,
    "ConvertId": convert_id.handle,
    "GetUserConfiguration": user_configuration.handle,
    "Subscribe": subscribe.handle_subscribe,
    "Unsubscribe": subscribe.handle_unsubscribe,
    "GetEvents": get_events.handle,
    # GetStreamingEvents keeps its response open: the HTTP layer serves it
    # (get_streaming_events.py, EwsService.open_stream).
}

__all__ = ["HANDLERS", "Context", "Handler"]
