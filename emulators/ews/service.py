"""One EWS request in, one answer out: credentials, impersonation, dispatch, faults.

No sockets here (the HTTP layer is `server.py`): `EwsService.handle` takes the
authenticated user and the body bytes and returns the HTTP status and body.
References:
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/impersonation-and-ews-in-exchange
(ErrorImpersonateUserDenied when the caller may not impersonate; ErrorNonExistentMailbox
when the address has no mailbox)
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-soap-faults
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exchangelib.fields import BooleanField
from exchangelib.items import CalendarItem
from lxml import etree

from emulators.ews import wire
from emulators.ews.mailbox import Mailbox, Store
from emulators.ews.schema import Violation, schema, syntax_violation
from emulators.ews.services import HANDLERS, Context
from emulators.ews.services.get_streaming_events import Stream, open_stream, schema_form
from emulators.ews.subscriptions import Hub, Policy
from ews_parser import EwsParseError, EwsResponseError, parse
from ews_parser.values import Envelope
from ews_parser.xml import parse_xml, t

log = logging.getLogger("calsync.emulators.ews")

#: Set to 1 to check every response against the schema and answer ErrorInternalServerError
#: (logged with what is wrong) for one that fails: the test suite runs with it on.
STRICT_RESPONSES_ENV: Final = "CALSYNC_EWS_STRICT_RESPONSES"

_FAULT_TEXT: Final = {
    "ErrorInvalidRequest": "The request is invalid.",
    "ErrorSchemaValidation": "The request failed schema validation.",
    "ErrorImpersonateUserDenied": "The account does not have permission to impersonate the"
    " requested user.",
    "ErrorNonExistentMailbox": "The SMTP address has no mailbox associated with it.",
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    #: HTTP headers beside the body (Set-Cookie)
    headers: tuple[tuple[str, str], ...] = ()


def fault_answer(code: str, *, back_off_ms: int | None = None, text: str | None = None) -> Answer:
    # Exchange sends SOAP faults with HTTP 500 (SOAP 1.1 section 6.2).
    return Answer(500, wire.fault(code, text or _FAULT_TEXT.get(code, code),
                                  back_off_ms=back_off_ms))


def schema_fault(violation: Violation) -> Answer:
    """ErrorSchemaValidation as Exchange words it: the violation in faultstring, and with
    its line and position in detail/t:MessageXml."""
    text = _FAULT_TEXT["ErrorSchemaValidation"]
    return Answer(500, wire.fault(
        "ErrorSchemaValidation", text,
        faultstring=f"{text.rstrip('.')}: {violation.message}",
        message_xml=(("LineNumber", str(violation.line)),
                     ("LinePosition", str(violation.position)),
                     ("Violation", violation.message)),
    ))


class InvalidResponseError(Exception):
    """Strict mode: a response the stand-in built fails Exchange's schema (a stand-in bug)."""


def strict_from_env() -> bool:
    return os.environ.get(STRICT_RESPONSES_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True, slots=True)
class SendRecord:
    """One meeting-message option seen on a request (for tests to assert SendToNone)."""

    operation: str
    mailbox: str
    attribute: str
    value: str | None

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "mailbox": self.mailbox,
                "attribute": self.attribute, "value": self.value}


