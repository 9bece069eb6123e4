"""Errors keep their meaning: Google's status and reason, Exchange's ResponseCode and
message stay visible (attributes and str()), only a failure of the transport is
retryable, and an exception of ours is never dressed up as the server's."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests
from exchangelib import EWSDateTime
from exchangelib import errors as ews

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.backends.base import (
    ExchangeConflict,
    ExchangeError,
    GoogleConflict,
    GoogleError,
    VersionConflict,
    google_error,
)
from sync.backends.exchange import ExchangeMailbox, exchange_error
from sync.backends.google import GoogleCalendar
from tests.sync.backends.conftest import admin, alice, backend_config
from tests.sync.conftest import BERLIN


def body(reason: str, message: str = "Something") -> bytes:
    """An error body in Google's shape (errors guide)."""
    return json.dumps(
        {"error": {"errors": [{"domain": "global", "reason": reason, "message": message}],
                   "code": 400, "message": message}}
    ).encode()


# --- Google: every answer, read from the response ---------------------------------------------

GOOGLE_ANSWERS = [
    # (status, body, Retry-After) -> reason, retryable, retry_after
    # the caller's own mistakes and final answers: never retried
    (400, body("invalid"), None, "invalid", False, None),
    (400, body("required"), None, "required", False, None),
    (401, body("authError"), None, "authError", False, None),  # google-auth already refreshed
    (403, body("forbidden"), None, "forbidden", False, None),
    (403, body("quotaExceeded"), None, "quotaExceeded", False, None),  # a usage limit of hours
    (404, body("notFound"), None, "notFound", False, None),
    (409, body("duplicate"), None, "duplicate", False, None),
    (410, body("deleted"), None, "deleted", False, None),
    (410, body("fullSyncRequired"), None, "fullSyncRequired", False, None),
    (412, body("conditionNotMet"), None, "conditionNotMet", False, None),
    # slow down: the errors guide says exponential backoff, whatever the status
    (403, body("rateLimitExceeded"), None, "rateLimitExceeded", True, None),
    (403, body("userRateLimitExceeded"), "30", "userRateLimitExceeded", True, 30.0),
    (429, body("rateLimitExceeded"), "7", "rateLimitExceeded", True, 7.0),
    # Google's own failures
    (500, body("backendError"), None, "backendError", True, None),
    (502, b"<html>Bad Gateway</html>", None, "error", True, None),
    (503, b"", "bogus", "error", True, None),
]


@pytest.mark.parametrize(
    ("status", "content", "retry_after", "reason", "retryable", "after"), GOOGLE_ANSWERS
)
def test_google_error_keeps_status_and_reason(
    status: int,
    content: bytes,
    retry_after: str | None,
    reason: str,
    retryable: bool,
    after: float | None,
) -> None:
    error = google_error(status, content, retry_after)
    assert (error.status, error.reason, error.retryable, error.retry_after) == (
        status,
        reason,
        retryable,
        after,
    )
    assert str(error).startswith(f"Google {status} {reason}")
    assert isinstance(error, GoogleConflict) == (status == 412)
    assert isinstance(error, VersionConflict) == (status == 412)


def test_no_answer_from_google_is_retryable() -> None:
    assert GoogleError(0, "unreachable", "ConnectionRefusedError").retryable


# --- Google: the same through the real client and the stand-in's faults -----------------------


@pytest.mark.parametrize(
    ("kind", "status", "reason", "after"),
    [
        ("403", 403, "rateLimitExceeded", 3.0),
        ("429", 429, "rateLimitExceeded", 3.0),
        ("500", 500, "backendError", None),
        ("503", 503, "backendError", 3.0),
        ("outage", 0, "unreachable", None),
    ],
)
def test_google_outages_through_the_client_are_retryable(
    google_calendar: GoogleCalendar,
    google: GoogleCalendarServer,
    kind: str,
    status: int,
    reason: str,
    after: float | None,
) -> None:
    # until cleared: httplib2 itself sends a request again once when its connection drops
    admin(google.url, "/_admin/faults", {"kind": kind, "retryAfter": 3}, "POST")
    with pytest.raises(GoogleError) as caught:
        google_calendar.get("event00001")
    admin(google.url, "/_admin/faults", method="DELETE")
    error = caught.value
    assert error.status == status and error.retryable
    if status:
        assert (error.reason, error.retry_after) == (reason, after)
    assert google_calendar.get("event00001") is None  # the outage is over: 404 again


