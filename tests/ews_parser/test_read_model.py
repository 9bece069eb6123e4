"""`read_model` (ews_parser/calendar_item.py) asks exchangelib only for the fields an item
carries; it must give what exchangelib's own `Item.from_xml` gives, which asks all ~80:
for every calendar item of the corpora, for random items made of their parts (and of
the parts the corpora lack), with an extended property registered or not."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.items import CalendarItem
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree

from ews_parser.calendar_item import read_model
from ews_parser.xml import TYPES
from tests.ews_parser.conftest import FIXTURE_FILES, SHARED_FILES

SCALE = int(os.environ.get("CALSYNC_FUZZ_SCALE", "1"))
T = "{" + TYPES + "}"


def corpus_items() -> list[etree._Element]:
    items = []
    for path in FIXTURE_FILES + SHARED_FILES:
        try:
            root = etree.fromstring(path.read_bytes())
        except etree.XMLSyntaxError:
            continue  # the corpus keeps some broken files on purpose
        items.extend(root.iter(T + "CalendarItem"))
    return items


#: Children of a CalendarItem the corpora have none of (types.xsd's CalendarItemType and
#: ItemType), as Exchange 2016 writes them.
MISSING_PARTS = [
    f'<t:UID xmlns:t="{TYPES}">040000008200E00074C5B7101A82E0080000000003</t:UID>',
    f'<t:RecurrenceId xmlns:t="{TYPES}">2026-03-09T08:00:00Z</t:RecurrenceId>',
    f'<t:FirstOccurrence xmlns:t="{TYPES}"><t:ItemId Id="AAMk1" ChangeKey="DwAA"/>'
    "<t:Start>2026-03-02T08:00:00Z</t:Start><t:End>2026-03-02T09:00:00Z</t:End>"
    "<t:OriginalStart>2026-03-02T08:00:00Z</t:OriginalStart></t:FirstOccurrence>",
    f'<t:LastOccurrence xmlns:t="{TYPES}"><t:ItemId Id="AAMk9" ChangeKey="DwAA"/>'
    "<t:Start>2026-05-04T08:00:00Z</t:Start><t:End>2026-05-04T09:00:00Z</t:End>"
    "<t:OriginalStart>2026-05-04T08:00:00Z</t:OriginalStart></t:LastOccurrence>",
    f'<t:ModifiedOccurrences xmlns:t="{TYPES}"><t:Occurrence><t:ItemId Id="AAMk2"'
    ' ChangeKey="DwAA"/><t:Start>2026-03-09T10:00:00Z</t:Start>'
    "<t:End>2026-03-09T11:00:00Z</t:End><t:OriginalStart>2026-03-09T08:00:00Z"
    "</t:OriginalStart></t:Occurrence></t:ModifiedOccurrences>",
    f'<t:DeletedOccurrences xmlns:t="{TYPES}"><t:DeletedOccurrence>'
    "<t:Start>2026-03-16T08:00:00Z</t:Start></t:DeletedOccurrence></t:DeletedOccurrences>",
    f'<t:EffectiveRights xmlns:t="{TYPES}"><t:CreateAssociated>false</t:CreateAssociated>'
    "<t:CreateContents>false</t:CreateContents><t:CreateHierarchy>false</t:CreateHierarchy>"
    "<t:Delete>true</t:Delete><t:Modify>true</t:Modify><t:Read>true</t:Read>"
    "<t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>",
    f'<t:LastModifiedName xmlns:t="{TYPES}">Alice</t:LastModifiedName>',
    f'<t:LastModifiedTime xmlns:t="{TYPES}">2026-03-01T12:00:00Z</t:LastModifiedTime>',
    f'<t:ConversationId xmlns:t="{TYPES}" Id="AAQkAGI2"/>',
    f'<t:IsOnlineMeeting xmlns:t="{TYPES}">false</t:IsOnlineMeeting>',
    f'<t:AllowNewTimeProposal xmlns:t="{TYPES}">true</t:AllowNewTimeProposal>',
    f'<t:ConferenceType xmlns:t="{TYPES}">0</t:ConferenceType>',
    f'<t:When xmlns:t="{TYPES}">Monday, 2 March 2026 08:00-09:00</t:When>',
    f'<t:InReplyTo xmlns:t="{TYPES}">&lt;a@example.com&gt;</t:InReplyTo>',
    f'<t:IsAssociated xmlns:t="{TYPES}">false</t:IsAssociated>',
    f'<t:MeetingWorkspaceUrl xmlns:t="{TYPES}">https://example.com/w</t:MeetingWorkspaceUrl>',
    f'<t:NetShowUrl xmlns:t="{TYPES}">https://example.com/n</t:NetShowUrl>',
    f'<t:TextBody xmlns:t="{TYPES}" BodyType="Text">Agenda</t:TextBody>',
    f'<t:UniqueBody xmlns:t="{TYPES}" BodyType="HTML">&lt;p&gt;Agenda&lt;/p&gt;</t:UniqueBody>',
    f'<t:Attachments xmlns:t="{TYPES}"><t:FileAttachment><t:AttachmentId Id="AAMkA"/>'
    "<t:Name>agenda.txt</t:Name><t:ContentType>text/plain</t:ContentType>"
    "<t:Size>6</t:Size></t:FileAttachment></t:Attachments>",
    f'<t:InternetMessageHeaders xmlns:t="{TYPES}"><t:InternetMessageHeader'
    ' HeaderName="X-Test">1</t:InternetMessageHeader></t:InternetMessageHeaders>',
    f'<t:MimeContent xmlns:t="{TYPES}" CharacterSet="UTF-8">QkVHSU46VkNBTEVOREFS</t:MimeContent>',
    f'<t:WebClientReadFormQueryString xmlns:t="{TYPES}">?ItemID=AAMk'
    "</t:WebClientReadFormQueryString>",
    f'<t:WebClientEditFormQueryString xmlns:t="{TYPES}">?ItemID=AAMk'
    "</t:WebClientEditFormQueryString>",
    # an extended property: what calsync registers reads it, the others ignore it
    f'<t:ExtendedProperty xmlns:t="{TYPES}"><t:ExtendedFieldURI'
    ' PropertySetId="6ed8da90-450b-101b-98da-00aa003f1305" PropertyName="calsync-test"'
    ' PropertyType="String"/><t:Value>ev-1</t:Value></t:ExtendedProperty>',
    # a value exchangelib cannot convert: both must answer it alike
    f'<t:ReminderMinutesBeforeStart xmlns:t="{TYPES}">soon</t:ReminderMinutesBeforeStart>',
]

ITEMS = corpus_items()
PARTS = sorted(
    {etree.tostring(child) for item in ITEMS for child in item if isinstance(child.tag, str)}
    | {p.encode() for p in MISSING_PARTS}
)


class CalsyncTest(ExtendedProperty):  # type: ignore[misc]
    property_set_id = "6ed8da90-450b-101b-98da-00aa003f1305"
    property_name = "calsync-test"
    property_type = "String"


@contextmanager
def fields(registered: bool) -> Iterator[None]:
    """CalendarItem's fields as they are, or with an extended property registered (its
    FIELDS change in place: the index of fields must follow)."""
    if registered:
        CalendarItem.register("calsync_test", CalsyncTest)
    try:
        yield
    finally:
        if registered:
            CalendarItem.deregister("calsync_test")


def outcome(read: Any, elem: etree._Element) -> tuple[str, ...]:
    """Each field's value (repr), or the error, of reading a copy of `elem`; and what is
    left of the copy (exchangelib clears and detaches what it read)."""
    elem = copy.deepcopy(elem)
    parent = etree.Element(T + "Items")
    parent.append(elem)
    try:
        model = read(elem)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))
    values = tuple(f"{f.name}={getattr(model, f.name, None)!r}" for f in CalendarItem.FIELDS)
    return (*values, f"left={etree.tostring(parent)!r}", f"account={model.account!r}")


def exchangelib_from_xml(elem: etree._Element) -> Any:
    return super(CalendarItem, CalendarItem).from_xml(elem=elem, account=None)


def assert_alike(elem: etree._Element) -> None:
    assert outcome(read_model, elem) == outcome(exchangelib_from_xml, elem)


def test_the_corpora_hold_calendar_items() -> None:
    assert len(ITEMS) > 100 and len(PARTS) > 150


@pytest.mark.parametrize("registered", [False, True])
def test_every_calendar_item_of_the_corpora_reads_as_exchangelib_reads_it(
    registered: bool,
) -> None:
    with fields(registered):
        for item in ITEMS:
            assert_alike(item)


def build(parts: list[bytes]) -> etree._Element:
    item = etree.Element(T + "CalendarItem", nsmap={"t": TYPES})
    for part in parts:
        item.append(etree.fromstring(part))
    return item


@settings(max_examples=300 * SCALE)
@given(registered=st.booleans(), parts=st.lists(st.sampled_from(PARTS), max_size=30))
@example(
    registered=False,
    parts=[p for p in PARTS if b"<t:Attachments" in p or b"<t:Recurrence" in p],
)
@example(registered=True, parts=[p for p in PARTS if b"ExtendedProperty" in p] * 2)
def test_any_mix_of_parts_reads_as_exchangelib_reads_it(
    registered: bool, parts: list[bytes]
) -> None:
    with fields(registered):
        assert_alike(build(parts))
