"""FindItem's and FindFolder's Restriction and SortOrder: read once into an expression,
then evaluated against each item's or folder's values.

Pure: a restriction element and a `kind` function (the type each path's values compare as,
None when the path cannot be searched) in; an expression out, which `matches` evaluates
against a `properties.Record`. Nothing is ignored: a search expression or a path this
stand-in cannot evaluate is an error, as Exchange answers it.

What it follows:
- the search expressions: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/restriction
  (IsEqualTo ... IsLessThanOrEqualTo against a Constant or another property, Contains with
  ContainmentMode and ContainmentComparison, Excludes, Exists, And, Or, Not)
- Contains: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/contains
  (ContainmentMode FullString when absent; Exact comparison when absent)
- a property that is not set satisfies no comparison, Contains or Excludes (MAPI's rule:
  "a restriction match requires that the item includes a value for the property"); Not
  inverts that, Exists tests it
- string comparisons ignore case, as Exchange's store compares
- SortOrder: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/sortorder
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from lxml import etree

from emulators.ews.properties import Record, decode
from ews_parser import EwsParseError, EwsResponseError
from ews_parser.fields import read_path
from ews_parser.values import FieldPath
from ews_parser.xml import TYPES, t

Kind = Callable[[FieldPath], str | None]
Operator: TypeAlias = Literal["IsEqualTo", "IsNotEqualTo", "IsGreaterThan",
                              "IsGreaterThanOrEqualTo", "IsLessThan", "IsLessThanOrEqualTo"]
_OPERATORS: Final[frozenset[str]] = frozenset({
    "IsEqualTo", "IsNotEqualTo", "IsGreaterThan", "IsGreaterThanOrEqualTo", "IsLessThan",
    "IsLessThanOrEqualTo",
})
_MODES: Final = frozenset({"FullString", "Prefixed", "Substring", "PrefixOnWords", "ExactPhrase"})
_PATH_TAGS: Final = frozenset({t("FieldURI"), t("IndexedFieldURI"), t("ExtendedFieldURI")})


class UnsupportedPath(EwsResponseError):
    """ErrorUnsupportedPathForQuery / ForSortGroup, with the offending path's element,
    which Exchange puts in the response's MessageXml."""

    def __init__(self, code: str, message: str, path: etree._Element) -> None:
        super().__init__(code, message)
        self.path = path


def _unsupported_path(path: etree._Element) -> UnsupportedPath:
    return UnsupportedPath("ErrorUnsupportedPathForQuery",
                           "The property can not be used with this type of restriction.", path)


# --- the expression --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    operator: Operator
    path: FieldPath
    kind: str
    constant: Any = None  # the constant, as the path's values; None when `other` is set
    other: FieldPath | None = None


@dataclass(frozen=True, slots=True)
class Contains:
    path: FieldPath
    constant: str | bytes
    mode: str
    comparison: str


@dataclass(frozen=True, slots=True)
class Excludes:
    path: FieldPath
    bitmask: int


@dataclass(frozen=True, slots=True)
class Exists:
    path: FieldPath


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expression


Expression: TypeAlias = Compare | Contains | Excludes | Exists | And | Or | Not


# --- reading ---------------------------------------------------------------------------------


def read_restriction(restriction: etree._Element, kind: Kind,
                     zone: dt.tzinfo = dt.UTC) -> Expression:
    """The expression in `m:Restriction`. `zone` reads date-time constants without an
    offset (the request's TimeZoneContext)."""
    operands = [_read(child, kind, zone) for child in _children(restriction)]
    if not operands:
        raise EwsResponseError("ErrorInvalidRestriction", "The restriction is empty.")
    # The schema allows several top-level expressions; all of them must hold.
    return operands[0] if len(operands) == 1 else And(tuple(operands))


def _children(elem: etree._Element) -> list[etree._Element]:
    return [c for c in elem if isinstance(c.tag, str)]


def _name(elem: etree._Element) -> str:
    if etree.QName(elem).namespace != TYPES:
        raise EwsResponseError("ErrorInvalidRestriction",
                               f"{etree.QName(elem).localname} is not a search expression.")
    return etree.QName(elem).localname


def _path(elem: etree._Element, kind: Kind) -> tuple[FieldPath, str]:
    try:
        path = read_path(elem)
    except EwsParseError as exc:
        raise EwsResponseError("ErrorInvalidRestriction", str(exc)) from None
    found = kind(path)
    if found is None:
        raise _unsupported_path(elem)
    return path, found


def _the_path(expr: etree._Element, kind: Kind) -> tuple[FieldPath, str]:
    paths = [c for c in _children(expr) if c.tag in _PATH_TAGS]
    if len(paths) != 1:
        raise EwsResponseError("ErrorInvalidRestriction",
                               f"{_name(expr)} needs exactly one property path.")
    return _path(paths[0], kind)


