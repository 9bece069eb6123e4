"""Shared pieces for the addon tests: the Google stand-in, a config that points at it, EWS
flows built from request/response bodies, and a guard that fails any addon test in which
calsync reported an error the test did not declare (`calsync_log`)."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from emulators.google.server import GoogleCalendarServer

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "calsync.py"
USERS = ("alice@example.com", "bob@example.com")

# --- a test fails when calsync reports an error it did not expect ---------------------------
# The addon is fail-open: a hook that raises, or an exchange the observing thread cannot
# handle, is logged and the flow passes. A test that only looks at what was (not) mirrored
# would then pass whatever calsync did, so every addon test also fails on such a record.

#: calsync's loggers (the addon, the observing thread, the worker, push), and mitmproxy's
#: addon manager, which logs "Addon error" for a hook that raised inside its event chain
WATCHED_LOGGERS = ("calsync", "mitmproxy.addonmanager")


class CalsyncLog(logging.Handler):
    """The ERROR (and worse) records of the watched loggers during one test, and exceptions
    uncaught in threads: from the main thread and the threads started since the test began
    (a thread an earlier test left running is not this test's doing, whatever order the
    tests run in). `expect_error(pattern)` declares an error the test causes."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.thread_errors: list[str] = []
        self._expected: list[re.Pattern[str]] = []
        main = threading.main_thread()
        self._older = {t for t in threading.enumerate() if t is not main}

    def counts(self, thread: threading.Thread | None) -> bool:
        return thread not in self._older

    def emit(self, record: logging.LogRecord) -> None:
        if self.counts(threading.current_thread()):  # emit runs in the thread that logs
            self.records.append(record)  # Handler.handle holds the handler's lock

    def expect_error(self, pattern: str) -> None:
        """This test makes calsync log an ERROR whose message matches `pattern` (re.search);
        it must: an expected error that never came fails the test as well."""
        self._expected.append(re.compile(pattern))

    def problems(self) -> list[str]:
        records = list(self.records)
        errors = [r.getMessage() for r in records]
        found = [
            f"{record.levelname} {record.name}: {record.getMessage()}"
            for record in records
            if not any(p.search(record.getMessage()) for p in self._expected)
        ]
        found += [f"uncaught in thread {e}" for e in self.thread_errors]
        found += [
            f"expected an error matching {p.pattern!r}; none was logged"
            for p in self._expected
            if not any(p.search(message) for message in errors)
        ]
        return found


@pytest.fixture(autouse=True)
def calsync_log() -> Iterator[CalsyncLog]:
    """Autouse, so set up before the test's other fixtures and torn down after them: the
    records of an addon's shutdown count too."""
    handler = CalsyncLog()
    # no logger's level is lowered: an ERROR record passes the default ones, and a record
    # mitmproxy's root handler takes after its test's event loop has closed would raise in
    # the thread that logged it
    loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    previous_hook = threading.excepthook

    def thread_died(args: threading.ExceptHookArgs) -> None:
        if handler.counts(args.thread):
            name = args.thread.name if args.thread is not None else "?"
            handler.thread_errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        previous_hook(args)

    threading.excepthook = thread_died
    try:
        yield handler
    finally:
        threading.excepthook = previous_hook
        for logger in loggers:
            logger.removeHandler(handler)
    problems = handler.problems()
    if problems:
        pytest.fail("calsync reported errors this test did not expect:\n" + "\n".join(problems))


@pytest.fixture
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(port=0, users=USERS) as server:
        yield server


def token_file(directory: Path, server: GoogleCalendarServer, user: str) -> Path:
    """An authorized-user token file as google-auth writes it, for the stand-in."""
    path = directory / f"{user}.json"
    path.write_text(
        json.dumps(
            {
                "token": user,  # the stand-in's access token for a user is the address
                "refresh_token": f"refresh-{user}",
                "token_uri": server.token_uri,
                "client_id": "calsync-test",
                "client_secret": "calsync-test-secret",
                "scopes": ["https://www.googleapis.com/auth/calendar"],
            }
        )
    )
    path.chmod(0o600)
    return path


def write_config(
    directory: Path,
    server: GoogleCalendarServer,
    *,
    ews_url: str | None = None,
    extra: str = "",
    users: tuple[str, ...] = USERS,
) -> Path:
    tokens = directory / "tokens"
    tokens.mkdir(exist_ok=True)
    lines = [
        "[store]",
        f'path = "{directory / "calsync.db"}"',
        "[google]",
        f'api_endpoint = "{server.api_endpoint}"',
        f'token_uri = "{server.token_uri}"',
        "[outbox]",
        "max_attempts = 5",
        "backoff_base_s = 0.0",
    ]
    if ews_url:
        lines += ["[exchange]", f'ews_url = "{ews_url}"']
    for user in users:
        lines += [
            "[[users]]",
            f'mailbox = "{user}"',
            f'google_token_file = "{token_file(tokens, server, user)}"',
            f'exchange_password_env = "CALSYNC_TEST_{user.split("@")[0].upper()}_PASSWORD"',
        ]
    path = directory / "calsync.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def basic(user: str, password: str = "secret") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ews_flow(
    request_body: bytes,
    response_body: bytes,
    *,
    user: str | None = "alice@example.com",
    status: int = 200,
    path: str = "/EWS/Exchange.asmx",
    headers: dict[str, str] | None = None,
) -> http.HTTPFlow:
    request_headers: dict[str, Any] = {"content-type": "text/xml; charset=utf-8"}
    if user:
        request_headers["authorization"] = basic(user)
    request_headers.update(headers or {})
    request = tutils.treq(
        method=b"POST",
        path=path.encode(),
        host="mail.example.com",
        port=443,
        scheme=b"https",
        headers=http.Headers(**{k.replace("-", "_"): v for k, v in request_headers.items()}),
        content=request_body,
    )
    response = tutils.tresp(
        status_code=status,
        headers=http.Headers(content_type="text/xml; charset=utf-8"),
        content=response_body,
    )
    return tflow.tflow(req=request, resp=response)


