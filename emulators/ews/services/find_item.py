"""FindItem: a CalendarView (singles, occurrences and exceptions overlapping the window,
recurring masters expanded) or a paged view of the folder (singles and masters).

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/finditem-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/calendarview
"""

from __future__ import annotations

from lxml import etree

from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import items_container, m, success, t
from ews_parser import EwsResponseError
from ews_parser.values import CalendarView, FindItemRequest, IndexedPageView


def handle(ctx: Context, request: FindItemRequest) -> list[etree._Element]:
    shape = ctx.item_shape("FindItem")
    messages = []
    for target in request.parent_folders:
        try:
            folder = ctx.mailbox.calendar_folder(target)
            view = request.view
            offset = None
            if isinstance(view, CalendarView):
                if view.start is None or view.end is None:
                    raise EwsResponseError("ErrorInvalidRequest",
                                           "CalendarView needs StartDate and EndDate.")
                if view.end < view.start:
                    raise EwsResponseError("ErrorCalendarEndDateIsEarlierThanStartDate",
                                           "EndDate is earlier than StartDate")
                found = ctx.mailbox.calendar_view(folder, view.start, view.end)
                limit = view.max_entries_returned
                page = found[:limit] if limit is not None else found
            else:
                found = ctx.mailbox.folder_items(folder)
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
        root.append(items_container(t("Items"), page, shape))
        messages.append(message)
    return messages
