"""What goes on the wire: SOAP envelopes, response messages, faults, items and folders.

Items and folders are serialised through exchangelib's own field objects (each field's
`to_xml`), so the XML has exactly the shape exchangelib, and Exchange, use. The envelope
follows what real servers send: prefix `s:`, a `h:ServerVersionInfo` header, one line.
References:
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responsemessages
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/serverversioninfo
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-soap-faults
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from exchangelib.fields import BooleanField
from exchangelib.folders import Folder as ModelFolder
from exchangelib.items import CalendarItem
from exchangelib.properties import EWSElement, ParentFolderId
from exchangelib.properties import FolderId as ModelFolderId
from exchangelib.properties import ItemId as ModelItemId
from exchangelib.recurrence import DeletedOccurrence, Occurrence
from exchangelib.util import create_element, set_xml_value, value_to_xml_text
from exchangelib.version import EXCHANGE_2016, Version
from lxml import etree

from emulators.ews.mailbox import Folder
from ews_parser.values import FieldPath, FieldURI
from ews_parser.xml import ERRORS, MESSAGES, SOAP, TYPES

NSMAP: Final = {"s": SOAP, "m": MESSAGES, "t": TYPES}
#: Exchange 2016 CU (15.1) as real servers report it; Version is what 2016 CU servers
#: send for every RequestServerVersion from Exchange2013 on.
SERVER_VERSION: Final = {
    "MajorVersion": "15",
    "MinorVersion": "1",
    "MajorBuildNumber": "2507",
    "MinorBuildNumber": "6",
    "Version": "V2017_07_11",
}
VERSION: Final = Version(build=EXCHANGE_2016)


def s(name: str) -> str:
    return f"{{{SOAP}}}{name}"


def m(name: str) -> str:
    return f"{{{MESSAGES}}}{name}"


def t(name: str) -> str:
    return f"{{{TYPES}}}{name}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    child = etree.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def envelope(payload: etree._Element, *, declaration: bool = True) -> bytes:
    root = etree.Element(s("Envelope"), nsmap={"s": SOAP})
    header = _sub(root, s("Header"))
    info = etree.SubElement(header, t("ServerVersionInfo"), nsmap={"h": TYPES})
    for name, value in SERVER_VERSION.items():
        info.set(name, value)
    body = _sub(root, s("Body"))
    body.append(payload)
    data: bytes = etree.tostring(root, xml_declaration=declaration, encoding="utf-8")
    return data


def response(operation: str, messages: Iterable[etree._Element]) -> etree._Element:
    payload = etree.Element(m(f"{operation}Response"), nsmap={"m": MESSAGES, "t": TYPES})
    container = _sub(payload, m("ResponseMessages"))
    for message in messages:
        container.append(message)
    return payload


def success(operation: str) -> etree._Element:
    message = etree.Element(m(f"{operation}ResponseMessage"), ResponseClass="Success")
    _sub(message, m("ResponseCode"), "NoError")
    return message


#: Operations whose response message is an ItemInfoResponseMessageType (messages.xsd):
#: `m:Items` is required, so an error message carries an empty one, as Exchange's do.
_ITEMS_REQUIRED: Final = frozenset({"CreateItem", "GetItem", "UpdateItem", "MoveItem",
                                    "CopyItem", "ArchiveItem", "PostModernGroupItem"})


def failure(
    operation: str, code: str, text: str, message_xml: Sequence[tuple[str, str]] = ()
) -> etree._Element:
    message = etree.Element(m(f"{operation}ResponseMessage"), ResponseClass="Error")
    _sub(message, m("MessageText"), text)
    _sub(message, m("ResponseCode"), code)
    _sub(message, m("DescriptiveLinkKey"), "0")
    if message_xml:
        xml = _sub(message, m("MessageXml"))
        for name, value in message_xml:
            _sub(xml, t("Value"), value, Name=name)
    if operation in _ITEMS_REQUIRED:
        _sub(message, m("Items"))
    return message


def fault(
    code: str, text: str, *, back_off_ms: int | None = None, faultstring: str | None = None,
    message_xml: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A SOAP fault as Exchange sends it: faultcode in the types namespace, the EWS code in
    detail/e:ResponseCode, BackOffMilliseconds (a t:Value) or other `message_xml` elements
    (t:LineNumber, ... for ErrorSchemaValidation) in detail/t:MessageXml."""
    elem = etree.Element(s("Fault"))
    code_elem = etree.SubElement(elem, "faultcode", nsmap={"a": TYPES})
    code_elem.text = f"a:{code}"
    string = _sub(elem, "faultstring", faultstring or text)
    string.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    detail = _sub(elem, "detail")
    _sub(detail, f"{{{ERRORS}}}ResponseCode", code)
    _sub(detail, f"{{{ERRORS}}}Message", text)
    if back_off_ms is not None or message_xml:
        xml = etree.SubElement(detail, t("MessageXml"), nsmap={"t": TYPES})
        if back_off_ms is not None:
            _sub(xml, t("Value"), str(back_off_ms), Name="BackOffMilliseconds")
        for name, value in message_xml:
            _sub(xml, t(name), value)
    root = etree.Element(s("Envelope"), nsmap={"s": SOAP, "e": ERRORS})
    body = _sub(root, s("Body"))
    body.append(elem)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return data


# --- items -----------------------------------------------------------------------------

