"""What each EWS exchange means for the calendar (sync/core/routing.py), as tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ews_parser import classify
from sync.core.routing import Intent, decide
from tests.ews_parser.conftest import load

ENV = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>{}</s:Body></s:Envelope>'
)


def env(body: str) -> bytes:
    return ENV.format(body).encode()


@dataclass
class Known:
    """What the store knows, as plain dicts (the router's Knowledge protocol)."""

    roles: dict[str, str] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    mapped: set[str] = field(default_factory=set)
    masters: dict[str, str] = field(default_factory=dict)

    def master_of(self, item_id: str) -> str | None:
        return self.masters.get(item_id)

    def folder_role(self, folder_id: str) -> str | None:
        return self.roles.get(folder_id)

    def item_class(self, item_id: str) -> str | None:
        return self.classes.get(item_id)

    def is_mapped(self, item_id: str) -> bool:
        return item_id in self.mapped


def ok(op: str, *items: str, cls: str = "Success") -> str:
    """A response with one message per item: an id for a Success that returns that item,
    "" for a Success without items, "!" for an Error (ErrorItemNotFound)."""

    def message(item: str) -> str:
        failed = item == "!" or cls == "Error"
        head = (
            f'<m:{op}ResponseMessage ResponseClass="{"Error" if failed else "Success"}">'
            f"<m:ResponseCode>{'ErrorItemNotFound' if failed else 'NoError'}</m:ResponseCode>"
        )
        if item and not failed:
            body = f'<m:Items><t:CalendarItem><t:ItemId Id="{item}" ChangeKey="ck-{item}"/></t:CalendarItem></m:Items>'
        else:
            body = "<m:Items/>"
        return f"{head}{body}</m:{op}ResponseMessage>"

    messages = "".join(message(i) for i in items)
    return f"<m:{op}Response><m:ResponseMessages>{messages}</m:ResponseMessages></m:{op}Response>"


def create(folder: str, *kinds: str) -> str:
    items = "".join(f"<t:{k}><t:Subject>x</t:Subject></t:{k}>" for k in kinds)
    saved = f"<m:SavedItemFolderId>{folder}</m:SavedItemFolderId>" if folder else ""
    return f'<m:CreateItem SendMeetingInvitations="SendToNone">{saved}<m:Items>{items}</m:Items></m:CreateItem>'


CAL = '<t:DistinguishedFolderId Id="calendar"/>'


def intents(
    request: bytes, response: bytes, known: Known | None = None
) -> list[tuple[str, str, int | None]]:
    decision = decide(classify(request), classify(response), known or Known())
    return [(i.op, i.item_id, i.index) for i in decision.intents]


CASES = [
    # --- CreateItem --------------------------------------------------------------------
    (
        "create in the calendar",
        create(CAL, "CalendarItem"),
        ok("CreateItem", "N1"),
        Known(),
        [("upsert", "N1", 0)],
    ),
    (
        "create with no folder goes to the calendar",
        create("", "CalendarItem"),
        ok("CreateItem", "N1"),
        Known(),
        [("upsert", "N1", 0)],
    ),
    (
        "create in a learned calendar FolderId",
        create('<t:FolderId Id="F1"/>', "CalendarItem"),
        ok("CreateItem", "N1"),
        Known(roles={"F1": "calendar"}),
        [("upsert", "N1", 0)],
    ),
    (
        "create in a known other folder",
        create('<t:FolderId Id="F2"/>', "CalendarItem"),
        ok("CreateItem", "N1"),
        Known(roles={"F2": "deleteditems"}),
        [],
    ),
    (
        "create in an unknown FolderId: ask Exchange",
        create('<t:FolderId Id="F9"/>', "CalendarItem"),
        ok("CreateItem", "N1"),
        Known(),
        [("refresh", "N1", 0)],
    ),
    (
        "create a mail item",
        create('<t:DistinguishedFolderId Id="drafts"/>', "Message"),
        ok("CreateItem", "M1"),
        Known(),
        [],
    ),
    (
        "create in another calendar (secondary)",
        create('<t:DistinguishedFolderId Id="inbox"/>', "CalendarItem"),
        ok("CreateItem", "N1"),
        Known(),
        [],
    ),
    (
        "batch: the failed one is not mirrored",
        create(CAL, "CalendarItem", "CalendarItem", "CalendarItem"),
        ok("CreateItem", "A", "!", "C"),
        Known(),
        [("upsert", "A", 0), ("upsert", "C", 2)],
    ),
    # --- UpdateItem --------------------------------------------------------------------
    (
        "update a mapped item",
        '<m:UpdateItem ConflictResolution="AutoResolve"><m:ItemChanges><t:ItemChange><t:ItemId Id="X" ChangeKey="1"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="item:Subject"/><t:Message><t:Subject>s</t:Subject></t:Message></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>',
        ok("UpdateItem", "X"),
        Known(mapped={"X"}),
        [("update", "X", 0)],
    ),
    (
        "update a mail item (Message wrapper, unknown id)",
        '<m:UpdateItem><m:ItemChanges><t:ItemChange><t:ItemId Id="M"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="message:IsRead"/><t:Message><t:IsRead>true</t:IsRead></t:Message></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>',
        ok("UpdateItem", "M"),
        Known(),
        [],
    ),
    (
        "update a learned calendar item",
        '<m:UpdateItem><m:ItemChanges><t:ItemChange><t:ItemId Id="S"/><t:Updates><t:DeleteItemField><t:FieldURI FieldURI="calendar:Location"/></t:DeleteItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>',
        ok("UpdateItem", "S"),
        Known(classes={"S": "CalendarItem"}),
        [("update", "S", 0)],
    ),
    (
        "update a known mail item with a CalendarItem wrapper stays mail",
        '<m:UpdateItem><m:ItemChanges><t:ItemChange><t:ItemId Id="M"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>s</t:Subject></t:CalendarItem></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>',
        ok("UpdateItem", "M"),
        Known(classes={"M": "Message"}),
        [],
    ),
    (
        "update refused by Exchange",
        '<m:UpdateItem><m:ItemChanges><t:ItemChange><t:ItemId Id="X"/><t:Updates><t:DeleteItemField><t:FieldURI FieldURI="calendar:Location"/></t:DeleteItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>',
        ok("UpdateItem", "", cls="Error"),
        Known(mapped={"X"}),
        [],
    ),
    (
        "update an occurrence: refresh the master",
        '<m:UpdateItem><m:ItemChanges><t:ItemChange><t:OccurrenceItemId RecurringMasterId="MASTER" InstanceIndex="2"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>s</t:Subject></t:CalendarItem></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>',
        ok("UpdateItem", "OCC"),
        Known(mapped={"MASTER"}),
        [("refresh", "MASTER", 0)],
    ),
    # --- DeleteItem / MoveItem / CancelCalendarItem --------------------------------------
    (
        "delete a mapped item",
        '<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="X"/></m:ItemIds></m:DeleteItem>',
        ok("DeleteItem", ""),
        Known(mapped={"X"}),
        [("delete", "X", 0)],
    ),
    (
        "delete an unknown (mail) item",
        '<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="M"/></m:ItemIds></m:DeleteItem>',
        ok("DeleteItem", ""),
        Known(),
        [],
    ),
    (
        "delete that Exchange refused",
        '<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="X"/></m:ItemIds></m:DeleteItem>',
        ok("DeleteItem", "", cls="Error"),
        Known(mapped={"X"}),
        [],
    ),
    (
        "delete one occurrence: refresh the master",
        '<m:DeleteItem DeleteType="MoveToDeletedItems"><m:ItemIds><t:OccurrenceItemId RecurringMasterId="MASTER" InstanceIndex="3"/></m:ItemIds></m:DeleteItem>',
        ok("DeleteItem", ""),
        Known(mapped={"MASTER"}),
        [("refresh", "MASTER", 0)],
    ),
    (
        "move to Deleted Items",
        '<m:MoveItem><m:ToFolderId><t:DistinguishedFolderId Id="deleteditems"/></m:ToFolderId><m:ItemIds><t:ItemId Id="X"/></m:ItemIds></m:MoveItem>',
        ok("MoveItem", "X2"),
        Known(mapped={"X"}),
        [("delete", "X", 0)],
    ),
    (
        "move a mail item to Deleted Items",
        '<m:MoveItem><m:ToFolderId><t:DistinguishedFolderId Id="deleteditems"/></m:ToFolderId><m:ItemIds><t:ItemId Id="M"/></m:ItemIds></m:MoveItem>',
        ok("MoveItem", "M2"),
        Known(),
        [],
    ),
    (
        "restore into the calendar",
        '<m:MoveItem><m:ToFolderId><t:DistinguishedFolderId Id="calendar"/></m:ToFolderId><m:ItemIds><t:ItemId Id="D"/></m:ItemIds></m:MoveItem>',
        ok("MoveItem", "R"),
        Known(),
        [("upsert", "R", None)],
    ),
    (
        "cancel a meeting",
        '<m:CreateItem MessageDisposition="SendAndSaveCopy"><m:Items><t:CancelCalendarItem><t:ReferenceItemId Id="X"/></t:CancelCalendarItem></m:Items></m:CreateItem>',
        ok("CreateItem", ""),
        Known(mapped={"X"}),
        [("delete", "X", 0)],
    ),
    (
        "decline a mapped meeting: refresh",
        '<m:CreateItem><m:Items><t:DeclineItem><t:ReferenceItemId Id="X"/></t:DeclineItem></m:Items></m:CreateItem>',
        ok("CreateItem", ""),
        Known(mapped={"X"}),
        [("refresh", "X", 0)],
    ),
]


@pytest.mark.parametrize(
    ("name", "request_body", "response_body", "known", "expected"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_decisions(
    name: str,
    request_body: str,
    response_body: str,
    known: Known,
    expected: list[tuple[str, str, int | None]],
) -> None:
    assert intents(env(request_body), env(response_body), known) == expected


def test_corpus_batch_create_is_three_upserts() -> None:
    request = load("create/msdocs_createitem_batch3_incl_weekly_recurrence_req.xml")
    response = load("create/msdocs_createitem_batch3_resp.xml")
    decision = decide(classify(request), classify(response), Known())
    assert [(i.op, i.index) for i in decision.intents] == [
        ("upsert", 0),
        ("upsert", 1),
        ("upsert", 2),
    ]
    assert all(c == "CalendarItem" for c in decision.items.values())


def test_change_keys_come_from_the_response() -> None:
    request = env(CASES[8][1])
    decision = decide(classify(request), classify(env(ok("UpdateItem", "X"))), Known(mapped={"X"}))
    assert decision.intents == [Intent("update", "X", "ck-X", 0, "UpdateItem accepted")]


def test_get_folder_teaches_the_calendar_id() -> None:
    request = env(
        '<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="calendar"/><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>'
    )
    response = env(
        "<m:GetFolderResponse><m:ResponseMessages>"
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Folders><t:CalendarFolder><t:FolderId Id="CALID"/></t:CalendarFolder></m:Folders></m:GetFolderResponseMessage>'
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Folders><t:Folder><t:FolderId Id="INBOXID"/></t:Folder></m:Folders></m:GetFolderResponseMessage>'
        "</m:ResponseMessages></m:GetFolderResponse>"
    )
    decision = decide(classify(request), classify(response), Known())
    assert decision.folders == {"CALID": "calendar"}
    assert decision.intents == []


def test_a_fault_or_a_mismatched_pair_decides_nothing() -> None:
    request = env(create(CAL, "CalendarItem"))
    fault = load("errors/exchangelib_soapfault_ErrorServerBusy_BackOffMilliseconds.xml")
    assert decide(classify(request), classify(fault), Known()).intents == []
    other = env(ok("UpdateItem", "N1"))
    assert decide(classify(request), classify(other), Known()).intents == []


def test_find_item_teaches_calendar_item_ids() -> None:
    request = load("find/msdocs_finditem_calendarview_req2.xml")
    response = load("find/msdocs_finditem_calendarview_resp2.xml")
    decision = decide(classify(request), classify(response), Known())
    assert decision.intents == []
    assert set(decision.items.values()) == {"CalendarItem"}


MATTERS = [
    # (request body, may it matter?)
    (
        '<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>',
        False,
    ),
    (
        '<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>',
        True,
    ),
    (
        '<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:ParentFolderIds><t:DistinguishedFolderId Id="msgfolderroot"/></m:ParentFolderIds></m:FindFolder>',
        False,
    ),
    (create('<t:DistinguishedFolderId Id="drafts"/>', "Message"), False),
    (create(CAL, "CalendarItem"), True),
    (
        '<m:CreateItem><m:Items><t:CancelCalendarItem><t:ReferenceItemId Id="X"/></t:CancelCalendarItem></m:Items></m:CreateItem>',
        True,
    ),
    (
        '<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="M"/></m:ItemIds></m:DeleteItem>',
        True,
    ),
    (
        '<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="M"/></m:ItemIds></m:GetItem>',
        True,
    ),
]


@pytest.mark.parametrize(("body", "matters"), MATTERS)
def test_mail_traffic_is_dropped_from_the_request_alone(body: str, matters: bool) -> None:
    from sync.core.routing import may_matter

    assert may_matter(classify(env(body))) is matters


def test_the_byte_filter_never_drops_what_the_router_would_keep() -> None:
    """The proxy's one-scan pre-filter must have no false negatives against may_matter()
    on every request of the corpus (listings excepted: a listing by FolderId only teaches
    item kinds, and is documented as skipped)."""
    from sync.core.routing import LISTINGS, may_matter
    from sync.sources.proxy import _MAYBE_CALENDAR
    from tests.ews_parser.conftest import FIXTURE_FILES

    checked = 0
    for path in FIXTURE_FILES:
        body = path.read_bytes()
        request = classify(body)
        if request.kind != "request" or request.operation in LISTINGS:
            continue
        if may_matter(request):
            checked += 1
            assert _MAYBE_CALENDAR.search(body), path.name
    assert checked >= 25


# --- occurrences read and edited by their own ItemId (issue 13) ---------------------------------

MASTER = "master-1"


def get_occurrence(master: str, index: int) -> bytes:
    return env(
        '<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ItemIds>'
        f'<t:OccurrenceItemId RecurringMasterId="{master}" InstanceIndex="{index}"/>'
        "</m:ItemIds></m:GetItem>"
    )


def test_get_item_on_an_occurrence_teaches_its_own_id_and_master() -> None:
    decision = decide(classify(get_occurrence(MASTER, 2)), classify(env(ok("GetItem", "occ-2"))), Known())
    assert decision.items == {"occ-2": "Occurrence"}
    assert decision.masters == {"occ-2": MASTER}
    assert decision.intents == []


def test_a_calendar_view_teaches_occurrences_by_their_type() -> None:
    response = env(
        '<m:FindItemResponse><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Success">'
        "<m:ResponseCode>NoError</m:ResponseCode><m:RootFolder><t:Items>"
        '<t:CalendarItem><t:ItemId Id="occ-3" ChangeKey="a"/><t:CalendarItemType>Occurrence</t:CalendarItemType></t:CalendarItem>'
        '<t:CalendarItem><t:ItemId Id="exc-4" ChangeKey="b"/><t:CalendarItemType>Exception</t:CalendarItemType></t:CalendarItem>'
        '<t:CalendarItem><t:ItemId Id="single" ChangeKey="c"/><t:CalendarItemType>Single</t:CalendarItemType></t:CalendarItem>'
        "</t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"
    )
    request = env(
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>'
        '<m:CalendarView StartDate="2027-01-01T00:00:00Z" EndDate="2027-02-01T00:00:00Z"/>'
        '<m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds></m:FindItem>'
    )
    decision = decide(classify(request), classify(response), Known())
    assert decision.items == {"occ-3": "Occurrence", "exc-4": "Occurrence", "single": "CalendarItem"}


def delete_by_id(item_id: str) -> bytes:
    return env(
        '<m:DeleteItem DeleteType="MoveToDeletedItems" SendMeetingCancellations="SendToNone">'
        f'<m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:DeleteItem>'
    )


def update_by_id(item_id: str) -> bytes:
    return env(
        '<m:UpdateItem ConflictResolution="AlwaysOverwrite" SendMeetingInvitationsOrCancellations="SendToNone">'
        f'<m:ItemChanges><t:ItemChange><t:ItemId Id="{item_id}"/><t:Updates><t:SetItemField>'
        '<t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>x</t:Subject></t:CalendarItem>'
        "</t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"
    )


@pytest.mark.parametrize(
    ("request_body", "response", "known", "expected"),
    [
        # an occurrence deleted by its own id: its master is read again, never a plain delete
        (delete_by_id("occ-2"), ok("DeleteItem", ""), Known(classes={"occ-2": "Occurrence"}, masters={"occ-2": MASTER}), [("refresh", MASTER, 0)]),
        # ... and with its master never learned: nothing recorded (the Exchange feed reports the master)
        (delete_by_id("occ-2"), ok("DeleteItem", ""), Known(classes={"occ-2": "Occurrence"}), []),
        # an occurrence updated by its own id: its series is refreshed
        (update_by_id("occ-2"), ok("UpdateItem", "occ-2"), Known(classes={"occ-2": "Occurrence"}, masters={"occ-2": MASTER}), [("refresh", MASTER, 0)]),
        # ... master unknown: the occurrence itself is read, and the worker finds its master
        (update_by_id("occ-2"), ok("UpdateItem", "occ-2"), Known(classes={"occ-2": "Occurrence"}), [("refresh", "occ-2", 0)]),
        # a plain calendar item is still deleted as one
        (delete_by_id("single"), ok("DeleteItem", ""), Known(classes={"single": "CalendarItem"}), [("delete", "single", 0)]),
    ],
)
def test_occurrences_edited_by_their_own_id(
    request_body: bytes, response: str, known: Known, expected: list[tuple[str, str, int | None]]
) -> None:
    assert intents(request_body, env(response), known) == expected
