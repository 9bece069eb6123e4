"""The backend contract for a series' occurrences (ExchangeBackend.occurrence,
delete_occurrence, and update / calendar_item / delete given an occurrence's own ItemId),
asked of the in-memory Exchange and of exchangelib on the EWS stand-in alike (conftest.py
runs each test once per kind)."""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib import EWSDateTime, EWSTimeZone
from exchangelib.recurrence import Recurrence, WeeklyPattern

from sync.backends.base import ExchangeBackend, ExchangeConflict

BERLIN = EWSTimeZone("Europe/Berlin")
#: Mondays 09:00 Berlin from 2 March 2026, six of them (CET, then CEST from 30 March)
ORIGINAL_STARTS = [
    dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 9, 8, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 16, 8, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 23, 8, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 30, 7, tzinfo=dt.UTC),
    dt.datetime(2026, 4, 6, 7, tzinfo=dt.UTC),
]


def weekly(backend: ExchangeBackend, subject: str = "Standup") -> str:
    item_id, _ = backend.create(
        {
            "subject": subject,
            "start": EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
            "end": EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
            "_start_timezone": BERLIN,
            "_end_timezone": BERLIN,
            "recurrence": Recurrence(
                pattern=WeeklyPattern(interval=1, weekdays=[1]), start=dt.date(2026, 3, 2), number=6
            ),
        }
    )
    return item_id


def test_an_occurrence_has_its_own_id_and_original_start(exchange_backend: ExchangeBackend) -> None:
    master_id = weekly(exchange_backend)
    master = exchange_backend.calendar_item(master_id)
    assert master is not None and master.type == "RecurringMaster"
    assert not master.modified_occurrences and not master.deleted_occurrences
    for index in (1, 4, 6):
        occurrence = exchange_backend.occurrence(master_id, index)
        assert occurrence is not None and occurrence.type == "Occurrence"
        assert occurrence.id and occurrence.id != master_id and occurrence.changekey
        assert occurrence.original_start == ORIGINAL_STARTS[index - 1]
        assert occurrence.start == ORIGINAL_STARTS[index - 1]
        assert occurrence.end - occurrence.start == dt.timedelta(hours=1)
        assert occurrence.subject == "Standup" and occurrence.recurrence is None
        # GetItem on its own ItemId reads the same occurrence; its master is found from it
        again = exchange_backend.calendar_item(occurrence.id)
        assert again is not None and (again.id, again.type) == (occurrence.id, "Occurrence")
        assert exchange_backend.master_item_id(occurrence) == master_id
    assert exchange_backend.occurrence(master_id, 7) is None  # past the series' end
    gone, _ = exchange_backend.create(
        {"subject": "x", "start": EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
         "end": EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN)}
    )
    exchange_backend.delete(gone)
    assert exchange_backend.occurrence(gone, 1) is None  # no master


def test_an_updated_occurrence_becomes_an_exception_of_its_master(
    exchange_backend: ExchangeBackend,
) -> None:
    master_id = weekly(exchange_backend)
    _, state = exchange_backend.changes(None)
    before = exchange_backend.calendar_item(master_id)
    occurrence = exchange_backend.occurrence(master_id, 2)
    stale = exchange_backend.occurrence(master_id, 2)
    assert before is not None and occurrence is not None and stale is not None
    moved = EWSDateTime(2026, 3, 10, 14, tzinfo=BERLIN)
    written = exchange_backend.update(
        occurrence,
        {"subject": "Standup (moved)", "start": moved, "end": moved + dt.timedelta(hours=1)},
    )
    assert written is not None and written[0] == occurrence.id
    exception = exchange_backend.occurrence(master_id, 2)
    assert exception is not None and exception.type == "Exception"
    assert (exception.id, exception.changekey) == written
    assert exception.subject == "Standup (moved)"
    assert exception.start == dt.datetime(2026, 3, 10, 13, tzinfo=dt.UTC)
    assert exception.original_start == ORIGINAL_STARTS[1]
    # the master lists it, has a new ChangeKey, and the feed reports the master
    master = exchange_backend.calendar_item(master_id)
    assert master is not None and master.changekey != before.changekey
    assert [(o.id, o.original_start) for o in master.modified_occurrences or []] == [
        (exception.id, ORIGINAL_STARTS[1])
    ]
    assert master.subject == "Standup" and master.start == ORIGINAL_STARTS[0]
    changes, _ = exchange_backend.changes(state)
    assert [(c.kind, c.item_id) for c in changes] == [("update", master_id)]
    # the other occurrences are untouched
    third = exchange_backend.occurrence(master_id, 3)
    assert third is not None and (third.type, third.subject) == ("Occurrence", "Standup")
    # an exception is written by its own ChangeKey
    with pytest.raises(ExchangeConflict):
        exchange_backend.update(stale, {"subject": "Stale"})
    assert exchange_backend.update(exception, {"location": "Room 2"}) is not None


