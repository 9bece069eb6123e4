"""Command line of the Google Calendar stand-in (`calsync emulate google`).

Reference for what it serves: https://developers.google.com/workspace/calendar/api/v3/reference
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence

log = logging.getLogger("calsync.emulators.google")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1 (0: any free port; the URL is printed)")
    parser.add_argument("--user", action="append", default=[], metavar="ADDRESS",
                        help="create a user whose access token is ADDRESS and refresh "
                        "token refresh-ADDRESS (repeatable)")
    parser.add_argument("--db", metavar="PATH",
                        help="keep state in this SQLite file (default: memory only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from emulators.google.server import GoogleCalendarServer
    from emulators.google.store import StoreError

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    if not 0 <= args.port <= 65535:
        print(f"calsync emulate google: --port {args.port} is not a port", file=sys.stderr)
        return 2
    try:
        server = GoogleCalendarServer(port=args.port, users=args.user, db=args.db)
    except (OSError, StoreError) as exc:
        print(f"calsync emulate google: {exc}", file=sys.stderr)
        return 1
    # What the stand-in keeps for its life (its imports) set aside from the garbage
    # collector: a full collection over it stalls every answer for tens of milliseconds
    gc.collect()
    gc.freeze()
    # One parseable line on stdout, flushed, so a parent process can wait for it.
    print(f"Google Calendar stand-in listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.google",
                                     description="Local Google Calendar API v3 stand-in.")
    configure(parser)
    args = parser.parse_args(argv)
    return int(args.run(args))
