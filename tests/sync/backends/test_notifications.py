"""Streamed notifications read without exchangelib's models (sync/backends/notifications.py,
issue 17): `read_notification` tells what exchangelib's own `Notification.from_xml` tells
of the same element, for every kind of event; each streamed document is parsed once by the
hardened parser (`soap_body`), so what is not a SOAP document, or carries a DTD (a billion
laughs), is exchangelib's SOAPError or MalformedResponseError, a transport error, with
nothing expanded. Through the unmodified exchangelib against a server that streams given
documents in a chunked response: the notifications as `Stream.notifications()` yields
them, ConnectionStatus Closed ending it, and Exchange's faults and error messages raised
by exchangelib and sorted as before."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from exchangelib.errors import MalformedResponseError, SOAPError
from exchangelib.properties import Notification as ExchangelibNotification
from exchangelib.services import GetStreamingEvents
from lxml import etree

from emulators.ews import wire
from ews_parser.xml import MESSAGES, SOAP, TYPES, m
from sync.backends.exchange import ExchangeMailbox
from sync.backends.notifications import (
    ItemEvent,
    Notification,
    NotificationError,
    Notified,
    Stream,
    _streaming_service,
    item_events,
    notified,
    read_notification,
    soap_body,
)
from sync.config import load_config
from tests.sync.conftest import ALICE

CALENDAR, DELETED, ELSEWHERE, ROOT = "CALENDAR-ID", "DELETED-ITEMS-ID", "OTHER-ID", "ROOT-ID"
WATCHED, QUIET = "SUBSCRIPTION-CALENDAR", "SUBSCRIPTION-QUIET"


def event(
    kind: str,
    id_: str,
    parent: str,
    old: str | None = None,
    old_parent: str | None = None,
    *,
    tag: str = "ItemId",
    extra: str = "",
) -> str:
    """An event element as Exchange streams it (types.xsd BaseObjectChangedEventType,
    MovedCopiedEventType): `tag` FolderId for a folder's own event."""
    xml = (
        f"<t:{kind}><t:TimeStamp>2027-03-04T12:00:00Z</t:TimeStamp>"
        f'<t:{tag} Id="{id_}" ChangeKey="ck-{id_}"/>'
        f'<t:ParentFolderId Id="{parent}" ChangeKey="AQAAAA=="/>'
    )
    if old is not None:
        xml += (
            f'<t:Old{tag} Id="{old}" ChangeKey="ck-{old}"/>'
            f'<t:OldParentFolderId Id="{old_parent}" ChangeKey="AQAAAA=="/>'
        )
    return f"{xml}{extra}</t:{kind}>"


def upsert(item: str) -> ItemEvent:
    return ItemEvent("upsert", item, f"ck-{item}")


def delete(item: str) -> ItemEvent:
    return ItemEvent("delete", item, None)


HEARTBEAT_EVENT = "<t:StatusEvent><t:Watermark>AQAAAA==</t:Watermark></t:StatusEvent>"

#: (event, the item events it tells of the subscription's calendar when its id is known)
EVERY_KIND: list[tuple[str, str, list[ItemEvent] | None]] = [
    # made, changed, deleted in the calendar
    ("created", event("CreatedEvent", "NEW", CALENDAR), [upsert("NEW")]),
    ("modified", event("ModifiedEvent", "EDITED", CALENDAR), [upsert("EDITED")]),
    ("deleted", event("DeletedEvent", "GONE", CALENDAR), [delete("GONE")]),
    # moved to Deleted Items: gone from the calendar; back: in it under a new id
    ("moved out", event("MovedEvent", "IN-BIN", DELETED, "BINNED", CALENDAR), [delete("BINNED")]),
    (
        "moved in",
        event("MovedEvent", "RESTORED", CALENDAR, "WAS-IN-BIN", DELETED),
        [upsert("RESTORED")],
    ),
    # copied into the calendar: a new item there; out of it: the calendar keeps its own
    ("copied in", event("CopiedEvent", "COPY", CALENDAR, "ORIGINAL", ELSEWHERE), [upsert("COPY")]),
    ("copied out", event("CopiedEvent", "ELSEWHERE-COPY", ELSEWHERE, "KEPT", CALENDAR), []),
    # a folder's own events tell no item
    (
        "folder modified",
        event(
            "ModifiedEvent",
            CALENDAR,
            ROOT,
            tag="FolderId",
            extra="<t:UnreadCount>0</t:UnreadCount>",
        ),
        [],
    ),
    ("folder created", event("CreatedEvent", "SUBFOLDER", CALENDAR, tag="FolderId"), []),
    ("folder moved", event("MovedEvent", "SUB", ROOT, "SUB", CALENDAR, tag="FolderId"), []),
    # no change of the calendar: mail, free/busy, a heartbeat
    ("new mail", event("NewMailEvent", "MAIL", ELSEWHERE), []),
    ("free/busy", event("FreeBusyChangedEvent", "FREE-BUSY", CALENDAR), []),
    ("status", HEARTBEAT_EVENT, []),
    # an ItemId without its Id (the schema requires one): only the feed can say
    (
        "item without id",
        event("CreatedEvent", "X", CALENDAR).replace('Id="X" ', ""),
        None,
    ),
]
EXPECTED = tuple(e for _, _, told in EVERY_KIND if told is not None for e in told)


