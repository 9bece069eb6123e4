"""What every operation handler gets: the acting mailbox, the request, and a recorder for
the meeting-message options each request carried."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from emulators.ews.mailbox import Mailbox
from emulators.ews.wire import Shape, failure
from ews_parser import EwsResponseError
from ews_parser.services.get_item import read_shape
from ews_parser.values import Envelope
from ews_parser.xml import m, parse_xml

#: (operation, attribute name, value or None when absent)
Recorder = Callable[[str, str, str | None], None]


@dataclass(slots=True)
class Context:
    mailbox: Mailbox
    envelope: Envelope
    body: bytes
    record: Recorder

    def item_shape(self, operation: str) -> Shape:
        """The request's ItemShape with its AdditionalProperties.

        ews_parser keeps AdditionalProperties for GetItem only; FindItem and
        SyncFolderItems requests lose them, so read the shape here with ews_parser's own
        hardened parser and shape reader (reported as an ews_parser gap).
        """
        root = parse_xml(self.body)
        op = root.find(f".//{m(operation)}")
        shape_elem = op.find(m("ItemShape")) if op is not None else None
        base, extra = read_shape(shape_elem)
        return Shape.of(base, extra)


def error_message(operation: str, exc: EwsResponseError) -> etree._Element:
    return failure(operation, exc.code, exc.message)
