"""Whose calendar a flow is (sync/core/identity.py)."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from sync.core.identity import (
    Principal,
    basic_user,
    bearer_user,
    ntlm_message,
    ntlm_user,
    principal_of,
    routing_hint,
)


def basic(user: str, password: str = "pw:with:colons") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bearer(claims: dict[str, str]) -> str:
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"Bearer {part({'alg': 'none'})}.{part(claims)}.sig"


def ntlm_type3(user: str, domain: str, *, unicode: bool = True) -> bytes:
    """An AUTHENTICATE message laid out as MS-NLMP 2.2.1.3 says."""
    encoding = "utf-16-le" if unicode else "ascii"
    payload_domain = domain.encode(encoding)
    payload_user = user.encode(encoding)
    offset = 88
    header = bytearray(b"NTLMSSP\x00" + struct.pack("<I", 3) + b"\x00" * (offset - 12))
    struct.pack_into("<HHI", header, 12, 0, 0, offset)  # LM response (empty)
    struct.pack_into("<HHI", header, 20, 0, 0, offset)  # NT response (empty)
    struct.pack_into("<HHI", header, 28, len(payload_domain), len(payload_domain), offset)
    struct.pack_into(
        "<HHI", header, 36, len(payload_user), len(payload_user), offset + len(payload_domain)
    )
    struct.pack_into("<HHI", header, 44, 0, 0, offset + len(payload_domain) + len(payload_user))
    struct.pack_into("<I", header, 60, 0x00000001 if unicode else 0x00000002)
    return bytes(header) + payload_domain + payload_user


def test_basic_takes_the_name_only() -> None:
    assert basic_user(basic("alice@example.com")) == "alice@example.com"
    assert basic_user("Basic !!!") is None
    assert basic_user(bearer({"upn": "x@y"})) is None


@pytest.mark.parametrize(
    ("claims", "user"),
    [
        ({"upn": "alice@example.com", "email": "other@x"}, "alice@example.com"),
        ({"unique_name": "bob@example.com"}, "bob@example.com"),
        ({"email": "carol@example.com"}, "carol@example.com"),
        ({"aud": "nobody"}, None),
    ],
)
def test_bearer_claims(claims: dict[str, str], user: str | None) -> None:
    assert bearer_user(bearer(claims)) == user


@pytest.mark.parametrize("unicode", [True, False])
def test_ntlm_type3_user(unicode: bool) -> None:
    header = "NTLM " + base64.b64encode(ntlm_type3("alice", "CONTOSO", unicode=unicode)).decode()
    message = ntlm_message(header)
    assert message is not None
    assert ntlm_user(message) == "CONTOSO\\alice"


def test_ntlm_negotiate_and_garbage_name_nobody() -> None:
    negotiate = b"NTLMSSP\x00" + struct.pack("<I", 1) + b"\x00" * 60
    assert ntlm_user(negotiate) is None
    assert ntlm_message("NTLM " + base64.b64encode(b"not ntlm").decode()) is None
    truncated = ntlm_type3("alice", "CONTOSO")[:70]
    assert ntlm_user(truncated) is None


def test_principal_of_each_scheme() -> None:
    assert principal_of(basic("svc@example.com")) == Principal("basic", "svc@example.com")
    ntlm = "NTLM " + base64.b64encode(ntlm_type3("alice", "CONTOSO")).decode()
    assert principal_of(ntlm) == Principal("ntlm", "CONTOSO\\alice")
    kerberos = principal_of("Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEF")
    assert kerberos == Principal("kerberos") and kerberos.unreadable
    assert principal_of("") is None
    assert principal_of("Basic !!!") is None


def test_routing_hint_is_read_but_never_a_principal() -> None:
    assert routing_hint({"x-anchormailbox": "SMTP:bob@example.com"}) == "bob@example.com"
    assert routing_hint({"x-anchormailbox": "dave@example.com"}) == "dave@example.com"
    assert routing_hint({}) is None
