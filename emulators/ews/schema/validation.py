"""Validation against Exchange 2016's EWS schema, the way Exchange validates.

Exchange checks every request against `messages.xsd` / `types.xsd` before it acts on it:
the element inside `soap:Body`, and the SOAP headers the schema declares
(RequestServerVersion, ExchangeImpersonation, TimeZoneContext, MailboxCulture, ...). A
violation is a SOAP fault `ErrorSchemaValidation` naming the first offence in the request
as sent: its line, its position (1-based, in characters, at the first character of the
name, as .NET's XmlReader counts) and the validator's message. The stand-in's own responses
are checked against the same schema in strict mode (`service.py`).

libxml2 (lxml) validates; .NET words and places errors differently, so each libxml2 error
is mapped to where .NET's streaming validator stops: an unexpected element at its start
tag, a bad attribute at the attribute, a bad value or missing children at the end tag of
the element that holds them.
References:
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-schema-versions-in-exchange
https://learn.microsoft.com/en-us/dotnet/api/system.xml.ixmllineinfo.lineposition
"""

from __future__ import annotations

import contextlib
import re
import threading
import xml.parsers.expat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from lxml import etree

SCHEMA_DIR: Final = Path(__file__).resolve().parent
MESSAGES_XSD: Final = SCHEMA_DIR / "messages.xsd"

_K = TypeVar("_K")
_XS: Final = "http://www.w3.org/2001/XMLSchema"
_SOAP_HEADER: Final = "{http://schemas.xmlsoap.org/soap/envelope/}Header"
_SOAP_BODY: Final = "{http://schemas.xmlsoap.org/soap/envelope/}Body"


@dataclass(frozen=True, slots=True)
class Violation:
    """The first schema violation in a request, as Exchange reports it."""

    line: int
    position: int
    message: str


class EwsSchema:
    """The loaded schema; `schema()` gives the process's one instance."""

    def __init__(self, messages_xsd: Path = MESSAGES_XSD) -> None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        document = etree.parse(str(messages_xsd), parser)
        self._schema = etree.XMLSchema(document)
        # An XMLSchema keeps one error log per object: one validation at a time.
        self._lock = threading.Lock()
        self._documents = [etree.parse(str(path), parser).getroot()
                           for path in sorted(messages_xsd.parent.glob("*.xsd"))]
        self.global_elements = frozenset(
            f"{{{doc.get('targetNamespace', '')}}}{e.get('name')}"
            for doc in self._documents for e in doc.iterchildren(f"{{{_XS}}}element"))
        self._datatypes: _Datatypes | None = None
        self._datatypes_lock = threading.Lock()

    @property
    def datatypes(self) -> _Datatypes:
        """Type names for the Violation text, read from the schema on the first violation."""
        with self._datatypes_lock:
            if self._datatypes is None:
                self._datatypes = _Datatypes(self._documents)
            return self._datatypes

    def errors(self, element: etree._Element) -> list[etree._LogEntry]:
        """libxml2's errors for `element` validated as a document root (none: valid)."""
        with self._lock:
            if self._schema.validate(element):
                return []
            entries: list[etree._LogEntry] = [*self._schema.error_log]  # type: ignore[misc]
            return entries

    def check_request(self, root: etree._Element, body: bytes) -> Violation | None:
        """Validate the parsed request `root` (parsed from `body`, which positions refer
        to): the Body's element and the header elements the schema declares."""
        checked: list[etree._Element] = []
        for part in root:
            if part.tag == _SOAP_HEADER:
                checked.extend(h for h in part if h.tag in self.global_elements)
            elif part.tag == _SOAP_BODY:
                checked.extend(p for p in part if isinstance(p.tag, str))
        found: list[tuple[etree._Element, etree._LogEntry]] = []
        for element in checked:
            found.extend((element, error) for error in self.errors(element))
        if not found:
            return None
        return _first_violation(root, body, found, self.datatypes)

    def response_errors(self, payload: etree._Element) -> list[str]:
        """What is wrong with a response element the stand-in built (empty: valid)."""
        return [f"{e.path}: {e.message}" for e in self.errors(payload)]


def _xs(name: str) -> str:
    return f"{{{_XS}}}{name}"


