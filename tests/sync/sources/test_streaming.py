"""EWS streaming notifications as a change source (sync/sources/streaming.py), through
exchangelib against the EWS stand-in's Subscribe / GetStreamingEvents: a change made
directly on Exchange (not through the proxy) triggers that user's sync at once; the
connection's timeout, a lost subscription (an EWS recycle) and a refused stream recover;
stop() ends the connection at once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from exchangelib import EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem

from emulators.ews import EwsServer, start_server
from emulators.ews.subscriptions import Policy
from emulators.google.server import GoogleCalendarServer
from sync.backends.clients import Clients
from sync.config import Config, UserConfig, load_config
from sync.sources.streaming import Streaming
from tests.addon.conftest import write_config
from tests.emulators.ews.conftest import raw_post
from tests.emulators.ews.services.notifying import (
    RawStream,
    streaming_xml,
    sub_id_of,
    subscribe_xml,
)
from tests.sync.conftest import ALICE, BOB, PASSWORDS

MINUTE = 0.5  # a stand-in "minute": ConnectionTimeout 1 ends a stream after this


class Triggers:
    """What the source triggered, per mailbox, with the time."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self.changed = threading.Condition()

    def __call__(self, user: UserConfig) -> None:
        with self.changed:
            self.seen.append((user.mailbox, time.monotonic()))
            self.changed.notify_all()

    def count(self, mailbox: str) -> int:
        return sum(1 for m, _ in self.seen if m == mailbox)

    def wait_for(self, mailbox: str, more_than: int, timeout: float = 5.0) -> float:
        """When `mailbox` was triggered more than `more_than` times."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.count(mailbox) <= more_than:
                left = deadline - time.monotonic()
                assert left > 0, f"{mailbox} not triggered: {self.seen}"
                self.changed.wait(left)
            return [t for m, t in self.seen if m == mailbox][more_than]


@pytest.fixture
def ews() -> Iterator[EwsServer]:
    server = start_server(
        users=PASSWORDS, notifications=Policy(minute=MINUTE, heartbeat=0.1)
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def config(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> Config:
    return load_config(write_config(tmp_path, google, ews_url=ews.url, users=(ALICE, BOB)))


def create(clients: Clients, config: Config, mailbox: str, subject: str) -> None:
    user = config.user_named(mailbox)
    assert user is not None
    account = clients.exchange(user).account  # type: ignore[attr-defined]
    utc = EWSTimeZone("UTC")
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=EWSDateTime(2027, 3, 4, 12, tzinfo=utc),
        end=EWSDateTime(2027, 3, 4, 13, tzinfo=utc),
    ).save(send_meeting_invitations="SendToNone")


def test_a_direct_exchange_change_triggers_only_its_user_at_once(config: Config) -> None:
    clients, triggers = Clients(config), Triggers()
    source = Streaming(config, clients, triggers, connection_timeout=1)
    source.start()
    try:
        # the start is a gap: both users' feeds catch up once
        triggers.wait_for(ALICE, 0)
        triggers.wait_for(BOB, 0)
        time.sleep(0.3)  # connected
        before_bob = triggers.count(BOB)
        made = time.monotonic()
        create(clients, config, ALICE, "Made in OWA")
        at = triggers.wait_for(ALICE, 1)
        assert at - made < 1.0
        time.sleep(0.3)
        assert triggers.count(BOB) == before_bob  # one user's change, one user's sync
    finally:
        source.stop()


def test_the_connection_is_opened_again_after_its_timeout(config: Config) -> None:
    clients, triggers = Clients(config), Triggers()
    source = Streaming(config, clients, triggers, connection_timeout=1)
    source.start(config.users[:1])
    try:
        triggers.wait_for(ALICE, 0)
        time.sleep(MINUTE * 2.5)  # two connection timeouts
        group = source.groups[0]
        assert group.reconnects >= 2, group
        made = triggers.count(ALICE)
        create(clients, config, ALICE, "After the reconnects")
        triggers.wait_for(ALICE, made)  # nothing missed: same subscription
    finally:
        source.stop()


def test_a_lost_subscription_is_made_again_and_the_feed_catches_up(
    config: Config, ews: EwsServer
) -> None:
    clients, triggers = Clients(config), Triggers()
    source = Streaming(config, clients, triggers, connection_timeout=1)
    source.start(config.users[:1])
    try:
        triggers.wait_for(ALICE, 0)
        time.sleep(0.3)
        first = set(source.groups[0].subscriptions)
        ews.recycle()  # an application pool recycle: subscriptions and streams lost
        # the change made while no subscription exists reaches the feed through the
        # trigger that follows the gap
        create(clients, config, ALICE, "During the recycle")
        triggers.wait_for(ALICE, 1, timeout=10.0)
        deadline = time.monotonic() + 5
        while not source.groups[0].subscriptions or set(source.groups[0].subscriptions) == first:
            assert time.monotonic() < deadline, source.groups[0]
            time.sleep(0.05)
        made = triggers.count(ALICE)
        time.sleep(0.3)
        create(clients, config, ALICE, "After the recycle")
        triggers.wait_for(ALICE, made)
    finally:
        source.stop()


def test_stop_ends_the_connection_at_once(config: Config) -> None:
    clients, triggers = Clients(config), Triggers()
    source = Streaming(config, clients, triggers, connection_timeout=30)
    source.start()
    triggers.wait_for(ALICE, 0)
    time.sleep(0.3)
    began = time.monotonic()
    source.stop(timeout=5.0)
    assert time.monotonic() - began < 2.0
    assert not source._threads  # every connection's thread ended


@contextlib.contextmanager
def pulling(
    tmp_path: Path, google: GoogleCalendarServer, *, pull_interval: float, **policy: int
) -> Iterator[tuple[Config, Clients, Triggers, Streaming]]:
    """alice's source, pulling: the account's one streaming connection is held by another
    client (a raw GetStreamingEvents), so calsync's is refused
    (ErrorExceededConnectionCount) and it falls back to a pull subscription."""
    server = start_server(
        users=PASSWORDS,
        notifications=Policy(minute=10.0, heartbeat=0.1, hanging_connection_limit=1, **policy),
    )
    try:
        _, _, answer = raw_post(server.url, subscribe_xml(), ALICE, PASSWORDS[ALICE])
        other = RawStream(server.url, streaming_xml(sub_id_of(answer), timeout=1), ALICE)
        assert other.chunked and other.next() is not None  # the connection is open
        config = load_config(write_config(tmp_path, google, ews_url=server.url, users=(ALICE,)))
        clients, triggers = Clients(config), Triggers()
        source = Streaming(
            config, clients, triggers, connection_timeout=1, pull_interval=pull_interval
        )
        source.start()
        try:
            deadline = time.monotonic() + 5
            while source.groups[0].mode != "pull" or not source.groups[0].subscriptions:
                assert time.monotonic() < deadline, source.groups[0]
                time.sleep(0.05)
            yield config, clients, triggers, source
        finally:
            source.stop()
            other.sock.close()
    finally:
        server.stop()


def test_a_refused_stream_falls_back_to_pulling(
    tmp_path: Path, google: GoogleCalendarServer
) -> None:
    with pulling(tmp_path, google, pull_interval=0.2) as (config, clients, triggers, source):
        assert source.groups[0].last_error == "ErrorExceededConnectionCount"
        made = triggers.count(ALICE)
        create(clients, config, ALICE, "Pulled")
        triggers.wait_for(ALICE, made)


def test_a_lost_watermark_is_subscribed_again_and_the_feed_catches_up(
    tmp_path: Path, google: GoogleCalendarServer
) -> None:
    # the mailbox's event table keeps 3 events: 5 changes between two pulls lose the
    # watermark (ErrorInvalidWatermark); the source subscribes again and triggers the
    # feed, which carries what the lost events said
    with pulling(tmp_path, google, pull_interval=2.0, event_retention=3) as (
        config,
        clients,
        triggers,
        source,
    ):
        first = set(source.groups[0].subscriptions)
        made = triggers.count(ALICE)
        for number in range(5):
            create(clients, config, ALICE, f"Lost {number}")
        deadline = time.monotonic() + 10
        while set(source.groups[0].subscriptions) in (set(), first):
            assert time.monotonic() < deadline, source.groups[0]
            time.sleep(0.05)
        assert source.groups[0].last_error == "ErrorInvalidWatermark"
        triggers.wait_for(ALICE, made)  # the gap: the feed runs
        again = triggers.count(ALICE)
        create(clients, config, ALICE, "After the loss")
        triggers.wait_for(ALICE, again, timeout=10.0)


def test_impersonated_groups_each_hold_a_stream_and_leave_room_for_the_sync(
    tmp_path: Path, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With impersonation every user's client shares one exchangelib protocol and its pool
    of sessions (4), and each open stream holds a session: six groups must still open six
    streams, and the sync's calls still get a session beside them."""
    mailboxes = tuple(f"user{n}@example.com" for n in range(6))
    server = start_server(
        users=dict.fromkeys(mailboxes, "unused"),
        impersonators={"svc-calsync@example.com": "svc-secret"},
        notifications=Policy(minute=10.0, heartbeat=0.1),  # streams open together, not cycling
    )
    monkeypatch.setenv("CALSYNC_TEST_SERVICE_PASSWORD", "svc-secret")
    try:
        path = write_config(tmp_path, google, ews_url=server.url, users=mailboxes)
        path.write_text(
            path.read_text().replace(
                "[exchange]\n",
                '[exchange]\nimpersonation_username = "svc-calsync@example.com"\n'
                'impersonation_password_env = "CALSYNC_TEST_SERVICE_PASSWORD"\n',
            )
        )
        config = load_config(path)
        clients, triggers = Clients(config), Triggers()
        source = Streaming(config, clients, triggers, connection_timeout=1, per_connection=1)
        source.start()
        try:
            deadline = time.monotonic() + 15
            while server.hub.status()["connections"] < len(mailboxes):
                assert time.monotonic() < deadline, server.hub.status()
                time.sleep(0.05)
            counted: list[int] = []
            account = clients.exchange(config.users[0]).account  # type: ignore[attr-defined]
            call = threading.Thread(target=lambda: counted.append(account.calendar.all().count()))
            call.start()
            call.join(5.0)
            assert counted == [0], "the sync's call found no session beside the streams"
        finally:
            source.stop()
    finally:
        server.stop()
