"""The least CPU a mirrored create can cost in CPython, next to what calsync's worker spends
on one, in one run (issue 17: calsync's CPU per event at most a quarter of mitmdump's own).

    .venv/bin/python bench/floor.py [--events 500]

Each step runs `--events` times in this process's main thread and is timed by that
thread's CPU clock (time.thread_time: a step waiting for the network costs nothing). The
Google stand-in is a process of its own (`python -m emulators.google`), uncounted.

The floor is what no design that keeps calsync's promises can leave out:

- read: the request parsed by the hardened parser calsync uses (ews_parser/xml.py), the
  five fields of the bench's CreateItem read with `find`;
- intend: one SQLite transaction (WAL, synchronous=NORMAL, as the store runs) that records
  the change before anything is written, so that a process killed meanwhile loses nothing;
- insert: the event inserted into Google over one kept-alive http.client connection, JSON
  both ways, `sendUpdates=none`;
- record: one transaction that keeps the pair (the event's text sealed with Fernet, as the
  store seals it), journals the version written (its echo is then skipped) and drops the
  intent.

Then, through the same stand-in, calsync's own: `ews_parser.parse` of the same request
(exchangelib's CalendarItem, zones, all fields), and the worker's whole create (`Mirror.process`
in thread mode, its store a SQLite file: the fast path's parse, mapping, conditional
insert, the undo journal, the pair) for entries recorded as the proxy records them. What
mitmdump's own process adds per event (observing, handing over, streaming) is
bench/cpu.py's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu import create_item  # noqa: E402
from bench.proxy import USER, running, stand_in, write_config  # noqa: E402
from ews_parser import parse  # noqa: E402
from ews_parser.xml import TYPES, parse_xml  # noqa: E402
from mapping.event import event_id_for  # noqa: E402
from sync.config import load_config  # noqa: E402
from sync.core.notice import RequestHint  # noqa: E402
from sync.sources.outbox import Mirror  # noqa: E402
from sync.state.sealing import Sealer  # noqa: E402
from sync.store import Store  # noqa: E402

T = "{" + TYPES + "}"
FIELDS = ("Subject", "Body", "Location", "Start", "End")


def cpu_ms(step: Callable[[int], object], count: int, first: int = 0) -> float:
    """Mean CPU of this thread per call of `step(n)`, n from `first`, in ms."""
    began = time.thread_time()
    for n in range(first, first + count):
        step(n)
    return (time.thread_time() - began) / count * 1000


class Floor:
    """The floor's four steps, against the stand-in at `url`, with a store in `work`."""

    def __init__(self, url: str, work: Path) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.path = "/calendar/v3/calendars/primary/events?sendUpdates=none"
        self.headers = {"Authorization": f"Bearer {USER}", "Content-Type": "application/json"}
        self.db = sqlite3.connect(work / "floor.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE intents (id INTEGER PRIMARY KEY, mailbox, item, op)")
        self.db.execute(
            "CREATE TABLE pairs (mailbox, item, event, etag, snapshot, PRIMARY KEY (mailbox, item))"
        )
        self.db.execute("CREATE TABLE journal (mailbox, side, key, version, at)")
        self.sealer = Sealer(work / "floor.key")

    def read(self, body: bytes) -> dict[str, object]:
        item = next(parse_xml(body).iter(T + "CalendarItem"))
        summary, description, location, start, end = (item.findtext(T + f) for f in FIELDS)
        return {
            "summary": summary,
            "description": description,
            "location": location,
            "start": {"dateTime": start},
            "end": {"dateTime": end},
        }

    def intend(self, item: str) -> int:
        self.db.execute("BEGIN IMMEDIATE")
        cursor = self.db.execute(
            "INSERT INTO intents (mailbox, item, op) VALUES (?, ?, 'upsert')", (USER, item)
        )
        self.db.execute("COMMIT")
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def insert(self, event: dict[str, object], event_id: str) -> dict[str, object]:
        self.conn.request("POST", self.path, json.dumps({**event, "id": event_id}), self.headers)
        answer = self.conn.getresponse()
        data: dict[str, object] = json.loads(answer.read())
        if answer.status != 200:
            raise RuntimeError(f"the stand-in answered {answer.status}: {data}")
        return data

    def record(self, intent: int, item: str, event: dict[str, object], inserted: dict) -> None:  # type: ignore[type-arg]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?)",
            (USER, item, inserted["id"], inserted.get("etag"), self.sealer.seal(event)),
        )
        self.db.execute(
            "INSERT INTO journal VALUES (?, 'google', ?, ?, ?)",
            (USER, inserted["id"], inserted.get("etag"), time.time()),
        )
        self.db.execute("DELETE FROM intents WHERE id = ?", (intent,))
        self.db.execute("COMMIT")

    def create(self, body: bytes, item: str) -> None:
        intent = self.intend(item)
        event = self.read(body)
        self.record(intent, item, event, self.insert(event, event_id_for(item)))


