"""GetEvents: the next events of a pull subscription, and the notification elements
GetStreamingEvents writes too.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getevents-operation
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-pull-notifications-about-mailbox-events-by-using-ews-in-exchange
A pull notification carries PreviousWatermark (the last event the call before returned),
MoreEvents, and a Watermark in every event (the last one is the next call's); with nothing
new, one StatusEvent whose Watermark moves past what the subscription does not watch. At
most 50 events a call (MoreEvents: true when more wait); the events returned leave the
subscription's queue (the operation's remarks), so the next call goes on after them.
A streaming notification has none of the watermarks (the EWS Managed API's reader of
streamed events expects TimeStamp first, as the documented examples show).
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from emulators.ews.mailbox import Change
from emulators.ews.services.context import Context, error_message
from emulators.ews.subscriptions import watermark
from emulators.ews.wire import m, success, t
from ews_parser import EwsResponseError


def handle(ctx: Context, request: object) -> list[etree._Element]:
    op = ctx.operation("GetEvents")
    hub = ctx.notifications()
    try:
        sub, events, previous, position, more = hub.get_events(
            op.findtext(m("SubscriptionId")) or "", op.findtext(m("Watermark")) or "",
            ctx.caller, hub.route(ctx.headers, ctx.mailbox.address))
    except EwsResponseError as exc:
        return [error_message("GetEvents", exc)]
    message = success("GetEvents")
    message.append(notification(m("Notification"), sub.id, events, mailbox=sub.mailbox,
                                pull=(watermark(sub.mailbox, previous), more, position)))
    return [message]


def notification(tag: str, sub_id: str, events: Sequence[tuple[int, Change]], *,
                 mailbox: str, pull: tuple[str, bool, int] | None = None) -> etree._Element:
    """One Notification (NotificationType) of a subscription. `pull`: the previous
    watermark, MoreEvents and the position after the events, for a pull subscription."""
    elem = etree.Element(tag)
    etree.SubElement(elem, t("SubscriptionId")).text = sub_id
    if pull is not None:
        previous, more, position = pull
        etree.SubElement(elem, t("PreviousWatermark")).text = previous
        etree.SubElement(elem, t("MoreEvents")).text = "true" if more else "false"
        if not events:
            status = etree.SubElement(elem, t("StatusEvent"))
            etree.SubElement(status, t("Watermark")).text = watermark(mailbox, position)
    for seq, change in events:
        event = etree.SubElement(elem, t(change.kind + "Event"))
        if pull is not None:
            etree.SubElement(event, t("Watermark")).text = watermark(mailbox, seq)
        etree.SubElement(event, t("TimeStamp")).text = change.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        kind = "FolderId" if change.is_folder else "ItemId"
        etree.SubElement(event, t(kind), Id=change.id, ChangeKey=change.change_key)
        etree.SubElement(event, t("ParentFolderId"), Id=change.parent[0],
                         ChangeKey=change.parent[1])
        if change.kind == "Moved":
            old_parent = change.old_parent or change.parent
            etree.SubElement(event, t("Old" + kind), Id=change.old_id or change.id,
                             ChangeKey=change.old_change_key or change.change_key)
            etree.SubElement(event, t("OldParentFolderId"), Id=old_parent[0],
                             ChangeKey=old_parent[1])
        elif change.kind == "Modified" and change.is_folder:
            # Calendar items are never unread.
            etree.SubElement(event, t("UnreadCount")).text = "0"
    return elem
