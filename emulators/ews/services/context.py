"""What every operation handler gets: the acting mailbox, the request, and a recorder for
the meeting-message options each request carried."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lxml import etree

from emulators.ews.mailbox import Mailbox
from emulators.ews.subscriptions import Hub
from emulators.ews.wire import Shape, failure
from ews_parser import EwsParseError, EwsResponseError
from ews_parser.services.get_item import read_shape
from ews_parser.values import Envelope, FieldPath
from ews_parser.xml import m, parse_xml

#: (operation, attribute name, value or None when absent)
Recorder = Callable[[str, str, str | None], None]


@dataclass(slots=True)
class Context:
    mailbox: Mailbox
    envelope: Envelope
    body: bytes
    record: Recorder
    #: the authenticated account (lower case): a subscription's owner
    caller: str = ""
    #: the notification subscriptions (None: the operations that need it refuse)
    hub: Hub | None = None
    #: the request's HTTP headers by lower-case name (affinity)
    headers: Mapping[str, str] = field(default_factory=dict)
    #: whether the request came over TLS (a cookie's `secure`)
    secure: bool = False
    #: HTTP headers the response carries (Set-Cookie)
    response_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def budget(self) -> str:
        """Whose throttling budget the request spends: the impersonated mailbox's copy
        when impersonating, else the caller's own."""
        if self.envelope.header.impersonation is not None:
            return f"impersonated:{self.mailbox.address.lower()}"
        return self.caller

    def notifications(self) -> Hub:
        if self.hub is None:
            raise EwsResponseError("ErrorInvalidRequest", "The request is invalid.")
        return self.hub

    def item_shape(self, operation: str) -> Shape:
        """The request's ItemShape with its AdditionalProperties.

        ews_parser keeps AdditionalProperties for GetItem only; FindItem and
        SyncFolderItems requests lose them, so read the shape here with ews_parser's own
        hardened parser and shape reader (reported as an ews_parser gap).
        """
        base, extra = self.shape(operation)
        return Shape.of(base, extra)

    def operation(self, operation: str) -> etree._Element:
        """The request's operation element (`m:FindItem`, ...), for what ews_parser does
        not read: restrictions, sort orders, views, and the operations calsync ignores."""
        op = parse_xml(self.body).find(f".//{m(operation)}")
        if op is None:
            raise EwsResponseError("ErrorInvalidRequest", "The request is invalid.")
        return op

    def shape(self, operation: str, name: str = "ItemShape"
              ) -> tuple[str | None, tuple[FieldPath, ...]]:
        """BaseShape and every AdditionalProperties path (ExtendedFieldURIs included) of
        the request's ItemShape or FolderShape."""
        try:
            return read_shape(self.operation(operation).find(m(name)))
        except EwsParseError as exc:
            raise EwsResponseError("ErrorInvalidRequest", str(exc)) from None


def error_message(operation: str, exc: EwsResponseError) -> etree._Element:
    message = failure(operation, exc.code, exc.message)
    path = getattr(exc, "path", None)
    if isinstance(path, etree._Element):
        # ErrorUnsupportedPathFor*: Exchange names the path in MessageXml.
        xml = etree.SubElement(message, m("MessageXml"))
        xml.append(copy.deepcopy(path))
    return message
