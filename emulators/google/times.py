"""RFC 3339 timestamps and `EventDateTime` values as the Calendar API reads and writes them.

Reference: https://developers.google.com/workspace/calendar/api/v3/reference/events
(`start`/`end`: "date" for all-day events, "dateTime" RFC 3339 with "A time zone offset is
required unless a time zone is explicitly specified in timeZone").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from emulators.google import errors


def parse_timestamp(value: str, parameter: str) -> datetime:
    """An RFC 3339 timestamp with offset (timeMin, timeMax, updatedMin)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise errors.invalid_parameter(parameter, f"Bad Request: {parameter}") from None
    if parsed.tzinfo is None:
        # Google rejects a timestamp without offset for these parameters.
        raise errors.invalid_parameter(parameter, f"Bad Request: {parameter}")
    return parsed


def format_timestamp(value: datetime) -> str:
    """`created`/`updated` style: UTC, milliseconds, `Z` (as in real responses)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def format_date_time(value: datetime) -> str:
    """`dateTime` style: seconds and the wall-clock offset of the zone it is expressed in."""
    text = value.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.invalid(f"Invalid time zone definition: {name}") from None


@dataclass(frozen=True, slots=True)
class When:
    """One `start`/`end`: either an all-day date or an aware instant with its zone name."""

    day: date | None
    instant: datetime | None
    time_zone: str | None

    @property
    def all_day(self) -> bool:
        return self.day is not None

    def as_instant(self, calendar_zone: ZoneInfo) -> datetime:
        # All-day events begin at midnight in the calendar's zone, which is how Google
        # places them for timeMin/timeMax filtering.
        if self.day is not None:
            return datetime.combine(self.day, time(0), calendar_zone)
        assert self.instant is not None
        return self.instant

    def to_json(self) -> dict[str, str]:
        if self.day is not None:
            return {"date": self.day.isoformat()}
        assert self.instant is not None
        out = {"dateTime": format_date_time(self.instant)}
        if self.time_zone:
            out["timeZone"] = self.time_zone
        return out


def parse_when(value: Any, field: str) -> When:
    """Read an EventDateTime object sent by a client; 400 when Google would refuse it."""
    if not isinstance(value, dict):
        raise errors.required(f"Missing {field} time.")
    tz_name = value.get("timeZone")
    if value.get("date"):
        try:
            return When(date.fromisoformat(value["date"]), None, None)
        except (TypeError, ValueError):
            raise errors.invalid(f"Invalid value for: {value['date']}") from None
    if value.get("dateTime"):
        try:
            parsed = datetime.fromisoformat(value["dateTime"])
        except (TypeError, ValueError):
            raise errors.invalid(f"Invalid value for: {value['dateTime']}") from None
        if tz_name:
            tz = zone(tz_name)
            # An explicit timeZone names the wall clock; an offset in the string still pins
            # the instant, so convert rather than replace.
            parsed = parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed.astimezone(tz)
        elif parsed.tzinfo is None:
            raise errors.required(f"Missing time zone definition for {field} time.")
        return When(None, parsed, tz_name)
    raise errors.required(f"Missing {field} time.")


def shift(when: When, new_start: datetime | date, old_start: When) -> When:
    """Move `when` by the wall-clock distance between `old_start` and `new_start`."""
    if when.day is not None and isinstance(new_start, date) and old_start.day is not None:
        return When(when.day + (new_start - old_start.day), None, None)
    assert when.instant is not None and old_start.instant is not None
    assert isinstance(new_start, datetime)
    # Wall-clock arithmetic keeps a 10:00-11:00 meeting one local hour long across DST.
    delta = when.instant.replace(tzinfo=None) - old_start.instant.replace(tzinfo=None)
    end_local = new_start.replace(tzinfo=None) + delta
    tz = new_start.tzinfo
    return When(None, end_local.replace(tzinfo=tz), when.time_zone)


def add_seconds(value: datetime, seconds: float) -> datetime:
    return value + timedelta(seconds=seconds)
