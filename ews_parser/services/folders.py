"""GetFolder, FindFolder and SyncFolderHierarchy requests: how clients learn folder ids.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderhierarchy
"""

from __future__ import annotations

from lxml import etree

from ews_parser.common import ParseContext, read_folder_targets, read_one_folder
from ews_parser.values import FindFolderRequest, GetFolderRequest, SyncFolderHierarchyRequest
from ews_parser.xml import m, text


def _base_shape(op: etree._Element) -> str | None:
    shape = op.find(m("FolderShape"))
    if shape is None:
        return None
    for child in shape:
        if isinstance(child.tag, str) and child.tag.endswith("}BaseShape"):
            return text(child)
    return None


def read_get_folder(op: etree._Element, ctx: ParseContext) -> GetFolderRequest:
    return GetFolderRequest(
        base_shape=_base_shape(op), folders=read_folder_targets(op.find(m("FolderIds")))
    )


def read_find_folder(op: etree._Element, ctx: ParseContext) -> FindFolderRequest:
    return FindFolderRequest(
        traversal=op.get("Traversal"),
        base_shape=_base_shape(op),
        parent_folders=read_folder_targets(op.find(m("ParentFolderIds"))),
    )


def read_sync_folder_hierarchy(op: etree._Element, ctx: ParseContext) -> SyncFolderHierarchyRequest:
    return SyncFolderHierarchyRequest(
        base_shape=_base_shape(op),
        sync_folder=read_one_folder(op.find(m("SyncFolderId"))),
        sync_state=text(op.find(m("SyncState"))),
    )
