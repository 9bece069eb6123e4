"""Exceptions of a recurring series: EWS ModifiedOccurrences / DeletedOccurrences <->
Google instance overrides / cancelled instances (pure).

Google keeps an exception as an instance event of the master: id
`<masterId>_<yyyymmddThhmmssZ>` (UTC original start; `<masterId>_<yyyymmdd>` for an
all-day series), `recurringEventId` and `originalStartTime` (semantics.md section 4).

The rule, both ways:
- a modified occurrence (an EWS item of CalendarItemType Exception, with OriginalStart)
  <-> an instance override carrying every field `to_google_full` maps;
- a deleted occurrence <-> a cancelled instance (`status: cancelled`), never an EXDATE
  line: calsync writes no EXDATE, and reads a master's EXDATE lines as deleted
  occurrences too (what Google keeps when a client wrote them), so they come back as
  cancelled instances;
- an instance whose original start is not an occurrence of the master's rule is not an
  exception (Google drops it when the series is trimmed);
- an instance that says nothing the master does not say at that start (as
  `events.instances` lists every occurrence) is not an exception.

"This and following" (Google): the master's RRULE gets an UNTIL and a new series starts
at the split, with its own id and the iCalUID `<uid>_R<yyyymmddThhmmss>`. EWS has no
such link, so the two are two EWS series: the trimmed master maps to the existing
series with an EndDate (its exceptions past the end are dropped, as above), the new
series to a new recurring master with its own UID. An Outlook "this and following"
arrives the same way (an ended series and a new one) and maps to two Google series.
`split_from` tells the caller that a new series continues an old one.

https://developers.google.com/workspace/calendar/api/guides/recurringevents
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/modifiedoccurrences
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr
from exchangelib.ewsdatetime import EWSDate, EWSDateTime
from exchangelib.items import CalendarItem

from mapping.errors import MappingError
from mapping.event import GoogleEvent, normalised
from mapping.full import FULL_MANAGED_FIELDS, to_ews_full, to_google_full
from mapping.recurrence import parse_rrule
from mapping.zones import google_zone, item_zone

#: An index lookup never walks further than EWS's numbered maximum allows many times over.
MAX_INDEX: Final = 10_000
_END_OF_DAY: Final = dt.time(23, 59, 59)
#: Fields an instance override carries that its master does not decide.
_INSTANCE_KEYS: Final = ("id", "recurringEventId", "originalStartTime", "status")

OriginalStart = dt.date  # a datetime (aware, UTC) for timed series, a date for all-day ones


# --- ids and original starts ------------------------------------------------------------


def instance_id(master_event_id: str, original_start: dt.date) -> str:
    """Google's id for the instance of a series that starts at `original_start`."""
    if isinstance(original_start, dt.datetime):
        if original_start.tzinfo is None:
            raise MappingError("an instance's original start must be aware")
        return f"{master_event_id}_{_utc(original_start):%Y%m%dT%H%M%SZ}"
    return f"{master_event_id}_{original_start:%Y%m%d}"


def _all_day(master: Mapping[str, Any]) -> bool:
    start = master.get("start")
    return isinstance(start, Mapping) and bool(start.get("date"))


def _master_zone(master: Mapping[str, Any]) -> dt.tzinfo:
    start = master.get("start") or {}
    name = start.get("timeZone") if isinstance(start, Mapping) else None
    zone = google_zone(str(name)) if name else None
    # a plain ZoneInfo: exchangelib's EWSTimeZone turns datetimes into EWSDateTimes,
    # which refuse any other tzinfo afterwards
    return ZoneInfo(zone.key) if zone is not None else dt.UTC


