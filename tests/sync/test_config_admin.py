"""calsync.toml's [admin] section: the admin server's address, how administrators sign in,
and per-user series; each mistake is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.config import AdminConfig, ConfigError, load_config
from sync.ops.admin.auth import hash_password

USERS = """
[[users]]
mailbox = "alice@example.com"
"""


def load(tmp_path: Path, admin: str) -> AdminConfig | None:
    path = tmp_path / "calsync.toml"
    path.write_text(USERS + admin)
    return load_config(path).admin


def test_no_section_no_admin_server(tmp_path: Path) -> None:
    assert load(tmp_path, "") is None


def test_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "[admin]\n") == AdminConfig(
        listen_host="127.0.0.1",
        listen_port=8090,
        password_hash=None,
        trusted_header=None,
        per_user_metrics=False,
    )


def test_every_key(tmp_path: Path) -> None:
    made = hash_password("correct horse battery", salt=b"0123456789abcdef")
    admin = load(
        tmp_path,
        f"""[admin]
listen_host = "0.0.0.0"
listen_port = 0
password_hash = "{made}"
trusted_header = "X-Forwarded-User"
per_user_metrics = true
""",
    )
    assert admin == AdminConfig("0.0.0.0", 0, made, "X-Forwarded-User", True)


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("listen_port = 70000", "[admin] listen_port must be a port number (0: any free port)"),
        ("listen_port = true", "[admin]: listen_port must be a whole number"),
        ('listen_host = ""', "[admin]: listen_host must be a non-empty string"),
        # a password, not its hash, is refused: the file must never hold the password
        ('password_hash = "hunter22"', "[admin] password_hash must be what `calsync admin"),
        ('password_hash = "scrypt$x$8$1$c2FsdA==$aGFzaA=="', "[admin] password_hash must be"),
        ('trusted_header = "X-User: admin"', "[admin] trusted_header must be a header name"),
        ('per_user_metrics = "yes"', "[admin] per_user_metrics must be true or false"),
        ("port = 1", "[admin]: unknown key 'port'"),
    ],
)
def test_mistakes(tmp_path: Path, admin: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"[admin]\n{admin}\n")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
