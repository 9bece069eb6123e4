"""Faults on the way to Google and in the proxy itself: the outbox makes every change
Exchange accepted arrive exactly once.

- Google unreachable (the stand-in's `outage` fault drops every connection) while the
  client edits: the worker retries with backoff; once Google is back everything arrives.
- mitmdump killed with SIGKILL right after a burst: the intents are in SQLite (committed
  in the response hook, before the client got its answer), the request bytes are gone, so
  the restarted worker reads the items from Exchange; the deterministic event ids turn a
  write that reached Google before the kill into a patch, not a second event.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from exchangelib import Account
from exchangelib.fields import WEDNESDAY
from exchangelib.recurrence import Recurrence, WeeklyPattern

from emulators.google.server import GoogleCalendarServer
from tests.e2e.clients import Route, outbox_attempts, outbox_counts, send_json, wait_for
from tests.e2e.items import at, converge, create
from tests.e2e.processes import Mitmdump, alive, children

ALICE = "alice@example.com"


def test_google_outage_while_editing_then_back(
    alice: Account, google: GoogleCalendarServer, config: Path
) -> None:
    store = config.parent / "calsync.db"
    faults = google.url + "/_admin/faults"
    kept = create(alice, "Kept", at(9, 9), 30, location="Room 1")
    moved = create(alice, "Moved", at(9, 10), 30)
    gone = create(alice, "Gone", at(9, 11), 30)
    converge(google.api_endpoint, ALICE, store, [kept, moved, gone])

    send_json(faults, "POST", {"kind": "outage"})
    try:
        kept.subject = "Kept, renamed"
        kept.save(update_fields=["subject"])
        moved.start, moved.end = at(10, 10), at(10, 11)
        moved.save(update_fields=["start", "end"])
        moved.location = "Room 2"
        moved.save(update_fields=["location"])
        gone.delete()
        new = create(alice, "Made during the outage", at(11, 9), 45)
        # The worker did meet the outage: entries failed and wait for a retry.
        attempts = wait_for(
            lambda: outbox_attempts(store), lambda n: n >= 2, timeout=10, what="failed writes"
        )
        assert attempts >= 2
        assert outbox_counts(store).get("pending", 0) >= 1
    finally:
        send_json(faults, "DELETE")

    expected, got, outbox = converge(google.api_endpoint, ALICE, store, [kept, moved, new])
    assert got == expected
    assert outbox == {}  # nothing quarantined either
    assert {c.send_updates for c in google.state.calls} == {"none"}


def test_proxy_killed_after_a_burst_loses_and_duplicates_nothing(
    alice: Account, route: Route, proxy: Mitmdump, google: GoogleCalendarServer, config: Path
) -> None:
    store = config.parent / "calsync.db"
    faults = google.url + "/_admin/faults"
    early = create(alice, "Before the burst", at(16, 9), 30)
    converge(google.api_endpoint, ALICE, store, [early])

    # Google answers slowly (after applying the write), so the burst is still in the outbox
    # when the proxy dies, and a write can reach Google without the worker hearing of it.
    send_json(faults, "POST", {"kind": "latency", "latencyMs": 1000})
    try:
        a = create(alice, "Burst A", at(17, 9), 30, location="Room 1")
        b = create(alice, "Burst B", at(17, 10), 30)
        c = create(alice, "Burst C", at(17, 11), 30)
        series = create(
            alice,
            "Burst series",
            at(18, 12),
            60,
            recurrence=Recurrence(
                pattern=WeeklyPattern(interval=2, weekdays=[WEDNESDAY]),
                start=dt.date(2026, 3, 18),
                number=3,
            ),
        )
        early.subject = "Renamed in the burst"
        early.save(update_fields=["subject"])
        a.location = "Room 9"
        a.save(update_fields=["location"])
        b.start, b.end = at(19, 15), at(19, 16)
        b.save(update_fields=["start", "end"])
        c.delete()
        assert proxy.process is not None
        helpers = children(proxy.process.pid)  # the worker process(es) writing to Google
        assert helpers, "the worker process should be at work when the proxy dies"
        proxy.kill()
        left = outbox_counts(store)
        # nothing calsync started outlives the proxy (the worker notices it was orphaned)
        still = wait_for(
            lambda: [p for p in helpers if alive(p)],
            lambda left: not left,
            timeout=15,
            what="the worker processes to exit",
        )
        assert still == [], still
    finally:
        send_json(faults, "DELETE")
    assert left.get("pending", 0) >= 1, left  # the restart has work to do

    proxy.start()  # same config, same store, same CA
    route.proxy_url = proxy.proxy_url
    # The restarted proxy mirrors new traffic as before, on top of the recovered burst.
    a.subject = "Burst A, after the restart"
    a.save(update_fields=["subject"])

    expected, got, outbox = converge(google.api_endpoint, ALICE, store, [early, a, b, series])
    assert got == expected
    assert outbox == {}
    assert {c.send_updates for c in google.state.calls} == {"none"}