def original_start_time(master: Mapping[str, Any], original_start: dt.date) -> dict[str, str]:
    """Google `originalStartTime` for an occurrence of `master` (a Google event)."""
    if _all_day(master):
        day = original_start.date() if isinstance(original_start, dt.datetime) else original_start
        return {"date": day.isoformat()}
    if not isinstance(original_start, dt.datetime) or original_start.tzinfo is None:
        raise MappingError("a timed series' original start must be an aware date-time")
    zone = _master_zone(master)
    local = dt.datetime.fromtimestamp(int(original_start.timestamp()), tz=zone)
    out = {"dateTime": local.isoformat(timespec="seconds")}
    name = (master.get("start") or {}).get("timeZone")
    if name:
        out["timeZone"] = str(name)
    return out


def read_original_start(value: Any, *, all_day: bool) -> OriginalStart:
    """An `originalStartTime` as a date (all-day) or an aware UTC datetime."""
    if not isinstance(value, Mapping):
        raise MappingError("an instance without originalStartTime")
    if value.get("date"):
        day = dt.date.fromisoformat(str(value["date"]))
        return day
    try:
        when = dt.datetime.fromisoformat(str(value["dateTime"]))
    except (KeyError, ValueError):
        raise MappingError("an originalStartTime without a readable dateTime") from None
    if when.tzinfo is None:
        zone = google_zone(str(value.get("timeZone") or "")) if value.get("timeZone") else None
        if zone is None:
            raise MappingError("a floating originalStartTime without timeZone")
        when = when.replace(tzinfo=zone)
    when = _utc(when)
    return when.date() if all_day else when


# --- expanding the master's rule ---------------------------------------------------------


def _dtstart(master: Mapping[str, Any]) -> dt.datetime:
    start = master.get("start")
    if not isinstance(start, Mapping):
        raise MappingError("a master without start")
    if start.get("date"):
        return dt.datetime.combine(dt.date.fromisoformat(str(start["date"])), dt.time(0))
    when = dt.datetime.fromisoformat(str(start.get("dateTime")))
    zone = _master_zone(master)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return dt.datetime.fromtimestamp(int(when.timestamp()), tz=zone)


def _rule(master: Mapping[str, Any]) -> rrule | None:
    """dateutil's rule for the master's RRULE, UNTIL made UTC as dateutil wants it for a
    zoned start (a local or date UNTIL read on the series' own wall clock)."""
    lines = [
        str(line)
        for line in master.get("recurrence") or ()
        if str(line).partition(":")[0].strip().upper() == "RRULE"
    ]
    if not lines:
        return None
    dtstart = _dtstart(master)
    parts = parse_rrule(lines[0])
    until = parts.get("UNTIL")
    text = lines[0].partition(":")[2]
    if until and dtstart.tzinfo is not None:
        value = until[0]
        if not isinstance(value, dt.datetime):
            value = dt.datetime.combine(value, _END_OF_DAY)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dtstart.tzinfo)
        stamp = value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        text = ";".join(
            f"UNTIL={stamp}" if p.upper().startswith("UNTIL=") else p for p in text.split(";")
        )
    elif until and isinstance(until[0], dt.datetime) and until[0].tzinfo is not None:
        # an all-day series with a UTC UNTIL: its date
        stamp = until[0].astimezone(dt.UTC).strftime("%Y%m%d")
        text = ";".join(
            f"UNTIL={stamp}" if p.upper().startswith("UNTIL=") else p for p in text.split(";")
        )
    try:
        found = rrulestr(text, dtstart=dtstart)
    except (ValueError, TypeError) as exc:
        raise MappingError(f"unreadable RRULE: {exc}") from None
    assert isinstance(found, rrule)
    return found


def occurrences(master: Mapping[str, Any]) -> Iterator[OriginalStart]:
    """The original starts of a Google master's occurrences, first to last (DTSTART
    first, as Google always shows it); dates for an all-day series, UTC otherwise."""
    dtstart = _dtstart(master)
    all_day = _all_day(master)

    def out(when: dt.datetime) -> OriginalStart:
        return when.date() if all_day else _utc(when)

    yield out(dtstart)
    rule = _rule(master)
    if rule is None:
        return
    for when in rule:
        if when != dtstart:
            yield out(when)


