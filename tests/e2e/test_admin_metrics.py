"""A scrape of /metrics while the whole chain works: mitmdump with the addon (worker
processes, EWS streaming, Google push, a poll every 2 s) between exchangelib and the EWS
stand-in, the Google stand-in behind. A mail client's new event goes through the proxy to
Google, an edit made in Google comes back to Exchange; the scrape (parsed by
prometheus_client's own parser) then shows every family with values that say so, and
/readyz says ready."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exchangelib import Account
from exchangelib.protocol import BaseProtocol
from prometheus_client.parser import text_string_to_metric_families

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from tests.e2e.clients import Route, account, calendar_service, google_events, wait_for
from tests.e2e.conftest import PASSWORD, mitmdump, write_config
from tests.e2e.items import at, create
from tests.e2e.processes import Mitmdump

ALICE = "alice@example.com"
Samples = dict[str, list[tuple[str, dict[str, str], float]]]

#: every family the issue lists, and the ones beside them
FAMILIES = (
    "calsync_change_latency_seconds",
    "calsync_sync_runs",
    "calsync_sync_run_duration_seconds",
    "calsync_conflicts",
    "calsync_google_requests",
    "calsync_ews_requests",
    "calsync_outbox_entries",
    "calsync_notifications",
    "calsync_outbox_depth",
    "calsync_outbox_oldest_age_seconds",
    "calsync_outbox_quarantined",
    "calsync_push_channels",
    "calsync_streaming_subscriptions",
    "calsync_streaming_connections",
    "calsync_lease_holders",
    "calsync_users",
    "calsync_users_paused",
    "calsync_store_up",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def node(
    tmp_path: Path, google: GoogleCalendarServer, ews: EwsServer, request: pytest.FixtureRequest
) -> Iterator[tuple[Mitmdump, str]]:
    admin_port = free_port()
    config = write_config(tmp_path, google, ews, streaming=True)
    with config.open("a") as extra:
        extra.write(f"[admin]\nlisten_port = {admin_port}\n")
    process = mitmdump(
        tmp_path,
        config,
        ews,
        calsync_push_port=str(free_port()),
        calsync_sync_interval="2",
    )
    try:
        started = process.start()
        # the worker process warm, and the run streaming starts with over: the proxy's
        # change is then the worker's to carry (a change a run carried first is no
        # latency of the proxy's)
        wait_for(
            process.log,
            lambda log: "calsync worker: warm in" in log,
            timeout=60,
            what="the worker process",
        )
        wait_for(scrape_runs(admin_port), lambda runs: runs >= 1, timeout=60, what="the first run")
        yield started, f"http://127.0.0.1:{admin_port}"
    finally:
        process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(process.logs())


@pytest.fixture
def alice(
    ews: EwsServer, node: tuple[Mitmdump, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Account]:
    proxy, _ = node
    assert ews.ca_path is not None
    route = Route(direct_ca=ews.ca_path, proxy_url=proxy.proxy_url, proxy_ca=proxy.ca_path)
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", route.adapter())
    client = account(ews.url, ALICE, PASSWORD)
    try:
        yield client
    finally:
        client.protocol.close()


def scrape_runs(admin_port: int) -> Callable[[], float]:
    """The runs /metrics has counted so far (every outcome)."""
    admin = f"http://127.0.0.1:{admin_port}"
    return lambda: sum(v for _, _, v in scrape(admin).get("calsync_sync_runs", []))


def scrape(admin: str) -> Samples:
    """family -> [(sample name, labels, value)] (the _created timestamps left out)."""
    with urllib.request.urlopen(f"{admin}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        family.name: [
            (s.name, s.labels, s.value) for s in family.samples if not s.name.endswith("_created")
        ]
        for family in text_string_to_metric_families(text)
    }


def test_a_scrape_during_the_chain_shows_every_family(
    alice: Account, node: tuple[Mitmdump, str], google: GoogleCalendarServer
) -> None:
    _, admin = node
    item = create(alice, "Standup", at(2, 9), 30)  # through the proxy
    event_id = event_id_for(item.id)
    wait_for(
        lambda: {e["id"] for e in google_events(google.api_endpoint, ALICE)},
        lambda ids: event_id in ids,
        timeout=30,
        what="the proxy's change in Google",
    )
    calendar_service(google.api_endpoint, ALICE).events().patch(
        calendarId="primary", eventId=event_id, body={"location": "Room 9"}
    ).execute()  # Google tells calsync by push; the run writes it to Exchange

    def ready(samples: Samples) -> bool:
        return (
            latencies(samples, "proxy") >= 1
            and latencies(samples, "push") + latencies(samples, "google_feed") >= 1
            and one(samples, "calsync_outbox_depth") == 0
        )

    samples = wait_for(lambda: scrape(admin), ready, timeout=60, what="the metrics")

    assert set(FAMILIES) <= set(samples), set(FAMILIES) - set(samples)
    # the proxy's change: seconds at most, through the worker process, counted here
    assert latencies(samples, "proxy") >= 1
    assert 0 < latency_sum(samples, "proxy") < 30 * latencies(samples, "proxy")
    # the Google edit came back by push (or the poll, when the run was already under way)
    assert latencies(samples, "push") + latencies(samples, "google_feed") >= 1
    assert total(samples, "calsync_outbox_entries", result="written") >= 1
    assert total(samples, "calsync_sync_runs", outcome="changed") >= 1
    assert total(samples, "calsync_sync_runs", outcome="failed") == 0
    assert (
        total(samples, "calsync_google_requests", operation="events.insert", status="ok")
        + total(samples, "calsync_google_requests", operation="events.import", status="ok")
        >= 1
    )
    assert total(samples, "calsync_google_requests", operation="events.list", status="ok") >= 1
    assert total(samples, "calsync_ews_requests", operation="SyncFolderItems", status="200") >= 1
    assert total(samples, "calsync_ews_requests", status="unreachable") == 0
    assert total(samples, "calsync_notifications", source="push") >= 1
    assert total(samples, "calsync_conflicts") == 0
    assert one(samples, "calsync_outbox_depth") == 0
    assert one(samples, "calsync_outbox_oldest_age_seconds") == 0
    assert one(samples, "calsync_outbox_quarantined") == 0
    assert one(samples, "calsync_users") == 2
    assert one(samples, "calsync_users_paused") == 0
    assert one(samples, "calsync_store_up") == 1
    assert one(samples, "calsync_push_channels") == 2  # one per user
    assert one(samples, "calsync_streaming_subscriptions") == 2
    assert total(samples, "calsync_streaming_connections", state="up") >= 1
    assert samples["calsync_lease_holders"] == []  # one node on SQLite: no leases
    for _, labels, _ in samples["calsync_google_requests"] + samples["calsync_ews_requests"]:
        assert set(labels) == {"operation", "status"}  # bounded: never an event or a user

    with urllib.request.urlopen(f"{admin}/readyz", timeout=10) as reply:
        body = json.loads(reply.read())
    assert reply.status == 200, body
    assert {name for name, check in body["checks"].items() if check["ok"]} == {
        "store",
        "worker",
        "google",
        "exchange",
    }


def total(samples: Samples, family: str, **labels: str) -> float:
    return sum(v for _, got, v in samples.get(family, []) if labels.items() <= got.items())


def one(samples: Samples, family: str) -> float:
    (sample,) = samples[family]
    return sample[2]


def latencies(samples: Samples, source: str) -> float:
    return _histogram(samples, source, "_count")


def latency_sum(samples: Samples, source: str) -> float:
    return _histogram(samples, source, "_sum")


def _histogram(samples: Samples, source: str, suffix: str) -> float:
    return sum(
        v
        for name, got, v in samples["calsync_change_latency_seconds"]
        if name.endswith(suffix) and got.get("source") == source
    )
