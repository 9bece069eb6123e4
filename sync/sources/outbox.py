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
drained concurrently. On a store several nodes share, the proxy records each entry held for
its own node's worker (`claims_as`) for `HOLD_S`: that worker has the request's bytes, any
other would read the item from Exchange. Past the hold, any node's worker takes it.
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
from typing import Any, cast

from ews_parser.errors import CalsyncError, EwsParseError
from sync.backends.base import ExchangeBackend, ExchangeError, GoogleError
from sync.backends.clients import Clients
from sync.config import Config, UserConfig
from sync.core.events import short
from sync.core.notice import ChangeNotice, Kind, RequestHint
from sync.ops import metrics
from sync.reconcile import Reconciler, RunContext, Skip
from sync.state.base import new_holder
from sync.store import OutboxEntry, Store, StoreError

log = logging.getLogger("calsync.mirror")


#: How many requests' bytes are kept for the worker; older ones are read from Exchange.
HOT_LIMIT = 10_000
#: how long a claim on a shared store's entry lasts, in `[store] lease_s`: an entry a dead
#: node held is handed to another this long after (claims are not renewed; one entry's
#: writes take well under a second). 30 s leases: 60 s claims.
CLAIM_LEASES = 2.0
#: How long an entry the proxy recorded on a shared store waits for this node's worker
#: before any node's may take it: the request's bytes are in this node's memory only
#: (`note`), so another node's worker would read the item from Exchange. A dead, stalled
#: or overloaded node's entries pass to the others this long after they were recorded.
HOLD_S = 2.0


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
        self._hot: OrderedDict[int, RequestHint] = OrderedDict()
        self._hot_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: completed entries, for tests and the benchmark: (entry id, when)
        self.completed: list[tuple[int, float]] = []
        self._pool: ProcessPoolExecutor | None = None
        self._pool_args: tuple[str, int] | None = None
        #: who this worker is in the claims it takes on a shared store
        self.holder = new_holder()

    # --- what the hook calls -----------------------------------------------------------------

    def note(self, entry_id: int, hot: RequestHint) -> None:
        with self._hot_lock:
            self._hot[entry_id] = hot
            while len(self._hot) > HOT_LIMIT:
                self._hot.popitem(last=False)

    def forget(self, entry_ids: list[int]) -> None:
        """Drop what was noted for entries that were never recorded (their ids are free)."""
        with self._hot_lock:
            for entry_id in entry_ids:
                self._hot.pop(entry_id, None)

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
            handled = 0
            try:
                handled = await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the worker die: log, wait, go on
                log.error("calsync worker error: %s: %s", type(exc).__name__, exc)
            # every store call off the event loop: the store may be locked for a while
            due = await asyncio.to_thread(self.store.next_due, self.claims_as)
            timeout = 30.0 if due is None else max(0.0, min(30.0, due - self.clock()))
            if not handled and due is not None and timeout == 0:
                timeout = 1.0  # due, yet not taken (another's meanwhile): no busy loop
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def drain(self) -> int:
        """Apply every entry that is due now; returns how many were handled."""
        handled = 0
        while True:
            # a paused user's entries (the admin console) are not handed out
            entries = await asyncio.to_thread(self._take, self.clock())
            if not entries:
                return handled
            by_user: dict[str, list[OutboxEntry]] = {}
            for entry in entries:
                by_user.setdefault(entry.mailbox, []).append(entry)
            await asyncio.gather(*(self._drain_user(batch) for batch in by_user.values()))
            handled += len(entries)

    @property
    def claims_as(self) -> str | None:
        """Who this worker is in a shared store's claims (the proxy holds the entries it
        records for it); None when it drains one node's store alone (`ready`)."""
        return self.holder if self.store.shared else None

    def _take(self, now: float) -> list[OutboxEntry]:
        """The entries due now. A store other nodes drain too hands them out under a claim
        of this worker's own, which runs out if the worker dies (another node then takes
        them), the entries this node recorded first; a store this node owns alone gives
        back what an earlier run left claimed."""
        if self.claims_as is None:
            return self.store.ready(now)
        return self.store.claim(now, self.claims_as, CLAIM_LEASES * self.config.store_lease_s)

    async def _drain_user(self, entries: list[OutboxEntry]) -> None:
        for entry in entries:
            if self._pool is None:
                await asyncio.to_thread(self.process, entry)
                continue
            with self._hot_lock:
                hot = self._hot.pop(entry.id, None)
            loop = asyncio.get_running_loop()
            try:
                done_at, recorded = await loop.run_in_executor(
                    self._pool, process_in_worker_counted, entry.id, hot
                )
                metrics.take_over(recorded)  # what the process counted, into this /metrics
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
        # The pool spawns a process when a call finds none idle: one call each starts them
        # all now, so each has imported its libraries and warmed its clients up
        # (_init_worker) before the first change is due. Nothing waits for these calls.
        for _ in range(workers):
            self._pool.submit(os.getpid)

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
            if entry.op != "delete" and self.store.superseded_by_delete(entry):
                raise Skip("superseded: a later delete of the item follows")
            run = self.reconciler.begin(entry.mailbox)
            outcome = self.reconciler.apply(
                self.notice(entry),
                run,
                user=user,
                google=self.clients.google(user),
                exchange=self._later(user),
                remember=lambda prepared: self.store.set_payload(entry.id, prepared),
            )
            self.store.complete(
                entry, mapping=outcome.mapping, forget=outcome.forget, now=self.clock()
            )
        except Skip as why:
            log.info(
                "%s %s %s: nothing to write (%s)",
                entry.mailbox,
                entry.op,
                short(entry.ews_item_id),
                why,
            )
            self.store.complete(entry, mapping=None, now=self.clock())
            metrics.outbox_result("skipped")
        except GoogleError as exc:
            self._failed(entry, str(exc), retryable=exc.retryable, retry_after=exc.retry_after)
        except ExchangeError as exc:
            self._failed(entry, str(exc), retryable=exc.retryable)
        except StoreError as exc:  # the store was away (restarted, a stalled session ended)
            self._failed(entry, f"{type(exc).__name__}: {exc}", retryable=True)
        except (EwsParseError, CalsyncError) as exc:
            self._failed(entry, f"{type(exc).__name__}: {exc}", retryable=False)
        except Exception as exc:
            # a bug of ours or a library's is no outage: retrying cannot help. Quarantined
            # at once under its own name (`calsync status`), the rest of the queue goes on.
            self._failed(entry, f"unexpected {type(exc).__name__}: {exc}", retryable=False)
        else:
            self.completed.append((entry.id, self.clock()))
            if run is not None and run.writes == 0:
                # both sides held the change already (a run streaming or a poll set off
                # carried it first): no write, so no latency of the proxy's to count
                metrics.outbox_result("skipped")
            else:
                metrics.outbox_written(entry, now=self.completed[-1][1])
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
        metrics.outbox_result("quarantined" if quarantine else "retry")
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

    def notice(self, entry: OutboxEntry) -> ChangeNotice:
        """The change notice an outbox entry stands for: a change Exchange accepted, the
        request it came in (while still in memory) its hint."""
        with self._hot_lock:
            hot = self._hot.get(entry.id)
        kind: Kind = entry.op  # type: ignore[assignment]
        return ChangeNotice(
            mailbox=entry.mailbox,
            side="exchange",
            key=entry.ews_item_id,
            version=entry.change_key,
            kind=kind,
            origin="proxy",
            hint=hot,
            prepared=entry.payload,
        )

    def _later(self, user: UserConfig) -> ExchangeBackend:
        """The user's Exchange client, made only if the reconciler needs to read or write
        Exchange (most fast-path writes never do; a proxy without ews_url works)."""
        return cast("ExchangeBackend", _Lazy(lambda: self.clients.exchange(user)))


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
    from sync.sources.warmup import warm_up

    # Ctrl-C goes to the whole process group: the proxy decides when workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    metrics.forward_from_this_process()  # handed to the parent with each entry
    # The proxy's traffic comes first: under load, mirroring waits for spare CPU (the
    # outbox holds the backlog) instead of slowing every client down.
    with contextlib.suppress(OSError):
        os.nice(10)
    logging.basicConfig(level=logging.INFO, format="calsync worker: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    config = load_config(config_path)
    _worker = Mirror(config, Store.open(config))
    warm_up(config, _worker.clients)


def _exit_with_parent(parent: int) -> None:
    """A worker outlives a SIGKILLed mitmdump (nothing tells it): once re-parented, it
    exits. An entry cut short is still pending in the outbox for the next start."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def process_in_worker(entry_id: int, hot: RequestHint | None) -> float | None:
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


def process_in_worker_counted(
    entry_id: int, hot: RequestHint | None
) -> tuple[float | None, list[tuple[str, tuple[Any, ...]]]]:
    """`process_in_worker`, and what this process counted meanwhile (sync/ops/metrics.py):
    the parent's /metrics shows it."""
    return process_in_worker(entry_id, hot), metrics.handover()
