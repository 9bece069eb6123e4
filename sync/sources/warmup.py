"""The writer warmed up at start, so that the first change is mirrored as fast as the rest.

Cold, the first change after mitmdump starts waits for the worker process to spawn and
import its libraries, then for each Google client to be built (googleapiclient imported,
the discovery document parsed, credentials read), its token refreshed and its connection
opened. `warm_up` does the last part ahead of time, for every user mirrored to Google:
builds the client through the process's client cache and makes the cheapest call that
proves it (calendars.get of the user's calendar), which refreshes an expired token and
leaves the connection open. The worker process has imported the rest before it starts
(`sync.sources.outbox`, where its code lives, imports the mapping, the reconciler and
exchangelib).

It runs in a thread of its own and nothing waits for it: a change due meanwhile takes the
same clients (`Clients` makes each once; one call at a time per client). Google down, a
token refused or a credential missing costs one log line, never the worker: that user's
first change meets the same error and is retried as usual.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import threading
import time

from sync.backends.base import GoogleError
from sync.backends.clients import Clients
from sync.config import Config

log = logging.getLogger("calsync.mirror")

#: What the worker imports on its first change, lazily (the fast path and the parts of the
#: request parser and mapping it reaches for): imported while nothing is due.
LAZY_MODULES = (
    "sync.fast_path",
    "ews_parser.envelope",
    "ews_parser.values",
    "mapping.errors",
    "mapping.exceptions",
    "mapping.ical",
)


def warm_up(config: Config, clients: Clients) -> threading.Thread:
    """Start warming `clients` up for `config`'s users; the thread (a daemon) is returned."""
    thread = threading.Thread(
        target=warm_clients, args=(config, clients), name="calsync-warm-up", daemon=True
    )
    thread.start()
    return thread


def warm_clients(config: Config, clients: Clients) -> int:
    """Import what the first change would, make each user's Google client and call it
    once; how many answered."""
    began = time.monotonic()
    for name in LAZY_MODULES:
        importlib.import_module(name)
    # the first strptime imports _strptime (exchangelib reads a request's times with it)
    dt.datetime.strptime("2000-01-01T00:00:00", "%Y-%m-%dT%H:%M:%S")
    warm = 0
    failed: list[str] = []
    for user in config.users:
        if not user.mirrors_to_google:
            continue
        try:
            clients.google(user).calendar()
        except GoogleError as exc:
            failed.append(f"{exc.status} {exc.reason}" if exc.status else "unreachable")
            if not exc.status:
                break  # Google is not answering: the other users would only wait as long
        except Exception as exc:  # a credential file, a refused refresh: the change will say
            failed.append(type(exc).__name__)
        else:
            warm += 1
    if failed:
        # status and reason only: a message could quote the request
        log.warning(
            "Google not warmed up for %d user(s) (%s); their first change connects as it "
            "is mirrored",
            len(failed),
            failed[0],
        )
    log.info(
        "warm in %.2f s: %d Google client(s) ready",
        time.monotonic() - began,
        warm,
    )
    return warm
