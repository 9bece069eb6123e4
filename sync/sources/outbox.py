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
drained concurrently. With worker processes (the addon's default), one thread of this
process hands each entry to a process over a pipe of its own and waits for its answer:
the proxy's event loop never takes part in an entry's writing (issue 17).

On a store several nodes share, the proxy records each entry held for its own node's
worker (`claims_as`) for `HOLD_S`: that worker has the request's bytes, any other would
read the item from Exchange. Past the hold, any node's worker takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
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
#: How many completed entries `Mirror.completed` keeps (tests read it).
COMPLETED_KEPT = 10_000


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
        #: the latest completed entries, for tests: (entry id, when); bounded, as the
        #: process runs for months
        self.completed: deque[tuple[int, float]] = deque(maxlen=COMPLETED_KEPT)
        #: worker processes (`use_processes`), each taken by one thread at a time
        self._workers: list[WorkerProcess] = []
        self._idle: queue.SimpleQueue[WorkerProcess] = queue.SimpleQueue()
        self._dispatch: ThreadPoolExecutor | None = None  # users side by side (several)
        #: with worker processes: `wake()` sets it, the thread handing out entries waits on it
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._served = threading.Event()  # `_serve` has returned (or never ran)
        self._served.set()
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
        self._woken.set()  # the processes' thread: no event loop involved
        if self._workers or self._wake is None or self._loop is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Drain forever (until cancelled), waking on `wake()` or when a retry is due. With
        worker processes, in a thread of its own: an entry costs the event loop nothing."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._workers:
            self._stopping.clear()
            try:
                await asyncio.to_thread(self._serve)
            finally:  # cancelled: the thread ends after the entry in hand
                self._stopping.set()
                self._woken.set()
            return
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
            timeout = self._wait_s(due, handled)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    def _wait_s(self, due: float | None, handled: int) -> float:
        """How long to wait for `wake()` after a round that handled `handled` entries, the
        next entry due at `due` (None: none): 30 s at most."""
        timeout = 30.0 if due is None else max(0.0, min(30.0, due - self.clock()))
        if not handled and due is not None and timeout == 0:
            return 1.0  # due, yet not taken (another's meanwhile): no busy loop
        return timeout

    def _serve(self) -> None:
        """`run` with worker processes, blocking: hand out what is due, wait for `wake()`
        or the next retry, until `_stopping`."""
        self._served.clear()
        try:
            while not self._stopping.is_set():
                self._woken.clear()
                handled = 0
                try:
                    # one round: what comes meanwhile has set `_woken`, and what is due
                    # already makes the wait 0 (no second take to find nothing)
                    handled = self._drain_processes(once=True)
                    if self._stopping.is_set():
                        return
                    due = self.store.next_due(self.claims_as)
                except Exception as exc:  # never let the worker die: log, wait, go on
                    log.error("calsync worker error: %s: %s", type(exc).__name__, exc)
                    due = self.clock() + 1.0
                timeout = self._wait_s(due, handled)
                if timeout > 0:
                    self._woken.wait(timeout)
        finally:
            self._served.set()

    def _drain_processes(self, *, once: bool = False) -> int:
        """`drain` with worker processes, blocking: each user's entries in order, users
        side by side when there are several processes; `once`: what is due now only."""
        handled = 0
        while not self._stopping.is_set():
            entries = self._take(self.clock())
            if not entries:
                return handled
            batches = list(_by_user(entries).values())
            if self._dispatch is None or len(batches) == 1:
                for batch in batches:
                    self._hand_out(batch)
            else:
                for done in [self._dispatch.submit(self._hand_out, b) for b in batches]:
                    done.result()
            handled += len(entries)
            if once:
                break
        return handled

    def _hand_out(self, entries: list[OutboxEntry]) -> None:
        """One user's entries, in order, to an idle worker process."""
        idle = self._idle
        while True:
            try:
                worker = idle.get(timeout=0.5)
                break
            except queue.Empty:
                if self._stopping.is_set():  # closed meanwhile: the entries stay pending
                    return
        try:
            for entry in entries:
                if self._stopping.is_set():
                    return  # still pending: the next start hands it out
                with self._hot_lock:
                    hot = self._hot.pop(entry.id, None)
                try:
                    done_at, recorded = worker.call(entry.id, hot)
                except WorkerDied:
                    # killed, out of memory: a new one in its place; the entry is still
                    # pending in the outbox and will be handed out again
                    if not self._stopping.is_set():
                        log.warning("calsync worker process died; starting a new one")
                        worker.restart()
                    return
                metrics.take_over(recorded)  # what the process counted, into this /metrics
                if done_at is not None:
                    self.completed.append((entry.id, done_at))
        finally:
            idle.put(worker)

    async def drain(self) -> int:
        """Apply every entry that is due now; returns how many were handled."""
        if self._workers:
            return await asyncio.to_thread(self._drain_processes)
        handled = 0
        while True:
            # a paused user's entries (the admin console) are not handed out
            entries = await asyncio.to_thread(self._take, self.clock())
            if not entries:
                return handled
            batches = _by_user(entries).values()
            await asyncio.gather(*(self._drain_user(batch) for batch in batches))
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
            await asyncio.to_thread(self.process, entry)

    # --- worker processes --------------------------------------------------------------------

    def use_processes(self, config_path: str, workers: int = 1) -> None:
        """Do the writing in `workers` separate processes, so that parsing, mapping and
        the Google client's CPU never compete with the proxy for its event loop's GIL.
        Each process opens the same config and store (SQLite in WAL mode takes both), and
        is started now: it has imported its libraries and warmed its clients up
        (`_init_worker`) before the first change is due. Call it before `run`."""
        self.close(wait=False)
        self._stopping.clear()
        self._workers = [WorkerProcess(config_path) for _ in range(max(1, workers))]
        for worker in self._workers:
            self._idle.put(worker)
        if len(self._workers) > 1:
            self._dispatch = ThreadPoolExecutor(
                len(self._workers), thread_name_prefix="calsync-dispatch"
            )

    @property
    def pool(self) -> list[WorkerProcess] | None:
        """The worker processes (None: the writing happens in threads of this process)."""
        return self._workers or None

    def close(self, *, wait: bool = True, timeout: float = 5.0) -> None:
        """Stop the worker processes: wait for the one at work at most `timeout` seconds,
        then kill it (`wait=False`: the same, in the background). Shutdown must never hang
        mitmdump; an entry cut short is still pending in the outbox, and its retry is
        harmless (fixed ids, conditional writes)."""
        workers, self._workers = self._workers, []
        dispatch, self._dispatch = self._dispatch, None
        self._idle = queue.SimpleQueue()
        self._stopping.set()
        self._woken.set()
        if dispatch is not None:
            dispatch.shutdown(wait=False)
        if not workers:
            return
        stoppers = [
            threading.Thread(
                target=w.stop, args=(timeout,), name="calsync-worker-stop", daemon=True
            )
            for w in workers
        ]
        for stopper in stoppers:
            stopper.start()
        if wait:
            for stopper in stoppers:
                stopper.join(timeout + 1.0)
            # the thread that handed entries out: its entry in hand is done or its process
            # gone, so it returns now (before the caller closes the store under it)
            self._served.wait(timeout)

    # --- one entry (blocking: runs in a thread) --------------------------------------------------

    def process(self, entry: OutboxEntry) -> None:
        """Apply one entry. Its writes are a run of their own (`calsync undo` puts them
        back like a sync run's)."""
        user = self.config.user_named(entry.mailbox)
        run: RunContext | None = None
        finished = False
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
            with self.store.transaction():  # the entry done and its run finished: one step
                self.store.complete(
                    entry, mapping=outcome.mapping, forget=outcome.forget, now=self.clock()
                )
                self.reconciler.finish(run)
            finished = True
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
            if run is not None and not finished:
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


def _by_user(entries: list[OutboxEntry]) -> dict[str, list[OutboxEntry]]:
    by_user: dict[str, list[OutboxEntry]] = {}
    for entry in entries:
        by_user.setdefault(entry.mailbox, []).append(entry)
    return by_user


# --- worker processes ----------------------------------------------------------------------------


class WorkerDied(Exception):
    """The worker process ended (killed, out of memory) before it answered."""


class WorkerProcess:
    """One worker process and the pipe it takes entries on (`_serve_entries`): `call`
    sends an entry's id and its request, and blocks the calling thread (never an event
    loop) until the process answers. A process pool would pass each call through two
    threads of its own and a future; one pipe a process is all one caller needs."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._lock = threading.Lock()  # one call at a time on the pipe
        self._start()

    def _start(self) -> None:
        # spawn, not fork: mitmproxy's threads and event loop must not be copied
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve_entries,
            args=(child, self.config_path),
            name="calsync-worker",
            daemon=True,  # ended with the proxy, whatever happens to it
        )
        self.process.start()
        child.close()

    def call(
        self, entry_id: int, hot: RequestHint | None
    ) -> tuple[float | None, list[tuple[str, tuple[Any, ...]]]]:
        """`process_in_worker_counted(entry_id, hot)` in the process."""
        with self._lock:
            try:
                self._conn.send((entry_id, hot))
                answer = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise WorkerDied(str(exc) or type(exc).__name__) from None
        if isinstance(answer, str):  # what the process raised
            raise RuntimeError(answer)
        return cast("tuple[float | None, list[tuple[str, tuple[Any, ...]]]]", answer)

    def restart(self) -> None:
        with self._lock:
            self._end(1.0)  # it is dead or dying: its pipe ended
            self._start()

    def stop(self, timeout: float) -> None:
        """Let the process finish the entry in hand (at most `timeout` seconds), then end
        it; killed if it does not."""
        if not self._lock.acquire(timeout=timeout):
            self.process.kill()  # stuck in an entry: the caller gets WorkerDied
            self._lock.acquire()
        try:
            self._end(timeout)
        finally:
            self._lock.release()

    def _end(self, timeout: float) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)  # it exits at once
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            log.warning("calsync worker process did not stop within %.0f s: killed", timeout)
            self.process.join(1.0)
        self._conn.close()


# --- in a worker process ------------------------------------------------------------------------

_worker: Mirror | None = None


def _serve_entries(conn: Connection, config_path: str) -> None:
    """A worker process: start (`_init_worker`), then apply each entry the pipe brings and
    answer `process_in_worker_counted`'s result, or what it raised as text; None or the
    pipe's end stops it."""
    _init_worker(config_path)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            answer: Any = process_in_worker_counted(*message)
        except Exception as exc:
            answer = f"{type(exc).__name__}: {exc}"
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return


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
    warm_up(config, _worker.clients, freeze=True)  # then its heap is what it keeps


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
    before = worker.completed[-1] if worker.completed else None
    worker.process(entry)
    after = worker.completed[-1] if worker.completed else None
    return after[1] if after is not before and after is not None else None


def process_in_worker_counted(
    entry_id: int, hot: RequestHint | None
) -> tuple[float | None, list[tuple[str, tuple[Any, ...]]]]:
    """`process_in_worker`, and what this process counted meanwhile (sync/ops/metrics.py):
    the parent's /metrics shows it."""
    return process_in_worker(entry_id, hot), metrics.handover()
