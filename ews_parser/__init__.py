"""Read EWS SOAP envelopes into typed values (pure: bytes in, values out).

- `classify(body)`: cheap, for the proxy's hooks: operation, folders, ids, response codes.
  It needs only lxml, so importing it costs mitmdump no start-up time.
- `parse(body)`: full, for the background worker: exchangelib item models and all.
  exchangelib is imported the first time `parse` is asked for (~0.2 s).

Both raise only `EwsParseError` on bad input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ews_parser.classify import classify
from ews_parser.errors import CalsyncError, EwsParseError, EwsResponseError
from ews_parser.values import Classification, Envelope

if TYPE_CHECKING:
    from ews_parser.envelope import parse

__all__ = [
    "CalsyncError",
    "Classification",
    "Envelope",
    "EwsParseError",
    "EwsResponseError",
    "classify",
    "parse",
]


def __getattr__(name: str) -> Any:
    if name == "parse":
        from ews_parser.envelope import parse

        return parse
    raise AttributeError(f"module 'ews_parser' has no attribute {name!r}")