def notification(subscription: str, events: list[str]) -> str:
    return f"<m:Notification><t:SubscriptionId>{subscription}</t:SubscriptionId>{''.join(events)}</m:Notification>"


def document(inner: str) -> bytes:
    """A GetStreamingEvents answer as Exchange streams it: an envelope, no XML declaration."""
    return (
        f'<s:Envelope xmlns:s="{SOAP}"><s:Header><h:ServerVersionInfo xmlns:h="{TYPES}"'
        ' MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6"/>'
        f'</s:Header><s:Body><m:GetStreamingEventsResponse xmlns:m="{MESSAGES}" xmlns:t="{TYPES}">'
        f"<m:ResponseMessages>{inner}</m:ResponseMessages></m:GetStreamingEventsResponse>"
        "</s:Body></s:Envelope>"
    ).encode()


def success(inner: str) -> str:
    return (
        '<m:GetStreamingEventsResponseMessage ResponseClass="Success">'
        f"<m:ResponseCode>NoError</m:ResponseCode>{inner}</m:GetStreamingEventsResponseMessage>"
    )


def failure(code: str) -> bytes:
    return document(
        '<m:GetStreamingEventsResponseMessage ResponseClass="Error">'
        f"<m:MessageText>{code}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        "<m:ConnectionStatus>Closed</m:ConnectionStatus></m:GetStreamingEventsResponseMessage>"
    )


#: the calendar's subscription with every kind of event, another with a heartbeat only
NOTIFICATIONS = document(
    success(
        "<m:Notifications>"
        + notification(WATCHED, [xml for _, xml, told in EVERY_KIND if told is not None])
        + notification(QUIET, [HEARTBEAT_EVENT])
        + "</m:Notifications>"
    )
)
HEARTBEAT = document(success("<m:ConnectionStatus>OK</m:ConnectionStatus>"))
CLOSED = document(success("<m:ConnectionStatus>Closed</m:ConnectionStatus>"))

LAUGHS = '<!ENTITY lol0 "lol">' + "".join(
    f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
)
#: 10**9 "lol"s, if anything expanded them (3 GB)
BILLION_LAUGHS = f"<?xml version='1.0'?><!DOCTYPE s:Envelope [{LAUGHS}]>".encode() + document(
    success("<m:ConnectionStatus>&lol9;</m:ConnectionStatus>")
)

NO_BODY = f'<s:Envelope xmlns:s="{SOAP}"><s:Header/></s:Envelope>'.encode()


def notification_elements(data: bytes) -> list[etree._Element]:
    return list(soap_body(data).iter(m("Notification")))


@pytest.mark.parametrize(
    ("xml", "told"), [row[1:] for row in EVERY_KIND], ids=[row[0] for row in EVERY_KIND]
)
def test_each_event_is_told_as_exchangelibs_model_tells_it(
    xml: str, told: list[ItemEvent] | None
) -> None:
    (elem,) = notification_elements(document(success(notification(WATCHED, [xml]))))
    lean = read_notification(elem)
    model = ExchangelibNotification.from_xml(elem=elem, account=None)  # clears `elem`
    assert isinstance(lean, Notification)
    for calendar in (CALENDAR, None):
        assert item_events(lean.events, calendar) == item_events(model.events, calendar)
    assert item_events(lean.events, CALENDAR) == (None if told is None else tuple(told))
    for calendars in ({WATCHED: CALENDAR}, {}):
        assert notified(lean, calendars) == notified(model, calendars)


