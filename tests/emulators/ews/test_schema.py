"""The stand-in checks requests against Exchange 2016's schema as Exchange does, and (in
strict mode, on for the whole suite) its own responses.

A violation is the SOAP fault ErrorSchemaValidation with HTTP 500, naming the first offence
by line and .NET line position (1-based, at the first character of the element or
attribute name; an element's value or missing children at its end tag) and a Violation in
.NET's words; see the corpus samples errors/*ErrorSchemaValidation*.xml.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-soap-faults
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from exchangelib import (
    BASIC,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    HTMLBody,
)
from exchangelib.errors import ErrorSchemaValidation
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version
from lxml import etree

from emulators.ews import EwsServer, start_server, wire
from emulators.ews.schema import SCHEMA_DIR, Violation, schema
from emulators.ews.service import STRICT_RESPONSES_ENV
from ews_parser import classify
from ews_parser.xml import ERRORS, TYPES, parse_xml
from tests.emulators.ews.conftest import USERS, raw_post

ROOT = Path(__file__).resolve().parents[3]
FIXTURE_REQUESTS = sorted((ROOT / "fixtures" / "ews").glob("*/*_req.xml"))
SHARED_CORPUS = ROOT.parent / "shared" / "corpus" / "ews"
BERLIN = EWSTimeZone("Europe/Berlin")

T = f"{{{TYPES}}}"


def envelope(operation: str, header: str = '<t:RequestServerVersion Version="Exchange2016"/>'
             ) -> bytes:
    """A request laid out on lines: the operation starts on line 5, at position 1."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
        ' xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">\n'
        f"<s:Header>{header}</s:Header>\n"
        "<s:Body>\n"
        f"{operation}\n"
        "</s:Body></s:Envelope>"
    ).encode()


def create(item: str) -> str:
    return ('<m:CreateItem SendMeetingInvitations="SendToNone">\n'  # line 5
            "  <m:Items>\n"                                          # line 6
            "    <t:CalendarItem>\n"                                 # line 7
            f"{item}\n"                                              # line 8 on
            "    </t:CalendarItem>\n"
            "  </m:Items>\n"
            "</m:CreateItem>")


GET_FOLDER = ("<m:GetFolder>\n"
              "  <m:FolderShape><t:BaseShape>{shape}</t:BaseShape></m:FolderShape>\n"
              '  <m:FolderIds><t:DistinguishedFolderId Id="{folder}"/></m:FolderIds>\n'
              "</m:GetFolder>")

TYPES_NS = "in namespace 'http://schemas.microsoft.com/exchange/services/2006/types'"