def test_a_bug_of_ours_is_not_a_google_error(google_calendar: GoogleCalendar) -> None:
    # a body the client cannot serialise is our bug: it propagates as itself
    with pytest.raises(TypeError):
        google_calendar.insert({"summary": "x", "start": {"dateTime": object()}})


# --- Exchange: every exception exchangelib and requests raise, classified ---------------------

EXCHANGE_FAILURES = [
    # (exception) -> code, retryable, back_off
    # answers: Exchange's ResponseCode, final
    (ews.ErrorItemNotFound("The specified object was not found in the store."),
     "ErrorItemNotFound", False, None),
    (ews.ErrorAccessDenied("Access is denied."), "ErrorAccessDenied", False, None),
    (ews.ErrorInvalidIdMalformed("Id is malformed."), "ErrorInvalidIdMalformed", False, None),
    (ews.ErrorInternalServerError("The operation failed."), "ErrorInternalServerError",
     False, None),
    (ews.ErrorSchemaValidation("The request failed schema validation."),
     "ErrorSchemaValidation", False, None),
    (ews.ErrorInvalidSyncStateData("Synchronization state data is corrupt."),
     "ErrorInvalidSyncStateData", False, None),
    (ews.UnauthorizedError("Invalid credentials for https://ews/"), "UnauthorizedError",
     False, None),
    (ews.RedirectError("https://elsewhere.example.com/EWS/Exchange.asmx"), "RedirectError",
     False, None),
    # throttled or a server that cannot answer now: retryable, with its back-off
    (ews.ErrorServerBusy("Try again later.", back_off=1.5), "ErrorServerBusy", True, 1.5),
    (ews.ErrorServerBusy("Reraised from ErrorInternalServerTransientError(HTTP 503)"),
     "ErrorServerBusy", True, None),
    (ews.ErrorTimeoutExpired("Reraised from ConnectionError(refused)"), "ErrorTimeoutExpired",
     True, None),
    (ews.ErrorInternalServerTransientError("Transient"), "ErrorInternalServerTransientError",
     True, None),
    (ews.ErrorMailboxStoreUnavailable("Store down"), "ErrorMailboxStoreUnavailable", True, None),
    (ews.RateLimitError("Max timeout reached", wait=12.0), "RateLimitError", True, 12.0),
    # no answer at all: the transport
    (ews.TransportError("Unknown failure"), "TransportError", True, None),
    (ews.MalformedResponseError("Not XML"), "MalformedResponseError", True, None),
    (requests.ConnectionError("refused"), "ConnectionError", True, None),
    (requests.ReadTimeout("read timed out"), "ReadTimeout", True, None),
    (ConnectionRefusedError(111, "Connection refused"), "ConnectionRefusedError", True, None),
    (TimeoutError("timed out"), "TimeoutError", True, None),
]


@pytest.mark.parametrize(("exc", "code", "retryable", "back_off"), EXCHANGE_FAILURES)
def test_exchange_error_keeps_the_response_code(
    exc: BaseException, code: str, retryable: bool, back_off: float | None
) -> None:
    error = exchange_error(exc)
    assert error is not None
    assert (error.code, error.retryable, error.back_off, error.retry_after) == (
        code,
        retryable,
        back_off,
        back_off,
    )
    assert code in str(error)
    assert str(exc)[:40] in error.message
    assert not isinstance(error, ExchangeConflict)


