"""`calsync serve`: calsync without the proxy. For every configured user: EWS streaming
notifications (sync/sources/streaming.py) and Google push channels with their webhook
(sync/sources/push.py) each trigger that user's two-way sync (the Exchange feed and the
Google feed from their stored SyncState and sync token), a poll every [sync] interval_s
as a safety net, and the outbox a proxy left in the same store drained. SIGTERM or
Ctrl-C: everything stops within seconds; a run cut short is redone from the stored
state at the next start."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from typing import Any

from sync.ops.admin.server import start_admin
from sync.sources.outbox import Mirror
from sync.sources.push import RENEW_CHECK_S, PushService
from sync.sources.streaming import Streaming
from sync.store import Store

EXIT_OK, EXIT_CONFIG = 0, 2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run calsync without the proxy: streaming, push, polling",
        description="For every user: an EWS streaming subscription on the calendar and a "
        "Google push channel (with the webhook Google calls); each change runs that user's "
        "two-way sync; a poll every [sync] interval_s as a safety net. Channels are renewed "
        "before they expire and stopped on exit (Ctrl-C, SIGTERM).",
    )
    parser.add_argument(
        "--config", default="calsync.toml", help="calsync.toml (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="listen here instead of [push] listen_port"
    )
    parser.set_defaults(run=run_command)


def run_command(args: Any) -> int:
    import sys

    from sync.config import ConfigError, load_config
    from sync.sources.job import SyncJob
    from sync.store import StoreError

    try:
        config = load_config(args.config)
        store = Store.open(config)
    except (ConfigError, StoreError) as exc:
        print(f"calsync serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    job = SyncJob(config, store)
    mirror = Mirror(config, store, clients=job.client_cache)
    try:
        service = PushService(config, store, job.run_user, port=args.port, clients=job.client_cache)
        admin = start_admin(config, store, job=job, runs=service.runs, wake=mirror.wake)
    except OSError as exc:
        store.close()
        print(f"calsync serve: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    streaming = Streaming(
        config,
        job.client_cache,
        service.runs.trigger,
        known=job.reconciler.known,  # calsync's own writes, a proxy's entries: no run
        busy=lambda user: service.runs.busy(user.mailbox),  # its writes' records may lag
        connection_timeout=config.exchange_streaming_timeout_min,
    )
    drainer = _Drainer(mirror)
    try:
        service.start()
        if config.exchange_streaming:
            streaming.start()
        drainer.start()
        print(
            f"calsync serve: listening on {service.server.url}, Google calls {service.address}",
            file=sys.stderr,
            flush=True,
        )
        if admin is not None:
            print(f"calsync serve: admin on {admin.url}", file=sys.stderr, flush=True)
        interval = config.sync.interval_s
        next_renewal = time.monotonic() + RENEW_CHECK_S
        next_poll = time.monotonic()
        while True:
            now = time.monotonic()
            if interval > 0 and now >= next_poll:
                for user in config.users:
                    service.runs.trigger(user)
                next_poll = now + interval
            if now >= next_renewal:
                service.tick()
                next_renewal = now + RENEW_CHECK_S
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        drainer.stop()
        streaming.stop(timeout=1.5)
        service.stop(timeout=2.0)
        drainer.join(timeout=1.0)
        if admin is not None:
            admin.stop()
        store.close()
    return EXIT_OK


class _Drainer(threading.Thread):
    """The outbox a proxy left in this store (one process per store), drained by the
    worker's own loop (`Mirror.run`: retries when due) on an event loop of its own."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__(name="calsync-outbox", daemon=True)
        self.mirror = mirror
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self.mirror.run())
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def stop(self) -> None:
        if self.is_alive() and self._ready.wait(1.0):
            assert self._loop is not None and self._task is not None
            self._loop.call_soon_threadsafe(self._task.cancel)
