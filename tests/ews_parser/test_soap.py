"""The envelope, header and faults (ews_parser/soap.py)."""

from __future__ import annotations

import pytest

from ews_parser import EwsParseError, classify, parse
from ews_parser.values import Fault, Impersonation, UnknownOperation
from tests.ews_parser.conftest import load

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"


def test_header_of_an_impersonated_request() -> None:
    envelope = parse(load("create/msdocs_createitem_impersonation_req.xml"))
    impersonation = envelope.header.impersonation
    assert impersonation is not None
    assert impersonation.mailbox and "@" in impersonation.mailbox
    assert (
        classify(load("create/msdocs_createitem_impersonation_req.xml")).impersonation
        == impersonation
    )


def test_impersonation_by_sid_and_mailbox_culture() -> None:
    envelope = parse(load("synthetic/getfolder_calendar_impersonation_sid_req.xml"))
    assert envelope.header.impersonation == Impersonation(
        sid="S-1-5-21-1004336348-1177238915-682003330-512"
    )
    assert envelope.header.mailbox_culture == "de-DE"
    assert envelope.header.request_server_version == "Exchange2016"


def test_time_zone_context_and_server_version() -> None:
    request = parse(load("create/msdocs_createitem_allday_vacation_req.xml")).header
    assert request.time_zone_context == "Eastern Standard Time"
    assert request.request_server_version == "Exchange2007_SP1"
    response = parse(load("get/pyexchange_getitem_recurring_master_weekly_resp.xml")).header
    assert response.server_version_info is not None
    assert response.server_version_info.major_version == 14


def test_delegate_folder_names_its_mailbox() -> None:
    classification = classify(load("create/msdocs_createitem_delegate_calendar_req.xml"))
    (folder,) = classification.folders
    assert folder.id == "calendar"
    assert folder.mailbox and "@" in folder.mailbox


FAULTS = [
    # (fixture, code, back-off ms)
    (
        "errors/exchangelib_soapfault_ErrorServerBusy_BackOffMilliseconds.xml",
        "ErrorServerBusy",
        297749,
    ),
    ("errors/ewsrs_soapfault_ErrorServerBusy_contrived.xml", "ErrorServerBusy", 25),
    (
        "errors/ewsrs_soapfault_ErrorExceededConnectionCount_MaxConcurrency.xml",
        "ErrorExceededConnectionCount",
        None,
    ),
    ("errors/exchangelib_soapfault_ErrorSchemaValidation.xml", "ErrorSchemaValidation", None),
    ("errors/pyexchange_soapfault_ErrorSchemaValidation.xml", "ErrorSchemaValidation", None),
    (
        "errors/ewsrs_soapfault_ErrorSchemaValidation_from_evolution_ews.xml",
        "ErrorSchemaValidation",
        None,
    ),
]


@pytest.mark.parametrize(("name", "code", "back_off"), FAULTS)
def test_faults(name: str, code: str, back_off: int | None) -> None:
    envelope = parse(load(name))
    assert envelope.kind == "fault" and envelope.operation is None
    fault = envelope.body
    assert isinstance(fault, Fault)
    assert fault.response_code == code  # trimmed: servers pad it with newlines
    assert fault.back_off_ms == back_off
    assert fault.faultstring
    cheap = classify(load(name))
    assert (cheap.fault_code, cheap.back_off_ms) == (code, back_off)


def test_schema_validation_fault_keeps_line_and_position() -> None:
    fault = parse(load("errors/pyexchange_soapfault_ErrorSchemaValidation.xml")).body
    assert isinstance(fault, Fault)
    names = dict(fault.message_xml)
    assert "LineNumber" in names and "LinePosition" in names


def envelope(body: str, *, soap: str = S) -> bytes:
    return f'<s:Envelope xmlns:s="{soap}" xmlns:m="{M}" xmlns:t="{T}"><s:Body>{body}</s:Body></s:Envelope>'.encode()


def test_unknown_but_well_formed_operations_are_not_errors() -> None:
    body = envelope("<m:GetUserAvailabilityRequest><m:Whatever/></m:GetUserAvailabilityRequest>")
    parsed = parse(body)
    assert parsed.operation == "GetUserAvailabilityRequest"
    assert isinstance(parsed.body, UnknownOperation)
    assert not parsed.known
    cheap = classify(body)
    assert (cheap.kind, cheap.operation, cheap.known) == (
        "request",
        "GetUserAvailabilityRequest",
        False,
    )
    response = envelope("<m:ResolveNamesResponse><m:ResponseMessages/></m:ResolveNamesResponse>")
    assert not classify(response).known
    assert isinstance(parse(response).body, UnknownOperation)


BAD_ENVELOPES = [
    # (body, words the message must contain)
    (b"<root/>", "not a SOAP envelope"),
    (f'<s:Envelope xmlns:s="{S}"/>'.encode(), "without a Body"),
    (f'<s:Envelope xmlns:s="{S}"><s:Body/></s:Envelope>'.encode(), "Body is empty"),
    # wrong namespaces
    (envelope("<m:CreateItem/>", soap="http://www.w3.org/2003/05/soap-envelope"), "SOAP 1.2"),
    (envelope("<m:CreateItem/>", soap="https://schemas.xmlsoap.org/soap/envelope/"), "namespace"),
    (envelope('<CreateItem xmlns="urn:not-ews"/>'), "not an EWS message"),
    # shapes a reader must refuse
    (envelope("<m:CreateItemResponse/>"), "without ResponseMessages"),
    (
        envelope(
            "<m:DeleteItemResponse><m:ResponseMessages><m:DeleteItemResponseMessage/></m:ResponseMessages></m:DeleteItemResponse>"
        ),
        "without ResponseClass",
    ),
    (
        envelope('<m:DeleteItem><m:ItemIds><t:ItemId ChangeKey="x"/></m:ItemIds></m:DeleteItem>'),
        "without an Id",
    ),
    (
        envelope(
            '<m:DeleteItem><m:ItemIds><t:OccurrenceItemId RecurringMasterId="a" InstanceIndex="x"/></m:ItemIds></m:DeleteItem>'
        ),
        "InstanceIndex",
    ),
    (
        envelope(
            "<m:UpdateItem><m:ItemChanges><t:ItemChange><t:Updates/></t:ItemChange></m:ItemChanges></m:UpdateItem>"
        ),
        "names no item",
    ),
]


@pytest.mark.parametrize(("body", "says"), BAD_ENVELOPES)
def test_bad_envelopes_say_what_is_wrong(body: bytes, says: str) -> None:
    for read in (parse, classify):
        with pytest.raises(EwsParseError, match=says):
            read(body)