class _Datatypes:
    """Declared type names for .NET's wording ("invalid according to its datatype 'ns:T'"),
    where an element's name (or an attribute's and its element's) decides the type."""

    def __init__(self, documents: list[etree._Element]) -> None:
        complex_types = {
            f"{{{doc.get('targetNamespace', '')}}}{ct.get('name')}": ct
            for doc in documents for ct in doc.iterchildren(_xs("complexType"))
        }
        elements: dict[str, set[str | None]] = {}
        children: dict[tuple[str, str], set[str | None]] = {}
        attributes: dict[tuple[str, str], set[str | None]] = {}
        for doc in documents:
            for decl in doc.iter(_xs("element")):
                name = decl.get("name")
                if name is None:
                    continue
                declared = decl.get("type")
                elements.setdefault(name, set()).add(_qualify(decl, declared))
                inline = decl.find(_xs("complexType"))
                shape = inline if inline is not None else complex_types.get(
                    _clark_of(decl, declared))
                own_attributes, own_children = _members(shape, complex_types)
                for attr, kind in own_attributes:
                    attributes.setdefault((name, attr), set()).add(kind)
                for child, kind in own_children:
                    children.setdefault((name, child), set()).add(kind)
        self._elements = _unique(elements)
        self._children = _unique(children)
        self._attributes = _unique(attributes)

    def element(self, parent: str, name: str) -> str | None:
        """The type of element `name` inside element `parent`, when the names tell."""
        return self._children.get((parent, name)) or self._elements.get(name)

    def attribute(self, element: str, name: str) -> str | None:
        return self._attributes.get((element, name))


def _unique(found: dict[_K, set[str | None]]) -> dict[_K, str]:
    return {k: kind for k, v in found.items() if len(v) == 1 for kind in v if kind}


def _clark_of(context: etree._Element, qname: str | None) -> str:
    """`t:Foo` in `context`'s namespaces, as {ns}Foo ('' when None)."""
    if not qname:
        return ""
    prefix, _, local = qname.rpartition(":")
    return f"{{{context.nsmap.get(prefix or None, '')}}}{local}"


def _qualify(context: etree._Element, qname: str | None) -> str | None:
    """`t:Foo` as .NET names a type: 'http://...types:Foo' (None when not named)."""
    if not qname:
        return None
    ns, local = _clark(_clark_of(context, qname))
    return f"{ns}:{local}"


def _members(
    shape: etree._Element | None, complex_types: dict[str, etree._Element]
) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
    """A complex type's attributes and child elements with their types, its base types'
    included."""
    attributes: list[tuple[str, str | None]] = []
    children: list[tuple[str, str | None]] = []
    seen: set[int] = set()
    while shape is not None and id(shape) not in seen:
        seen.add(id(shape))
        base = None
        stack = list(shape)
        while stack:
            node = stack.pop()
            if node.tag == _xs("element"):
                if node.get("name"):
                    children.append((node.get("name", ""), _qualify(node, node.get("type"))))
                continue  # its own type's members are its own
            if node.tag == _xs("attribute") and node.get("name"):
                attributes.append((node.get("name", ""), _qualify(node, node.get("type"))))
            if node.tag == _xs("extension") and node.get("base"):
                base = complex_types.get(_clark_of(node, node.get("base")))
            stack.extend(node)
        shape = base
    return attributes, children


_instance: EwsSchema | None = None
_instance_lock = threading.Lock()


def schema() -> EwsSchema:
    """The schema, loaded on first use (about 0.3 s), once per process."""
    global _instance
    if _instance is None:
        with _instance_lock:
            if _instance is None:
                _instance = EwsSchema()
    return _instance


def syntax_violation(body: bytes) -> Violation | None:
    """Where a body that is not well-formed XML breaks (None: it is well-formed, or has a
    DTD, which is refused unread). Exchange reports .NET's XmlException the same way."""
    if b"<!DOCTYPE" in body:
        return None
    parser = xml.parsers.expat.ParserCreate()
    try:
        parser.Parse(body, True)
    except xml.parsers.expat.ExpatError as exc:
        line, position = exc.lineno, exc.offset + 1
        text = xml.parsers.expat.ErrorString(exc.code) or "Invalid XML"
        return Violation(line, position,
                         f"{text[:1].upper()}{text[1:]}. Line {line}, position {position}.")
    return None


# --- where .NET would report it -----------------------------------------------------------

_ELEMENT: Final = re.compile(r"^Element '(?P<tag>[^']*)'(?:, attribute '(?P<attr>[^']*)')?: ")
_EXPECTED: Final = re.compile(r"Expected is (?:one of )?\( (?P<names>.*) \)\.$")
_FACET: Final = re.compile(r"^\[facet '(?P<facet>[^']*)'\] The value '(?P<value>.*?)' ")
_VALUE: Final = re.compile(r"^'(?P<value>.*?)' is not a valid value of the \w+ type "
                           r"'(?P<type>[^']*)'")


