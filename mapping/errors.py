"""The error mapping raises (STYLE.md, convention 7)."""

from __future__ import annotations

from ews_parser.errors import CalsyncError


class MappingError(CalsyncError, ValueError):
    """A value has no counterpart on the other side (an RRULE outside EWS's six patterns,
    an event without start or end). The message says which field and why."""
