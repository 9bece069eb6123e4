"""EWS notifications (streaming, and pull where streaming is refused) on users' calendar
folders, through exchangelib. Layer 1: the source that uses them is
sync/sources/streaming.py.

Exchange's rules this follows (learn.microsoft.com, "Notification subscriptions, mailbox
events, and EWS in Exchange" and "Maintain affinity between a group of subscriptions and
the Mailbox server"):

- one GetStreamingEvents connection can carry up to 200 subscriptions; with impersonation,
  the subscriptions of several mailboxes share one, anchored on the first mailbox
  (X-AnchorMailbox, X-PreferServerAffinity: exchangelib sends both for these services, and
  keeps the X-BackEndOverrideCookie Exchange returns on its session);
- a connection lasts ConnectionTimeout minutes (1-30) and ends with ConnectionStatus
  Closed; the subscription outlives it (about 30 minutes without a connection), so the
  client reconnects with the same ids and loses nothing;
- open streaming connections per account are limited (3 on-premises by default, 10 in
  Exchange Online: ErrorExceededConnectionCount), and so are subscriptions
  (EWSMaxSubscriptions: ErrorExceededSubscriptionCount).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree

from ews_parser.errors import EwsParseError
from ews_parser.xml import parse_xml, s, t
from sync.backends.exchange import ExchangeMailbox

#: The item events that mean "the calendar changed" (a StatusEvent is a heartbeat).
CHANGE_EVENTS = ("CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "CopiedEvent")

Trouble = Literal[
    "subscription-gone",  # ErrorSubscriptionNotFound, expired, invalid: subscribe again
    "watermark",  # ErrorInvalidWatermark / missed events: subscribe again
    "busy",  # ErrorServerBusy: back off as told
    "connections",  # ErrorExceededConnectionCount
    "subscriptions",  # ErrorExceededSubscriptionCount
    "transport",  # the network, Exchange down, anything else
]


class NotificationError(Exception):
    """What went wrong, sorted by what the caller does about it; `code` is Exchange's
    ResponseCode (or the exception's name), `back_off` seconds when Exchange said."""

    def __init__(self, trouble: Trouble, code: str, *, back_off: float | None = None) -> None:
        super().__init__(f"{code} ({trouble})")
        self.trouble: Trouble = trouble
        self.code = code
        self.back_off = back_off


def _translate(exc: Exception) -> NotificationError:
    from exchangelib import errors

    code = type(exc).__name__
    if isinstance(exc, errors.ErrorServerBusy):
        return NotificationError("busy", code, back_off=exc.back_off)
    if isinstance(
        exc,
        errors.ErrorSubscriptionNotFound
        | errors.ErrorExpiredSubscription
        | errors.ErrorInvalidSubscription
        | errors.ErrorInvalidPullSubscriptionId,
    ):
        return NotificationError("subscription-gone", code)
    if isinstance(exc, errors.ErrorInvalidWatermark | errors.ErrorMissedNotificationEvents):
        return NotificationError("watermark", code)
    if isinstance(exc, errors.ErrorExceededConnectionCount):
        return NotificationError("connections", code)
    if isinstance(exc, errors.ErrorExceededSubscriptionCount):
        return NotificationError("subscriptions", code)
    return NotificationError("transport", code)


@dataclass(frozen=True, slots=True)
class ItemEvent:
    """One calendar item's change as a notification tells it: `upsert` (created or
    modified in the calendar, moved or copied into it) with the item's id and ChangeKey,
    or `delete` (deleted, moved out of the calendar) with the id it had there."""

    kind: Literal["upsert", "delete"]
    item_id: str
    change_key: str | None


@dataclass(frozen=True, slots=True)
class Notified:
    """A notification that the calendar changed: the subscription, and its item events
    (None: one of them cannot be told item by item, so only the feed can say)."""

    subscription_id: str
    items: tuple[ItemEvent, ...] | None


@dataclass(frozen=True, slots=True)
class Pulled:
    """What GetEvents answered: whether the calendar changed, its item events (as in
    `Notified`), the watermark to ask from next."""

    changed: bool
    watermark: str | None
    items: tuple[ItemEvent, ...] | None = ()


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One event of a notification, as its element tells it (types.xsd:
    BaseObjectChangedEventType, MovedCopiedEventType): `kind` is the element's name
    (CreatedEvent, StatusEvent, ...); the ids (their Id attribute) are an item's, None in a
    folder's event or a heartbeat, and "" when an ItemId or OldItemId has no Id."""

    kind: str
    item_id: str | None = None
    change_key: str | None = None
    parent_folder_id: str | None = None
    old_item_id: str | None = None
    old_parent_folder_id: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A streamed Notification (types.xsd NotificationType) read straight from its
    element: what `Stream.notifications()` needs of exchangelib's Notification model,
    without building it (about half of a notification's CPU, issue 17)."""

    subscription_id: str | None
    events: tuple[NotificationEvent, ...]


#: The event elements of a Notification (types.xsd NotificationType), by Clark name
_EVENT_TAGS = {
    t(kind): kind
    for kind in (
        "CopiedEvent",
        "CreatedEvent",
        "DeletedEvent",
        "ModifiedEvent",
        "MovedEvent",
        "NewMailEvent",
        "StatusEvent",
        "FreeBusyChangedEvent",
    )
}
_SUBSCRIPTION_ID, _ITEM_ID, _OLD_ITEM_ID = t("SubscriptionId"), t("ItemId"), t("OldItemId")
_PARENT_FOLDER_ID, _OLD_PARENT_FOLDER_ID = t("ParentFolderId"), t("OldParentFolderId")


def read_notification(elem: etree._Element) -> Notification:
    """The Notification element `elem`, read as exchangelib's `Notification.from_xml`
    reads it (the first SubscriptionId's text; the events in the types namespace, in
    order; of each id, the first; an empty text or attribute is None), into plain
    values. One pass over the children: lxml's `find` costs more than the reading."""
    subscription_id: etree._Element | None = None
    events = []
    for child in elem:
        kind = _EVENT_TAGS.get(child.tag)
        if kind is None:
            if subscription_id is None and child.tag == _SUBSCRIPTION_ID:
                subscription_id = child
            continue
        parts: dict[Any, etree._Element] = {}
        for part in child:
            parts.setdefault(part.tag, part)
        item, old = parts.get(_ITEM_ID), parts.get(_OLD_ITEM_ID)
        events.append(
            NotificationEvent(
                kind,
                None if item is None else item.get("Id") or "",
                None if item is None else item.get("ChangeKey") or None,
                _id_of(parts.get(_PARENT_FOLDER_ID)),
                None if old is None else old.get("Id") or "",
                _id_of(parts.get(_OLD_PARENT_FOLDER_ID)),
            )
        )
    return Notification(
        None if subscription_id is None else subscription_id.text or None, tuple(events)
    )


def _id_of(elem: etree._Element | None) -> str | None:
    return None if elem is None else elem.get("Id") or None


def _event(event: Any) -> NotificationEvent:
    """An event as a `NotificationEvent`: one read by `read_notification` as it is, one
    of exchangelib's models (GetEvents, and tests) by its fields."""
    if isinstance(event, NotificationEvent):
        return event
    item, old = getattr(event, "item_id", None), getattr(event, "old_item_id", None)
    return NotificationEvent(
        type(event).__name__,
        None if item is None else str(item.id or ""),
        getattr(item, "changekey", None),
        getattr(getattr(event, "parent_folder_id", None), "id", None),
        None if old is None else str(old.id or ""),
        getattr(getattr(event, "old_parent_folder_id", None), "id", None),
    )


def _kind(event: Any) -> str:
    return event.kind if isinstance(event, NotificationEvent) else type(event).__name__


def _changed(events: Any) -> bool:
    return any(_kind(e) in CHANGE_EVENTS for e in events or ())


def item_events(events: Any, calendar_id: str | None) -> tuple[ItemEvent, ...] | None:
    """The item changes among the `events` (`NotificationEvent`s or exchangelib's
    models) of a subscription on the calendar whose FolderId is `calendar_id`. A folder's
    own events say nothing of an item that its items' events do not, and are left out. A
    move or copy is told by its folders: into the calendar, the item under its new id;
    out of it, a deletion of the old id (None when the calendar's id is not known, or an
    item's event lacks the item's id)."""
    items: list[ItemEvent] = []
    for event in map(_event, events or ()):
        name, item_id = event.kind, event.item_id
        if name not in CHANGE_EVENTS or item_id is None:
            continue  # a heartbeat, a folder's event
        if "" in (item_id, event.old_item_id):
            return None  # an ItemId without its Id (the schema requires one)
        if name in ("CreatedEvent", "ModifiedEvent"):
            items.append(ItemEvent("upsert", item_id, event.change_key))
        elif name == "DeletedEvent":
            items.append(ItemEvent("delete", item_id, None))
        else:  # MovedEvent, CopiedEvent
            if calendar_id is None:
                return None
            if event.parent_folder_id == calendar_id:
                items.append(ItemEvent("upsert", item_id, event.change_key))
            old, old_parent = event.old_item_id, event.old_parent_folder_id
            if name == "MovedEvent" and old is not None and old_parent == calendar_id:
                items.append(ItemEvent("delete", old, None))
    return tuple(items)


def notified(notification: Any, calendars: Mapping[str, str]) -> Notified | None:
    """What a notification (a `Notification`, or exchangelib's model) tells of its
    subscription's calendar, whose FolderId `calendars` holds; None when it tells no
    change (heartbeats, mail)."""
    if not _changed(notification.events):
        return None
    subscription_id = str(notification.subscription_id)
    return Notified(
        subscription_id, item_events(notification.events, calendars.get(subscription_id))
    )


#: The most a streamed document may hold before its end tag (a hostile or broken server)
MAX_DOCUMENT = 16 * 1024 * 1024
_ENVELOPE_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Envelope[\s>/]")
_ENVELOPE_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?Envelope\s*>")


def envelopes(chunks: Iterable[bytes], limit: int = MAX_DOCUMENT) -> Iterator[bytes]:
    """The SOAP documents in a streamed response, each as soon as its end tag arrives,
    from chunks of any size (what exchangelib's DocumentYielder does one byte at a time,
    at about 35 ms of CPU a notification). Bytes between documents are skipped."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            start = _ENVELOPE_START.search(buffer)
            if start is None:
                buffer = buffer[-64:]  # keep what may begin a start tag
                break
            end = _ENVELOPE_END.search(buffer, start.end())
            if end is None:
                buffer = buffer[start.start() :]
                if len(buffer) > limit:
                    raise ValueError(f"a streamed document longer than {limit} bytes")
                break
            yield b"<?xml version='1.0' encoding='utf-8'?>\n" + buffer[start.start() : end.end()]
            buffer = buffer[end.end() :]


def soap_body(document: bytes) -> etree._Element:
    """The SOAP Body of one streamed document, parsed once by the hardened parser
    (ews_parser/xml.py: no DTD, no entity, no network, bounded). Raises what exchangelib's
    `_get_soap_parts` raised: SOAPError for a document that is not XML (or carries a
    DTD), MalformedResponseError for one without a Body."""
    try:
        root = parse_xml(document)
    except EwsParseError as exc:
        from exchangelib.errors import SOAPError

        raise SOAPError(f"Bad SOAP response: {exc}") from exc
    body = root.find(s("Body"))
    if body is None:
        from exchangelib.errors import MalformedResponseError

        raise MalformedResponseError("No Body element in SOAP response")
    return body


_service_class: type | None = None


def _streaming_service(account: Any) -> Any:
    """exchangelib's GetStreamingEvents, reading the chunked response chunk by chunk
    (`envelopes`) rather than byte by byte, each document parsed once (`soap_body`), any
    other response as exchangelib does; notifications as `Notification` values. Faults
    and error messages are exchangelib's to raise, as ever."""
    global _service_class
    if _service_class is None:
        from exchangelib.services import GetStreamingEvents

        class ChunkedStreamingEvents(GetStreamingEvents):  # type: ignore[misc]
            def _elem_to_obj(self, elem: etree._Element) -> Notification:
                return read_notification(elem)

            def _get_soap_messages(self, body: Any) -> Iterator[Any]:
                response = body
                if not getattr(response.raw, "chunked", False):
                    yield from super()._get_soap_messages(body)  # reads what arrives, bytewise
                    return
                parent: Any = super(GetStreamingEvents, self)
                for document in envelopes(response.iter_content(chunk_size=None)):
                    try:
                        soap = soap_body(document)
                    except Exception:
                        response.close()
                        raise
                    yield from parent._get_soap_messages(body=soap)
                    if self.connection_status == self.CLOSED:
                        break  # the connection's end: not waiting for the server to hang up

        _service_class = ChunkedStreamingEvents
    return _service_class(account=account)


class Stream:
    """One streaming connection for a group of subscriptions; `close()` from another
    thread ends `notifications()` at once (shutdown must not wait for the timeout)."""

    def __init__(self, anchor: ExchangeMailbox) -> None:
        self._service = _streaming_service(anchor.account)
        self._lock = threading.Lock()
        self._closed = False

    def notifications(
        self, ids: list[str], timeout_min: int, calendars: Mapping[str, str] | None = None
    ) -> Iterator[Notified]:
        """The notifications that a calendar changed, as Exchange reports them, until the
        connection's timeout (ConnectionStatus Closed) or `close()`. `calendars`: each
        subscription's calendar FolderId, to tell a move's direction (`item_events`)."""
        calendars = calendars or {}
        try:
            for notification in self._service.call(
                subscription_ids=ids, connection_timeout=timeout_min
            ):
                if self._closed:
                    return
                told = notified(notification, calendars)
                if told is not None:
                    yield told
        except Exception as exc:
            if self._closed:
                return
            raise _translate(exc) from exc

    def close(self) -> None:
        """Mark the stream closed and release its connection without waiting: closing a
        response another thread is reading blocks until that read returns (urllib3-future
        holds the connection while it reads, up to the next heartbeat), so the release runs
        on a daemon thread of its own. The socket is shut first: the read in progress ends
        now (Exchange sees the client hang up and frees its place), not at the next
        heartbeat, 45 s away."""
        self._closed = True
        response = getattr(self._service, "_streaming_response", None)  # exchangelib's own
        sock = getattr(getattr(getattr(response, "raw", None), "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # gone already
                sock.shutdown(socket.SHUT_RDWR)
        threading.Thread(target=self._release, name="calsync-stream-close", daemon=True).start()

    def _release(self) -> None:
        # closing a connection that may be gone already
        with self._lock, contextlib.suppress(Exception):
            self._service.stop_streaming()


def subscribe_streaming(mailbox: ExchangeMailbox) -> str:
    """A streaming subscription on the mailbox's calendar."""
    try:
        return str(mailbox.account.calendar.subscribe_to_streaming())
    except Exception as exc:
        raise _translate(exc) from exc


def subscribe_pull(mailbox: ExchangeMailbox, timeout_min: int) -> tuple[str, str | None]:
    """A pull subscription on the mailbox's calendar: (id, watermark)."""
    try:
        subscription_id, watermark = mailbox.account.calendar.subscribe_to_pull(timeout=timeout_min)
    except Exception as exc:
        raise _translate(exc) from exc
    return str(subscription_id), watermark


def pull(mailbox: ExchangeMailbox, subscription_id: str, watermark: str | None) -> Pulled:
    """GetEvents until Exchange has no more (MoreEvents false)."""
    changed = False
    items: list[ItemEvent] | None = []
    try:
        calendar_id = str(mailbox.account.calendar.id)
        for notification in mailbox.account.calendar.get_events(subscription_id, watermark):
            events = list(notification.events or ())
            changed = changed or _changed(events)
            told = item_events(events, calendar_id)
            items = None if told is None or items is None else [*items, *told]
            watermark = next(
                (e.watermark for e in reversed(events) if getattr(e, "watermark", None)),
                watermark,
            )
    except Exception as exc:
        raise _translate(exc) from exc
    return Pulled(changed, watermark, None if items is None else tuple(items))


def unsubscribe(mailbox: ExchangeMailbox, subscription_id: str) -> None:
    try:
        mailbox.account.calendar.unsubscribe(subscription_id)
    except Exception as exc:
        raise _translate(exc) from exc
