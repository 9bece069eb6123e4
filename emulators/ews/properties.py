"""MAPI properties as EWS names them: ExtendedFieldURI keys, their typed values, the
computed properties clients read, and the properties a restriction may name.

Pure: no mailbox, no clock. The mailbox hands a `Record` the values of one item or
folder; restrictions (`restrictions.py`) and responses read them through it.

What it follows:
- ExtendedFieldURI: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/extendedfielduri
  (PropertyTag alone, or a property set with PropertyName / PropertyId; PropertyType always)
- the value forms of each PropertyType: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/properties-and-extended-properties-in-ews-in-exchange
- how Exchange writes a path back: PropertyTag as lower-case hex without leading zeros
  ("0xe23"), PropertyId in decimal, a property set GUID in lower case; DavMail and
  exchangelib both match returned properties on exactly that form.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeAlias

from lxml import etree

from ews_parser import EwsParseError, EwsResponseError
from ews_parser.fields import read_path
from ews_parser.values import ExtendedFieldURI, FieldPath, FieldUpdate, FieldURI
from ews_parser.xml import t

#: DistinguishedPropertySetType (types.xsd) and the GUID each stands for
#: (https://learn.microsoft.com/en-us/office/client-developer/outlook/mapi/commonly-used-property-sets).
PROPERTY_SETS: Final = {
    "Meeting": "6ed8da90-450b-101b-98da-00aa003f1305",
    "Appointment": "00062002-0000-0000-c000-000000000046",
    "Common": "00062008-0000-0000-c000-000000000046",
    "PublicStrings": "00020329-0000-0000-c000-000000000046",
    "Address": "00062004-0000-0000-c000-000000000046",
    "InternetHeaders": "00020386-0000-0000-c000-000000000046",
    "CalendarAssistant": "11000e07-b51b-40d6-af21-caa85edab1d0",
    "UnifiedMessaging": "4442858e-a9e3-4e80-b900-317a210cc15b",
    "Task": "00062003-0000-0000-c000-000000000046",
    "Sharing": "00062040-0000-0000-c000-000000000046",
}
_INTERNET_HEADERS: Final = PROPERTY_SETS["InternetHeaders"]

#: MapiPropertyTypeType values that carry a value (Error, Null, Object cannot be set or read).
SCALAR_TYPES: Final = frozenset({
    "ApplicationTime", "Binary", "Boolean", "CLSID", "Currency", "Double", "Float", "Integer",
    "Long", "Short", "SystemTime", "String",
})
_INTEGERS: Final = frozenset({"Integer", "Long", "Short", "Currency"})
_DECIMALS: Final = frozenset({"Double", "Float", "ApplicationTime"})

Value: TypeAlias = str | tuple[str, ...]
"""A property value as EWS writes it: the text of `t:Value`, or of each `t:Values/t:Value`."""


def error(code: str, message: str) -> EwsResponseError:
    return EwsResponseError(code, message)


def _invalid_extended() -> EwsResponseError:
    return error("ErrorInvalidExtendedProperty",
                 "The extended property attribute combination is invalid.")


def _invalid_value() -> EwsResponseError:
    return error("ErrorInvalidExtendedPropertyValue",
                 "The extended property value is inconsistent with its type.")


# --- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PropKey:
    """One MAPI property: a tag (`property_set` None) or a named property (a set GUID and
    a numeric id or a name), with its type. The same property asked for by
    DistinguishedPropertySetId or by its PropertySetId GUID has one key."""

    property_set: str | None
    ident: int | str
    type: str

    @property
    def is_array(self) -> bool:
        return self.type.endswith("Array")

    @property
    def base_type(self) -> str:
        return self.type[: -len("Array")] if self.is_array else self.type


def tag(number: int, property_type: str) -> PropKey:
    return PropKey(None, number, property_type)


def named(property_set: str, ident: int | str, property_type: str) -> PropKey:
    guid = PROPERTY_SETS.get(property_set, property_set).lower()
    if guid == _INTERNET_HEADERS and isinstance(ident, str):
        ident = ident.lower()  # header names are case-insensitive (MS-OXPROPS 1.3.2)
    return PropKey(guid, ident, property_type)


def key_of(path: ExtendedFieldURI) -> PropKey:
    """The key an ExtendedFieldURI names; ErrorInvalidExtendedProperty for the attribute
    combinations the schema's documentation rules out."""
    property_type = path.property_type
    base = property_type[: -len("Array")] if property_type.endswith("Array") else property_type
    if base not in SCALAR_TYPES:
        raise _invalid_extended()
    if path.property_tag is not None:
        if path.distinguished_property_set_id or path.property_set_id or path.property_name \
                or path.property_id is not None:
            raise _invalid_extended()
        try:
            number = int(path.property_tag.strip(), 0)
        except ValueError:
            raise _invalid_extended() from None
        if not 0 <= number <= 0xFFFF:
            raise _invalid_extended()
        return tag(number, property_type)
    property_set = path.distinguished_property_set_id or path.property_set_id
    if property_set is None or (path.distinguished_property_set_id and path.property_set_id):
        raise _invalid_extended()
    if (path.property_name is None) == (path.property_id is None):
        raise _invalid_extended()
    ident: int | str = path.property_name if path.property_name is not None \
        else int(path.property_id or 0)
    return named(property_set, ident, property_type)


