"""Read EWS SOAP envelopes into typed values (pure: bytes in, values out).

- `classify(body)`: cheap, for the proxy's hooks: operation, folders, ids, response codes.
- `parse(body)`: full, for the background worker: exchangelib item models and all.

Both raise only `EwsParseError` on bad input.
"""

from ews_parser.classify import classify
from ews_parser.errors import CalsyncError, EwsParseError, EwsResponseError
from ews_parser.parse import parse
from ews_parser.values import Classification, Envelope

__all__ = [
    "CalsyncError",
    "Classification",
    "Envelope",
    "EwsParseError",
    "EwsResponseError",
    "classify",
    "parse",
]
