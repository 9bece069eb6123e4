"""GetStreamingEvents through the real exchangelib (subscribe_to_streaming,
get_streaming_events) and as raw chunks: notifications as changes happen, heartbeats,
ConnectionTimeout, several subscriptions on one connection, the errors and limits.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getstreamingevents-operation
(The stand-in's "minute" is MINUTE seconds here, so ConnectionTimeout 1 is short.)
"""

from __future__ import annotations

import itertools
import os
import resource
import threading
import time
from collections.abc import Iterator

import pytest
from exchangelib.errors import (
    ErrorExceededConnectionCount,
    ErrorInvalidRequest,
    ErrorInvalidSubscription,
    ErrorServerBusy,
    ErrorSubscriptionNotFound,
)
from exchangelib.properties import CreatedEvent, DeletedEvent, ModifiedEvent, Notification

from emulators.ews import EwsServer
from tests.emulators.ews.conftest import admin, raw_post
from tests.emulators.ews.services.notifying import (
    HEARTBEAT,
    MINUTE,
    RawStream,
    account,
    create,
    running,
    streaming_xml,
    sub_id_of,
    subscribe_xml,
)


@pytest.fixture
def server() -> Iterator[EwsServer]:
    with running() as srv:  # short minutes and heartbeats
        yield srv


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_change_is_streamed_as_it_happens(server: EwsServer) -> None:
    # A CreateItem reaches an open stream at once: CreatedEvent (with the ChangeKey the
    # create answered with, how a client knows its own write) and the folder's
    # ModifiedEvent, in one notification.
    alice = account(server, "alice@example.com")
    sub_id = alice.calendar.subscribe_to_streaming()
    got: list[Notification] = []
    stream = _in_thread(lambda: got.extend(alice.calendar.get_streaming_events(
        sub_id, connection_timeout=30, max_notifications_returned=1)))
    time.sleep(0.2)  # the stream is open
    item = create(account(server, "alice@example.com"))
    created = time.monotonic()
    stream.join(10)
    assert not stream.is_alive() and len(got) == 1
    assert time.monotonic() - created < 1.0
    events = got[0].events
    assert got[0].subscription_id == sub_id
    item_events = [e for e in events if e.event_type == "item"]
    assert isinstance(item_events[0], CreatedEvent)
    assert (item_events[0].item_id.id, item_events[0].item_id.changekey) == (item.id,
                                                                            item.changekey)
    assert item_events[0].watermark is None  # streamed events carry none
    folder = [e for e in events if e.event_type == "folder"]
    assert isinstance(folder[0], ModifiedEvent)
    assert folder[0].folder_id.id == alice.calendar.id


def test_a_stream_on_a_descriptor_past_1023_is_served(server: EwsServer) -> None:
    # A process serving many connections holds descriptors past select()'s 1023 (found at
    # the end of a whole test run: "filedescriptor out of range in select()", the stream
    # dropped); the stand-in waits on them through a selector.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"at most {hard} descriptors here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = []
    try:
        while not held or held[-1] < 1100:  # the next sockets get higher numbers
            held.append(os.open(os.devnull, os.O_RDONLY))
        test_a_change_is_streamed_as_it_happens(server)  # on descriptors past 1100
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_updates_and_deletes_follow(server: EwsServer) -> None:
    alice = account(server, "alice@example.com")
    writer = account(server, "alice@example.com")
    item = create(writer)
    sub_id = alice.calendar.subscribe_to_streaming()

    def change() -> None:
        time.sleep(0.2)
        item.subject = "Dinner"
        item.save(update_fields=["subject"])
        item.delete()

    _in_thread(change)
    seen: list[object] = []
    for notification in alice.calendar.get_streaming_events(sub_id, connection_timeout=1):
        seen.extend(notification.events)
    kinds = [type(e) for e in seen if e.event_type == "item"]
    assert ModifiedEvent in kinds and DeletedEvent in kinds


def test_connection_timeout_ends_the_stream_with_closed(server: EwsServer) -> None:
    # exchangelib stops reading at ConnectionStatus Closed: the call returns after the
    # ConnectionTimeout (1 "minute" here), not at its own read timeout.
    alice = account(server, "alice@example.com")
    sub_id = alice.calendar.subscribe_to_streaming()
    got: list[list[Notification]] = []
    began = time.monotonic()
    stream = _in_thread(lambda: got.append(list(alice.calendar.get_streaming_events(
        sub_id, connection_timeout=1))))
    stream.join(MINUTE + 2)
    assert got == [[]]
    assert MINUTE * 0.9 <= time.monotonic() - began < MINUTE + 2


