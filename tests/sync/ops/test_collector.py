"""sync/ops/collector.py: what a scrape says the state is, parsed back with
prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sync.backends.clients import Clients
from sync.config import Config
from sync.ops.collector import Scrape, StateCollector
from sync.sources.streaming import Group, Streaming
from sync.store import Store, WatchChannel
from tests.sync.conftest import ALICE, BOB

NOW = 1_900_000_000.0


def scrape(collector: StateCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(Scrape(collector)).decode()  # type: ignore[arg-type]
    return {
        family.name: [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def only(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    (sample,) = found[name]
    return sample[1]


def channel(name: str, expiration: float) -> WatchChannel:
    return WatchChannel(
        name, ALICE, f"r-{name}", "tok", "https://x/push", "primary", expiration, NOW
    )


def test_the_state_a_scrape_reads(config: Config, store: Store) -> None:
    store.enqueue(ALICE, "AAMk-1", "upsert", now=NOW - 42)
    store.enqueue(BOB, "AAMk-2", "upsert", now=NOW - 5)
    held = store.enqueue(BOB, "AAMk-3", "delete", now=NOW - 5)
    store.retry_later(held, error="no", at=NOW, quarantine=True)
    store.save_channel(channel("live", NOW + 3600))
    store.save_channel(channel("expired", NOW - 1))
    store.pause(BOB, now=NOW)
    streaming = Streaming(config, Clients(config), lambda user: None)
    streaming.groups = [
        Group([config.users[0]], connected=True, subscriptions={"s1": config.users[0]}),
        Group([config.users[1]], connected=False, subscriptions={"s2": config.users[1]}),
    ]

    found = scrape(StateCollector(config, store, clock=lambda: NOW))

    assert only(found, "calsync_store_up") == 1
    assert only(found, "calsync_users") == 2
    assert only(found, "calsync_users_paused") == 1
    assert only(found, "calsync_outbox_depth") == 2
    assert only(found, "calsync_outbox_oldest_age_seconds") == 42
    assert only(found, "calsync_outbox_quarantined") == 1
    assert only(found, "calsync_push_channels") == 1
    assert only(found, "calsync_streaming_subscriptions") == 1
    assert sorted((s[0]["state"], s[1]) for s in found["calsync_streaming_connections"]) == [
        ("down", 1),
        ("up", 1),
    ]
    assert found["calsync_lease_holders"] == []  # SQLite: one node, no leases
    assert "calsync_user_outbox_depth" not in found  # per-user series are asked for
    # the counters are in the same scrape
    assert "calsync_change_latency_seconds" in found
    del streaming


def test_per_user_series(config: Config, store: Store) -> None:
    store.enqueue(ALICE, "AAMk-1", "upsert", now=NOW - 1)
    store.save_sync_state(ALICE, last_google_sync=NOW - 30)
    found = scrape(StateCollector(config, store, per_user=True, clock=lambda: NOW))
    assert dict((s[0]["user"], s[1]) for s in found["calsync_user_outbox_depth"]) == {
        ALICE: 1,
        BOB: 0,
    }
    assert found["calsync_user_last_sync_age_seconds"] == [
        ({"user": ALICE, "side": "google"}, 30.0)
    ]


def test_a_store_that_does_not_answer_says_so(config: Config, store: Store) -> None:
    collector = StateCollector(config, store, clock=lambda: NOW)
    store.close()
    found = scrape(collector)
    assert only(found, "calsync_store_up") == 0
    assert only(found, "calsync_outbox_depth") == 0


def test_reads_are_cached_for_a_moment(config: Config, store: Store) -> None:
    now = [NOW]
    collector = StateCollector(config, store, clock=lambda: now[0], ttl=2.0)
    assert only(scrape(collector), "calsync_outbox_depth") == 0
    store.enqueue(ALICE, "AAMk-1", "upsert", now=NOW)
    assert only(scrape(collector), "calsync_outbox_depth") == 0  # the same second: one read
    now[0] += 2.5
    assert only(scrape(collector), "calsync_outbox_depth") == 1