def occurrence_index(master: Mapping[str, Any], original_start: OriginalStart) -> int | None:
    """The 1-based index of an occurrence in the series (EWS's OccurrenceItemId
    InstanceIndex, which counts deleted occurrences too), or None when the series has no
    occurrence that starts then."""
    target = _comparable(original_start, all_day=_all_day(master))
    for index, when in enumerate(occurrences(master), start=1):
        if index > MAX_INDEX:
            return None
        if when == target:
            return index
        if _sort_key(when) > _sort_key(target):
            return None
    return None


def _comparable(value: dt.date, *, all_day: bool) -> OriginalStart:
    if all_day:
        return value.date() if isinstance(value, dt.datetime) else value
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise MappingError("a timed series' original start must be an aware date-time")
    return _utc(value)


def _utc(value: dt.datetime) -> dt.datetime:
    """A plain UTC datetime to the second (EWSDateTime.astimezone takes only EWSTimeZone)."""
    return dt.datetime.fromtimestamp(int(value.timestamp()), tz=dt.UTC)


def occurrence_of(master: Mapping[str, Any], original_start: OriginalStart) -> GoogleEvent:
    """What a Google series gives at one of its occurrences when nothing overrides it: the
    master's own fields (no id, recurrence or iCalUID), starting at `original_start` with
    the master's duration, each bound spelled in its own zone as the master spells it: what
    an exception made on either side is compared with, field by field."""
    all_day = _all_day(master)
    original = _comparable(original_start, all_day=all_day)
    event: GoogleEvent = {
        k: v for k, v in master.items() if k not in ("id", "recurrence", "iCalUID", "etag")
    }
    span = _span(master.get("start"), master.get("end"))
    if not isinstance(span, dt.timedelta):
        raise MappingError("a master without a readable start and end")
    if all_day:
        assert not isinstance(original, dt.datetime)
        event["start"] = {"date": original.isoformat()}
        event["end"] = {"date": (original + span).isoformat()}
        return event
    assert isinstance(original, dt.datetime)
    event["start"] = original_start_time(master, original)
    end = master.get("end") or {}
    name = end.get("timeZone") or (master.get("start") or {}).get("timeZone")
    zone = google_zone(str(name)) if name else None
    finish = dt.datetime.fromtimestamp(
        int((original + span).timestamp()), tz=ZoneInfo(zone.key) if zone is not None else dt.UTC
    )
    event["end"] = {"dateTime": finish.isoformat(timespec="seconds")}
    if name:
        event["end"]["timeZone"] = str(name)
    return event


# --- EWS -> Google -----------------------------------------------------------------------


def overrides_for(
    master_event_id: str,
    master_event: GoogleEvent,
    modified: Sequence[CalendarItem],
    deleted_starts: Sequence[dt.date],
    *,
    default_zone: str | None = None,
) -> list[GoogleEvent]:
    """The Google instance overrides and cancelled instances for an EWS master's
    exceptions, ordered by original start.

    `master_event` is the master as mapped (`to_google_full(master).event`); `modified`
    are the occurrence items (GetItem of each `ModifiedOccurrences/Occurrence/ItemId`,
    with OriginalStart); `deleted_starts` the `DeletedOccurrences/DeletedOccurrence/Start`
    values (aware date-times; for an all-day series dates or local midnights)."""
    all_day = _all_day(master_event)
    out: list[tuple[OriginalStart, GoogleEvent]] = []
    for item in modified:
        if item.original_start is None:
            raise MappingError("a modified occurrence without OriginalStart")
        zone = item_zone(item._start_timezone, default_zone)
        original = _from_ews(item.original_start, all_day=all_day, zone=zone)
        event = to_google_full(item, default_zone=default_zone).event
        event.pop("recurrence", None)
        if master_event.get("iCalUID"):
            event["iCalUID"] = master_event["iCalUID"]  # instances share the master's
        else:
            event.pop("iCalUID", None)
        event["id"] = instance_id(master_event_id, original)
        event["recurringEventId"] = master_event_id
        event["originalStartTime"] = original_start_time(master_event, original)
        out.append((original, event))
    zone = _master_zone(master_event)
    for start in deleted_starts:
        original = _from_ews(start, all_day=all_day, zone=item_zone(None, default_zone)
                             if all_day else zone)
        out.append((original, cancelled_instance(master_event_id, master_event, original)))
    out.sort(key=lambda pair: _sort_key(pair[0]))
    return [event for _, event in out]