_CALENDAR_FIELDS: Final = tuple(CalendarItem.supported_fields(version=VERSION))
_BY_URI: Final = {f.field_uri: f for f in _CALENDAR_FIELDS if getattr(f, "field_uri", None)}
#: What BaseShape "Default" returns for a calendar item (FindItem's and GetItem's default
#: response shape: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/baseshape).
_DEFAULT: Final = frozenset(
    {
        "item:Subject", "item:HasAttachments", "item:IsAssociated", "item:Attachments",
        "calendar:Start", "calendar:End", "calendar:LegacyFreeBusyStatus",
        "calendar:Location", "calendar:CalendarItemType", "calendar:Organizer",
        "item:ParentFolderId", "calendar:IsAllDayEvent", "calendar:IsRecurring",
    }
)
#: Never written from the model: MimeContent is written by GetItem (services/get_item.py,
#: from the whole series), there are no attachments, and the rest are computed client
#: views this stand-in does not keep.
_NEVER: Final = frozenset({"item:MimeContent", "item:EffectiveRights", "item:ResponseObjects"})


@dataclass(frozen=True, slots=True)
class Shape:
    """An ItemShape: BaseShape plus AdditionalProperties' FieldURIs."""

    base: str
    extra: frozenset[str] = frozenset()

    @classmethod
    def of(cls, base: str | None, extra: Iterable[FieldPath] = ()) -> Shape:
        return cls(base or "Default",
                   frozenset(p.uri for p in extra if isinstance(p, FieldURI)))

    def wants(self, uri: str) -> bool:
        if uri == "item:ItemId":
            return True
        if uri in _NEVER:
            return False
        if self.base == "AllProperties":
            return True
        if self.base == "Default" and uri in _DEFAULT:
            return True
        return uri in self.extra


ID_ONLY: Final = Shape("IdOnly")


#: Values whose fields exchangelib marks read-only (so its own `to_xml`, written for
#: requests, leaves them out) but which a server's response must carry.
_SERVER_VALUES: Final = (ModelItemId, ParentFolderId, ModelFolderId, Occurrence,
                         DeletedOccurrence)


def full_xml(value: EWSElement) -> etree._Element:
    """`value.to_xml`, read-only fields included (a response, not a request)."""
    attrs = {}
    for f in value.attribute_fields():
        attr = getattr(value, f.name)
        if attr is not None:
            attrs[f.field_uri] = value_to_xml_text(attr)
    elem = create_element(value.request_tag(), attrs=attrs)
    for f in value.supported_fields(version=VERSION):
        child = getattr(value, f.name)
        if child is None or (f.is_list and not child):
            continue
        _write_field(elem, f, child)
    return elem


def _write_field(elem: etree._Element, f: Any, value: Any) -> None:
    if isinstance(f, BooleanField) and isinstance(value, bool):
        # exchangelib writes xs:boolean as 1/0 but reads only true/false; Exchange sends
        # true/false.
        child = create_element(f.request_tag())
        child.text = "true" if value else "false"
        elem.append(child)
        return
    sample = value[0] if isinstance(value, list) else value
    if not isinstance(sample, _SERVER_VALUES):
        set_xml_value(elem, f.to_xml(value, version=VERSION), version=VERSION)
        return
    values = value if isinstance(value, list) else [value]
    children = [full_xml(v) for v in values]
    if f.field_uri is None or (not f.is_list and f.response_tag() == children[0].tag):
        for child in children:
            elem.append(child)
        return
    wrapper = create_element(f.request_tag())
    for child in children:
        wrapper.append(child)
    elem.append(wrapper)


def item_element(model: Any, shape: Shape) -> etree._Element:
    """One `t:CalendarItem`, with the fields the shape asks for, written by exchangelib."""
    elem = etree.Element(t("CalendarItem"))
    for f in _CALENDAR_FIELDS:
        uri = "item:ItemId" if f.name == "_id" else f.field_uri
        if not uri or not shape.wants(uri):
            continue
        value = getattr(model, f.name)
        if value is None or (f.is_list and not value):
            continue
        _write_field(elem, f, value)
    return elem


def items_container(tag: str, models: Iterable[Any], shape: Shape) -> etree._Element:
    container = etree.Element(tag)
    for model in models:
        container.append(item_element(model, shape))
    return container


# --- folders ---------------------------------------------------------------------------

_FOLDER_FIELDS: Final = {
    name: ModelFolder.get_field_by_fieldname(name)
    for name in ("_id", "parent_folder_id", "folder_class", "name", "total_count",
                 "child_folder_count", "unread_count")
}


def folder_element(folder: Folder, parent: Folder | None, children: int) -> etree._Element:
    """One folder (`t:Folder` or `t:CalendarFolder`), written by exchangelib's fields."""
    elem = etree.Element(t(folder.spec.element))
    values: dict[str, Any] = {
        "_id": ModelFolderId(id=folder.id, changekey=folder.change_key),
        "parent_folder_id": ParentFolderId(id=parent.id, changekey=parent.change_key)
        if parent is not None else None,
        "folder_class": folder.spec.folder_class,
        "name": folder.spec.display_name or None,
        "total_count": len(folder.entries),
        "child_folder_count": children,
        "unread_count": 0 if folder.spec.element == "Folder" else None,
    }
    for name, f in _FOLDER_FIELDS.items():
        value = values[name]
        if value is not None:
            _write_field(elem, f, value)
    return elem
