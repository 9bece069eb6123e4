"""Whose calendar is this flow? Names read from a request, strongest first.

The order (issue: real-time mirroring): the ExchangeImpersonation header (the impersonated
mailbox owns the change); a Basic user; a Bearer token's upn / unique_name / email claim
(read, not verified: calsync acts only after Exchange itself accepted the request); the
NTLM Type 3 user, remembered for the rest of that client connection (NTLM authenticates
connections, not requests); X-AnchorMailbox.

Nothing here keeps a password or a token: only the user name is taken out of them.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping

from ews_parser.values import Impersonation

NTLM_SIGNATURE = b"NTLMSSP\x00"
_NTLM_UNICODE = 0x00000001


def basic_user(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    user, sep, _password = decoded.partition(":")
    return user.strip() or None if sep else None


def bearer_user(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    for claim in ("upn", "unique_name", "email", "preferred_username"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return None


def ntlm_message(authorization: str) -> bytes | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() not in ("ntlm", "negotiate") or not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if raw.startswith(NTLM_SIGNATURE) else None


def ntlm_user(message: bytes) -> str | None:
    """The user of an NTLM AUTHENTICATE (Type 3) message, as DOMAIN\\user or user.

    Layout: MS-NLMP 2.2.1.3: DomainNameFields at 28, UserNameFields at 36 (each a 2-byte
    length, 2-byte max length, 4-byte offset), NegotiateFlags at 60.
    """
    if len(message) < 64 or not message.startswith(NTLM_SIGNATURE):
        return None
    (message_type,) = struct.unpack_from("<I", message, 8)
    if message_type != 3:
        return None
    (flags,) = struct.unpack_from("<I", message, 60)
    encoding = "utf-16-le" if flags & _NTLM_UNICODE else "cp437"

    def field(offset: int) -> str:
        length, _max, start = struct.unpack_from("<HHI", message, offset)
        if start + length > len(message):
            return ""
        return message[start : start + length].decode(encoding, "replace")

    user = field(36)
    domain = field(28)
    if not user:
        return None
    return f"{domain}\\{user}" if domain and "@" not in user else user


def candidate_names(
    headers: Mapping[str, str],
    impersonation: Impersonation | None,
    connection_user: str | None,
) -> list[str]:
    """Names to try, strongest first. `connection_user` is the NTLM user this client
    connection authenticated as earlier, if any."""
    names: list[str] = []
    if impersonation is not None and impersonation.mailbox:
        names.append(impersonation.mailbox)
    authorization = headers.get("authorization", "")
    for read in (basic_user, bearer_user):
        name = read(authorization)
        if name:
            names.append(name)
    message = ntlm_message(authorization)
    if message is not None:
        name = ntlm_user(message)
        if name:
            names.append(name)
    if connection_user:
        names.append(connection_user)
    anchor = headers.get("x-anchormailbox", "").strip()
    if anchor:
        # "SMTP:alice@contoso.com" and plain addresses are both seen in the wild
        names.append(anchor.partition(":")[2] if anchor.upper().startswith("SMTP:") else anchor)
    return names
