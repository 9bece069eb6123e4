"""Time zones between EWS (Windows ids, exchangelib's `EWSTimeZone`) and Google (IANA).

The Windows <-> IANA table is exchangelib's copy of CLDR's windowsZones.xml
(`exchangelib.winzone`); `EWSTimeZone` is a `zoneinfo.ZoneInfo` that knows its Windows id.
https://developers.google.com/workspace/calendar/api/v3/reference/events (EventDateTime)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final

from exchangelib.ewsdatetime import EWSTimeZone

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
