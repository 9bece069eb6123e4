"""The EWS stand-in's subscription hub without HTTP: the mailbox event table and what the
store records in it, watermarks, expiry, the limits, affinity routing, a recycle.
(Through exchangelib and raw SOAP: tests/emulators/ews/services/test_notifications.py.)"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from exchangelib import EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem

from emulators.ews.mailbox import Change, Mailbox, Store
from emulators.ews.subscriptions import (
    Hub,
    Policy,
    Route,
    StreamRefused,
    backend_name,
    read_watermark,
    watermark,
    well_formed_subscription_id,
)
from ews_parser import EwsResponseError

ALICE = "alice@example.com"
BOB = "bob@example.com"
UTC = EWSTimeZone("UTC")
_NOW = dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store() -> Store:
    return Store([ALICE, BOB], lambda: dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC))


def _hub(**policy: object) -> tuple[Hub, Store, Clock]:
    store = _store()
    clock = Clock()
    return Hub(store, Policy(**policy), clock), store, clock  # type: ignore[arg-type]


def _create(mailbox: Mailbox, subject: str = "x", status: str | None = None) -> str:
    model = CalendarItem(subject=subject, start=EWSDateTime(2024, 3, 4, 10, tzinfo=UTC),
                         end=EWSDateTime(2024, 3, 4, 11, tzinfo=UTC),
                         legacy_free_busy_status=status)
    return mailbox.create(model, mailbox.folders["calendar"]).id


def _pull(hub: Hub, address: str = ALICE, folders: frozenset[str] | None = None,
          **kwargs: object) -> tuple[str, str]:
    args: dict[str, object] = {
        "streaming": False, "owner": address, "budget": address, "mailbox": address,
        "route": Route(0), "folders": folders,
        "event_types": frozenset({"CreatedEvent", "ModifiedEvent", "DeletedEvent",
                                  "MovedEvent", "FreeBusyChangedEvent"}),
        "timeout": 5}
    args.update(kwargs)
    return hub.subscribe(**args)  # type: ignore[arg-type]


def _kinds(events: list[tuple[int, Change]]) -> list[tuple[str, bool]]:
    return [(c.kind, c.is_folder) for _, c in events]


# -- what the store records

def test_a_create_is_the_item_created_its_free_busy_and_the_folder_modified() -> None:
    hub, store, _ = _hub()
    sub, mark = _pull(hub)
    item_id = _create(store.mailbox(ALICE))  # type: ignore[arg-type]
    _, events, _, _, more = hub.get_events(sub, mark, ALICE, Route(0))
    assert _kinds(events) == [("Created", False), ("FreeBusyChanged", False),
                              ("Modified", True)]
    assert events[0][1].id == item_id and not more
    # the item's ChangeKey as the create left it (how a client knows its own echo)
    assert events[0][1].change_key == store.mailbox(ALICE).items[item_id].change_key  # type: ignore[union-attr]


def test_a_free_item_changes_no_free_busy() -> None:
    hub, store, _ = _hub()
    sub, mark = _pull(hub)
    _create(store.mailbox(ALICE), status="Free")  # type: ignore[arg-type]
    _, events, _, _, _ = hub.get_events(sub, mark, ALICE, Route(0))
    assert _kinds(events) == [("Created", False), ("Modified", True)]


def test_a_move_names_old_and_new_ids_and_parents() -> None:
    hub, store, _ = _hub()
    mailbox = store.mailbox(ALICE)
    assert mailbox is not None
    item_id = _create(mailbox)
    calendar = mailbox.folders["calendar"]
    sub, mark = _pull(hub, folders=frozenset({calendar.id}))
    moved = mailbox.move(mailbox.resolve(_item(item_id)), mailbox.folders["deleteditems"])
    _, events, _, _, _ = hub.get_events(sub, mark, ALICE, Route(0))
    # The calendar's subscription sees the item leave (it was the old parent).
    move = next(c for _, c in events if c.kind == "Moved")
    assert (move.id, move.old_id) == (moved.id, item_id)
    assert move.parent[0] == mailbox.folders["deleteditems"].id
    assert move.old_parent is not None and move.old_parent[0] == calendar.id
    assert ("FreeBusyChanged", False) in _kinds(events)


def _item(item_id: str) -> object:
    from ews_parser.values import ItemId

    return ItemId(item_id)


def test_a_subscription_sees_only_its_folders_and_event_types() -> None:
    hub, store, _ = _hub()
    mailbox = store.mailbox(ALICE)
    assert mailbox is not None
    inbox = frozenset({mailbox.folders["inbox"].id})
    sub, mark = _pull(hub, folders=inbox)
    only_deletes, mark2 = _pull(hub, event_types=frozenset({"DeletedEvent"}))
    _create(mailbox)
    assert hub.get_events(sub, mark, ALICE, Route(0))[1] == []
    assert hub.get_events(only_deletes, mark2, ALICE, Route(0))[1] == []


# -- watermarks

def test_watermarks_belong_to_one_mailbox() -> None:
    mark = watermark(ALICE, 7)
    assert read_watermark(mark, ALICE) == 7
    assert read_watermark(mark, BOB) is None
    assert read_watermark("not base64!", ALICE) is None


def test_get_events_takes_the_queue_fifty_at_a_time() -> None:
    # The events returned leave the queue: the next call goes on after them, also when
    # it sends the same watermark again (as exchangelib's get_events loop does).
    hub, store, _ = _hub(events_per_notification=2)
    sub, mark = _pull(hub, event_types=frozenset({"CreatedEvent"}))
    for n in range(3):
        _create(store.mailbox(ALICE), f"n{n}")  # type: ignore[arg-type]
    _, first, previous, position, more = hub.get_events(sub, mark, ALICE, Route(0))
    assert len(first) == 2 and more and watermark(ALICE, previous) == mark
    _, second, previous2, _, more = hub.get_events(sub, mark, ALICE, Route(0))
    assert len(second) == 1 and not more and previous2 == position
    assert hub.get_events(sub, mark, ALICE, Route(0))[1] == []


def test_a_watermark_older_than_the_table_keeps_is_lost() -> None:
    hub, store, _ = _hub(event_retention=2)
    sub, old = _pull(hub)
    for _ in range(2):
        _create(store.mailbox(ALICE))  # type: ignore[arg-type]
    with pytest.raises(EwsResponseError, match="ErrorInvalidWatermark"):
        _pull(hub, start=old)
    with pytest.raises(EwsResponseError, match="ErrorInvalidWatermark"):
        hub.get_events(sub, old, ALICE, Route(0))
    # nor is another mailbox's watermark, or one from the future, any good
    for mark in (watermark(BOB, 0), watermark(ALICE, 99)):
        with pytest.raises(EwsResponseError, match="ErrorInvalidWatermark"):
            hub.get_events(sub, mark, ALICE, Route(0))


def test_a_pull_subscription_can_start_from_a_kept_watermark() -> None:
    # How a client resumes after an EWS restart: the table is the store's.
    hub, store, _ = _hub()
    _, mark = _pull(hub)
    item_id = _create(store.mailbox(ALICE))  # type: ignore[arg-type]
    hub.recycle()
    sub, start = _pull(hub, start=mark)
    assert start == mark
    events = hub.get_events(sub, start, ALICE, Route(0))[1]
    assert events[0][1].id == item_id


# -- lifetime, owners, limits

def test_a_pull_subscription_expires_after_its_timeout_without_get_events() -> None:
    hub, _, clock = _hub(minute=1.0)
    sub, mark = _pull(hub, timeout=2)
    clock.now += 1.5
    hub.get_events(sub, mark, ALICE, Route(0))  # starts the timeout over
    clock.now += 1.5
    hub.get_events(sub, mark, ALICE, Route(0))
    clock.now += 2.5
    with pytest.raises(EwsResponseError, match="ErrorSubscriptionNotFound"):
        hub.get_events(sub, mark, ALICE, Route(0))


@pytest.mark.parametrize(("sub_id", "code"), [
    # not an id this server could have made
    ("AAA-", "ErrorInvalidSubscription"),
    # well formed, unknown (expired, unsubscribed, or from before a restart)
    (None, "ErrorSubscriptionNotFound"),
])
def test_unknown_subscription_ids(sub_id: str | None, code: str) -> None:
    hub, _, _ = _hub()
    if sub_id is None:
        sub_id, _ = _pull(hub)
        hub.unsubscribe(sub_id, ALICE, Route(0))
    with pytest.raises(EwsResponseError, match=code):
        hub.unsubscribe(sub_id, ALICE, Route(0))


def test_only_the_owner_may_use_a_subscription() -> None:
    hub, _, _ = _hub()
    sub, mark = _pull(hub)
    with pytest.raises(EwsResponseError, match="ErrorSubscriptionAccessDenied"):
        hub.get_events(sub, mark, BOB, Route(0))
    streaming, _ = _pull(hub, streaming=True)
    with pytest.raises(StreamRefused) as refused:
        hub.connect([streaming], BOB, BOB, Route(0), 1)
    assert refused.value.bad == [(streaming, "ErrorInvalidSubscription")]


def test_ews_max_subscriptions_counts_live_subscriptions_per_budget() -> None:
    hub, _, clock = _hub(max_subscriptions=2, minute=1.0)
    _pull(hub, timeout=1)
    _pull(hub, timeout=5)
    with pytest.raises(EwsResponseError, match="ErrorExceededSubscriptionCount"):
        _pull(hub)
    _pull(hub, address=BOB)  # another budget
    clock.now += 2  # the first one expires
    _pull(hub)


def test_hanging_connection_limit_counts_open_streams_per_budget() -> None:
    hub, _, _ = _hub(hanging_connection_limit=2)
    subs = [_pull(hub, streaming=True)[0] for _ in range(3)]
    first = hub.connect([subs[0]], ALICE, ALICE, Route(0), 1)
    hub.connect([subs[1]], ALICE, ALICE, Route(0), 1)
    with pytest.raises(EwsResponseError, match="ErrorExceededConnectionCount"):
        hub.connect([subs[2]], ALICE, ALICE, Route(0), 1)
    hub.disconnect(first)
    hub.connect([subs[2]], ALICE, ALICE, Route(0), 1)


def test_a_newer_connection_takes_a_subscription_over() -> None:
    hub, _, _ = _hub()
    sub, _ = _pull(hub, streaming=True)
    old = hub.connect([sub], ALICE, ALICE, Route(0), 1)
    hub.connect([sub], ALICE, ALICE, Route(0), 1)
    assert old.ending == "closed" and old.subscriptions == []


def test_a_stream_reads_a_request_s_events_whole() -> None:
    # The store calls the hub under its lock while a request runs: a stream waits for the
    # request to finish, so a create's item and folder events come in one notification.
    hub, store, _ = _hub()
    sub, _ = _pull(hub, streaming=True)
    connection = hub.connect([sub], ALICE, ALICE, Route(0), 1)
    mailbox = store.mailbox(ALICE)
    assert mailbox is not None
    calendar = mailbox.folders["calendar"]
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.append(len(hub.pending(connection)[0][0][1])))
    with store.lock:
        hub.record(ALICE, Change("Created", "i", "k", (calendar.id, "c"), _NOW))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive()
        hub.record(ALICE, Change("Modified", calendar.id, "c", (calendar.id, "c"), _NOW,
                                 is_folder=True))
    reader.join(5)
    assert got == [2]


def test_a_recycle_loses_subscriptions_and_breaks_streams() -> None:
    hub, _, _ = _hub()
    sub, _ = _pull(hub, streaming=True)
    connection = hub.connect([sub], ALICE, ALICE, Route(0), 1)
    hub.recycle()
    assert connection.ending == "lost"
    with pytest.raises(StreamRefused) as refused:
        hub.connect([sub], ALICE, ALICE, Route(0), 1)
    assert refused.value.code == "ErrorSubscriptionNotFound"


def test_undelivered_events_the_table_dropped_are_missed() -> None:
    hub, store, _ = _hub(event_retention=2)
    sub, _ = _pull(hub, streaming=True)
    for _ in range(2):
        _create(store.mailbox(ALICE))  # type: ignore[arg-type]
    with pytest.raises(StreamRefused) as refused:
        hub.connect([sub], ALICE, ALICE, Route(0), 1)
    assert refused.value.code == "ErrorMissedNotificationEvents"


# -- affinity

def test_subscription_ids_name_their_mailbox_server() -> None:
    hub, _, _ = _hub(backends=2)
    sub, _ = _pull(hub, route=Route(1))
    assert well_formed_subscription_id(sub)
    assert backend_name(1).encode() in __import__("base64").b64decode(sub)


def test_a_request_routed_to_another_server_does_not_find_the_subscription() -> None:
    hub, _, _ = _hub(backends=2)
    sub, mark = _pull(hub, route=Route(1))
    with pytest.raises(EwsResponseError, match="ErrorSubscriptionNotFound"):
        hub.get_events(sub, mark, ALICE, Route(0))
    hub.get_events(sub, mark, ALICE, Route(1))


@pytest.mark.parametrize(("headers", "expected"), [
    # nothing said: the acting mailbox's server
    ({}, "acting"),
    # the anchor routes, with or without affinity
    ({"x-anchormailbox": BOB}, "bob"),
    ({"x-anchormailbox": BOB, "x-preferserveraffinity": "true"}, "bob"),
    # the cookie routes only with affinity preferred, as a cookie or as exchangelib's header
    ({"x-backendoverridecookie": f"{backend_name(1)}~1"}, "acting"),
    ({"x-backendoverridecookie": f"{backend_name(1)}~1", "x-preferserveraffinity": "True",
      "x-anchormailbox": ALICE}, 1),
    ({"cookie": f"a=b; X-BackEndOverrideCookie={backend_name(1)}~1",
      "x-preferserveraffinity": "true", "x-anchormailbox": ALICE}, 1),
])
def test_routing(headers: dict[str, str], expected: object) -> None:
    hub, _, _ = _hub(backends=7)
    route = hub.route(headers, ALICE)
    want = {"acting": hub.home(ALICE), "bob": hub.home(BOB)}.get(expected, expected)  # type: ignore[call-overload]
    assert route.backend == want


def test_affinity_asked_for_gets_a_cookie_naming_the_server() -> None:
    hub, _, _ = _hub(backends=3)
    route = hub.route({"x-anchormailbox": BOB, "x-preferserveraffinity": "true"}, ALICE)
    assert route.affinity
    cookie = hub.cookie(route, secure=True)
    assert cookie.startswith(f"X-BackEndOverrideCookie={backend_name(hub.home(BOB))}~")
    assert "secure" in cookie and "HttpOnly" in cookie
    assert not hub.route({"x-anchormailbox": BOB}, ALICE).affinity
