"""Google push (sync/sources/push.py) through the unmodified google-api-python-client and the Google
stand-in, which really POSTs its notifications to the webhook on 127.0.0.1; Google-side
edits land in the EWS stand-in, read back with exchangelib."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import ConfigError, PushConfig, UserConfig, parse_push
from sync.sources.push import PushService, UserRuns, parse_notification
from sync.store import SCHEMA_VERSION, Store
from tests.sync.conftest import ALICE, BOB
from tests.sync.sources.test_job import World

ROOT = Path(__file__).resolve().parents[3]
TTL, RENEW_BEFORE = 3600, 600
PUSH = f"[push]\nlisten_port = 0\nchannel_ttl_s = {TTL}\nrenew_before_s = {RENEW_BEFORE}\n"


class Clock:
    """Seconds since the epoch that move only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> World:
    return World(tmp_path, ews, google, extra=PUSH)


@pytest.fixture
def service(world: World, clock: Clock) -> Iterator[PushService]:
    push = PushService(world.config, world.store, world.job.run_user, clock=clock)
    push.start()
    try:
        yield push
    finally:
        push.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Bounded polling: the predicate's first truthy value, or a failure after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, headers: dict[str, str], method: str = "POST") -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=b"", headers=headers, method=method)
    try:
        with opener.open(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def open_at_google(google: GoogleCalendarServer) -> set[str]:
    return set(google.notifier.channels)


# --- channels -----------------------------------------------------------------------------


def test_a_channel_per_user_is_opened_and_stored(
    service: PushService, world: World, google: GoogleCalendarServer
) -> None:
    stored = {c.mailbox: c for c in world.store.channels()}
    assert set(stored) == {ALICE, BOB}
    alice = stored[ALICE]
    assert uuid.UUID(alice.channel_id).version == 4
    at_google = google.notifier.channels[alice.channel_id]
    assert alice.resource_id == at_google.resource_id
    assert alice.expiration == pytest.approx(at_google.expiration.timestamp(), abs=0.001)
    assert alice.expiration == pytest.approx(service.channels.clock() + TTL, abs=1)
    assert at_google.address == service.address == service.server.url
    assert at_google.token == alice.token and len(alice.token) >= 32
    assert alice.token != stored[BOB].token
    # the token is sealed at rest
    raw = world.store.db.execute("SELECT token FROM channels").fetchall()
    assert all(alice.token.encode() not in row[0] for row in raw)
    # Google's first message on each channel (`sync`) was accepted and started no run
    wait_until(lambda: google.notifier.delivered >= 2)
    assert service.webhook.refused == 0
    assert service.runs.runs == {}


def test_a_google_edit_reaches_exchange_without_polling(
    world: World, clock: Clock, google: GoogleCalendarServer
) -> None:
    world.create_in_exchange("Standup")
    world.run()
    event = world.google_events()["Standup"]
    push = PushService(world.config, world.store, world.job.run_user, clock=clock)
    push.start()
    try:
        world.patch_google(event["id"], {"summary": "Daily standup", "location": "Room 9"})
        item = wait_until(lambda: world.exchange_items().get("Daily standup"))
        assert item.location == "Room 9"
        assert push.runs.runs.get(ALICE, 0) >= 1
        assert BOB not in push.runs.runs  # only the user whose calendar changed
    finally:
        push.stop()


# what the webhook refuses, and the status it answers with
REFUSALS = [
    # the channel's secret is what proves a notification is Google's
    ("wrong token", {"X-Goog-Channel-Token": "not-the-token"}, "POST", 403),
    ("missing token", {"X-Goog-Channel-Token": None}, "POST", 403),
    # a channel we never opened (or already stopped)
    ("unknown channel", {"X-Goog-Channel-ID": str(uuid.uuid4())}, "POST", 404),
    # the right secret on another resource
    ("other resource", {"X-Goog-Resource-ID": "elsewhere"}, "POST", 403),
    # not a notification at all
    ("no channel id", {"X-Goog-Channel-ID": None}, "POST", 400),
    ("GET", {}, "GET", 405),
]


@pytest.mark.parametrize(
    ("change", "method", "status"),
    [pytest.param(c, m, s, id=name) for name, c, m, s in REFUSALS],
)
def test_a_bad_notification_is_refused_and_its_token_never_logged(
    service: PushService,
    world: World,
    caplog: pytest.LogCaptureFixture,
    change: dict[str, str | None],
    method: str,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG, logger="calsync")
    (channel,) = world.store.channels(ALICE)
    good = {
        "X-Goog-Channel-ID": channel.channel_id,
        "X-Goog-Channel-Token": channel.token,
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "7",
    }
    sent = {k: v for k, v in {**good, **change}.items() if v is not None}
    assert post(service.server.url, sent, method) == status
    # a trigger marks its run in flight before the answer is sent: none was
    assert service.runs.idle() and service.runs.runs == {}
    assert channel.token not in caplog.text and "not-the-token" not in caplog.text
    # the same notification with the right headers does start a run
    assert post(service.server.url, good) == 200
    wait_until(lambda: service.runs.runs.get(ALICE))


def test_renewal_before_expiry_opens_a_new_channel_then_stops_the_old(
    service: PushService, world: World, clock: Clock, google: GoogleCalendarServer
) -> None:
    (old,) = world.store.channels(ALICE)
    clock.now += TTL - RENEW_BEFORE - 60  # not yet due
    service.tick()
    assert world.store.channels(ALICE) == [old]
    assert old.channel_id in open_at_google(google)

    clock.now += 120  # within renew_before_s of the expiry
    service.tick()
    (new,) = world.store.channels(ALICE)
    assert new.channel_id != old.channel_id and new.token != old.token
    assert new.expiration == pytest.approx(clock.now + TTL, abs=1)
    assert new.channel_id in open_at_google(google)
    assert old.channel_id not in open_at_google(google)  # channels.stop reached Google
    # the old channel's notifications are no longer accepted
    headers = {
        "X-Goog-Channel-ID": old.channel_id,
        "X-Goog-Channel-Token": old.token,
        "X-Goog-Resource-ID": old.resource_id,
        "X-Goog-Resource-State": "exists",
    }
    assert post(service.server.url, headers) == 404


def test_shutdown_stops_every_channel(world: World, clock: Clock, google: GoogleCalendarServer):
    push = PushService(world.config, world.store, world.job.run_user, clock=clock)
    push.start()
    opened = {c.channel_id for c in world.store.channels()}
    assert len(opened) == 2 and opened <= open_at_google(google)
    push.stop()
    assert open_at_google(google) == set()
    assert world.store.channels() == []


def test_a_restart_reuses_stored_channels_and_renews_those_due(
    world: World, clock: Clock, google: GoogleCalendarServer
) -> None:
    port = free_port()
    first = PushService(world.config, world.store, world.job.run_user, port=port, clock=clock)
    first.start()
    before = {c.mailbox: c for c in world.store.channels()}
    # a crash: the process goes, the channels stay open at Google and in the store
    first.server.stop()
    first.runs.close()
    world.store.close()

    store = Store(world.config.store_path)
    second = PushService(world.config, store, world.job.run_user, port=port, clock=clock)
    second.start()
    try:
        assert {c.mailbox: c for c in store.channels()} == before  # reused, none opened
        assert open_at_google(google) == {c.channel_id for c in before.values()}
        # the reused channel still works: a Google edit reaches the new process
        world.job.store = world.job.reconciler.store = store
        world.create_in_exchange("Retro")
        world.job.run([world.config.user_named(ALICE)])  # type: ignore[list-item]
        event = world.google_events()["Retro"]
        world.patch_google(event["id"], {"summary": "Retro (moved)"})
        wait_until(lambda: "Retro (moved)" in world.exchange_items())

        # a restart close to the expiry renews instead
        second.server.stop()
        second.runs.close()
        clock.now += TTL - RENEW_BEFORE + 1
        third = PushService(world.config, store, world.job.run_user, port=port, clock=clock)
        third.start()
        try:
            after = {c.mailbox: c for c in store.channels()}
            assert {c.channel_id for c in after.values()}.isdisjoint(
                c.channel_id for c in before.values()
            )
            assert open_at_google(google) == {c.channel_id for c in after.values()}
        finally:
            third.stop()
    finally:
        store.close()


def test_a_move_of_the_webhook_renews_the_channels(
    world: World, clock: Clock, google: GoogleCalendarServer
) -> None:
    first = PushService(world.config, world.store, world.job.run_user, clock=clock)
    first.start()
    before = {c.channel_id for c in world.store.channels()}
    first.server.stop()  # a crash, then a start on another port (listen_port = 0)
    first.runs.close()
    second = PushService(world.config, world.store, world.job.run_user, clock=clock)
    second.start()
    try:
        after = {c.channel_id for c in world.store.channels()}
        assert after.isdisjoint(before) and open_at_google(google) == after
        assert {google.notifier.channels[c].address for c in after} == {second.address}
    finally:
        second.stop()


# --- runs -------------------------------------------------------------------------------------


def test_a_burst_of_notifications_is_one_run_in_flight_and_one_queued() -> None:
    alice, bob = UserConfig(ALICE), UserConfig(BOB)
    started: list[str] = []
    gate = threading.Event()

    def run(user: UserConfig) -> None:
        started.append(user.mailbox)
        gate.wait(timeout=20)

    runs = UserRuns(run)
    runs.trigger(alice)
    wait_until(lambda: started == [ALICE])
    for _ in range(10):  # a burst while the first run is in flight
        runs.trigger(alice)
    runs.trigger(bob)  # another user is not held up by alice
    wait_until(lambda: BOB in started)
    gate.set()
    wait_until(runs.idle)
    assert runs.runs == {ALICE: 2, BOB: 1}
    assert started.count(ALICE) == 2
    runs.close()


def test_a_poll_and_a_push_run_of_one_user_never_overlap() -> None:
    alice = UserConfig(ALICE)
    inside: list[int] = []
    overlaps: list[int] = []
    gate = threading.Event()

    def run(user: UserConfig) -> None:
        if inside:
            overlaps.append(1)
        inside.append(1)
        gate.wait(timeout=20)
        inside.pop()

    runs = UserRuns(run)
    poll = threading.Thread(target=runs.run_now, args=(alice,))
    poll.start()
    wait_until(lambda: inside)
    runs.trigger(alice)
    gate.set()
    poll.join(timeout=20)
    wait_until(runs.idle)
    assert runs.runs == {ALICE: 1} and overlaps == []


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Google's headers, lower-cased by the server
        (
            {
                "x-goog-channel-id": "c",
                "x-goog-channel-token": "t",
                "x-goog-resource-id": "r",
                "x-goog-resource-state": "exists",
                "x-goog-message-number": "2",
            },
            ("c", "t", "r", "exists", "2"),
        ),
        (
            {"x-goog-channel-id": "c", "x-goog-resource-state": "sync"},
            ("c", None, None, "sync", None),
        ),
        # not a notification
        ({"x-goog-channel-id": "c"}, None),
        ({"x-goog-resource-state": "exists"}, None),
        ({}, None),
    ],
)
def test_parse_notification(headers: dict[str, str], expected: tuple[Any, ...] | None) -> None:
    parsed = parse_notification(headers)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (
            parsed.channel_id,
            parsed.token,
            parsed.resource_id,
            parsed.resource_state,
            parsed.message_number,
        ) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, PushConfig()),
        (
            {"webhook_url": "https://calsync.example.com/google/push", "listen_port": 9000},
            PushConfig(webhook_url="https://calsync.example.com/google/push", listen_port=9000),
        ),
        # plain http only on loopback (the stand-in)
        ({"webhook_url": "http://127.0.0.1:9/p"}, PushConfig(webhook_url="http://127.0.0.1:9/p")),
        ({"channel_ttl_s": 3600}, PushConfig(channel_ttl_s=3600.0)),
    ],
)
def test_push_config(raw: dict[str, Any], expected: PushConfig) -> None:
    assert parse_push(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"webhook_url": "http://calsync.example.com/p"}, "must be https://"),
        ({"webhook_url": "ftp://x"}, "http:// or https://"),
        ({"listen_port": 70000}, "listen_port"),
        ({"renew_before_s": -1}, "renew_before_s"),
        ({"webhook": "https://x"}, "unknown key 'webhook'"),
    ],
)
def test_push_config_mistakes_are_one_line(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_push(raw)


def test_a_v2_store_gets_the_channels_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.save_sync_state(ALICE, google_sync_token="kept")
    store.db.table("channels").drop()
    store.db.table("meta").upsert({"key": "schema_version", "value": "2"}, pk="key")
    store.close()
    reopened = Store(tmp_path / "s.db")
    assert "channels" in reopened.db.table_names()
    assert reopened.channels() == []
    assert reopened.sync_state(ALICE)["google_sync_token"] == "kept"
    # migrated to the current version, through the one that added channels (3)
    assert reopened.db.table("meta").get("schema_version")["value"] == str(SCHEMA_VERSION)
    assert SCHEMA_VERSION >= 3
    reopened.close()


# --- where the webhook is served ---------------------------------------------------------------


def test_calsync_serve_opens_channels_and_stops_them_on_sigterm(
    world: World, google: GoogleCalendarServer
) -> None:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync.cli",
            "serve",
            "--config",
            str(world.config_path),
            "--port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(2)]  # a warning, then this
        assert "calsync serve: listening on http://127.0.0.1:" in lines[-1], lines
        wait_until(lambda: len(open_at_google(google)) == 2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert open_at_google(google) == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_addon_serves_the_webhook_when_calsync_push_port_is_set(
    world: World, google: GoogleCalendarServer
) -> None:
    from mitmproxy.test import taddons

    from tests.addon.test_calsync import load

    world.create_in_exchange("Planning")
    world.run()
    event = world.google_events()["Planning"]
    world.store.close()

    async def scenario(addon: Any) -> None:
        addon.running()
        await asyncio.to_thread(wait_until, lambda: len(open_at_google(google)) == 2)
        await asyncio.to_thread(world.patch_google, event["id"], {"summary": "Planning v2"})
        await asyncio.to_thread(wait_until, lambda: "Planning v2" in world.exchange_items())
        await addon.done()

    with taddons.context() as tctx:
        addon = load(tctx, world.config_path)
        tctx.options.update(calsync_push_port=free_port(), calsync_sync_interval=0)
        addon.configure({"calsync_push_port", "calsync_sync_interval"})
        asyncio.run(scenario(addon))
    assert open_at_google(google) == set()


def test_the_addon_moves_its_webhook_when_reconfigured_while_running(
    world: World, google: GoogleCalendarServer
) -> None:
    from mitmproxy.test import taddons

    from tests.addon.test_calsync import load

    world.store.close()
    first_port, second_port = free_port(), free_port()

    def addresses() -> set[str]:
        return {c.address for c in google.notifier.channels.values()}

    async def scenario(addon: Any, tctx: Any) -> None:
        addon.running()
        await asyncio.to_thread(wait_until, lambda: len(addresses()) == 1)
        (before,) = addresses()
        tctx.options.update(calsync_push_port=second_port)
        addon.configure({"calsync_push_port"})
        await asyncio.to_thread(
            wait_until, lambda: len(google.notifier.channels) == 2 and before not in addresses()
        )
        assert addresses() == {f"http://127.0.0.1:{second_port}/google/push"}
        await addon.done()

    with taddons.context() as tctx:
        addon = load(tctx, world.config_path)
        tctx.options.update(calsync_push_port=first_port, calsync_sync_interval=0)
        addon.configure({"calsync_push_port", "calsync_sync_interval"})
        asyncio.run(scenario(addon, tctx))
    assert open_at_google(google) == set()


SERVE = (sys.executable, "-m", "sync.cli", "serve")


def test_calsync_serve_drains_what_a_proxy_left_in_the_outbox(
    world: World, google: GoogleCalendarServer
) -> None:
    """A proxy stopped with entries queued; `calsync serve` on the same store mirrors them
    (its outbox drainer) and still stops cleanly on SIGTERM."""
    item = world.create_in_exchange("Left in the outbox")
    world.store.enqueue(ALICE, item.id, "upsert", now=time.time(), change_key=item.changekey)
    world.store.close()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = subprocess.Popen(
        [*SERVE, "--config", str(world.config_path), "--port", "0"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        store = Store(world.config.store_path)
        try:
            wait_until(lambda: not store.pending(ALICE))
        finally:
            store.close()
        assert "Left in the outbox" in world.google_events()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
