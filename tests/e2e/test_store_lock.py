"""Issue 10 case 4: no SQLite call runs on mitmproxy's event loop, so a store that is busy
delays no flow through the proxy.

Another connection to calsync's store file (another calsync process, `calsync status`, a
backup) takes the write lock (`BEGIN IMMEDIATE`) and holds it 1.5 s. Meanwhile a mail
client's CreateItem through mitmdump with the addon, and small requests on other
connections every 50 ms, are each answered within 0.5 s; once the lock is released, the
create reaches Google.
"""

from __future__ import annotations

import time
from pathlib import Path

from exchangelib import Account

from emulators.google.server import GoogleCalendarServer
from tests.e2e.clients import Route
from tests.e2e.hostile import Probes, write_lock_held
from tests.e2e.items import at, converge, create
from tests.e2e.processes import Mitmdump

ALICE = "alice@example.com"
HELD_S = 1.5
ANSWER_MAX_S = 0.5


def test_a_locked_store_delays_no_flow_and_loses_no_change(
    alice: Account, route: Route, proxy: Mitmdump, google: GoogleCalendarServer, config: Path
) -> None:
    store = config.parent / "calsync.db"
    before = create(alice, "Before the lock", at(23, 9), 30)  # tables made, worker at work
    converge(google.api_endpoint, ALICE, store, [before])

    assert proxy.port is not None
    # plain HTTP through the proxy, absolute-form, to the Google stand-in's admin page
    probe = ("GET", f"{google.url}/_admin/calls", None)
    with Probes(proxy.port, (probe,)) as probes, write_lock_held(store, HELD_S):
        started = time.monotonic()
        during = create(alice, "During the lock", at(23, 10), 30)
        answered_s = time.monotonic() - started
    assert not probes.failures, probes.failures[:3]
    figures = (
        f"CreateItem answered in {answered_s:.3f} s; worst of {len(probes.latencies)} probes"
        f" {probes.worst:.3f} s (lock held {HELD_S} s)"
    )
    print(figures)
    assert answered_s < ANSWER_MAX_S, figures
    assert probes.worst < ANSWER_MAX_S, figures

    expected, got, outbox = converge(google.api_endpoint, ALICE, store, [before, during])
    assert got == expected
    assert outbox == {}