#: (request, line, position, start of the Violation)
INVALID = {
    # Unescaped HTML in Body: Body is text only. At the first child element.
    "body-with-child-elements": (
        envelope(create('      <t:Subject>Lunch</t:Subject>\n'
                        '      <t:Body BodyType="HTML"><p>Hi <b>all</b></p></t:Body>')),
        9, 32,
        f"The element 'Body' {TYPES_NS} cannot contain child element 'p' because the parent"
        " element's content model is text only.",
    ),
    # Elements out of order: End before Start. At the element that came too early.
    "out-of-order": (
        envelope(create("      <t:Subject>Lunch</t:Subject>\n"
                        "      <t:End>2024-05-01T11:00:00Z</t:End>\n"
                        "      <t:Start>2024-05-01T10:00:00Z</t:Start>")),
        10, 8,
        f"The element 'CalendarItem' {TYPES_NS} has invalid child element 'Start' {TYPES_NS}."
        " List of possible elements expected: ",
    ),
    # An element the schema does not know, at its start tag.
    "unknown-element": (
        envelope(create("      <t:Subject>Lunch</t:Subject><t:Colour>blue</t:Colour>")),
        8, 36,
        f"The element 'CalendarItem' {TYPES_NS} has invalid child element 'Colour'",
    ),
    # A value outside an enumeration, in an attribute: at the attribute's name.
    "bad-enumeration-attribute": (
        envelope(GET_FOLDER.format(shape="IdOnly", folder="inbox2")),
        7, 41,
        "The 'Id' attribute is invalid - The value 'inbox2' is invalid according to its"
        " datatype 'http://schemas.microsoft.com/exchange/services/2006/types:"
        "DistinguishedFolderIdNameType' - The Enumeration constraint failed.",
    ),
    # A value outside an enumeration, in element text: at the end tag.
    "bad-enumeration-text": (
        envelope(GET_FOLDER.format(shape="Everything", folder="calendar")),
        6, 43,
        "The 'http://schemas.microsoft.com/exchange/services/2006/types:BaseShape' element is"
        " invalid - The value 'Everything' is invalid according to its datatype"
        " 'http://schemas.microsoft.com/exchange/services/2006/types:DefaultShapeNamesType'"
        " - The Enumeration constraint failed.",
    ),
    # A value that is no xs:dateTime.
    "bad-datetime": (
        envelope(create("      <t:Start>tomorrow</t:Start>")),
        8, 26,
        "The 'http://schemas.microsoft.com/exchange/services/2006/types:Start' element is"
        " invalid - The value 'tomorrow' is invalid according to its datatype"
        " 'http://www.w3.org/2001/XMLSchema:dateTime'.",
    ),
    # A required element missing: at the end tag of the element that lacks it.
    "missing-required-element": (
        envelope("<m:GetFolder>\n"
                 "  <m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>\n"
                 "</m:GetFolder>"),
        7, 3,
        "The element 'GetFolder' in namespace"
        " 'http://schemas.microsoft.com/exchange/services/2006/messages' has incomplete"
        " content. List of possible elements expected: 'FolderIds' in namespace"
        " 'http://schemas.microsoft.com/exchange/services/2006/messages'.",
    ),
    # A required attribute missing: at the element.
    "missing-required-attribute": (
        envelope('<m:DeleteItem><m:ItemIds><t:ItemId Id="AAA="/></m:ItemIds></m:DeleteItem>'),
        5, 2,
        "The required attribute 'DeleteType' is missing.",
    ),
    # An attribute the schema does not declare.
    "unknown-attribute": (
        envelope('<m:DeleteItem DeleteType="HardDelete" Force="true">'
                 '<m:ItemIds><t:ItemId Id="AAA="/></m:ItemIds></m:DeleteItem>'),
        5, 39,
        "The 'Force' attribute is not declared.",
    ),
    # SOAP headers the schema declares are checked too (a client asking for a version
    # this server does not know gets this from Exchange).
    "bad-request-server-version": (
        envelope(GET_FOLDER.format(shape="IdOnly", folder="calendar"),
                 header='<t:RequestServerVersion Version="Exchange2099"/>'),
        3, 35,
        "The 'Version' attribute is invalid - The value 'Exchange2099' is invalid according to"
        " its datatype 'http://schemas.microsoft.com/exchange/services/2006/types:"
        "ExchangeVersionType' - The Enumeration constraint failed.",
    ),
    "impersonation-without-an-address": (
        envelope(GET_FOLDER.format(shape="IdOnly", folder="calendar"),
                 header='<t:ExchangeImpersonation><t:ConnectingSID/></t:ExchangeImpersonation>'),
        3, 37,
        f"The element 'ConnectingSID' {TYPES_NS} has incomplete content.",
    ),
    # Several violations: the first in the document is reported, as .NET's streaming
    # validator stops there.
    "first-violation-wins": (
        envelope(create("      <t:Start>later</t:Start>\n"
                        "      <t:Colour/>")),
        8, 23,
        "The 'http://schemas.microsoft.com/exchange/services/2006/types:Start' element",
    ),
    # Positions count characters (UTF-16 code units, as .NET), not bytes.
    "position-in-characters": (
        envelope(create("      <t:Subject>Grüße 😀</t:Subject><t:Colour/>")),
        8, 39,
        f"The element 'CalendarItem' {TYPES_NS} has invalid child element 'Colour'",
    ),
}


