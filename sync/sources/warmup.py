"""The writer warmed up at start, so that the first change is mirrored as fast as the rest.

Cold, the first change after mitmdump starts waits for the worker process to spawn and
import its libraries, then for each Google client to be built (googleapiclient imported,
the discovery document parsed, credentials read), its token refreshed and its connection
opened. The worker process imports most of its libraries as it starts
(`sync.sources.outbox`, where its code lives, imports the mapping, the reconciler and
exchangelib); `warm_up` does the rest ahead of time: the modules the first change would
import, a sample request through the fast path's parser and mapping (their first-use
work), and for every user mirrored to Google the client, made through the process's client
cache and called once the cheapest way (calendars.get of the user's calendar), which
refreshes an expired token and leaves the connection open.

It runs in a thread of its own and nothing waits for it: a change due meanwhile takes the
same clients (`Clients` makes each once; one call at a time per client). Google down, a
token refused or a credential missing costs one log line, never the worker: that user's
first change meets the same error and is retried as usual.

`CALSYNC_PROFILE_DIR` (bench/cpu.py sets it) profiles the thread that warms up, a worker
process's main thread, where its changes are applied: cProfile counting that thread's CPU
time, written to DIR/worker-PID.prof on SIGUSR1 and at exit.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from pathlib import Path

from sync.backends.base import GoogleError
from sync.backends.clients import Clients
from sync.config import Config
from sync.ops.heap import freeze_heap

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

#: A CreateItem as clients send one (times in UTC and in the request's zone): parsed and
#: mapped once, writing nothing, so that the first change finds what the parser and the
#: mapping build on first use (strptime's patterns, zone data) already built.
SAMPLE_ZONE = "W. Europe Standard Time"
SAMPLE_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
    b' xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"'
    b' xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    b'<s:Header><t:RequestServerVersion Version="Exchange2016"/><t:TimeZoneContext>'
    b'<t:TimeZoneDefinition Id="W. Europe Standard Time"/></t:TimeZoneContext></s:Header>'
    b'<s:Body><m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId>'
    b'<t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items>'
    b"<t:CalendarItem><t:Subject>Warm-up</t:Subject>"
    b"<t:Start>2026-03-02T08:00:00Z</t:Start><t:End>2026-03-02T09:00:00Z</t:End>"
    b"</t:CalendarItem><t:CalendarItem><t:Subject>Warm-up</t:Subject>"
    b"<t:Start>2026-03-02T09:00:00</t:Start><t:End>2026-03-02T10:00:00</t:End>"
    b"</t:CalendarItem></m:Items></m:CreateItem></s:Body></s:Envelope>"
)


#: a directory for the CPU profile of the thread that calls `warm_up` (bench/cpu.py)
PROFILE_ENV = "CALSYNC_PROFILE_DIR"


def warm_up(config: Config, clients: Clients, *, freeze: bool = False) -> threading.Thread:
    """Start warming `clients` up for `config`'s users; the thread (a daemon) is returned.
    `freeze`: once warm, the process's heap is set aside from the garbage collector
    (sync/ops/heap.py), as a process that has built what it keeps."""
    profile_if_asked()
    thread = threading.Thread(
        target=warm_clients,
        args=(config, clients),
        kwargs={"freeze": freeze},
        name="calsync-warm-up",
        daemon=True,
    )
    thread.start()
    return thread


def profile_if_asked() -> None:
    """With `PROFILE_ENV` set, profile this thread's CPU from now on (cProfile, timed by
    the thread's own CPU clock: a change waiting for a core costs nothing), written to
    `worker-PID.prof` there on SIGUSR1 and at exit. Only from the main thread (signals)."""
    directory = os.environ.get(PROFILE_ENV)
    if not directory or threading.current_thread() is not threading.main_thread():
        return
    import atexit
    import cProfile
    import signal

    profiler = cProfile.Profile(time.thread_time)
    path = Path(directory) / f"worker-{os.getpid()}.prof"

    def dump(*_: object) -> None:
        profiler.disable()
        profiler.dump_stats(path)
        profiler.enable()

    signal.signal(signal.SIGUSR1, dump)
    atexit.register(dump)
    profiler.enable()


def _map_sample() -> None:
    """SAMPLE_REQUEST through the fast path's parser and mapping (sync/fast_path.py)."""
    from ews_parser.envelope import parse
    from ews_parser.values import CreateItemRequest, ParsedItem
    from sync.core.events import google_body

    request = parse(SAMPLE_REQUEST, default_zone=SAMPLE_ZONE).body
    if not isinstance(request, CreateItemRequest):
        raise TypeError(f"the sample parsed as {type(request).__name__}")
    for item in request.items:
        if isinstance(item, ParsedItem) and item.model is not None:
            google_body(item.model, default_zone=SAMPLE_ZONE)


def warm_clients(config: Config, clients: Clients, *, freeze: bool = False) -> int:
    """Import what the first change would, make each user's Google client and call it
    once; how many answered. `freeze`: then the heap, before the process says it is warm
    (its collection first stops the process for about 0.1 s: not in the first change's
    way)."""
    began = time.monotonic()
    for name in LAZY_MODULES:
        importlib.import_module(name)
    try:
        _map_sample()
    except Exception as exc:  # only a head start is lost: the clients still warm up
        log.warning("warm-up could not map its sample request: %s", type(exc).__name__)
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
    if freeze:
        freeze_heap()
    log.info(
        "warm in %.2f s: %d Google client(s) ready",
        time.monotonic() - began,
        warm,
    )
    return warm
