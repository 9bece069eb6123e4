"""Field paths (FieldURI, IndexedFieldURI, ExtendedFieldURI) and reading the value a
SetItemField / AppendToItemField carries, through exchangelib's fields.

A FieldURI maps to an exchangelib field through the field's own `field_uri`, looked up on
the exchangelib class of the partial item's element (CalendarItem, Message, ...), so the
value is read by exactly the code that reads it in full items.
Reference: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/setitemfield
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final

from exchangelib.items import ITEM_CLASSES, CalendarItem
from lxml import etree

from ews_parser.errors import EwsParseError
from ews_parser.values import ExtendedFieldURI, FieldPath, FieldURI, IndexedFieldURI
from ews_parser.xml import local, t, text

_FIELD_URI: Final = t("FieldURI")
_INDEXED: Final = t("IndexedFieldURI")
_EXTENDED: Final = t("ExtendedFieldURI")
_PATH_TAGS: Final = (_FIELD_URI, _INDEXED, _EXTENDED)

_CLASSES_BY_ELEMENT: Final = {cls.ELEMENT_NAME: cls for cls in ITEM_CLASSES}


@lru_cache(maxsize=32)
def fields_by_uri(element_name: str) -> dict[str, Any]:
    """exchangelib fields of the item class named `element_name`, by their field_uri.

    Unknown element names fall back to CalendarItem, whose `item:` fields every item has.
    """
    cls = _CLASSES_BY_ELEMENT.get(element_name, CalendarItem)
    return {f.field_uri: f for f in cls.FIELDS if getattr(f, "field_uri", None)}


def field_for(path: FieldPath, element_name: str) -> Any | None:
    if isinstance(path, FieldURI):
        return fields_by_uri(element_name).get(path.uri)
    return None


#: MAPI properties Exchange stores as an item's own fields: set through an
#: ExtendedFieldURI PropertyTag, they change the field (DavMail sets subject and body so).
#: MS-OXPROPS: PidTagSubject 0x0037, PidTagBody 0x1000, both PtypString.
WELL_KNOWN_TAGS: Final = {0x0037: "subject", 0x1000: "body"}


def well_known_field(path: FieldPath) -> str | None:
    """The CalendarItem field a PropertyTag path stands for, if it is one of those."""
    if not isinstance(path, ExtendedFieldURI) or path.property_tag is None:
        return None
    if path.property_type != "String":
        return None
    try:
        tag = int(path.property_tag, 0)
    except ValueError:
        return None
    return WELL_KNOWN_TAGS.get(tag)


def read_path(elem: etree._Element) -> FieldPath:
    tag = elem.tag
    if tag == _FIELD_URI:
        uri = elem.get("FieldURI")
        if not uri:
            raise EwsParseError("FieldURI without its FieldURI attribute", where="FieldURI")
        return FieldURI(uri.strip())
    if tag == _INDEXED:
        uri = elem.get("FieldURI")
        index = elem.get("FieldIndex")
        if not uri or index is None:
            raise EwsParseError(
                "IndexedFieldURI needs FieldURI and FieldIndex", where="IndexedFieldURI"
            )
        return IndexedFieldURI(uri.strip(), index.strip())
    if tag == _EXTENDED:
        property_type = elem.get("PropertyType")
        if not property_type:
            raise EwsParseError("ExtendedFieldURI without PropertyType", where="ExtendedFieldURI")
        property_id = elem.get("PropertyId")
        pid: int | None = None
        if property_id is not None:
            try:
                pid = int(property_id, 0)
            except ValueError:
                raise EwsParseError(
                    f"PropertyId is not a number: {property_id[:20]!r}", where="ExtendedFieldURI"
                ) from None
        return ExtendedFieldURI(
            property_type=property_type,
            distinguished_property_set_id=elem.get("DistinguishedPropertySetId"),
            property_set_id=elem.get("PropertySetId"),
            property_tag=elem.get("PropertyTag"),
            property_name=elem.get("PropertyName"),
            property_id=pid,
        )
    raise EwsParseError(f"unexpected element {local(tag)} where a field path belongs")


def find_path(update: etree._Element) -> FieldPath:
    for child in update:
        if child.tag in _PATH_TAGS:
            return read_path(child)
    raise EwsParseError(f"{local(update.tag)} without a field path", where=local(update.tag))


def read_extended_value(item: etree._Element) -> str | tuple[str, ...] | None:
    """The raw value of `t:ExtendedProperty` inside a partial item (Value or Values)."""
    prop = item.find(t("ExtendedProperty"))
    if prop is None:
        return None
    values = prop.find(t("Values"))
    if values is not None:
        return tuple(text(v) or "" for v in values.iter(t("Value")))
    return text(prop.find(t("Value")))


def read_field_value(field: Any, item: etree._Element) -> Any:
    try:
        return field.from_xml(elem=item, account=None)
    except EwsParseError:
        raise
    except Exception as exc:
        raise EwsParseError(
            f"exchangelib could not read {field.field_uri}: {type(exc).__name__}: {exc}"
        ) from None
