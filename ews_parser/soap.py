"""The SOAP envelope: finding the operation, reading the header and faults.

Written once for every operation, as exchangelib's services/common.py does.
Reference: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-xml-elements-in-exchange
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lxml import etree

from ews_parser.errors import EwsParseError
from ews_parser.values import Fault, Header, Impersonation, Kind, ServerVersionInfo
from ews_parser.xml import (
    ERRORS,
    MESSAGES,
    SOAP,
    SOAP12,
    TYPES,
    local,
    namespace,
    parse_xml,
    t,
    text,
)

_ENVELOPE: Final = f"{{{SOAP}}}Envelope"
_HEADER: Final = f"{{{SOAP}}}Header"
_BODY: Final = f"{{{SOAP}}}Body"
_FAULT: Final = f"{{{SOAP}}}Fault"


@dataclass(frozen=True, slots=True)
class Opened:
    """An envelope split into its parts; `payload` is the first element in the Body."""

    kind: Kind
    operation: str | None
    header: etree._Element | None
    payload: etree._Element


def open_envelope(body: bytes, *, max_bytes: int) -> Opened:
    root = parse_xml(body, max_bytes=max_bytes)
    if root.tag != _ENVELOPE:
        ns = namespace(root.tag)
        if local(root.tag) == "Envelope" and ns == SOAP12:
            raise EwsParseError("SOAP 1.2 envelope: EWS speaks SOAP 1.1")
        if local(root.tag) == "Envelope":
            raise EwsParseError(f"Envelope in namespace {ns!r}, not SOAP 1.1's {SOAP!r}")
        raise EwsParseError(f"not a SOAP envelope: the root element is {root.tag!r}")
    header: etree._Element | None = None
    body_elem: etree._Element | None = None
    for child in root:
        if child.tag == _HEADER:
            header = child
        elif child.tag == _BODY:
            body_elem = child
    if body_elem is None:
        raise EwsParseError("SOAP envelope without a Body")
    payload = _first_element(body_elem)
    if payload is None:
        raise EwsParseError("SOAP Body is empty")
    if payload.tag == _FAULT:
        return Opened("fault", None, header, payload)
    name = local(payload.tag)
    if namespace(payload.tag) != MESSAGES:
        raise EwsParseError(
            f"Body holds {{{namespace(payload.tag)}}}{name}, not an EWS message ({MESSAGES})"
        )
    if name.endswith("Response"):
        return Opened("response", name[: -len("Response")], header, payload)
    return Opened("request", name, header, payload)


def _first_element(parent: etree._Element) -> etree._Element | None:
    for child in parent:
        if isinstance(child.tag, str):
            return child
    return None


def read_header(header: etree._Element | None) -> Header:
    if header is None:
        return Header()
    version = tz = culture = None
    impersonation: Impersonation | None = None
    server: ServerVersionInfo | None = None
    for child in header:
        if not isinstance(child.tag, str):
            continue
        name = local(child.tag)
        if name == "RequestServerVersion":
            version = child.get("Version")
        elif name == "TimeZoneContext":
            definition = child.find(t("TimeZoneDefinition"))
            if definition is not None:
                tz = definition.get("Id") or definition.get("Name")
        elif name == "ExchangeImpersonation":
            impersonation = read_impersonation(child)
        elif name == "MailboxCulture":
            culture = text(child)
        elif name == "ServerVersionInfo":
            server = ServerVersionInfo(
                major_version=_int(child.get("MajorVersion")),
                minor_version=_int(child.get("MinorVersion")),
                major_build_number=_int(child.get("MajorBuildNumber")),
                minor_build_number=_int(child.get("MinorBuildNumber")),
                version=child.get("Version"),
            )
    return Header(
        request_server_version=version,
        time_zone_context=tz,
        impersonation=impersonation,
        mailbox_culture=culture,
        server_version_info=server,
    )


def read_impersonation(elem: etree._Element) -> Impersonation | None:
    sid = elem.find(t("ConnectingSID"))
    if sid is None:
        return None
    return Impersonation(
        primary_smtp_address=text(sid.find(t("PrimarySmtpAddress"))),
        smtp_address=text(sid.find(t("SmtpAddress"))),
        principal_name=text(sid.find(t("PrincipalName"))),
        sid=text(sid.find(t("SID"))),
    )


_IMPERSONATION: Final = t("ExchangeImpersonation")
_TZ_CONTEXT: Final = t("TimeZoneContext")
_TZ_DEFINITION: Final = t("TimeZoneDefinition")


def header_fast(header: etree._Element | None) -> tuple[Impersonation | None, str | None]:
    """Only what the proxy's hooks need from the header: impersonation and zone."""
    impersonation = None
    tz = None
    if header is not None:
        for child in header:
            tag = child.tag
            if tag == _IMPERSONATION:
                impersonation = read_impersonation(child)
            elif tag == _TZ_CONTEXT:
                definition = child.find(_TZ_DEFINITION)
                if definition is not None:
                    tz = definition.get("Id")
    return impersonation, tz


def read_fault(fault: etree._Element) -> Fault:
    """A SOAP 1.1 fault. faultcode/faultstring/detail are unqualified; Exchange puts the
    EWS code and MessageXml in `detail`, with padding around the values."""
    faultcode = text(fault.find("faultcode"))
    if faultcode and ":" in faultcode:
        faultcode = faultcode.rpartition(":")[2]
    detail = fault.find("detail")
    response_code = message = None
    message_xml: tuple[tuple[str, str], ...] = ()
    if detail is not None:
        response_code = text(detail.find(f"{{{ERRORS}}}ResponseCode"))
        message = text(detail.find(f"{{{ERRORS}}}Message"))
        mx = detail.find(f"{{{TYPES}}}MessageXml")
        if mx is None:
            mx = detail.find(f"{{{MESSAGES}}}MessageXml")
        if mx is not None:
            message_xml = read_message_xml(mx)
    return Fault(
        faultcode=faultcode,
        faultstring=text(fault.find("faultstring")),
        response_code=response_code or faultcode,
        message=message,
        message_xml=message_xml,
    )


def read_message_xml(elem: etree._Element) -> tuple[tuple[str, str], ...]:
    """`MessageXml` children as (name, text): `t:Value Name="X"` gives X; any other
    element (LineNumber, Violation, InnerErrorResponseCode...) gives its local name."""
    pairs: list[tuple[str, str]] = []
    for child in elem.iter():
        if child is elem or not isinstance(child.tag, str):
            continue
        value = text(child)
        if value is None:
            continue
        name = child.get("Name") if local(child.tag) == "Value" else None
        pairs.append((name or local(child.tag), value))
    return tuple(pairs)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
