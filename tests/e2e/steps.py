"""The calendar steps every third-party client suite performs, and how their outcome is
read in the Google stand-in: through google-api-python-client, by summary (each step uses
summaries of its own), waiting (bounded) for the mirror to catch up.

The steps, all in Berlin time in March 2026: create; update of subject and time; an
all-day event; a weekly series; a moved occurrence; a deleted occurrence; attendees;
delete.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.clients import calendar_service, google_events, wait_for

ALICE = "alice@example.com"
BERLIN = ZoneInfo("Europe/Berlin")
#: how long a change may take to show in Google: calsync's first mirror of a run starts its
#: worker (~5 s here); later ones take well under a second
TIMEOUT = 20.0

Event = dict[str, Any]


def client_missing(reason: str | None) -> str | None:
    """At the top of a client suite, with why its client can't run (None: it can). Without
    the client the whole module is skipped, with one line; under CI=true it is not, and the
    reason is returned for the client fixture to fail every test with."""
    if reason is not None and not os.environ.get("CI"):
        pytest.skip(reason, allow_module_level=True)
    return reason


def berlin(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A time in March 2026, Berlin."""
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


def moment(value: dict[str, str]) -> dt.datetime | dt.date:
    """A Google start/end: an instant (aware) or, for all-day events, a date."""
    if "dateTime" in value:
        return dt.datetime.fromisoformat(value["dateTime"])
    return dt.date.fromisoformat(value["date"])


def shape(event: Event) -> dict[str, Any]:
    """What the steps check of an event: comparable values, no ids or etags."""
    return {
        "summary": event.get("summary"),
        "start": moment(event["start"]),
        "end": moment(event["end"]),
        "recurrence": sorted(event.get("recurrence", [])),
        "attendees": sorted(a["email"].lower() for a in event.get("attendees", [])),
    }


def expect(
    summary: str,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    *,
    recurrence: list[str] | None = None,
    attendees: list[str] | None = None,
) -> dict[str, Any]:
    """`shape` of the event a step must leave in Google."""
    return {
        "summary": summary,
        "start": start,
        "end": end,
        "recurrence": sorted(recurrence or []),
        "attendees": sorted(attendees or []),
    }


class Google:
    """The user's Google calendar in the stand-in, as the steps read it."""

    def __init__(self, api_endpoint: str, user: str = ALICE) -> None:
        self.api_endpoint = api_endpoint
        self.user = user

    def titled(self, summary: str) -> list[Event]:
        """The user's events with this summary: single events and series masters (a
        series' changed instances, which events.list also returns, are left out)."""
        return [
            e
            for e in google_events(self.api_endpoint, self.user)
            if e.get("summary") == summary and "recurringEventId" not in e
        ]

    def wait(
        self, summary: str, done: Callable[[list[Event]], bool], what: str, timeout: float = TIMEOUT
    ) -> list[Event]:
        """The events titled `summary` once `done` holds for them, or after `timeout`."""
        return wait_for(lambda: self.titled(summary), done, timeout=timeout, what=what)

    def wait_shape(self, want: dict[str, Any], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Wait until exactly one event has shape `want`; the shapes seen, for the assert."""
        events = self.wait(
            want["summary"],
            lambda es: [shape(e) for e in es] == [want],
            f"one event {want['summary']!r} as the client left it",
            timeout,
        )
        return [shape(e) for e in events]

    def wait_gone(self, summary: str, timeout: float = TIMEOUT) -> list[Event]:
        return self.wait(summary, lambda es: not es, f"{summary!r} to be gone", timeout)

    def instances(self, event_id: str) -> list[Event]:
        """The series' instances in March 2026 (cancelled ones are left out, as Google does)."""
        service = calendar_service(self.api_endpoint, self.user)
        page = (
            service.events()
            .instances(
                calendarId="primary",
                eventId=event_id,
                timeMin="2026-03-01T00:00:00Z",
                timeMax="2026-04-01T00:00:00Z",
            )
            .execute()
        )
        return list(page.get("items", []))

    def starts(self, summary: str) -> list[tuple[dt.datetime | dt.date, dt.datetime | dt.date]]:
        """(original start, start) of each instance of the one series titled `summary`."""
        (series,) = self.titled(summary)
        return [
            (moment(i.get("originalStartTime") or i["start"]), moment(i["start"]))
            for i in self.instances(series["id"])
        ]

    def wait_starts(
        self, summary: str, want: list[tuple[dt.datetime, dt.datetime]], timeout: float = TIMEOUT
    ) -> list[tuple[dt.datetime | dt.date, dt.datetime | dt.date]]:
        def read() -> list[tuple[dt.datetime | dt.date, dt.datetime | dt.date]]:
            return self.starts(summary) if len(self.titled(summary)) == 1 else []

        return wait_for(
            read, lambda got: got == want, timeout=timeout, what=f"{summary!r}'s instances"
        )


def weekly(first: dt.datetime, count: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """(original start, start) of an unchanged weekly series' instances."""
    return [(first + dt.timedelta(weeks=n), first + dt.timedelta(weeks=n)) for n in range(count)]