@pytest.mark.parametrize(
    ("calendars", "items"), [({WATCHED: CALENDAR}, EXPECTED), ({}, None)], ids=["known", "unknown"]
)
def test_a_streamed_document_gives_the_notified_values_exchangelibs_models_give(
    calendars: dict[str, str], items: tuple[ItemEvent, ...] | None
) -> None:
    elements = notification_elements(NOTIFICATIONS)
    lean = [notified(read_notification(elem), calendars) for elem in elements]
    models = [
        notified(ExchangelibNotification.from_xml(elem=elem, account=None), calendars)
        for elem in elements
    ]
    assert lean == models == [Notified(WATCHED, items), None]  # a heartbeat tells nothing


# --- documents that are no SOAP answer ----------------------------------------------------

NOT_SOAP = [
    # not XML
    ("not XML", b"an HTML error page, or garbage", SOAPError),
    ("unclosed", document(success("<m:ConnectionStatus>OK")), SOAPError),
    # a DTD: how entity bombs and external entities arrive; EWS never sends one
    ("billion laughs", BILLION_LAUGHS, SOAPError),
    (
        "one entity",
        b"<!DOCTYPE s:Envelope [<!ENTITY a 'OK'>]>" + HEARTBEAT.replace(b"OK", b"&a;"),
        SOAPError,
    ),
    (
        "external entity",
        b'<!DOCTYPE s:Envelope [<!ENTITY a SYSTEM "/etc/passwd">]>'
        + HEARTBEAT.replace(b"OK", b"&a;"),
        SOAPError,
    ),
    # XML, but no SOAP Body
    ("no body", NO_BODY, MalformedResponseError),
]


@pytest.mark.parametrize(
    ("data", "error"), [row[1:] for row in NOT_SOAP], ids=[row[0] for row in NOT_SOAP]
)
def test_what_is_no_soap_document_raises_what_exchangelib_raised_and_expands_nothing(
    data: bytes, error: type[Exception]
) -> None:
    started = time.thread_time()
    with pytest.raises(error):
        soap_body(data)
    # a billion laughs expanded would take seconds and gigabytes
    assert time.thread_time() - started < 0.1


# --- through exchangelib, from a server streaming given documents -------------------------


@dataclass
class Exchange:
    """What the server streams to each GetStreamingEvents: `documents`, one HTTP chunk
    each; then the response ends, or, `held`, stays open as Exchange's does until its
    timeout (until the test ends)."""

    url: str = ""
    documents: list[bytes] = field(default_factory=list)
    held: bool = False
    posts: int = 0
    release: threading.Event = field(default_factory=threading.Event)


class _Streaming(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the client hung up between requests
            super().handle()

    def do_POST(self) -> None:
        exchange: Exchange = self.server.exchange  # type: ignore[attr-defined]
        exchange.posts += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hung up
            for data in exchange.documents:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            if exchange.held:
                exchange.release.wait(30)
            self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Streaming)
    server.exchange = Exchange(url=f"http://127.0.0.1:{server.server_port}/EWS/Exchange.asmx")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.exchange  # type: ignore[attr-defined]
    finally:
        server.exchange.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


@pytest.fixture
def mailbox(tmp_path: Path, exchange: Exchange) -> ExchangeMailbox:
    path = tmp_path / "calsync.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "calsync.db"}"\n'
        f'[exchange]\news_url = "{exchange.url}"\n'
        f'[[users]]\nmailbox = "{ALICE}"\nexchange_password_env = "CALSYNC_TEST_ALICE_PASSWORD"\n'
    )
    config = load_config(path)
    user = config.user_named(ALICE)
    assert user is not None
    return ExchangeMailbox(config, user)


def ended(read: Callable[[], list[Any]]) -> list[Any] | Exception:
    """What `read` returns, or the error it raises; it must end by itself within seconds
    (on ConnectionStatus Closed or an error, with the connection still open)."""
    outcome: list[list[Any] | Exception] = []

    def run() -> None:
        try:
            outcome.append(read())
        except Exception as exc:
            outcome.append(exc)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(10)
    assert outcome, "the stream did not end"
    return outcome[0]


