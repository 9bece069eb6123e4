"""What one EWS exchange (request + response) means for a user's calendar: decided first,
as pure functions, then applied by the addon (vdirsyncer's plan -> actions).

Only what Exchange accepted counts: each item's own response message must be Success (or
Warning), so in a batch the failed items are left alone and the others mirrored.
Identifiers are learned as they pass: calendar and deleted-items folder ids from folder
responses, item kinds from item responses, so that an UpdateItem or DeleteItem naming
only an ItemId can be told to be a calendar item (and a mail item not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ews_parser.common import RESPONSE_OBJECTS
from ews_parser.values import (
    Classification,
    DistinguishedFolderId,
    FolderId,
    FolderTarget,
    ItemId,
    ItemTarget,
    MessageSummary,
    OccurrenceItemId,
    RecurringMasterItemId,
)

Op = Literal["upsert", "update", "delete", "refresh"]

#: Distinguished folders whose ids calsync learns, and the role each plays.
ROLES = {"calendar": "calendar", "deleteditems": "deleteditems"}
CALENDAR = "CalendarItem"
#: An occurrence or exception of a series, read by its own ItemId (GetItem on an
#: OccurrenceItemId, a CalendarView): no event of its own; edits of it refresh its master.
OCCURRENCE = "Occurrence"
_RESPONSES = frozenset({"AcceptItem", "TentativelyAcceptItem", "DeclineItem"})


class Knowledge(Protocol):
    """What the store knows about one mailbox, asked by the router."""

    def folder_role(self, folder_id: str) -> str | None: ...

    def item_class(self, item_id: str) -> str | None: ...

    def is_mapped(self, item_id: str) -> bool: ...

    def master_of(self, item_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Intent:
    """A change to mirror: `op` on the Exchange item `item_id`.

    `index` is the position of the item in the request (its CreateItem item or UpdateItem
    change), so the worker can read the payload from the request when it still has it.
    """

    op: Op
    item_id: str
    change_key: str | None = None
    index: int | None = None
    reason: str = ""


@dataclass(slots=True)
class Decision:
    intents: list[Intent] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)  # folder id -> role
    items: dict[str, str] = field(default_factory=dict)  # item id -> item class
    #: occurrence ItemId -> its series master's ItemId (learned from GetItem pairs)
    masters: dict[str, str] = field(default_factory=dict)


#: Operations whose responses teach calendar item ids (and need nothing else).
LISTINGS = frozenset({"GetItem", "FindItem", "SyncFolderItems"})


def may_matter(request: Classification) -> bool:
    """Whether the exchange can change or teach anything, judged from the request alone
    (no store, no response): most mail traffic stops here."""
    operation = request.operation
    if operation == "GetFolder":
        return any(isinstance(f, DistinguishedFolderId) and f.id in ROLES for f in request.folders)
    if operation == "CreateItem":
        return any(c == CALENDAR or c in RESPONSE_OBJECTS for c in request.item_classes)
    return operation in LISTINGS or operation in ("UpdateItem", "DeleteItem", "MoveItem")


def decide(request: Classification, response: Classification, known: Knowledge) -> Decision:
    decision = Decision()
    if response.kind != "response" or request.kind != "request" or not response.known:
        return decision
    if request.operation != response.operation:
        return decision  # not a pair: never guess
    _learn_items(response, decision)
    operation = request.operation
    if operation == "GetItem":
        _learn_occurrences(request, response, decision)
    elif operation == "GetFolder":
        _learn_get_folder(request, response, decision)
    elif operation == "CreateItem":
        _created(request, response, known, decision)
    elif operation == "UpdateItem":
        _updated(request, response, known, decision)
    elif operation == "DeleteItem":
        _deleted(request, response, known, decision)
    elif operation == "MoveItem":
        _moved(request, response, known, decision)
    return decision


# --- learning ---------------------------------------------------------------------------------


def _learn_items(response: Classification, decision: Decision) -> None:
    for message in response.messages:
        for ref in message.items:
            if ref.calendar_item_type in ("Occurrence", "Exception"):
                decision.items[ref.id] = OCCURRENCE
            elif ref.item_class:
                decision.items[ref.id] = ref.item_class


def _learn_occurrences(
    request: Classification, response: Classification, decision: Decision
) -> None:
    """GetItem answers one message per id asked, in order: an OccurrenceItemId's answer is
    the occurrence under its own ItemId (how clients then edit or delete it), and a
    RecurringMasterItemId's answer is the master of the occurrence named."""
    for target, message in zip(request.targets, response.messages, strict=False):
        if not message.ok or not message.items:
            continue
        returned = message.items[0].id
        if isinstance(target, OccurrenceItemId):
            decision.items[returned] = OCCURRENCE
            decision.masters[returned] = target.recurring_master_id
        elif isinstance(target, RecurringMasterItemId):
            decision.items[target.occurrence_id] = OCCURRENCE
            decision.masters[target.occurrence_id] = returned
            decision.items.setdefault(returned, CALENDAR)


