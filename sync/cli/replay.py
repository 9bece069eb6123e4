"""`calsync replay CAPTURE --config calsync.toml`: what a capture would do to Google.

Runs a recorded capture (a HAR file as browsers, Fiddler and mitmproxy export it, or a
mitmproxy flow file) through the addon's own logic: each request/response pair goes to
`sync.sources.proxy.Observer`, as the addon's hooks hand it over, and the outbox is drained by
`sync.sources.outbox.Mirror` into each user's configured Google calendar. Then it prints every
event of each configured user's calendar, read back through google-api-python-client, as
JSON lines: `{"user": "...", "event": {...}}`.

NTLM authenticates a connection, not a request. mitmproxy's HAR reader gives every entry a
connection of its own, so replay reads the HAR's `connection` field itself: requests on
one connection after its AUTHENTICATE message are attributed to that user, as live.

The state (id map, outbox) is the configured store's, as the addon's would be: replaying
the same capture twice changes nothing the second time.

Exit status: 0 all changes written; 1 some could not be written (said on stderr) or
Google could not be read; 2 the capture or the configuration cannot be used.
HAR 1.2: http://www.softwareishard.com/blog/har-12-spec/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ews_parser.errors import CalsyncError
from sync.config import Config, UserConfig, load_config

log = logging.getLogger("calsync.cli.replay")

#: How long replay waits for retries that are due (Google answering 429/503) before
#: giving up on them and saying so.
RETRY_WAIT_S = 30.0


class ReplayError(CalsyncError):
    """The capture cannot be replayed, said in one line."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a captured EWS session (HAR) and print the Google events it leaves",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("capture", metavar="FILE", help="a HAR file or a mitmproxy flow file")
    parser.add_argument("--config", required=True, metavar="TOML", help="calsync.toml")
    parser.add_argument(
        "--retry-wait",
        type=float,
        default=RETRY_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait for failed writes to be retried (default {RETRY_WAIT_S:g})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("calsync replay: %(message)s"))
    calsync_log = logging.getLogger("calsync")
    calsync_log.addHandler(handler)
    calsync_log.setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
        flows = read_capture(Path(args.capture))
    except CalsyncError as exc:
        print(f"calsync replay: {exc}", file=sys.stderr)
        return 2
    try:
        unwritten = replay(config, flows, retry_wait=args.retry_wait)
    except (CalsyncError, OSError) as exc:  # the store cannot be opened
        print(f"calsync replay: {exc}", file=sys.stderr)
        return 2
    try:
        lines = list(event_lines(config))
    except CalsyncError as exc:
        print(f"calsync replay: cannot read the Google events back: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    if unwritten:
        print(
            f"calsync replay: {unwritten} change(s) could not be written to Google"
            " (see the messages above)",
            file=sys.stderr,
        )
        return 1
    return 0


# --- reading -----------------------------------------------------------------------------


def read_capture(path: Path) -> list[tuple[Any, str]]:
    """(flow, connection id) of each HTTP flow in a HAR or mitmproxy flow file."""
    from mitmproxy import exceptions, http, io

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
    connections: list[str | None] = []
    if data.lstrip()[:1] == b"{":
        connections = _har_connections(path, data)
    import io as stdio

    flows: list[Any] = []
    try:
        for flow in io.FlowReader(stdio.BytesIO(data)).stream():
            flows.append(flow)
    except (exceptions.FlowReadException, ValueError, KeyError, TypeError) as exc:
        raise ReplayError(f"{path}: not a HAR or mitmproxy flow file ({exc})") from None
    if not flows and not connections:
        raise ReplayError(f"{path}: no flows in it")
    result: list[tuple[Any, str]] = []
    for index, flow in enumerate(flows):
        if not isinstance(flow, http.HTTPFlow):
            continue
        har_connection = connections[index] if index < len(connections) else None
        connection = f"har-connection:{har_connection}" if har_connection else flow.client_conn.id
        result.append((flow, connection))
    return result


def _har_connections(path: Path, data: bytes) -> list[str | None]:
    """The `connection` of each HAR entry, in order (None where it is not given)."""
    try:
        entries = json.loads(data)["log"]["entries"]
    except (ValueError, KeyError, TypeError):
        raise ReplayError(f"{path}: not a HAR file (no log.entries)") from None
    if not isinstance(entries, list):
        raise ReplayError(f"{path}: not a HAR file (log.entries is not a list)")
    connections: list[str | None] = []
    for entry in entries:
        value = entry.get("connection") if isinstance(entry, dict) else None
        connections.append(str(value) if value not in (None, "") else None)
    return connections


# --- replaying -------------------------------------------------------------------------------


def replay(
    config: Config, flows: list[tuple[Any, str]], *, retry_wait: float = RETRY_WAIT_S
) -> int:
    """Observe every flow, drain the outbox; returns how many entries stay unwritten."""
    from ews_parser.xml import DEFAULT_MAX_BYTES
    from sync.sources.outbox import Mirror
    from sync.sources.proxy import Exchange, Observer, lower_headers
    from sync.store import Store

    store = Store.open(config)
    try:
        mirror = Mirror(config, store)
        observer = Observer(config, store, mirror, clock=time.time, max_body=DEFAULT_MAX_BYTES)
        for flow, connection in flows:
            request, response = flow.request, flow.response
            if "authorization" in request.headers:
                observer.saw_request_headers(
                    connection, {"authorization": request.headers["authorization"]}
                )
            if response is None or not observer.is_ews(request.method, request.path):
                continue
            try:
                observer.observe(
                    Exchange(
                        method=request.method,
                        path=request.path,
                        request_headers=lower_headers(request.headers),
                        request_body=request.raw_content or b"",
                        status_code=response.status_code,
                        response_body=response.raw_content or b"",
                        connection_id=connection,
                        request_encoding=request.headers.get("content-encoding"),
                        response_encoding=response.headers.get("content-encoding"),
                    )
                )
            except Exception as exc:  # as in the addon: one bad exchange, not the replay
                log.error("an exchange could not be read: %s: %s", type(exc).__name__, exc)
        asyncio.run(_drain(mirror, store, retry_wait))
        return len(store.pending()) + len(store.quarantined())
    finally:
        store.close()


async def _drain(mirror: Any, store: Any, retry_wait: float) -> None:
    deadline = time.monotonic() + retry_wait
    while True:
        await mirror.drain()
        due = store.next_due()
        if due is None:
            return
        wait = max(0.0, due - time.time())
        if time.monotonic() + wait > deadline:
            return
        await asyncio.sleep(wait)


# --- reading Google back ------------------------------------------------------------------------


def event_lines(config: Config) -> Iterator[str]:
    for user in config.users:
        if not user.mirrors_to_google:
            continue
        for event in google_events(config, user):
            yield json.dumps({"user": user.mailbox, "event": event}, sort_keys=True)


def google_events(config: Config, user: UserConfig) -> list[dict[str, Any]]:
    """Every event of the user's calendar, through the same client the worker writes with."""
    from sync.backends.google import GoogleCalendar

    calendar = GoogleCalendar(config, user)
    events = [
        event for page in calendar.list_pages(sync_token=None) for event in page.get("items", [])
    ]
    return sorted(events, key=lambda e: str(e.get("id", "")))
