"""What the worker spends to turn a DavMail CreateItem (iCalendar MimeContent only) into a
Google event: mapped from the request (the fast path) against read back from Exchange
(the fallback), in one run.

    .venv/bin/python bench/mime.py [--rounds 200]

Each of three events (a timed meeting in Berlin with attendees and a reminder, an all-day
event, a weekly series with two deleted occurrences) is created once in the EWS stand-in
by the CreateItem DavMail 6 sends for a CalDAV PUT. Then, `--rounds` times each:

- fast: parse the request (ews_parser), merge the iCalendar into the item
  (mapping.ical.calendar_item), map it (sync.core.events.google_body): what
  `FastPath._prepare` (sync/fast_path.py) does while the request is in memory;
- fallback: GetItem through exchangelib (sync.backends.exchange.ExchangeMailbox, its
  models, one HTTP round trip) and the same mapping: what it does after a restart or when
  the request cannot tell.

Cost is the CPU of the measuring thread alone (utime+stime from /proc/thread-self/stat,
kernel figures): the stand-in runs in this process but in threads of its own, so its
work is not counted, as Exchange's would not be. Printed per event, and the fast path as
a ratio of the fallback measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulators.ews import start_server  # noqa: E402
from ews_parser.envelope import parse  # noqa: E402
from ews_parser.values import CreateItemRequest, ParsedItem  # noqa: E402
from mapping.ical import calendar_item  # noqa: E402
from sync.backends.exchange import ExchangeMailbox  # noqa: E402
from sync.config import load_config  # noqa: E402
from sync.core.events import google_body  # noqa: E402
from tests.sync.sources.test_mime_fast_path import (  # noqa: E402
    ALL_DAY,
    TIMED,
    WEEKLY,
    created,
    davmail_create,
)

ALICE = "alice@example.com"
PASSWORD = "alice-secret"
TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> float:
    """Seconds of CPU this thread has used (utime + stime)."""
    fields = Path("/proc/thread-self/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def per_call(work: Callable[[], object], rounds: int) -> float:
    start = thread_cpu()
    for _ in range(rounds):
        work()
    return (thread_cpu() - start) / rounds


def fast(request: bytes) -> dict[str, object]:
    envelope = parse(request)
    body = envelope.body
    assert isinstance(body, CreateItemRequest)
    item = body.items[0]
    assert isinstance(item, ParsedItem) and item.model is not None
    assert item.mime_content is not None
    zone = envelope.header.time_zone_context
    model, _ = calendar_item(item.model, item.mime_content, owner=ALICE, default_zone=zone)
    return google_body(model, default_zone=zone)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    os.environ["CALSYNC_BENCH_PASSWORD"] = PASSWORD
    server = start_server(users={ALICE: PASSWORD})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config_file = Path(tmp) / "calsync.toml"
            config_file.write_text(
                f'[exchange]\news_url = "{server.url}"\n'
                f'[[users]]\nmailbox = "{ALICE}"\n'
                'exchange_password_env = "CALSYNC_BENCH_PASSWORD"\n'
            )
            config = load_config(config_file)
            mailbox = ExchangeMailbox(config, config.users[0])

            def full(item_id: str) -> dict[str, object]:
                item = mailbox.calendar_item(item_id)
                assert item is not None
                return google_body(item)

            print(f"CPU per event, measuring thread only, {args.rounds} rounds each")
            print(f"{'event':<10} {'fast ms':>8} {'fallback ms':>12} {'fast/fallback':>14}")
            for name, ics in (("timed", TIMED), ("all-day", ALL_DAY), ("weekly", WEEKLY)):
                request = davmail_create(ics)
                _, item_id = created(server, request)
                fast(request), full(item_id)  # warm: imports, caches, the connection
                quick = per_call(lambda r=request: fast(r), args.rounds)
                slow = per_call(lambda i=item_id: full(i), args.rounds)
                print(f"{name:<10} {quick * 1e3:8.2f} {slow * 1e3:12.2f} {quick / slow:14.2f}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
