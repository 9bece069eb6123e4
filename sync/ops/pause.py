"""Paused users: the admin console's pause / resume, honoured by the user's sync runs
(`UserRuns`) and by the outbox worker (`Mirror`), which leave a paused user's changes where
they are (the feeds' cursors and the outbox keep them) until the user is resumed.

The flags live in a small JSON file beside the store (`calsync.db.paused`), so that every
process of one node (mitmdump, its worker processes, `calsync serve`) sees them: a read is
one stat() when nothing changed. Nodes sharing a PostgreSQL store each keep their own file
(pause the user on each node; the store's schema has no place for it yet).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sync.config import Config


class Pauses:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) last read
        self._paused: dict[str, float] = {}

    @classmethod
    def for_config(cls, config: Config) -> Pauses:
        path = Path(config.store_path)
        return cls(path.with_name(path.name + ".paused"))

    def paused(self) -> dict[str, float]:
        """mailbox -> when it was paused."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._seen, self._paused = None, {}
                return {}
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if seen != self._seen:
                self._paused = _read(self.path)
                self._seen = seen
            return dict(self._paused)

    def is_paused(self, mailbox: str) -> bool:
        return mailbox in self.paused()

    def pause(self, mailbox: str, *, now: float | None = None) -> None:
        self._change(mailbox, time.time() if now is None else now)

    def resume(self, mailbox: str) -> None:
        self._change(mailbox, None)

    def _change(self, mailbox: str, at: float | None) -> None:
        with self._lock:
            paused = _read(self.path) if self.path.exists() else {}
            if at is None:
                paused.pop(mailbox, None)
            else:
                paused.setdefault(mailbox, at)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name)
            with os.fdopen(handle, "w") as out:
                json.dump({"paused": paused}, out)
            os.replace(name, self.path)
            self._seen = None  # read again: another process may have written meanwhile


def _read(path: Path) -> dict[str, float]:
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    paused = data.get("paused") if isinstance(data, dict) else None
    if not isinstance(paused, dict):
        return {}
    return {str(k): float(v) for k, v in paused.items() if isinstance(v, int | float)}


_registry: dict[Path, Pauses] = {}
_registry_lock = threading.Lock()


def register(config: Config) -> Pauses:
    """The process's one `Pauses` for the config's store, from now on honoured by
    `is_paused` (the admin server registers it as it starts: pausing is the console's)."""
    path = Path(config.store_path)
    with _registry_lock:
        found = _registry.get(path)
        if found is None:
            found = _registry[path] = Pauses.for_config(config)
        return found


def unregister(config: Config) -> None:
    with _registry_lock:
        _registry.pop(Path(config.store_path), None)


def is_paused(mailbox: str) -> bool:
    """Whether the admin console paused `mailbox`: the one-line hook of the user's runs and
    of the outbox worker. Nothing is paused in a process without the console."""
    with _registry_lock:
        registered = list(_registry.values())
    return any(p.is_paused(mailbox) for p in registered)
