"""sync/ops/metrics.py: what each hook counts, measured through the registry a scrape reads,
with the real clients against the stand-ins for the request counters."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.backends.base import ExchangeError
from sync.backends.exchange import ExchangeMailbox
from sync.backends.google import GoogleCalendar
from sync.config import load_config
from sync.core.decide import Action
from sync.ops import metrics
from sync.sources.job import Report
from sync.state.base import OutboxEntry
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE


def value(name: str, **labels: str) -> float:
    """A sample's value as a scrape reads it (0 when absent)."""
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return found or 0.0


def total(name: str, **labels: str) -> float:
    """The sum of a family's samples that carry `labels` (other labels any value)."""
    return sum(
        sample.value
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    metrics.reset_for_tests()
    yield
    metrics.reset_for_tests()


# --- the EWS operation a request asks for -----------------------------------------------------

SOAP = (
    b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<s:Header/><s:Body>{body}</s:Body></s:Envelope>"
)


@pytest.mark.parametrize(
    ("body", "operation"),
    [
        # the first element in the Body, its prefix dropped
        (SOAP.replace(b"{body}", b'<m:GetItem xmlns:m="x"><m:ItemIds/></m:GetItem>'), "GetItem"),
        (SOAP.replace(b"{body}", b"<SyncFolderItems>"), "SyncFolderItems"),
        (SOAP.replace(b"{body}", b'<m:GetStreamingEvents\n xmlns:m="x"/>'), "GetStreamingEvents"),
        # anything else names no operation: labels stay bounded
        (None, "unknown"),
        (b"", "unknown"),
        (b"<html>no soap</html>", "unknown"),
        (SOAP.replace(b"{body}", b"<m:Get-Item1/>"), "unknown"),
        (SOAP.replace(b"{body}", b"<m:" + b"A" * 41 + b"/>"), "unknown"),
    ],
)
def test_ews_operation(body: bytes | None, operation: str) -> None:
    assert metrics.ews_operation(body) == operation


# --- the outbox worker -----------------------------------------------------------------------


def entry(created_at: float) -> OutboxEntry:
    return OutboxEntry(
        id=1,
        mailbox=ALICE,
        ews_item_id="AAMk-1",
        op="upsert",
        change_key="CK1",
        payload=None,
        attempts=0,
        next_attempt_at=created_at,
        last_error=None,
        state="pending",
        created_at=created_at,
    )


def test_an_outbox_write_is_a_proxy_change_with_its_latency() -> None:
    before = value(
        "calsync_change_latency_seconds_count", source="proxy", direction="exchange_to_google"
    )
    before_sum = value(
        "calsync_change_latency_seconds_sum", source="proxy", direction="exchange_to_google"
    )
    written = value("calsync_outbox_entries_total", result="written")
    now = time.time()
    metrics.outbox_written(entry(now - 0.75), now=now)
    assert (
        value(
            "calsync_change_latency_seconds_count", source="proxy", direction="exchange_to_google"
        )
        == before + 1
    )
    assert value(
        "calsync_change_latency_seconds_sum", source="proxy", direction="exchange_to_google"
    ) == pytest.approx(before_sum + 0.75)
    assert value("calsync_outbox_entries_total", result="written") == written + 1
    (minute,) = [m for m in metrics.HISTORY.series(now=now, minutes=1)]
    assert minute.count == 1 and minute.latencies == [pytest.approx(0.75)]
    (change,) = metrics.RECENT
    assert (change.mailbox, change.source, change.kind, change.ews_item_id) == (
        ALICE,
        "proxy",
        "upsert",
        "AAMk-1",
    )


# --- runs: outcome, duration, latency by what triggered them -----------------------------------


def report(*kinds: str, applied: int = 1, errors: list[str] | None = None) -> Report:
    made = Report(ALICE)
    made.actions = [Action(k, ALICE, "AAMk-1", "g1", f"new ({k})") for k in kinds]  # type: ignore[arg-type]
    made.applied = applied
    made.errors = errors or []
    return made


def test_a_run_a_streaming_notification_triggered_measures_from_the_notification() -> None:
    ran: list[str] = []
    runs = metrics.observed_runs(lambda user: (time.sleep(0.2), report("create-google"))[1])
    trigger = metrics.noting("streaming", lambda user: ran.append(user))
    notified = value("calsync_notifications_total", source="streaming")
    count = value(
        "calsync_change_latency_seconds_count", source="streaming", direction="exchange_to_google"
    )
    changed = value("calsync_sync_runs_total", outcome="changed")

    trigger(ALICE)
    runs(ALICE)

    assert ran == [ALICE]
    assert value("calsync_notifications_total", source="streaming") == notified + 1
    assert value("calsync_sync_runs_total", outcome="changed") == changed + 1
    assert (
        value(
            "calsync_change_latency_seconds_count",
            source="streaming",
            direction="exchange_to_google",
        )
        == count + 1
    )
    (minute,) = [m for m in metrics.HISTORY.series(now=time.time(), minutes=2) if m.count]
    assert 0.2 <= minute.latencies[0] < 2.0
    # the notification is served: the next run is a poll's
    runs(ALICE)
    assert (
        value(
            "calsync_change_latency_seconds_count",
            source="streaming",
            direction="exchange_to_google",
        )
        == count + 1
    )


def test_a_poll_measures_from_the_newest_change_the_feed_listed() -> None:
    five_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()

    def run(user: str) -> Report:
        metrics.feed_stamps("google", [five_ago, None, "not a time"])
        return report("update-exchange")

    count = value(
        "calsync_change_latency_seconds_count", source="google_feed", direction="google_to_exchange"
    )
    total = value(
        "calsync_change_latency_seconds_sum", source="google_feed", direction="google_to_exchange"
    )
    metrics.observed_runs(run)(ALICE)
    assert (
        value(
            "calsync_change_latency_seconds_count",
            source="google_feed",
            direction="google_to_exchange",
        )
        == count + 1
    )
    measured = (
        value(
            "calsync_change_latency_seconds_sum",
            source="google_feed",
            direction="google_to_exchange",
        )
        - total
    )
    assert 5.0 <= measured < 7.0
    assert [c.source for c in metrics.RECENT] == ["google_feed"]


@pytest.mark.parametrize(
    ("made", "outcome"),
    [
        (report("create-google"), "changed"),
        (report(applied=0), "unchanged"),
        (report("create-google", errors=["GoogleError: 500"]), "error"),
    ],
)
def test_run_outcomes(made: Report, outcome: str) -> None:
    before = value("calsync_sync_runs_total", outcome=outcome)
    metrics.observed_runs(lambda user: made)(ALICE)
    assert value("calsync_sync_runs_total", outcome=outcome) == before + 1


def test_a_run_that_raises_is_failed_and_a_run_elsewhere_is_not_counted() -> None:
    failed = value("calsync_sync_runs_total", outcome="failed")

    def broken(user: str) -> Report:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        metrics.observed_runs(broken)(ALICE)
    assert value("calsync_sync_runs_total", outcome="failed") == failed + 1
    total = sum(value("calsync_sync_runs_total", outcome=o) for o in metrics.RUN_OUTCOMES)
    assert metrics.observed_runs(lambda user: None)(ALICE) is None  # another node's lease
    assert sum(value("calsync_sync_runs_total", outcome=o) for o in metrics.RUN_OUTCOMES) == total


def test_nothing_applied_measures_no_latency() -> None:
    before = sum(
        value("calsync_change_latency_seconds_count", source=s, direction=d)
        for s, d in metrics.SOURCE_DIRECTIONS.items()
    )
    metrics.observed_runs(lambda user: report("create-google", applied=0))(ALICE)
    after = sum(
        value("calsync_change_latency_seconds_count", source=s, direction=d)
        for s, d in metrics.SOURCE_DIRECTIONS.items()
    )
    assert after == before


# --- requests, through the real clients ---------------------------------------------------------


def test_google_calls_are_counted_by_operation_and_status(
    tmp_path: Path, google: GoogleCalendarServer
) -> None:
    config = load_config(write_config(tmp_path, google, users=(ALICE,)))
    calendar = GoogleCalendar(config, config.users[0])
    inserted = value("calsync_google_requests_total", operation="events.insert", status="ok")
    missing = value("calsync_google_requests_total", operation="events.get", status="404")
    calendar.insert(
        {
            "id": "abc123def",
            "summary": "s",
            "start": {"date": "2026-03-02"},
            "end": {"date": "2026-03-03"},
        }
    )
    assert calendar.get("nosuchevent0") is None
    calendar.insert_many(
        [
            {
                "id": f"batch{i}abc",
                "summary": "s",
                "start": {"date": "2026-03-02"},
                "end": {"date": "2026-03-03"},
            }
            for i in range(3)
        ]
    )
    assert (
        value("calsync_google_requests_total", operation="events.insert", status="ok")
        == inserted + 4
    )
    assert (
        value("calsync_google_requests_total", operation="events.get", status="404") == missing + 1
    )
    assert metrics.ANSWERS["google"].answered is not None


def test_ews_requests_are_counted_and_an_unreachable_exchange_is_remembered(
    tmp_path: Path, google: GoogleCalendarServer, ews: EwsServer
) -> None:
    config = load_config(write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,)))
    get_item = sum(
        value("calsync_ews_requests_total", operation="GetItem", status=s) for s in ("200", "500")
    )
    ExchangeMailbox(config, config.users[0]).calendar_item("AAMkAGnosuchitem")
    assert (
        sum(
            value("calsync_ews_requests_total", operation="GetItem", status=s)
            for s in ("200", "500")
        )
        == get_item + 1
    )
    assert metrics.ANSWERS["exchange"].answered is not None

    closed = load_config(
        write_config(
            tmp_path, google, ews_url="http://127.0.0.1:9/EWS/Exchange.asmx", users=(ALICE,)
        )
    )
    unreachable = total("calsync_ews_requests_total", status="unreachable")
    with pytest.raises(ExchangeError):
        ExchangeMailbox(closed, closed.users[0]).calendar_item("AAMkAGnosuchitem")
    assert total("calsync_ews_requests_total", status="unreachable") > unreachable
    assert metrics.ANSWERS["exchange"].unreachable is not None


