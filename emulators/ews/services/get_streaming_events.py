"""GetStreamingEvents: a response kept open, one SOAP envelope written as each batch of
events happens in the watched folders, until ConnectionTimeout.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getstreamingevents-operation
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-stream-notifications-about-mailbox-events-by-using-ews-in-exchange
The stream opens with a ConnectionStatus OK message (the subscriptions are live), writes a
Notifications message for each batch (one Notification per subscription, at most 50
events each), an OK message after `Policy.heartbeat` seconds without one, and at the
deadline a ConnectionStatus Closed message, after which the response ends. Up to 200
subscriptions a connection, all owned by the caller; any that is unknown, expired, of
another owner or not streaming fails the whole request with ErrorSubscriptionIds naming
them, as Exchange does (no notifications for the good ones). A subscription taken over by
a newer connection leaves the older one, which closes once it has none left.

Exchange writes two children in the messages namespace where its own schema
(types.xsd: NonEmptyArrayOfNotificationsType, NonEmptyArrayOfSubscriptionIdsType) puts
them in the types namespace: `m:Notifications/m:Notification` (the documented examples,
the EWS Managed API's reader) and `m:ErrorSubscriptionIds/m:SubscriptionId` (what the EWS
Managed API and exchangelib read, exchangelib's test suite against Exchange Online
included). The stand-in writes them as Exchange does; strict mode checks everything else
(`schema_form`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from lxml import etree

from emulators.ews import wire
from emulators.ews.services.context import Context, error_message
from emulators.ews.services.get_events import notification
from emulators.ews.subscriptions import Batch, Connection, Hub, StreamRefused, error
from emulators.ews.wire import m, success, t
from ews_parser import EwsResponseError

#: Checks a response payload (strict mode); raises when it fails the schema.
Check = Callable[[etree._Element], None]


def open_stream(ctx: Context, check: Check) -> list[etree._Element] | Stream:
    """The stream for the request, or the error message that refuses it."""
    op = ctx.operation("GetStreamingEvents")
    hub = ctx.notifications()
    container = op.find(m("SubscriptionIds"))
    sub_ids = [(e.text or "").strip() for e in (container if container is not None else ())
               if e.tag == t("SubscriptionId")]
    try:
        if len(sub_ids) > hub.policy.max_subscriptions_per_connection:
            raise error("ErrorInvalidRequest", "A connection can stream at most "
                        f"{hub.policy.max_subscriptions_per_connection} subscriptions.")
        connection = hub.connect(sub_ids, ctx.caller, ctx.budget,
                                 hub.route(ctx.headers, ctx.mailbox.address),
                                 int(op.findtext(m("ConnectionTimeout")) or "1"))
    except StreamRefused as exc:
        message = error_message("GetStreamingEvents", error(exc.code))
        ids = etree.SubElement(message, m("ErrorSubscriptionIds"))
        for sub_id, _ in exc.bad:
            etree.SubElement(ids, m("SubscriptionId")).text = sub_id
        etree.SubElement(message, m("ConnectionStatus")).text = "Closed"
        return [message]
    except EwsResponseError as exc:
        message = error_message("GetStreamingEvents", exc)
        etree.SubElement(message, m("ConnectionStatus")).text = "Closed"
        return [message]
    return Stream(hub, connection, check)


class Stream:
    """What one open GetStreamingEvents writes and when. The HTTP side loops: `step()`,
    write the documents, `sent()`, then wait `wait_seconds()` or until `fileno()` is
    readable (the hub has news); `close()` at the end, however it ends."""

    def __init__(self, hub: Hub, connection: Connection, check: Check) -> None:
        self._hub = hub
        self._connection = connection
        self._check = check
        self._next_heartbeat = hub.now()  # the first message says the stream is open
        self._batches: list[Batch] = []
        self._more = False

    def fileno(self) -> int:
        return self._connection.fileno()

    def step(self) -> tuple[list[bytes], str]:
        """The documents to write now, and the state after them: "open", "end" (the
        response ends after them) or "abort" (the EWS process went away: drop the
        connection without ending the response)."""
        connection = self._connection
        connection.drain()
        if connection.ending == "lost":
            return [], "abort"
        documents = []
        self._batches, self._more = self._hub.pending(connection)
        with_events = [b for b in self._batches if b[1]]
        if with_events:
            message = success("GetStreamingEvents")
            notifications = etree.SubElement(message, m("Notifications"))
            for sub, events, _ in with_events:
                notifications.append(notification(m("Notification"), sub.id, events,
                                                  mailbox=sub.mailbox))
            documents.append(self._document(message))
        now = self._hub.now()
        if connection.ending == "closed" or now >= connection.deadline:
            documents.append(self._document(_status("Closed")))
            return documents, "end"
        if not documents and now >= self._next_heartbeat:
            documents.append(self._document(_status("OK")))
        if documents:
            self._next_heartbeat = now + self._hub.policy.heartbeat
        return documents, "open"

    def sent(self) -> None:
        """The last step's documents reached the client: its events are delivered."""
        self._hub.delivered(self._batches)
        self._batches = []

    def wait_seconds(self) -> float:
        if self._more:
            return 0.0
        until = min(self._next_heartbeat, self._connection.deadline)
        return max(0.0, until - self._hub.now())

    def close(self) -> None:
        self._hub.disconnect(self._connection)

    def _document(self, message: etree._Element) -> bytes:
        payload = wire.response("GetStreamingEvents", [message])
        self._check(payload)
        # One envelope after another on one response: no XML declaration in each.
        return wire.envelope(payload, declaration=False)


def _status(status: str) -> etree._Element:
    message = success("GetStreamingEvents")
    etree.SubElement(message, m("ConnectionStatus")).text = status
    return message


def schema_form(payload: etree._Element) -> etree._Element:
    """A copy of a GetStreamingEvents response with the children Exchange writes in the
    messages namespace moved to the types namespace its schema declares them in."""
    out = copy.deepcopy(payload)
    for parent, child in (("Notifications", "Notification"),
                          ("ErrorSubscriptionIds", "SubscriptionId")):
        for elem in out.iter(m(parent)):
            for sub in elem.iterchildren(m(child)):
                sub.tag = t(child)
    return out
