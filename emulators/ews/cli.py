"""Command line of the EWS stand-in (`calsync emulate ews`, `python -m emulators.ews`).

Reference for what it serves: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-operations-in-exchange
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from typing import Any

from emulators.ews.subscriptions import Policy

log = logging.getLogger("calsync.emulators.ews")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the stand-in's options to `parser` (the `calsync emulate ews` subcommand)."""
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1 (0: any free port; the URL is printed)")
    parser.add_argument("--user", action="append", default=[], metavar="ADDRESS:PASSWORD",
                        help="a mailbox and its Basic password (repeatable)")
    parser.add_argument("--impersonator", action="append", default=[],
                        metavar="ADDRESS:PASSWORD",
                        help="a service account that may use ExchangeImpersonation (repeatable)")
    parser.add_argument("--ntlm", action="store_true",
                        help="accept NTLM (as ADDRESS or DOMAIN\\user, DOMAIN from the "
                        "address) as well as Basic")
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS with a certificate generated at start-up")
    parser.add_argument("--tls-dir", metavar="DIR",
                        help="where to write ca.pem, cert.pem, key.pem (default: a temporary "
                        "directory); implies --tls")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    limits = parser.add_argument_group(
        "notifications", "Exchange's limits and timings of subscriptions and streams "
        "(defaults: Exchange 2016 on-premises')")
    default = Policy()
    limits.add_argument("--hanging-connection-limit", type=int,
                        default=default.hanging_connection_limit, metavar="N",
                        help="streaming connections open at once per account (Exchange "
                        "Online: 10)")
    limits.add_argument("--max-subscriptions", type=int, default=default.max_subscriptions,
                        metavar="N", help="EWSMaxSubscriptions per account (Exchange Online: 20)")
    limits.add_argument("--backends", type=int, default=default.backends, metavar="N",
                        help="mailbox servers behind the stand-in (affinity decides which "
                        "one holds a subscription)")
    limits.add_argument("--event-retention", type=int, default=default.event_retention,
                        metavar="N", help="events each mailbox keeps for watermarks")
    limits.add_argument("--minute-seconds", type=float, default=default.minute, metavar="S",
                        help="the length of a minute of ConnectionTimeout and of a pull "
                        "subscription's Timeout, in seconds (tests shorten it)")
    limits.add_argument("--heartbeat-seconds", type=float, default=default.heartbeat,
                        metavar="S", help="seconds between an idle stream's ConnectionStatus OK")
    parser.set_defaults(run=run)


def policy(args: argparse.Namespace) -> Policy:
    """The notification limits the options ask for; ValueError names a bad one."""
    return Policy(hanging_connection_limit=args.hanging_connection_limit,
                  max_subscriptions=args.max_subscriptions, backends=args.backends,
                  event_retention=args.event_retention, minute=args.minute_seconds,
                  heartbeat=args.heartbeat_seconds)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `ews` subcommand to an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ews", help="Exchange EWS stand-in", description="Local Exchange EWS stand-in.")
    configure(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from emulators.ews.server import EwsServer

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    if not 0 <= args.port <= 65535:
        print(f"calsync emulate ews: --port {args.port} is not a port", file=sys.stderr)
        return 2
    if not args.user and not args.impersonator:
        print("calsync emulate ews: give at least one --user ADDRESS:PASSWORD", file=sys.stderr)
        return 2
    try:
        limits = policy(args)
    except ValueError as exc:
        print(f"calsync emulate ews: {exc}", file=sys.stderr)
        return 2
    try:
        server = EwsServer(users=args.user, impersonators=args.impersonator, port=args.port,
                           use_tls=args.tls, tls_dir=args.tls_dir, ntlm=args.ntlm,
                           notifications=limits)
    except (OSError, ValueError) as exc:
        print(f"calsync emulate ews: {exc}", file=sys.stderr)
        return 1
    # What the stand-in keeps for its life (its imports) set aside from the garbage
    # collector: a full collection over it stalls every answer for tens of milliseconds
    gc.collect()
    gc.freeze()
    # Parseable lines on stdout, flushed, so a parent process can wait for them.
    if server.ca_path is not None:
        print(f"CA certificate: {server.ca_path}", flush=True)
    print(f"EWS stand-in listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.ews",
                                     description="Local Exchange EWS stand-in.")
    configure(parser)
    args = parser.parse_args(argv)
    return int(args.run(args))
