"""SyncFolderItems through the real exchangelib: the first sync, paging with
MaxChangesReturned and IncludesLastItemInRange, resuming from a SyncState, Ignore.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderitems
"""

from __future__ import annotations

import pytest
from exchangelib import Account, CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.errors import ErrorInvalidSyncStateData
from exchangelib.services import SyncFolderItems

BERLIN = EWSTimeZone("Europe/Berlin")


def _create(account: Account, subject: str, day: int = 1) -> CalendarItem:
    item = CalendarItem(account=account, folder=account.calendar, subject=subject,
                        start=EWSDateTime(2024, 3, day, 10, tzinfo=BERLIN),
                        end=EWSDateTime(2024, 3, day, 11, tzinfo=BERLIN))
    item.save()
    return item


def _page(account: Account, state: str | None, limit: int,
          ignore: list[CalendarItem] | None = None) -> tuple[list[tuple[str, object]], SyncFolderItems]:
    svc = SyncFolderItems(account=account)
    changes = list(svc.call(folder=account.calendar, shape="IdOnly",
                            additional_fields=set(), sync_state=state,
                            ignore=ignore, max_changes_returned=limit, sync_scope=None))
    return changes, svc


def test_first_sync_reports_every_item_as_create(alice: Account) -> None:
    # Without a SyncState, every item in the folder is a Create, with the requested
    # properties (exchangelib asks IdOnly plus AdditionalProperties).
    _create(alice, "one")
    _create(alice, "two", 2)
    changes = list(alice.calendar.sync_items())
    assert sorted((kind, item.subject) for kind, item in changes) == [
        ("create", "one"), ("create", "two")]
    assert alice.calendar.item_sync_state


def test_paging_with_max_changes_returned(alice: Account) -> None:
    # MaxChangesReturned caps a page; IncludesLastItemInRange is false until the last one,
    # and each page's SyncState resumes after it.
    for day in range(1, 6):
        _create(alice, f"item {day}", day)
    first, svc = _page(alice, None, 2)
    assert len(first) == 2 and svc.includes_last_item_in_range is False
    second, svc2 = _page(alice, svc.sync_state, 2)
    assert len(second) == 2 and svc2.includes_last_item_in_range is False
    third, svc3 = _page(alice, svc2.sync_state, 2)
    assert len(third) == 1 and svc3.includes_last_item_in_range is True
    ids = [item.id for _, item in first + second + third]
    assert len(set(ids)) == 5
    # exchangelib's own loop walks every page
    assert len(list(alice.calendar.sync_items(max_changes_returned=2))) == 5


def test_resuming_reports_create_update_delete_since_the_state(alice: Account) -> None:
    # From a SyncState, only what changed after it: new items as Create, changed ones as
    # Update, removed ones (deleted or moved away) as Delete with only their ItemId.
    kept = _create(alice, "kept")
    changed = _create(alice, "changed", 2)
    deleted = _create(alice, "deleted", 3)
    moved = _create(alice, "moved", 4)
    list(alice.calendar.sync_items())
    state = alice.calendar.item_sync_state
    assert list(alice.calendar.sync_items(sync_state=state)) == []

    changed.subject = "changed again"
    changed.save(update_fields=["subject"])
    deleted_id = deleted.id
    deleted.delete()
    moved_id = moved.id
    moved.move_to_trash()
    new = _create(alice, "new", 5)

    changes = list(alice.calendar.sync_items(sync_state=state))
    summary = sorted((kind, getattr(item, "subject", None) or item.id) for kind, item in changes)
    assert summary == sorted([
        ("update", "changed again"), ("delete", deleted_id), ("delete", moved_id),
        ("create", "new")])
    assert kept.id not in {item.id for _, item in changes}
    assert new.id in {item.id for _, item in changes}


def test_ignore_skips_the_clients_own_changes(alice: Account) -> None:
    # Ignore lists ItemIds whose changes the client already knows about (it made them).
    list(alice.calendar.sync_items())
    state = alice.calendar.item_sync_state
    mine = _create(alice, "mine")
    theirs = _create(alice, "theirs", 2)
    changes = list(alice.calendar.sync_items(sync_state=state, ignore=[mine]))
    assert [(kind, item.id) for kind, item in changes] == [("create", theirs.id)]


def test_a_foreign_sync_state_is_invalid(alice: Account) -> None:
    # A SyncState the server did not issue for this folder: ErrorInvalidSyncStateData.
    list(alice.trash.sync_items())
    with pytest.raises(ErrorInvalidSyncStateData):
        list(alice.calendar.sync_items(sync_state=alice.trash.item_sync_state))
