"""The full-fidelity mapping of one calendar item: the core fields of `mapping.event`,
plus attendees and organizer (`mapping.people`), the online meeting (`mapping.online`)
and the zone of a legacy MeetingTimeZone with its own rules (`mapping.zones`).

`to_google_full` / `to_ews_full` are the pair; `FULL_MANAGED_FIELDS` the Google keys they
decide. The core `to_google` / `to_ews` stay as they were (no attendees) for callers that
must not carry people. Whatever the writers send, they send with `sendUpdates=none` /
SendToNone (see mapping.people): nothing here may cause an invitation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from dateutil.rrule import rrulestr
from ews_parser.values import LegacyTimeZone
from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.recurrence import EndDatePattern, NoEndPattern, NumberedPattern

from mapping.event import MANAGED_FIELDS, GoogleEvent, google_event, to_ews
from mapping.online import conference_data, conference_url, find_meeting_url
from mapping.people import (
    attendees_to_ews,
    attendees_to_google,
    organizer_to_ews,
    organizer_to_google,
)
from mapping.recurrence import to_rrule
from mapping.zones import NO_END_YEARS, item_zone, legacy_zone, utc, zone_for

#: Top-level Google keys the full mapping writes (MANAGED_FIELDS and the people and the
#: online meeting). `organizer` is written by Google only on import: kept for the record.
FULL_MANAGED_FIELDS: Final[tuple[str, ...]] = (
    *MANAGED_FIELDS,
    "attendees",
    "organizer",
    "conferenceData",
)


@dataclass(frozen=True, slots=True)
class Mapped:
    """A Google event and what the mapping could not keep exactly (for the log)."""

    event: GoogleEvent
    warnings: tuple[str, ...] = ()


# --- EWS -> Google -------------------------------------------------------------------------


def to_google_full(
    item: CalendarItem,
    *,
    legacy_time_zone: LegacyTimeZone | None = None,
    default_zone: str | None = None,
) -> Mapped:
    """The Google event for an EWS calendar item with people and online meeting.

    `legacy_time_zone` is `ParsedItem.legacy_time_zone` (Exchange 2007's MeetingTimeZone):
    when the item names no other zone, the series is expanded in the IANA zone whose
    offsets equal its rules over the series' years; with none, the instants are kept (in
    the zone the item was read in, else UTC) and a warning says so."""
    start_zone, end_zone, warnings = _zones(item, legacy_time_zone, default_zone)
    event = google_event(item, start_zone, end_zone)
    attendees = attendees_to_google(
        item.required_attendees, item.optional_attendees, item.resources, item.organizer
    )
    if attendees:
        event["attendees"] = attendees
    organizer = organizer_to_google(item.organizer)
    if organizer:
        event["organizer"] = organizer
    url = (
        (str(item.net_show_url) if item.net_show_url else None)
        or find_meeting_url(item.location)
        or find_meeting_url(event.get("description"))
    )
    if url:
        event["conferenceData"] = conference_data(url)
        if event.get("location") == url:
            del event["location"]  # it is the join URL, already in conferenceData
    return Mapped(event, tuple(warnings))


def _zones(
    item: CalendarItem, legacy: LegacyTimeZone | None, default_zone: str | None
) -> tuple[EWSTimeZone, EWSTimeZone, list[str]]:
    start_zone = item_zone(item._start_timezone, default_zone)
    end_zone = item_zone(item._end_timezone, None) if item._end_timezone else start_zone
    if legacy is None:
        return start_zone, end_zone, []
    named = zone_for(legacy.name) if legacy.name else None
    declared = item._start_timezone
    if declared is not None and (named is None or getattr(declared, "key", None) != named.key):
        # an explicit StartTimeZone wins over the MeetingTimeZone (as ews_parser reads it)
        return start_zone, end_zone, []
    first, last = series_years(item, start_zone)
    match = legacy_zone(legacy, first, last)
    if match.zone is None:
        if named is not None:
            return named, named, list(match.warnings)
        fallback = item_zone(None, default_zone) if default_zone else utc()
        return fallback, fallback, list(match.warnings)
    same_end = item._end_timezone is None or item._end_timezone == declared
    return match.zone, match.zone if same_end else end_zone, list(match.warnings)


def series_years(item: CalendarItem, zone: dt.tzinfo) -> tuple[int, int]:
    """The first and last year an item's occurrences fall in (a series with no end:
    NO_END_YEARS of them)."""
    start = item.start
    if start is None:
        return 1970, 1970
    first = start.year
    recurrence = item.recurrence
    if recurrence is None:
        return first, first
    boundary = recurrence.boundary
    if isinstance(boundary, EndDatePattern):
        return first, max(first, boundary.end.year)
    if isinstance(boundary, NoEndPattern) or not isinstance(boundary, NumberedPattern):
        return first, first + NO_END_YEARS - 1
    all_day = not isinstance(start, dt.datetime)
    dtstart = (
        dt.datetime(start.year, start.month, start.day)
        if all_day
        else dt.datetime.fromtimestamp(start.timestamp(), tz=zone)
    )
    line = to_rrule(recurrence, all_day=all_day, zone=zone).partition(":")[2]
    last = list(rrulestr(line, dtstart=dtstart))[-1]
    return first, max(first, last.year)


# --- Google -> EWS -------------------------------------------------------------------------


def to_ews_full(event: GoogleEvent) -> dict[str, Any]:
    """exchangelib CalendarItem keyword arguments for a Google event, with people and the
    online meeting (the inverse of `to_google_full` on the supported fields)."""
    kwargs = to_ews(event)
    kwargs.update(attendees_to_ews(event.get("attendees")))
    kwargs["organizer"] = organizer_to_ews(event.get("organizer"))
    url = conference_url(event)
    kwargs["net_show_url"] = url
    if url and not kwargs["location"]:
        kwargs["location"] = url
    return kwargs