def _fault(answer: bytes) -> tuple[str, str, str, str]:
    root = etree.fromstring(answer)
    detail = root.find(".//detail")
    assert detail is not None
    xml = detail.find(f"{T}MessageXml")
    assert xml is not None
    return (root.findtext(".//faultstring") or "", xml.findtext(f"{T}LineNumber") or "",
            xml.findtext(f"{T}LinePosition") or "", xml.findtext(f"{T}Violation") or "")


@pytest.mark.parametrize(("body", "line", "position", "violation"), INVALID.values(),
                         ids=INVALID.keys())
def test_invalid_requests_are_answered_error_schema_validation(
    server: EwsServer, body: bytes, line: int, position: int, violation: str
) -> None:
    status, _, answer = raw_post(server.url, body)
    assert status == 500
    assert classify(answer).fault_code == "ErrorSchemaValidation"
    root = etree.fromstring(answer)
    assert root.findtext(f".//{{{ERRORS}}}Message") == "The request failed schema validation."
    faultstring, got_line, got_position, got_violation = _fault(answer)
    assert (int(got_line), int(got_position)) == (line, position)
    assert got_violation.startswith(violation)
    assert faultstring == f"The request failed schema validation: {got_violation}"
    # Refused before anything happened.
    mailbox = server.store.mailbox("alice@example.com")
    assert mailbox is not None
    assert mailbox.items == {}


def test_positions_refer_to_the_request_as_sent(server: EwsServer) -> None:
    # CRLF line ends, a comment and indentation the parser drops: still the client's lines.
    body = envelope(create("      <!-- a note -->\n"
                           '      <t:Body BodyType="Text">x<br/></t:Body>')).replace(
        b"\n", b"\r\n")
    _, _, answer = raw_post(server.url, body)
    _, line, position, _ = _fault(answer)
    assert (line, position) == ("9", "33")


def test_malformed_xml_is_located_too(server: EwsServer) -> None:
    # Not well-formed: Exchange answers ErrorSchemaValidation with .NET's XmlException,
    # which names the place (here the end tag that does not match).
    body = envelope("<m:GetFolder>\n  <m:FolderShape>\n</m:GetFolder>")
    status, _, answer = raw_post(server.url, body)
    assert status == 500
    assert classify(answer).fault_code == "ErrorSchemaValidation"
    _, line, position, violation = _fault(answer)
    assert (line, position) == ("7", "3")
    assert violation == "Mismatched tag. Line 7, position 3."


def test_exchangelib_reads_the_fault_with_line_and_position(server: EwsServer) -> None:
    # A client asking for a version the schema does not know, through the real exchangelib.
    config = Configuration(
        service_endpoint=server.url, auth_type=BASIC, retry_policy=FailFast(),
        credentials=Credentials("alice@example.com", USERS["alice@example.com"]),
        version=Version(build=EXCHANGE_2016, api_version="Exchange2099"))
    account = Account("alice@example.com", config=config, autodiscover=False)
    with pytest.raises(ErrorSchemaValidation, match=r"ExchangeVersionType.*\(line: 2 position: \d+\)"):
        account.calendar.refresh()


def test_exchangelib_still_works_through_the_validating_stand_in(alice: Account) -> None:
    # exchangelib escapes HTML bodies, which Exchange (and the stand-in) accept.
    item = CalendarItem(account=alice, folder=alice.calendar, subject="Lunch",
                        body=HTMLBody("<p>Hi <b>all</b></p>"),
                        start=EWSDateTime(2024, 5, 1, 12, tzinfo=BERLIN),
                        end=EWSDateTime(2024, 5, 1, 13, tzinfo=BERLIN))
    item.save()
    got = alice.calendar.get(id=item.id)
    assert got.body == "<p>Hi <b>all</b></p>"
    got.subject = "Lunch, later"
    got.save(update_fields=["subject"])
    got.delete()


