"""The full read of an envelope, with exchangelib's item models: for the background worker.

`parse` is the deep counterpart of `classify`: same envelope, typed values for every part.
"""

from __future__ import annotations

from ews_parser.common import ParseContext
from ews_parser.errors import EwsParseError
from ews_parser.responses import read_response
from ews_parser.services import KNOWN_OPERATIONS, REQUEST_READERS
from ews_parser.soap import open_envelope, read_fault, read_header
from ews_parser.values import Envelope, Request, Response, UnknownOperation
from ews_parser.xml import DEFAULT_MAX_BYTES


def parse(
    body: bytes, *, default_zone: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Envelope:
    """Parse one EWS SOAP envelope, or raise `EwsParseError` saying why not.

    `default_zone` (a Windows or IANA zone id) dates all-day items that name no zone of
    their own: responses carry none, so pass the zone of the request or of the mailbox.
    Unknown but well-formed operations parse to `UnknownOperation`.
    """
    opened = open_envelope(body, max_bytes=max_bytes)
    header = read_header(opened.header)
    if opened.kind == "fault":
        return Envelope("fault", None, header, read_fault(opened.payload))
    operation = opened.operation
    assert operation is not None
    ctx = ParseContext(context_zone=header.time_zone_context, default_zone=default_zone)
    try:
        payload: Request | Response
        if opened.kind == "request":
            reader = REQUEST_READERS.get(operation)
            payload = reader(opened.payload, ctx) if reader else UnknownOperation(operation)
        elif operation in KNOWN_OPERATIONS:
            payload = read_response(opened.payload, ctx)
        else:
            payload = UnknownOperation(operation)
    except EwsParseError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # A shape no reader expected: still one error type, naming the operation.
        raise EwsParseError(
            f"cannot read {operation} {opened.kind}: {type(exc).__name__}: {exc}"
        ) from None
    return Envelope(opened.kind, operation, header, payload)
