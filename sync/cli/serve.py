"""`calsync serve`: Google push channels and their webhook, each change a sync of that
user, a poll every [sync] interval_s as a safety net (sync/sources/push.py)."""

from __future__ import annotations

import signal
import time
from typing import Any

from sync.sources.push import RENEW_CHECK_S, PushService
from sync.store import Store

EXIT_OK, EXIT_CONFIG = 0, 2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the Google push webhook: sync a user as soon as Google says so",
        description="Open a Google push channel per user, serve the webhook Google calls, "
        "and run that user's sync on each change; poll every [sync] interval_s as a safety "
        "net. Channels are renewed before they expire and stopped on exit (Ctrl-C, SIGTERM).",
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
        store = Store(config.store_path)
    except (ConfigError, StoreError) as exc:
        print(f"calsync serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    job = SyncJob(config, store)
    try:
        service = PushService(config, store, job.run_user, port=args.port)
    except OSError as exc:
        store.close()
        print(f"calsync serve: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        service.start()
        print(
            f"calsync serve: listening on {service.server.url}, Google calls {service.address}",
            file=sys.stderr,
            flush=True,
        )
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
        service.stop()
        store.close()
    return EXIT_OK
