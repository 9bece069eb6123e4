"""GetFolder, FindFolder and SyncFolderHierarchy through the real exchangelib.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderhierarchy-operation
"""

from __future__ import annotations

from pathlib import Path

import pytest
from exchangelib import Account, CalendarItem, EWSDateTime, EWSTimeZone, Q
from exchangelib.errors import ErrorFolderExists
from exchangelib.folders import Calendar, DeletedItems, FolderCollection
from exchangelib.folders import Calendar as CalendarFolderModel
from lxml import etree

import emulators.ews
from emulators.ews import EwsServer
from emulators.ews.well_known import ABSENT, FOLDERS
from tests.emulators.ews.conftest import M, T, code_of, davmail_soap, messages_of, raw_post, soap

UTC = EWSTimeZone("UTC")


def test_root_and_top_of_information_store(alice: Account) -> None:
    # GetFolder on "root" and "msgfolderroot": distinct, stable, long base64 ids.
    root = alice.root
    top = alice.msg_folder_root
    assert root.id != top.id
    assert len(root.id) >= 150 and len(top.id) >= 150
    assert top.name == "Top of Information Store"


def test_find_folder_lists_the_calendar_and_deleted_items(alice: Account) -> None:
    # FindFolder Shallow under msgfolderroot returns its child folders with their classes.
    children = {type(f): f for f in alice.msg_folder_root.children}
    assert children[Calendar].id == alice.calendar.id
    assert children[DeletedItems].id == alice.trash.id
    # Deep traversal from root reaches them too.
    assert {f.id for f in alice.root.walk()} >= {alice.calendar.id, alice.trash.id}


def test_sync_folder_hierarchy_creates_then_nothing(alice: Account) -> None:
    # SyncFolderHierarchy without a state reports every folder as Create; from the state
    # it returned, nothing has changed.
    top = alice.msg_folder_root
    first = list(top.sync_hierarchy())
    assert {kind for kind, _ in first} == {"create"}
    # every folder under Top of Information Store, as FindFolder Deep lists them
    assert {f.id for _, f in first} == {f.id for f in top.walk()}
    assert {f.id for _, f in first} >= {alice.calendar.id, alice.trash.id, alice.inbox.id,
                                        alice.sent.id, alice.contacts.id, alice.tasks.id}
    assert list(top.sync_hierarchy(sync_state=top.folder_sync_state)) == []


# --- what DavMail asks at login -----------------------------------------------------------

#: EwsExchangeSession.FOLDER_PROPERTIES, as ExtendedFieldURI.appendTo writes them.
FOLDER_PROPERTIES = (
    '<t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
    '<t:FieldURI FieldURI="folder:ParentFolderId"/>'
    '<t:FieldURI FieldURI="folder:DisplayName"/>'
    '<t:ExtendedFieldURI PropertyTag="0x3008" PropertyType="SystemTime"/>'
    '<t:ExtendedFieldURI PropertyTag="0x3613" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0x670a" PropertyType="SystemTime"/>'
    '<t:ExtendedFieldURI PropertyTag="0x3602" PropertyType="Integer"/>'
    '<t:ExtendedFieldURI PropertyTag="0x3603" PropertyType="Integer"/>'
    '<t:ExtendedFieldURI PropertyTag="0x360a" PropertyType="Boolean"/>'
    '<t:ExtendedFieldURI PropertyTag="0x6751" PropertyType="Integer"/>'
    '<t:ExtendedFieldURI PropertyTag="0x6752" PropertyType="Integer"/>'
)


def davmail_get_folder(name: str) -> bytes:
    return davmail_soap(
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>"
        f"<t:AdditionalProperties>{FOLDER_PROPERTIES}</t:AdditionalProperties></m:FolderShape>"
        f'<m:FolderIds><t:DistinguishedFolderId Id="{name}"/></m:FolderIds></m:GetFolder>')