def _read(elem: etree._Element, kind: Kind, zone: dt.tzinfo) -> Expression:
    name = _name(elem)
    if name in ("And", "Or"):
        operands = tuple(_read(c, kind, zone) for c in _children(elem))
        if not operands:
            raise EwsResponseError("ErrorInvalidRestriction", f"{name} has no operands.")
        return And(operands) if name == "And" else Or(operands)
    if name == "Not":
        operands = tuple(_read(c, kind, zone) for c in _children(elem))
        if len(operands) != 1:
            raise EwsResponseError("ErrorInvalidRestriction", "Not takes one expression.")
        return Not(operands[0])
    if name == "Exists":
        return Exists(_the_path(elem, kind)[0])
    if name in _OPERATORS:
        return _read_compare(elem, name, kind, zone)  # type: ignore[arg-type]
    if name == "Contains":
        return _read_contains(elem, kind)
    if name == "Excludes":
        return _read_excludes(elem, kind)
    # Near and anything newer: not evaluated here, and never silently dropped.
    raise EwsResponseError("ErrorUnsupportedQueryFilter",
                           f"The {name} search expression is not supported.")


def _constant(text: str, kind: str, zone: dt.tzinfo) -> Any:
    base = kind[: -len("Array")] if kind.endswith("Array") else kind
    try:
        return decode(base, text, zone)
    except ValueError:
        raise EwsResponseError("ErrorInvalidValueForProperty",
                               f"The value {text[:40]!r} is not valid for a {base} property."
                               ) from None


def _read_compare(elem: etree._Element, operator: Operator, kind: Kind,
                  zone: dt.tzinfo) -> Compare:
    path, path_kind = _the_path(elem, kind)
    operand = elem.find(t("FieldURIOrConstant"))
    inner = _children(operand) if operand is not None else []
    if len(inner) != 1:
        raise EwsResponseError("ErrorInvalidRestriction",
                               f"{operator} needs a FieldURIOrConstant.")
    if inner[0].tag == t("Constant"):
        value = inner[0].get("Value")
        if value is None:
            raise EwsResponseError("ErrorInvalidRestriction", "Constant without a Value.")
        return Compare(operator, path, path_kind, constant=_constant(value, path_kind, zone))
    other, other_kind = _path(inner[0], kind)
    if _base(other_kind) != _base(path_kind):
        raise EwsResponseError("ErrorInvalidRestriction",
                               "The two properties compared are of different types.")
    return Compare(operator, path, path_kind, other=other)


def _base(kind: str) -> str:
    return kind[: -len("Array")] if kind.endswith("Array") else kind


def _read_contains(elem: etree._Element, kind: Kind) -> Contains:
    path, path_kind = _the_path(elem, kind)
    if _base(path_kind) not in ("String", "Binary"):
        raise EwsResponseError("ErrorContainsFilterWrongType",
                               "The Contains filter can only be used for string properties.")
    constant = elem.find(t("Constant"))
    value = constant.get("Value") if constant is not None else None
    if value is None:
        raise EwsResponseError("ErrorInvalidRestriction", "Contains needs a Constant.")
    mode = elem.get("ContainmentMode") or "FullString"
    comparison = elem.get("ContainmentComparison") or "Exact"
    if mode not in _MODES:
        raise EwsResponseError("ErrorInvalidRestriction", f"Unknown ContainmentMode {mode!r}.")
    parsed: str | bytes = value
    if _base(path_kind) == "Binary":
        parsed = _constant(value, "Binary", dt.UTC)
    return Contains(path, parsed, mode, comparison)


def _read_excludes(elem: etree._Element, kind: Kind) -> Excludes:
    path, path_kind = _the_path(elem, kind)
    if path_kind not in ("Integer", "Short", "Long"):
        raise EwsResponseError("ErrorInvalidExcludesRestriction",
                               "The Excludes restriction is valid only for integer properties.")
    bitmask = elem.find(t("Bitmask"))
    value = (bitmask.get("Value") or "").strip() if bitmask is not None else ""
    try:
        mask = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        raise EwsResponseError("ErrorInvalidExcludesRestriction",
                               f"The bitmask {value[:20]!r} is not a number.") from None
    return Excludes(path, mask)


# --- evaluating ------------------------------------------------------------------------------


