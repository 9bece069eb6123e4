"""The one hardened XML parser and the namespace table (STYLE.md, convention 4).

Every byte string calsync reads as XML goes through `parse_xml`. It refuses what EWS never
sends and attackers do: document type declarations (the carrier of entity bombs and
external entities), bodies over a size limit, and text nodes too large for libxml2's
default limits (huge_tree off). Entities are never resolved and the network is never
touched, so a hostile document costs one bounded parse and an `EwsParseError`.
"""

from __future__ import annotations

import threading
from typing import Final

from lxml import etree

from ews_parser.errors import EwsParseError

SOAP: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12: Final = "http://www.w3.org/2003/05/soap-envelope"
MESSAGES: Final = "http://schemas.microsoft.com/exchange/services/2006/messages"
TYPES: Final = "http://schemas.microsoft.com/exchange/services/2006/types"
ERRORS: Final = "http://schemas.microsoft.com/exchange/services/2006/errors"
XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"

#: Prefixes used in this package's own Clark-notation lookups, and in messages to people.
NAMESPACES: Final = {"s": SOAP, "m": MESSAGES, "t": TYPES, "e": ERRORS}

#: The largest body parsed by default. EWS calendar traffic is small (a FindItem page of a
#: thousand items is ~2 MB); larger bodies are attachments or MIME content, which calsync
#: never needs. Callers can raise it.
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024


def s(local: str) -> str:
    """Clark name in the SOAP envelope namespace."""
    return f"{{{SOAP}}}{local}"


def m(local: str) -> str:
    """Clark name in the EWS messages namespace."""
    return f"{{{MESSAGES}}}{local}"


def t(local: str) -> str:
    """Clark name in the EWS types namespace."""
    return f"{{{TYPES}}}{local}"


class _ExternalResourceRefused(Exception):
    pass


class _RefuseExternal(etree.Resolver):
    """libxml2 opens a local DTD named by SYSTEM even with load_dtd off (a FIFO or
    /dev/zero would hang us); this resolver makes every external load fail instead."""

    def resolve(  # type: ignore[override]  # lxml-stubs omit `context`
        self, system_url: str, public_id: str, context: object
    ) -> None:
        raise _ExternalResourceRefused(system_url)


def _new_parser() -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    parser.resolvers.add(_RefuseExternal())
    return parser


# lxml advises one parser per thread; sync/'s worker threads each get their own.
_local = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _new_parser()
    return parser


def parse_xml(body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse `body` into an element tree, or raise `EwsParseError` saying why not."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise EwsParseError(f"expected bytes, got {type(body).__name__}")
    size = len(body)
    if size == 0:
        raise EwsParseError("empty body")
    if size > max_bytes:
        raise EwsParseError(
            f"body is {size / 1048576:.1f} MiB, over the {max_bytes / 1048576:.1f} MiB limit"
        )
    try:
        root = etree.fromstring(bytes(body), parser=_parser())
    except _ExternalResourceRefused:
        raise EwsParseError(
            "document type declarations are not allowed in EWS messages"
            " (this one names an external resource)"
        ) from None
    except etree.XMLSyntaxError as exc:
        raise EwsParseError(f"malformed XML: {_describe_syntax_error(exc)}") from None
    except (ValueError, MemoryError) as exc:  # e.g. an encoding declaration lxml refuses
        raise EwsParseError(f"unreadable XML: {exc}") from None
    if root is None:  # recover-mode parsers can return None; ours does not, but be sure
        raise EwsParseError("no root element")
    docinfo = root.getroottree().docinfo
    doctype: str = docinfo.doctype  # type: ignore[union-attr]  # lxml-stubs lack it
    if doctype or docinfo.internalDTD is not None:
        # EWS never sends a DTD; a DTD is how entity bombs and external entities arrive.
        raise EwsParseError("document type declarations are not allowed in EWS messages")
    return root


def _describe_syntax_error(exc: etree.XMLSyntaxError) -> str:
    # libxml2's message already names the line and column.
    return str(exc.msg or exc).strip()


def local(tag: object) -> str:
    """The local part of a Clark-notation tag ('' for comments and other non-elements)."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def namespace(tag: object) -> str:
    if not isinstance(tag, str) or not tag.startswith("{"):
        return ""
    return tag[1:].partition("}")[0]


def text(elem: etree._Element | None) -> str | None:
    """Stripped text of `elem`, or None when absent or empty (servers pad values with
    newlines: see the exchangelib ErrorServerBusy fault in the corpus)."""
    if elem is None or elem.text is None:
        return None
    value = elem.text.strip()
    return value or None
