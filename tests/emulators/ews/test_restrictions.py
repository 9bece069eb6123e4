"""emulators/ews/restrictions.py: each search expression as a table of (restriction,
expected matches), over three records with FieldURI values and extended properties."""

from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree

from emulators.ews import properties as props
from emulators.ews.properties import ITEM_QUERYABLE, Record, kind_finder
from emulators.ews.restrictions import (
    UnsupportedPath,
    matches,
    read_restriction,
    read_sort_order,
    sort,
)
from ews_parser import EwsResponseError

T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
KIND = kind_finder(ITEM_QUERYABLE)


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


URL = props.PR_URL_COMP_NAME
ARTICLE = props.PR_INTERNET_ARTICLE_NUMBER
RECURRING = props.PID_LID_RECURRING
CUSTOM = props.named("PublicStrings", "urn:schemas:calendar:uid", "String")
KEYWORDS = props.named("PublicStrings", "Keywords", "StringArray")

RECORDS = {
    "standup": Record(
        {"item:Subject": "Daily Stand-up", "calendar:Start": _utc(2027, 1, 4, 9),
         "calendar:End": _utc(2027, 1, 4, 9, 15), "item:Categories": ["Team", "Work"],
         "calendar:IsAllDayEvent": False, "item:Body": "Café meeting in room 12"},
        {URL: "standup.EML", ARTICLE: "1", RECURRING: "true", KEYWORDS: ("alpha", "beta")},
    ),
    "review": Record(
        {"item:Subject": "Quarterly review", "calendar:Start": _utc(2027, 2, 1, 14),
         "calendar:End": _utc(2027, 2, 1, 16), "calendar:IsAllDayEvent": False,
         "item:Body": "Review of the quarter"},
        {URL: "review.EML", ARTICLE: "2", RECURRING: "false", CUSTOM: "uid-2"},
    ),
    "holiday": Record(
        {"item:Subject": "Holiday", "calendar:Start": _utc(2027, 3, 1),
         "calendar:End": _utc(2027, 3, 2), "calendar:IsAllDayEvent": True},
        {ARTICLE: "6", RECURRING: "false"},
    ),
}


def field(uri: str) -> str:
    return f'<t:FieldURI FieldURI="{uri}"/>'


def tagged(number: str, kind: str) -> str:
    return f'<t:ExtendedFieldURI PropertyTag="{number}" PropertyType="{kind}"/>'


def const(value: str) -> str:
    return f'<t:FieldURIOrConstant><t:Constant Value="{value}"/></t:FieldURIOrConstant>'


def op(name: str, path: str, value: str) -> str:
    return f"<t:{name}>{path}{const(value)}</t:{name}>"


def contains(path: str, value: str, mode: str | None = None, cmp: str | None = None) -> str:
    attrs = (f' ContainmentMode="{mode}"' if mode else "") + \
        (f' ContainmentComparison="{cmp}"' if cmp else "")
    return f'<t:Contains{attrs}>{path}<t:Constant Value="{value}"/></t:Contains>'


def parse(inner: str) -> etree._Element:
    return etree.fromstring(f'<m:Restriction xmlns:m="{M}" xmlns:t="{T}">{inner}</m:Restriction>')


SUBJECT = field("item:Subject")
START = field("calendar:Start")

