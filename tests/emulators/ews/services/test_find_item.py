"""FindItem restrictions and sort orders, evaluated: through exchangelib's filters and
order_by, and as DavMail searches its calendar (by PR_URL_COMP_NAME, sorted and kept by
PR_INTERNET_ARTICLE_NUMBER).
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/finditem-operation
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from exchangelib import Account, CalendarItem, EWSDateTime, EWSTimeZone, ExtendedProperty, Q
from exchangelib.errors import ErrorInvalidRestriction, ErrorUnsupportedPathForQuery
from lxml import etree

from emulators.ews import EwsServer
from tests.emulators.ews.conftest import M, T, code_of, davmail_soap, messages_of, raw_post

UTC = EWSTimeZone("UTC")


def at(day: int, hour: int = 9) -> EWSDateTime:
    return EWSDateTime(2027, 1, day, hour, tzinfo=UTC)


class UrlCompName(ExtendedProperty):
    property_tag = 0x10F3
    property_type = "String"


@pytest.fixture
def url_comp_name() -> Iterator[None]:
    # exchangelib registers extended properties on the class, for the whole process.
    CalendarItem.register("url_comp_name", UrlCompName)
    try:
        yield
    finally:
        CalendarItem.deregister("url_comp_name")


@pytest.fixture
def three(alice: Account) -> dict[str, CalendarItem]:
    made = {}
    for day, subject, location in ((4, "Stand-up", "Room 1"), (5, "Quarterly review", "Hall"),
                                   (6, "Lunch", None)):
        item = CalendarItem(account=alice, folder=alice.calendar, subject=subject,
                            location=location, start=at(day), end=at(day, 10))
        item.save()
        made[subject] = item
    return made


def subjects(query: object) -> list[str]:
    return sorted(i.subject for i in query)  # type: ignore[attr-defined]


def test_exchangelib_filters(alice: Account, three: dict[str, CalendarItem]) -> None:
    cal = alice.calendar
    assert subjects(cal.filter(subject="Lunch")) == ["Lunch"]
    assert subjects(cal.filter(subject__contains="review")) == ["Quarterly review"]
    assert subjects(cal.filter(subject__icontains="UP")) == ["Stand-up"]
    assert subjects(cal.filter(subject__startswith="Qu")) == ["Quarterly review"]
    assert subjects(cal.filter(subject__iexact="lunch")) == ["Lunch"]
    assert subjects(cal.filter(start__gt=at(4, 12))) == ["Lunch", "Quarterly review"]
    assert subjects(cal.filter(start__range=(at(4), at(5)))) == ["Quarterly review", "Stand-up"]
    assert subjects(cal.filter(subject__in=["Lunch", "Stand-up"])) == ["Lunch", "Stand-up"]
    assert subjects(cal.filter(~Q(subject="Lunch"))) == ["Quarterly review", "Stand-up"]
    assert subjects(cal.filter(Q(subject="Lunch") | Q(location="Hall"))) == [
        "Lunch", "Quarterly review"]
    assert subjects(cal.filter(location__exists=True)) == ["Quarterly review", "Stand-up"]
    assert subjects(cal.filter(location__exists=False)) == ["Lunch"]
    assert cal.filter(subject="Lunch").count() == 1
    assert subjects(cal.filter(subject="nothing")) == []


def test_order_by_and_paging(alice: Account, three: dict[str, CalendarItem]) -> None:
    cal = alice.calendar
    assert [i.subject for i in cal.all().order_by("-start")] == [
        "Lunch", "Quarterly review", "Stand-up"]
    assert [i.subject for i in cal.all().order_by("subject")] == [
        "Lunch", "Quarterly review", "Stand-up"]
    # exchangelib pages with IndexedPageItemView offsets
    assert [i.subject for i in cal.all().order_by("start")[1:3]] == [
        "Quarterly review", "Lunch"]
    assert [i.subject for i in cal.filter(start__gt=at(4, 12)).order_by("start")[1:]] == [
        "Lunch"]


def test_unsearchable_paths_are_refused(alice: Account, three: dict[str, CalendarItem]) -> None:
    # calendar:IsRecurring is calculated: Exchange will not search it, and neither does
    # the stand-in return every item instead.
    with pytest.raises(ErrorUnsupportedPathForQuery):
        list(alice.calendar.filter(is_recurring=True))


def test_no_restriction_on_a_calendar_view(server: EwsServer,
                                           three: dict[str, CalendarItem]) -> None:
    body = davmail_soap(
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        '</m:ItemShape><m:CalendarView StartDate="2027-01-01T00:00:00Z"'
        ' EndDate="2027-02-01T00:00:00Z"/><m:Restriction><t:Exists>'
        '<t:FieldURI FieldURI="item:Subject"/></t:Exists></m:Restriction><m:ParentFolderIds>'
        '<t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds></m:FindItem>')
    _, _, answer = raw_post(server.url, body)
    (message,) = messages_of(answer)
    assert code_of(message) == "ErrorInvalidRestriction"


def test_extended_property_filter(alice: Account, url_comp_name: None) -> None:
    item = CalendarItem(account=alice, folder=alice.calendar, subject="named", start=at(4),
                        end=at(4, 10), url_comp_name="named-1.EML")
    item.save()
    CalendarItem(account=alice, folder=alice.calendar, subject="other", start=at(5),
                 end=at(5, 10)).save()
    (found,) = alice.calendar.filter(url_comp_name="named-1.EML")
    assert found.subject == "named" and found.url_comp_name == "named-1.EML"
    # the other item's PR_URL_COMP_NAME is computed from its subject, as Exchange does
    (other,) = alice.calendar.filter(url_comp_name="other.EML")
    assert other.subject == "other"


# --- DavMail --------------------------------------------------------------------------------

#: EwsExchangeSession.EVENT_REQUEST_PROPERTIES + imapUid, as DavMail asks for them.
EVENT_PROPERTIES = (
    '<t:ExtendedFieldURI PropertyTag="0x670e" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0x3008" PropertyType="SystemTime"/>'
    '<t:ExtendedFieldURI PropertyTag="0x3001" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0x37" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
    '<t:ExtendedFieldURI PropertyTag="0xe23" PropertyType="Integer"/>'
)


def davmail_search(restriction: str, offset: int = 0, page: int = 100) -> bytes:
    """EwsExchangeSession.searchItems (paged): IdOnly plus the event properties, sorted by
    imapUid (PR_INTERNET_ARTICLE_NUMBER) ascending."""
    return davmail_soap(
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        f"<t:AdditionalProperties>{EVENT_PROPERTIES}</t:AdditionalProperties></m:ItemShape>"
        f'<m:IndexedPageItemView MaxEntriesReturned="{page}" Offset="{offset}"'
        ' BasePoint="Beginning"/>'
        f"<m:Restriction>{restriction}</m:Restriction>"
        '<m:SortOrder><t:FieldOrder Order="Ascending">'
        '<t:ExtendedFieldURI PropertyTag="0xe23" PropertyType="Integer"/></t:FieldOrder>'
        '</m:SortOrder><m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/>'
        "</m:ParentFolderIds></m:FindItem>")


def by_name(name: str) -> str:
    return ('<t:IsEqualTo><t:ExtendedFieldURI PropertyTag="0x10f3" PropertyType="String"/>'
            f'<t:FieldURIOrConstant><t:Constant Value="{name}"/></t:FieldURIOrConstant>'
            "</t:IsEqualTo>")


def found_items(answer: bytes) -> tuple[etree._Element, list[dict[str, str]]]:
    (message,) = messages_of(answer)
    assert code_of(message) == "NoError", answer[:500]
    root = message.find(f"{{{M}}}RootFolder")
    items = []
    for item in root.find(f"{{{T}}}Items"):
        props = {p.find(f"{{{T}}}ExtendedFieldURI").get("PropertyTag"): p.findtext(f"{{{T}}}Value")
                 for p in item.iter(f"{{{T}}}ExtendedProperty")}
        props["id"] = item.find(f"{{{T}}}ItemId").get("Id")
        items.append(props)
    return root, items


def test_davmail_finds_an_event_by_its_file_name(server: EwsServer, alice: Account,
                                                 url_comp_name: None) -> None:
    for day, name in ((4, "a.EML"), (5, "b.EML"), (6, "c.EML")):
        CalendarItem(account=alice, folder=alice.calendar, subject=f"event {name}",
                     start=at(day), end=at(day, 10), url_comp_name=name).save()
    _, _, answer = raw_post(server.url, davmail_search(by_name("b.EML")))
    root, items = found_items(answer)
    assert root.get("TotalItemsInView") == "1"
    (item,) = items
    assert item["0x10f3"] == "b.EML" and item["0x37"] == "event b.EML"
    # DavMail keeps a result only if it carries a PR_INTERNET_ARTICLE_NUMBER above 0
    assert int(item["0xe23"]) > 0
    assert item["0x3008"].endswith("Z")  # its etag
    assert "0x670e" not in item and "0x3001" not in item  # not set: not returned


def test_davmail_lists_the_calendar_page_by_page(server: EwsServer, alice: Account) -> None:
    for day in range(4, 9):
        CalendarItem(account=alice, folder=alice.calendar, subject=f"day {day}",
                     start=at(day), end=at(day, 10)).save()
    # DavMail's calendar condition: a recurring master, or a single item ending after the
    # window's start (getCalendarItemCondition, with PidLidRecurring).
    recurring = ('<t:ExtendedFieldURI DistinguishedPropertySetId="Appointment"'
                 ' PropertyId="33315" PropertyType="Boolean"/>')
    condition = (
        f"<t:Or><t:IsEqualTo>{recurring}<t:FieldURIOrConstant><t:Constant Value=\"true\"/>"
        f"</t:FieldURIOrConstant></t:IsEqualTo><t:And><t:IsEqualTo>{recurring}"
        '<t:FieldURIOrConstant><t:Constant Value="false"/></t:FieldURIOrConstant></t:IsEqualTo>'
        '<t:IsGreaterThan><t:FieldURI FieldURI="calendar:End"/><t:FieldURIOrConstant>'
        '<t:Constant Value="2027-01-05T12:00:00Z"/></t:FieldURIOrConstant></t:IsGreaterThan>'
        "</t:And></t:Or>")
    seen: list[dict[str, str]] = []
    offset = 0
    while True:
        _, _, answer = raw_post(server.url, davmail_search(condition, offset=offset, page=2))
        root, items = found_items(answer)
        assert root.get("TotalItemsInView") == "3"
        seen.extend(items)
        offset = len(seen)
        if root.get("IncludesLastItemInRange") == "true":
            break
    assert [i["0x37"] for i in seen] == ["day 6", "day 7", "day 8"]
    numbers = [int(i["0xe23"]) for i in seen]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_paths_appear_in_the_error(server: EwsServer) -> None:
    restriction = ('<t:IsEqualTo><t:FieldURI FieldURI="calendar:IsRecurring"/>'
                   '<t:FieldURIOrConstant><t:Constant Value="true"/></t:FieldURIOrConstant>'
                   "</t:IsEqualTo>")
    _, _, answer = raw_post(server.url, davmail_search(restriction))
    (message,) = messages_of(answer)
    assert code_of(message) == "ErrorUnsupportedPathForQuery"
    path = message.find(f"{{{M}}}MessageXml/{{{T}}}FieldURI")
    assert path is not None and path.get("FieldURI") == "calendar:IsRecurring"


def test_exchangelib_sees_invalid_restriction(server: EwsServer, alice: Account) -> None:
    # a CalendarView with a restriction, as exchangelib would send it if asked
    with pytest.raises(ErrorInvalidRestriction):
        list(alice.calendar.view(start=at(1), end=at(20)).filter(subject="x"))


def test_restricted_count_is_total_items_in_view(server: EwsServer, alice: Account) -> None:
    start = at(4)
    for n in range(3):
        CalendarItem(account=alice, folder=alice.calendar, subject=f"n{n}",
                     start=start + dt.timedelta(days=n), end=start + dt.timedelta(days=n, hours=1)
                     ).save()
    body = davmail_search('<t:Contains ContainmentMode="Prefixed" ContainmentComparison='
                          '"IgnoreCase"><t:FieldURI FieldURI="item:Subject"/>'
                          '<t:Constant Value="N"/></t:Contains>', page=1)
    _, _, answer = raw_post(server.url, body)
    root, items = found_items(answer)
    assert root.get("TotalItemsInView") == "3" and len(items) == 1
    assert root.get("IncludesLastItemInRange") == "false"
    assert root.get("IndexedPagingOffset") == "1"


def test_davmail_looks_for_meeting_requests_in_the_inbox(server: EwsServer) -> None:
    # getEventMessages: IPM.Schedule.Meeting.* not yet processed (PR_MESSAGE_CLASS prefix,
    # PR_PROCESSED 0x65e8 absent or false); nothing here, but a real answer.
    restriction = (
        '<t:And><t:Contains ContainmentMode="Prefixed" ContainmentComparison="IgnoreCase">'
        '<t:ExtendedFieldURI PropertyTag="0x1a" PropertyType="String"/>'
        '<t:Constant Value="IPM.Schedule.Meeting."/></t:Contains><t:Or><t:Not><t:Exists>'
        '<t:ExtendedFieldURI PropertyTag="0x65e8" PropertyType="Boolean"/></t:Exists></t:Not>'
        '<t:IsEqualTo><t:ExtendedFieldURI PropertyTag="0x65e8" PropertyType="Boolean"/>'
        '<t:FieldURIOrConstant><t:Constant Value="false"/></t:FieldURIOrConstant></t:IsEqualTo>'
        "</t:Or></t:And>")
    body = davmail_search(restriction).replace(b'Id="calendar"', b'Id="inbox"')
    _, _, answer = raw_post(server.url, body)
    root, items = found_items(answer)
    assert items == [] and root.get("TotalItemsInView") == "0"
    view = davmail_soap(
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        '</m:ItemShape><m:CalendarView StartDate="2027-01-01T00:00:00Z"'
        ' EndDate="2027-02-01T00:00:00Z"/><m:ParentFolderIds>'
        '<t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>')
    _, _, answer = raw_post(server.url, view)
    assert code_of(messages_of(answer)[0]) == "ErrorCalendarFolderIsInvalidForCalendarView"