def _clark(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _expected(text: str) -> str:
    """'A, B' in namespace 'x' as well as 'C' in namespace 'y' (.NET's list)."""
    match = _EXPECTED.search(text)
    if match is None:
        return ""
    groups: dict[str, list[str]] = {}
    for name in match.group("names").split(", "):
        ns, local = _clark(name.strip())
        groups.setdefault(ns, []).append(local)
    parts = [f"'{', '.join(names)}' in namespace '{ns}'" if ns else f"'{', '.join(names)}'"
             for ns, names in groups.items()]
    return " List of possible elements expected: " + " as well as ".join(parts) + "."


def _in_ns(tag: str) -> str:
    ns, name = _clark(tag)
    return f"'{name}' in namespace '{ns}'" if ns else f"'{name}'"


def _qualified(tag: str) -> str:
    ns, name = _clark(tag)
    return f"'{ns}:{name}'" if ns else f"'{name}'"


@dataclass(frozen=True, slots=True)
class _Where:
    """An error's place: the element, and what about it (start, end, attribute, child)."""

    element: etree._Element
    at: str
    attribute: str | None = None


def _describe(
    element: etree._Element, error: etree._LogEntry, datatypes: _Datatypes
) -> tuple[_Where, str]:
    """Where .NET's validator would stop for this libxml2 error, and its wording."""
    message = error.message
    head = _ELEMENT.match(message)
    tag = head.group("tag") if head else str(element.tag)
    attribute = head.group("attr") if head else None
    rest = message[head.end():] if head else message
    kind = error.type_name
    if attribute is not None:
        local = _clark(attribute)[1]
        where = _Where(element, "attribute", local)
        if "is not allowed" in rest:
            return where, f"The '{local}' attribute is not declared."
        declared = datatypes.attribute(_clark(tag)[1], local)
        return where, _invalid_value(f"The '{local}' attribute", rest, declared)
    if kind == "SCHEMAV_CVC_COMPLEX_TYPE_4":
        missing = re.search(r"attribute '([^']*)'", rest)
        return _Where(element, "start"), (
            f"The required attribute '{missing.group(1) if missing else ''}' is missing.")
    if "Missing child element" in rest:
        return _Where(element, "end"), (
            f"The element {_in_ns(tag)} has incomplete content.{_expected(rest)}")
    if "This element is not expected" in rest:
        parent = element.getparent()
        parent_tag = str(parent.tag) if parent is not None else ""
        return _Where(element, "start"), (
            f"The element {_in_ns(parent_tag)} has invalid child element {_in_ns(tag)}."
            f"{_expected(rest)}")
    if "Element content is not allowed" in rest:
        child = next((c for c in element if isinstance(c.tag, str)), None)
        if child is not None:
            model = "text only" if "simple type" in rest else "empty"
            return _Where(child, "start"), (
                f"The element {_in_ns(tag)} cannot contain child element {_in_ns(str(child.tag))}"
                f" because the parent element's content model is {model}.")
    if "Character content" in rest:
        return _Where(element, "start"), f"The element {_in_ns(tag)} cannot contain text."
    if "No matching global declaration" in rest:
        return _Where(element, "start"), f"The {_qualified(tag)} element is not declared."
    if _FACET.match(rest) or _VALUE.match(rest):
        parent = element.getparent()
        declared = datatypes.element(
            _clark(str(parent.tag))[1] if parent is not None else "", _clark(tag)[1])
        return _Where(element, "end"), _invalid_value(f"The {_qualified(tag)} element", rest,
                                                      declared)
    return _Where(element, "start"), rest.strip()


def _invalid_value(subject: str, rest: str, declared: str | None) -> str:
    facet = _FACET.match(rest)
    value = _VALUE.match(rest)
    datatype = declared
    if datatype is None and value is not None:
        datatype = value.group("type").replace("xs:", f"{_XS}:", 1)
    according = f" according to its datatype '{datatype}'" if datatype else ""
    if facet is not None:
        name = facet.group("facet")
        return (f"{subject} is invalid - The value '{facet.group('value')}' is invalid"
                f"{according} - The {name[:1].upper()}{name[1:]} constraint failed.")
    if value is not None:
        return f"{subject} is invalid - The value '{value.group('value')}' is invalid{according}."
    return f"{subject} is invalid - {rest.strip()}"


def _first_violation(
    root: etree._Element, body: bytes, found: list[tuple[etree._Element, etree._LogEntry]],
    datatypes: _Datatypes,
) -> Violation:
    positions = _Positions(root, body)
    best: tuple[int, int, str] | None = None
    for validated, error in found:
        element = _resolve(validated, error.path) if error.path else None
        where, text = _describe(element if element is not None else validated, error,
                                datatypes)
        line, column = positions.of(where)
        if best is None or (line, column) < best[:2]:
            best = (line, column, text)
    assert best is not None
    return Violation(*best)


_STEP: Final = re.compile(r"^(?:(?P<prefix>[^:\[\]]+):)?(?P<name>[^:\[\]]+)(?:\[(?P<n>\d+)\])?$")


def _resolve(validated: etree._Element, path: str) -> etree._Element | None:
    """The element libxml2's node path names, from the validated element down.

    The path is `xmlGetNodePath`'s: `prefix:name[n]` counts siblings of that prefix and
    name, `*[n]` (an element in a default namespace) counts every element sibling."""
    steps = path.strip("/").split("/")
    current: etree._Element | None = None
    for step in steps:
        match = _STEP.match(step)
        if match is None:
            return None
        prefix, name, n = match.group("prefix"), match.group("name"), int(match.group("n") or 1)
        if current is None:
            current = validated
            continue
        children = [c for c in current if isinstance(c.tag, str)]
        if name != "*":
            children = [c for c in children
                        if etree.QName(c).localname == name and c.prefix == prefix]
        if len(children) < n:
            return None
        current = children[n - 1]
    return current


class _Positions:
    """Line and .NET line position of each element's start and end tag, from the bytes.

    libxml2 keeps line numbers only; expat, reading the same bytes, gives each tag's byte
    offset, in the same document order as lxml's elements (run only on a violation)."""

    def __init__(self, root: etree._Element, body: bytes) -> None:
        self._body = body
        self._encoding = root.getroottree().docinfo.encoding or "utf-8"
        # The list keeps every element's proxy alive, so ids stay unique while we map.
        self._elements = list(root.iter(etree.Element))
        self._order = {id(e): i for i, e in enumerate(self._elements)}
        self._starts: list[int] = []
        self._ends: dict[int, int] = {}
        stack: list[int] = []
        parser = xml.parsers.expat.ParserCreate()

        def start(name: str, attrs: object) -> None:
            stack.append(len(self._starts))
            self._starts.append(parser.CurrentByteIndex)

        def end(name: str) -> None:
            self._ends[stack.pop()] = parser.CurrentByteIndex

        parser.StartElementHandler = start
        parser.EndElementHandler = end
        # lxml read it, so expat should too; if it stops early, what it mapped is right.
        with contextlib.suppress(xml.parsers.expat.ExpatError):
            parser.Parse(body, True)

    def of(self, where: _Where) -> tuple[int, int]:
        index = self._order.get(id(where.element))
        if index is None or index >= len(self._starts):
            line = where.element.sourceline
            return (line if isinstance(line, int) else 1), 1
        start = self._starts[index]
        if where.at == "attribute" and where.attribute:
            found = self._attribute(start, where.attribute)
            if found is not None:
                return self._line_position(found)
        if where.at == "end":
            end = self._ends.get(index)
            tag_end = _tag_end(self._body, start)
            if end is not None and self._body[tag_end - 2:tag_end] != b"/>":
                return self._line_position(end + 2)
        return self._line_position(start + 1)

    def _attribute(self, start: int, name: str) -> int | None:
        tag_end = _tag_end(self._body, start)
        pattern = re.compile(rb"\s((?:[\w.-]+:)?" + re.escape(name.encode()) + rb")\s*=")
        match = pattern.search(self._body, start, tag_end)
        return match.start(1) if match else None

    def _line_position(self, offset: int) -> tuple[int, int]:
        before = self._body[:offset].decode(self._encoding, errors="replace")
        before = before.replace("\r\n", "\n").replace("\r", "\n")
        line_start = before.rfind("\n") + 1
        # .NET counts UTF-16 code units, 1-based.
        column = len(before[line_start:].encode("utf-16-le")) // 2 + 1
        return before.count("\n") + 1, column


def _tag_end(body: bytes, start: int) -> int:
    """The offset just past the start tag at `start` (quotes may hold '>')."""
    quote = 0
    for i in range(start, len(body)):
        byte = body[i]
        if quote:
            if byte == quote:
                quote = 0
        elif byte in (0x22, 0x27):
            quote = byte
        elif byte == 0x3E:
            return i + 1
    return len(body)
