"""The worker that drains the outbox into Google Calendar, off the request path.

The proxy's hook records an intent (fast: one SQLite transaction, no network) and hands the
request bytes it saw to `Mirror.note`; this worker, an asyncio task, turns each intent into
a Google write in a thread (google-api-python-client blocks):

- prepare: the event or patch, from the request bytes when they are still in memory, else
  (after a restart, or when the request cannot tell: occurrence edits, unknown folders)
  from a full read of the item through exchangelib. What was prepared is sealed into the
  outbox row, so a retry never prepares twice.
- apply: insert with the deterministic id (409 -> it is already there: make it equal),
  patch with If-Match (412 -> re-read and patch again on the current etag: the change is
  one Exchange accepted), delete (404/410 -> already gone). A Google event deleted by the
  user is never brought back by a later Exchange edit.
- no orphans: an entry with a later delete of its item pending is done without writing (the
  delete follows); a payload an earlier attempt stored is written only once one GetItem
  confirms the item is still there; an item Exchange no longer has takes along the Google
  event made for it (only one tagged as its) and its pair.
- on error: retry with exponential backoff (Retry-After wins), quarantine after the
  configured number of attempts, or at once when a retry cannot help; the rest of the
  user's queue goes on.

Per-item order is kept (the store hands out one entry per item, the oldest); users are
drained concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ews_parser.errors import CalsyncError, EwsParseError
from sync.backends.base import ExchangeError, GoogleError
from sync.backends.clients import Clients
from sync.config import Config, UserConfig
from sync.core.events import (
    apply_patch,
    belongs_to,
    diff,
    google_body,
    short,
    tagged,
)
from sync.reconcile import Reconciler, RunContext
from sync.store import MappedItem, OutboxEntry, Store

log = logging.getLogger("calsync.mirror")


#: How many requests' bytes are kept for the worker; older ones are read from Exchange.
HOT_LIMIT = 10_000

#: What `_prepare` says of an item Exchange no longer has: its Google event goes too.
GONE: dict[str, Any] = {"kind": "gone"}


@dataclass(frozen=True, slots=True)
class Hot:
    """The request a change came in, kept in memory (never on disk) for the worker."""

    request: bytes
    index: int | None
    default_zone: str | None = None


class Skip(CalsyncError):
    """Nothing to write: said why, and the entry is done."""


class Mirror:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        clients: Clients | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        #: the process's one client cache (shared with the job and push when they run here)
        self.clients = clients or Clients(config)
        #: every write goes through the one reconciler's rules (sync/reconcile.py)
        self.reconciler = Reconciler(config, store, clock=clock)
        self._hot: OrderedDict[int, Hot] = OrderedDict()
        self._hot_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: completed entries, for tests and the benchmark: (entry id, when)
        self.completed: list[tuple[int, float]] = []
        self._pool: ProcessPoolExecutor | None = None
        self._pool_args: tuple[str, int] | None = None

    # --- what the hook calls -----------------------------------------------------------------

    def note(self, entry_id: int, hot: Hot) -> None:
        with self._hot_lock:
            self._hot[entry_id] = hot
            while len(self._hot) > HOT_LIMIT:
                self._hot.popitem(last=False)

    def wake(self) -> None:
        if self._wake is None or self._loop is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Drain forever (until cancelled), waking on `wake()` or when a retry is due."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            self._wake.clear()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the worker die: log, wait, go on
                log.error("calsync worker error: %s: %s", type(exc).__name__, exc)
            # every store call off the event loop: the store may be locked for a while
            due = await asyncio.to_thread(self.store.next_due)
            timeout = 30.0 if due is None else max(0.0, min(30.0, due - self.clock()))
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def drain(self) -> int:
        """Apply every entry that is due now; returns how many were handled."""
        handled = 0
        while True:
            entries = await asyncio.to_thread(self.store.ready, self.clock())
            if not entries:
                return handled
            by_user: dict[str, list[OutboxEntry]] = {}
            for entry in entries:
                by_user.setdefault(entry.mailbox, []).append(entry)
            await asyncio.gather(*(self._drain_user(batch) for batch in by_user.values()))
            handled += len(entries)

    async def _drain_user(self, entries: list[OutboxEntry]) -> None:
        for entry in entries:
            if self._pool is None:
                await asyncio.to_thread(self.process, entry)
                continue
            with self._hot_lock:
                hot = self._hot.pop(entry.id, None)
            loop = asyncio.get_running_loop()
            try:
                done_at = await loop.run_in_executor(self._pool, process_in_worker, entry.id, hot)
            except BrokenProcessPool:
                # a worker died (killed, out of memory): start a new pool; the entry is
                # still pending in the outbox and will be handed out again
                log.warning("calsync worker process died; starting a new one")
                self._start_pool()
                return
            if done_at is not None:
                self.completed.append((entry.id, done_at))

    # --- worker processes --------------------------------------------------------------------

    def use_processes(self, config_path: str, workers: int = 1) -> None:
        """Do the writing in `workers` separate processes, so that parsing, mapping and
        the Google client's CPU never compete with the proxy for its event loop's GIL.
        Each process opens the same config and store (SQLite in WAL mode takes both)."""
        self._pool_args = (config_path, workers)
        self._start_pool()

    def _start_pool(self) -> None:
        if self._pool_args is None:
            return
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        config_path, workers = self._pool_args
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            # spawn, not fork: mitmproxy's threads and event loop must not be copied
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(config_path,),
        )

    @property
    def pool(self) -> ProcessPoolExecutor | None:
        return self._pool

    def close(self, *, wait: bool = True, timeout: float = 5.0) -> None:
        """Stop the worker processes: wait for the one at work at most `timeout` seconds,
        then kill it. Shutdown must never hang mitmdump; an entry cut short is still
        pending in the outbox, and its retry is harmless (fixed ids, conditional writes)."""
        pool, self._pool, self._pool_args = self._pool, None, None
        if pool is None:
            return
        if not wait:
            pool.shutdown(wait=False, cancel_futures=True)
            return
        stopper = threading.Thread(
            target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
        )
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            # ProcessPoolExecutor has no public way to end a stuck worker
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            log.warning("calsync worker process did not stop within %.0f s: killed", timeout)

    # --- one entry (blocking: runs in a thread) --------------------------------------------------

    def process(self, entry: OutboxEntry) -> None:
        """Apply one entry. Its writes are a run of their own (`calsync undo` puts them
        back like a sync run's)."""
        user = self.config.user_named(entry.mailbox)
        run: RunContext | None = None
        try:
            if user is None:
                raise Skip(f"{entry.mailbox} is no longer configured")
            if not user.mirrors_to_google:
                raise Skip(f"{entry.mailbox} does not mirror Exchange to Google")
            run = self.reconciler.begin(entry.mailbox)
            self._apply(entry, user, run)
        except Skip as why:
            log.info(
                "%s %s %s: nothing to write (%s)",
                entry.mailbox,
                entry.op,
                short(entry.ews_item_id),
                why,
            )
            self.store.complete(entry, mapping=None, now=self.clock())
        except GoogleError as exc:
            self._failed(entry, str(exc), retryable=exc.retryable, retry_after=exc.retry_after)
        except ExchangeError as exc:
            self._failed(entry, str(exc), retryable=exc.retryable)
        except (EwsParseError, CalsyncError) as exc:
            self._failed(entry, f"{type(exc).__name__}: {exc}", retryable=False)
        except Exception as exc:
            # a bug of ours or a library's is no outage: retrying cannot help. Quarantined
            # at once under its own name (`calsync status`), the rest of the queue goes on.
            self._failed(entry, f"unexpected {type(exc).__name__}: {exc}", retryable=False)
        else:
            self.completed.append((entry.id, self.clock()))
        finally:
            if run is not None:
                self.reconciler.finish(run)
            with self._hot_lock:
                self._hot.pop(entry.id, None)

    def _failed(
        self, entry: OutboxEntry, error: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        policy = self.config.outbox
        attempts = entry.attempts + 1
        quarantine = not retryable or attempts >= policy.max_attempts
        delay = retry_after
        if delay is None:
            delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempts - 1))
            delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not security
        self.store.retry_later(
            entry.id, error=error, at=self.clock() + delay, quarantine=quarantine
        )
        if quarantine:
            log.warning(
                "%s %s %s quarantined after %d attempt(s): %s",
                entry.mailbox,
                entry.op,
                short(entry.ews_item_id),
                attempts,
                error,
            )
        else:
            log.info(
                "%s %s %s failed (attempt %d), retry in %.1f s: %s",
                entry.mailbox,
                entry.op,
                short(entry.ews_item_id),
                attempts,
                delay,
                error,
            )

    def _clients(self, user: UserConfig) -> Any:
        return self.clients.google(user)

    def _mailbox(self, user: UserConfig) -> Any:
        return self.clients.exchange(user)

    def _later(self, user: UserConfig) -> Any:
        """The user's Exchange client, made only if the reconciler needs to read or write
        Exchange (most fast-path writes never do; a proxy without ews_url works)."""
        return _Lazy(lambda: self._mailbox(user))

    # --- apply ---------------------------------------------------------------------------

    def _apply(self, entry: OutboxEntry, user: UserConfig, run: RunContext) -> None:
        google = self._clients(user)
        mapped = self.store.mapped(entry.mailbox, entry.ews_item_id)
        now = self.clock()
        if entry.op == "delete":
            self._delete(google, entry, user, mapped, run)
            return
        if self.store.superseded_by_delete(entry):
            raise Skip("superseded: a later delete of the item follows")
        payload: dict[str, Any] | None = entry.payload  # the worker reads its own JSON
        if payload is None:
            payload = self._prepare(entry, user, mapped)
            self.store.set_payload(entry.id, payload)
        elif payload["kind"] in ("event", "patch") and self._gone_from_exchange(entry, user):
            # prepared by an earlier attempt: the item may have been deleted since, by a
            # delete calsync never recorded (lost in a kill of the proxy)
            payload = GONE
        if payload["kind"] == "gone":
            self._forget_gone(google, entry, mapped)
            return
        if payload["kind"] == "skip":
            raise Skip(payload["reason"])
        if payload["kind"] == "patch" and mapped is not None and mapped.snapshot is not None:
            result = self._patch(google, entry, user, mapped, payload["patch"], run)
        else:
            event = payload.get("event")
            if event is None:  # a patch with nothing to patch: read the whole item
                payload = self._prepare(entry, user, None)
                self.store.set_payload(entry.id, payload)
                if payload["kind"] == "gone":
                    self._forget_gone(google, entry, mapped)
                    return
                if payload["kind"] == "skip":
                    raise Skip(payload["reason"])
                event = payload["event"]
            result = self._put(google, entry, user, mapped, event, run)
            if result is not None and payload.get("instances"):
                self._write_instances(google, entry, payload["instances"])
        if result is None:
            log.info(
                "%s %s %s: the Google event was deleted there; not recreated",
                entry.mailbox,
                entry.op,
                short(entry.ews_item_id),
            )
            self.store.complete(entry, mapping=None, forget=True, now=now)
            return
        self.store.complete(entry, mapping=result, now=now)

    def _gone_from_exchange(self, entry: OutboxEntry, user: UserConfig) -> bool:
        """One cheap GetItem (IdOnly): True only when Exchange answers ErrorItemNotFound.
        Without an `[exchange] ews_url` nothing can be asked, and the payload is trusted."""
        if not self.config.exchange_ews_url:
            return False
        return entry.ews_item_id in self._mailbox(user).missing([entry.ews_item_id])

    def _forget_gone(self, google: Any, entry: OutboxEntry, mapped: MappedItem | None) -> None:
        """The item is gone from Exchange: delete the Google event this entry or an earlier
        one made for it (the mapped event, else the item's deterministic id), but only
        when that event is tagged as this item's, and forget the pair."""
        from mapping.event import event_id_for

        event_id = mapped.google_event_id if mapped else event_id_for(entry.ews_item_id)
        event = google.get(event_id)
        if event is None or event.get("status") == "cancelled":
            outcome = "no Google event to delete"
        elif not belongs_to(event, entry.ews_item_id):
            outcome = f"Google {event_id} is not tagged as its event: left alone"
        else:
            try:
                google.delete(event_id)
            except GoogleError as exc:
                if exc.status not in (404, 410):
                    raise
            outcome = f"Google {event_id} deleted"
        log.info(
            "%s %s %s: no longer in Exchange; %s",
            entry.mailbox,
            entry.op,
            short(entry.ews_item_id),
            outcome,
        )
        self.store.complete(entry, mapping=None, forget=True, now=self.clock())

    def _prepare(
        self, entry: OutboxEntry, user: UserConfig, mapped: MappedItem | None
    ) -> dict[str, Any]:
        """What to write: {"kind": "event"|"patch"|"skip"|"gone", ...}."""
        from mapping.event import patch_for

        with self._hot_lock:
            hot = self._hot.get(entry.id)
        if hot is not None and hot.index is not None:
            from ews_parser.envelope import parse
            from ews_parser.values import CreateItemRequest, ParsedItem, UpdateItemRequest
            from mapping.errors import MappingError

            request = parse(hot.request, default_zone=hot.default_zone).body
            try:
                if entry.op == "upsert" and isinstance(request, CreateItemRequest):
                    item = request.items[hot.index]
                    if isinstance(item, ParsedItem) and item.model is not None:
                        model = item.model
                        deleted: tuple[Any, ...] = ()  # original starts, for an EXDATE
                        if item.mime_content is not None:
                            # iCalendar only (DavMail): the item as Exchange imports it;
                            # MimeConversionError (a MappingError) when it cannot tell
                            from mapping.ical import calendar_item

                            model, deleted = calendar_item(
                                model,
                                item.mime_content,
                                owner=entry.mailbox,
                                default_zone=hot.default_zone,
                            )
                        event = google_body(model, default_zone=hot.default_zone)
                        if not deleted:
                            return {"kind": "event", "event": event}
                        from mapping.event import event_id_for
                        from mapping.exceptions import overrides_for

                        master = (
                            mapped.google_event_id if mapped else event_id_for(entry.ews_item_id)
                        )
                        cancelled = overrides_for(master, event, [], deleted)
                        return {"kind": "event", "event": event, "instances": cancelled}
                if (
                    entry.op == "update"
                    and isinstance(request, UpdateItemRequest)
                    and mapped is not None
                    and mapped.snapshot is not None
                ):
                    updates = request.changes[hot.index].updates
                    patch = patch_for(updates, mapped.snapshot)
                    if patch is not None:
                        return {"kind": "patch", "patch": patch}
            except MappingError as exc:
                # the request alone cannot say (an item without times, say): read it whole
                log.info(
                    "%s %s %s: %s; reading the item from Exchange",
                    entry.mailbox,
                    entry.op,
                    short(entry.ews_item_id),
                    exc,
                )
        # The request is gone or cannot tell: read the item from Exchange.
        mailbox = self._mailbox(user)
        item = mailbox.calendar_item(entry.ews_item_id)
        if item is None:
            return GONE
        if getattr(item, "type", None) in ("Occurrence", "Exception"):
            # A client that read an occurrence (GetItem on an OccurrenceItemId, or a
            # CalendarView) edits it by its own ItemId: it is no event of its own, and rides
            # with its series master, as OccurrenceItemId edits do.
            master = mailbox.master_item_id(item)
            if master is not None and master != entry.ews_item_id:
                self.store.enqueue(entry.mailbox, master, "refresh", now=self.clock())
            return {"kind": "skip", "reason": "an occurrence: its series master is refreshed"}
        if entry.op == "refresh" and mapped is None:
            parent = getattr(item.parent_folder_id, "id", None)
            calendar = mailbox.calendar_folder_id()
            # remember it: later CreateItems naming this FolderId need no question
            self.store.learn_folders(entry.mailbox, {calendar: "calendar"})
            if parent is not None and parent != calendar:
                return {"kind": "skip", "reason": "the item is not in the calendar"}
        event = google_body(item)
        return {
            "kind": "event",
            "event": event,
            "instances": self._instances(entry, mailbox, item, event, mapped),
        }

    def _instances(
        self,
        entry: OutboxEntry,
        mailbox: Any,
        item: Any,
        event: dict[str, Any],
        mapped: MappedItem | None,
    ) -> list[dict[str, Any]]:
        """A series' exceptions as Google instances: each modified occurrence an override,
        each deleted one a cancelled instance (mapping/exceptions.py)."""
        from mapping.event import MANAGED_FIELDS, event_id_for
        from mapping.exceptions import overrides_for

        if getattr(item, "type", None) != "RecurringMaster":
            return []
        modified_ids = [o.id for o in item.modified_occurrences or [] if getattr(o, "id", None)]
        deleted = [d.start for d in item.deleted_occurrences or [] if d.start is not None]
        if not modified_ids and not deleted:
            return []
        master_id = mapped.google_event_id if mapped else event_id_for(entry.ews_item_id)
        zone = getattr(item._start_timezone, "key", None)
        overrides = overrides_for(
            master_id, event, mailbox.calendar_items(modified_ids), deleted, default_zone=zone
        )
        keep = {*MANAGED_FIELDS, "id", "status", "recurringEventId", "originalStartTime"}
        # instances carry what their master carries (the core fields), never an iCalUID
        return [
            {k: v for k, v in o.items() if k in keep and k not in ("iCalUID", "recurrence")}
            for o in overrides
        ]

    def _write_instances(
        self, google: Any, entry: OutboxEntry, instances: list[dict[str, Any]]
    ) -> None:
        """Patch each override onto its instance, delete each cancelled one; both are
        idempotent, so a retry does no harm and nothing per instance is stored."""
        for instance in instances:
            instance_id = instance["id"]
            try:
                if instance.get("status") == "cancelled":
                    google.delete(instance_id)
                else:
                    body = {k: v for k, v in instance.items() if k != "id"}
                    google.patch(instance_id, body)
            except GoogleError as exc:
                if exc.status not in (404, 410):
                    raise
                # not an occurrence of the series as Google expands it: say so, go on
                log.info(
                    "%s %s: no instance %s in Google (%s)",
                    entry.mailbox,
                    short(entry.ews_item_id),
                    instance_id,
                    exc.status,
                )

    def _put(
        self,
        google: Any,
        entry: OutboxEntry,
        user: UserConfig,
        mapped: MappedItem | None,
        event: dict[str, Any],
        run: RunContext,
    ) -> MappedItem | None:
        """Make the Google event equal `event`: a new one under the item's deterministic
        id (a taken id follows the reconciler's one 409 rule), or a patch of what differs."""
        body = tagged(event, entry.mailbox, entry.ews_item_id)
        if mapped is not None:
            patch = diff(mapped.snapshot or {}, body)
            return self._patch(google, entry, user, mapped, patch, run, snapshot=body)
        return self.reconciler.create_google(
            user, google, self._later(user), entry.ews_item_id, entry.change_key, event, run
        )

    def _patch(
        self,
        google: Any,
        entry: OutboxEntry,
        user: UserConfig,
        mapped: MappedItem,
        patch: dict[str, Any],
        run: RunContext,
        *,
        snapshot: dict[str, Any] | None = None,
    ) -> MappedItem | None:
        """The fast path: the fields Exchange changed, patched onto the version calsync
        last wrote (If-Match). When Google changed since (412), it is the reconciler's
        read-merge-write with the user's policy: never "Exchange wins" by default."""
        new_snapshot = (
            snapshot if snapshot is not None else apply_patch(mapped.snapshot or {}, patch)
        )
        if not patch:
            return MappedItem(
                mailbox=mapped.mailbox,
                ews_item_id=mapped.ews_item_id,
                google_event_id=mapped.google_event_id,
                ews_change_key=entry.change_key or mapped.ews_change_key,
                google_etag=mapped.google_etag,
                content_hash=mapped.content_hash,
                snapshot=new_snapshot,
            )
        try:
            result = google.patch(mapped.google_event_id, patch, etag=mapped.google_etag)
        except GoogleError as exc:
            if exc.status in (404, 410):
                return None
            if exc.status != 412:
                raise
            log.info(
                "%s %s: Google changed since our last write; merging both sides",
                entry.mailbox,
                mapped.google_event_id,
            )
            return self.reconciler.reconcile_pair(
                user, google, self._later(user), entry.ews_item_id, run
            )
        self.reconciler.record(
            run,
            "google",
            "patch",
            mapped.google_event_id,
            other_key=entry.ews_item_id,
            version=result.get("etag"),
            before=mapped.snapshot,
            fields=patch,
        )
        log.info(
            "%s %s %s -> Google %s (%s)",
            entry.mailbox,
            entry.op,
            short(entry.ews_item_id),
            mapped.google_event_id,
            ", ".join(sorted(patch)),
        )
        return self._mapped_after(entry, mapped.google_event_id, result, new_snapshot, mapped)

    def _delete(
        self,
        google: Any,
        entry: OutboxEntry,
        user: UserConfig,
        mapped: MappedItem | None,
        run: RunContext,
    ) -> None:
        """Exchange accepted a delete: the pair's Google event goes (recorded for undo).
        An item calsync never mapped is not claimed as done: its deterministic event is
        deleted only when it exists and carries this item's tag, else the two-way job
        settles it."""
        from mapping.event import event_id_for

        if mapped is not None:
            self.reconciler.delete_google(
                user, google, entry.ews_item_id, mapped.google_event_id, run, "deleted in Exchange"
            )
        else:
            event_id = event_id_for(entry.ews_item_id)
            event = google.get(event_id)
            if event is not None and belongs_to(event, entry.ews_item_id):
                self.reconciler.delete_google(
                    user, google, entry.ews_item_id, event_id, run, "deleted in Exchange"
                )
            else:
                log.info(
                    "%s delete %s: not mapped; left to the two-way job",
                    entry.mailbox,
                    short(entry.ews_item_id),
                )
        self.store.complete(entry, mapping=None, forget=True, now=self.clock())

    def _mapped_after(
        self,
        entry: OutboxEntry,
        event_id: str,
        result: dict[str, Any],
        snapshot: dict[str, Any],
        previous: MappedItem | None = None,
    ) -> MappedItem:
        from mapping.event import content_hash

        # the two-way job must know this version for ours when Google's feed returns it
        self.store.journal(
            entry.mailbox,
            "google",
            event_id,
            result.get("etag"),
            content_hash(snapshot),
            now=self.clock(),
        )
        return MappedItem(
            mailbox=entry.mailbox,
            ews_item_id=entry.ews_item_id,
            google_event_id=event_id,
            ews_change_key=entry.change_key or (previous.ews_change_key if previous else None),
            google_etag=result.get("etag"),
            content_hash=content_hash(snapshot),
            snapshot=snapshot,
        )


