"""Item elements in requests and responses.

Calendar items are read in full through exchangelib (calendar_item.py); every other item
kind is read for its id only, since calsync mirrors calendars and must merely tell a mail
item from a calendar one.
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from ews_parser.calendar_item import read_calendar_item
from ews_parser.common import (
    RESPONSE_OBJECTS,
    ParseContext,
    child_elements,
    find_item_id,
    read_item_id,
)
from ews_parser.values import ParsedItem, ResponseObject
from ews_parser.xml import local, t

CALENDAR_ITEM: Final = t("CalendarItem")


def read_item(elem: etree._Element, ctx: ParseContext) -> ParsedItem:
    if elem.tag == CALENDAR_ITEM:
        return read_calendar_item(
            elem, context_zone=ctx.context_zone, default_zone=ctx.default_zone
        )
    return ParsedItem(item_class=local(elem.tag), item_id=read_item_id(find_item_id(elem)))


def read_items(container: etree._Element | None, ctx: ParseContext) -> tuple[ParsedItem, ...]:
    # exchangelib detaches each item it reads, so take the list before reading.
    return tuple(read_item(child, ctx) for child in list(child_elements(container)))


def read_request_item(elem: etree._Element, ctx: ParseContext) -> ParsedItem | ResponseObject:
    name = local(elem.tag)
    if name in RESPONSE_OBJECTS:
        return ResponseObject(
            item_class=name, reference_item_id=read_item_id(elem.find(t("ReferenceItemId")))
        )
    return read_item(elem, ctx)