def calsync_worker(url: str, work: Path, bodies: list[bytes], count: int) -> float:
    """The worker's CPU per create (`Mirror.process`, thread mode), ms."""
    config_path = write_config(work, "worker", url, None)
    config = load_config(config_path)
    store = Store(config.store_path)
    mirror = Mirror(config, store)
    spent = [0.0]

    def create(n: int) -> None:
        item = f"calsync-bench-worker-{n:06d}-" + "A" * 80
        entry_id = store.enqueue(USER, item, "upsert", now=time.time(), change_key=f"DwAA{n}")
        mirror.note(entry_id, RequestHint(bodies[n], 0, None))
        entry = store.entry(entry_id)
        assert entry is not None
        began = time.thread_time()
        mirror.process(entry)
        spent[0] += time.thread_time() - began
        if store.entry(entry_id) is not None:
            raise RuntimeError(f"entry {entry_id} not done: {store.entry(entry_id)}")

    try:
        for n in range(50):  # warm: imports, the client, first statements
            create(n)
        spent[0] = 0.0
        for n in range(50, 50 + count):
            create(n)
    finally:
        store.close()
    return spent[0] / count * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500, help="creates each step is timed on")
    args = parser.parse_args()
    count = args.events
    work = Path(tempfile.mkdtemp(prefix="calsync-floor-"))
    ready = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
    try:
        with running(
            stand_in("emulators.google", "--user", USER), ready, work / "google.log"
        ) as url:
            bodies = [create_item(f"Event {n}", series=False) for n in range(50 + 4 * count)]
            floor = Floor(url, work)
            event = floor.read(bodies[0])
            for n in range(50):  # warm: the connection, the first statements
                floor.create(bodies[n], f"warm-{n}")
            intents = [floor.intend(f"r-{n}") for n in range(count)]
            rows = [
                (
                    "read (hardened lxml parse, 5 fields)",
                    cpu_ms(lambda n: floor.read(bodies[n]), count),
                ),
                ("intend (1 transaction)", cpu_ms(lambda n: floor.intend(f"i-{n}"), count)),
                (
                    "insert (http.client, JSON)",
                    cpu_ms(lambda n: floor.insert(event, event_id_for(f"e-{n}")), count),
                ),
                (
                    "record (1 transaction, sealed)",
                    cpu_ms(
                        lambda n: floor.record(intents[n], f"r-{n}", event, {"id": f"r{n}"}), count
                    ),
                ),
            ]
            whole = cpu_ms(lambda n: floor.create(bodies[n], f"c-{n}"), count, first=count)
            parsed = cpu_ms(lambda n: parse(bodies[n]), count, first=2 * count)
            worker = calsync_worker(url, work, bodies, count)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"CPU per create, ms (this thread's clock; {count} creates a step)")
    for name, value in rows:
        print(f"  floor: {name:<40}{value:8.3f}")
    print(f"  floor: {'a whole create (the four together)':<40}{whole:8.3f}")
    print(f"  calsync: {'ews_parser.parse of the same request':<38}{parsed:8.3f}")
    print(f"  calsync: {'the worker, Mirror.process of a create':<38}{worker:8.3f}")
    print(f"calsync's worker / the floor: {worker / whole:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
