"""A modified occurrence may not cross or overlap the occurrences beside it: Exchange answers
UpdateItem with ErrorOccurrenceCrossingBoundary ("Modified occurrence is crossing or
overlapping adjacent occurrence"), through the unmodified exchangelib."""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib import Account, EWSDateTime, EWSTimeZone
from exchangelib.errors import ErrorOccurrenceCrossingBoundary
from exchangelib.items import SEND_TO_NONE, CalendarItem
from exchangelib.properties import OccurrenceItemId
from exchangelib.recurrence import DailyPattern, Recurrence

BERLIN = EWSTimeZone("Europe/Berlin")


def daily(account: Account) -> CalendarItem:
    """09:00-10:00 Berlin, every second day from 2 March 2026, five of them."""
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Every other day",
        start=EWSDateTime(2026, 3, 2, 9, tzinfo=BERLIN),
        end=EWSDateTime(2026, 3, 2, 10, tzinfo=BERLIN),
        recurrence=Recurrence(pattern=DailyPattern(interval=2), start=dt.date(2026, 3, 2), number=5),
    )
    item.save(send_meeting_invitations=SEND_TO_NONE)
    return item


def occurrence(account: Account, master: CalendarItem, index: int) -> CalendarItem:
    (found,) = account.fetch(ids=[OccurrenceItemId(id=master.id, instance_index=index)])
    assert isinstance(found, CalendarItem), found
    return found


def move(item: CalendarItem, day: int, hour: int, hours: int = 1) -> None:
    item.start = EWSDateTime(2026, 3, day, hour, tzinfo=BERLIN)
    item.end = item.start + dt.timedelta(hours=hours)
    item.save(update_fields=["start", "end"], send_meeting_invitations=SEND_TO_NONE)


@pytest.mark.parametrize(
    ("day", "hour", "hours"),
    [
        (6, 9, 1),  # onto the next occurrence (the 3rd is on 6 March, 09:00)
        (7, 9, 1),  # past it
        (6, 8, 2),  # ending inside it
        (2, 9, 1),  # onto the one before (2 March)
        (1, 9, 1),  # past it
        (2, 8, 2),  # overlapping the one before
    ],
)
def test_crossing_or_overlapping_a_neighbour_is_refused(
    alice: Account, day: int, hour: int, hours: int
) -> None:
    master = daily(alice)
    second = occurrence(alice, master, 2)  # 4 March
    with pytest.raises(ErrorOccurrenceCrossingBoundary):
        move(second, day, hour, hours)
    kept = occurrence(alice, master, 2)
    assert (kept.type, kept.start) == ("Occurrence", dt.datetime(2026, 3, 4, 8, tzinfo=dt.UTC))


def test_moving_between_neighbours_is_allowed(alice: Account) -> None:
    master = daily(alice)
    second = occurrence(alice, master, 2)
    move(second, 5, 7, 2)  # 5 March 07:00-09:00
    move(occurrence(alice, master, 2), 2, 10)  # right after the first ends: touching
    move(occurrence(alice, master, 2), 6, 8)  # ending as the third starts
    assert occurrence(alice, master, 2).start == dt.datetime(2026, 3, 6, 7, tzinfo=dt.UTC)


def test_a_deleted_neighbour_leaves_room_and_a_moved_one_is_where_it_now_is(
    alice: Account,
) -> None:
    master = daily(alice)
    occurrence(alice, master, 3).delete(send_meeting_cancellations=SEND_TO_NONE)
    move(occurrence(alice, master, 2), 7, 9)  # into the deleted third's day: allowed
    move(occurrence(alice, master, 4), 9, 9)  # the fourth (8 March) moves a day later
    with pytest.raises(ErrorOccurrenceCrossingBoundary):
        move(occurrence(alice, master, 5), 9, 9)  # the fifth (10 March) onto the fourth
    move(occurrence(alice, master, 2), 8, 9)  # where the fourth was: now free
