"""Writes vN.sql: a state file of every older schema version, as the code of its time made it.

    .venv/bin/python tests/sync/state/old_stores/make.py

For each version, sync/store.py is taken from the last commit that had it (git show), and
that code opens a store and fills each of its tables through its own methods (the hook's
statement for a series master, as sync/proxy.py wrote it then). From version 6 on, the
store is the package sync/state (sync/store.py its shim): the commit's whole tree is taken
(git archive) and fills the store in a process of its own. The file is dumped as SQL
(sealed values as blobs, sealed with `key` here); test_sqlite.py loads each dump and opens
it with today's code. Run again only to add a version: the dumps are the record of the past.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
#: schema version -> the last commit whose sync/store.py wrote it
COMMITS = {1: "59e0624", 2: "7f3b6cc", 3: "3cf3070", 4: "21c0513", 5: "0625575"}
#: schema version -> the last commit whose sync/state wrote it (a tree of its own)
TREES = {6: "6d3aa5d"}
MAILBOX = "alice@example.com"
SECRET = "Board meeting: the merger"  # event text: must be sealed in every dump


def old_store(version: int, directory: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{COMMITS[version]}:sync/store.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = directory / f"store_v{version}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"store_v{version}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert version == module.SCHEMA_VERSION, (version, module.SCHEMA_VERSION)
    return module


def fill(module: ModuleType, version: int, path: Path) -> None:
    store = module.Store(path)
    store.learn_folders(MAILBOX, {"CAL": "calendar", "DEL": "deleteditems"})
    store.learn_items(MAILBOX, {"ITEM1": "CalendarItem", "MAIL1": "Message"})
    done = store.enqueue(MAILBOX, "ITEM1", "upsert", now=100.0, payload={"summary": SECRET})
    (entry,) = [e for e in store.ready(101.0) if e.id == done]
    store.complete(
        entry,
        mapping=module.MappedItem(
            MAILBOX, "ITEM1", "gevent1", "CK1", '"etag1"', "hash1", {"summary": SECRET}
        ),
        now=101.0,
    )
    store.enqueue(MAILBOX, "ITEM1", "update", now=102.0, change_key="CK2")
    bad = store.enqueue(MAILBOX, "ITEM2", "upsert", now=103.0, payload={"summary": SECRET})
    store.retry_later(bad, error="Google 400 invalid", at=104.0, quarantine=True)
    if version >= 2:
        store.save_sync_state(
            MAILBOX, google_sync_token="gtoken", ews_sync_state="ewsstate", last_google_sync=105.0
        )
        store.journal(MAILBOX, "google", "gevent1", '"etag1"', "hash1", now=106.0)
        store.record_conflict(MAILBOX, "ITEM1", "gevent1", "location", "google", "policy", now=107.0)
    if version >= 3:
        store.save_channel(
            module.WatchChannel(
                "chan1", MAILBOX, "res1", "channel-token-secret", "https://x/push", "primary",
                2_000_000_000.0, 108.0,
            )
        )
    if version >= 4:
        run = store.begin_run(MAILBOX, now=109.0)
        store.record_write(
            run, "google", "patch", "gevent1", other_key="ITEM1", version='"etag2"',
            before={"summary": SECRET}, fields={"summary": "new"}, now=110.0,
        )
        store.finish_run(run, now=111.0)
    if version >= 5:
        store.save_mapping(
            module.MappedItem(MAILBOX, "ITEM3", "gevent3", "CK3", '"etag3"', "h3", {"summary": "x"}),
            now=112.0,
            reconciled=True,
        )
        store.record_error(MAILBOX, "Google 503 backendError", now=113.0)
        with store.transaction():  # sync/proxy.py's _LEARN_ITEM of the time
            store.db.conn.execute(
                "INSERT INTO seen_items (mailbox, item_id, item_class, master_id)"
                " VALUES (?, ?, ?, ?)",
                (MAILBOX, "OCC1", "CalendarItem", "ITEM1"),
            )
    if version >= 6:  # a lease, with its fencing number
        store.state.leases.acquire(MAILBOX, "node-1", 30.0, now=114.0)
    store.close()


#: run with a commit's tree first on sys.path: its sync.store fills the file (argv[1])
_FILL_IN_TREE = """
import sys
from pathlib import Path
import sync.store
from make import fill
fill(sync.store, int(sys.argv[2]), Path(sys.argv[1]))
"""


def fill_in_tree(version: int, directory: Path, path: Path) -> None:
    tree = directory / f"tree_v{version}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", TREES[version]], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    subprocess.run(
        [sys.executable, "-c", _FILL_IN_TREE, str(path), str(version)],
        check=True,
        cwd=tree,  # first on sys.path (`-c`): never this checkout's sync
        env={"PYTHONPATH": f"{tree}:{HERE}", "PATH": "/usr/bin:/bin"},
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for version in [*COMMITS, *TREES]:
            if (HERE / f"v{version}.sql").exists():
                continue  # dumped already: the record of the past is kept as it is
            path = directory / f"v{version}.db"
            (directory / f"v{version}.db.key").write_bytes((HERE / "key").read_bytes())
            if version in TREES:
                fill_in_tree(version, directory, path)
            else:
                fill(old_store(version, directory), version, path)
            conn = sqlite3.connect(path)
            dump = "\n".join(conn.iterdump()) + "\n"
            conn.close()
            assert SECRET not in dump
            (HERE / f"v{version}.sql").write_text(dump)
            print(f"v{version}.sql: {len(dump)} bytes")


if __name__ == "__main__":
    main()
