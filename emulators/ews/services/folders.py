"""GetFolder, FindFolder, SyncFolderHierarchy, CreateFolder and DeleteFolder over the
mailbox's folders: the well-known ones and those clients create.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderhierarchy-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createfolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/deletefolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/baseshape
(IdOnly: the FolderId; Default: FolderId, DisplayName, TotalCount, ChildFolderCount and
UnreadCount where the folder has them; "all subfolders of a given folder are returned in
order by name"). Extended properties come back only when AdditionalProperties name them.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Final

from lxml import etree

from emulators.ews.mailbox import Folder, Mailbox
from emulators.ews.properties import (
    FOLDER_QUERYABLE,
    insert_properties,
    kind_finder,
    read_extended_properties,
)
from emulators.ews.restrictions import matches, read_restriction
from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import m, success, t
from ews_parser import EwsResponseError
from ews_parser.common import read_folder_target
from ews_parser.values import (
    FieldPath,
    FieldUpdate,
    FieldURI,
    FindFolderRequest,
    GetFolderRequest,
    SyncFolderHierarchyRequest,
)
from ews_parser.xml import local

_DEFAULT: Final = frozenset({"folder:FolderId", "folder:DisplayName", "folder:TotalCount",
                             "folder:ChildFolderCount", "folder:UnreadCount"})
#: What Default leaves out, per element (the BaseShape page's table: a calendar shows no
#: counts of items).
_NOT_DEFAULT: Final = {"CalendarFolder": frozenset({"folder:TotalCount"})}
#: Elements of the FolderType family that have UnreadCount (CalendarFolder and
#: ContactsFolder do not: types.xsd).
_WITH_UNREAD: Final = frozenset({"Folder", "SearchFolder", "TasksFolder"})
_FOLDER_ELEMENTS: Final = frozenset({"Folder", "CalendarFolder", "ContactsFolder",
                                     "SearchFolder", "TasksFolder"})


def folder_element(mailbox: Mailbox, folder: Folder, base: str | None,
                   paths: Sequence[FieldPath] = ()) -> etree._Element:
    """One folder as the FolderShape asks for it, in the schema's element order."""
    requested = {p.uri for p in paths if isinstance(p, FieldURI)}

    def wants(uri: str) -> bool:
        return uri == "folder:FolderId" or base == "AllProperties" or uri in requested \
            or (base == "Default" and uri in _DEFAULT
                and uri not in _NOT_DEFAULT.get(folder.spec.element, ()))

    elem = etree.Element(t(folder.spec.element))
    etree.SubElement(elem, t("FolderId"), Id=folder.id, ChangeKey=folder.change_key)
    parent = mailbox.parent(folder)
    if parent is not None and wants("folder:ParentFolderId"):
        etree.SubElement(elem, t("ParentFolderId"), Id=parent.id, ChangeKey=parent.change_key)
    if folder.spec.folder_class and wants("folder:FolderClass"):
        etree.SubElement(elem, t("FolderClass")).text = folder.spec.folder_class
    if folder.spec.display_name and wants("folder:DisplayName"):
        etree.SubElement(elem, t("DisplayName")).text = folder.spec.display_name
    if wants("folder:TotalCount"):
        etree.SubElement(elem, t("TotalCount")).text = str(len(folder.entries))
    if wants("folder:ChildFolderCount"):
        etree.SubElement(elem, t("ChildFolderCount")).text = str(len(mailbox.children(folder)))
    insert_properties(elem, mailbox.folder_record(folder).property_elements(paths), folder=True)
    if folder.spec.distinguished and "folder:DistinguishedFolderId" in requested:
        etree.SubElement(elem, t("DistinguishedFolderId")).text = folder.spec.name
    if folder.spec.element in _WITH_UNREAD and wants("folder:UnreadCount"):
        etree.SubElement(elem, t("UnreadCount")).text = "0"
    return elem


