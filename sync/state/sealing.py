"""Event text at rest: sealed (Fernet) with a key kept beside the state in a 0600 file, or,
for a store several nodes share, a key every node is given (`Sealer.from_key`).

Snapshots, outbox payloads, undo pre-images and push channel tokens are stored only
sealed: a copy of the database alone shows ids and times, never what an event says."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from sync.state.base import JsonInput, JsonObject, JsonValue, StoreError


def private_file(path: Path) -> None:
    """Create `path` (empty, 0600) if missing and make it readable by its owner only.

    A file already there is never opened, only changed by its path: POSIX locks belong to
    the process, and closing any descriptor of a file drops all of the process's locks on
    it, SQLite's too when it is a database this process has open (the addon's second
    store): another process would then find no reader and delete the WAL under it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)  # a file just made: nothing of this process's has it open
    os.chmod(path, 0o600)


class Sealer:
    """Seals JSON values with the key in `key_path` (made on first use)."""

    def __init__(self, key_path: Path) -> None:
        if not key_path.exists():
            private_file(key_path)
            key_path.write_bytes(Fernet.generate_key())
        os.chmod(key_path, 0o600)
        self._fernet = Fernet(key_path.read_bytes().strip())

    @classmethod
    def from_key(cls, key: bytes) -> Sealer:
        """A sealer with `key` (a Fernet key: 32 bytes, URL-safe base64)."""
        sealer = cls.__new__(cls)
        try:
            sealer._fernet = Fernet(key.strip())
        except ValueError:
            raise StoreError(
                "the sealing key is not a Fernet key (32 bytes, URL-safe base64):"
                " make one with `python -c 'from cryptography.fernet import Fernet;"
                " print(Fernet.generate_key().decode())'`"
            ) from None
        return sealer

    def seal(self, value: JsonInput) -> bytes:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def seal_optional(self, value: Mapping[str, JsonInput] | None) -> bytes | None:
        return None if value is None else self.seal(value)

    def open(self, token: bytes | None) -> JsonValue:
        if token is None:
            return None
        try:
            value: JsonValue = json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise StoreError(
                "a sealed value does not open with this store's key: was the .key file replaced?"
            ) from None
        return value

    def open_object(self, token: bytes | None) -> JsonObject | None:
        value = self.open(token)
        if value is not None and not isinstance(value, dict):
            raise StoreError(f"a sealed value is a {type(value).__name__}, not an object")
        return value

    def open_text(self, token: bytes) -> str:
        value = self.open(token)
        if not isinstance(value, str):
            raise StoreError(f"a sealed value is a {type(value).__name__}, not text")
        return value