def _learn_get_folder(
    request: Classification, response: Classification, decision: Decision
) -> None:
    # GetFolder answers one message per requested folder, in order.
    for target, message in zip(request.folders, response.messages, strict=False):
        if not message.ok or not message.folders:
            continue
        if isinstance(target, DistinguishedFolderId) and target.id in ROLES:
            decision.folders[message.folders[0].id] = ROLES[target.id]


def _is_calendar_folder(folder: FolderTarget | None, known: Knowledge) -> bool | None:
    """True / False when we know, None when the folder id was never seen."""
    if folder is None:
        return True  # CalendarItems without a folder go to the calendar
    if isinstance(folder, DistinguishedFolderId):
        return folder.id == "calendar"
    role = known.folder_role(folder.id)
    return None if role is None else role == "calendar"


def _is_calendar_item(item_id: str, known: Knowledge, hint: str = "") -> bool:
    if known.is_mapped(item_id):
        return True
    seen = known.item_class(item_id)
    if seen is not None:
        return seen == CALENDAR
    return hint == CALENDAR


def _first_item(message: MessageSummary) -> tuple[str, str | None] | None:
    if not message.items:
        return None
    return message.items[0].id, message.items[0].change_key


# --- operations -------------------------------------------------------------------------------


def _created(
    request: Classification, response: Classification, known: Knowledge, decision: Decision
) -> None:
    saved = request.folders[0] if request.folders else None
    in_calendar = _is_calendar_folder(saved, known)
    references = list(request.targets)  # ReferenceItemIds of response objects, in order
    for index, (item_class, message) in enumerate(
        zip(request.item_classes, response.messages, strict=False)
    ):
        if item_class == CALENDAR:
            created = _first_item(message)
            if not message.ok or created is None:
                continue
            item_id, change_key = created
            if in_calendar:
                decision.items[item_id] = CALENDAR
                decision.intents.append(
                    Intent("upsert", item_id, change_key, index, "CreateItem in the calendar")
                )
            elif in_calendar is None:
                # a FolderId never seen: the worker asks Exchange where the item is
                decision.intents.append(
                    Intent("refresh", item_id, change_key, index, "CreateItem in an unknown folder")
                )
        elif item_class in RESPONSE_OBJECTS and references:
            # every response object carries one (required) ReferenceItemId, in order
            target = references.pop(0)
            if not message.ok or not isinstance(target, ItemId):
                continue
            if item_class == "CancelCalendarItem" and _is_calendar_item(target.id, known):
                decision.intents.append(
                    Intent("delete", target.id, None, index, "meeting cancelled")
                )
            elif item_class in _RESPONSES and known.is_mapped(target.id):
                decision.intents.append(
                    Intent("refresh", target.id, None, index, f"{item_class} on the meeting")
                )