def handle_get_folder(ctx: Context, request: GetFolderRequest) -> list[etree._Element]:
    base, paths = ctx.shape("GetFolder", "FolderShape")
    messages = []
    for target in request.folders:
        try:
            folder = ctx.mailbox.folder(target)
        except EwsResponseError as exc:
            messages.append(error_message("GetFolder", exc))
            continue
        message = success("GetFolder")
        etree.SubElement(message, m("Folders")).append(
            folder_element(ctx.mailbox, folder, base, paths))
        messages.append(message)
    return messages


def _by_name(mailbox: Mailbox, folder: Folder, deep: bool) -> list[Folder]:
    out = []
    for child in sorted(mailbox.children(folder), key=lambda f: f.spec.display_name.lower()):
        out.append(child)
        if deep:
            out.extend(_by_name(mailbox, child, deep))
    return out


def _page(op: etree._Element, found: list[Folder]) -> tuple[list[Folder], int | None]:
    """IndexedPageFolderView / FractionalPageFolderView: the page and the offset of the
    next one (None without a view)."""
    view = op.find(m("IndexedPageFolderView"))
    fraction = op.find(m("FractionalPageFolderView"))
    try:
        if view is not None:
            limit = view.get("MaxEntriesReturned")
            offset = int(view.get("Offset") or 0)
            ordered = list(reversed(found)) if view.get("BasePoint") == "End" else found
            page = ordered[offset:]
        elif fraction is not None:
            limit = fraction.get("MaxEntriesReturned")
            numerator = int(fraction.get("Numerator") or 0)
            denominator = int(fraction.get("Denominator") or 1)
            offset = len(found) * numerator // max(denominator, 1)
            page = found[offset:]
        else:
            return found, None
        return (page[: int(limit)] if limit is not None else page), offset
    except ValueError:
        raise EwsResponseError("ErrorInvalidIndexedPagingParameters",
                               "The paging parameters are not valid.") from None


def handle_find_folder(ctx: Context, request: FindFolderRequest) -> list[etree._Element]:
    op = ctx.operation("FindFolder")
    base, paths = ctx.shape("FindFolder", "FolderShape")
    messages = []
    for target in request.parent_folders:
        try:
            parent = ctx.mailbox.folder(target)
            restriction = op.find(m("Restriction"))
            expression = (read_restriction(restriction, kind_finder(FOLDER_QUERYABLE))
                          if restriction is not None else None)
            # SoftDeleted traversal lists soft-deleted folders: there are none here.
            found = [] if request.traversal == "SoftDeleted" else \
                _by_name(ctx.mailbox, parent, request.traversal == "Deep")
            if expression is not None:
                found = [f for f in found
                         if matches(expression, ctx.mailbox.folder_record(f))]
            page, offset = _page(op, found)
        except EwsResponseError as exc:
            messages.append(error_message("FindFolder", exc))
            continue
        message = success("FindFolder")
        start = offset or 0
        root = etree.SubElement(message, m("RootFolder"),
                                IndexedPagingOffset=str(start + len(page)),
                                TotalItemsInView=str(len(found)),
                                IncludesLastItemInRange=str(start + len(page) >= len(found))
                                .lower())
        folders = etree.SubElement(root, t("Folders"))
        for folder in page:
            folders.append(folder_element(ctx.mailbox, folder, base, paths))
        messages.append(message)
    return messages


_HIERARCHY_PREFIX: Final = b"calsync-ews-hierarchy\x00"


def _hierarchy_state(folder: Folder, watermark: int) -> str:
    raw = _HIERARCHY_PREFIX + struct.pack(">Q", watermark) + folder.id.encode("ascii")
    return base64.b64encode(raw).decode("ascii")


def _read_hierarchy_state(state: str, folder: Folder) -> int:
    try:
        raw = base64.b64decode(state, validate=True)
    except ValueError:
        raw = b""
    head = len(_HIERARCHY_PREFIX) + 8
    if not raw.startswith(_HIERARCHY_PREFIX) or raw[head:] != folder.id.encode("ascii"):
        raise EwsResponseError("ErrorInvalidSyncStateData",
                               "Synchronization state data is corrupt or otherwise invalid.")
    (watermark,) = struct.unpack(">Q", raw[len(_HIERARCHY_PREFIX):head])
    return int(watermark)


