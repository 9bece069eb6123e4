"""EWS recurrence (exchangelib's `Recurrence`: pattern + range) <-> RFC 5545 RRULE text.

The six EWS patterns and three ranges, as Google reads RRULEs (expanded in
`start.timeZone`). RRULE text is read and written by icalendar's `vRecur`.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/recurrence-recurrencetype
https://datatracker.ietf.org/doc/html/rfc5545#section-3.3.10
https://developers.google.com/workspace/calendar/api/guides/recurringevents
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any, Final, Protocol, cast

from exchangelib.ewsdatetime import EWSDate
from exchangelib.fields import MONTHS, WEEK_NUMBERS, WEEKDAY_NAMES, WEEKDAYS
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)
from icalendar.prop import vRecur, vWeekday

from mapping.errors import MappingError

#: RRULE day codes, Monday first (EWS weekday number - 1).
DAY_CODES: Final = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# EWS's "Day", "Weekday" and "WeekendDay" of RelativeMonthly/RelativeYearly patterns
_DAY, _WEEKDAY, _WEEKEND_DAY = 8, 9, 10
_DAY_SETS: Final = {
    frozenset(DAY_CODES): _DAY,
    frozenset(DAY_CODES[:5]): _WEEKDAY,
    frozenset(DAY_CODES[5:]): _WEEKEND_DAY,
}
_LAST_WEEK: Final = 5  # EWS "Last"
#: The end of an EndDate range for timed events: the last second of the end day.
_END_OF_DAY: Final = dt.time(23, 59, 59)
_SUPPORTED_PARTS: Final = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
)
_MAX_INTERVAL: Final = {"DAILY": 999, "WEEKLY": 99, "MONTHLY": 99, "YEARLY": 1}


def _number(value: Any, names: Sequence[str]) -> int:
    """exchangelib keeps enum values as 1-based numbers once cleaned, as names before."""
    if isinstance(value, int):
        return value
    return names.index(value) + 1


def _month_day(parts: dict[str, Any], day: int) -> None:
    # EWS: "If a particular month has fewer days than DayOfMonth, the last day in the month
    # is assumed"; RFC 5545 would skip such months. The last of 28..day is exactly EWS.
    if day <= 28:
        parts["BYMONTHDAY"] = [day]
    else:
        parts["BYMONTHDAY"] = list(range(28, day + 1))
        parts["BYSETPOS"] = [-1]


def _relative(parts: dict[str, Any], weekday: int, week_number: int) -> None:
    position = -1 if week_number == _LAST_WEEK else week_number
    if weekday <= 7:
        parts["BYDAY"] = [f"{position}{DAY_CODES[weekday - 1]}"]
    elif weekday == _DAY:
        parts["BYMONTHDAY"] = [position]
    else:
        parts["BYDAY"] = list(DAY_CODES[:5] if weekday == _WEEKDAY else DAY_CODES[5:])
        parts["BYSETPOS"] = [position]


def to_rrule(recurrence: Recurrence, *, all_day: bool, zone: dt.tzinfo) -> str:
    """The RRULE line for an EWS recurrence. `zone` is the zone the series is expanded
    in (Google's start.timeZone): an EndDate range ends at the end of that day there."""
    pattern = recurrence.pattern
    parts: dict[str, Any] = {}
    if isinstance(pattern, DailyPattern):
        parts["FREQ"] = "DAILY"
    elif isinstance(pattern, WeeklyPattern):
        parts["FREQ"] = "WEEKLY"
        days = sorted({_number(d, WEEKDAY_NAMES) for d in pattern.weekdays or ()})
        if not days:
            raise MappingError("a WeeklyRecurrence without DaysOfWeek")
        parts["BYDAY"] = [DAY_CODES[d - 1] for d in days]
        first = _number(pattern.first_day_of_week or 1, WEEKDAY_NAMES)
        if first != 1:  # RFC 5545's default is MO
            parts["WKST"] = DAY_CODES[first - 1]
    elif isinstance(pattern, AbsoluteMonthlyPattern):
        parts["FREQ"] = "MONTHLY"
        _month_day(parts, pattern.day_of_month)
    elif isinstance(pattern, RelativeMonthlyPattern):
        parts["FREQ"] = "MONTHLY"
        _relative(
            parts, _number(pattern.weekday, WEEKDAYS), _number(pattern.week_number, WEEK_NUMBERS)
        )
    elif isinstance(pattern, AbsoluteYearlyPattern):
        parts["FREQ"] = "YEARLY"
        parts["BYMONTH"] = [_number(pattern.month, MONTHS)]
        _month_day(parts, pattern.day_of_month)
    elif isinstance(pattern, RelativeYearlyPattern):
        parts["FREQ"] = "YEARLY"
        parts["BYMONTH"] = [_number(pattern.month, MONTHS)]
        _relative(
            parts, _number(pattern.weekday, WEEKDAYS), _number(pattern.week_number, WEEK_NUMBERS)
        )
    else:
        raise MappingError(f"recurrence pattern {type(pattern).__name__} has no RRULE here")
    interval = getattr(pattern, "interval", None) or 1
    if interval != 1:
        parts["INTERVAL"] = interval

    boundary = recurrence.boundary
    if isinstance(boundary, NumberedPattern):
        parts["COUNT"] = boundary.number
    elif isinstance(boundary, EndDatePattern):
        end = boundary.end
        end_day = end.date() if isinstance(end, dt.datetime) else end
        if all_day:
            parts["UNTIL"] = dt.date(end_day.year, end_day.month, end_day.day)
        else:
            last = dt.datetime.combine(end_day, _END_OF_DAY, tzinfo=zone)
            parts["UNTIL"] = last.astimezone(dt.UTC)
    elif not isinstance(boundary, NoEndPattern):
        raise MappingError(f"recurrence range {type(boundary).__name__} is not an EWS range")
    return _rrule_line(parts)


def _rrule_line(parts: dict[str, Any]) -> str:
    text: bytes = vRecur(parts).to_ical()  # type: ignore[no-untyped-call]
    return "RRULE:" + text.decode("ascii")


def parse_rrule(line: str) -> dict[str, list[Any]]:
    """The parts of one RRULE line, as `vRecur` reads them."""
    name, _, value = line.partition(":")
    if name.strip().upper() != "RRULE" or not value:
        raise MappingError(f"not an RRULE line: {line[:80]!r}")
    try:
        parsed = vRecur.from_ical(value.strip())
    except ValueError as exc:
        raise MappingError(f"unreadable RRULE {value[:80]!r}: {exc}") from None
    return {str(k).upper(): list(v) for k, v in parsed.items()}


#: Each change's content hash spells its rule again (several times a write, the same few
#: rules of a calendar): a pure function of the line, so its answers are kept.
CANONICAL_RULES_KEPT: Final = 4096


@functools.lru_cache(maxsize=CANONICAL_RULES_KEPT)
def canonical_rrule(line: str) -> str:
    """One spelling for equal RRULEs: parts in vRecur's order, INTERVAL=1 and WKST=MO
    (RFC 5545's defaults) left out, UNTIL in UTC."""
    parts = parse_rrule(line)
    if parts.get("INTERVAL") == [1]:
        del parts["INTERVAL"]
    if parts.get("WKST") == ["MO"]:
        del parts["WKST"]
    until = parts.get("UNTIL")
    if until and isinstance(until[0], dt.datetime) and until[0].tzinfo is not None:
        parts["UNTIL"] = [until[0].astimezone(dt.UTC)]
    for key in ("BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS"):
        if key in parts:
            parts[key] = sorted(parts[key], key=str)
    return _rrule_line(parts)


def _one(parts: dict[str, list[Any]], key: str) -> Any:
    values = parts.get(key)
    if not values:
        return None
    if len(values) != 1:
        raise MappingError(f"RRULE {key} has {len(values)} values, EWS takes one")
    return values[0]


class _WeekdayNum(Protocol):
    """What `vWeekday` sets (in __slots__, so not visible to mypy)."""

    relative: int | None
    weekday: str


def _days(parts: dict[str, list[Any]]) -> list[tuple[int | None, str]]:
    """BYDAY as (signed ordinal or None, day code)."""
    days = []
    for raw in parts.get("BYDAY", ()):
        try:
            weekday = cast(_WeekdayNum, vWeekday(str(raw)))
        except ValueError:
            raise MappingError(f"RRULE BYDAY value {str(raw)[:10]!r} is not a weekday") from None
        days.append((weekday.relative, weekday.weekday.upper()))
    return days


def _week_number(position: int) -> int:
    if position == -1:
        return _LAST_WEEK
    if 1 <= position <= 4:
        return position
    raise MappingError(f"RRULE position {position}: EWS knows First..Fourth and Last")


def _day_rule(parts: dict[str, list[Any]], start: dt.date) -> tuple[str, int, int]:
    """("absolute", day of month, 0) or ("relative", EWS weekday 1..10, week number)."""
    month_days = [int(d) for d in parts.get("BYMONTHDAY", ())]
    days = _days(parts)
    positions = [int(p) for p in parts.get("BYSETPOS", ())]
    if month_days and days:
        raise MappingError("RRULE with both BYMONTHDAY and BYDAY has no EWS pattern")
    if not month_days and not days:
        if positions:
            raise MappingError("RRULE BYSETPOS without BYDAY or BYMONTHDAY")
        return ("absolute", start.day, 0)
    if month_days:
        if not positions and len(month_days) == 1:
            day = month_days[0]
            if 1 <= day <= 31:
                return ("absolute", day, 0)
            if day == -1:
                return ("relative", _DAY, _LAST_WEEK)
        last = max(month_days)
        spread = sorted(month_days) == list(range(28, last + 1))
        if positions == [-1] and 29 <= last <= 31 and spread:
            return ("absolute", last, 0)
        raise MappingError(f"RRULE BYMONTHDAY={month_days} has no EWS pattern")
    if len(days) == 1 and days[0][0] is not None and not positions:
        position, code = days[0]
        assert position is not None
        return ("relative", DAY_CODES.index(code) + 1, _week_number(position))
    if any(position is not None for position, _ in days) or len(positions) != 1:
        raise MappingError("RRULE BYDAY with positions EWS cannot express")
    codes = frozenset(code for _, code in days)
    weekday = DAY_CODES.index(next(iter(codes))) + 1 if len(codes) == 1 else _DAY_SETS.get(codes)
    if weekday is None:
        raise MappingError(f"RRULE BYDAY={sorted(codes)} with BYSETPOS has no EWS pattern")
    return ("relative", weekday, _week_number(positions[0]))


def from_rrule(
    lines: Sequence[str], *, start: dt.date | dt.datetime, all_day: bool
) -> Recurrence | None:
    """The EWS recurrence for Google `recurrence` lines. `start` is the event's start:
    a date, or a date-time in the zone the series is expanded in.

    EXDATE and RDATE lines are not read (exceptions are occurrences, handled elsewhere).
    """
    rules = [line for line in lines if line.partition(":")[0].strip().upper() == "RRULE"]
    if any(line.partition(":")[0].strip().upper() == "EXRULE" for line in lines):
        raise MappingError("EXRULE has no EWS counterpart")
    if not rules:
        return None
    if len(rules) > 1:
        raise MappingError(f"{len(rules)} RRULEs: EWS has one pattern per series")
    parts = parse_rrule(rules[0])
    unknown = set(parts) - _SUPPORTED_PARTS
    if unknown:
        raise MappingError(f"RRULE parts {sorted(unknown)} have no EWS counterpart")
    freq = str(_one(parts, "FREQ") or "").upper()
    if freq not in _MAX_INTERVAL:
        raise MappingError(f"RRULE FREQ={freq or '?'} has no EWS pattern")
    interval = int(_one(parts, "INTERVAL") or 1)
    if freq == "DAILY" and "BYDAY" in parts and interval == 1:
        freq = "WEEKLY"  # "every weekday": EWS says it as a weekly pattern
    if not 1 <= interval <= _MAX_INTERVAL[freq]:
        raise MappingError(f"RRULE FREQ={freq};INTERVAL={interval} is out of EWS's range")
    start_day = start.date() if isinstance(start, dt.datetime) else start
    if freq != "YEARLY" and "BYMONTH" in parts:
        raise MappingError(f"RRULE FREQ={freq} with BYMONTH has no EWS pattern")

    pattern: Any
    if freq == "DAILY":
        if set(parts) & {"BYDAY", "BYMONTHDAY", "BYSETPOS"}:
            raise MappingError("RRULE FREQ=DAILY with BY* parts has no EWS pattern")
        pattern = DailyPattern(interval=interval)
    elif freq == "WEEKLY":
        days = _days(parts)
        if any(p is not None for p, _ in days) or set(parts) & {"BYMONTHDAY", "BYSETPOS"}:
            raise MappingError("RRULE FREQ=WEEKLY with positions has no EWS pattern")
        codes = sorted({c for _, c in days}, key=DAY_CODES.index) or [
            DAY_CODES[start_day.weekday()]
        ]
        wkst = str(_one(parts, "WKST") or "MO").upper()
        pattern = WeeklyPattern(
            interval=interval,
            weekdays=[WEEKDAY_NAMES[DAY_CODES.index(c)] for c in codes],
            first_day_of_week=WEEKDAY_NAMES[DAY_CODES.index(wkst)],
        )
    else:
        kind, first, second = _day_rule(parts, start_day)
        if freq == "MONTHLY":
            pattern = (
                AbsoluteMonthlyPattern(interval=interval, day_of_month=first)
                if kind == "absolute"
                else RelativeMonthlyPattern(
                    interval=interval,
                    weekday=WEEKDAYS[first - 1],
                    week_number=WEEK_NUMBERS[second - 1],
                )
            )
        else:
            month = MONTHS[int(_one(parts, "BYMONTH") or start_day.month) - 1]
            pattern = (
                AbsoluteYearlyPattern(day_of_month=first, month=month)
                if kind == "absolute"
                else RelativeYearlyPattern(
                    weekday=WEEKDAYS[first - 1], week_number=WEEK_NUMBERS[second - 1], month=month
                )
            )

    first_day = EWSDate(start_day.year, start_day.month, start_day.day)
    count = _one(parts, "COUNT")
    until = _one(parts, "UNTIL")
    boundary: Any
    if count is not None and until is not None:
        raise MappingError("RRULE with both COUNT and UNTIL")
    if count is not None:
        if not 1 <= int(count) <= 999:
            raise MappingError(f"RRULE COUNT={count}: EWS allows 1..999 occurrences")
        boundary = NumberedPattern(start=first_day, number=int(count))
    elif until is not None:
        end = max(_end_day(until, start, all_day), start_day)
        boundary = EndDatePattern(start=first_day, end=EWSDate(end.year, end.month, end.day))
    else:
        boundary = NoEndPattern(start=first_day)
    return Recurrence(pattern=pattern, boundary=boundary)


def _end_day(until: dt.date | dt.datetime, start: dt.date | dt.datetime, all_day: bool) -> dt.date:
    """The EWS EndDate for an UNTIL: the local date of the last start UNTIL allows."""
    if not isinstance(until, dt.datetime):
        return until
    if all_day or not isinstance(start, dt.datetime):
        # all-day occurrences start at midnight: of which zone Google does not say
        return (until if until.tzinfo is None else until.astimezone(dt.UTC)).date()
    zone = start.tzinfo
    if until.tzinfo is None:  # floating UNTIL: the series' own zone
        until = until.replace(tzinfo=zone)
    day = until.astimezone(zone).date()
    if dt.datetime.combine(day, start.time(), tzinfo=zone) > until:
        day -= dt.timedelta(days=1)
    return day
