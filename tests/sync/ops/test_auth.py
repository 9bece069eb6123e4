"""sync/ops/admin/auth.py: password hashes, sessions, CSRF tokens, and the
`calsync admin hash-password` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sync.ops.admin.auth import (
    SESSION_IDLE_S,
    Sessions,
    cookie_header,
    cookie_value,
    hash_password,
    verify_password,
)

CALSYNC = Path(sys.executable).parent / "calsync"


def test_a_hash_verifies_its_password_only() -> None:
    made = hash_password("correct horse battery")
    assert made.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse battery", made)
    assert not verify_password("correct horse batterY", made)
    assert not verify_password("", made)
    assert hash_password("correct horse battery") != made  # a salt of its own each time


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "bcrypt$1$2$3$c2FsdA==$aGFzaA==",
        "scrypt$16384$8$1$not base64!$aGFzaA==",
        "scrypt$nan$8$1$c2FsdA==$aGFzaA==",
    ],
)
def test_a_malformed_hash_verifies_nothing(encoded: str) -> None:
    assert not verify_password("anything", encoded)


def test_sessions_expire_when_idle_and_end_on_sign_out() -> None:
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    first = sessions.start("admin")
    assert sessions.get(first.id) is first
    now[0] += SESSION_IDLE_S - 1
    assert sessions.get(first.id) is first  # used: idle from now
    now[0] += SESSION_IDLE_S + 1
    assert sessions.get(first.id) is None
    second = sessions.start("admin")
    sessions.end(second.id)
    assert sessions.get(second.id) is None
    assert sessions.get(None) is None and sessions.get("forged") is None


def test_csrf_tokens_are_per_session() -> None:
    sessions = Sessions()
    one, two = sessions.start("admin"), sessions.start("admin")
    assert one.csrf != two.csrf
    assert Sessions.csrf_ok(one, {"csrf": one.csrf})
    assert not Sessions.csrf_ok(one, {"csrf": two.csrf})
    assert not Sessions.csrf_ok(one, {})
    assert not Sessions.csrf_ok(None, {"csrf": one.csrf})


def test_the_cookie_is_httponly_and_samesite_strict() -> None:
    header = cookie_header("abc")
    assert header.split("; ") == ["calsync_admin=abc", "Path=/", "HttpOnly", "SameSite=Strict"]
    assert "Max-Age=0" in cookie_header("", expire=True)
    assert cookie_value("other=1; calsync_admin=abc") == "abc"
    assert cookie_value('calsync_admin="unterminated') is None
    assert cookie_value(None) is None


def test_the_command_prints_a_hash_of_the_password_it_read() -> None:
    done = subprocess.run(
        [str(CALSYNC), "admin", "hash-password"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = done.stdout.strip()
    assert line.startswith('password_hash = "scrypt$') and "correct" not in line
    assert verify_password("correct horse battery", line.split('"')[1])
    short = subprocess.run(
        [str(CALSYNC), "admin", "hash-password"],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 2 and short.stdout == ""
