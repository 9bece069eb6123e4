"""Whose calendar is this flow? The authenticated principal decides; a hint never does.

Read from the request, in plain values (no store, no config: `owner` takes lookups):
- ExchangeImpersonation: Exchange checks the caller's right to impersonate
  (ErrorImpersonateUserDenied otherwise), so a request it accepted acted in that mailbox;
- the Basic user; a Bearer token's upn / unique_name / email claim (read, not verified:
  calsync acts only after Exchange itself accepted the token); the NTLM Type 3 user,
  remembered for the rest of that client connection (NTLM authenticates connections);
- Negotiate with a Kerberos token: authenticated, but the user cannot be read from it.

X-AnchorMailbox is a routing hint any client can set (Exchange routes by it and then checks
access against the authenticated user): it never names the owner. Only where the principal
cannot be read (Kerberos) does it say which configured user to *ask Exchange about*, and
then the worker confirms, with calsync's own credentials, that the item is in that user's
calendar before anything is mirrored.

Nothing here keeps a password or a token: only the user name is taken out of them.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request (or its connection) authenticated as, as far as the traffic tells.

    `name` is None when nobody authenticated or when the scheme hides the user
    (`scheme == "kerberos"`)."""

    scheme: str  # "basic", "bearer", "ntlm", "kerberos"
    name: str | None = None

    @property
    def unreadable(self) -> bool:
        return self.name is None and self.scheme == "kerberos"


def principal_of(authorization: str) -> Principal | None:
    """The principal an Authorization header proves, if it proves one."""
    name = basic_user(authorization)
    if name:
        return Principal("basic", name)
    name = bearer_user(authorization)
    if name:
        return Principal("bearer", name)
    message = ntlm_message(authorization)
    if message is not None:
        name = ntlm_user(message)
        # Type 1 messages name nobody yet; the Type 3 that follows does
        return Principal("ntlm", name) if name else None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() in ("negotiate", "kerberos") and token.strip():
        return Principal("kerberos")
    return None


def routing_hint(headers: Mapping[str, str]) -> str | None:
    """The X-AnchorMailbox a client sent ("SMTP:alice@contoso.com" or a plain address)."""
    anchor = headers.get("x-anchormailbox", "").strip()
    if not anchor:
        return None
    return anchor.partition(":")[2] if anchor.upper().startswith("SMTP:") else anchor


@dataclass(frozen=True, slots=True)
class Owner:
    """The configured user whose calendar a flow changed. `confirm`: calsync could not read
    who sent it and has only a routing hint: the worker must find the item in this user's
    calendar, asking Exchange with calsync's own credentials, before mirroring anything."""

    mailbox: str
    confirm: bool = False


def owner(
    *,
    principal: Principal | None,
    impersonated: str | None,
    delegate: str | None,
    hint: str | None,
    item_ids: Sequence[str],
    configured: Callable[[str | None], str | None],
    knows: Callable[[str, Sequence[str]], bool],
    users: Sequence[str],
) -> Owner | None:
    """Whose calendar this flow changed, or None: then nothing of it is mirrored or learned.

    `configured(name)` is the mailbox of the configured user a name belongs to (or None);
    `knows(mailbox, ids)` says whether any of the ids is a calendar item known in that
    mailbox. A flow calsync sees no authentication for is not mirrored (Exchange never
    answers one: calsync missed how it was authenticated, so it cannot say for whom).
    Otherwise what the request itself names decides first, because Exchange checked the
    sender's rights before it accepted it: a folder of another mailbox (a Mailbox element),
    or item ids known in one mailbox (EWS ids are unique across mailboxes). Then the
    actor: the impersonated mailbox, else the authenticated principal. A hint never stands
    in for the principal.
    """
    if principal is None and not impersonated:
        return None
    if delegate:
        mailbox = configured(delegate)
        return Owner(mailbox) if mailbox else None
    if impersonated:
        actor = configured(impersonated)
    else:
        actor = configured(principal.name) if principal is not None else None
    if item_ids:
        if actor is not None and knows(actor, item_ids):
            return Owner(actor)
        for mailbox in users:  # a delegate acting on another configured user's items by id
            if mailbox != actor and knows(mailbox, item_ids):
                return Owner(mailbox)
    if actor is not None:
        return Owner(actor)
    if principal is not None and principal.unreadable and not impersonated:
        hinted = configured(hint)
        return Owner(hinted, confirm=True) if hinted else None
    return None