CASES = [
    # comparisons with a constant, typed by the path
    (op("IsEqualTo", SUBJECT, "holiday"), {"holiday"}),  # strings compare ignoring case
    (op("IsNotEqualTo", SUBJECT, "Holiday"), {"standup", "review"}),
    (op("IsGreaterThan", START, "2027-02-01T14:00:00Z"), {"holiday"}),
    (op("IsGreaterThanOrEqualTo", START, "2027-02-01T14:00:00Z"), {"review", "holiday"}),
    (op("IsLessThan", START, "2027-02-01T14:00:00Z"), {"standup"}),
    (op("IsLessThanOrEqualTo", START, "2027-02-01T15:00:00+01:00"), {"standup", "review"}),
    (op("IsEqualTo", field("calendar:IsAllDayEvent"), "true"), {"holiday"}),
    (op("IsEqualTo", field("item:Categories"), "work"), {"standup"}),  # any value of several
    # extended properties: by tag (hex or decimal) and by property set and name / id
    (op("IsEqualTo", tagged("0x10f3", "String"), "review.EML"), {"review"}),
    (op("IsEqualTo", tagged("4339", "String"), "REVIEW.eml"), {"review"}),
    (op("IsGreaterThan", tagged("0x0E23", "Integer"), "1"), {"review", "holiday"}),
    (op("IsEqualTo", '<t:ExtendedFieldURI DistinguishedPropertySetId="Appointment"'
        ' PropertyId="33315" PropertyType="Boolean"/>', "true"), {"standup"}),
    (op("IsEqualTo", '<t:ExtendedFieldURI PropertySetId="00020329-0000-0000-C000-000000000046"'
        ' PropertyName="urn:schemas:calendar:uid" PropertyType="String"/>', "uid-2"), {"review"}),
    # a property that is not set matches no comparison, not even IsNotEqualTo
    (op("IsNotEqualTo", tagged("0x10f3", "String"), "x"), {"standup", "review"}),
    # comparing two properties of the same item
    ("<t:IsLessThan>" + START + "<t:FieldURIOrConstant>" + field("calendar:End")
     + "</t:FieldURIOrConstant></t:IsLessThan>", {"standup", "review", "holiday"}),
    # Contains: each mode and comparison
    (contains(SUBJECT, "Holiday"), {"holiday"}),  # FullString, Exact by default
    (contains(SUBJECT, "holiday"), set()),
    (contains(SUBJECT, "Quarterly"), set()),  # a part of the value is not the FullString
    (contains(SUBJECT, "holiday", "FullString", "IgnoreCase"), {"holiday"}),
    (contains(SUBJECT, "Quarter", "Prefixed", "Exact"), {"review"}),
    (contains(SUBJECT, "view", "Substring", "Exact"), {"review"}),
    (contains(SUBJECT, "VIEW", "Substring", "IgnoreCase"), {"review"}),
    (contains(SUBJECT, "stand", "PrefixOnWords", "IgnoreCase"), {"standup"}),
    (contains(SUBJECT, "tand", "PrefixOnWords", "IgnoreCase"), set()),
    (contains(field("item:Body"), "of the", "ExactPhrase", "Exact"), {"review"}),
    (contains(field("item:Body"), "of th", "ExactPhrase", "Exact"), set()),
    (contains(field("item:Body"), "cafe", "Prefixed", "IgnoreCaseAndNonSpacingCharacters"),
     {"standup"}),
    (contains(field("item:Body"), "cafe", "Prefixed", "IgnoreCase"), set()),
    (contains('<t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings"'
              ' PropertyName="Keywords" PropertyType="StringArray"/>', "BET", "Prefixed",
              "IgnoreCase"), {"standup"}),
    # Excludes: the bits of the mask are all clear
    ('<t:Excludes>' + tagged("0x0e23", "Integer") + '<t:Bitmask Value="0x2"/></t:Excludes>',
     {"standup"}),
    ('<t:Excludes>' + tagged("0x0e23", "Integer") + '<t:Bitmask Value="1"/></t:Excludes>',
     {"review", "holiday"}),
    # Exists, Not, And, Or
    ("<t:Exists>" + tagged("0x10f3", "String") + "</t:Exists>", {"standup", "review"}),
    ("<t:Not><t:Exists>" + tagged("0x10f3", "String") + "</t:Exists></t:Not>", {"holiday"}),
    ("<t:And>" + op("IsGreaterThan", START, "2027-01-05T00:00:00Z")
     + op("IsEqualTo", field("calendar:IsAllDayEvent"), "false") + "</t:And>", {"review"}),
    ("<t:Or>" + op("IsEqualTo", SUBJECT, "Holiday")
     + op("IsEqualTo", tagged("0x10f3", "String"), "standup.EML") + "</t:Or>",
     {"holiday", "standup"}),
    ("<t:Not>" + op("IsEqualTo", SUBJECT, "Holiday") + "</t:Not>", {"standup", "review"}),
    # DavMail's calendar search (PidLidRecurring, or a date window on single items)
    ("<t:Or><t:IsEqualTo><t:ExtendedFieldURI DistinguishedPropertySetId=\"Appointment\""
     " PropertyId=\"33315\" PropertyType=\"Boolean\"/>" + const("true") + "</t:IsEqualTo>"
     "<t:And><t:IsEqualTo><t:ExtendedFieldURI DistinguishedPropertySetId=\"Appointment\""
     " PropertyId=\"33315\" PropertyType=\"Boolean\"/>" + const("false") + "</t:IsEqualTo>"
     + op("IsGreaterThan", field("calendar:End"), "2027-02-15T00:00:00Z")
     + "</t:And></t:Or>", {"standup", "holiday"}),
]


@pytest.mark.parametrize(("restriction", "expected"), CASES,
                         ids=[str(i) for i in range(len(CASES))])
