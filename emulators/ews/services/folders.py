"""GetFolder, FindFolder and SyncFolderHierarchy over the well-known folders this
stand-in keeps (root, msgfolderroot, calendar, deleteditems).

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderhierarchy-operation
"""

from __future__ import annotations

import base64

from lxml import etree

from emulators.ews.mailbox import Folder, Mailbox
from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import folder_element, m, success, t
from ews_parser import EwsResponseError
from ews_parser.values import FindFolderRequest, GetFolderRequest, SyncFolderHierarchyRequest


def _parent(mailbox: Mailbox, folder: Folder) -> Folder | None:
    return mailbox.folders[folder.spec.parent] if folder.spec.parent else None


def _children(mailbox: Mailbox, folder: Folder) -> list[Folder]:
    return [f for f in mailbox.folders.values() if f.spec.parent == folder.spec.name]


def _descendants(mailbox: Mailbox, folder: Folder) -> list[Folder]:
    out = []
    for child in _children(mailbox, folder):
        out.append(child)
        out.extend(_descendants(mailbox, child))
    return out


def _element(mailbox: Mailbox, folder: Folder) -> etree._Element:
    return folder_element(folder, _parent(mailbox, folder), len(_children(mailbox, folder)))


def handle_get_folder(ctx: Context, request: GetFolderRequest) -> list[etree._Element]:
    messages = []
    for target in request.folders:
        try:
            folder = ctx.mailbox.folder(target)
        except EwsResponseError as exc:
            messages.append(error_message("GetFolder", exc))
            continue
        message = success("GetFolder")
        etree.SubElement(message, m("Folders")).append(_element(ctx.mailbox, folder))
        messages.append(message)
    return messages


def handle_find_folder(ctx: Context, request: FindFolderRequest) -> list[etree._Element]:
    messages = []
    for target in request.parent_folders:
        try:
            parent = ctx.mailbox.folder(target)
        except EwsResponseError as exc:
            messages.append(error_message("FindFolder", exc))
            continue
        found = (_descendants(ctx.mailbox, parent) if request.traversal == "Deep"
                 else _children(ctx.mailbox, parent))
        message = success("FindFolder")
        root = etree.SubElement(message, m("RootFolder"), IndexedPagingOffset=str(len(found)),
                                TotalItemsInView=str(len(found)), IncludesLastItemInRange="true")
        folders = etree.SubElement(root, t("Folders"))
        for folder in found:
            folders.append(_element(ctx.mailbox, folder))
        messages.append(message)
    return messages


def _hierarchy_state(folder: Folder) -> str:
    # The folder set never changes here, so the state only has to name the folder.
    return base64.b64encode(b"calsync-ews-hierarchy\x00" + folder.id.encode()).decode()


def handle_sync_folder_hierarchy(
    ctx: Context, request: SyncFolderHierarchyRequest
) -> list[etree._Element]:
    mailbox = ctx.mailbox
    try:
        top = mailbox.folder(request.sync_folder, default="msgfolderroot")
        state = _hierarchy_state(top)
        if request.sync_state and request.sync_state != state:
            raise EwsResponseError("ErrorInvalidSyncStateData",
                                   "Synchronization state data is corrupt or otherwise invalid.")
    except EwsResponseError as exc:
        # As for SyncFolderItems, the error still carries an empty SyncState.
        message = error_message("SyncFolderHierarchy", exc)
        etree.SubElement(message, m("SyncState"))
        etree.SubElement(message, m("IncludesLastFolderInRange")).text = "true"
        return [message]
    message = success("SyncFolderHierarchy")
    etree.SubElement(message, m("SyncState")).text = state
    etree.SubElement(message, m("IncludesLastFolderInRange")).text = "true"
    changes = etree.SubElement(message, m("Changes"))
    if not request.sync_state:
        for folder in _descendants(mailbox, top):
            etree.SubElement(changes, t("Create")).append(_element(mailbox, folder))
    return [message]
