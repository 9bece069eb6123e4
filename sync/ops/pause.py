"""Paused users: the admin console's pause / resume, honoured by the user's sync runs
(`UserRuns.run_now`) and by the outbox (`Outbox.claim` hands none of a paused user's
entries out), which leave a paused user's changes where they are (the feeds' cursors and
the outbox keep them) until the user is resumed.

The flags live in the state store (`State.pauses`, sync/state): every process of every node
sharing the store sees a pause as soon as it is made. The outbox leaves paused users out in
its claim's SQL, so the worker reads nothing more per entry; a run asks once, at its start,
`is_paused`: whether a store this process has open (each `Store` is listed here while it is
open) says the user is paused.

A deployment upgraded from a calsync that kept the flags in a file beside the store
(`calsync.db.paused`) has that file imported once, when a node opens the store
(`import_file`), and renamed `calsync.db.paused.imported`: from then on it is not read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sync.config import Config

if TYPE_CHECKING:
    from sync.state.base import Pauses

log = logging.getLogger("calsync.pause")


class Flags(Protocol):
    """What `is_paused` asks (a `Store`)."""

    def is_paused(self, mailbox: str) -> bool: ...


_open: weakref.WeakSet[Flags] = weakref.WeakSet()
_open_lock = threading.Lock()


def opened(store: Flags) -> None:
    """`store` is open in this process: `is_paused` asks it from now on."""
    with _open_lock:
        _open.add(store)


def closed(store: Flags) -> None:
    with _open_lock:
        _open.discard(store)


def is_paused(mailbox: str) -> bool:
    """Whether the admin console paused `mailbox`, as the stores open in this process say:
    the one-line check of a user's runs. A store that does not answer pauses nobody (the
    run then meets the same store and fails there)."""
    with _open_lock:
        stores = list(_open)
    for store in stores:
        try:
            if store.is_paused(mailbox):
                return True
        except Exception as exc:  # closed or unreachable: asked no further
            log.debug("pause flag not read: %s", type(exc).__name__)
    return False


def file_of(config: Config) -> Path:
    """Where a calsync before the flags moved into the store kept them."""
    path = Path(config.store_path)
    return path.with_name(path.name + ".paused")


def import_file(pauses: Pauses, path: Path) -> int:
    """The flags of an older calsync's file at `path` into the store, once: the file is
    then renamed (`.imported`), so a user resumed since is not paused again by it. A user
    paused in both keeps the earlier time; a damaged file pauses nobody. How many users
    the file paused."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    found = _read(text)
    for mailbox, at in found.items():
        pauses.pause(mailbox, now=at)
    # another process of the node may have imported it meanwhile: pausing is idempotent
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, path.with_name(path.name + ".imported"))
        log.info("paused users imported into the store from %s: %d", path, len(found))
    return len(found)


def _read(text: str) -> dict[str, float]:
    try:
        data: Any = json.loads(text)
    except ValueError:
        return {}
    paused = data.get("paused") if isinstance(data, dict) else None
    if not isinstance(paused, dict):
        return {}
    return {str(k): float(v) for k, v in paused.items() if isinstance(v, int | float)}
