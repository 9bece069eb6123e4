"""Pieces every operation shares: item and folder targets, response messages.

Reference: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responsemessages
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from lxml import etree

from ews_parser.errors import EwsParseError
from ews_parser.soap import read_message_xml
from ews_parser.values import (
    DistinguishedFolderId,
    FolderId,
    FolderTarget,
    ItemId,
    ItemTarget,
    OccurrenceItemId,
    ParsedFolder,
    RecurringMasterItemId,
)
from ews_parser.xml import MESSAGES, local, m, t, text

_ITEM_ID: Final = t("ItemId")
_OCCURRENCE_ID: Final = t("OccurrenceItemId")
_MASTER_ID: Final = t("RecurringMasterItemId")
_FOLDER_ID: Final = t("FolderId")
_DISTINGUISHED: Final = t("DistinguishedFolderId")
_RESPONSE_MESSAGES: Final = m("ResponseMessages")
_ITEM_ID_TYPO: Final = t("ItemID")  # as printed in Microsoft's MoveItem response sample
_PATH_NAMES: Final = frozenset({"FieldURI", "IndexedFieldURI", "ExtendedFieldURI"})

#: Operations whose requests and responses calsync reads. (This module, unlike the
#: readers, needs no exchangelib: `classify` imports only what is here and in soap.py.)
KNOWN_OPERATIONS: Final = frozenset(
    {
        "CreateItem",
        "UpdateItem",
        "DeleteItem",
        "MoveItem",
        "CopyItem",
        "GetItem",
        "FindItem",
        "SyncFolderItems",
        "GetFolder",
        "FindFolder",
        "SyncFolderHierarchy",
    }
)

#: Meeting response objects: created with CreateItem, they act on ReferenceItemId.
#: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/items
RESPONSE_OBJECTS: Final = frozenset(
    {
        "CancelCalendarItem",
        "AcceptItem",
        "TentativelyAcceptItem",
        "DeclineItem",
        "AcceptSharingInvitation",
        "RemoveItem",
        "ReplyToItem",
        "ReplyAllToItem",
        "ForwardItem",
        "SuppressReadReceipt",
        "ProposeNewTime",
    }
)

#: Folder elements inside responses (everything else in a Changes/Items list is an item).
FOLDER_ELEMENTS: Final = frozenset(
    {"Folder", "CalendarFolder", "ContactsFolder", "SearchFolder", "TasksFolder"}
)


def read_item_id(elem: etree._Element | None) -> ItemId | None:
    if elem is None:
        return None
    item_id = (elem.get("Id") or "").strip()
    if not item_id:
        raise EwsParseError("item id without an Id attribute", where=local(elem.tag))
    change_key = elem.get("ChangeKey")
    return ItemId(item_id, change_key.strip() if change_key else None)


def find_item_id(elem: etree._Element) -> etree._Element | None:
    found = elem.find(_ITEM_ID)
    return found if found is not None else elem.find(_ITEM_ID_TYPO)


def partial_item(update: etree._Element) -> etree._Element | None:
    """The item element (t:CalendarItem, t:Message, ...) after an update's field path."""
    for child in update:
        if isinstance(child.tag, str) and local(child.tag) not in _PATH_NAMES:
            return child
    return None


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What reading an item needs from outside the item itself."""

    #: the request's TimeZoneContext (Windows zone id)
    context_zone: str | None = None
    #: the zone to assume for all-day items that name none (responses usually don't)
    default_zone: str | None = None


def read_item_target(elem: etree._Element) -> ItemTarget | None:
    tag = elem.tag
    if tag == _ITEM_ID or local(tag) in ("ReferenceItemId", "ItemID"):
        return read_item_id(elem)
    if tag == _OCCURRENCE_ID:
        master = (elem.get("RecurringMasterId") or "").strip()
        index = elem.get("InstanceIndex")
        if not master or index is None:
            raise EwsParseError(
                "OccurrenceItemId needs RecurringMasterId and InstanceIndex",
                where="OccurrenceItemId",
            )
        try:
            instance_index = int(index)
        except ValueError:
            raise EwsParseError(
                f"InstanceIndex is not a number: {index[:20]!r}", where="OccurrenceItemId"
            ) from None
        if instance_index < 1:
            raise EwsParseError("InstanceIndex starts at 1", where="OccurrenceItemId")
        return OccurrenceItemId(master, instance_index, _change_key(elem))
    if tag == _MASTER_ID:
        occurrence = (elem.get("OccurrenceId") or "").strip()
        if not occurrence:
            raise EwsParseError(
                "RecurringMasterItemId needs OccurrenceId", where="RecurringMasterItemId"
            )
        return RecurringMasterItemId(occurrence, _change_key(elem))
    return None


def read_item_targets(container: etree._Element | None) -> tuple[ItemTarget, ...]:
    if container is None:
        return ()
    targets = []
    for child in container:
        target = read_item_target(child) if isinstance(child.tag, str) else None
        if target is not None:
            targets.append(target)
    return tuple(targets)


def read_folder_target(elem: etree._Element) -> FolderTarget | None:
    tag = elem.tag
    if tag == _DISTINGUISHED:
        name = (elem.get("Id") or "").strip()
        if not name:
            raise EwsParseError("DistinguishedFolderId without Id", where="DistinguishedFolderId")
        mailbox = elem.find(t("Mailbox"))
        address = text(mailbox.find(t("EmailAddress"))) if mailbox is not None else None
        return DistinguishedFolderId(name, address, _change_key(elem))
    if tag == _FOLDER_ID:
        folder_id = (elem.get("Id") or "").strip()
        if not folder_id:
            raise EwsParseError("FolderId without Id", where="FolderId")
        return FolderId(folder_id, _change_key(elem))
    return None


def read_folder_targets(container: etree._Element | None) -> tuple[FolderTarget, ...]:
    if container is None:
        return ()
    targets = []
    for child in container:
        target = read_folder_target(child) if isinstance(child.tag, str) else None
        if target is not None:
            targets.append(target)
    return tuple(targets)


def read_one_folder(container: etree._Element | None) -> FolderTarget | None:
    targets = read_folder_targets(container)
    return targets[0] if targets else None


def read_parsed_folder(elem: etree._Element) -> ParsedFolder:
    folder_id = elem.find(_FOLDER_ID)
    parent = elem.find(t("ParentFolderId"))
    return ParsedFolder(
        folder_type=local(elem.tag),
        folder_id=_plain_folder_id(folder_id),
        parent_folder_id=_plain_folder_id(parent),
        folder_class=text(elem.find(t("FolderClass"))),
        display_name=text(elem.find(t("DisplayName"))),
    )


def _plain_folder_id(elem: etree._Element | None) -> FolderId | None:
    if elem is None:
        return None
    folder_id = (elem.get("Id") or "").strip()
    return FolderId(folder_id, _change_key(elem)) if folder_id else None


def _change_key(elem: etree._Element) -> str | None:
    value = elem.get("ChangeKey")
    return value.strip() if value else None


def iter_response_messages(payload: etree._Element) -> Iterator[etree._Element]:
    """The `*ResponseMessage` elements of a response, in order."""
    container = payload.find(_RESPONSE_MESSAGES)
    if container is None:
        raise EwsParseError(f"{local(payload.tag)} without ResponseMessages")
    for child in container:
        if isinstance(child.tag, str):
            yield child


@dataclass(frozen=True, slots=True)
class MessageBasics:
    response_class: str
    response_code: str | None
    message_text: str | None
    descriptive_link_key: int | None
    message_xml: tuple[tuple[str, str], ...]


def read_message_basics(msg: etree._Element) -> MessageBasics:
    response_class = msg.get("ResponseClass")
    if response_class is None:
        raise EwsParseError("response message without ResponseClass", where=local(msg.tag))
    link = text(msg.find(m("DescriptiveLinkKey")))
    mx = msg.find(m("MessageXml"))
    return MessageBasics(
        response_class=response_class.strip(),
        response_code=text(msg.find(m("ResponseCode"))),
        message_text=text(msg.find(m("MessageText"))),
        descriptive_link_key=int(link) if link and link.lstrip("-").isdigit() else None,
        message_xml=read_message_xml(mx) if mx is not None else (),
    )


def child_elements(parent: etree._Element | None) -> Iterator[etree._Element]:
    if parent is None:
        return
    for child in parent:
        if isinstance(child.tag, str):
            yield child


def is_messages(elem: etree._Element) -> bool:
    return isinstance(elem.tag, str) and elem.tag.startswith("{" + MESSAGES + "}")