def handle_sync_folder_hierarchy(
    ctx: Context, request: SyncFolderHierarchyRequest
) -> list[etree._Element]:
    mailbox = ctx.mailbox
    base, paths = ctx.shape("SyncFolderHierarchy", "FolderShape")
    try:
        top = mailbox.folder(request.sync_folder, default="msgfolderroot")
        watermark = _read_hierarchy_state(request.sync_state, top) if request.sync_state else 0
    except EwsResponseError as exc:
        # As for SyncFolderItems, the error still carries an empty SyncState.
        message = error_message("SyncFolderHierarchy", exc)
        etree.SubElement(message, m("SyncState"))
        etree.SubElement(message, m("IncludesLastFolderInRange")).text = "true"
        return [message]
    message = success("SyncFolderHierarchy")
    etree.SubElement(message, m("SyncState")).text = _hierarchy_state(top, mailbox.seq)
    etree.SubElement(message, m("IncludesLastFolderInRange")).text = "true"
    changes = etree.SubElement(message, m("Changes"))
    for folder in mailbox.descendants(top):
        if folder.created_seq > watermark:
            etree.SubElement(changes, t("Create")).append(
                folder_element(mailbox, folder, base, paths))
    if watermark:
        for folder_id, seq in mailbox.folder_tombstones.items():
            if seq > watermark:
                delete = etree.SubElement(changes, t("Delete"))
                etree.SubElement(delete, t("FolderId"), Id=folder_id)
    return [message]


def _new_folder(elem: etree._Element) -> tuple[str | None, str | None, list[FieldUpdate]]:
    """DisplayName, FolderClass and ExtendedProperty values of a folder to create."""
    return (elem.findtext(t("DisplayName")), elem.findtext(t("FolderClass")),
            read_extended_properties(elem))


def handle_create_folder(ctx: Context, request: object) -> list[etree._Element]:
    op = ctx.operation("CreateFolder")
    targets = [read_folder_target(c) for c in _children(op.find(m("ParentFolderId")))]
    new = [c for c in _children(op.find(m("Folders"))) if local(c.tag) in _FOLDER_ELEMENTS]
    try:
        if not targets or targets[0] is None:
            raise EwsResponseError("ErrorInvalidRequest", "The request is invalid.")
        parent = ctx.mailbox.folder(targets[0])
    except EwsResponseError as exc:
        return [error_message("CreateFolder", exc) for _ in new]
    messages = []
    for elem in new:
        try:
            name, folder_class, extended = _new_folder(elem)
            created = ctx.mailbox.create_folder(parent, name, folder_class, local(elem.tag),
                                                extended)
        except EwsResponseError as exc:
            messages.append(error_message("CreateFolder", exc))
            continue
        message = success("CreateFolder")
        answer = etree.SubElement(etree.SubElement(message, m("Folders")), elem.tag)
        etree.SubElement(answer, t("FolderId"), Id=created.id, ChangeKey=created.change_key)
        messages.append(message)
    return messages


def _children(elem: etree._Element | None) -> list[etree._Element]:
    return [] if elem is None else [c for c in elem if isinstance(c.tag, str)]


def handle_delete_folder(ctx: Context, request: object) -> list[etree._Element]:
    op = ctx.operation("DeleteFolder")
    delete_type = op.get("DeleteType") or "HardDelete"
    messages = []
    for child in _children(op.find(m("FolderIds"))):
        target = read_folder_target(child)
        if target is None:
            continue
        try:
            ctx.mailbox.delete_folder(ctx.mailbox.folder(target), delete_type)
        except EwsResponseError as exc:
            messages.append(error_message("DeleteFolder", exc))
            continue
        messages.append(success("DeleteFolder"))
    return messages

