"""calsync's mitmproxy addon: mirror every calendar change Exchange accepted to Google.

    mitmdump -s addon/calsync.py --set calsync_config=calsync.toml

Thin and fail-open, in the manner of mitmproxy's own addons: each hook reads the flow (never
alters it), hands plain values to `sync.sources.proxy.Observer`, and any error of ours is logged
(ids and operation names only) while the traffic passes byte-for-byte. The Google writes
happen in a background task (`sync.sources.outbox.Mirror`), never on the request path.

`pip install -e .` first: mitmdump puts only this folder on sys.path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, http

from ews_parser.xml import DEFAULT_MAX_BYTES
from sync.backends.clients import Clients
from sync.config import Config, ConfigError, UserConfig, load_config
from sync.ops.admin.server import AdminServer, restart_admin
from sync.ops.heap import freeze_heap
from sync.sources.job import SyncJob
from sync.sources.outbox import Mirror
from sync.sources.proxy import EWS_PATH, Exchange, Observer, Observing, lower_headers
from sync.sources.push import RENEW_CHECK_S, Leasing, PushService, UserRuns
from sync.sources.streaming import Streaming
from sync.sources.warmup import warm_up
from sync.store import Store, StoreError

log = logging.getLogger("calsync")

#: On shutdown, how long the worker may go on writing what is due before it is stopped.
#: (`mitmdump -nr capture` shuts down as soon as the file is read.) Whatever is left stays
#: in the outbox for the next start.
DRAIN_ON_EXIT_S = 10.0
#: On shutdown, how long the streaming connections' threads are waited for (they end at once).
STREAMING_STOP_S = 2.0
#: After an EWS request passed the proxy, how long a streaming notification of a change not
#: yet known waits for the proxy's record of it (`Streaming.settle_s`) before a run
PROXIED_WINDOW_S = 2.0


#: The libraries calsync brings into mitmdump's process. mitmdump sets the root logger to
#: DEBUG and hands every record its handlers accept to the event loop (one callback and an
#: add_log hook each, whatever the termlog shows): exchangelib alone logs several DEBUG
#: lines for each EWS call the streaming thread or a sync run makes. Below the termlog's
#: verbosity they are not made at all.
LIBRARY_LOGGERS = (
    "exchangelib",
    "urllib3",
    "requests",
    "requests_ntlm",
    "spnego",
    "googleapiclient",
    "google",
    "google_auth_httplib2",
    "httplib2",
    "oauthlib",
    "requests_oauthlib",
    "sqlite_utils",
    "psycopg",
)


#: mitmproxy's termlog_verbosity choices as logging levels (mitmproxy/log.py)
VERBOSITY = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "alert": logging.INFO + 1,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def quiet_libraries(verbosity: str) -> None:
    """The calsync libraries' loggers at the termlog's verbosity: what the termlog would
    drop is never formatted nor sent to the event loop. Never louder than the root logger
    (a process that does not log INFO, a test's, stays so)."""
    level = max(
        VERBOSITY.get(verbosity.lower(), logging.INFO), logging.getLogger().getEffectiveLevel()
    )
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def parse_ews_path(value: str) -> str:
    if not value.startswith("/"):
        raise exceptions.OptionsError(f"calsync_ews_path must start with '/': {value!r}")
    return value


class CalSync:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.store: Store | None = None
        self.mirror: Mirror | None = None
        self.observer: Observer | None = None
        #: the thread that observes what the hooks hand over (never the event loop)
        self.observing: Observing | None = None
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self.job: SyncJob | None = None
        # Google push (sync/sources/push.py): runs of one user never overlap, polled or pushed
        self.runs: UserRuns | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._push_ending: asyncio.Task[None] | None = None  # still stopping its channels
        # EWS streaming notifications (sync/sources/streaming.py): changes made without the proxy
        self._streaming_task: asyncio.Task[None] | None = None
        self._ews_seen = -PROXIED_WINDOW_S  # time.monotonic() of the last EWS request
        # [admin]: /metrics, /healthz, /readyz and the console, on threads of their own
        self.admin: AdminServer | None = None

    def load(self, loader: Any) -> None:
        loader.add_option(
            "calsync_config", str, "", "Path of calsync.toml (users, Google, Exchange, store)."
        )
        loader.add_option(
            "calsync_ews_path",
            str,
            EWS_PATH,
            "Path of the EWS endpoint, matched case-insensitively at the end of the URL path.",
        )
        loader.add_option(
            "calsync_sync_interval",
            int,
            60,
            "Seconds between runs of the two-way job (Google changes, Exchange changes that "
            "never passed the proxy); 0 turns it off.",
        )
        loader.add_option(
            "calsync_push_port",
            int,
            0,
            "Port of the Google push webhook ([push] in calsync.toml): each user's Google "
            "changes are synced as soon as Google notifies; 0 turns it off (polling only).",
        )
        loader.add_option(
            "calsync_worker_processes",
            int,
            1,
            "Processes that write to Google (parsing, mapping, the Google client), so that "
            "their CPU never competes with the proxy; 0 writes from threads of mitmdump.",
        )
        loader.add_option(
            "calsync_max_body",
            int,
            DEFAULT_MAX_BYTES,
            "Largest EWS body calsync reads, in bytes; larger ones pass unread.",
        )

    def configure(self, updated: set[str]) -> None:
        from mitmproxy import ctx

        # the libraries' loggers at the termlog's verbosity (a few setLevel calls; configure
        # runs at start and on each options change)
        quiet_libraries(getattr(ctx.options, "termlog_verbosity", "info"))
        if ctx.options.calsync_sync_interval < 0:
            raise exceptions.OptionsError("calsync_sync_interval must be 0 (off) or more seconds")
        if not 0 <= ctx.options.calsync_push_port <= 65535:
            raise exceptions.OptionsError("calsync_push_port must be 0 (off) or a port number")
        if not updated & {
            "calsync_config",
            "calsync_ews_path",
            "calsync_max_body",
            "calsync_sync_interval",
            "calsync_push_port",
        }:
            return
        ews_path = parse_ews_path(ctx.options.calsync_ews_path)
        if ctx.options.calsync_max_body < 1024:
            raise exceptions.OptionsError("calsync_max_body must be at least 1024 bytes")
        if not ctx.options.calsync_config:
            log.warning("calsync: no calsync_config set; mirroring nothing")
            self._close()
            return
        try:
            config = load_config(ctx.options.calsync_config)
            store = (
                Store.open(config)
                if self.store is None
                or self.config is None
                or (self.config.store_path, self.config.store_url)
                != (config.store_path, config.store_url)
                else self.store
            )
        except (ConfigError, StoreError) as exc:
            raise exceptions.OptionsError(f"calsync: {exc}") from None
        if store is not self.store:
            self._close()
        self.config = config
        self.store = store
        if self.mirror is not None:
            self.mirror.close(wait=False)  # reconfigured: the next running() starts anew
        # one Google and one Exchange client per user for the worker (in threads), the
        # job and push; worker processes keep a cache of their own
        clients = Clients(config)
        self.mirror = Mirror(config, store, clients=clients)
        self.job = SyncJob(config, store, clients=clients)
        self.runs = UserRuns(
            self.job.run_user, leasing=Leasing.for_store(store, ttl=config.store_lease_s)
        )
        self.admin = restart_admin(
            self.admin, config, store, job=self.job, runs=self.runs, wake=self.mirror.wake
        )
        self.observer = Observer(
            config,
            store,
            self.mirror,
            clock=time.time,
            ews_path=ews_path,
            max_body=ctx.options.calsync_max_body,
        )
        if self.observing is not None:
            self.observing.stop(timeout=0, join=False)  # it finishes what it holds
        self.observing = Observing(self.observer)
        log.info("calsync: %d user(s), state in %s", len(config.users), config.store_path)
        if self._task is not None:  # reconfigured while running: restart both tasks
            self._task.cancel()
            self._task = None
            if self._sync_task is not None:
                self._sync_task.cancel()
                self._sync_task = None
            if self._push_task is not None:  # it stops its channels as it ends
                self._push_task.cancel()
                self._push_ending, self._push_task = self._push_task, None
            if self._streaming_task is not None:  # it stops its connections as it ends
                self._streaming_task.cancel()
                self._streaming_task = None
            self.running()

    def running(self) -> None:
        from mitmproxy import ctx

        loop = asyncio.get_running_loop()
        if self.mirror is not None and self._task is None:
            workers = ctx.options.calsync_worker_processes
            if workers > 0 and self.mirror.pool is None:
                # spawned now, each process warms up: its first change is as fast as the rest
                self.mirror.use_processes(ctx.options.calsync_config, workers)
            elif workers == 0:  # the worker's threads use this process's clients
                warm_up(self.mirror.config, self.mirror.clients, freeze=True)
            self._task = loop.create_task(self.mirror.run())
        interval = ctx.options.calsync_sync_interval
        if self.job is not None and self._sync_task is None and interval > 0:
            self._sync_task = loop.create_task(self._sync_loop(self.job, interval))
        port = ctx.options.calsync_push_port
        if self.job is not None and self.runs is not None and self._push_task is None and port:
            assert self.config is not None and self.store is not None
            push = functools.partial(
                PushService,
                self.config,
                self.store,
                self.job.run_user,
                port=port,
                runs=self.runs,
                clients=self.job.client_cache,
            )
            ending, self._push_ending = self._push_ending, None
            self._push_task = loop.create_task(self._push_loop(push, ending))
        config = self.config
        if (
            self.job is not None
            and self.runs is not None
            and self._streaming_task is None
            and config is not None
            and config.exchange_streaming
            and config.exchange_ews_url
        ):
            streaming = Streaming(
                config,
                self.job.client_cache,
                self.runs.trigger,
                known=self.job.reconciler.known,  # an echo or a proxied change: no run
                busy=self._busy,
                connection_timeout=config.exchange_streaming_timeout_min,
            )
            self._streaming_task = loop.create_task(self._streaming_loop(streaming))
        if config is not None:
            # what mitmproxy and calsync keep for the process's life, out of the collector's
            # way: a full collection over it stops the event loop for 80-130 ms
            freeze_heap()

    async def _push_loop(
        self, make: Callable[[], PushService], ending: asyncio.Task[None] | None
    ) -> None:
        """The webhook on a port of its own (Google calls it as an origin server, which the
        proxy's own listener would not serve in regular mode); channels opened, renewed, and
        stopped when the task ends. Every Google call runs in a thread."""
        if ending is not None:  # a reconfiguration: the old webhook frees the port first
            await asyncio.wait([ending])  # its end, whatever it was; our own cancel still raises
        try:
            push = make()
        except OSError as exc:
            log.error("calsync: push webhook cannot listen: %s", exc.strerror)
            return
        try:
            await asyncio.to_thread(push.start)
            log.info("calsync: push webhook on %s, Google calls %s", push.server.url, push.address)
            while True:
                await asyncio.sleep(RENEW_CHECK_S)
                await asyncio.to_thread(push.tick)
        except Exception as exc:  # polling goes on without push
            log.error("calsync: push failed: %s: %s", type(exc).__name__, exc)
        finally:
            try:
                await asyncio.to_thread(push.stop)
            except Exception as exc:
                log.error("calsync: push channels not stopped: %s", type(exc).__name__)

    async def _streaming_loop(self, streaming: Streaming) -> None:
        """EWS streaming notifications, as `calsync serve` runs them: a change made without
        the proxy (web mail, phones, Windows Outlook) runs that user's sync within about a
        second, through the same runs as push and polling. The connections live on threads
        of their own; starting (exchangelib clients) and stopping block, so they run in
        threads too, and this task only holds them until it is cancelled."""
        try:
            await asyncio.to_thread(streaming.start)
            log.info("calsync: streaming notifications on %d connection(s)", len(streaming.groups))
            await asyncio.Future()  # until cancelled
        except Exception as exc:  # polling and push go on without streaming
            log.error("calsync: streaming failed: %s: %s", type(exc).__name__, exc)
        finally:
            await asyncio.to_thread(streaming.stop, STREAMING_STOP_S)

    async def _sync_loop(self, job: SyncJob, interval: float) -> None:
        """The two-way job for every user, one after the other, in a thread: never on
        the proxy's event loop."""
        while True:
            await asyncio.sleep(interval)
            for user in job.config.users:
                try:
                    run = self.runs.run_now if self.runs is not None else job.run_user
                    report = await asyncio.to_thread(run, user)
                except Exception as exc:  # keep the loop alive; the next run retries
                    log.error(
                        "calsync: sync run for %s failed: %s", user.mailbox, type(exc).__name__
                    )
                    continue
                if report is not None and (report.actions or report.errors or report.stopped):
                    log.info("calsync: %s", report.summary())

    async def done(self) -> None:
        observing, self.observing = self.observing, None
        if observing is not None:  # what the hooks handed over is recorded first
            await asyncio.to_thread(observing.stop, DRAIN_ON_EXIT_S)
        for push_task in (self._push_task, self._push_ending):
            if push_task is not None:
                push_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await push_task
        self._push_task = self._push_ending = None
        streaming_task, self._streaming_task = self._streaming_task, None
        if streaming_task is not None:
            streaming_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming_task
        if self._sync_task is not None:
            self._sync_task.cancel()
            self._sync_task = None
        task, self._task = self._task, None
        if task is not None:
            await self._let_worker_finish(DRAIN_ON_EXIT_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.mirror is not None:
            await asyncio.to_thread(self.mirror.close)
        self._close()

    async def _let_worker_finish(self, limit: float) -> None:
        """Wait (at most `limit` seconds) until the worker has written every entry that is
        due within that time; the worker does the writing, so nothing is written twice."""
        mirror, store = self.mirror, self.store
        if mirror is None or store is None:
            return
        deadline = time.monotonic() + limit
        while True:
            due = await asyncio.to_thread(store.next_due)
            left = deadline - time.monotonic()
            if due is None or left <= 0 or due > time.time() + left:
                return
            mirror.wake()
            await asyncio.sleep(0.05)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every exchange the hooks handed over has been observed (tests,
        `calsync replay`); False on timeout. Never call it on the event loop."""
        return self.observing.flush(timeout) if self.observing is not None else True

    def _close(self) -> None:
        self.admin = restart_admin(self.admin, None, None)
        if self.observing is not None:
            self.observing.stop(timeout=0, join=False)
            self.observing = None
        if self.store is not None:
            self.store.close()
        self.store = self.config = self.mirror = self.observer = self.job = None
        self.runs = None

    # --- hooks: read, never alter; never raise ------------------------------------------------

    def _busy(self, user: UserConfig) -> bool:
        """Whether a change Exchange tells of may still be on its way to being recorded:
        an EWS request passed the proxy lately, or the user's run is writing."""
        if time.monotonic() - self._ews_seen < PROXIED_WINDOW_S:
            return True
        return self.runs is not None and self.runs.busy(user.mailbox)

    def request(self, flow: http.HTTPFlow) -> None:
        observer = self.observer
        if observer is None:
            return
        try:
            if observer.is_ews(flow.request.method, flow.request.path):
                self._ews_seen = time.monotonic()
            if "authorization" in flow.request.headers:
                observer.saw_request_headers(
                    flow.client_conn.id, {"authorization": flow.request.headers["authorization"]}
                )
        except Exception as exc:
            log.error(
                "calsync: request hook failed (flow passes untouched): %s", type(exc).__name__
            )

    def response(self, flow: http.HTTPFlow) -> None:
        """Hand the exchange's raw bytes to the observing thread; nothing more here. No
        body is decoded (mitmproxy's get_content() would inflate a bomb in full, right
        here), parsed or stored on the event loop."""
        observing = self.observing
        if observing is None or flow.response is None:
            return
        request, response = flow.request, flow.response
        try:
            observer = observing.observer
            if not observer.is_ews(request.method, request.path) or response.status_code != 200:
                return  # the cheap filter: everything that is not EWS costs this much
            request_body, response_body = request.raw_content, response.raw_content
            if not request_body or not response_body:
                return  # a streamed body never reaches the flow: nothing to read
            observing.submit(
                Exchange(
                    method=request.method,
                    path=request.path,
                    request_headers=lower_headers(request.headers),
                    request_body=request_body,
                    status_code=response.status_code,
                    response_body=response_body,
                    connection_id=flow.client_conn.id,
                    request_encoding=request.headers.get("content-encoding"),
                    response_encoding=response.headers.get("content-encoding"),
                    connection_principal=observer.connection_principal(flow.client_conn.id),
                )
            )
        except Exception as exc:
            log.error(
                "calsync: response hook failed (flow passes untouched): %s: %s",
                type(exc).__name__,
                exc,
            )

    def client_disconnected(self, client: Any) -> None:
        if self.observer is not None:
            self.observer.connection_closed(client.id)


addons = [CalSync()]
