"""Responses of every operation: ResponseMessages, one per requested item, in order.

All operations calsync reads share this shape; the parts differ only in which containers a
message holds (Items; RootFolder for FindItem/FindFolder; SyncState, Changes for the sync
operations; Folders; ConflictResults for UpdateItem), so one reader serves them all.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responsemessages
"""

from __future__ import annotations

from typing import Final, Literal, cast

from lxml import etree

from ews_parser.common import (
    FOLDER_ELEMENTS,
    ParseContext,
    child_elements,
    find_item_id,
    iter_response_messages,
    read_item_id,
    read_message_basics,
    read_parsed_folder,
)
from ews_parser.errors import EwsParseError
from ews_parser.items import read_item, read_items
from ews_parser.values import (
    FindPaging,
    ParsedFolder,
    ParsedItem,
    Response,
    ResponseMessage,
    SyncChange,
)
from ews_parser.xml import local, t, text

CHANGE_TYPES: Final = frozenset({"Create", "Update", "Delete", "ReadFlagChange"})
ChangeType = Literal["Create", "Update", "Delete", "ReadFlagChange"]


def read_response(payload: etree._Element, ctx: ParseContext) -> Response:
    return Response(
        messages=tuple(_read_message(msg, ctx) for msg in iter_response_messages(payload))
    )


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() == "true"


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _read_message(msg: etree._Element, ctx: ParseContext) -> ResponseMessage:
    basics = read_message_basics(msg)
    items: tuple[ParsedItem, ...] = ()
    folders: tuple[ParsedFolder, ...] = ()
    changes: tuple[SyncChange, ...] = ()
    paging: FindPaging | None = None
    sync_state: str | None = None
    last_in_range: bool | None = None
    conflicts: int | None = None
    for child in list(child_elements(msg)):
        name = local(child.tag)
        if name == "Items":
            items = read_items(child, ctx)
        elif name == "Folders":
            folders = tuple(read_parsed_folder(f) for f in child_elements(child))
        elif name == "RootFolder":
            paging = FindPaging(
                total_items_in_view=_int(child.get("TotalItemsInView")),
                includes_last_item_in_range=_bool(child.get("IncludesLastItemInRange")),
                indexed_paging_offset=_int(child.get("IndexedPagingOffset")),
            )
            items = read_items(child.find(t("Items")), ctx)
            folders = tuple(read_parsed_folder(f) for f in child_elements(child.find(t("Folders"))))
        elif name == "SyncState":
            sync_state = text(child)
        elif name == "IncludesLastItemInRange":
            last_in_range = _bool(text(child))
        elif name == "Changes":
            changes = tuple(_read_change(c, ctx) for c in list(child_elements(child)))
        elif name == "ConflictResults":
            conflicts = _int(text(child.find(t("Count"))))
    return ResponseMessage(
        response_class=basics.response_class,
        response_code=basics.response_code,
        message_text=basics.message_text,
        descriptive_link_key=basics.descriptive_link_key,
        message_xml=basics.message_xml,
        items=items,
        folders=folders,
        conflict_results=conflicts,
        paging=paging,
        sync_state=sync_state,
        includes_last_item_in_range=last_in_range,
        changes=changes,
    )


def _read_change(change: etree._Element, ctx: ParseContext) -> SyncChange:
    change_type = local(change.tag)
    if change_type not in CHANGE_TYPES:
        raise EwsParseError(f"unknown change type {change_type!r}", where="Changes")
    kind = cast(ChangeType, change_type)
    if kind in ("Create", "Update"):
        payload = next(child_elements(change), None)
        if payload is None:
            raise EwsParseError(f"{kind} change without an item", where="Changes")
        if local(payload.tag) in FOLDER_ELEMENTS:
            return SyncChange(change_type=kind, folder=read_parsed_folder(payload))
        return SyncChange(change_type=kind, item=read_item(payload, ctx))
    if kind == "Delete":
        folder_id = change.find(t("FolderId"))
        if folder_id is not None:
            return SyncChange(change_type=kind, folder=read_parsed_folder(change))
        return SyncChange(change_type=kind, item_id=read_item_id(find_item_id(change)))
    return SyncChange(
        change_type=kind,
        item_id=read_item_id(find_item_id(change)),
        is_read=_bool(text(change.find(t("IsRead")))),
    )
