"""Time zones between EWS (Windows ids, exchangelib's `EWSTimeZone`) and Google (IANA).

The Windows <-> IANA table is exchangelib's copy of CLDR's windowsZones.xml
(`exchangelib.winzone`); `EWSTimeZone` is a `zoneinfo.ZoneInfo` that knows its Windows id.
Exchange 2007's legacy `MeetingTimeZone` carries its own offsets and DST rules
(`LegacyTimeZone`); `legacy_zone` finds the IANA zone that keeps them over a series' years.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/meetingtimezone
https://developers.google.com/workspace/calendar/api/v3/reference/events (EventDateTime)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from ews_parser.calendar_item import legacy_tzinfo
from ews_parser.values import LegacyTimeZone
from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

UTC_NAME: Final = "UTC"


@lru_cache(maxsize=512)
def zone_for(zone_id: str) -> EWSTimeZone | None:
    """The zone a Windows id ("Pacific Standard Time") or an IANA name names, or None
    when CLDR maps it to no Windows zone (Exchange could not store it)."""
    try:
        return EWSTimeZone.from_ms_id(zone_id)
    except Exception:  # exchangelib's UnknownTimeZone, zoneinfo's ZoneInfoNotFoundError
        return None


@lru_cache(maxsize=1)
def utc() -> EWSTimeZone:
    return EWSTimeZone(UTC_NAME)


@lru_cache(maxsize=512)
def google_zone(name: str) -> EWSTimeZone | None:
    """The zone of a Google `timeZone` (IANA), keeping its name; a Windows id is read
    too. None when Exchange has no Windows zone for it."""
    try:
        return EWSTimeZone(name)
    except Exception:  # UnknownTimeZone: not IANA, or no Windows zone for it
        return zone_for(name)


def item_zone(value: Any, default_zone: str | None) -> EWSTimeZone:
    """The zone of an item's `_start_timezone` / `_end_timezone`, else `default_zone`,
    else UTC."""
    if isinstance(value, EWSTimeZone):
        return value
    if isinstance(value, str):
        found = zone_for(value)
        if found is not None:
            return found
    if default_zone:
        found = zone_for(default_zone)
        if found is not None:
            return found
    return utc()


# --- legacy MeetingTimeZone rules -> an IANA zone ------------------------------------------

#: How many years a series with no end is checked over (its first year included).
NO_END_YEARS: Final = 5
#: A series is never checked over more years than this (EndDate ranges can be far away).
MAX_YEARS: Final = 30
_MINUTE: Final = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class LegacyZoneMatch:
    """The zone for a legacy `MeetingTimeZone`, and what the choice could not keep."""

    zone: EWSTimeZone | None  # None: no IANA zone keeps those rules over those years
    warnings: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def _candidates() -> tuple[str, ...]:
    """The primary IANA zone of every Windows zone (CLDR, territory 001): an IANA name
    Exchange stores and gives back unchanged. UTC first, so a plain UTC+0 stays "UTC"."""
    names = [UTC_NAME]
    for iana in MS_TIMEZONE_TO_IANA_MAP.values():
        if iana not in names and zone_for(iana) is not None:
            names.append(iana)
    return tuple(names)


def _offset(zone: dt.tzinfo, when: dt.datetime) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(when.timestamp(), tz=zone).utcoffset()


def _transitions(rules: dt.tzinfo, first_year: int, last_year: int) -> list[dt.datetime]:
    """The instants (UTC, to the minute) at which the legacy rules change offset."""
    found: list[dt.datetime] = []
    day = dt.datetime(first_year, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(last_year + 1, 1, 1, tzinfo=dt.UTC)
    before = _offset(rules, day)
    while day < end:
        after_day = day + dt.timedelta(days=1)
        after = _offset(rules, after_day)
        if after != before:
            low, high = day, after_day  # offset(low) == before != offset(high)
            while high - low > _MINUTE:
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle <= low:
                    middle = low + _MINUTE
                if _offset(rules, middle) == before:
                    low = middle
                else:
                    high = middle
            found.append(high)
        day, before = after_day, after
    return found


def _samples(rules: dt.tzinfo, first_year: int, last_year: int) -> tuple[dt.datetime, ...]:
    """Where two zones must agree to be the same over those years: a minute either side
    of every legacy transition, and the 1st and 15th of every month (a zone with changes
    the legacy rules do not have differs on one of them)."""
    points: list[dt.datetime] = []
    for change in _transitions(rules, first_year, last_year):
        points += [change - _MINUTE, change]
    for year in range(first_year, last_year + 1):
        for month in range(1, 13):
            for day in (1, 15):
                points.append(dt.datetime(year, month, day, 12, tzinfo=dt.UTC))
    return tuple(sorted(points))


@lru_cache(maxsize=256)
def legacy_zone(legacy: LegacyTimeZone, first_year: int, last_year: int) -> LegacyZoneMatch:
    """The IANA zone whose UTC offsets equal the legacy `MeetingTimeZone` rules at every
    transition from `first_year` to `last_year` (the series' years): the zone its
    TimeZoneName names when that one matches, else the first matching primary zone of a
    Windows zone. A legacy zone without rules is taken by its name alone."""
    last_year = min(max(last_year, first_year), first_year + MAX_YEARS - 1)
    named = zone_for(legacy.name) if legacy.name else None
    rules = legacy_tzinfo(legacy)
    if rules is None:
        if named is not None:
            return LegacyZoneMatch(named)
        return LegacyZoneMatch(None, (f"unknown MeetingTimeZone {legacy.name!r} without rules",))
    samples = _samples(rules, first_year, last_year)
    expected = [_offset(rules, when) for when in samples]

    def matches(zone: dt.tzinfo) -> bool:
        return all(_offset(zone, w) == e for w, e in zip(samples, expected, strict=True))

    if named is not None and matches(named):
        return LegacyZoneMatch(named)
    for name in _candidates():
        zone = utc() if name == UTC_NAME else zone_for(name)
        if zone is not None and matches(zone):
            warnings: tuple[str, ...] = ()
            if named is not None:
                warnings = (
                    f"MeetingTimeZone {legacy.name!r}: its rules are those of {zone.key} "
                    f"in {first_year}-{last_year}, not of {named.key}",
                )
            return LegacyZoneMatch(zone, warnings)
    return LegacyZoneMatch(
        None,
        (
            f"MeetingTimeZone {legacy.name or '(unnamed)'!r}: no IANA zone has its rules in "
            f"{first_year}-{last_year}; start and end keep their instants",
        ),
    )
