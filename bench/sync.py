"""What a two-way sync run costs, through both stand-ins and the unmodified clients, in
one run of this script.

    .venv/bin/python bench/sync.py [--sizes 1000,10000,100000] [--initial 10000] [--rounds 3]

(a) Incremental: calendars of 1k, 10k and 100k events already in step (both stand-ins and
    calsync's id map seeded directly through their Python APIs, for speed: going through
    the clients would take hours at 100k), then `--rounds` times (3) 10 changes through
    the real clients (5 edits in Exchange with exchangelib, 5 in Google with
    google-api-python-client) and one timed `SyncJob.run_user`. Printed, for the median
    run: Google and EWS HTTP requests, the run's time, how much of it the stand-ins spent
    answering; and the 100k/1k time ratio.
    Target: ratio <= 1.2 (the cost follows the changes, not the calendar's size).
(b) Initial: 10k events in Exchange, an empty Google calendar and an empty store; one
    `run_user`, inserts sent as batch requests. Printed: time and HTTP requests.
    Target: at least 20x fewer Google HTTP requests than events.

Figures are measured, printed, never asserted (tests assert behaviour, not speed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALICE = "alice@example.com"
PASSWORD = "alice-secret"
CHANGES = 10


class Meter:
    """HTTP requests that reached a stand-in, and the time it spent answering them."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.busy_s = 0.0
        self._lock = threading.Lock()

    def wrap(self, handle: Callable[..., Any], name: Callable[..., str | None]) -> Any:
        def measured(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return handle(*args, **kwargs)
            finally:
                label = name(*args, **kwargs)
                with self._lock:
                    if label is not None:
                        self.requests[label] += 1
                    self.busy_s += time.perf_counter() - started

        return measured

    def reset(self) -> None:
        self.requests.clear()
        self.busy_s = 0.0

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def google_label(request: Any, in_batch: bool = False) -> str | None:
    if in_batch or request.path.startswith("/_admin"):
        return None  # a batch's parts travel inside one HTTP request
    return "batch" if request.path.startswith("/batch") else f"{request.method} {request.path}"


def ews_label(user: str, envelope: Any, *rest: Any, **options: Any) -> str:
    return str(envelope.operation)


class Setup:
    def __init__(self, workdir: Path) -> None:
        from emulators.ews import start_server
        from emulators.google.server import GoogleCalendarServer

        os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        os.environ["CALSYNC_BENCH_PASSWORD"] = PASSWORD
        self.ews = start_server(users={ALICE: PASSWORD})
        self.google = GoogleCalendarServer(port=0, users=(ALICE,)).start()
        self.google_meter = Meter()
        self.ews_meter = Meter()
        api = self.google.api
        api.handle = self.google_meter.wrap(api.handle, google_label)  # type: ignore[method-assign]
        service = self.ews.service
        service.handle = self.ews_meter.wrap(service.handle, ews_label)  # type: ignore[method-assign]
        token = workdir / "alice.json"
        token.write_text(
            json.dumps(
                {
                    "token": ALICE,
                    "refresh_token": "refresh",
                    "token_uri": self.google.token_uri,
                    "client_id": "bench",
                    "client_secret": "bench",
                    "scopes": ["https://www.googleapis.com/auth/calendar"],
                }
            )
        )
        config = workdir / "calsync.toml"
        config.write_text(
            f'[store]\npath = "{workdir / "calsync.db"}"\n'
            f'[google]\napi_endpoint = "{self.google.api_endpoint}"\n'
            f'token_uri = "{self.google.token_uri}"\n'
            f'[exchange]\news_url = "{self.ews.url}"\n'
            f'[[users]]\nmailbox = "{ALICE}"\ngoogle_token_file = "{token}"\n'
            'exchange_password_env = "CALSYNC_BENCH_PASSWORD"\n'
        )
        from sync.config import load_config
        from sync.sources.job import SyncJob
        from sync.store import Store

        self.config = load_config(config)
        self.user = self.config.users[0]
        self.store = Store(self.config.store_path)
        self.job = SyncJob(self.config, self.store)
        # made before any item is seeded: making them registers calsync's extended
        # properties on exchangelib's models, which every item then carries
        self.job.clients(self.user)

    def stop(self) -> None:
        self.store.close()
        self.google.stop()
        self.ews.stop()

    # --- seeding through the stand-ins' Python APIs ----------------------------------------

    def seed_exchange(self, count: int) -> list[Any]:
        """`count` single items in Alice's calendar, straight into the mailbox store."""
        from exchangelib import EWSDateTime, EWSTimeZone
        from exchangelib.items import CalendarItem

        store = self.ews.store
        mailbox = store.mailbox(ALICE)
        assert mailbox is not None
        berlin = EWSTimeZone("Europe/Berlin")
        first = EWSDateTime(2026, 1, 5, 8, tzinfo=berlin)
        stored = []
        with store.lock:
            folder = mailbox.folders["calendar"]
            for n in range(count):
                start = first + dt.timedelta(hours=n % 10, days=n // 10)
                model = CalendarItem(
                    subject=f"Event {n:06d}",
                    location=f"Room {n % 97}",
                    start=start,
                    end=start + dt.timedelta(minutes=45),
                    legacy_free_busy_status="Busy",
                    reminder_is_set=True,
                    reminder_minutes_before_start=15,
                )
                stored.append(mailbox.create(model, folder))
        return stored

    def seed_in_step(self, count: int) -> None:
        """Both sides and the id map as calsync leaves them after a full sync."""
        from emulators.ews import ids
        from mapping.event import content_hash, event_id_for, to_google
        from sync.core.events import tagged
        from sync.store import MappedItem

        stored = self.seed_exchange(count)
        mailbox = self.ews.store.mailbox(ALICE)
        assert mailbox is not None
        state = self.google.state
        rows = []
        with state.lock:
            user = state.accounts.users[ALICE]
            for item in stored:
                # the stored model is what GetItem would serialise for these fields
                body = tagged(to_google(item.model), self.user.mailbox, item.id)
                event_id = event_id_for(item.id)
                event = state.insert_event(user, "primary", {**body, "id": event_id}, {})
                rows.append(
                    MappedItem(
                        ALICE,
                        item.id,
                        event_id,
                        item.change_key,
                        event["etag"],
                        content_hash(body),
                        body,
                    )
                )
            calendar = state.calendar_for(user, "primary")
            google_token = state.sync_token(user, calendar, state.counter)
        now = time.time()
        with self.store.unit() as uow:  # one transaction for the whole map
            for row in rows:
                uow.ids.save(row, now=now)
        with self.ews.store.lock:
            ews_state = ids.sync_state(mailbox.folders["calendar"].id, mailbox._seq)
        self.store.save_sync_state(ALICE, ews_sync_state=ews_state, google_sync_token=google_token)

    # --- the run -------------------------------------------------------------------------

    def run(self) -> tuple[Any, float]:
        self.google_meter.reset()
        self.ews_meter.reset()
        started = time.perf_counter()
        report = self.job.run_user(self.user)
        return report, time.perf_counter() - started


def make_changes(setup: Setup, count: int, round_: int = 0) -> None:
    """Half the changes in Exchange (exchangelib), half in Google (the API client); each
    round writes other values."""
    from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials
    from exchangelib.version import EXCHANGE_2016, Version
    from google.oauth2.credentials import Credentials as GoogleCredentials
    from googleapiclient.discovery import build

    account = Account(
        ALICE,
        config=Configuration(
            service_endpoint=setup.ews.url,
            credentials=Credentials(ALICE, PASSWORD),
            auth_type=BASIC,
            version=Version(build=EXCHANGE_2016),
        ),
        autodiscover=False,
        access_type=DELEGATE,
    )
    service = build(
        "calendar",
        "v3",
        credentials=GoogleCredentials(token=ALICE),
        static_discovery=True,
        client_options={"api_endpoint": setup.google.api_endpoint},
    )
    mapped = setup.store.mapped_items(ALICE) if count else []
    # spread over the calendar: first, last and in between
    step = max(1, len(mapped) // count)
    chosen = mapped[::step][:count]
    for n, row in enumerate(chosen):
        if n % 2 == 0:
            (item,) = account.fetch(ids=[(row.ews_item_id, None)])
            item.location = f"Moved {n} ({round_})"
            item.save(update_fields=["location"])
        else:
            service.events().patch(
                calendarId="primary",
                eventId=row.google_event_id,
                body={"summary": f"New {n} ({round_})"},
            ).execute()


def incremental(size: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="calsync-bench-") as tmp:
        setup = Setup(Path(tmp))
        try:
            started = time.perf_counter()
            gc.disable()  # seeding makes millions of small objects; the collector is not timed
            try:
                setup.seed_in_step(size)
            finally:
                gc.enable()
                gc.collect()
            seeded = time.perf_counter() - started
            quiet, _ = setup.run()  # warms the clients; must find nothing to do
            assert not quiet.errors and not quiet.actions, quiet.summary()
            # several rounds of changes and a run each: the median run is what a busy
            # machine disturbs least
            runs = []
            for round_ in range(rounds):
                make_changes(setup, CHANGES, round_)
                report, elapsed = setup.run()
                assert not report.errors, report.errors
                stand_ins = setup.google_meter.busy_s + setup.ews_meter.busy_s
                runs.append((elapsed, stand_ins, setup.google_meter.total, setup.ews_meter.total))
            elapsed, stand_ins, google, ews = sorted(runs)[len(runs) // 2]
            return {
                "size": size,
                "seed_s": seeded,
                "google": google,
                "ews": ews,
                "time_s": elapsed,
                "stand_ins_s": stand_ins,
            }
        finally:
            setup.stop()


def initial(size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="calsync-bench-") as tmp:
        setup = Setup(Path(tmp))
        try:
            setup.seed_exchange(size)
            report, elapsed = setup.run()
            assert not report.errors, report.errors[:3]
            google_events = sum(
                1
                for c in setup.google.state.calendars[ALICE].events.values()
                if c.resource.get("status") != "cancelled"
            )
            return {
                "size": size,
                "created": google_events,
                "time_s": elapsed,
                "google": setup.google_meter.total,
                "google_by_kind": dict(setup.google_meter.requests),
                "ews": setup.ews_meter.total,
                "ews_by_kind": dict(setup.ews_meter.requests),
                "stand_ins_s": setup.google_meter.busy_s + setup.ews_meter.busy_s,
            }
        finally:
            setup.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--initial", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3, help="(a): runs per size (the median)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    print(
        f"(a) incremental: {CHANGES} changes (5 in Exchange, 5 in Google), one run_user; "
        f"the median of {args.rounds} rounds"
    )
    print(
        f"{'events':>8} {'Google req':>10} {'EWS req':>8} {'run s':>8} {'stand-ins s':>11}"
        f" {'calsync s':>9} {'seed s':>7}"
    )
    rows = []
    for size in sizes:
        row = incremental(size, args.rounds)
        rows.append(row)
        own = row["time_s"] - row["stand_ins_s"]
        print(
            f"{size:>8} {row['google']:>10} {row['ews']:>8} {row['time_s']:>8.3f}"
            f" {row['stand_ins_s']:>11.3f} {own:>9.3f} {row['seed_s']:>7.1f}",
            flush=True,
        )
    if len(rows) > 1:
        small, big = rows[0], rows[-1]
        ratio = big["time_s"] / small["time_s"]
        own = (big["time_s"] - big["stand_ins_s"]) / (small["time_s"] - small["stand_ins_s"])
        print(
            f"time ratio {big['size']}/{small['size']}: {ratio:.2f} (target <= 1.2);"
            f" calsync's own share: {own:.2f}"
        )

    if args.initial:
        print(f"\n(b) initial full sync of {args.initial} events into an empty Google calendar")
        row = initial(args.initial)
        print(
            f"created {row['created']} in {row['time_s']:.1f} s"
            f" (stand-ins {row['stand_ins_s']:.1f} s);"
            f" Google HTTP requests {row['google']} {row['google_by_kind']};"
            f" EWS requests {row['ews']} {row['ews_by_kind']}"
        )
        print(
            f"events per Google HTTP request: {row['created'] / max(row['google'], 1):.1f}"
            " (target >= 20)"
        )


if __name__ == "__main__":
    main()