class EwsService:
    """The EWS endpoint without the HTTP: users, who may impersonate, the store."""

    def __init__(self, store: Store, passwords: dict[str, str], impersonators: set[str], *,
                 strict_responses: bool | None = None, policy: Policy | None = None) -> None:
        self.store = store
        #: notification subscriptions and streaming connections (Subscribe, GetEvents, ...)
        self.hub = Hub(store, policy)
        #: Check each response against the schema (None: from CALSYNC_EWS_STRICT_RESPONSES).
        self.strict_responses = (strict_from_env() if strict_responses is None
                                 else strict_responses)
        self._passwords = {a.lower(): p for a, p in passwords.items()}
        self._impersonators = {a.lower() for a in impersonators}
        self._records: list[SendRecord] = []
        self._records_lock = threading.Lock()

    # -- credentials

    def check_password(self, user: str, password: str) -> str | None:
        """The canonical address for good credentials, else None."""
        expected = self._passwords.get(user.lower())
        if expected is None or not _same(expected, password):
            return None
        return user.lower()

    def knows(self, user: str) -> bool:
        return user.lower() in self._passwords

    def password_of(self, user: str) -> str | None:
        """For NTLM, which needs the secret to check the client's proof."""
        return self._passwords.get(user.lower())

    # -- the meeting-message options

    def records(self) -> list[dict[str, Any]]:
        with self._records_lock:
            return [r.to_json() for r in self._records]

    def clear_records(self) -> None:
        with self._records_lock:
            self._records.clear()

    # -- requests

    def acting_mailbox(self, user: str, envelope: Envelope) -> Mailbox | Answer:
        impersonation = envelope.header.impersonation
        if impersonation is None:
            mailbox = self.store.mailbox(user)
            return mailbox if mailbox is not None else fault_answer("ErrorNonExistentMailbox")
        if user.lower() not in self._impersonators:
            return fault_answer("ErrorImpersonateUserDenied")
        address = impersonation.primary_smtp_address or impersonation.smtp_address \
            or impersonation.principal_name
        mailbox = self.store.mailbox(address) if address else None
        if mailbox is None:
            return fault_answer("ErrorNonExistentMailbox")
        return mailbox

    def parse(self, body: bytes) -> Envelope | Answer:
        try:
            root = parse_xml(body)
        except EwsParseError:
            broken = syntax_violation(body)
            return schema_fault(broken) if broken else fault_answer("ErrorSchemaValidation")
        # The document as sent, so that line and position point into the client's bytes.
        violation = schema().check_request(root, body)
        if violation is not None:
            log.info("ErrorSchemaValidation at line %d, position %d", violation.line,
                     violation.position)
            return schema_fault(violation)
        try:
            envelope = parse(_xs_booleans(body))
        except EwsParseError:
            return fault_answer("ErrorSchemaValidation")
        if envelope.kind != "request" or envelope.operation is None:
            return fault_answer("ErrorInvalidRequest")
        return envelope

    def _context(self, user: str, envelope: Envelope, body: bytes,
                 headers: Mapping[str, str] | None, secure: bool) -> Context | Answer:
        acting = self.acting_mailbox(user, envelope)
        if isinstance(acting, Answer):
            log.info("%s refused for the requested mailbox", envelope.operation)
            return acting
        mailbox = acting

        def record(op: str, attribute: str, value: str | None) -> None:
            with self._records_lock:
                self._records.append(SendRecord(op, mailbox.address, attribute, value))

        return Context(mailbox=mailbox, envelope=envelope, body=body, record=record,
                       caller=user.lower(), hub=self.hub, headers=dict(headers or {}),
                       secure=secure)

    def handle(self, user: str, envelope: Envelope, body: bytes,
               headers: Mapping[str, str] | None = None, *, secure: bool = False) -> Answer:
        """Answer one request; `headers`: its HTTP headers by lower-case name."""
        operation = envelope.operation
        assert operation is not None
        handler = HANDLERS.get(operation)
        if handler is None:
            log.info("unsupported operation %s", operation)
            return fault_answer("ErrorInvalidRequest")
        answer = self._run(user, envelope, body, headers, secure,
                           lambda ctx: handler(ctx, envelope.body))
        assert isinstance(answer, Answer)
        return answer

    def open_stream(self, user: str, envelope: Envelope, body: bytes,
                    headers: Mapping[str, str] | None = None, *,
                    secure: bool = False) -> Answer | Stream:
        """GetStreamingEvents: the stream to serve, or the answer that refuses it."""
        return self._run(user, envelope, body, headers, secure,
                         lambda ctx: open_stream(ctx, self.check))

    def _run(self, user: str, envelope: Envelope, body: bytes,
             headers: Mapping[str, str] | None, secure: bool,
             act: Callable[[Context], list[etree._Element] | Stream]) -> Answer | Stream:
        operation = envelope.operation
        assert operation is not None
        ctx = self._context(user, envelope, body, headers, secure)
        if isinstance(ctx, Answer):
            return ctx
        with self.store.lock:
            try:
                messages = act(ctx)
            except EwsResponseError as exc:
                return fault_answer(exc.code, text=exc.message)
        if isinstance(messages, Stream):
            return messages
        log.debug("%s answered with %d message(s)", operation, len(messages))
        payload = wire.response(operation, messages)
        self.check(payload)
        return Answer(200, wire.envelope(payload), tuple(ctx.response_headers))

    def check(self, payload: etree._Element) -> None:
        """Strict mode: raise InvalidResponseError for a response that fails the schema
        (GetStreamingEvents' as its schema reads it: see get_streaming_events.py)."""
        if not self.strict_responses:
            return
        operation = etree.QName(payload).localname.removesuffix("Response")
        checked = schema_form(payload) if operation == "GetStreamingEvents" else payload
        errors = schema().response_errors(checked)
        if errors:
            log.error("%s response fails the EWS schema:\n%s", operation, "\n".join(errors))
            raise InvalidResponseError(f"{operation} response fails the EWS schema: "
                                       + "; ".join(errors))


#: Calendar item elements typed xs:boolean.
_BOOLEANS: Final = frozenset(
    t(f.field_uri.partition(":")[2]) for f in CalendarItem.FIELDS
    if isinstance(f, BooleanField) and f.field_uri
)


def _xs_booleans(body: bytes) -> bytes:
    """Rewrite xs:boolean "1"/"0" as "true"/"false" before ews_parser reads the body.

    xs:boolean allows both spellings and exchangelib sends 1/0, but exchangelib's reader
    (which ews_parser uses) knows only true/false and reads 1/0 as None, so an all-day item
    created by exchangelib would lose IsAllDayEvent (reported as an ews_parser bug).
    """
    if b">1<" not in body and b">0<" not in body:
        return body
    try:
        root = parse_xml(body)
    except EwsParseError:
        return body  # ews_parser.parse will say why
    changed = False
    for elem in root.iter(*_BOOLEANS):
        if elem.text in ("1", "0"):
            elem.text = "true" if elem.text == "1" else "false"
            changed = True
    if not changed:
        return body
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return data


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
