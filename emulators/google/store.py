"""`--db PATH`: the stand-in's users, calendars and events in SQLite, across restarts.

Write-through: every change the state makes is written in the same transaction as the
request that made it, so a stand-in killed between requests loses nothing. Stored as whole
JSON resources because the stand-in must give back exactly what it handed out (etags,
sequence, `updated`), and sync positions so old sync tokens keep working after a restart.
Faults and watch channels are run-time only and are not kept.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlite_utils

from emulators.google.auth import User
from emulators.google.state import Calendar, StoredEvent

if TYPE_CHECKING:
    from emulators.google.state import GoogleCalendarState

SCHEMA_VERSION = 1


class StoreError(RuntimeError):
    pass


class SqliteStore:
    def __init__(self, path: Path) -> None:
        # The server answers on several threads; the state's lock serialises all writes.
        self._conn = sqlite3.connect(str(path), check_same_thread=False,
                                     isolation_level=None)
        self.db = sqlite_utils.Database(self._conn)
        self._depth = 0
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        if not self.db.table("meta").exists():
            with self.transaction():
                self.db.table("meta").create({"key": str, "value": str}, pk="key")
                self.db.table("users").create({"email": str, "body": str}, pk="email")
                self.db.table("calendars").create({"id": str, "body": str}, pk="id")
                self.db.table("events").create(
                    {"calendar_id": str, "id": str, "body": str, "changed": int, "ord": int},
                    pk=("calendar_id", "id"))
                self.db.table("meta").insert({"key": "schema", "value": str(SCHEMA_VERSION)})
                self.db.table("meta").insert({"key": "counter", "value": "0"})
            return
        version = int(self.db.table("meta").get("schema")["value"])
        if version != SCHEMA_VERSION:
            raise StoreError(f"stand-in database has schema {version}, this build reads "
                             f"{SCHEMA_VERSION}: start with a new --db file")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # Nested calls (add_user inside a request) join the outer transaction.
        if self._depth == 0:
            self._conn.execute("BEGIN")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._conn.execute("COMMIT")

    def save_user(self, user: User) -> None:
        body = {"email": user.email, "refresh_token": user.refresh_token,
                "time_zone": user.time_zone, "sync_epoch": user.sync_epoch,
                "access_tokens": {t: (e.isoformat() if e else None)
                                  for t, e in user.access_tokens.items()}}
        self.db.table("users").upsert({"email": user.email, "body": json.dumps(body)}, pk="email")

    def save_calendar(self, calendar: Calendar) -> None:
        body = {"id": calendar.id, "owner": calendar.owner, "summary": calendar.summary,
                "time_zone": calendar.time_zone, "etag": calendar.etag,
                "primary": calendar.primary, "description": calendar.description}
        self.db.table("calendars").upsert({"id": calendar.id, "body": json.dumps(body)}, pk="id")

    def save_event(self, calendar_id: str, event: StoredEvent) -> None:
        self.db.table("events").upsert(
            {"calendar_id": calendar_id, "id": event.resource["id"],
             "body": json.dumps(event.resource), "changed": event.changed, "ord": event.order},
            pk=("calendar_id", "id"))

    def save_counter(self, counter: int) -> None:
        self.db.table("meta").upsert({"key": "counter", "value": str(counter)}, pk="key")

    def load(self, state: GoogleCalendarState) -> None:
        meta = self.db.table("meta")
        state.counter = int(meta.get("counter")["value"])
        kept = next(meta.rows_where("key = ?", ["incarnation"]), None)
        if kept is not None:  # the same history: its sync tokens stay good
            state.incarnation = kept["value"]
        else:
            meta.upsert({"key": "incarnation", "value": state.incarnation}, pk="key")
        for row in self.db.table("users").rows:
            body = json.loads(row["body"])
            user = User(body["email"], body["refresh_token"], body["time_zone"],
                        {t: (datetime.fromisoformat(e) if e else None)
                         for t, e in body["access_tokens"].items()},
                        body["sync_epoch"])
            state.accounts.users[user.email] = user
        for row in self.db.table("calendars").rows:
            body = json.loads(row["body"])
            state.calendars[body["id"]] = Calendar(
                body["id"], body["owner"], body["summary"], body["time_zone"], body["etag"],
                body["primary"], body["description"])
        for row in self.db.table("events").rows_where(order_by="ord"):
            calendar = state.calendars[row["calendar_id"]]
            calendar.events[row["id"]] = StoredEvent(json.loads(row["body"]), row["changed"],
                                                     row["ord"])
        for calendar in state.calendars.values():
            calendar.reindex()

    def close(self) -> None:
        self._conn.close()
