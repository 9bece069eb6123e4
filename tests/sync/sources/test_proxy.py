"""The observer (sync/sources/proxy.py) and the worker it hands entries to, side by side."""

from __future__ import annotations

import threading
from pathlib import Path

from sync.config import parse_config
from sync.sources.outbox import Mirror
from sync.sources.proxy import Exchange, Observer
from sync.store import Store
from tests.addon.conftest import basic, create_request, long_id, response
from tests.sync.conftest import ALICE

CREATES = 400


def test_no_entry_is_visible_before_its_request_is_noted(tmp_path: Path) -> None:
    """A draining worker takes an entry the moment it is committed: its request must be in
    memory by then, or the worker reads the item from Exchange (or, without an ews_url,
    quarantines the entry). A second connection watches the outbox while creates come in."""
    config = parse_config(
        {
            "store": {"path": "calsync.db"},
            "users": [{"mailbox": ALICE, "google_token_file": "a.json"}],
        },
        base=tmp_path,
    )
    store = Store(config.store_path)
    mirror = Mirror(config, store)
    observer = Observer(config, store, mirror, clock=lambda: 1_000.0)
    watcher = Store(config.store_path)
    seen: set[int] = set()
    without_request: list[int] = []
    done = threading.Event()

    def watch() -> None:
        last = False
        while not last:
            last = done.is_set()  # one more look once the creates are all in
            for entry in watcher.pending():
                if entry.id not in seen:
                    seen.add(entry.id)
                    if mirror.notice(entry).hint is None:
                        without_request.append(entry.id)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        headers = {"content-type": "text/xml; charset=utf-8", "authorization": basic(ALICE)}
        for n in range(CREATES):
            recorded = observer.observe(
                Exchange(
                    method="POST",
                    path="/EWS/Exchange.asmx",
                    request_headers=headers,
                    request_body=create_request(f"Event {n}"),
                    status_code=200,
                    response_body=response("CreateItem", long_id(f"created-{n}")),
                )
            )
            assert len(recorded) == 1
    finally:
        done.set()
        thread.join()
        watcher.close()
        store.close()
    assert len(seen) == CREATES  # the watcher's last look found them all
    assert without_request == []