def cancelled_instance(
    master_event_id: str, master_event: GoogleEvent, original_start: OriginalStart
) -> GoogleEvent:
    """The cancelled instance for a deleted occurrence (only what Google guarantees)."""
    return {
        "id": instance_id(master_event_id, original_start),
        "recurringEventId": master_event_id,
        "originalStartTime": original_start_time(master_event, original_start),
        "status": "cancelled",
    }


def ews_original_start(value: dt.date, *, all_day: bool, zone: dt.tzinfo) -> OriginalStart:
    """An EWS OriginalStart or DeletedOccurrence Start as an original start: an aware UTC
    datetime, or for an all-day series the date it falls on in `zone` (the series' own)."""
    return _from_ews(value, all_day=all_day, zone=zone)


def _from_ews(value: dt.date, *, all_day: bool, zone: dt.tzinfo) -> OriginalStart:
    if not isinstance(value, dt.datetime):
        if not all_day:
            raise MappingError("a timed series' occurrence start must be a date-time")
        return dt.date(value.year, value.month, value.day)
    if value.tzinfo is None:
        raise MappingError("an occurrence start must be aware")
    if all_day:
        local = dt.datetime.fromtimestamp(value.timestamp(), tz=zone)
        return local.date()
    return dt.datetime.fromtimestamp(int(value.timestamp()), tz=dt.UTC)


def _sort_key(value: dt.date) -> tuple[dt.date, dt.time]:
    if isinstance(value, dt.datetime):
        return (value.date(), value.time())
    return (value, dt.time(0))


# --- Google -> EWS -----------------------------------------------------------------------


def exceptions_from(
    master_event: GoogleEvent, instances: Sequence[GoogleEvent]
) -> tuple[list[dict[str, Any]], list[OriginalStart]]:
    """The EWS exceptions for a Google master and its instances (overrides, cancelled
    instances, or every instance `events.instances` lists): (modified, deleted).

    Each modified entry is `to_ews_full` keyword arguments of the instance (no recurrence)
    plus `original_start` (EWSDateTime in UTC, or EWSDate for an all-day series); the
    caller finds the occurrence with `occurrence_index`. `deleted` are original starts
    (UTC date-times; dates for an all-day series), the master's EXDATE values included.
    Both are ordered by original start."""
    master_id = master_event.get("id")
    all_day = _all_day(master_event)
    zone = _master_zone(master_event)
    wanted: dict[OriginalStart, GoogleEvent | None] = {}
    for instance in instances:
        if master_id and instance.get("recurringEventId") not in (None, master_id):
            continue
        original = read_original_start(instance.get("originalStartTime"), all_day=all_day)
        if instance.get("status") == "cancelled":
            wanted[original] = None
        elif original not in wanted and _is_exception(master_event, instance, original):
            wanted[original] = instance
    for original in _exdates(master_event, all_day=all_day, zone=zone):
        wanted.setdefault(original, None)
    members = _members(master_event, set(wanted))
    modified: list[dict[str, Any]] = []
    deleted: list[OriginalStart] = []
    for original in sorted(wanted, key=_sort_key):
        if original not in members:
            continue
        override = wanted[original]
        if override is None:
            deleted.append(original)
            continue
        kwargs = to_ews_full(override)
        kwargs["recurrence"] = None
        kwargs["original_start"] = (
            EWSDateTime.from_datetime(original)
            if isinstance(original, dt.datetime)
            else EWSDate(original.year, original.month, original.day)
        )
        modified.append(kwargs)
    return modified, deleted