def test_the_raw_stream_one_envelope_a_chunk(server: EwsServer) -> None:
    # Chunked; an OK at once, OK heartbeats while idle, a Notifications message for a
    # change, Closed at the deadline, then the last chunk.
    sub_id = sub_id_of(raw_post(server.url, subscribe_xml())[2])
    raw = RawStream(server.url, streaming_xml(sub_id, timeout=2))
    try:
        assert raw.status_line.endswith("200 OK") and raw.chunked
        opened = time.monotonic()
        _in_thread(lambda: (time.sleep(3 * HEARTBEAT),
                            create(account(server, "alice@example.com"))))
        documents = list(raw.documents())
        assert raw.ended
    finally:
        raw.close()
    assert documents[0].status == "OK" and documents[0].at - opened < 0.5
    assert documents[-1].status == "Closed"
    assert 2 * MINUTE * 0.9 < documents[-1].at - opened < 2 * MINUTE + 1
    notes = [d for d in documents if d.events()]
    assert len(notes) == 1 and notes[0].status is None
    assert [(e[0], e[1]) for e in notes[0].events()] == [
        (sub_id, "CreatedEvent"), (sub_id, "ModifiedEvent")]
    heartbeats = [d for d in documents[1:-1] if d.status == "OK"]
    assert len(heartbeats) >= 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(documents)]
    assert max(gaps) < HEARTBEAT + 0.3  # never silent for longer than a heartbeat


def test_several_subscriptions_on_one_connection(server: EwsServer) -> None:
    # A service account impersonates two users, subscribes for each, and streams both on
    # one connection: each notification names its subscription.
    as_alice = account(server, "alice@example.com", service=True)
    as_bob = account(server, "bob@example.com", service=True)
    subs = {as_alice.calendar.subscribe_to_streaming(): "alice",
            as_bob.calendar.subscribe_to_streaming(): "bob"}

    def write() -> None:
        time.sleep(0.2)
        create(account(server, "alice@example.com"), "A")
        create(account(server, "bob@example.com"), "B")

    _in_thread(write)
    seen: dict[str, int] = {}
    for notification in as_alice.calendar.get_streaming_events(list(subs),
                                                               connection_timeout=1):
        for event in notification.events:
            if isinstance(event, CreatedEvent):
                seen[subs[notification.subscription_id]] = seen.get(
                    subs[notification.subscription_id], 0) + 1
    assert seen == {"alice": 1, "bob": 1}


def test_events_between_connections_wait_for_the_next_one(server: EwsServer) -> None:
    # Nothing is lost across a reconnect: what happened while no connection was open
    # comes first on the next one.
    alice = account(server, "alice@example.com")
    sub_id = alice.calendar.subscribe_to_streaming()
    item = create(account(server, "alice@example.com"))
    notes = list(alice.calendar.get_streaming_events(sub_id, connection_timeout=1,
                                                     max_notifications_returned=1))
    assert [e.item_id.id for e in notes[0].events if isinstance(e, CreatedEvent)] == [item.id]


@pytest.mark.parametrize(("sub_id", "error", "text"), [
    # not an id Exchange could have made: exchangelib's own test against Exchange
    ("AAA-", ErrorInvalidSubscription, "Subscription is invalid. (subscription IDs: ['AAA-'])"),
    # a well-formed id nobody holds (expired, unsubscribed, from before a restart)
    (None, ErrorSubscriptionNotFound, "(subscription IDs: ["),
])
def test_unknown_subscriptions_fail_the_connection(
    server: EwsServer, sub_id: str | None, error: type[Exception], text: str
) -> None:
    alice = account(server, "alice@example.com")
    good = alice.calendar.subscribe_to_streaming()
    if sub_id is None:
        sub_id = alice.calendar.subscribe_to_streaming()
        alice.calendar.unsubscribe(sub_id)
    # One bad id fails the whole request, good ones beside it included.
    with pytest.raises(error) as raised:
        list(alice.calendar.get_streaming_events([good, sub_id], connection_timeout=1))
    assert text in str(raised.value) and sub_id in str(raised.value)
    assert good not in str(raised.value)


