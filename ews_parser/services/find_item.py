"""FindItem requests: CalendarView (expanded occurrences) or a paged view (masters).

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/finditem
"""

from __future__ import annotations

import datetime as dt

from lxml import etree

from ews_parser.common import ParseContext, read_folder_targets
from ews_parser.errors import EwsParseError
from ews_parser.services.get_item import read_shape
from ews_parser.values import CalendarView, FindItemRequest, IndexedPageView
from ews_parser.xml import m


def _datetime(value: str | None, where: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise EwsParseError(f"not an xs:dateTime: {value[:40]!r}", where=where) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _int(value: str | None, where: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise EwsParseError(f"not a number: {value[:20]!r}", where=where) from None


def read_request(op: etree._Element, ctx: ParseContext) -> FindItemRequest:
    view: CalendarView | IndexedPageView | None = None
    calendar_view = op.find(m("CalendarView"))
    paged = op.find(m("IndexedPageItemView"))
    if calendar_view is not None:
        view = CalendarView(
            start=_datetime(calendar_view.get("StartDate"), "CalendarView"),
            end=_datetime(calendar_view.get("EndDate"), "CalendarView"),
            max_entries_returned=_int(calendar_view.get("MaxEntriesReturned"), "CalendarView"),
        )
    elif paged is not None:
        view = IndexedPageView(
            offset=_int(paged.get("Offset"), "IndexedPageItemView") or 0,
            base_point=paged.get("BasePoint") or "Beginning",
            max_entries_returned=_int(paged.get("MaxEntriesReturned"), "IndexedPageItemView"),
        )
    base_shape, extra = read_shape(op.find(m("ItemShape")))
    return FindItemRequest(
        traversal=op.get("Traversal"),
        base_shape=base_shape,
        view=view,
        parent_folders=read_folder_targets(op.find(m("ParentFolderIds"))),
        additional_properties=extra,
    )
