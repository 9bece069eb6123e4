"""Calendar items made by the mail client, and what their Google events must say."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exchangelib import Account, CalendarItem, EWSDateTime
from exchangelib.items import SEND_TO_NONE

from mapping.event import event_id_for
from tests.e2e.clients import ZONE, google_events, outbox_counts, wait_for


def at(day: int, hour: int, minute: int = 0) -> EWSDateTime:
    """A time in March 2026, Berlin."""
    return EWSDateTime(2026, 3, day, hour, minute, tzinfo=ZONE)


def create(
    account: Account,
    subject: str,
    start: EWSDateTime,
    minutes: int,
    send: str = SEND_TO_NONE,
    **fields: Any,
) -> Any:
    """A calendar item saved by the client (CreateItem into the calendar folder's id)."""
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=start,
        end=start + dt.timedelta(minutes=minutes),
        **fields,
    )
    item.save(send_meeting_invitations=send)
    return item


def expected_event(item: Any) -> dict[str, Any]:
    """What the Google event of `item` must say, in the terms `seen` reads."""
    return {
        "id": event_id_for(item.id),
        "summary": item.subject,
        "start": item.start,
        "end": item.end,
        "location": item.location,
    }


def seen(event: dict[str, Any]) -> dict[str, Any]:
    """A Google event in the terms `expected_event` writes (times compared as instants)."""
    return {
        "id": event["id"],
        "summary": event.get("summary"),
        "start": dt.datetime.fromisoformat(event["start"]["dateTime"]),
        "end": dt.datetime.fromisoformat(event["end"]["dateTime"]),
        "location": event.get("location"),
    }


def converge(
    api_endpoint: str, user: str, store: Path, items: Iterable[Any], *, timeout: float = 20
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, int]]:
    """Wait (bounded) until the user's Google calendar holds exactly `items` and the
    outbox is empty; returns (expected, seen, outbox) for the caller to assert on."""
    expected = {e["id"]: e for e in map(expected_event, items)}

    def read() -> tuple[list[dict[str, Any]], dict[str, int]]:
        return google_events(api_endpoint, user), outbox_counts(store)

    events, outbox = wait_for(
        read,
        lambda got: {e["id"]: seen(e) for e in got[0]} == expected and not got[1],
        timeout=timeout,
        what=f"{user}'s Google calendar to hold {len(expected)} events, outbox empty",
    )
    # Compared as a list of ids too: two events for one item would collapse in a dict.
    assert sorted(e["id"] for e in events) == sorted(expected)
    return expected, {e["id"]: seen(e) for e in events}, outbox