# --- EWS bodies ---------------------------------------------------------------------------

ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    '<s:Header><h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" '
    'MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" Version="V2017_07_11"/>'
    "</s:Header><s:Body>{}</s:Body></s:Envelope>"
)


def envelope(body: str) -> bytes:
    return ENVELOPE.format(body).encode()


def long_id(name: str) -> str:
    """An opaque id of a real id's length (150+ characters), unique per name."""
    raw = f"calsync-test-item-{name}".encode() * 8
    return base64.b64encode(raw)[:152].decode()


_VERSIONS = itertools.count(1)


def _change_key(operation: str, item: str) -> str:
    if operation == "CreateItem":
        return f"DwAAAB{item[-12:]}"
    return f"DwAAAC{next(_VERSIONS):06d}{item[-6:]}"


def response(operation: str, *items: str | None, failed: tuple[int, ...] = ()) -> bytes:
    """One message per item: a CalendarItem with that id and a change key (derived from
    the id for a CreateItem; a new one for every other answer, as Exchange gives each
    version of an item a key of its own), no Items for None; the indexes in `failed`
    answer ErrorItemNotFound."""
    messages = []
    for index, item in enumerate(items):
        if index in failed:
            messages.append(
                f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>The specified '
                "object was not found in the store.</m:MessageText><m:ResponseCode>ErrorItemNotFound"
                f"</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Items/></m:{operation}ResponseMessage>"
            )
            continue
        found = (
            f'<m:Items><t:CalendarItem><t:ItemId Id="{item}" ChangeKey="{_change_key(operation, item)}"/></t:CalendarItem></m:Items>'
            if item
            else "<m:Items/>"
            if operation != "DeleteItem"
            else ""
        )
        messages.append(
            f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"{found}</m:{operation}ResponseMessage>"
        )
    return envelope(
        f"<m:{operation}Response><m:ResponseMessages>{''.join(messages)}</m:ResponseMessages></m:{operation}Response>"
    )


def create_request(
    *subjects: str, folder: str = '<t:DistinguishedFolderId Id="calendar"/>'
) -> bytes:
    items = "".join(
        f'<t:CalendarItem><t:Subject>{s}</t:Subject><t:Body BodyType="Text">Notes for {s}</t:Body>'
        "<t:Start>2026-03-02T09:00:00</t:Start><t:End>2026-03-02T10:00:00</t:End>"
        "<t:Location>Room 4</t:Location></t:CalendarItem>"
        for s in subjects
    )
    return envelope(
        '<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId>'
        f"{folder}</m:SavedItemFolderId><m:Items>{items}</m:Items></m:CreateItem>"
    ).replace(
        b"<s:Header>",
        b'<s:Header><t:RequestServerVersion Version="Exchange2016"/><t:TimeZoneContext>'
        b'<t:TimeZoneDefinition Id="W. Europe Standard Time"/></t:TimeZoneContext>',
    )


def update_request(
    item_id: str, *, subject: str | None = None, delete_location: bool = False
) -> bytes:
    updates = ""
    if subject is not None:
        updates += (
            '<t:SetItemField><t:FieldURI FieldURI="item:Subject"/><t:CalendarItem>'
            f"<t:Subject>{subject}</t:Subject></t:CalendarItem></t:SetItemField>"
        )
    if delete_location:
        updates += (
            '<t:DeleteItemField><t:FieldURI FieldURI="calendar:Location"/></t:DeleteItemField>'
        )
    return envelope(
        '<m:UpdateItem ConflictResolution="AutoResolve" SendMeetingInvitationsOrCancellations="SendToNone">'
        f'<m:ItemChanges><t:ItemChange><t:ItemId Id="{item_id}" ChangeKey="DwAAAB{item_id[-12:]}"/>'
        f"<t:Updates>{updates}</t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"
    )


def delete_request(*item_ids: str, how: str = "MoveToDeletedItems") -> bytes:
    ids = "".join(f'<t:ItemId Id="{i}"/>' for i in item_ids)
    return envelope(
        f'<m:DeleteItem DeleteType="{how}" SendMeetingCancellations="SendToNone">'
        f"<m:ItemIds>{ids}</m:ItemIds></m:DeleteItem>"
    )