def _members(master: Mapping[str, Any], wanted: set[OriginalStart]) -> set[OriginalStart]:
    """Which of `wanted` are occurrences of the master's series."""
    if not wanted:
        return set()
    last = max(wanted, key=_sort_key)
    found: set[OriginalStart] = set()
    for index, when in enumerate(occurrences(master), start=1):
        if index > MAX_INDEX or _sort_key(when) > _sort_key(last):
            break
        if when in wanted:
            found.add(when)
    return found


def _is_exception(master: GoogleEvent, instance: GoogleEvent, original: OriginalStart) -> bool:
    """Whether an instance differs from what the master gives at that start."""
    if instance.get("recurrence"):
        return True
    start, end = instance.get("start"), instance.get("end")
    if not isinstance(start, Mapping) or not isinstance(end, Mapping):
        return False  # nothing to say but its being there
    if _span(start, end) != _span(master.get("start"), master.get("end")):
        return True
    if read_original_start(start, all_day=_all_day(master)) != original:
        return True
    if (start.get("timeZone") or None) != ((master.get("start") or {}).get("timeZone") or None):
        return True
    for key in FULL_MANAGED_FIELDS:
        if key in ("start", "end", "recurrence", "iCalUID"):
            continue
        if normalised(key, master.get(key)) != normalised(key, instance.get(key)):
            return True
    return False


def _span(start: Any, end: Any) -> Any:
    if not isinstance(start, Mapping) or not isinstance(end, Mapping):
        return None
    if start.get("date"):
        return dt.date.fromisoformat(str(end["date"])) - dt.date.fromisoformat(str(start["date"]))
    first = read_original_start(start, all_day=False)
    last = read_original_start(
        {**end, "timeZone": end.get("timeZone") or start.get("timeZone")}, all_day=False
    )
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    return last - first


def _exdates(master: Mapping[str, Any], *, all_day: bool, zone: dt.tzinfo) -> list[OriginalStart]:
    out: list[OriginalStart] = []
    for raw in master.get("recurrence") or ():
        head, _, values = str(raw).partition(":")
        params = head.split(";")
        if params[0].strip().upper() != "EXDATE":
            continue
        tz = zone
        for param in params[1:]:
            key, _, value = param.partition("=")
            if key.strip().upper() == "TZID":
                tz = google_zone(value.strip()) or zone
        for text in (v.strip() for v in values.split(",") if v.strip()):
            out.append(_exdate(text, all_day=all_day, zone=tz))
    return out


def _exdate(text: str, *, all_day: bool, zone: dt.tzinfo) -> OriginalStart:
    try:
        if len(text) == 8:
            day = dt.datetime.strptime(text, "%Y%m%d").date()
            if all_day:
                return day
            return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
        if text.upper().endswith("Z"):
            when = dt.datetime.strptime(text.upper(), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        else:
            when = dt.datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
    except ValueError:
        raise MappingError(f"unreadable EXDATE value {text[:20]!r}") from None
    return when.date() if all_day else _utc(when)


# --- "this and following" ------------------------------------------------------------------


def split_from(new_series: Mapping[str, Any], master_event: Mapping[str, Any]) -> bool:
    """Whether `new_series` is the continuation Google made when `master_event` was
    changed "this and following" (its iCalUID is the master's plus `_R<timestamp>`)."""
    uid, new_uid = master_event.get("iCalUID"), new_series.get("iCalUID")
    if not uid or not new_uid or not new_series.get("recurrence"):
        return False
    prefix = f"{uid}_R"
    return str(new_uid).startswith(prefix) and str(new_uid)[len(prefix):][:8].isdigit()