def test_a_conflict_the_store_records_is_counted_by_winner(tmp_path: Path) -> None:
    store = Store(tmp_path / "calsync.db")
    try:
        before = value("calsync_conflicts_total", winner="google")
        store.record_conflict(
            ALICE, "AAMk-1", "g1", "summary", "google", "both changed; google-wins", now=1.0
        )
        assert value("calsync_conflicts_total", winner="google") == before + 1
    finally:
        store.close()


# --- worker processes hand what they counted to the parent --------------------------------------

_CHILD = """
import json, time
from sync.ops import metrics
from sync.state.base import OutboxEntry
metrics.forward_from_this_process()
metrics.google_request("calendar.events.patch", "ok")
metrics.outbox_written(OutboxEntry(7, "alice@example.com", "AAMk-7", "update", None, None, 0,
    time.time(), None, "pending", time.time() - 1.5))
print(json.dumps(metrics.handover()))
assert metrics.handover() == []
"""


def test_what_a_worker_process_counted_shows_in_the_parent() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    samples = [(name, tuple(args)) for name, args in json.loads(done.stdout)]
    patched = value("calsync_google_requests_total", operation="events.patch", status="ok")
    proxied = value(
        "calsync_change_latency_seconds_count", source="proxy", direction="exchange_to_google"
    )
    metrics.take_over(samples)
    assert (
        value("calsync_google_requests_total", operation="events.patch", status="ok") == patched + 1
    )
    assert (
        value(
            "calsync_change_latency_seconds_count", source="proxy", direction="exchange_to_google"
        )
        == proxied + 1
    )
    assert [c.ews_item_id for c in metrics.RECENT] == ["AAMk-7"]
    assert metrics.handover() == []  # this process forwards nothing


# --- the console's history ----------------------------------------------------------------------


def test_history_keeps_minutes_and_their_percentiles() -> None:
    history = metrics.History(minutes=10)
    start = 1_000_020.0  # 20 s into a minute
    for i in range(100):
        history.add(at=start, changes=1, latency=i / 10)
    history.add(at=start + 60, changes=2)  # changes a run carried, its latency not known
    history.add(at=start + 61, latency=3.0)
    history.add(at=start - 20 * 60, changes=1, latency=9.0)  # older than kept: dropped
    series = history.series(now=start + 60, minutes=3)
    assert [m.count for m in series] == [0, 100, 2]
    assert series[2].latencies == [3.0]
    assert series[1].quantile(0.5) == pytest.approx(5.0)
    assert series[1].quantile(0.95) == pytest.approx(9.5)
    assert series[0].quantile(0.5) is None


def test_a_minute_keeps_a_bounded_sample() -> None:
    minute = metrics.Minute(0.0)
    for i in range(metrics.SAMPLES_PER_MIN * 4):
        minute.add(float(i))
    assert minute.seen == metrics.SAMPLES_PER_MIN * 4
    assert len(minute.latencies) == metrics.SAMPLES_PER_MIN
    assert minute.latencies == sorted(minute.latencies)
