"""Expanding an EWS recurrence into occurrences, with python-dateutil's rrule.

An EWS `Recurrence` is a pattern (Daily, Weekly, AbsoluteMonthly, RelativeMonthly,
AbsoluteYearly, RelativeYearly) plus a range (NoEnd, EndDate, Numbered); exchangelib reads
it into `exchangelib.recurrence` models. The same series written as an RFC 5545 RRULE
(what Google stores) must give the same instants, so both go through dateutil's rrule.
Occurrences keep the master's wall-clock time in the master's start time zone, across DST
changes, as Exchange does.
Reference: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/recurrence-patterns-and-ews
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Final
from zoneinfo import ZoneInfo

from dateutil import rrule
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

#: exchangelib's weekday numbers: 1..7 are Monday..Sunday; 8, 9, 10 are EWS's Day,
#: Weekday and WeekendDay (used by relative patterns).
_DAYS: Final = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
_DAY_GROUPS: Final = {8: _DAYS, 9: _DAYS[:5], 10: _DAYS[5:]}
#: EWS week_number 1..4 is First..Fourth, 5 is Last.
_LAST_WEEK: Final = 5
#: Every month has at least this many days.
_SHORTEST_MONTH: Final = 28

#: A NoEnd series is expanded lazily; this caps how far an index lookup may walk.
MAX_INDEX: Final = 10_000


class UnsupportedRecurrence(ValueError):
    """A pattern calendars cannot have (the Regeneration patterns are for tasks)."""


def _weekday_rule(weekday: int, week_number: int | None) -> dict[str, Any]:
    if weekday in _DAY_GROUPS:
        days = _DAY_GROUPS[weekday]
        if week_number is None:
            return {"byweekday": days}
        return {"byweekday": days, "bysetpos": -1 if week_number == _LAST_WEEK else week_number}
    day = _DAYS[weekday - 1]
    if week_number is None:
        return {"byweekday": day}
    return {"byweekday": day(-1 if week_number == _LAST_WEEK else week_number)}


def _month_day_rule(day: int) -> dict[str, Any]:
    """DayOfMonth: "If for a particular month this value is larger than the number of days
    in the month, the last day of the month is assumed" (web-service-reference/dayofmonth),
    where a plain RFC 5545 BYMONTHDAY would skip that month: the last of 28..day is it."""
    if day <= _SHORTEST_MONTH:
        return {"bymonthday": day}
    return {"bymonthday": tuple(range(_SHORTEST_MONTH, day + 1)), "bysetpos": -1}


def rule_for(recurrence: Any, dtstart: dt.datetime, zone: dt.tzinfo) -> rrule.rrule:
    """The dateutil rule for an exchangelib `Recurrence`, starting at `dtstart` (aware,
    in `zone`, the master's wall-clock start)."""
    pattern = recurrence.pattern
    kwargs: dict[str, Any] = {"dtstart": dtstart, "interval": getattr(pattern, "interval", 1)}
    if isinstance(pattern, DailyPattern):
        freq = rrule.DAILY
    elif isinstance(pattern, WeeklyPattern):
        freq = rrule.WEEKLY
        kwargs["byweekday"] = [_DAYS[d - 1] for d in pattern.weekdays]
        kwargs["wkst"] = _DAYS[(pattern.first_day_of_week or 1) - 1]
    elif isinstance(pattern, AbsoluteMonthlyPattern):
        freq = rrule.MONTHLY
        kwargs.update(_month_day_rule(pattern.day_of_month))
    elif isinstance(pattern, RelativeMonthlyPattern):
        freq = rrule.MONTHLY
        kwargs.update(_weekday_rule(pattern.weekday, pattern.week_number))
    elif isinstance(pattern, AbsoluteYearlyPattern):
        freq = rrule.YEARLY
        kwargs.update(bymonth=pattern.month, interval=1)
        kwargs.update(_month_day_rule(pattern.day_of_month))
    elif isinstance(pattern, RelativeYearlyPattern):
        freq = rrule.YEARLY
        kwargs.update(bymonth=pattern.month, interval=1)
        kwargs.update(_weekday_rule(pattern.weekday, pattern.week_number))
    else:
        raise UnsupportedRecurrence(f"{type(pattern).__name__} is not a calendar pattern")
    boundary = recurrence.boundary
    if isinstance(boundary, NumberedPattern):
        kwargs["count"] = boundary.number
    elif isinstance(boundary, EndDatePattern):
        # EndDate is a date in the item's zone and the series includes that whole day.
        last = dt.datetime.combine(boundary.end, dt.time(23, 59, 59), tzinfo=zone)
        kwargs["until"] = last
    elif not isinstance(boundary, NoEndPattern):
        raise UnsupportedRecurrence(f"{type(boundary).__name__} is not a recurrence range")
    return rrule.rrule(freq, **kwargs)


def series_start(recurrence: Any, start: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The first occurrence's wall-clock start: the range's StartDate at the master's time
    of day, in the master's zone."""
    local = start.astimezone(zone)
    begin = recurrence.boundary.start
    return dt.datetime.combine(begin, local.time().replace(tzinfo=None), tzinfo=zone)


def plain_zone(zone: Any) -> dt.tzinfo:
    """A zoneinfo object for an exchangelib EWSTimeZone (dateutil wants plain tzinfo)."""
    key = getattr(zone, "key", None)
    return ZoneInfo(key) if key else dt.UTC


def occurrences(
    recurrence: Any, start: dt.datetime, zone: Any, *, until: dt.datetime | None = None
) -> Iterator[tuple[int, dt.datetime]]:
    """(1-based index, start in UTC) of every occurrence, in order, up to `until`."""
    tz = plain_zone(zone)
    rule = rule_for(recurrence, series_start(recurrence, start, tz), tz)
    for index, when in enumerate(rule, start=1):
        if index > MAX_INDEX:
            return
        utc = when.astimezone(dt.UTC)
        if until is not None and utc >= until:
            return
        yield index, utc


def occurrence_start(
    recurrence: Any, start: dt.datetime, zone: Any, index: int
) -> dt.datetime | None:
    """The UTC start of occurrence `index`, or None when the series has no such one."""
    if index < 1 or index > MAX_INDEX:
        return None
    for i, when in occurrences(recurrence, start, zone):
        if i == index:
            return when
    return None


def last_occurrence(
    recurrence: Any, start: dt.datetime, zone: Any
) -> tuple[int, dt.datetime] | None:
    """The last occurrence of a bounded series (None for NoEnd)."""
    if isinstance(recurrence.boundary, NoEndPattern):
        return None
    last = None
    for last in occurrences(recurrence, start, zone):  # noqa: B007  # we want the last one
        pass
    return last
