"""The few typed errors calsync raises (STYLE.md, convention 7).

`CalsyncError` is the root every other package catches; the EWS ones live here because
`ews_parser` is the package everything else depends on.
"""

from __future__ import annotations


class CalsyncError(Exception):
    """Root of every error calsync raises on purpose."""


class EwsParseError(CalsyncError, ValueError):
    """The bytes are not an EWS SOAP envelope we can read.

    The message says what is wrong in words a person can act on; `where` names the
    element (or byte offset) when it is known.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{message} (at {where})" if where else message)


class EwsResponseError(CalsyncError):
    """Exchange answered with an error: named exactly after the EWS response code."""

    def __init__(self, code: str, message: str = "", *, back_off_ms: int | None = None) -> None:
        self.code = code
        self.message = message
        self.back_off_ms = back_off_ms
        super().__init__(f"{code}: {message}" if message else code)