def _updated(
    request: Classification, response: Classification, known: Knowledge, decision: Decision
) -> None:
    for index, (target, item_class, message) in enumerate(
        zip(request.targets, request.item_classes, response.messages, strict=False)
    ):
        if not message.ok:
            continue
        new = _first_item(message)
        if isinstance(target, ItemId) and known.item_class(target.id) == OCCURRENCE:
            # an occurrence edited by its own ItemId: its series is read again (the worker
            # finds the master itself when it was never learned)
            series = known.master_of(target.id) or target.id
            decision.intents.append(
                Intent("refresh", series, None, index, "occurrence of a series updated")
            )
        elif isinstance(target, ItemId):
            if _is_calendar_item(target.id, known, hint=item_class):
                decision.intents.append(
                    Intent(
                        "update",
                        target.id,
                        new[1] if new else None,
                        index,
                        "UpdateItem accepted",
                    )
                )
        else:
            master = _master_of(target, new)
            if master is not None and _is_calendar_item(master, known, hint=CALENDAR):
                # occurrence-level edit: keep at least the master right (full read)
                decision.intents.append(
                    Intent("refresh", master, None, index, "occurrence of a series updated")
                )


def _master_of(target: ItemTarget, new: tuple[str, str | None] | None) -> str | None:
    if isinstance(target, OccurrenceItemId):
        return target.recurring_master_id
    if isinstance(target, RecurringMasterItemId) and new is not None:
        return new[0]  # Exchange answers with the master's id
    return None


def _deleted(
    request: Classification, response: Classification, known: Knowledge, decision: Decision
) -> None:
    for index, (target, message) in enumerate(
        zip(request.targets, response.messages, strict=False)
    ):
        if not message.ok:
            continue
        if isinstance(target, ItemId) and known.item_class(target.id) == OCCURRENCE:
            # an occurrence deleted by its own ItemId: the master lost an occurrence. An
            # occurrence whose master was never learned can't be read any more: the
            # Exchange feed reports its master's change.
            master = known.master_of(target.id)
            if master is not None:
                decision.intents.append(
                    Intent("refresh", master, None, index, "occurrence of a series deleted")
                )
        elif isinstance(target, ItemId):
            if _is_calendar_item(target.id, known):
                decision.intents.append(Intent("delete", target.id, None, index, "DeleteItem"))
        elif isinstance(target, OccurrenceItemId) and _is_calendar_item(
            target.recurring_master_id, known, hint=CALENDAR
        ):
            decision.intents.append(
                Intent(
                    "refresh",
                    target.recurring_master_id,
                    None,
                    index,
                    "occurrence of a series deleted",
                )
            )


def _moved(
    request: Classification, response: Classification, known: Knowledge, decision: Decision
) -> None:
    destination = request.folders[0] if request.folders else None
    to_deleted = _role_of(destination, known) == "deleteditems"
    to_calendar = _is_calendar_folder(destination, known) is True if destination else False
    for index, (target, message) in enumerate(
        zip(request.targets, response.messages, strict=False)
    ):
        if not message.ok or not isinstance(target, ItemId):
            continue
        moved = _first_item(message)
        if _is_calendar_item(target.id, known) and not to_calendar:
            reason = "moved to Deleted Items" if to_deleted else "moved out of the calendar"
            decision.intents.append(Intent("delete", target.id, None, index, reason))
        elif to_calendar and moved is not None:
            was = known.item_class(target.id)
            if was in (None, CALENDAR):
                decision.items[moved[0]] = CALENDAR
                decision.intents.append(
                    Intent("upsert", moved[0], moved[1], None, "moved into the calendar")
                )


def _role_of(folder: FolderTarget | None, known: Knowledge) -> str | None:
    if isinstance(folder, DistinguishedFolderId):
        return ROLES.get(folder.id)
    if isinstance(folder, FolderId):
        return known.folder_role(folder.id)
    return None


def delegate_mailbox(request: Classification) -> str | None:
    """The mailbox a request names for delegate access (a folder's Mailbox element)."""
    for folder in request.folders:
        if isinstance(folder, DistinguishedFolderId) and folder.mailbox:
            return folder.mailbox.lower()
    return None


def item_ids_named(request: Classification) -> Sequence[str]:
    """Every item id a request acts on, for finding which user owns it."""
    ids: list[str] = []
    for target in request.targets:
        if isinstance(target, ItemId):
            ids.append(target.id)
        elif isinstance(target, OccurrenceItemId):
            ids.append(target.recurring_master_id)
        else:
            ids.append(target.occurrence_id)
    return ids
