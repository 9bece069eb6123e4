"""Single calendar items through the real exchangelib: create, get, update, delete, move.

Each test names the documented Exchange behaviour it holds the stand-in to.
"""

from __future__ import annotations

import pytest
from exchangelib import Account, CalendarItem, EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.errors import ErrorIrresolvableConflict, ErrorItemNotFound

UTC = EWSTimeZone("UTC")
BERLIN = EWSTimeZone("Europe/Berlin")
NEW_YORK = EWSTimeZone("America/New_York")


def _create(account: Account, **fields: object) -> CalendarItem:
    fields.setdefault("subject", "Planning")
    fields.setdefault("start", EWSDateTime(2024, 3, 1, 10, 0, tzinfo=BERLIN))
    fields.setdefault("end", EWSDateTime(2024, 3, 1, 11, 0, tzinfo=BERLIN))
    item = CalendarItem(account=account, folder=account.calendar, **fields)
    item.save()
    return item


def test_account_calendar_is_a_distinguished_folder_with_a_long_base64_id(alice: Account) -> None:
    # GetFolder on DistinguishedFolderId "calendar" returns a CalendarFolder whose FolderId
    # is an opaque base64 string, stable for the mailbox (ews-identifiers-in-exchange).
    calendar = alice.calendar
    assert calendar.folder_class == "IPF.Appointment"
    assert len(calendar.id) >= 150
    assert alice.calendar.id == calendar.id
    assert alice.trash.name == "Deleted Items"
    assert alice.trash.id != calendar.id


def test_create_returns_id_and_change_key_and_get_reads_it_back(alice: Account) -> None:
    # CreateItem answers with the new ItemId and ChangeKey; GetItem returns the item with
    # Start/End in UTC and the StartTimeZone it was created with.
    item = _create(alice, location="Room 1", body="agenda")
    assert item.id and len(item.id) >= 150
    assert item.changekey
    got = alice.calendar.get(id=item.id)
    assert got.subject == "Planning"
    assert got.location == "Room 1"
    assert got.start == EWSDateTime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert got.end == EWSDateTime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert got._start_timezone == BERLIN
    assert got.type == "Single"
    assert got.changekey == item.changekey
    assert got.uid  # Exchange assigns a UID when the client sends none


def test_server_stamps_are_whole_seconds_exchangelib_can_read(alice: Account) -> None:
    # Exchange stamps DateTimeCreated/LastModifiedTime in whole seconds; exchangelib reads
    # a stamp with a fraction as None (and warns in the proxy's log).
    got = alice.calendar.get(id=_create(alice).id)
    assert got.datetime_created is not None
    assert got.last_modified_time is not None
    assert got.last_modified_time.microsecond == 0


def test_time_zoned_item_keeps_its_instant_and_zone(alice: Account) -> None:
    # Start and End are instants; StartTimeZone/EndTimeZone say how the user sees them.
    item = _create(alice, start=EWSDateTime(2024, 7, 4, 9, 30, tzinfo=NEW_YORK),
                   end=EWSDateTime(2024, 7, 4, 17, 0, tzinfo=BERLIN))
    got = alice.calendar.get(id=item.id)
    assert got.start == EWSDateTime(2024, 7, 4, 13, 30, tzinfo=UTC)
    assert got.end == EWSDateTime(2024, 7, 4, 15, 0, tzinfo=UTC)
    assert got._start_timezone == NEW_YORK
    assert got._end_timezone == BERLIN


def test_all_day_item_round_trips_as_dates(alice: Account) -> None:
    # An all-day item runs midnight to midnight in its zone; exchangelib shows it as dates
    # with an inclusive end (how-to-create-all-day-events-by-using-ews-in-exchange).
    alice.default_timezone = BERLIN
    item = _create(alice, is_all_day=True, start=EWSDate(2024, 12, 24), end=EWSDate(2024, 12, 26))
    got = alice.calendar.get(id=item.id)
    assert got.is_all_day
    assert got.start == EWSDate(2024, 12, 24)
    assert got.end == EWSDate(2024, 12, 26)
    assert got.duration == "P3D"