def _corpus_requests() -> list[Path]:
    return sorted(SHARED_CORPUS.glob("*/*_req.xml")) if SHARED_CORPUS.is_dir() else []


@pytest.mark.parametrize("path", FIXTURE_REQUESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_requests_are_valid(path: Path) -> None:
    # Microsoft's documented requests and the synthetic ones built after them.
    body = path.read_bytes()
    assert schema().check_request(parse_xml(body), body) is None


@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="../shared/corpus/ews is absent")
@pytest.mark.parametrize("path", _corpus_requests(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shared_corpus_requests_are_valid(server: EwsServer, path: Path) -> None:
    body = path.read_bytes()
    assert schema().check_request(parse_xml(body), body) is None
    # Through the stand-in too: whatever it answers, it is not a schema violation.
    status, _, answer = raw_post(server.url, body)
    assert b"ErrorSchemaValidation" not in answer, (status, answer[:300])


def test_the_envelope_header_validates() -> None:
    data = wire.envelope(wire.response("GetFolder", [wire.success("GetFolder")]))
    root = parse_xml(data)
    header = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Header")
    assert header is not None
    for element in [*header, *root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")]:
        assert schema().errors(element) == []


def test_the_schema_ships_with_the_package() -> None:
    # Installed as package data, not read from ../shared.
    assert {p.name for p in SCHEMA_DIR.glob("*.xsd")} == {"messages.xsd", "types.xsd",
                                                          "xml.xsd"}
    assert "shared" not in SCHEMA_DIR.parts


# --- strict mode: the stand-in's own responses ----------------------------------------------

def test_the_suite_runs_in_strict_mode() -> None:
    # tests/conftest.py turns it on for every stand-in, in-process or a subprocess.
    with start_server(users=USERS) as srv:
        assert srv.service.strict_responses


def test_strict_mode_catches_a_broken_response_shape() -> None:
    # What strict mode checks every response with (service.py raises on a non-empty list,
    # and the server answers ErrorInternalServerError): an error message without m:Items,
    # which ItemInfoResponseMessageType requires, fails; the stand-in's own passes.
    message = wire.failure("GetItem", "ErrorItemNotFound", "The specified object was not found.")
    assert schema().response_errors(wire.response("GetItem", [message])) == []
    message.remove(message[-1])
    errors = schema().response_errors(wire.response("GetItem", [message]))
    assert len(errors) == 1
    assert "GetItemResponseMessage" in errors[0] and "Missing child element" in errors[0]


def test_strict_mode_off_answers_as_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRICT_RESPONSES_ENV, "0")
    with start_server(users=USERS) as srv:
        assert not srv.service.strict_responses
    with start_server(users=USERS, strict_responses=True) as srv:
        assert srv.service.strict_responses


def test_validation_from_many_threads_gives_each_request_its_own_answer() -> None:
    # The server validates from one thread per connection; one schema serves them all.
    bodies = [case[0] for case in INVALID.values()] + [path.read_bytes()
                                                       for path in FIXTURE_REQUESTS]
    expected = [schema().check_request(parse_xml(b), b) for b in bodies]

    def check(index: int) -> Violation | None:
        body = bodies[index % len(bodies)]
        return schema().check_request(parse_xml(body), body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(check, range(len(bodies) * 8)))
    assert got == expected * 8


def test_validation_cost_per_request(server: EwsServer) -> None:
    # Schema validation of a typical request costs well under a millisecond of CPU.
    body = envelope(create("      <t:Subject>Lunch</t:Subject>\n"
                           "      <t:Start>2024-05-01T10:00:00Z</t:Start>\n"
                           "      <t:End>2024-05-01T11:00:00Z</t:End>"))
    root = parse_xml(body)
    checker = schema()
    assert checker.check_request(root, body) is None
    rounds = 200
    started = time.process_time()
    for _ in range(rounds):
        checker.check_request(root, body)
    per_request = (time.process_time() - started) / rounds
    assert per_request < 0.005