def test_irresolvable_conflict_is_a_version_conflict() -> None:
    error = exchange_error(ews.ErrorIrresolvableConflict("The change key does not match."))
    assert isinstance(error, ExchangeConflict) and isinstance(error, VersionConflict)
    assert error.code == "ErrorIrresolvableConflict" and not error.retryable


@pytest.mark.parametrize(
    "exc",
    [
        # our own bugs: never the server's answer, never retried as an outage
        TypeError("unsupported operand"),
        AttributeError("'NoneType' object has no attribute 'id'"),
        KeyError("start"),
        ValueError("bad value"),
        ews.InvalidTypeError("subject", 42, str),
        FileNotFoundError(2, "No such file"),
    ],
)
def test_our_own_exceptions_are_not_translated(exc: BaseException) -> None:
    assert exchange_error(exc) is None


# --- Exchange: the same through the real client and the stand-in ------------------------------


def ews_fault(ews_server: EwsServer, **spec: object) -> None:
    admin(ews_server.base_url, "/_admin/faults", {"count": 1, **spec}, "POST")


@pytest.mark.parametrize(
    ("kind", "code", "back_off"),
    [
        ("ErrorServerBusy", "ErrorServerBusy", 1.5),
        ("http503", "ErrorServerBusy", None),  # exchangelib re-raises HTTP 503 as busy
        ("outage", "ErrorTimeoutExpired", None),  # ... and a dropped connection as a timeout
    ],
)
def test_exchange_outages_through_the_client_are_retryable(
    exchange_mailbox: ExchangeMailbox, ews: EwsServer, kind: str, code: str, back_off: float | None
) -> None:
    item_id, _ = exchange_mailbox.create(
        {"subject": "x", "start": EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
         "end": EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN)}
    )
    ews_fault(ews, kind=kind, backOffMilliseconds=1500)
    with pytest.raises(ExchangeError) as caught:
        exchange_mailbox.missing([item_id])
    error = caught.value
    assert error.code == code and error.retryable
    if back_off is not None:
        assert error.back_off == back_off and "back off 1.5 s" in str(error)
    assert str(error).startswith(f"Exchange unavailable: {code}")
    assert exchange_mailbox.missing([item_id]) == set()  # the fault is spent


def test_wrong_exchange_credentials_are_final(
    tmp_path: Path, ews: EwsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALSYNC_TEST_ALICE_PASSWORD", "wrong")
    config = backend_config(tmp_path, ews=ews)
    with pytest.raises(ExchangeError) as caught:
        ExchangeMailbox(config, alice(config)).calendar_folder_id()
    assert caught.value.code == "UnauthorizedError" and not caught.value.retryable
    assert str(caught.value).startswith("Exchange refused the credentials")


def test_an_exchange_nobody_answers_is_retryable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = backend_config(tmp_path)
    config = type(config)(
        **{**{f: getattr(config, f) for f in config.__slots__},  # type: ignore[attr-defined]
           "exchange_ews_url": f"http://127.0.0.1:{port}/EWS/Exchange.asmx"}
    )
    with pytest.raises(ExchangeError) as caught:
        ExchangeMailbox(config, alice(config)).calendar_folder_id()
    assert caught.value.retryable


@pytest.mark.parametrize(
    "values",
    [
        {"subject": 42},  # exchangelib refuses the type when it saves
        {"no_such_field": "x"},  # not a CalendarItem field
    ],
)
def test_a_bug_of_ours_is_not_an_exchange_error(
    exchange_mailbox: ExchangeMailbox, values: dict[str, object]
) -> None:
    start = EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN)
    with pytest.raises((TypeError, AttributeError, ValueError)) as caught:
        exchange_mailbox.create({"start": start, "end": start, **values})
    assert not isinstance(caught.value, ExchangeError)
    item_id, _ = exchange_mailbox.create({"subject": "ok", "start": start, "end": start})
    item = exchange_mailbox.calendar_item(item_id)
    with pytest.raises((TypeError, AttributeError, ValueError)) as caught:
        exchange_mailbox.update(item, values)
    assert not isinstance(caught.value, ExchangeError)