def matches(expression: Expression, record: Record) -> bool:
    if isinstance(expression, And):
        return all(matches(e, record) for e in expression.operands)
    if isinstance(expression, Or):
        return any(matches(e, record) for e in expression.operands)
    if isinstance(expression, Not):
        return not matches(expression.operand, record)
    if isinstance(expression, Exists):
        return record.values(expression.path) is not None
    values = record.values(expression.path)
    if values is None:
        return False
    if isinstance(expression, Excludes):
        return any(int(v) & expression.bitmask == 0 for v in values)
    if isinstance(expression, Contains):
        return any(_contains(v, expression) for v in values)
    if expression.other is not None:
        others = record.values(expression.other)
        if others is None:
            return False
        return any(_compare(expression.operator, v, o) for v in values for o in others)
    return any(_compare(expression.operator, v, expression.constant) for v in values)


def _comparable(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _compare(operator: str, value: Any, constant: Any) -> bool:
    left, right = _comparable(value), _comparable(constant)
    try:
        if operator == "IsEqualTo":
            return bool(left == right)
        if operator == "IsNotEqualTo":
            return bool(left != right)
        if operator == "IsGreaterThan":
            return bool(left > right)
        if operator == "IsGreaterThanOrEqualTo":
            return bool(left >= right)
        if operator == "IsLessThan":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:  # a value of another type than the path's (never for stored values)
        return False


def _fold(text: str, comparison: str) -> str:
    """The text as `ContainmentComparison` compares it. Loose matching is not specified
    beyond its name; it is read as ignoring case and non-spacing marks."""
    if comparison in ("IgnoreNonSpacingCharacters", "IgnoreCaseAndNonSpacingCharacters") \
            or comparison.startswith("Loose"):
        text = "".join(c for c in unicodedata.normalize("NFD", text)
                       if not unicodedata.combining(c))
    if comparison in ("IgnoreCase", "IgnoreCaseAndNonSpacingCharacters") \
            or comparison.startswith("Loose"):
        text = text.casefold()
    return text


_WORD: Final = re.compile(r"\w+", re.UNICODE)


def _contains(value: Any, expression: Contains) -> bool:
    constant = expression.constant
    mode = expression.mode
    if isinstance(value, bytes) or isinstance(constant, bytes):
        if not isinstance(value, bytes) or not isinstance(constant, bytes):
            return False
        if mode == "FullString":
            return value == constant
        if mode == "Prefixed":
            return value.startswith(constant)
        return constant in value
    text = _fold(str(value), expression.comparison)
    wanted = _fold(constant, expression.comparison)
    if mode == "FullString":
        return text == wanted
    if mode == "Prefixed":
        return text.startswith(wanted)
    if mode == "Substring":
        return wanted in text
    if mode == "PrefixOnWords":
        # Each word of the constant starts a word of the value, in order.
        words = [w.group() for w in _WORD.finditer(text)]
        wanted_words = [w.group() for w in _WORD.finditer(wanted)]
        return any(
            all(words[i + j].startswith(w) for j, w in enumerate(wanted_words))
            for i in range(len(words) - len(wanted_words) + 1)
        ) if wanted_words else True
    # ExactPhrase: the constant's words appear together, whole, in the value.
    pattern = r"(?<!\w)" + r"\W+".join(re.escape(w.group()) for w in _WORD.finditer(wanted)) \
        + r"(?!\w)"
    return re.search(pattern, text) is not None


# --- sorting ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortKey:
    path: FieldPath
    descending: bool


def read_sort_order(sort_order: etree._Element, kind: Kind) -> tuple[SortKey, ...]:
    keys = []
    for order in _children(sort_order):
        paths = [c for c in _children(order) if c.tag in _PATH_TAGS]
        if len(paths) != 1:
            raise EwsResponseError("ErrorInvalidRequest", "FieldOrder needs one property path.")
        try:
            path = read_path(paths[0])
        except EwsParseError as exc:
            raise EwsResponseError("ErrorInvalidRequest", str(exc)) from None
        found = kind(path)
        if found is None or found.endswith("Array"):
            raise UnsupportedPath("ErrorUnsupportedPathForSortGroup",
                                  "The property can not be used for sorting or grouping results.",
                                  paths[0])
        keys.append(SortKey(path, order.get("Order") == "Descending"))
    return tuple(keys)


def sort(records: Sequence[tuple[Any, Record]], keys: Sequence[SortKey]) -> list[Any]:
    """`records` (value, record) in the order `keys` ask for; a record without the property
    sorts before those with it (ascending), as an empty value does in the store. Stable:
    ties keep the order they came in."""
    out = list(records)
    for key in reversed(keys):
        present = [r for r in out if r[1].values(key.path) is not None]
        missing = [r for r in out if r[1].values(key.path) is None]
        present.sort(key=lambda r: _comparable((r[1].values(key.path) or [None])[0]),
                     reverse=key.descending)
        out = present + missing if key.descending else missing + present
    return [value for value, _ in out]