class _Lazy:
    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            self._made = self._make()
        return getattr(self._made, name)


# --- in a worker process ------------------------------------------------------------------------

_worker: Mirror | None = None


def _init_worker(config_path: str) -> None:
    """A worker process's start: its own config, store connection and clients."""
    global _worker
    import signal

    from sync.config import load_config

    # Ctrl-C goes to the whole process group: the proxy decides when workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The proxy's traffic comes first: under load, mirroring waits for spare CPU (the
    # outbox holds the backlog) instead of slowing every client down.
    with contextlib.suppress(OSError):
        os.nice(10)
    logging.basicConfig(level=logging.INFO, format="calsync worker: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    config = load_config(config_path)
    _worker = Mirror(config, Store(config.store_path))


def _exit_with_parent(parent: int) -> None:
    """A worker outlives a SIGKILLed mitmdump (nothing tells it): once re-parented, it
    exits. An entry cut short is still pending in the outbox for the next start."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def process_in_worker(entry_id: int, hot: Hot | None) -> float | None:
    """Apply one outbox entry in this worker process; when it completed, the time."""
    worker = _worker
    if worker is None:
        raise RuntimeError("worker process not initialised")
    entry = worker.store.entry(entry_id)
    if entry is None or entry.state != "pending":
        return None  # done meanwhile (a restart's duplicate hand-out)
    if hot is not None:
        worker.note(entry_id, hot)
    before = len(worker.completed)
    worker.process(entry)
    return worker.completed[-1][1] if len(worker.completed) > before else None