def test_a_deleted_occurrence_becomes_a_deleted_occurrence_of_its_master(
    exchange_backend: ExchangeBackend,
) -> None:
    master_id = weekly(exchange_backend)
    _, state = exchange_backend.changes(None)
    third = exchange_backend.occurrence(master_id, 3)
    fifth = exchange_backend.occurrence(master_id, 5)
    assert third is not None and fifth is not None
    exchange_backend.delete_occurrence(third)
    exchange_backend.delete_occurrence(third)  # already deleted: no error
    assert exchange_backend.occurrence(master_id, 3) is None
    assert exchange_backend.calendar_item(str(third.id)) is None
    # DeleteItem on an occurrence's own ItemId deletes that occurrence only
    exchange_backend.delete(str(fifth.id))
    master = exchange_backend.calendar_item(master_id)
    assert master is not None and master.subject == "Standup"
    assert [d.start for d in master.deleted_occurrences or []] == [
        ORIGINAL_STARTS[2],
        ORIGINAL_STARTS[4],
    ]
    assert exchange_backend.missing([master_id, str(third.id)]) == {str(third.id)}
    changes, _ = exchange_backend.changes(state)
    assert [(c.kind, c.item_id) for c in changes] == [("update", master_id)]
    # the next occurrence keeps its index
    fourth = exchange_backend.occurrence(master_id, 4)
    assert fourth is not None and fourth.original_start == ORIGINAL_STARTS[3]


def test_deleting_an_occurrence_is_conditioned_on_its_change_key(
    exchange_backend: ExchangeBackend,
) -> None:
    master_id = weekly(exchange_backend)
    stale = exchange_backend.occurrence(master_id, 2)
    fresh = exchange_backend.occurrence(master_id, 2)
    assert stale is not None and fresh is not None
    exchange_backend.update(fresh, {"subject": "Edited meanwhile"})
    with pytest.raises(ExchangeConflict):
        exchange_backend.delete_occurrence(stale)
    kept = exchange_backend.occurrence(master_id, 2)
    assert kept is not None and kept.subject == "Edited meanwhile"


def test_a_new_series_time_discards_its_exceptions(exchange_backend: ExchangeBackend) -> None:
    master_id = weekly(exchange_backend)
    second = exchange_backend.occurrence(master_id, 2)
    assert second is not None
    exchange_backend.update(second, {"subject": "Moved"})
    third = exchange_backend.occurrence(master_id, 3)  # read after: a write to the series
    assert third is not None  # may change an unmodified occurrence's ChangeKey
    exchange_backend.delete_occurrence(third)
    master = exchange_backend.calendar_item(master_id)
    assert master is not None and master.modified_occurrences and master.deleted_occurrences
    exchange_backend.update(
        master,
        {
            "start": EWSDateTime(2026, 3, 2, 11, tzinfo=BERLIN),
            "end": EWSDateTime(2026, 3, 2, 12, tzinfo=BERLIN),
        },
    )
    again = exchange_backend.calendar_item(master_id)
    assert again is not None
    assert not again.modified_occurrences and not again.deleted_occurrences
    regenerated = exchange_backend.occurrence(master_id, 3)
    assert regenerated is not None and regenerated.type == "Occurrence"
    assert regenerated.start == dt.datetime(2026, 3, 16, 10, tzinfo=dt.UTC)
