"""A weekly series' occurrences as each side shows them, in one shape: index (1 = the
first, by original start) -> (start, end, summary) in UTC, or None for a deleted
occurrence (a cancelled instance in Google). Exchange's come from the master's
ModifiedOccurrences / DeletedOccurrences (GetItem of each exception) and its pattern;
Google's from events.instances with showDeleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from exchangelib import Account
from exchangelib.items import CalendarItem

#: every series the machine makes: weekly, on the weekday of its first occurrence
COUNT = 4
WEEK = dt.timedelta(days=7)

Occurrence = tuple[str, str, str] | None


def _utc(value: dt.datetime) -> str:
    # through the timestamp: exchangelib's EWSDateTime converts only to its own zones
    return dt.datetime.fromtimestamp(value.timestamp(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _index(first: dt.datetime, original: dt.datetime) -> int:
    return int((original.timestamp() - first.timestamp()) // WEEK.total_seconds()) + 1


def exchange_occurrences(account: Account, master: CalendarItem) -> dict[int, Occurrence]:
    first = master.start
    length = master.end - master.start
    out: dict[int, Occurrence] = {
        i: (_utc(first + (i - 1) * WEEK), _utc(first + (i - 1) * WEEK + length), master.subject)
        for i in range(1, COUNT + 1)
    }
    for deleted in master.deleted_occurrences or []:
        out[_index(first, deleted.start)] = None
    modified = list(master.modified_occurrences or [])
    # fetch answers in the order asked
    for occurrence, exception in zip(modified, account.fetch(ids=modified), strict=True):
        if isinstance(exception, CalendarItem):
            out[_index(first, occurrence.original_start)] = (
                _utc(exception.start),
                _utc(exception.end),
                exception.subject,
            )
    return out


def _instances(service: Any, event: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, instance) of a Google series, cancelled ones included."""
    instances = (
        service.events()
        .instances(calendarId="primary", eventId=event["id"], showDeleted=True)
        .execute()
        .get("items", [])
    )
    first = dt.datetime.fromisoformat(event["start"]["dateTime"])
    for instance in instances:
        original = dt.datetime.fromisoformat(instance["originalStartTime"]["dateTime"])
        yield _index(first, original), instance


def google_occurrences(service: Any, event: dict[str, Any]) -> dict[int, Occurrence]:
    out: dict[int, Occurrence] = {}
    for index, instance in _instances(service, event):
        if instance.get("status") == "cancelled":
            out[index] = None
            continue
        out[index] = (
            _utc(dt.datetime.fromisoformat(instance["start"]["dateTime"])),
            _utc(dt.datetime.fromisoformat(instance["end"]["dateTime"])),
            instance.get("summary", ""),
        )
    return out


def google_instance(service: Any, event: dict[str, Any], index: int) -> dict[str, Any] | None:
    """The index-th instance of a Google series (None once cancelled)."""
    for at, instance in _instances(service, event):
        if at == index:
            return None if instance.get("status") == "cancelled" else instance
    return None