def extended(folder: etree._Element) -> dict[str, str]:
    """DavMail's addExtendedPropertyValue: PropertyTag attribute -> Value."""
    return {
        prop.find(f"{{{T}}}ExtendedFieldURI").get("PropertyTag"): prop.findtext(f"{{{T}}}Value")
        for prop in folder.iter(f"{{{T}}}ExtendedProperty")
    }


@pytest.mark.parametrize(("name", "element", "folder_class", "display"), [
    ("inbox", "Folder", "IPF.Note", "Inbox"),
    ("calendar", "CalendarFolder", "IPF.Appointment", "Calendar"),
    ("contacts", "ContactsFolder", "IPF.Contact", "Contacts"),
    ("sentitems", "Folder", "IPF.Note", "Sent Items"),
    ("drafts", "Folder", "IPF.Note", "Drafts"),
    ("deleteditems", "Folder", "IPF.Note", "Deleted Items"),
    ("junkemail", "Folder", "IPF.Note", "Junk Email"),
    ("outbox", "Folder", "IPF.Note", "Outbox"),
])
def test_davmail_reads_the_well_known_folders(server: EwsServer, alice: Account, name: str,
                                              element: str, folder_class: str,
                                              display: str) -> None:
    status, _, body = raw_post(server.url, davmail_get_folder(name))
    assert status == 200
    (message,) = messages_of(body)
    assert code_of(message) == "NoError"
    (folder,) = message.find(f"{{{M}}}Folders")
    assert etree.QName(folder).localname == element
    assert folder.find(f"{{{T}}}FolderId").get("Id")
    assert folder.find(f"{{{T}}}ParentFolderId").get("Id") == alice.msg_folder_root.id
    assert folder.findtext(f"{{{T}}}DisplayName") == display
    assert folder.find(f"{{{T}}}FolderClass") is None  # IdOnly: only what was asked
    props = extended(folder)
    assert props["0x3613"] == folder_class
    assert props["0x3602"] == "0" and props["0x3603"] == "0"
    assert props["0x360a"] == ("true" if name == "contacts" else "false")
    assert props["0x6751"] == "1"
    assert props["0x670a"].endswith("Z") and props["0x3008"] == props["0x670a"]


def test_the_change_tag_moves_with_the_contents(server: EwsServer, alice: Account) -> None:
    # DavMail's CalDAV ctag is PR_LOCAL_COMMIT_TIME_MAX (0x670a), its count 0x3602.
    def calendar_props() -> dict[str, str]:
        _, _, body = raw_post(server.url, davmail_get_folder("calendar"))
        (message,) = messages_of(body)
        return extended(message.find(f"{{{M}}}Folders")[0])

    before = calendar_props()
    item = CalendarItem(account=alice, folder=alice.calendar, subject="x",
                        start=EWSDateTime(2027, 1, 4, 9, tzinfo=UTC),
                        end=EWSDateTime(2027, 1, 4, 10, tzinfo=UTC))
    item.save()
    created = calendar_props()
    assert created["0x670a"] > before["0x670a"]
    assert created["0x3602"] == "1" and created["0x6751"] == "2"
    item.subject = "y"
    item.save()
    updated = calendar_props()
    assert updated["0x670a"] > created["0x670a"]
    item.delete()
    assert calendar_props()["0x3602"] == "0"


# --- every well-known folder ----------------------------------------------------------------

def schema_names() -> list[str]:
    """DistinguishedFolderIdNameType's values in the schema the stand-in ships."""
    schema = etree.parse(str(Path(emulators.ews.__file__).parent / "schema" / "types.xsd"))
    names: list[str] = schema.xpath(
        "//xs:simpleType[@name='DistinguishedFolderIdNameType']//xs:enumeration/@value",
        namespaces={"xs": "http://www.w3.org/2001/XMLSchema"})
    return names


