"""NTLM for the EWS stand-in, with pyspnego as the acceptor.

The HTTP exchange is IIS's (MS-NTHT, "NTLM Over HTTP Protocol"): a request without
credentials gets 401 with `WWW-Authenticate: NTLM`; the client sends `Authorization: NTLM
<NEGOTIATE_MESSAGE>` and gets 401 with `WWW-Authenticate: NTLM <CHALLENGE_MESSAGE>`; it
sends `Authorization: NTLM <AUTHENTICATE_MESSAGE>` on the same connection, and from then
on that connection is authenticated: later requests on it need no Authorization header.
References:
https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-ntht/f09cf6e1-529e-403b-a8a5-7368ee096a6a
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/authentication-and-ews-in-exchange

pyspnego's NTLM acceptor reads the accounts it may accept from the file that the
`NTLM_USER_FILE` environment variable names (`DOMAIN:USER:PASSWORD` lines), at the moment
it checks an AUTHENTICATE_MESSAGE. The environment is the whole process's, so each server
writes its own file and points the variable at it only while pyspnego works, under one
process-wide lock (several servers, and tests, run in one process).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("calsync.emulators.ews")

#: The schemes whose token may be a raw NTLM message (IIS accepts NTLM in Negotiate too).
SCHEMES: Final = ("ntlm", "negotiate")
_SIGNATURE: Final = b"NTLMSSP\x00"
_NEGOTIATE, _AUTHENTICATE = 1, 3

_ENV: Final = "NTLM_USER_FILE"
_ENV_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Step:
    """What to answer to one Authorization header: a challenge to send back with 401, the
    address that authenticated, or neither (401 with the plain offer)."""

    challenge: str | None = None
    address: str | None = None


def netbios_domain(address: str) -> str:
    """`alice@example.com` -> `EXAMPLE`, the down-level domain `EXAMPLE\\alice` logs on to."""
    return address.partition("@")[2].split(".")[0].upper()


def _message_type(token: bytes) -> int | None:
    if len(token) < 12 or not token.startswith(_SIGNATURE):
        return None
    return int.from_bytes(token[8:12], "little")


class NtlmAcceptor:
    """The accounts NTLM accepts, each as `user@domain` (UPN) and `DOMAIN\\user`."""

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="calsync-ews-ntlm-")
        self.user_file = Path(self._dir.name) / "ntlm_users"
        self._principals: dict[str, str] = {}
        lines = []
        for address, password in passwords.items():
            if ":" in address or "\n" in password:
                raise ValueError(f"{address!r}: not representable in an NTLM user file")
            local = address.partition("@")[0]
            domain = netbios_domain(address)
            lines.append(f":{address}:{password}")
            lines.append(f"{domain}:{local}:{password}")
            self._principals[address.lower()] = address.lower()
            self._principals[f"{domain}\\{local}".lower()] = address.lower()
        fd = os.open(self.user_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self._dir.cleanup()

    @contextlib.contextmanager
    def _user_file(self) -> Iterator[None]:
        with _ENV_LOCK:
            before = os.environ.get(_ENV)
            os.environ[_ENV] = str(self.user_file)
            try:
                yield
            finally:
                if before is None:
                    os.environ.pop(_ENV, None)
                else:
                    os.environ[_ENV] = before

    def step(self, scheme: str, value: str, context: Any) -> tuple[Step, Any]:
        """Handle one `Authorization: NTLM <token>`; returns the answer and the context to
        keep on the connection for the next message (None when the exchange is over)."""
        import spnego

        try:
            token = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return Step(), None
        kind = _message_type(token)
        try:
            if kind == _NEGOTIATE:
                with self._user_file():
                    context = spnego.server(protocol="ntlm")
                    out = context.step(token)
                return Step(challenge=f"{scheme} {base64.b64encode(out or b'').decode()}"), \
                    context
            if kind == _AUTHENTICATE and context is not None:
                with self._user_file():
                    context.step(token)
                principal = context.client_principal if context.complete else None
                address = self._principals.get((principal or "").lower())
                return Step(address=address), None
        except Exception as exc:  # a bad token or proof from the network: refuse it
            log.info("NTLM refused: %s", type(exc).__name__)
        return Step(), None