def test_another_owners_subscription_is_invalid(server: EwsServer) -> None:
    alice = account(server, "alice@example.com")
    bob = account(server, "bob@example.com")
    with pytest.raises(ErrorInvalidSubscription):
        list(bob.calendar.get_streaming_events(alice.calendar.subscribe_to_streaming(),
                                               connection_timeout=1))


def test_a_pull_subscription_cannot_stream(server: EwsServer) -> None:
    alice = account(server, "alice@example.com")
    sub_id, _ = alice.calendar.subscribe_to_pull()
    with pytest.raises(ErrorInvalidSubscription):
        list(alice.calendar.get_streaming_events(sub_id, connection_timeout=1))


def test_at_most_200_subscriptions_a_connection(server: EwsServer) -> None:
    sub_id = sub_id_of(raw_post(server.url, subscribe_xml())[2])
    with pytest.raises(ErrorInvalidRequest):
        list(account(server, "alice@example.com").calendar.get_streaming_events(
            [sub_id] * 201, connection_timeout=1))


def test_hanging_connection_limit() -> None:
    # Two open streams per account here: the third is ErrorExceededConnectionCount, and
    # a client that hangs up frees its place at once (not at the next heartbeat's write).
    with running(hanging_connection_limit=2, heartbeat=60) as srv:
        subs = [sub_id_of(raw_post(srv.url, subscribe_xml())[2]) for _ in range(3)]
        first = RawStream(srv.url, streaming_xml(subs[0], timeout=30))
        second = RawStream(srv.url, streaming_xml(subs[1], timeout=30))
        assert first.next() is not None and second.next() is not None  # both open
        alice = account(srv, "alice@example.com")
        with pytest.raises(ErrorExceededConnectionCount):
            list(alice.calendar.get_streaming_events(subs[2], connection_timeout=1))
        # another account has its own budget
        bob = account(srv, "bob@example.com")
        list(bob.calendar.get_streaming_events(bob.calendar.subscribe_to_streaming(),
                                               connection_timeout=1))
        first.close()
        for _ in range(100):
            if admin(srv.base_url, "GET", "/_admin/subscriptions")[1]["connections"] == 1:  # type: ignore[index]
                break
            time.sleep(0.02)
        assert list(alice.calendar.get_streaming_events(subs[2], connection_timeout=1)) == []
        second.close()


def test_a_newer_connection_takes_the_subscription_and_the_older_closes(
    server: EwsServer,
) -> None:
    # How a client reconnects before the timeout without a gap.
    sub_id = sub_id_of(raw_post(server.url, subscribe_xml())[2])
    old = RawStream(server.url, streaming_xml(sub_id, timeout=30))
    try:
        assert old.next().status == "OK"  # type: ignore[union-attr]
        new = RawStream(server.url, streaming_xml(sub_id, timeout=30))
        assert new.next().status == "OK"  # type: ignore[union-attr]
        assert [d.status for d in old.documents()] == ["Closed"]
        new.close()
    finally:
        old.close()


def test_a_recycle_breaks_the_stream_and_loses_the_subscription(server: EwsServer) -> None:
    alice = account(server, "alice@example.com")
    sub_id = alice.calendar.subscribe_to_streaming()
    raw = RawStream(server.url, streaming_xml(sub_id, timeout=30))
    try:
        assert raw.next() is not None
        assert admin(server.base_url, "POST", "/_admin/recycle")[0] == 200
        with pytest.raises(ConnectionError):
            raw.next()
    finally:
        raw.close()
    with pytest.raises(ErrorSubscriptionNotFound):
        list(alice.calendar.get_streaming_events(sub_id, connection_timeout=1))


def test_server_busy_through_the_fault_switch(server: EwsServer) -> None:
    alice = account(server, "alice@example.com")
    sub_id = alice.calendar.subscribe_to_streaming()
    admin(server.base_url, "POST", "/_admin/faults",
          {"kind": "ErrorServerBusy", "count": 1, "backOffMilliseconds": 30000})
    with pytest.raises(ErrorServerBusy) as busy:
        list(alice.calendar.get_streaming_events(sub_id, connection_timeout=1))
    assert busy.value.back_off == 30
