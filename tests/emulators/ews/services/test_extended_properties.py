"""Extended properties (ExtendedFieldURI): stored on CreateItem and UpdateItem, returned
when a shape asks for them, PR_SUBJECT / PR_BODY applied to the item itself, and the
computed MAPI properties clients read.
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/properties-and-extended-properties-in-ews-in-exchange
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from exchangelib import Account, CalendarItem, EWSDateTime, EWSTimeZone, ExtendedProperty
from exchangelib.errors import ErrorInvalidPropertySet
from exchangelib.folders import Calendar as CalendarFolderModel
from exchangelib.properties import HTMLBody
from exchangelib.recurrence import DailyPattern, Recurrence
from lxml import etree

from emulators.ews import EwsServer, start_server
from tests.emulators.ews.conftest import (
    USERS,
    M,
    T,
    code_of,
    davmail_soap,
    make_account,
    messages_of,
    raw_post,
)

UTC = EWSTimeZone("UTC")
START = EWSDateTime(2027, 1, 4, 9, tzinfo=UTC)


class CalendarUid(ExtendedProperty):
    distinguished_property_set_id = "PublicStrings"
    property_name = "urn:schemas:calendar:uid"
    property_type = "String"


class Keywords(ExtendedProperty):
    property_set_id = "00020329-0000-0000-C000-000000000046"  # PublicStrings, by GUID
    property_name = "Keywords"
    property_type = "StringArray"


class StateFlags(ExtendedProperty):  # PidLidAppointmentStateFlags
    distinguished_property_set_id = "Appointment"
    property_id = 0x8217
    property_type = "Integer"


class ArticleNumber(ExtendedProperty):  # PR_INTERNET_ARTICLE_NUMBER, computed
    property_tag = 0x0E23
    property_type = "Integer"


class Subject(ExtendedProperty):  # PR_SUBJECT
    property_tag = 0x0037
    property_type = "String"


REGISTERED = {"calendar_uid": CalendarUid, "keywords": Keywords, "state_flags": StateFlags,
              "article_number": ArticleNumber, "pr_subject": Subject}


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    # exchangelib registers extended properties on the class, for the whole process.
    for name, cls in REGISTERED.items():
        CalendarItem.register(name, cls)
    try:
        yield
    finally:
        for name in REGISTERED:
            CalendarItem.deregister(name)


def new_item(alice: Account, **kwargs: object) -> CalendarItem:
    item = CalendarItem(account=alice, folder=alice.calendar, start=START,
                        end=START + dt.timedelta(hours=1), **kwargs)
    item.save()
    return item


def test_set_on_create_read_update_delete(alice: Account) -> None:
    item = new_item(alice, subject="a", calendar_uid="uid-1", keywords=["x", "y"],
                    state_flags=0)
    item.refresh()
    assert (item.calendar_uid, item.keywords, item.state_flags) == ("uid-1", ["x", "y"], 0)
    item.calendar_uid = "uid-2"
    item.state_flags = 1
    item.save(update_fields=["calendar_uid", "state_flags"])
    item.refresh()
    assert (item.calendar_uid, item.state_flags) == ("uid-2", 1)
    item.keywords = None
    item.save(update_fields=["keywords"])  # DeleteItemField
    item.refresh()
    assert item.keywords is None and item.calendar_uid == "uid-2"
    # only what the shape asks for comes back: another item stays without them
    other = new_item(alice, subject="b")
    other.refresh()
    assert other.calendar_uid is None and other.keywords is None


def test_computed_properties(alice: Account) -> None:
    first = new_item(alice, subject="one")
    second = new_item(alice, subject="two")
    first.refresh()
    second.refresh()
    # PR_INTERNET_ARTICLE_NUMBER: increasing in the folder; PR_SUBJECT is the subject
    assert 0 < first.article_number < second.article_number
    assert first.pr_subject == "one"
    # both ways: setting the subject shows in PR_SUBJECT, setting PR_SUBJECT is the subject
    first.subject = "renamed"
    first.save(update_fields=["subject"])
    first.refresh()
    assert first.pr_subject == "renamed"
    first.pr_subject = "by tag"
    first.save(update_fields=["pr_subject"])
    first.refresh()
    assert first.subject == "by tag"
    # computed properties are not for setting
    first.article_number = 99
    with pytest.raises(ErrorInvalidPropertySet):
        first.save(update_fields=["article_number"])


# --- as DavMail sends them ------------------------------------------------------------------

DAVMAIL_CREATE = (
    # CreateItemMethod for a CalDAV PUT: the item's own elements, then its field updates
    # written inside the item (reminderset, urlcompname, apptstateflags, busystatus).
    '<m:CreateItem MessageDisposition="SaveOnly" SendMeetingInvitations="SendToNone">'
    '<m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId>'
    "<m:Items><t:CalendarItem><t:Subject>from davmail</t:Subject>"
    "<t:ReminderIsSet>false</t:ReminderIsSet>"
    '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
    "<t:Value>4f8e-event.EML</t:Value></t:ExtendedProperty>"
    '<t:ExtendedProperty><t:ExtendedFieldURI DistinguishedPropertySetId="Appointment"'
    ' PropertyId="33303" PropertyType="Integer"/><t:Value>0</t:Value></t:ExtendedProperty>'
    "<t:Start>2027-01-04T09:00:00Z</t:Start><t:End>2027-01-04T10:00:00Z</t:End>"
    "<t:LegacyFreeBusyStatus>Busy</t:LegacyFreeBusyStatus>"
    "</t:CalendarItem></m:Items></m:CreateItem>"
)

ETAG_AND_NAME = (
    '<t:ExtendedFieldURI PropertyTag="0x3008" PropertyType="SystemTime"/>'
    '<t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0x37" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0x1000" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0xe23" PropertyType="Integer"/>'
    '<t:ExtendedFieldURI PropertyTag="0xe08" PropertyType="Integer"/>'
    '<t:ExtendedFieldURI DistinguishedPropertySetId="Appointment" PropertyId="33303"'
    ' PropertyType="Integer"/>'
)


def davmail_get(item_id: str) -> bytes:
    return davmail_soap(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
        f"<t:AdditionalProperties>{ETAG_AND_NAME}</t:AdditionalProperties></m:ItemShape>"
        f'<m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:GetItem>')


def davmail_properties(server: EwsServer, item_id: str) -> dict[str, str]:
    """What DavMail's addExtendedPropertyValue keeps: PropertyTag, else PropertyId, else
    PropertyName -> Value."""
    _, _, answer = raw_post(server.url, davmail_get(item_id))
    (message,) = messages_of(answer)
    assert code_of(message) == "NoError"
    (item,) = message.find(f"{{{M}}}Items")
    out = {}
    for prop in item.iter(f"{{{T}}}ExtendedProperty"):
        uri = prop.find(f"{{{T}}}ExtendedFieldURI")
        key = uri.get("PropertyTag") or uri.get("PropertyId") or uri.get("PropertyName")
        out[key] = prop.findtext(f"{{{T}}}Value")
    return out


def davmail_update(item_id: str, updates: str) -> bytes:
    return davmail_soap(
        '<m:UpdateItem ConflictResolution="AutoResolve" MessageDisposition="SaveOnly"'
        ' SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>'
        f'<t:ItemId Id="{item_id}"/><t:Updates>{updates}</t:Updates></t:ItemChange>'
        "</m:ItemChanges></m:UpdateItem>")


def set_tag(tag: str, value: str) -> str:
    # FieldUpdate.write with itemType CalendarItem, ExtendedFieldURI.appendValue
    uri = f'<t:ExtendedFieldURI PropertyTag="{tag}" PropertyType="String"/>'
    return (f"<t:SetItemField>{uri}<t:CalendarItem><t:ExtendedProperty>{uri}"
            f"<t:Value>{value}</t:Value></t:ExtendedProperty></t:CalendarItem></t:SetItemField>")


def test_davmail_create_then_read(server: EwsServer, alice: Account) -> None:
    _, _, answer = raw_post(server.url, davmail_soap(DAVMAIL_CREATE))
    (message,) = messages_of(answer)
    assert code_of(message) == "NoError"
    item_id = message.find(f"{{{M}}}Items/{{{T}}}CalendarItem/{{{T}}}ItemId").get("Id")
    props = davmail_properties(server, item_id)
    assert props["0x10f3"] == "4f8e-event.EML"
    assert props["33303"] == "0"
    assert props["0x37"] == "from davmail"
    assert int(props["0xe23"]) > 0 and int(props["0xe08"]) > 0
    etag = props["0x3008"]
    assert dt.datetime.strptime(etag, "%Y-%m-%dT%H:%M:%SZ")  # DavMail's date format
    assert "0x1000" not in props  # no body, no PR_BODY
    (item,) = alice.calendar.filter(subject="from davmail")
    assert item.legacy_free_busy_status == "Busy" and item.reminder_is_set is False


def test_davmail_updates_subject_and_body_through_their_tags(server: EwsServer,
                                                             alice: Account) -> None:
    item = new_item(alice, subject="before", body=HTMLBody("<p>old <b>text</b></p>"))
    assert davmail_properties(server, item.id)["0x1000"] == "old text"  # PR_BODY is text
    updates = set_tag("0x1000", "new description") + set_tag("0x37", "after")
    _, _, answer = raw_post(server.url, davmail_update(item.id, updates))
    (message,) = messages_of(answer)
    assert code_of(message) == "NoError"
    item.refresh()
    assert item.subject == "after"
    assert str(item.body) == "new description" and not isinstance(item.body, HTMLBody)
    props = davmail_properties(server, item.id)
    assert (props["0x37"], props["0x1000"]) == ("after", "new description")
    # an empty DESCRIPTION is a DeleteItemField of PR_BODY
    _, _, answer = raw_post(server.url, davmail_update(
        item.id, '<t:DeleteItemField><t:ExtendedFieldURI PropertyTag="0x1000"'
                 ' PropertyType="String"/></t:DeleteItemField>'))
    assert code_of(messages_of(answer)[0]) == "NoError"
    item.refresh()
    assert item.body is None
    assert "0x1000" not in davmail_properties(server, item.id)


def test_the_etag_changes_with_the_item() -> None:
    now = [dt.datetime(2027, 1, 1, 12, tzinfo=dt.UTC)]
    with start_server(users=USERS, clock=lambda: now[0]) as server:
        account = make_account(server.url, "alice@example.com", USERS["alice@example.com"])
        item = new_item(account, subject="x")
        before = davmail_properties(server, item.id)["0x3008"]
        assert before == "2027-01-01T12:00:00Z"
        now[0] += dt.timedelta(seconds=5)
        raw_post(server.url, davmail_update(item.id, set_tag("0x37", "y")))
        assert davmail_properties(server, item.id)["0x3008"] == "2027-01-01T12:00:05Z"


@pytest.mark.parametrize(("uri", "value", "code"), [
    ('PropertyTag="0xe23" PropertyType="Integer"', "5", "ErrorInvalidPropertySet"),
    ('PropertyTag="0x3008" PropertyType="SystemTime"', "2027-01-01T00:00:00Z",
     "ErrorInvalidPropertySet"),
    ('DistinguishedPropertySetId="Appointment" PropertyId="33303" PropertyType="Integer"',
     "many", "ErrorInvalidExtendedPropertyValue"),
    ('PropertyTag="0x8000" PropertyName="x" PropertyType="String"', "v",
     "ErrorInvalidExtendedProperty"),
])
def test_what_cannot_be_set(server: EwsServer, alice: Account, uri: str, value: str,
                            code: str) -> None:
    item = new_item(alice, subject="x")
    update = (f"<t:SetItemField><t:ExtendedFieldURI {uri}/><t:CalendarItem><t:ExtendedProperty>"
              f"<t:ExtendedFieldURI {uri}/><t:Value>{value}</t:Value></t:ExtendedProperty>"
              "</t:CalendarItem></t:SetItemField>")
    _, _, answer = raw_post(server.url, davmail_update(item.id, update))
    (message,) = messages_of(answer)
    assert code_of(message) == code
    item.refresh()
    assert item.subject == "x"


def test_an_occurrence_has_its_own(server: EwsServer, alice: Account) -> None:
    series = new_item(alice, subject="daily", calendar_uid="series",
                      recurrence=Recurrence(pattern=DailyPattern(interval=1),
                                            start=START.date(), number=3))
    first, second, _ = alice.calendar.view(start=START, end=START + dt.timedelta(days=3))
    assert first.calendar_uid == "series"  # an occurrence has its master's properties
    uri = ('<t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings"'
           ' PropertyName="urn:schemas:calendar:uid" PropertyType="String"/>')
    update = (f"<t:SetItemField>{uri}<t:CalendarItem><t:ExtendedProperty>{uri}"
              "<t:Value>changed</t:Value></t:ExtendedProperty></t:CalendarItem></t:SetItemField>")
    _, _, answer = raw_post(server.url, davmail_update(second.id, update))
    assert code_of(messages_of(answer)[0]) == "NoError"
    occurrences = alice.calendar.view(start=START, end=START + dt.timedelta(days=3))
    assert [o.calendar_uid for o in occurrences] == ["series", "changed", "series"]
    series.refresh()
    assert series.calendar_uid == "series"


def test_folders_keep_theirs(server: EwsServer, alice: Account) -> None:
    body = davmail_soap(
        '<m:CreateFolder><m:ParentFolderId><t:DistinguishedFolderId Id="calendar"/>'
        "</m:ParentFolderId><m:Folders><t:Folder><t:FolderClass>IPF.Appointment"
        "</t:FolderClass><t:DisplayName>Tagged</t:DisplayName><t:ExtendedProperty>"
        '<t:ExtendedFieldURI PropertyTag="0x3613" PropertyType="String"/>'
        "<t:Value>IPF.Appointment</t:Value></t:ExtendedProperty><t:ExtendedProperty>"
        '<t:ExtendedFieldURI PropertySetId="c11ff724-aa03-4555-9952-8fa248a11c3e"'
        ' PropertyName="color" PropertyType="String"/><t:Value>blue</t:Value>'
        "</t:ExtendedProperty></t:Folder></m:Folders></m:CreateFolder>")
    _, _, answer = raw_post(server.url, body)
    (message,) = messages_of(answer)
    assert code_of(message) == "NoError"
    folder_id = message.find(f"{{{M}}}Folders")[0].find(f"{{{T}}}FolderId").get("Id")
    _, _, answer = raw_post(server.url, davmail_soap(
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>"
        '<t:ExtendedFieldURI PropertySetId="C11FF724-AA03-4555-9952-8FA248A11C3E"'
        ' PropertyName="color" PropertyType="String"/></t:AdditionalProperties></m:FolderShape>'
        f'<m:FolderIds><t:FolderId Id="{folder_id}"/></m:FolderIds></m:GetFolder>'))
    (message,) = messages_of(answer)
    (prop,) = message.iter(f"{{{T}}}ExtendedProperty")
    assert prop.findtext(f"{{{T}}}Value") == "blue"
    # written back with the set's GUID in lower case, as exchangelib matches it
    assert prop.find(f"{{{T}}}ExtendedFieldURI").get("PropertySetId") == \
        "c11ff724-aa03-4555-9952-8fa248a11c3e"
    found = [f for f in alice.calendar.children if f.id == folder_id]
    assert isinstance(found[0], CalendarFolderModel)


def test_unknown_elements_are_not_invented(server: EwsServer, alice: Account) -> None:
    item = new_item(alice, subject="x")
    _, _, answer = raw_post(server.url, davmail_get(item.id))
    (message,) = messages_of(answer)
    (elem,) = message.find(f"{{{M}}}Items")
    # IdOnly: the id and the asked-for properties, each once, nothing else
    names = [etree.QName(c).localname for c in elem]
    assert names[0] == "ItemId" and set(names[1:]) == {"ExtendedProperty"}


def test_sync_folder_items_returns_them(alice: Account) -> None:
    new_item(alice, subject="synced", calendar_uid="uid-sync")
    changes = [(kind, item) for kind, item in alice.calendar.sync_items()]
    assert [(kind, item.calendar_uid) for kind, item in changes] == [("create", "uid-sync")]
