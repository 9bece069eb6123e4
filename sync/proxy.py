"""What the proxy does with one EWS exchange, in plain values (the addon is a thin shell).

`Observer.observe(Exchange)` runs on mitmproxy's event loop, so it does only cheap work:
a URL/method filter first, then `classify` of both bodies (microseconds), the router's
decision, and one SQLite transaction that learns ids and records intents. The request
bytes go to the worker in memory (`Mirror.note`); nothing here waits on the network.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ews_parser.classify import classify
from ews_parser.errors import EwsParseError
from ews_parser.values import Classification
from sync.config import Config, UserConfig
from sync.identity import candidate_names, ntlm_message, ntlm_user
from sync.mirror import Hot, Mirror
from sync.router import (
    CALENDAR,
    LISTINGS,
    Decision,
    decide,
    delegate_mailbox,
    item_ids_named,
    may_matter,
)
from sync.store import Store

log = logging.getLogger("calsync.proxy")

EWS_PATH = "/ews/exchange.asmx"
_CALENDAR_ITEM = b"CalendarItem"
#: Every request that can touch a calendar names a calendar item, an item id (ItemId,
#: ReferenceItemId, OccurrenceItemId, RecurringMasterItemId all contain "ItemId") or a
#: distinguished calendar / deleted-items folder. One scan in C drops the rest (mail
#: GetFolder, FindItem on the inbox, Message creates) before anything is parsed.
_MAYBE_CALENDAR = re.compile(rb"CalendarItem|ItemId|calendar|deleteditems")

# The hook's writes, as plain prepared statements: sqlite-utils looks up the table's
# columns on every call, which cost most of the hook's time (0.4 of 0.58 ms a CreateItem).
_LEARN_FOLDER = (
    "INSERT INTO folders (mailbox, folder_id, role) VALUES (?, ?, ?)"
    " ON CONFLICT (mailbox, folder_id) DO UPDATE SET role = excluded.role"
)
_LEARN_ITEM = (
    "INSERT INTO seen_items (mailbox, item_id, item_class) VALUES (?, ?, ?)"
    " ON CONFLICT (mailbox, item_id) DO UPDATE SET item_class = excluded.item_class"
)
_ENQUEUE = (
    "INSERT INTO outbox (mailbox, ews_item_id, op, change_key, payload, attempts,"
    " next_attempt_at, last_error, state, created_at)"
    " VALUES (?, ?, ?, ?, NULL, 0, ?, NULL, 'pending', ?)"
)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request/response pair as the hook saw it."""

    method: str
    path: str
    request_headers: Mapping[str, str]  # lower-case names
    request_body: bytes
    status_code: int
    response_body: bytes
    connection_id: str = ""


class UserKnowledge:
    """What the store knows of one mailbox, for the router (Knowledge protocol)."""

    def __init__(self, store: Store, mailbox: str) -> None:
        self.store = store
        self.mailbox = mailbox
        self._roles: dict[str, str] | None = None

    def folder_role(self, folder_id: str) -> str | None:
        if self._roles is None or folder_id not in self._roles:
            # a miss re-reads: the worker learns folders too (asking Exchange)
            self._roles = self.store.folders(self.mailbox)
        return self._roles.get(folder_id)

    def item_class(self, item_id: str) -> str | None:
        return self.store.item_class(self.mailbox, item_id)

    def is_mapped(self, item_id: str) -> bool:
        return self.store.is_mapped(self.mailbox, item_id)

    def learned_folders(self, folders: dict[str, str]) -> None:
        if self._roles is not None:
            self._roles.update(folders)