def test_every_distinguished_folder_name_of_the_schema(server: EwsServer) -> None:
    names = schema_names()
    assert len(names) > 60 and "calendar" in names
    # every name is either a folder here or one of those a 2016 mailbox may lack
    assert {s.name for s in FOLDERS} | ABSENT == set(names)
    ids = "".join(f'<t:DistinguishedFolderId Id="{n}"/>' for n in names)
    body = soap("<m:GetFolder><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape>"
                f"</m:FolderShape><m:FolderIds>{ids}</m:FolderIds></m:GetFolder>")
    _, _, answer = raw_post(server.url, body)
    messages = messages_of(answer)
    assert len(messages) == len(names)
    found = {}
    for name, message in zip(names, messages, strict=True):
        if name in ABSENT:  # no archive mailbox, no public folders
            assert code_of(message) == "ErrorFolderNotFound", name
            continue
        assert code_of(message) == "NoError", name
        (folder,) = message.find(f"{{{M}}}Folders")
        found[name] = folder
    ids_by_name = {n: f.find(f"{{{T}}}FolderId").get("Id") for n, f in found.items()}
    for spec in FOLDERS:
        folder = found[spec.name]
        assert etree.QName(folder).localname == spec.element, spec.name
        assert folder.findtext(f"{{{T}}}FolderClass") == spec.folder_class, spec.name
        parent = folder.find(f"{{{T}}}ParentFolderId")
        if spec.parent is None:
            assert parent is None
        else:
            assert parent.get("Id") == ids_by_name[spec.parent], spec.name


@pytest.mark.parametrize(("name", "element", "folder_class", "parent"), [
    ("tasks", "TasksFolder", "IPF.Task", "msgfolderroot"),
    ("notes", "Folder", "IPF.StickyNote", "msgfolderroot"),
    ("journal", "Folder", "IPF.Journal", "msgfolderroot"),
    ("voicemail", "SearchFolder", "IPF.Note.Microsoft.Voicemail", "searchfolders"),
    ("searchfolders", "Folder", None, "root"),
    ("recipientcache", "ContactsFolder", "IPF.Contact.RecipientCache", "contacts"),
    ("conflicts", "Folder", "IPF.Note", "syncissues"),
])
def test_well_known_folders_table(name: str, element: str, folder_class: str | None,
                                  parent: str) -> None:
    spec = next(s for s in FOLDERS if s.name == name)
    assert (spec.element, spec.folder_class, spec.parent) == (element, folder_class, parent)


def test_base_shapes(server: EwsServer) -> None:
    def get(shape: str, name: str) -> etree._Element:
        _, _, answer = raw_post(server.url, soap(
            f"<m:GetFolder><m:FolderShape><t:BaseShape>{shape}</t:BaseShape></m:FolderShape>"
            f'<m:FolderIds><t:DistinguishedFolderId Id="{name}"/></m:FolderIds></m:GetFolder>'))
        (message,) = messages_of(answer)
        return message.find(f"{{{M}}}Folders")[0]

    def children(folder: etree._Element) -> list[str]:
        return [etree.QName(c).localname for c in folder]

    assert children(get("IdOnly", "inbox")) == ["FolderId"]
    assert children(get("Default", "inbox")) == [
        "FolderId", "DisplayName", "TotalCount", "ChildFolderCount", "UnreadCount"]
    # a calendar's default shape has no counts of items (BaseShape's table)
    assert children(get("Default", "calendar")) == ["FolderId", "DisplayName",
                                                    "ChildFolderCount"]
    assert children(get("AllProperties", "calendar")) == [
        "FolderId", "ParentFolderId", "FolderClass", "DisplayName", "TotalCount",
        "ChildFolderCount"]


# --- folders clients create -------------------------------------------------------------------


