"""Helpers for the notification tests: a stand-in with short minutes, exchangelib Accounts
with room for a stream beside other calls, and a raw chunked-stream reader for what
exchangelib hides (chunks, heartbeats, the end of the response)."""

from __future__ import annotations

import base64
import contextlib
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
)
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version
from lxml import etree

from emulators.ews import EwsServer, start_server
from emulators.ews.subscriptions import Policy
from tests.emulators.ews.conftest import SERVICE, USERS, M, T, soap

#: A stand-in "minute" in the tests: ConnectionTimeout 1 ends a stream after this.
MINUTE = 0.6
HEARTBEAT = 0.15


@contextlib.contextmanager
def running(**policy: object) -> Iterator[EwsServer]:
    """A stand-in with short minutes and heartbeats, and `policy`'s other limits."""
    settings: dict[str, object] = {"minute": MINUTE, "heartbeat": HEARTBEAT}
    settings.update(policy)
    srv = start_server(users=USERS, impersonators=SERVICE,
                       notifications=Policy(**settings))  # type: ignore[arg-type]
    try:
        yield srv
    finally:
        srv.stop()


def create(acct: Account, subject: str = "Lunch", day: int = 4) -> CalendarItem:
    utc = EWSTimeZone("UTC")
    item = CalendarItem(account=acct, folder=acct.calendar, subject=subject,
                        start=EWSDateTime(2024, 3, day, 12, tzinfo=utc),
                        end=EWSDateTime(2024, 3, day, 13, tzinfo=utc))
    item.save()
    return item


def account(server: EwsServer, address: str, *, service: bool = False) -> Account:
    """An Account whose session pool leaves room for a stream and other calls beside it
    (exchangelib's default pool holds one session)."""
    user, password = ("svc@example.com", SERVICE["svc@example.com"]) if service \
        else (address, USERS[address])
    config = Configuration(
        service_endpoint=server.url, credentials=Credentials(user, password), auth_type=BASIC,
        version=Version(build=EXCHANGE_2016), retry_policy=FailFast(), max_connections=4)
    return Account(address, config=config, autodiscover=False,
                   access_type=IMPERSONATION if service else DELEGATE)


def impersonating(address: str) -> str:
    """The SOAP header of a request made for `address` (ExchangeImpersonation)."""
    return ("<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>"
            f"{address}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>")


def subscribe_xml(kind: str = "Streaming", folders: str = '<t:DistinguishedFolderId Id="calendar"/>',
                  extra: str = "", events: tuple[str, ...] = ("CreatedEvent", "ModifiedEvent"),
                  header: str = "") -> bytes:
    types = "".join(f"<t:EventType>{e}</t:EventType>" for e in events)
    return soap(f"<m:Subscribe><m:{kind}SubscriptionRequest><t:FolderIds>{folders}</t:FolderIds>"
                f"<t:EventTypes>{types}</t:EventTypes>{extra}</m:{kind}SubscriptionRequest>"
                "</m:Subscribe>", header)


def streaming_xml(*sub_ids: str, timeout: int = 1, header: str = "") -> bytes:
    ids = "".join(f"<t:SubscriptionId>{s}</t:SubscriptionId>" for s in sub_ids)
    return soap(f"<m:GetStreamingEvents><m:SubscriptionIds>{ids}</m:SubscriptionIds>"
                f"<m:ConnectionTimeout>{timeout}</m:ConnectionTimeout></m:GetStreamingEvents>",
                header)


@dataclass
class Document:
    """One streamed SOAP envelope: its ConnectionStatus and its notifications."""

    root: etree._Element
    at: float

    @property
    def status(self) -> str | None:
        return self.root.findtext(f".//{{{M}}}ConnectionStatus")

    @property
    def code(self) -> str | None:
        return self.root.findtext(f".//{{{M}}}ResponseCode")

    def events(self) -> list[tuple[str, str, str]]:
        """(subscription id, event element, ItemId or FolderId) of every event."""
        out = []
        for note in self.root.iter(f"{{{M}}}Notification"):
            sub = note.findtext(f"{{{T}}}SubscriptionId") or ""
            for event in note:
                if event.tag == f"{{{T}}}SubscriptionId":
                    continue
                ref = event.find(f"{{{T}}}ItemId")
                if ref is None:
                    ref = event.find(f"{{{T}}}FolderId")
                out.append((sub, etree.QName(event).localname,
                            ref.get("Id", "") if ref is not None else ""))
        return out


class RawStream:
    """One GetStreamingEvents over a plain socket, its chunks read one by one."""

    def __init__(self, url: str, body: bytes, user: str = "alice@example.com",
                 password: str | None = None, headers: dict[str, str] | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                             timeout=10)
        secret = password or USERS.get(user) or SERVICE[user]
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}",
                 "Content-Type: text/xml; charset=utf-8", f"Authorization: Basic {token}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.file = self.sock.makefile("rb")
        self.status_line = self.file.readline().decode().strip()
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode().strip()):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.ended = False

    @property
    def chunked(self) -> bool:
        return self.headers.get("transfer-encoding") == "chunked"

    def body(self) -> bytes:
        """The whole body of a response that is not a stream."""
        return self.file.read(int(self.headers["content-length"]))

    def next(self) -> Document | None:
        """The next chunk as a document; None once the response ended (the last chunk).
        Raises ConnectionError when the connection drops mid-response."""
        size_line = self.file.readline()
        if not size_line:
            raise ConnectionError("the connection closed before the response ended")
        size = int(size_line.strip(), 16)
        data = self.file.read(size)
        self.file.readline()
        if size == 0:
            self.ended = True
            return None
        # Each chunk is exactly one envelope, without an XML declaration.
        assert not data.startswith(b"<?xml"), data[:60]
        return Document(etree.fromstring(data), time.monotonic())

    def documents(self) -> Iterator[Document]:
        while (doc := self.next()) is not None:
            yield doc

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def sub_id_of(body: bytes) -> str:
    text = etree.fromstring(body).findtext(f".//{{{M}}}SubscriptionId")
    assert text, body[:600]
    return text
