"""Subscribe (pull and streaming subscriptions; push is not emulated) and Unsubscribe.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/subscribe-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/unsubscribe-operation
A subscription watches FolderIds or, with SubscribeToAllFolders, the whole mailbox; a pull
subscription may start from a Watermark and lives Timeout minutes past its last GetEvents.
Its owner is the authenticated account; it counts against the budget of the mailbox it
impersonates, else the owner's (EWSMaxSubscriptions: ErrorExceededSubscriptionCount). A
Subscribe that asks for affinity (X-AnchorMailbox with X-PreferServerAffinity: true) is
answered with the X-BackEndOverrideCookie of the mailbox server that holds it.
"""

from __future__ import annotations

from lxml import etree

from emulators.ews.services.context import Context, error_message
from emulators.ews.subscriptions import EVENT_TYPES, error
from emulators.ews.wire import m, success, t
from ews_parser import EwsResponseError
from ews_parser.common import read_folder_target
from ews_parser.values import DistinguishedFolderId


def handle_subscribe(ctx: Context, request: object) -> list[etree._Element]:
    op = ctx.operation("Subscribe")
    hub = ctx.notifications()
    pull = op.find(m("PullSubscriptionRequest"))
    spec = pull if pull is not None else op.find(m("StreamingSubscriptionRequest"))
    route = hub.route(ctx.headers, ctx.mailbox.address)
    try:
        if spec is None:
            raise EwsResponseError("ErrorInvalidRequest",
                                   "Push subscriptions are not emulated by this stand-in.")
        folders = _watched(ctx, spec)
        event_types = frozenset(e.text or "" for e in spec.iter(t("EventType")))
        if not event_types <= EVENT_TYPES:  # the schema already holds them to the list
            raise error("ErrorInvalidSubscriptionRequest")
        timeout = start = None
        if pull is not None:
            timeout = int(pull.findtext(t("Timeout")) or "0")
            start = pull.findtext(t("Watermark"))
        sub_id, mark = hub.subscribe(
            streaming=pull is None, owner=ctx.caller, budget=ctx.budget,
            mailbox=ctx.mailbox.address.lower(), route=route, folders=folders,
            event_types=event_types, timeout=timeout, start=start)
    except EwsResponseError as exc:
        return [error_message("Subscribe", exc)]
    if route.affinity:
        ctx.response_headers.append(("Set-Cookie", hub.cookie(route, ctx.secure)))
    message = success("Subscribe")
    etree.SubElement(message, m("SubscriptionId")).text = sub_id
    if pull is not None:
        etree.SubElement(message, m("Watermark")).text = mark
    return [message]


def _watched(ctx: Context, spec: etree._Element) -> frozenset[str] | None:
    """The FolderIds a subscription watches; None for SubscribeToAllFolders."""
    if (spec.get("SubscribeToAllFolders") or "").strip() in ("true", "1"):
        return None
    container = spec.find(t("FolderIds"))
    targets = [read_folder_target(c) for c in (container if container is not None else ())
               if isinstance(c.tag, str)]
    if not targets:
        raise error("ErrorInvalidSubscriptionRequest")
    watched = set()
    for target in targets:
        if target is None:
            raise error("ErrorInvalidSubscriptionRequest")
        if isinstance(target, DistinguishedFolderId) and target.mailbox \
                and target.mailbox.lower() != ctx.mailbox.address.lower():
            raise error("ErrorSubscriptionDelegateAccessNotSupported")
        watched.add(ctx.mailbox.folder(target).id)
    return frozenset(watched)


def handle_unsubscribe(ctx: Context, request: object) -> list[etree._Element]:
    op = ctx.operation("Unsubscribe")
    hub = ctx.notifications()
    try:
        hub.unsubscribe(op.findtext(m("SubscriptionId")) or "", ctx.caller,
                        hub.route(ctx.headers, ctx.mailbox.address))
    except EwsResponseError as exc:
        return [error_message("Unsubscribe", exc)]
    return [success("Unsubscribe")]