def test_exchangelib_creates_finds_and_deletes_a_calendar(alice: Account) -> None:
    sub = CalendarFolderModel(parent=alice.calendar, name="Team")
    sub.save()
    assert sub.id
    found = list(FolderCollection(account=alice, folders=[alice.calendar]).find_folders(
        q=Q(name="team")))  # names compare ignoring case
    assert [f.id for f in found] == [sub.id]
    assert isinstance(found[0], CalendarFolderModel)
    assert found[0].folder_class == "IPF.Appointment"
    # it holds calendar items
    item = CalendarItem(account=alice, folder=sub, subject="in team",
                        start=EWSDateTime(2027, 1, 4, 9, tzinfo=UTC),
                        end=EWSDateTime(2027, 1, 4, 10, tzinfo=UTC))
    item.save()
    assert [i.subject for i in sub.all()] == ["in team"]
    # a second folder of that name is refused
    with pytest.raises(ErrorFolderExists):
        CalendarFolderModel(parent=alice.calendar, name="TEAM").save()
    sub.delete()
    assert list(FolderCollection(account=alice, folders=[alice.calendar]).find_folders(
        q=Q(name="Team"))) == []


DAVMAIL_CREATE = (
    # DavMail's createFolder for MKCALENDAR: a t:Folder of class IPF.Appointment.
    '<m:CreateFolder><m:ParentFolderId><t:DistinguishedFolderId Id="calendar"/>'
    "</m:ParentFolderId><m:Folders><t:Folder><t:FolderClass>IPF.Appointment</t:FolderClass>"
    "<t:DisplayName>{name}</t:DisplayName></t:Folder></m:Folders></m:CreateFolder>"
)


def davmail_find_by_name(parent: str, name: str) -> bytes:
    # getSubFolderByName: FindFolder Shallow, IdOnly + FOLDER_PROPERTIES, 1 entry,
    # restricted on folder:DisplayName.
    return davmail_soap(
        '<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>'
        f"<t:AdditionalProperties>{FOLDER_PROPERTIES}</t:AdditionalProperties></m:FolderShape>"
        '<m:IndexedPageFolderView MaxEntriesReturned="1" Offset="0" BasePoint="Beginning"/>'
        '<m:Restriction><t:IsEqualTo><t:FieldURI FieldURI="folder:DisplayName"/>'
        f'<t:FieldURIOrConstant><t:Constant Value="{name}"/></t:FieldURIOrConstant>'
        "</t:IsEqualTo></m:Restriction>"
        f'<m:ParentFolderIds><t:DistinguishedFolderId Id="{parent}"/></m:ParentFolderIds>'
        "</m:FindFolder>")


def test_davmail_mkcalendar_then_delete(server: EwsServer, alice: Account) -> None:
    _, _, answer = raw_post(server.url, davmail_soap(DAVMAIL_CREATE.format(name="Holidays")))
    (created,) = messages_of(answer)
    assert code_of(created) == "NoError"
    (folder,) = created.find(f"{{{M}}}Folders")
    folder_id = folder.find(f"{{{T}}}FolderId").get("Id")
    # found by name, as a calendar
    _, _, answer = raw_post(server.url, davmail_find_by_name("calendar", "Holidays"))
    (found,) = messages_of(answer)
    root = found.find(f"{{{M}}}RootFolder")
    assert root.get("TotalItemsInView") == "1" and root.get("IncludesLastItemInRange") == "true"
    (listed,) = root.find(f"{{{T}}}Folders")
    assert etree.QName(listed).localname == "CalendarFolder"
    assert listed.find(f"{{{T}}}FolderId").get("Id") == folder_id
    assert extended(listed)["0x3613"] == "IPF.Appointment"
    # another name finds nothing
    _, _, answer = raw_post(server.url, davmail_find_by_name("calendar", "Birthdays"))
    (nothing,) = messages_of(answer)
    assert nothing.find(f"{{{M}}}RootFolder").get("TotalItemsInView") == "0"
    # DeleteFolderMethod: HardDelete
    _, _, answer = raw_post(server.url, davmail_soap(
        f'<m:DeleteFolder DeleteType="HardDelete"><m:FolderIds><t:FolderId Id="{folder_id}"/>'
        "</m:FolderIds></m:DeleteFolder>"))
    (deleted,) = messages_of(answer)
    assert code_of(deleted) == "NoError"
    _, _, answer = raw_post(server.url, davmail_find_by_name("calendar", "Holidays"))
    (gone,) = messages_of(answer)
    assert gone.find(f"{{{M}}}RootFolder").get("TotalItemsInView") == "0"