def path_element(path: ExtendedFieldURI) -> etree._Element:
    """`t:ExtendedFieldURI` as Exchange writes it back for the path a client asked for."""
    elem = etree.Element(t("ExtendedFieldURI"))
    if path.distinguished_property_set_id:
        elem.set("DistinguishedPropertySetId", path.distinguished_property_set_id)
    if path.property_set_id:
        elem.set("PropertySetId", path.property_set_id.lower())
    if path.property_tag is not None:
        elem.set("PropertyTag", hex(int(path.property_tag.strip(), 0)))
    if path.property_name is not None:
        elem.set("PropertyName", path.property_name)
    if path.property_id is not None:
        elem.set("PropertyId", str(path.property_id))
    elem.set("PropertyType", path.property_type)
    return elem


# --- values ----------------------------------------------------------------------------------


def parse_datetime(text: str, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
    """An xs:dateTime; one without an offset is in `zone` (the request's time zone)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(dt.UTC)


def format_datetime(value: dt.datetime) -> str:
    """Exchange's form: UTC, whole seconds, "Z"."""
    plain = dt.datetime.combine(value.date(), value.timetz())
    if plain.tzinfo is None:
        plain = plain.replace(tzinfo=dt.UTC)
    return plain.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode(base_type: str, text: str, zone: dt.tzinfo = dt.UTC) -> Any:
    """The Python value of one value's text: int, Decimal, bool, aware datetime, bytes or
    str. ValueError when the text is not of the type."""
    if base_type in _INTEGERS:
        return int(text.strip())
    if base_type in _DECIMALS:
        try:
            return Decimal(text.strip())
        except InvalidOperation:
            raise ValueError(text) from None
    if base_type == "Boolean":
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return lowered in ("true", "1")
    if base_type == "SystemTime":
        return parse_datetime(text, zone)
    if base_type == "Binary":
        try:
            return base64.b64decode(text.strip(), validate=True)
        except binascii.Error:
            raise ValueError(text) from None
    return text


def encode(base_type: str, value: Any) -> str:
    if base_type == "Boolean":
        return "true" if value else "false"
    if base_type == "SystemTime":
        return format_datetime(value)
    if base_type == "Binary":
        return base64.b64encode(value).decode("ascii")
    return str(value)


def canonical(key: PropKey, value: Value | None, zone: dt.tzinfo = dt.UTC) -> Value:
    """A value a client sent, checked against the key's type and written the way Exchange
    returns it; ErrorInvalidExtendedPropertyValue when it does not fit."""
    if value is None:
        raise _invalid_value()
    if key.is_array != isinstance(value, tuple):
        raise _invalid_value()
    texts = value if isinstance(value, tuple) else (value,)
    try:
        out = tuple(encode(key.base_type, decode(key.base_type, v, zone)) for v in texts)
    except ValueError:
        raise _invalid_value() from None
    return out if key.is_array else out[0]


def property_element(path: ExtendedFieldURI, value: Value) -> etree._Element:
    """`t:ExtendedProperty` for a response."""
    elem = etree.Element(t("ExtendedProperty"))
    elem.append(path_element(path))
    if isinstance(value, tuple):
        values = etree.SubElement(elem, t("Values"))
        for v in value:
            etree.SubElement(values, t("Value")).text = v
    else:
        etree.SubElement(elem, t("Value")).text = value
    return elem


# Where `t:ExtendedProperty` goes in an item's and a folder's sequence (types.xsd ItemType,
# BaseFolderType): after these elements, before everything else.
_BEFORE_IN_ITEM: Final = frozenset({
    "MimeContent", "ItemId", "ParentFolderId", "ItemClass", "Subject", "Sensitivity", "Body",
    "Attachments", "DateTimeReceived", "Size", "Categories", "Importance", "InReplyTo",
    "IsSubmitted", "IsDraft", "IsFromMe", "IsResend", "IsUnmodified", "InternetMessageHeaders",
    "DateTimeSent", "DateTimeCreated", "ResponseObjects", "ReminderDueBy", "ReminderIsSet",
    "ReminderNextTime", "ReminderMinutesBeforeStart", "DisplayCc", "DisplayTo", "DisplayBcc",
    "HasAttachments", "ExtendedProperty",
})
_BEFORE_IN_FOLDER: Final = frozenset({
    "FolderId", "ParentFolderId", "FolderClass", "DisplayName", "TotalCount", "ChildFolderCount",
    "ExtendedProperty",
})


def insert_properties(elem: etree._Element, properties: Sequence[etree._Element], *,
                      folder: bool = False) -> None:
    """Put `t:ExtendedProperty` elements where the schema wants them in `elem`."""
    if not properties:
        return
    before = _BEFORE_IN_FOLDER if folder else _BEFORE_IN_ITEM
    index = len(elem)
    for i, child in enumerate(elem):
        if etree.QName(child).localname not in before:
            index = i
            break
    for offset, prop in enumerate(properties):
        elem.insert(index + offset, prop)


# --- well-known properties ---------------------------------------------------------------

PR_MESSAGE_CLASS: Final = tag(0x001A, "String")
PR_SUBJECT: Final = tag(0x0037, "String")
PR_MESSAGE_SIZE: Final = tag(0x0E08, "Integer")
PR_INTERNET_ARTICLE_NUMBER: Final = tag(0x0E23, "Integer")
PR_BODY: Final = tag(0x1000, "String")
PR_URL_COMP_NAME: Final = tag(0x10F3, "String")
PR_DISPLAY_NAME: Final = tag(0x3001, "String")
PR_CREATION_TIME: Final = tag(0x3007, "SystemTime")
PR_LAST_MODIFICATION_TIME: Final = tag(0x3008, "SystemTime")
PR_CONTENT_COUNT: Final = tag(0x3602, "Integer")
PR_CONTENT_UNREAD: Final = tag(0x3603, "Integer")
PR_SUBFOLDERS: Final = tag(0x360A, "Boolean")
PR_CONTAINER_CLASS: Final = tag(0x3613, "String")
PR_LOCAL_COMMIT_TIME_MAX: Final = tag(0x670A, "SystemTime")
PR_ARTICLE_NUM_NEXT: Final = tag(0x6751, "Integer")
PR_IMAP_LAST_ARTICLE_ID: Final = tag(0x6752, "Integer")
#: PidLidRecurring, PidLidAppointmentStartWhole, PidLidAppointmentEndWhole (MS-OXPROPS)
PID_LID_RECURRING: Final = named("Appointment", 0x8223, "Boolean")
PID_LID_APPOINTMENT_START_WHOLE: Final = named("Appointment", 0x820D, "SystemTime")
PID_LID_APPOINTMENT_END_WHOLE: Final = named("Appointment", 0x820E, "SystemTime")

#: Properties an UpdateItem may set through their tag, applied to the item's own field as
#: Exchange does (PR_SUBJECT is item:Subject, PR_BODY the text of item:Body).
ITEM_FIELD_TAGS: Final = {PR_SUBJECT: "subject", PR_BODY: "body"}


# --- the properties a restriction may name --------------------------------------------------

#: FieldURIs a restriction or a sort order may name on calendar items, with the MAPI type
#: their values compare as. "Some properties cannot be used to form the restriction
#: definitions" (https://learn.microsoft.com/en-us/previous-versions/office/developer/exchange-server-2007/bb409309(v=exchg.80)):
#: the calculated ones (calendar:IsRecurring, the occurrence lists, attendees, recurrence,
#: time zones) answer ErrorUnsupportedPathForQuery here; DavMail searches PidLidRecurring
#: instead of calendar:IsRecurring for that reason.
ITEM_QUERYABLE: Final = {
    "item:Subject": "String", "item:ItemClass": "String", "item:Body": "String",
    "item:Categories": "StringArray", "item:Importance": "String", "item:Sensitivity": "String",
    "item:DateTimeCreated": "SystemTime", "item:DateTimeReceived": "SystemTime",
    "item:DateTimeSent": "SystemTime", "item:LastModifiedTime": "SystemTime",
    "item:LastModifiedName": "String", "item:Size": "Integer", "item:HasAttachments": "Boolean",
    "item:IsDraft": "Boolean", "item:IsSubmitted": "Boolean", "item:IsFromMe": "Boolean",
    "item:IsResend": "Boolean", "item:IsUnmodified": "Boolean", "item:IsAssociated": "Boolean",
    "item:ReminderIsSet": "Boolean", "item:ReminderMinutesBeforeStart": "Integer",
    "item:ReminderDueBy": "SystemTime", "item:Culture": "String", "item:DisplayTo": "String",
    "item:DisplayCc": "String",
    "calendar:Start": "SystemTime", "calendar:End": "SystemTime",
    "calendar:OriginalStart": "SystemTime", "calendar:IsAllDayEvent": "Boolean",
    "calendar:Location": "String", "calendar:LegacyFreeBusyStatus": "String",
    "calendar:CalendarItemType": "String", "calendar:UID": "String",
    "calendar:IsMeeting": "Boolean", "calendar:IsCancelled": "Boolean",
    "calendar:MyResponseType": "String", "calendar:AppointmentState": "Integer",
    "calendar:AppointmentSequenceNumber": "Integer", "calendar:IsOnlineMeeting": "Boolean",
    "calendar:AppointmentReplyTime": "SystemTime", "calendar:IsResponseRequested": "Boolean",
    "calendar:AllowNewTimeProposal": "Boolean",
}
FOLDER_QUERYABLE: Final = {
    "folder:DisplayName": "String", "folder:FolderClass": "String", "folder:TotalCount": "Integer",
    "folder:ChildFolderCount": "Integer", "folder:UnreadCount": "Integer",
}


def kind_finder(queryable: Mapping[str, str]) -> Callable[[FieldPath], str | None]:
    """The type a path's values compare as, or None when it cannot be searched."""

    def kind(path: FieldPath) -> str | None:
        if isinstance(path, ExtendedFieldURI):
            return key_of(path).type
        if isinstance(path, FieldURI):
            return queryable.get(path.uri)
        return None  # IndexedFieldURI: contacts' dictionaries, not on calendar items

    return kind


def asks_for_properties(paths: Sequence[FieldPath]) -> bool:
    """Whether a shape's AdditionalProperties name any extended property."""
    return any(isinstance(p, ExtendedFieldURI) for p in paths)


# --- records -------------------------------------------------------------------------------


class Record:
    """One item's or folder's values, read by path: `values(path)` gives the typed values
    (a list, several for a multi-valued property) or None when the property is not set."""

    def __init__(self, fields: Mapping[str, Any], properties: Mapping[PropKey, Value]) -> None:
        self._fields = fields
        self._properties = properties

    def property_value(self, key: PropKey) -> Value | None:
        return self._properties.get(key)

    def values(self, path: FieldPath) -> list[Any] | None:
        if isinstance(path, ExtendedFieldURI):
            key = key_of(path)
            raw = self._properties.get(key)
            if raw is None:
                return None
            texts = raw if isinstance(raw, tuple) else (raw,)
            return [decode(key.base_type, v) for v in texts]
        if isinstance(path, FieldURI):
            value = self._fields.get(path.uri)
            if value is None or (isinstance(value, list | tuple) and not value):
                return None
            return list(value) if isinstance(value, list | tuple) else [value]
        return None

    def property_elements(self, paths: Sequence[FieldPath]) -> list[etree._Element]:
        """`t:ExtendedProperty` for each ExtendedFieldURI in `paths` that is set."""
        out = []
        for path in paths:
            if isinstance(path, ExtendedFieldURI):
                raw = self._properties.get(key_of(path))
                if raw is not None:
                    out.append(property_element(path, raw))
        return out


def read_extended_properties(elem: etree._Element) -> list[FieldUpdate]:
    """The `t:ExtendedProperty` children of an item or folder to create, as the
    SetItemFields that would set them."""
    updates = []
    for prop in elem.iterchildren(t("ExtendedProperty")):
        uri = prop.find(t("ExtendedFieldURI"))
        if uri is None:
            continue
        try:
            path = read_path(uri)
        except EwsParseError as exc:
            raise error("ErrorInvalidRequest", str(exc)) from None
        values = prop.find(t("Values"))
        value: Value | None = (
            tuple(v.text or "" for v in values.iterchildren(t("Value")))
            if values is not None else prop.findtext(t("Value")))
        updates.append(FieldUpdate(action="set", path=path, value=value))
    return updates