def test_update_changes_fields_and_the_change_key(alice: Account) -> None:
    # UpdateItem applies only the fields sent, and every write gives a new ChangeKey.
    item = _create(alice, location="Room 1")
    before = item.changekey
    item.subject = "Moved"
    item.start = EWSDateTime(2024, 3, 1, 14, 0, tzinfo=BERLIN)
    item.end = EWSDateTime(2024, 3, 1, 15, 0, tzinfo=BERLIN)
    item.save(update_fields=["subject", "start", "end"])
    assert item.changekey != before
    got = alice.calendar.get(id=item.id)
    assert (got.subject, got.location) == ("Moved", "Room 1")
    assert got.start == EWSDateTime(2024, 3, 1, 13, 0, tzinfo=UTC)
    assert got.changekey == item.changekey


def test_update_can_clear_a_field(alice: Account) -> None:
    # Saving a field set to None sends DeleteItemField, which removes the value.
    item = _create(alice, location="Room 1")
    item.location = None
    item.save(update_fields=["location"])
    assert alice.calendar.get(id=item.id).location is None


def test_stale_change_key_with_never_overwrite_is_an_irresolvable_conflict(alice: Account) -> None:
    # UpdateItem with ConflictResolution NeverOverwrite and an old ChangeKey fails with
    # ErrorIrresolvableConflict; AutoResolve applies the change.
    item = _create(alice)
    stale = alice.calendar.get(id=item.id)
    item.subject = "first writer"
    item.save(update_fields=["subject"])
    stale.subject = "second writer"
    with pytest.raises(ErrorIrresolvableConflict):
        stale.save(update_fields=["subject"], conflict_resolution="NeverOverwrite")
    assert alice.calendar.get(id=item.id).subject == "first writer"
    stale.save(update_fields=["subject"], conflict_resolution="AutoResolve")
    assert alice.calendar.get(id=item.id).subject == "second writer"


def test_unknown_id_is_item_not_found(alice: Account) -> None:
    # GetItem / DeleteItem on an id the store does not hold: ErrorItemNotFound.
    item = _create(alice)
    item_id = item.id
    item.delete()
    with pytest.raises(ErrorItemNotFound):
        alice.calendar.get(id=_create(alice).id[:-8] + "AAAAAAA=")
    gone = alice.fetch(ids=[(item_id, None)])
    assert isinstance(next(iter(gone)), ErrorItemNotFound)


def test_delete_removes_the_item(alice: Account) -> None:
    # DeleteItem HardDelete: the item is gone from the calendar and from Deleted Items.
    item = _create(alice)
    item_id = item.id
    item.delete()
    assert list(alice.calendar.all()) == []
    assert list(alice.trash.all()) == []
    with pytest.raises(ErrorItemNotFound):
        alice.calendar.get(id=item_id)


def test_move_to_trash_puts_it_in_deleted_items(alice: Account) -> None:
    # DeleteItem MoveToDeletedItems moves the item into Deleted Items, where it has a
    # new ItemId (a move changes the id).
    item = _create(alice, subject="Old")
    old_id = item.id
    item.move_to_trash()
    assert list(alice.calendar.all()) == []
    trashed = list(alice.trash.all())
    assert [i.subject for i in trashed] == ["Old"]
    assert trashed[0].id != old_id


def test_move_to_a_folder_returns_the_new_id(alice: Account) -> None:
    # MoveItem answers with the item's new ItemId in the target folder.
    item = _create(alice, subject="Moving")
    old_id = item.id
    item.move(alice.trash)
    assert item.id != old_id
    assert alice.trash.get(id=item.id).subject == "Moving"
    with pytest.raises(ErrorItemNotFound):
        alice.calendar.get(id=old_id)
    item.move(alice.calendar)
    assert alice.calendar.get(id=item.id).subject == "Moving"