def test_well_known_folders_cannot_be_deleted(server: EwsServer, alice: Account) -> None:
    _, _, answer = raw_post(server.url, soap(
        '<m:DeleteFolder DeleteType="HardDelete"><m:FolderIds>'
        '<t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:DeleteFolder>'))
    (message,) = messages_of(answer)
    assert code_of(message) == "ErrorDeleteDistinguishedFolder"
    assert alice.calendar.id


def test_move_to_deleted_items_then_away(alice: Account) -> None:
    sub = CalendarFolderModel(parent=alice.calendar, name="Old")
    sub.save()
    folder_id = sub.id
    sub.delete(delete_type="MoveToDeletedItems")
    (in_trash,) = FolderCollection(account=alice, folders=[alice.trash]).find_folders()
    assert in_trash.id == folder_id  # a moved folder keeps its id
    in_trash.delete(delete_type="MoveToDeletedItems")  # from Deleted Items: gone
    assert list(FolderCollection(account=alice, folders=[alice.trash]).find_folders()) == []


def test_hierarchy_sync_reports_created_and_deleted_folders(alice: Account) -> None:
    top = alice.msg_folder_root
    list(top.sync_hierarchy())
    state = top.folder_sync_state
    sub = CalendarFolderModel(parent=alice.calendar, name="New")
    sub.save()
    folder_id = sub.id
    changes = list(top.sync_hierarchy(sync_state=state))
    assert [(kind, f.id) for kind, f in changes] == [("create", folder_id)]
    state = top.folder_sync_state
    sub.delete()
    changes = list(top.sync_hierarchy(sync_state=state))
    assert [(kind, getattr(f, "id", f)) for kind, f in changes] == [("delete", folder_id)]


def test_find_folder_orders_by_name_and_pages(server: EwsServer, alice: Account) -> None:
    shallow = list(FolderCollection(account=alice, folders=[alice.msg_folder_root])
                   .find_folders(depth="Shallow"))
    names = [f.name for f in shallow]
    assert names == sorted(names, key=str.lower)
    assert "Contacts" in names and "Recipient Cache" not in names  # Shallow
    deep = [f.name for f in FolderCollection(account=alice, folders=[alice.msg_folder_root])
            .find_folders(depth="Deep")]
    assert "Recipient Cache" in deep
    # IndexedPageFolderView: two at a time, IncludesLastItemInRange on the last page
    pages = []
    offset = 0
    while True:
        _, _, answer = raw_post(server.url, soap(
            '<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>Default'
            "</t:BaseShape></m:FolderShape>"
            f'<m:IndexedPageFolderView MaxEntriesReturned="2" Offset="{offset}"'
            ' BasePoint="Beginning"/><m:ParentFolderIds>'
            '<t:DistinguishedFolderId Id="msgfolderroot"/></m:ParentFolderIds></m:FindFolder>'))
        (message,) = messages_of(answer)
        root = message.find(f"{{{M}}}RootFolder")
        pages.extend(f.findtext(f"{{{T}}}DisplayName") for f in root.find(f"{{{T}}}Folders"))
        offset = int(root.get("IndexedPagingOffset"))
        if root.get("IncludesLastItemInRange") == "true":
            break
    assert pages == names


def test_find_folder_restrictions(alice: Account) -> None:
    def names(q: Q) -> list[str]:
        return [f.name for f in FolderCollection(account=alice, folders=[alice.msg_folder_root])
                .find_folders(q=q, depth="Shallow")]

    assert names(Q(name__startswith="Sen")) == ["Sent Items"]
    assert names(Q(name__icontains="ITEMS")) == ["Deleted Items", "Sent Items"]
    assert names(Q(folder_class="IPF.Task")) == ["Tasks"]
    assert "Inbox" not in names(~Q(folder_class="IPF.Note"))
