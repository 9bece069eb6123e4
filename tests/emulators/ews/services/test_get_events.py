"""GetEvents (pull notifications) through the real exchangelib (subscribe_to_pull,
get_events): watermarks, MoreEvents, StatusEvent, a lost watermark, expiry, and resuming
from a stored watermark after the stand-in's EWS restarts.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getevents-operation
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from exchangelib import Account
from exchangelib.errors import (
    ErrorInvalidPullSubscriptionId,
    ErrorInvalidWatermark,
    ErrorSubscriptionAccessDenied,
    ErrorSubscriptionNotFound,
)
from exchangelib.properties import (
    CreatedEvent,
    DeletedEvent,
    FreeBusyChangedEvent,
    ModifiedEvent,
    MovedEvent,
    Notification,
    StatusEvent,
)

from emulators.ews import EwsServer
from tests.emulators.ews.conftest import M, admin, messages_of, raw_post, soap
from tests.emulators.ews.services.notifying import (
    MINUTE,
    account,
    create,
    running,
    subscribe_xml,
)


@pytest.fixture
def server() -> Iterator[EwsServer]:
    with running() as srv:  # short minutes and heartbeats
        yield srv


@pytest.fixture
def alice(server: EwsServer) -> Account:
    return account(server, "alice@example.com")


def _pull(acct: Account, sub_id: str, mark: str) -> tuple[list[Notification], str]:
    notes = list(acct.calendar.get_events(sub_id, mark))
    last = [e.watermark for n in notes for e in n.events]
    return notes, last[-1]


def _events(notes: list[Notification]) -> list[object]:
    return [e for n in notes for e in n.events]


def test_nothing_new_is_a_status_event(alice: Account) -> None:
    sub_id, mark = alice.calendar.subscribe_to_pull()
    notes, _ = _pull(alice, sub_id, mark)
    assert len(notes) == 1 and notes[0].previous_watermark == mark
    assert notes[0].more_events is False
    assert [type(e) for e in notes[0].events] == [StatusEvent]


def test_create_update_move_delete_as_events(alice: Account) -> None:
    sub_id, mark = alice.calendar.subscribe_to_pull()
    item = create(alice)
    notes, mark = _pull(alice, sub_id, mark)
    events = _events(notes)
    assert [type(e) for e in events] == [CreatedEvent, FreeBusyChangedEvent, ModifiedEvent]
    created = events[0]
    assert (created.item_id.id, created.item_id.changekey) == (item.id, item.changekey)  # type: ignore[attr-defined]
    assert created.parent_folder_id.id == alice.calendar.id  # type: ignore[attr-defined]
    assert created.timestamp is not None  # type: ignore[attr-defined]
    assert events[2].folder_id.id == alice.calendar.id  # type: ignore[attr-defined]
    assert len({e.watermark for e in events}) == 3  # type: ignore[attr-defined]

    item.subject = "Dinner"
    item.save(update_fields=["subject"])
    notes, mark = _pull(alice, sub_id, mark)
    # a new subject takes no new time: no FreeBusyChangedEvent
    assert [(type(e), e.item_id.changekey) for e in _events(notes)] == [  # type: ignore[attr-defined]
        (ModifiedEvent, item.changekey)]

    old_id = item.id
    item.move_to_trash()
    notes, mark = _pull(alice, sub_id, mark)
    moved = [e for e in _events(notes) if isinstance(e, MovedEvent)]
    # a new ItemId in Deleted Items (exchangelib forgets the item's id after the move)
    assert moved[0].old_item_id.id == old_id and moved[0].item_id.id != old_id
    assert moved[0].old_parent_folder_id.id == alice.calendar.id
    assert moved[0].parent_folder_id.id == alice.trash.id

    gone = create(alice, "Gone")
    _pull(alice, sub_id, mark)
    notes, mark = _pull(alice, sub_id, mark)
    gone_id = gone.id
    gone.delete()
    notes, mark = _pull(alice, sub_id, mark)
    assert [e.item_id.id for e in _events(notes) if isinstance(e, DeletedEvent)] == [gone_id]


def test_more_than_fifty_events_come_with_more_events(alice: Account) -> None:
    # Each create is three events; exchangelib's get_events asks again while MoreEvents.
    sub_id, mark = alice.calendar.subscribe_to_pull()
    for day in range(1, 21):
        create(alice, f"n{day}", day)
    # (at most 5: a server that gave the same events again would keep exchangelib going)
    notes = list(itertools.islice(alice.calendar.get_events(sub_id, mark), 5))
    assert [len(n.events) for n in notes] == [50, 10]
    assert [n.more_events for n in notes] == [True, False]
    assert notes[1].previous_watermark == notes[0].events[-1].watermark


def test_a_watermark_the_mailbox_no_longer_keeps_is_lost() -> None:
    # The mailbox's event table keeps 5 events here: after two creates (6 events) the
    # subscription's own place in it is gone too, and it has to start over.
    with running(event_retention=5) as srv:
        alice = account(srv, "alice@example.com")
        sub_id, first = alice.calendar.subscribe_to_pull()
        create(alice)
        create(alice, "again", 5)
        with pytest.raises(ErrorInvalidWatermark):
            list(alice.calendar.get_events(sub_id, first))
        # a watermark of nothing this server handed out
        with pytest.raises(ErrorInvalidWatermark):
            list(alice.calendar.get_events(alice.calendar.subscribe_to_pull()[0],
                                           "AAAAAGUhAAAAAAAAAQ=="))


def test_a_pull_subscription_expires_after_its_timeout(alice: Account) -> None:
    # Timeout 1 lasts MINUTE seconds here; each GetEvents starts it over.
    sub_id, mark = alice.calendar.subscribe_to_pull(timeout=1)
    time.sleep(MINUTE * 0.6)
    _pull(alice, sub_id, mark)
    time.sleep(MINUTE * 0.6)
    _pull(alice, sub_id, mark)
    time.sleep(MINUTE * 1.3)
    with pytest.raises(ErrorSubscriptionNotFound):
        list(alice.calendar.get_events(sub_id, mark))


def test_only_the_owner_and_only_pull(server: EwsServer, alice: Account) -> None:
    sub_id, mark = alice.calendar.subscribe_to_pull()
    with pytest.raises(ErrorSubscriptionAccessDenied):
        list(account(server, "bob@example.com").calendar.get_events(sub_id, mark))
    with pytest.raises(ErrorInvalidPullSubscriptionId):
        list(alice.calendar.get_events(alice.calendar.subscribe_to_streaming(), mark))


def test_after_a_restart_resubscribe_from_the_stored_watermark(
    server: EwsServer, alice: Account
) -> None:
    # The subscription is lost with the EWS process, the mailbox's event table is not: a
    # new subscription from the last watermark sees what happened in between.
    sub_id, mark = alice.calendar.subscribe_to_pull()
    assert admin(server.base_url, "POST", "/_admin/recycle")[0] == 200
    with pytest.raises(ErrorSubscriptionNotFound):
        list(alice.calendar.get_events(sub_id, mark))
    item = create(alice, "While down")
    # exchangelib writes the Watermark as m:Watermark, which Exchange 2016's schema
    # refuses inside PullSubscriptionRequest (test_subscribe.py): raw, as the schema has it
    body = raw_post(server.url, subscribe_xml(
        "Pull", events=("CreatedEvent",),
        extra=f"<t:Watermark>{mark}</t:Watermark><t:Timeout>10</t:Timeout>"))[2]
    (message,) = messages_of(body)
    new_id = message.findtext(f"{{{M}}}SubscriptionId") or ""
    assert message.findtext(f"{{{M}}}Watermark") == mark
    notes = list(alice.calendar.get_events(new_id, mark))
    assert [e.item_id.id for e in _events(notes)] == [item.id]  # type: ignore[attr-defined]


def test_raw_answer_shape(server: EwsServer) -> None:
    # PreviousWatermark, MoreEvents, then events with Watermark first (the order the EWS
    # Managed API reads).
    body = raw_post(server.url, subscribe_xml("Pull", extra="<t:Timeout>5</t:Timeout>"))[2]
    (message,) = messages_of(body)
    sub_id = message.findtext(f"{{{M}}}SubscriptionId")
    mark = message.findtext(f"{{{M}}}Watermark")
    create(account(server, "alice@example.com"))
    answer = raw_post(server.url, soap(
        f"<m:GetEvents><m:SubscriptionId>{sub_id}</m:SubscriptionId>"
        f"<m:Watermark>{mark}</m:Watermark></m:GetEvents>"))[2]
    (message,) = messages_of(answer)
    note = message.find(f"{{{M}}}Notification")
    assert note is not None
    names = [child.tag.rpartition("}")[2] for child in note]
    assert names == ["SubscriptionId", "PreviousWatermark", "MoreEvents", "CreatedEvent",
                     "ModifiedEvent"]
    assert [c.tag.rpartition("}")[2] for c in note[3]] == [
        "Watermark", "TimeStamp", "ItemId", "ParentFolderId"]
