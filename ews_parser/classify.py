"""The cheap read the proxy's hooks can afford: operation, folders, ids, response codes.

It parses the envelope with the hardened parser and then only walks the few levels where
ids, folders and codes live; it never calls exchangelib (whose item models cost ~180 us
an item, against ~11 us for lxml to parse a whole small envelope). `ews_parser.parse` does
the full read in the background worker.
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from ews_parser.common import (
    FOLDER_ELEMENTS,
    KNOWN_OPERATIONS,
    RESPONSE_OBJECTS,
    child_elements,
    find_item_id,
    iter_response_messages,
    partial_item,
    read_folder_targets,
    read_item_target,
    read_item_targets,
)
from ews_parser.errors import EwsParseError
from ews_parser.soap import header_fast, open_envelope, read_fault, read_message_xml
from ews_parser.values import (
    Classification,
    FolderRef,
    FolderTarget,
    ItemRef,
    ItemTarget,
    MessageSummary,
    back_off_from,
)
from ews_parser.xml import DEFAULT_MAX_BYTES, local, m, t, text

_FOLDER_CONTAINERS: Final = frozenset(
    {
        m(n)
        for n in ("SavedItemFolderId", "ParentFolderIds", "ToFolderId", "SyncFolderId", "FolderIds")
    }
)
_ITEM_IDS: Final = m("ItemIds")
_ITEMS: Final = m("Items")
_ITEM_CHANGES: Final = m("ItemChanges")
_RESPONSE_CODE: Final = m("ResponseCode")
_MESSAGE_XML: Final = m("MessageXml")
_ROOT_FOLDER: Final = m("RootFolder")
_CHANGES: Final = m("Changes")
_FOLDERS: Final = m("Folders")
_T_ITEMS: Final = t("Items")
_T_FOLDERS: Final = t("Folders")
_FOLDER_ID: Final = t("FolderId")
_FOLDER_CLASS: Final = t("FolderClass")
_CALENDAR_ITEM_TYPE: Final = t("CalendarItemType")
_REFERENCE_ITEM_ID: Final = t("ReferenceItemId")


def classify(body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Classification:
    """Classify one EWS SOAP envelope, or raise `EwsParseError`."""
    opened = open_envelope(body, max_bytes=max_bytes)
    impersonation, zone = header_fast(opened.header)
    op = opened.payload
    if opened.kind == "fault":
        fault = read_fault(op)
        return Classification(
            kind="fault",
            operation=None,
            known=True,
            impersonation=impersonation,
            fault_code=fault.response_code,
            back_off_ms=fault.back_off_ms,
        )
    operation = opened.operation
    known = operation in KNOWN_OPERATIONS
    if opened.kind == "response":
        messages = tuple(_summarise(msg) for msg in iter_response_messages(op)) if known else ()
        return Classification(
            kind="response",
            operation=operation,
            known=known,
            impersonation=impersonation,
            messages=messages,
        )
    folders: list[FolderTarget] = []
    targets: list[ItemTarget] = []
    item_classes: list[str] = []
    if known:
        for child in op:
            tag = child.tag
            if tag in _FOLDER_CONTAINERS:
                folders.extend(read_folder_targets(child))
            elif tag == _ITEM_IDS:
                targets.extend(read_item_targets(child))
            elif tag == _ITEMS:
                _created(child, targets, item_classes)
            elif tag == _ITEM_CHANGES:
                _changed(child, targets, item_classes)
    return Classification(
        kind="request",
        operation=operation,
        known=known,
        impersonation=impersonation,
        time_zone_context=zone,
        folders=tuple(folders),
        targets=tuple(targets),
        item_classes=tuple(item_classes),
    )


def _created(items: etree._Element, targets: list[ItemTarget], classes: list[str]) -> None:
    for item in child_elements(items):
        name = local(item.tag)
        classes.append(name)
        if name in RESPONSE_OBJECTS:
            ref = item.find(_REFERENCE_ITEM_ID)
            if ref is not None:
                target = read_item_target(ref)
                if target is not None:
                    targets.append(target)


def _changed(changes: etree._Element, targets: list[ItemTarget], classes: list[str]) -> None:
    for change in child_elements(changes):
        target = None
        first_partial = ""
        for child in child_elements(change):
            if target is None:
                target = read_item_target(child)
            if local(child.tag) == "Updates":
                for update in child_elements(child):
                    partial = partial_item(update)
                    if partial is not None:
                        first_partial = local(partial.tag)
                        break
        if target is None:
            raise EwsParseError("ItemChange names no item", where="ItemChange")
        targets.append(target)
        classes.append(first_partial)


def _summarise(msg: etree._Element) -> MessageSummary:
    response_class = msg.get("ResponseClass")
    if response_class is None:
        raise EwsParseError("response message without ResponseClass", where=local(msg.tag))
    items: list[ItemRef] = []
    folders: list[FolderRef] = []
    back_off = None
    for child in msg:
        tag = child.tag
        if tag == _ITEMS:
            _item_refs(child, items, None)
        elif tag == _ROOT_FOLDER:
            _item_refs(child.find(_T_ITEMS), items, None)
            _folder_refs(child.find(_T_FOLDERS), folders, None)
        elif tag == _FOLDERS:
            _folder_refs(child, folders, None)
        elif tag == _CHANGES:
            for change in child_elements(child):
                kind = local(change.tag)
                if change.find(_FOLDER_ID) is not None:
                    _folder_refs(change, folders, kind, direct=True)
                    continue
                payload = next(child_elements(change), None)
                if payload is not None and local(payload.tag) in FOLDER_ELEMENTS:
                    _folder_refs(change, folders, kind)
                elif kind in ("Create", "Update"):
                    _item_refs(change, items, kind)
                else:
                    _item_ref(change, "", items, kind)
        elif tag == _MESSAGE_XML:
            back_off = back_off_from(read_message_xml(child))
    return MessageSummary(
        response_class=response_class.strip(),
        response_code=text(msg.find(_RESPONSE_CODE)),
        items=tuple(items),
        folders=tuple(folders),
        back_off_ms=back_off,
    )


def _item_refs(container: etree._Element | None, out: list[ItemRef], change: str | None) -> None:
    for item in child_elements(container):
        _item_ref(item, local(item.tag), out, change)


def _item_ref(
    holder: etree._Element, item_class: str, out: list[ItemRef], change: str | None
) -> None:
    id_elem = find_item_id(holder)
    if id_elem is None:
        return
    item_id = (id_elem.get("Id") or "").strip()
    if item_id:
        key = id_elem.get("ChangeKey")
        kind = text(holder.find(_CALENDAR_ITEM_TYPE)) if item_class == "CalendarItem" else None
        out.append(ItemRef(item_class, item_id, key.strip() if key else None, change, kind))


def _folder_refs(
    container: etree._Element | None,
    out: list[FolderRef],
    change: str | None,
    *,
    direct: bool = False,
) -> None:
    holders = [container] if direct and container is not None else list(child_elements(container))
    for folder in holders:
        id_elem = folder.find(_FOLDER_ID)
        if id_elem is None:
            continue
        folder_id = (id_elem.get("Id") or "").strip()
        if folder_id:
            key = id_elem.get("ChangeKey")
            out.append(
                FolderRef(
                    folder_type="" if direct else local(folder.tag),
                    id=folder_id,
                    change_key=key.strip() if key else None,
                    folder_class=text(folder.find(_FOLDER_CLASS)),
                    change_type=change,
                )
            )
