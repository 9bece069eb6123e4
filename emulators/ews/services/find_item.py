"""FindItem: a CalendarView (singles, occurrences and exceptions overlapping the window,
recurring masters expanded) or a paged view of the folder (singles and masters), which a
Restriction filters and a SortOrder orders.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/finditem-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/calendarview
https://learn.microsoft.com/en-us/previous-versions/office/developer/exchange-server-2007/bb409309(v=exchg.80)
("You cannot specify restrictions when doing CalendarView paging": ErrorInvalidRestriction)
TotalItemsInView counts the items the restriction keeps. Extended properties come back
when the ItemShape's AdditionalProperties name them. Folders other than calendars hold no
items here: a paged FindItem there finds nothing (DavMail searches the Inbox for meeting
requests); a CalendarView there is ErrorCalendarFolderIsInvalidForCalendarView.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from lxml import etree

from emulators.ews.mailbox import Mailbox
from emulators.ews.properties import (
    ITEM_QUERYABLE,
    asks_for_properties,
    insert_properties,
    kind_finder,
)
from emulators.ews.restrictions import (
    Expression,
    SortKey,
    matches,
    read_restriction,
    read_sort_order,
    sort,
)
from emulators.ews.services.context import Context, error_message
from emulators.ews.well_known import holds_calendar_items
from emulators.ews.wire import Shape, item_element, m, success, t
from ews_parser import EwsResponseError
from ews_parser.calendar_item import zone_from_id
from ews_parser.values import (
    CalendarView,
    FieldPath,
    FindItemRequest,
    IndexedPageView,
    ItemId,
)

_KIND = kind_finder(ITEM_QUERYABLE)


def handle(ctx: Context, request: FindItemRequest) -> list[etree._Element]:
    base, paths = ctx.shape("FindItem")
    shape = Shape.of(base, paths)
    op = ctx.operation("FindItem")
    messages = []
    for target in request.parent_folders:
        try:
            restriction = op.find(m("Restriction"))
            sort_order = op.find(m("SortOrder"))
            expression = (read_restriction(restriction, _KIND, _zone(ctx))
                          if restriction is not None else None)
            keys = read_sort_order(sort_order, _KIND) if sort_order is not None else ()
            folder = ctx.mailbox.folder(target)
            view = request.view
            offset = None
            if isinstance(view, CalendarView):
                if expression is not None or keys:
                    raise EwsResponseError("ErrorInvalidRestriction", "Restrictions and sort"
                                           " order may not be specified for a CalendarView.")
                if view.start is None or view.end is None:
                    raise EwsResponseError("ErrorInvalidRequest",
                                           "CalendarView needs StartDate and EndDate.")
                if view.end < view.start:
                    raise EwsResponseError("ErrorCalendarEndDateIsEarlierThanStartDate",
                                           "EndDate is earlier than StartDate")
                if not holds_calendar_items(folder.spec):
                    raise EwsResponseError("ErrorCalendarFolderIsInvalidForCalendarView",
                                           "Calendar view is only valid for calendar folders.")
                found = ctx.mailbox.calendar_view(folder, view.start, view.end)
                limit = view.max_entries_returned
                page = found[:limit] if limit is not None else found
            else:
                found = _filtered(ctx.mailbox, ctx.mailbox.folder_items(folder), expression, keys)
                offset = 0
                limit = None
                if isinstance(view, IndexedPageView):
                    limit = view.max_entries_returned
                    offset = view.offset
                    if view.base_point == "End":
                        found = list(reversed(found))
                page = found[offset:][:limit] if limit is not None else found[offset:]
        except EwsResponseError as exc:
            messages.append(error_message("FindItem", exc))
            continue
        message = success("FindItem")
        root = etree.SubElement(message, m("RootFolder"))
        if offset is not None:
            root.set("IndexedPagingOffset", str(offset + len(page)))
        root.set("TotalItemsInView", str(len(found)))
        last = (offset or 0) + len(page) >= len(found)
        root.set("IncludesLastItemInRange", "true" if last else "false")
        items = etree.SubElement(root, t("Items"))
        for model in page:
            items.append(_element(ctx.mailbox, model, shape, paths))
        messages.append(message)
    return messages


def _filtered(mailbox: Mailbox, models: list[Any], expression: Expression | None,
              keys: tuple[SortKey, ...]) -> list[Any]:
    if expression is None and not keys:
        return models
    records = [(model, mailbox.item_record(mailbox.resolve(ItemId(model._id.id))))
               for model in models]
    if expression is not None:
        records = [(model, record) for model, record in records if matches(expression, record)]
    return sort(records, keys) if keys else [model for model, _ in records]


def _element(mailbox: Mailbox, model: Any, shape: Shape,
             paths: tuple[FieldPath, ...]) -> etree._Element:
    elem = item_element(model, shape)
    if asks_for_properties(paths):
        record = mailbox.item_record(mailbox.resolve(ItemId(model._id.id)))
        insert_properties(elem, record.property_elements(paths))
    return elem


def _zone(ctx: Context) -> dt.tzinfo:
    """Where date-time constants without an offset are: the request's TimeZoneContext."""
    name = ctx.envelope.header.time_zone_context
    zone = zone_from_id(name) if name else None
    return zone.tzinfo if zone is not None else dt.UTC
