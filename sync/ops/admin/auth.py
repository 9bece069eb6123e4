"""Who may act in the admin console: an administrator signed in with the password whose
scrypt hash is `[admin] password_hash`, or one a reverse proxy vouches for in
`[admin] trusted_header`. Everyone else reads, without event text or addresses.

- Password hashes: the stdlib's `hashlib.scrypt` (N=2^14, r=8, p=1, a 16-byte salt),
  written as `scrypt$N$r$p$salt$hash` (base64), compared in constant time.
- Sessions: in memory (a restart signs everyone out), a random 256-bit id in a cookie that
  is HttpOnly and SameSite=Strict, idle for at most `SESSION_IDLE_S`.
- CSRF: each session has a token of its own; every action must post it back
  (`Sessions.csrf_ok`), and a cross-site Origin is refused outright.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
COOKIE = "calsync_admin"
SESSION_IDLE_S = 8 * 3600.0
MAX_SESSIONS = 1000


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        [
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


@dataclass(slots=True)
class Session:
    id: str
    user: str
    csrf: str
    last_seen: float
    #: signed in by the reverse proxy's header: valid only while the header says the same
    via_header: bool = False


class Sessions:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def start(self, user: str, *, via_header: bool = False) -> Session:
        now = self.clock()
        session = Session(
            secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, via_header
        )
        with self._lock:
            self._expire(now)
            if len(self._sessions) >= MAX_SESSIONS:  # the oldest goes
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                self._sessions.pop(oldest.id, None)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or now - session.last_seen > SESSION_IDLE_S:
                self._sessions.pop(session_id, None)
                return None
            session.last_seen = now
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > SESSION_IDLE_S]:
            del self._sessions[key]

    @staticmethod
    def csrf_ok(session: Session | None, form: Mapping[str, str]) -> bool:
        token = form.get("csrf", "")
        return session is not None and bool(token) and hmac.compare_digest(token, session.csrf)


def cookie_header(session_id: str, *, secure: bool = False, expire: bool = False) -> str:
    parts = [f"{COOKIE}={'' if expire else session_id}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if expire:
        parts.append("Max-Age=0")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def cookie_value(header: str | None) -> str | None:
    """Our cookie's value in a Cookie header."""
    from http.cookies import CookieError, SimpleCookie

    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None
