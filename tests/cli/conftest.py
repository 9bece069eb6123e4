"""Shared pieces for the `calsync` command's tests: its real entry point as a subprocess,
an environment without proxies, and the processes a run left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the `calsync` installed beside the interpreter running the tests (any venv, any clone)
CALSYNC = Path(sys.executable).parent / "calsync"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in _PROXY_VARIABLES and not k.startswith("PYTEST_")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def calsync(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`calsync ARGS`, as an administrator runs it."""
    return subprocess.run(
        [str(CALSYNC), *args],
        env=clean_env(env),
        cwd=cwd or ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is `directory` (what a run started there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == directory:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# --- the stand-ins, in this process; the command reaches them over the loopback ----------

import json  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from emulators.ews import EwsServer, start_server  # noqa: E402
from emulators.google.server import GoogleCalendarServer  # noqa: E402

ALICE = "alice@example.com"
BOB = "bob@example.com"
PASSWORDS = {ALICE: "alice-Secret-91", BOB: "bob-Secret-27"}
PASSWORD_ENVS = {ALICE: "CALSYNC_CLI_ALICE_PASSWORD", BOB: "CALSYNC_CLI_BOB_PASSWORD"}


@pytest.fixture
def ews(tmp_path: Path) -> Iterator[EwsServer]:
    server = start_server(users=PASSWORDS, tls_dir=tmp_path / "ews-tls")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(port=0, users=tuple(PASSWORDS)) as server:
        yield server


def token_file(path: Path, google_token_uri: str, user: str, **override: str) -> Path:
    """An authorized-user token file as google-auth writes it (0600)."""
    values = {
        "token": user,  # the stand-in's access token for a user is the address
        "refresh_token": f"refresh-{user}",
        "token_uri": google_token_uri,
        "client_id": "calsync-test",
        "client_secret": "calsync-test-secret",
        "scopes": ["https://www.googleapis.com/auth/calendar"],
        **override,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in values.items() if v}))
    path.chmod(0o600)
    return path


def write_config(
    directory: Path,
    *,
    google_url: str,
    ews_url: str,
    ca_file: Path | None,
    users: tuple[str, ...] = (ALICE,),
) -> Path:
    lines = [
        "[store]",
        'path = "calsync.db"',
        "[google]",
        f'api_endpoint = "{google_url}/calendar/v3/"',
        f'token_uri = "{google_url}/token"',
        "[exchange]",
        f'ews_url = "{ews_url}"',
    ]
    if ca_file is not None:
        lines.append(f'ca_file = "{ca_file}"')
    for user in users:
        token = directory / "tokens" / f"{user}.json"
        if not token.exists():
            token_file(token, f"{google_url}/token", user)
        lines += [
            "[[users]]",
            f'mailbox = "{user}"',
            f'google_token_file = "tokens/{user}.json"',
            f'exchange_password_env = "{PASSWORD_ENVS[user]}"',
        ]
    path = directory / "calsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def passwords_env() -> dict[str, str]:
    return {PASSWORD_ENVS[u]: p for u, p in PASSWORDS.items()}
