"""What the proxy does with one EWS exchange, in plain values (the addon is a thin shell).

The addon's hooks run on mitmproxy's event loop and only hand over bytes: `Observing`
takes each exchange (raw bodies as they crossed the wire, their Content-Encoding, the
connection's principal) to one thread of its own, in the order the hooks saw them, so no
SQLite call, decode or parse ever holds up a flow. There `Observer.observe(Exchange)`
decodes the bodies in bounded steps (`sync/core/decode.py`, capped at `max_body` decoded
bytes), runs a one-scan filter, `classify` of both bodies, the owner decision (the
authenticated principal, `sync/core/identity.py`), the router's decision, and one SQLite
transaction that learns ids and records intents. The request bytes go to the worker in
memory (`Mirror.note`); nothing here waits on the network.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ews_parser.classify import classify
from ews_parser.errors import EwsParseError
from ews_parser.values import Classification
from sync.config import Config, UserConfig
from sync.core.decode import BodyEncodingError, BodyTooLarge, decode
from sync.core.identity import Owner, Principal, owner, principal_of, routing_hint
from sync.core.notice import RequestHint
from sync.core.routing import (
    CALENDAR,
    LISTINGS,
    OCCURRENCE,
    Decision,
    Intent,
    decide,
    delegate_mailbox,
    item_ids_named,
    may_matter,
)
from sync.sources.outbox import HOLD_S, Mirror
from sync.store import Store

log = logging.getLogger("calsync.proxy")

EWS_PATH = "/ews/exchange.asmx"
_CALENDAR_ITEM = b"CalendarItem"
#: Every request that can touch a calendar names a calendar item, an item id (ItemId,
#: ReferenceItemId, OccurrenceItemId, RecurringMasterItemId all contain "ItemId") or a
#: distinguished calendar / deleted-items folder. One scan in C drops the rest (mail
#: GetFolder, FindItem on the inbox, Message creates) before anything is parsed.
_MAYBE_CALENDAR = re.compile(rb"CalendarItem|ItemId|calendar|deleteditems")

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
    request_encoding: str | None = None  # Content-Encoding: the bodies are as sent
    response_encoding: str | None = None
    #: who the client connection authenticated as earlier (NTLM), read by the hook
    connection_principal: Principal | None = None

    @property
    def size(self) -> int:
        return len(self.request_body) + len(self.response_body)


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

    def master_of(self, item_id: str) -> str | None:
        return self.store.master_of(self.mailbox, item_id)

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
        #: NTLM (and Kerberos) authenticate a connection once: its principal, per connection
        self._connection_principals: OrderedDict[str, Principal] = OrderedDict()
        self._too_large_logged_at = 0.0

    # --- cheap filters ------------------------------------------------------------------------

    def may_concern_calendars(self, request_body: bytes) -> bool:
        return _MAYBE_CALENDAR.search(request_body) is not None

    def is_ews(self, method: str, path: str) -> bool:
        return method == "POST" and path.split("?", 1)[0].lower().endswith(self.ews_path)

    def saw_request_headers(self, connection_id: str, headers: Mapping[str, str]) -> None:
        """Remember who a connection authenticated as (NTLM's AUTHENTICATE message, or a
        Kerberos token). Cheap: the hook calls it on the event loop."""
        principal = principal_of(headers.get("authorization", ""))
        if principal is None or principal.scheme not in ("ntlm", "kerberos"):
            return
        self._connection_principals[connection_id] = principal
        self._connection_principals.move_to_end(connection_id)
        while len(self._connection_principals) > 10_000:
            self._connection_principals.popitem(last=False)

    def connection_principal(self, connection_id: str) -> Principal | None:
        return self._connection_principals.get(connection_id)

    def connection_closed(self, connection_id: str) -> None:
        self._connection_principals.pop(connection_id, None)

    # --- one exchange ---------------------------------------------------------------------------

    def observe(self, exchange: Exchange) -> list[int]:
        """Learn and record intents; returns the outbox ids recorded. Blocking (decodes,
        parses, writes SQLite): `Observing` calls it off the event loop."""
        if not self.is_ews(exchange.method, exchange.path):
            return []
        if exchange.status_code != 200 or not exchange.request_body or not exchange.response_body:
            return []  # faults come with 500; a streamed body arrives empty: skip
        request_body = self._decoded(exchange.request_body, exchange.request_encoding, "request")
        if request_body is None or not self.may_concern_calendars(request_body):
            return []
        try:
            request = classify(request_body, max_bytes=self.max_body)
            if request.kind != "request" or not request.known or not may_matter(request):
                return []
            response_body = self._decoded(
                exchange.response_body, exchange.response_encoding, "response"
            )
            if response_body is None:
                return []
            if request.operation in LISTINGS and _CALENDAR_ITEM not in response_body:
                return []  # a listing of mail: there is nothing to learn from it
            found = self._owner(exchange, request)
            if found is None:
                return []
            user = self.config.user_named(found.mailbox)
            if user is None:
                return []
            response = classify(response_body, max_bytes=self.max_body)
        except EwsParseError as exc:
            log.info("not an EWS exchange calsync can read: %s", exc)
            return []
        knowledge = self._knowledge_of(user.mailbox)
        decision = decide(request, response, knowledge)
        if found.confirm:
            decision = _to_confirm(decision)
        return self._apply(user, request, decision, request_body, knowledge)

    def _decoded(self, raw: bytes, encoding: str | None, what: str) -> bytes | None:
        """The body decoded, or None (said once) when it is over the cap or undecodable."""
        try:
            return decode(raw, encoding, self.max_body)
        except BodyTooLarge:
            now = time.monotonic()
            if now - self._too_large_logged_at > 10.0:  # a flood says it once in a while
                self._too_large_logged_at = now
                log.warning(
                    "EWS %s over calsync_max_body (%d bytes decoded): not mirrored; the"
                    " Exchange feed carries its change",
                    what,
                    self.max_body,
                )
            return None
        except BodyEncodingError as exc:
            log.info("EWS %s not decodable (%s): not mirrored", what, exc)
            return None

    def _knowledge_of(self, mailbox: str) -> UserKnowledge:
        knowledge = self._knowledge.get(mailbox)
        if knowledge is None:
            knowledge = self._knowledge[mailbox] = UserKnowledge(self.store, mailbox)
        return knowledge

    def _owner(self, exchange: Exchange, request: Classification) -> Owner | None:
        """The configured user whose calendar this exchange changes (sync/core/identity.py):
        the authenticated principal's, or the one a request's Mailbox element or known item
        ids name; never the one a routing hint names."""
        principal = principal_of(exchange.request_headers.get("authorization", ""))
        if principal is None or (principal.scheme == "ntlm" and principal.name is None):
            principal = exchange.connection_principal or self._connection_principals.get(
                exchange.connection_id
            )
        impersonation = request.impersonation
        return owner(
            principal=principal,
            impersonated=impersonation.mailbox if impersonation is not None else None,
            delegate=delegate_mailbox(request),
            hint=routing_hint(exchange.request_headers),
            item_ids=item_ids_named(request),
            configured=self._configured_mailbox,
            knows=self._knows_mailbox,
            users=[u.mailbox for u in self.config.users],
        )

    def _configured_mailbox(self, name: str | None) -> str | None:
        user = self.config.user_named(name)
        return user.mailbox if user is not None else None

    def _knows_mailbox(self, mailbox: str, ids: Sequence[str]) -> bool:
        user = self.config.user_named(mailbox)
        return user is not None and self._knows(user, ids)

    def _knows(self, user: UserConfig, ids: Sequence[str]) -> bool:
        knowledge = self._knowledge_of(user.mailbox)
        return any(
            knowledge.is_mapped(i) or knowledge.item_class(i) in (CALENDAR, OCCURRENCE)
            for i in ids
        )

    def _apply(
        self,
        user: UserConfig,
        request: Classification,
        decision: Decision,
        request_body: bytes,
        knowledge: UserKnowledge,
    ) -> list[int]:
        calendar_items = {i: c for i, c in decision.items.items() if c in (CALENDAR, OCCURRENCE)}
        intents = decision.intents if user.mirrors_to_google else []
        if not (decision.folders or calendar_items or intents):
            return []
        # one transaction per exchange, of prepared statements (sync/state/sqlite.py)
        ids: list[int] = []
        try:
            with self.store.unit() as uow:
                uow.learned.learn_folders(user.mailbox, decision.folders)
                # only calendar items are remembered: anything unknown is not one
                uow.learned.learn_items(user.mailbox, calendar_items, decision.masters)
                # on a shared store, held for this node's worker, which has the request
                ids = uow.outbox.enqueue_many(
                    [(user.mailbox, i.item_id, i.op, i.change_key) for i in intents],
                    now=self.clock(),
                    held_for=self.mirror.claims_as,
                    hold_s=HOLD_S,
                )
                # noted before the commit: a draining worker may take an entry the moment
                # it is committed, and without its request it reads the item from Exchange
                for intent, entry_id in zip(intents, ids, strict=True):
                    self.mirror.note(
                        entry_id,
                        RequestHint(request_body, intent.index, request.time_zone_context),
                    )
        except BaseException:
            self.mirror.forget(ids)  # never recorded: their ids go to the next entries
            raise
        knowledge.learned_folders(decision.folders)
        for intent in intents:
            log.info(
                "%s %s %s recorded (%s)", user.mailbox, request.operation, intent.op, intent.reason
            )
        if ids:
            self.mirror.wake()
        return ids


class Observing:
    """One thread that observes exchanges in the order the hooks handed them over.

    `submit` never blocks and never fails a flow: past `max_pending_bytes` of bodies
    waiting (the store locked for long, say) an exchange is dropped with one warning, and
    the Exchange feed carries its change later. `flush` waits until what was submitted
    has been observed (shutdown, tests)."""

    def __init__(self, observer: Observer, *, max_pending_bytes: int = 256 * 1024 * 1024) -> None:
        self.observer = observer
        self.max_pending_bytes = max_pending_bytes
        self._queue: queue.SimpleQueue[Exchange | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._unfinished = 0
        self._pending_bytes = 0
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="calsync-observer", daemon=True)
        self._thread.start()

    def submit(self, exchange: Exchange) -> bool:
        with self._idle:
            if self._pending_bytes + exchange.size > self.max_pending_bytes:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning(
                        "calsync observer backlog full: %d exchange(s) not mirrored now; the"
                        " Exchange feed carries their changes",
                        self._dropped,
                    )
                return False
            self._unfinished += 1
            self._pending_bytes += exchange.size
        self._queue.put(exchange)
        return True

    def _run(self) -> None:
        while True:
            exchange = self._queue.get()
            if exchange is None:
                return
            try:
                self.observer.observe(exchange)
            except Exception as exc:  # never lose the thread; the flow has long passed
                log.error("calsync: observing an exchange failed: %s: %s", type(exc).__name__, exc)
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._pending_bytes -= exchange.size
                    if self._unfinished == 0:
                        self._idle.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted has been observed; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    def stop(self, timeout: float = 10.0, *, join: bool = True) -> None:
        """Observe what is queued (waiting at most `timeout` seconds), then end the
        thread; with `join=False` it returns at once and the thread ends by itself."""
        if timeout > 0:
            self.flush(timeout)
        self._queue.put(None)
        if join:
            self._thread.join(timeout=1.0)


def _to_confirm(decision: Decision) -> Decision:
    """What a flow whose sender calsync could not read may do: learn nothing, delete
    nothing, and have the worker confirm each created or changed item (a `refresh` of an
    item not yet mapped reads it as the user and mirrors it only from their calendar)."""
    confirmed = Decision()
    for intent in decision.intents:
        if intent.op in ("upsert", "update", "refresh"):
            confirmed.intents.append(
                Intent("refresh", intent.item_id, None, None, f"to confirm: {intent.reason}")
            )
    return confirmed


def lower_headers(headers: Any) -> dict[str, str]:
    """mitmproxy's Headers (or any mapping) as a dict with lower-case names."""
    return {str(k).lower(): str(v) for k, v in headers.items()}