class Observer:
    def __init__(
        self,
        config: Config,
        store: Store,
        mirror: Mirror,
        *,
        clock: Callable[[], float],
        ews_path: str = EWS_PATH,
        max_body: int = 32 * 1024 * 1024,
    ) -> None:
        self.config = config
        self.store = store
        self.mirror = mirror
        self.clock = clock
        self.ews_path = ews_path.lower()
        self.max_body = max_body
        self._knowledge: dict[str, UserKnowledge] = {}
        #: NTLM authenticates a connection once: remember its user per client connection.
        self._connection_users: OrderedDict[str, str] = OrderedDict()

    # --- cheap filters ------------------------------------------------------------------------

    def may_concern_calendars(self, request_body: bytes) -> bool:
        return _MAYBE_CALENDAR.search(request_body) is not None

    def is_ews(self, method: str, path: str) -> bool:
        return method == "POST" and path.split("?", 1)[0].lower().endswith(self.ews_path)

    def saw_request_headers(self, connection_id: str, headers: Mapping[str, str]) -> None:
        """Remember the NTLM user of a connection (its AUTHENTICATE message)."""
        message = ntlm_message(headers.get("authorization", ""))
        if message is None:
            return
        user = ntlm_user(message)
        if user:
            self._connection_users[connection_id] = user
            self._connection_users.move_to_end(connection_id)
            while len(self._connection_users) > 10_000:
                self._connection_users.popitem(last=False)

    def connection_closed(self, connection_id: str) -> None:
        self._connection_users.pop(connection_id, None)

    # --- one exchange ---------------------------------------------------------------------------

    def observe(self, exchange: Exchange) -> list[int]:
        """Learn and record intents; returns the outbox ids recorded."""
        if not self.is_ews(exchange.method, exchange.path):
            return []
        if exchange.status_code != 200 or not exchange.request_body or not exchange.response_body:
            return []  # faults come with 500; a streamed body arrives empty: skip
        if not self.may_concern_calendars(exchange.request_body):
            return []
        try:
            request = classify(exchange.request_body, max_bytes=self.max_body)
            if request.kind != "request" or not request.known or not may_matter(request):
                return []
            if request.operation in LISTINGS and _CALENDAR_ITEM not in exchange.response_body:
                return []  # a listing of mail: there is nothing to learn from it
            user = self._owner(exchange, request)
            if user is None:
                return []
            response = classify(exchange.response_body, max_bytes=self.max_body)
        except EwsParseError as exc:
            log.info("not an EWS exchange calsync can read: %s", exc)
            return []
        knowledge = self._knowledge_of(user.mailbox)
        decision = decide(request, response, knowledge)
        return self._apply(user, request, decision, exchange.request_body, knowledge)

    def _knowledge_of(self, mailbox: str) -> UserKnowledge:
        knowledge = self._knowledge.get(mailbox)
        if knowledge is None:
            knowledge = self._knowledge[mailbox] = UserKnowledge(self.store, mailbox)
        return knowledge

    def _owner(self, exchange: Exchange, request: Classification) -> UserConfig | None:
        """The configured user whose calendar this exchange changes, if any.

        A folder of another mailbox names its owner (delegate access); otherwise the user
        the request authenticates as, unless the items it names by id are known in another
        configured mailbox only (delegate access by id: EWS ids are unique across
        mailboxes). Traffic of users who are not configured is left alone.
        """
        delegate = self.config.user_named(delegate_mailbox(request))
        if delegate is not None:
            return delegate
        names = candidate_names(
            exchange.request_headers,
            request.impersonation,
            self._connection_users.get(exchange.connection_id),
        )
        actor = next((u for u in map(self.config.user_named, names) if u is not None), None)
        ids = item_ids_named(request)
        if not ids or (actor is not None and self._knows(actor, ids)):
            return actor
        for user in self.config.users:
            if user is not actor and self._knows(user, ids):
                return user
        return actor

    def _knows(self, user: UserConfig, ids: Sequence[str]) -> bool:
        knowledge = self._knowledge_of(user.mailbox)
        return any(knowledge.is_mapped(i) or knowledge.item_class(i) == CALENDAR for i in ids)

    def _apply(
        self,
        user: UserConfig,
        request: Classification,
        decision: Decision,
        request_body: bytes,
        knowledge: UserKnowledge,
    ) -> list[int]:
        calendar_items = {i: c for i, c in decision.items.items() if c == CALENDAR}
        intents = decision.intents if user.mirrors_to_google else []
        if not (decision.folders or calendar_items or intents):
            return []
        now = self.clock()
        ids: list[int] = []
        conn = self.store.db.conn
        with self.store.transaction():
            if decision.folders:
                conn.executemany(
                    _LEARN_FOLDER, [(user.mailbox, f, r) for f, r in decision.folders.items()]
                )
            if calendar_items:
                # only calendar items are remembered: anything unknown is not one
                conn.executemany(
                    _LEARN_ITEM, [(user.mailbox, i, c) for i, c in calendar_items.items()]
                )
            for intent in intents:
                cursor = conn.execute(
                    _ENQUEUE, (user.mailbox, intent.item_id, intent.op, intent.change_key, now, now)
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        knowledge.learned_folders(decision.folders)
        for intent, entry_id in zip(intents, ids, strict=True):
            log.info(
                "%s %s %s recorded (%s)", user.mailbox, request.operation, intent.op, intent.reason
            )
            self.mirror.note(
                entry_id,
                Hot(request_body, intent.index, request.time_zone_context),
            )
        if ids:
            self.mirror.wake()
        return ids


def lower_headers(headers: Any) -> dict[str, str]:
    """mitmproxy's Headers (or any mapping) as a dict with lower-case names."""
    return {str(k).lower(): str(v) for k, v in headers.items()}
