"""Expanding a recurring event's RRULE / EXRULE / RDATE / EXDATE lines into instances.

References:
* https://developers.google.com/workspace/calendar/api/guides/recurringevents
* https://developers.google.com/workspace/calendar/api/v3/reference/events/instances
* RFC 5545 section 3.8.5 (the recurrence lines Google stores verbatim in `recurrence`).

`start.timeZone` "specifies the time zone in which the recurrence is expanded", so
occurrences are generated on the local wall clock (dateutil keeps the wall time and the
zone recomputes the offset), and a 10:00 weekly meeting stays at 10:00 across DST.
Instance ids are `<eventId>_<yyyymmddThhmmssZ>` (UTC) for timed series and
`<eventId>_<yyyymmdd>` for all-day series, as in real responses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from dateutil.rrule import rruleset, rrulestr

from emulators.google import errors
from emulators.google.times import When, zone

# An unbounded series (no COUNT, no UNTIL) is cut here; Google pages through such series
# indefinitely, the stand-in stops after this many occurrences.
MAX_OCCURRENCES = 730
# A bounded series is expanded in full (EWS allows up to 999 numbered occurrences, and an
# end date years away); this only guards against a runaway rule.
MAX_BOUNDED_OCCURRENCES = 20_000

_BOUND = re.compile(r"[:;](COUNT|UNTIL)=", re.IGNORECASE)

_UNTIL = re.compile(r"UNTIL=([0-9T]+Z?)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One generated start: a date for all-day series, an aware datetime otherwise."""

    start: date | datetime

    @property
    def suffix(self) -> str:
        if isinstance(self.start, datetime):
            return self.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.start.strftime("%Y%m%d")


def instance_id(event_id: str, original_start: date | datetime) -> str:
    return f"{event_id}_{Occurrence(original_start).suffix}"


def _parse_value(text: str, tz: ZoneInfo | None, all_day: bool) -> date | datetime:
    """One RDATE/EXDATE value: `yyyymmdd`, local `yyyymmddThhmmss` or UTC `...Z`."""
    text = text.strip()
    if len(text) == 8:
        day = datetime.strptime(text, "%Y%m%d").date()
        if all_day or tz is None:
            return day
        return datetime.combine(day, time(0), tz)
    if text.endswith("Z"):
        moment = datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return moment.date() if all_day else moment
    local = datetime.strptime(text, "%Y%m%dT%H%M%S")
    if all_day:
        return local.date()
    return local.replace(tzinfo=tz)


def _parse_dates(line: str, default_tz: ZoneInfo | None, all_day: bool) -> list[date | datetime]:
    head, _, values = line.partition(":")
    tz = default_tz
    for param in head.split(";")[1:]:
        key, _, val = param.partition("=")
        if key.upper() == "TZID":
            tz = zone(val)
    return [_parse_value(v, tz, all_day) for v in values.split(",") if v.strip()]


def _rule(line: str, dtstart: datetime, tz: ZoneInfo | None) -> object:
    body = line.split(":", 1)[1] if ":" in line else line
    match = _UNTIL.search(body)
    if match and dtstart.tzinfo is not None and not match.group(1).upper().endswith("Z"):
        # dateutil wants UNTIL in UTC for a zoned DTSTART (RFC 5545 says the same); a local
        # or date UNTIL is read on the series' own wall clock, end of day for a date.
        raw = match.group(1)
        if len(raw) == 8:
            local = datetime.combine(datetime.strptime(raw, "%Y%m%d").date(), time(23, 59, 59))
        else:
            local = datetime.strptime(raw, "%Y%m%dT%H%M%S")
        until = local.replace(tzinfo=tz).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        body = body[: match.start(1)] + until + body[match.end(1):]
    try:
        return rrulestr(body, dtstart=dtstart)
    except (ValueError, TypeError):
        raise errors.invalid("Invalid recurrence rule.") from None


def expand(recurrence: list[str], start: When) -> list[Occurrence]:
    """Every occurrence of a series, first to last (an unbounded one capped at
    `MAX_OCCURRENCES`)."""
    if start.day is not None:
        dtstart = datetime.combine(start.day, time(0))
        tz: ZoneInfo | None = None
    else:
        assert start.instant is not None
        if not start.time_zone:
            raise errors.required("Missing time zone definition for start time.")
        tz = zone(start.time_zone)
        dtstart = start.instant.astimezone(tz)
    rules = rruleset()
    for raw in recurrence:
        line = raw.strip()
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        if name == "RRULE":
            rules.rrule(_rule(line, dtstart, tz))  # type: ignore[arg-type]
        elif name == "EXRULE":
            rules.exrule(_rule(line, dtstart, tz))  # type: ignore[arg-type]
        elif name in ("RDATE", "EXDATE"):
            for value in _parse_dates(line, tz, start.all_day):
                moment = datetime.combine(value, time(0)) if not isinstance(value, datetime) \
                    else value
                (rules.rdate if name == "RDATE" else rules.exdate)(moment)
        else:
            raise errors.invalid("Invalid recurrence rule.")
    # RFC 5545 3.8.5.3: "The DTSTART property value always counts as the first
    # occurrence", and Google shows it even when the RRULE skips that day
    # (googleapis/google-api-nodejs-client#2214: COUNT=5 from a Monday gives 6 instances,
    # the Monday and five matching days). dateutil leaves an unmatched DTSTART out.
    rules.rdate(dtstart)
    rule_lines = [line for line in recurrence
                  if line.strip().upper().startswith("RRULE")]
    bounded = bool(rule_lines) and all(_BOUND.search(line) for line in rule_lines)
    limit = MAX_BOUNDED_OCCURRENCES if bounded else MAX_OCCURRENCES
    out: list[Occurrence] = []
    for moment in rules:
        if len(out) >= limit:
            break
        out.append(Occurrence(moment.date() if start.all_day else moment))
    return out


def occurrence_start(original: date | datetime, master_start: When) -> When:
    if isinstance(original, datetime):
        return When(None, original, master_start.time_zone)
    return When(original, None, None)


def same_instant(a: date | datetime, b: date | datetime) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a.astimezone(UTC) == b.astimezone(UTC)
    return a == b