def streamed(mailbox: ExchangeMailbox, calendars: dict[str, str]) -> list[Any] | Exception:
    """What `Stream.notifications()` yields, or the error it raises."""
    return ended(lambda: list(Stream(mailbox).notifications([WATCHED, QUIET], 1, calendars)))


def exchangelibs_own(mailbox: ExchangeMailbox) -> list[Any] | Exception:
    """What exchangelib's own GetStreamingEvents gives, or the error it raises."""
    service = GetStreamingEvents(account=mailbox.account)
    try:
        return ended(
            lambda: list(service.call(subscription_ids=[WATCHED, QUIET], connection_timeout=1))
        )
    finally:
        service.stop_streaming()


def test_a_stream_yields_what_the_calendar_was_told_and_ends_on_closed(
    exchange: Exchange, mailbox: ExchangeMailbox
) -> None:
    exchange.documents = [HEARTBEAT, NOTIFICATIONS, HEARTBEAT, CLOSED]
    exchange.held = True  # Closed ends it, not the server hanging up
    assert streamed(mailbox, {WATCHED: CALENDAR}) == [Notified(WATCHED, EXPECTED)]
    assert exchange.posts == 1


def test_the_stream_hands_on_lean_values_not_exchangelibs_models(
    exchange: Exchange, mailbox: ExchangeMailbox
) -> None:
    exchange.documents = [NOTIFICATIONS, CLOSED]
    service = _streaming_service(mailbox.account)
    try:
        told = list(service.call(subscription_ids=[WATCHED, QUIET], connection_timeout=1))
    finally:
        service.stop_streaming()
    assert [type(n) for n in told] == [Notification, Notification]
    assert [n.subscription_id for n in told] == [WATCHED, QUIET]


#: (document, trouble, code, back-off, whether exchangelib's own reader raises it too)
STREAM_ERRORS = [
    # a document that is not XML, or not SOAP: the transport. exchangelib's own reader
    # (a recovering parser) read past a broken document; the DTD before the envelope is no
    # part of the streamed document (`envelopes`), so its entities are undefined
    ("not XML", document("<m:Oops>"), "transport", "SOAPError", None, False),
    ("billion laughs", BILLION_LAUGHS, "transport", "SOAPError", None, False),
    ("no body", NO_BODY, "transport", "MalformedResponseError", None, True),
    # Exchange's answers: exchangelib's exceptions, sorted as they were
    (
        "subscription gone",
        failure("ErrorSubscriptionNotFound"),
        "subscription-gone",
        "ErrorSubscriptionNotFound",
        None,
        True,
    ),
    (
        "connections",
        failure("ErrorExceededConnectionCount"),
        "connections",
        "ErrorExceededConnectionCount",
        None,
        True,
    ),
    (
        "busy",
        wire.fault(
            "ErrorServerBusy", "The server cannot serve this request now.", back_off_ms=2500
        ),
        "busy",
        "ErrorServerBusy",
        2.5,
        True,
    ),
    (
        "fault",
        wire.fault("ErrorInternalServerError", "An internal server error occurred."),
        "transport",
        "ErrorInternalServerError",
        None,
        True,
    ),
]


@pytest.mark.parametrize(
    ("data", "trouble", "code", "back_off", "exchangelib_too"),
    [row[1:] for row in STREAM_ERRORS],
    ids=[row[0] for row in STREAM_ERRORS],
)
def test_a_bad_document_or_an_error_ends_the_stream_as_before(
    exchange: Exchange,
    mailbox: ExchangeMailbox,
    data: bytes,
    trouble: str,
    code: str,
    back_off: float | None,
    exchangelib_too: bool,
) -> None:
    exchange.documents = [HEARTBEAT, data]
    exchange.held = True
    error = streamed(mailbox, {WATCHED: CALENDAR})
    assert isinstance(error, NotificationError)
    assert (error.trouble, error.code, error.back_off) == (trouble, code, back_off)
    if exchangelib_too:
        own = exchangelibs_own(mailbox)
        assert (type(own).__name__, getattr(own, "back_off", None)) == (code, back_off)