def test_restriction_matches(restriction: str, expected: set[str]) -> None:
    expression = read_restriction(parse(restriction), KIND)
    assert {name for name, record in RECORDS.items() if matches(expression, record)} == expected


def test_constants_without_an_offset_are_in_the_request_zone() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    expression = read_restriction(parse(op("IsEqualTo", START, "2027-02-01T16:00:00")), KIND,
                                  zone=plus_two)
    assert [n for n, r in RECORDS.items() if matches(expression, r)] == ["review"]


@pytest.mark.parametrize(("restriction", "code"), [
    # calculated properties cannot be searched
    (op("IsEqualTo", field("calendar:IsRecurring"), "true"), "ErrorUnsupportedPathForQuery"),
    (op("IsEqualTo", field("calendar:RequiredAttendees"), "x"), "ErrorUnsupportedPathForQuery"),
    ('<t:Exists><t:IndexedFieldURI FieldURI="contacts:EmailAddress" FieldIndex="EmailAddress1"/>'
     '</t:Exists>', "ErrorUnsupportedPathForQuery"),
    # Contains only on strings; Excludes only on integers
    (contains(START, "2027"), "ErrorContainsFilterWrongType"),
    ('<t:Excludes>' + SUBJECT + '<t:Bitmask Value="1"/></t:Excludes>',
     "ErrorInvalidExcludesRestriction"),
    # a constant that is not of the path's type
    (op("IsGreaterThan", START, "next week"), "ErrorInvalidValueForProperty"),
    (op("IsEqualTo", tagged("0x0e23", "Integer"), "seven"), "ErrorInvalidValueForProperty"),
    # an ExtendedFieldURI with a combination the schema's documentation rules out
    (op("IsEqualTo", '<t:ExtendedFieldURI PropertyTag="0x37" PropertyName="x"'
        ' PropertyType="String"/>', "x"), "ErrorInvalidExtendedProperty"),
    # Near is not evaluated: an error, never ignored
    ("<t:Near><t:Exists>" + SUBJECT + "</t:Exists><t:Exists>" + SUBJECT + "</t:Exists>"
     "<t:Distance>1</t:Distance><t:Ordered>true</t:Ordered></t:Near>",
     "ErrorUnsupportedQueryFilter"),
])
def test_what_cannot_be_evaluated_is_an_error(restriction: str, code: str) -> None:
    with pytest.raises(EwsResponseError) as caught:
        read_restriction(parse(restriction), KIND)
    assert caught.value.code == code


def test_an_unsupported_path_names_itself() -> None:
    with pytest.raises(UnsupportedPath) as caught:
        read_restriction(parse(op("IsEqualTo", field("calendar:IsRecurring"), "true")), KIND)
    assert caught.value.path.get("FieldURI") == "calendar:IsRecurring"


def _order(inner: str) -> etree._Element:
    return etree.fromstring(f'<m:SortOrder xmlns:m="{M}" xmlns:t="{T}">{inner}</m:SortOrder>')


@pytest.mark.parametrize(("order", "expected"), [
    ('<t:FieldOrder Order="Ascending">' + tagged("0xe23", "Integer") + "</t:FieldOrder>",
     ["standup", "review", "holiday"]),
    ('<t:FieldOrder Order="Descending">' + tagged("0xe23", "Integer") + "</t:FieldOrder>",
     ["holiday", "review", "standup"]),
    # a record without the property sorts first ascending, last descending
    ('<t:FieldOrder Order="Ascending">' + tagged("0x10f3", "String") + "</t:FieldOrder>",
     ["holiday", "review", "standup"]),
    ('<t:FieldOrder Order="Descending">' + SUBJECT + "</t:FieldOrder>",
     ["review", "holiday", "standup"]),
    # ties broken by the next FieldOrder
    ('<t:FieldOrder Order="Ascending">' + field("calendar:IsAllDayEvent") + "</t:FieldOrder>"
     '<t:FieldOrder Order="Descending">' + START + "</t:FieldOrder>",
     ["review", "standup", "holiday"]),
])
def test_sort_order(order: str, expected: list[str]) -> None:
    keys = read_sort_order(_order(order), KIND)
    assert sort([(n, r) for n, r in RECORDS.items()], keys) == expected


def test_sorting_on_a_calculated_property_is_refused() -> None:
    with pytest.raises(EwsResponseError) as caught:
        read_sort_order(_order('<t:FieldOrder Order="Ascending">'
                               + field("calendar:IsRecurring") + "</t:FieldOrder>"), KIND)
    assert caught.value.code == "ErrorUnsupportedPathForSortGroup"
