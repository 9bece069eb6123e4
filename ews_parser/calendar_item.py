"""Reading `t:CalendarItem` elements into exchangelib's own `CalendarItem` models.

exchangelib does the field parsing; this module fixes what it cannot know from a single
element, because the answer is elsewhere in the envelope or in a form Exchange servers
never send but clients do:

- Date-times without an offset ("floating") mean the item's StartTimeZone / EndTimeZone,
  else its MeetingTimeZone, else the request's TimeZoneContext, else UTC. exchangelib would
  read a 19-character one as naive and a longer one (with milliseconds) in the machine's
  local zone; `2014-06-09T04:00:00.000Z` it cannot read at all. Every date-time element is
  rewritten to UTC ("...Z") before exchangelib sees it, so the result never depends on the
  machine it runs on.
- A legacy `MeetingTimeZone` (Exchange 2007) carries `TimeZoneName` and, often, the DST
  rules themselves; exchangelib reads neither. It is read here into `LegacyTimeZone`.
- All-day items: exchangelib turns start/end into dates with `astimezone(_start_timezone)`,
  which is the machine's zone when the item names none. Here the zone is the one above.

References: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/time-zones-and-ews-in-exchange
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/meetingtimezone
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from dateutil import relativedelta as rd
from dateutil import tz as dateutil_tz
from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.fields import BooleanField, DateTimeField
from exchangelib.items import CalendarItem
from exchangelib.properties import EWSElement
from lxml import etree

from ews_parser.common import read_item_id
from ews_parser.errors import EwsParseError
from ews_parser.values import LegacyTimeZone, MimeContent, ParsedItem, TransitionRule
from ews_parser.xml import TYPES, local, t, text

UTC: Final = dt.UTC

#: Elements whose text is an xs:dateTime anywhere inside a calendar item: exchangelib's
#: DateTimeFields, plus those inside occurrences, attendees and proposals.
DATETIME_TAGS: Final = frozenset(
    {t(f.field_uri.partition(":")[2]) for f in CalendarItem.FIELDS if isinstance(f, DateTimeField)}
    | {t(name) for name in ("OriginalStart", "LastResponseTime", "ProposedStart", "ProposedEnd")}
)
_END_TAGS: Final = frozenset({t("End"), t("ProposedEnd")})
#: xs:boolean elements. The schema allows "1" and "0", and exchangelib itself sends them
#: (<t:IsAllDayEvent>1</t:IsAllDayEvent>), but its reader knows only true/false: an
#: all-day item would read as timed.
BOOLEAN_TAGS: Final = frozenset(
    {t(f.field_uri.partition(":")[2]) for f in CalendarItem.FIELDS if isinstance(f, BooleanField)}
)
_BOOLEANS: Final = {"1": "true", "0": "false"}
#: xs:date elements of recurrence ranges. exchangelib reads a date only when it carries an
#: offset or "Z" ("2014-01-07-08:00"); a plain "2026-01-13" it reads as a date-time at
#: midnight in the machine's zone.
DATE_TAGS: Final = frozenset({t("StartDate"), t("EndDate")})
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NORMALISED_TAGS: Final = tuple(BOOLEAN_TAGS | DATE_TAGS | DATETIME_TAGS)

_MEETING_TZ: Final = t("MeetingTimeZone")
_MIME_CONTENT: Final = t("MimeContent")
_START_TZ: Final = t("StartTimeZone")
_END_TZ: Final = t("EndTimeZone")

_WEEKDAYS: Final = {
    name: i
    for i, name in enumerate(
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    )
}
_MONTHS: Final = {
    name: i + 1
    for i, name in enumerate(
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        )
    )
}
_DAY_INDEX: Final = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
_DURATION: Final = re.compile(
    r"^(?P<sign>-)?P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


@dataclass(frozen=True, slots=True)
class Zone:
    """A time zone as the item names it, and the tzinfo that reads its floating times."""

    tzinfo: dt.tzinfo
    ews: EWSTimeZone | None  # set when exchangelib knows it (Windows or IANA id)


@dataclass(slots=True)
class ItemZones:
    start: Zone | None
    end: Zone | None
    legacy: LegacyTimeZone | None
    warnings: list[str]


@lru_cache(maxsize=256)
def zone_from_id(zone_id: str) -> Zone | None:
    """A Windows zone id ("Pacific Standard Time") or IANA name, through exchangelib's
    CLDR map. None when neither knows it."""
    try:
        ews = EWSTimeZone.from_ms_id(zone_id)
    except Exception:  # exchangelib raises UnknownTimeZone, or ZoneInfoNotFoundError
        return None
    return Zone(tzinfo=ews, ews=ews)


def parse_duration(value: str) -> dt.timedelta:
    """xs:duration as EWS uses it for offsets: "PT360M", "-PT60M", "P0DT5H"."""
    match = _DURATION.match(value.strip())
    if not match:
        raise EwsParseError(f"not a duration: {value!r}")
    delta = dt.timedelta(
        days=int(match["d"] or 0),
        hours=int(match["h"] or 0),
        minutes=int(match["m"] or 0),
        seconds=float(match["s"] or 0),
    )
    return -delta if match["sign"] else delta


def read_legacy_time_zone(elem: etree._Element) -> LegacyTimeZone:
    """Read a `t:MeetingTimeZone` (or `t:TimeZone` of the same shape)."""
    name = elem.get("TimeZoneName")
    base = text(elem.find(t("BaseOffset")))
    return LegacyTimeZone(
        name=name.strip() if name else None,
        base_offset=parse_duration(base) if base else None,
        standard=_read_transition(elem.find(t("Standard"))),
        daylight=_read_transition(elem.find(t("Daylight"))),
    )


def _read_transition(elem: etree._Element | None) -> TransitionRule | None:
    if elem is None:
        return None
    offset = text(elem.find(t("Offset")))
    rule = elem.find(t("RelativeYearlyRecurrence"))
    time_text = text(elem.find(t("Time")))
    if rule is None or time_text is None:
        return None
    try:
        return TransitionRule(
            offset=parse_duration(offset) if offset else dt.timedelta(0),
            month=_MONTHS[text(rule.find(t("Month"))) or ""],
            day_of_week=_WEEKDAYS[(text(rule.find(t("DaysOfWeek"))) or "").split()[0]],
            day_of_week_index=_DAY_INDEX[text(rule.find(t("DayOfWeekIndex"))) or ""],
            time=dt.time.fromisoformat(time_text),
        )
    except (KeyError, IndexError, ValueError):
        raise EwsParseError(
            "unreadable MeetingTimeZone transition rule", where=local(elem.tag)
        ) from None


def legacy_tzinfo(zone: LegacyTimeZone) -> dt.tzinfo | None:
    """A tzinfo that follows the legacy zone's own rules (dateutil's tzrange does exactly
    "standard offset, DST offset, yearly start and end rules")."""
    if zone.base_offset is None:
        return None
    # EWS offsets are "UTC minus local"; tzinfo offsets are "local minus UTC".
    std = zone.base_offset + (zone.standard.offset if zone.standard else dt.timedelta(0))
    if zone.daylight is None or zone.standard is None:
        return dt.timezone(-std, zone.name) if zone.name else dt.timezone(-std)
    dst = zone.base_offset + zone.daylight.offset
    return dateutil_tz.tzrange(
        zone.name or "standard",
        -std,
        (zone.name or "standard") + " daylight",
        -dst,
        start=_relative(zone.daylight),
        end=_relative(zone.standard),
    )


def _relative(rule: TransitionRule) -> rd.relativedelta:
    weekday = rd.weekday(rule.day_of_week)(rule.day_of_week_index)
    day = 31 if rule.day_of_week_index == -1 else 1
    return rd.relativedelta(
        month=rule.month,
        day=day,
        weekday=weekday,
        hours=rule.time.hour,
        minutes=rule.time.minute,
    )


def _find(containers: Sequence[etree._Element], tag: str) -> etree._Element | None:
    for container in containers:
        found = container.find(tag)
        if found is not None:
            return found
    return None


def zones_for(containers: Sequence[etree._Element], context_zone: str | None) -> ItemZones:
    """Work out which zone reads an item's floating start and end times.

    `containers` are the item element, or for an UpdateItem change all its partial items
    (a change may set StartTimeZone in one SetItemField and Start in another).
    """
    warnings: list[str] = []
    legacy: LegacyTimeZone | None = None
    meeting: Zone | None = None
    meeting_elem = _find(containers, _MEETING_TZ)
    if meeting_elem is not None:
        legacy = read_legacy_time_zone(meeting_elem)
        if legacy.name:
            meeting = zone_from_id(legacy.name)
        if meeting is None:
            rules = legacy_tzinfo(legacy)
            if rules is not None:
                meeting = Zone(tzinfo=rules, ews=None)
            elif legacy.name:
                warnings.append(f"unknown MeetingTimeZone {legacy.name!r}")

    context: Zone | None = None
    if context_zone:
        context = zone_from_id(context_zone)
        if context is None:
            warnings.append(f"unknown TimeZoneContext {context_zone!r}")

    def declared(tag: str) -> Zone | None:
        chosen: Zone | None = None
        for container in containers:
            for elem in container.findall(tag):
                zone_id = elem.get("Id") or elem.get("Name")
                zone = zone_from_id(zone_id) if zone_id else None
                if zone is None:
                    warnings.append(f"unknown {local(tag)} {zone_id!r}")
                    # exchangelib would only warn through the warnings module and drop it
                    container.remove(elem)
                elif chosen is None:
                    chosen = zone
        return chosen

    start = declared(_START_TZ) or meeting or context
    end = declared(_END_TZ) or start
    return ItemZones(start=start, end=end, legacy=legacy, warnings=warnings)


def normalise_values(item: etree._Element, zones: ItemZones) -> None:
    """Rewrite the values exchangelib misreads, in place: xs:boolean "1"/"0" as
    "true"/"false", every date-time as UTC "YYYY-MM-DDTHH:MM:SSZ", and every plain
    recurrence date as "YYYY-MM-DDZ" (the offset of a date means nothing to EWS)."""
    # one pass over the item (it runs for every item the worker reads)
    for elem in item.iter(*_NORMALISED_TAGS):
        raw = elem.text
        if raw is None:
            continue
        value = raw.strip()
        if not value:
            continue
        tag = elem.tag
        if tag in BOOLEAN_TAGS:
            if value in _BOOLEANS:
                elem.text = _BOOLEANS[value]
        elif tag in DATE_TAGS:
            if _DATE.match(value):
                elem.text = value + "Z"
            elif not _is_date_with_zone(value):
                raise EwsParseError(f"{local(tag)} is not an xs:date: {value[:40]!r}")
        else:
            elem.text = _utc_text(value, elem, zones)


def _utc_text(value: str, elem: etree._Element, zones: ItemZones) -> str:
    """An xs:dateTime as UTC "YYYY-MM-DDTHH:MM:SSZ"; floating ones read in the zone."""
    if len(value) == 20 and value[-1] == "Z" and value[10] == "T":
        try:  # Exchange's own form: validate only (exchangelib reads it right)
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise EwsParseError(f"{local(elem.tag)} is not an xs:dateTime: {value!r}") from None
        return value
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise EwsParseError(f"{local(elem.tag)} is not an xs:dateTime: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        zone = zones.end if elem.tag in _END_TAGS else zones.start
        if zone is None:
            zones.warnings.append(f"floating {local(elem.tag)} with no time zone: read as UTC")
            parsed = parsed.replace(tzinfo=UTC)
        else:
            parsed = parsed.replace(tzinfo=zone.tzinfo)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_date_with_zone(value: str) -> bool:
    if value.endswith("Z"):
        return bool(_DATE.match(value[:-1]))
    return len(value) == 16 and value[10] in "+-" and bool(_DATE.match(value[:10]))


def read_calendar_item(
    elem: etree._Element, *, context_zone: str | None, default_zone: str | None = None
) -> ParsedItem:
    """Read one `t:CalendarItem`. The element is consumed (exchangelib detaches it)."""
    mime_elem = elem.find(_MIME_CONTENT)
    mime = None
    warnings: list[str] = []
    if mime_elem is not None:
        mime = read_mime_content(elem, mime_elem, warnings)
        elem.remove(mime_elem)  # decoded once, here, strictly
    zones = zones_for((elem,), context_zone)
    zones.warnings[:0] = warnings
    normalise_values(elem, zones)
    meeting_elem = elem.find(_MEETING_TZ)
    if meeting_elem is not None:
        elem.remove(meeting_elem)  # exchangelib cannot read it (see module docstring)
    item_id = read_item_id(elem.find(t("ItemId")))
    try:
        # CalendarItem.from_xml would also convert all-day dates, in the wrong zone
        # (see module docstring), so read as the generic Item path does and do that here.
        model: Any = read_model(elem)
    except EwsParseError:
        raise
    except Exception as exc:  # exchangelib's own errors on shapes it does not expect
        raise EwsParseError(
            f"exchangelib could not read the CalendarItem: {type(exc).__name__}: {exc}"
        ) from None
    if model.recurrence is not None:
        validate_recurrence(model.recurrence)
    if mime is not None:
        model.mime_content = mime.data
    if model._start_timezone is None and zones.start is not None and zones.start.ews:
        model._start_timezone = zones.start.ews
    if model._end_timezone is None and zones.end is not None and zones.end.ews:
        model._end_timezone = zones.end.ews
    if model.is_all_day:
        _to_all_day_dates(model, zones, default_zone)
    return ParsedItem(
        item_class="CalendarItem",
        item_id=item_id,
        model=model,
        legacy_time_zone=zones.legacy,
        warnings=tuple(zones.warnings),
        mime_content=mime,
    )


@dataclass(frozen=True, slots=True)
class _FieldIndex:
    """CalendarItem's fields, by the child elements they read (positions in `fields`)."""

    fields: tuple[Any, ...]  # CalendarItem.FIELDS when this was made
    always: frozenset[int]  # read from every item
    by_tag: dict[str, frozenset[int]]  # read when the item has a child of that tag
    #: the value exchangelib gives a field whose element is missing: its default
    absent: dict[str, Any]


_EMPTY_ITEM: Final = etree.Element(t("CalendarItem"))
_field_index: _FieldIndex | None = None


def _read_by_tag(field: Any) -> frozenset[str] | None:
    """The child tags `field.from_xml` looks for, or None when it must always be asked:
    it reads an attribute or the item element itself, or it answers a missing element
    with anything but its own default object (a new list, say)."""
    if getattr(field, "is_attribute", False):
        return None
    if getattr(field, "field_uri", None) is None and field.is_list:
        return None  # e.g. TransitionListField: reads the element's own children
    tags = set()
    with contextlib.suppress(ValueError, AttributeError):  # no field_uri, or not a FieldURIField
        tags.add(field.response_tag())
    value_cls: Any = getattr(field, "value_cls", None)
    if isinstance(value_cls, type) and issubclass(value_cls, EWSElement):
        element_cls: Any = value_cls  # EWSElementField without field_uri, extended props
        with contextlib.suppress(ValueError):  # an abstract class (Attachment): no tag
            tags.add(element_cls.response_tag())
    if not tags:
        return None
    if field.from_xml(elem=_EMPTY_ITEM, account=None) is not field.default:
        return None
    return frozenset(tags)


def _index() -> _FieldIndex:
    """The index of CalendarItem's fields, made again when they change (an extended
    property registered, sync/backends/base.py)."""
    global _field_index
    fields = CalendarItem.FIELDS
    index = _field_index
    if (
        index is None
        or len(index.fields) != len(fields)
        or not all(map(operator.is_, index.fields, fields))
    ):
        always: set[int] = set()
        by_tag: dict[str, set[int]] = {}
        absent: dict[str, Any] = {}
        for position, field in enumerate(fields):
            tags = _read_by_tag(field)
            if tags is None:
                always.add(position)
                continue
            absent[field.name] = field.default
            for tag in tags:
                by_tag.setdefault(tag, set()).add(position)
        index = _field_index = _FieldIndex(
            tuple(fields),
            frozenset(always),
            {tag: frozenset(positions) for tag, positions in by_tag.items()},
            absent,
        )
    return index


def read_model(elem: etree._Element) -> Any:
    """exchangelib's CalendarItem from `elem`, as `Item.from_xml` makes it (each field's
    own `from_xml` in the order of FIELDS, then `CalendarItem(**values)`, then the element
    cleared and detached) but asking only the fields whose elements the item carries: the
    others get the value their `from_xml` gives a missing element, their default. An item
    names a few of the ~80 fields, and asking every one was two thirds of the cost."""
    index = _index()
    asked = set(index.always)
    for tag in {child.tag for child in elem}:
        asked.update(index.by_tag.get(tag, ()))
    values = dict(index.absent)
    for position in sorted(asked):  # FIELDS' order: a field's from_xml detaches what it read
        field = index.fields[position]
        values[field.name] = field.from_xml(elem=elem, account=None)
    CalendarItem._clear(elem)
    return CalendarItem(**values)


def read_mime_content(
    item: etree._Element, elem: etree._Element, warnings: list[str]
) -> MimeContent | None:
    """An item's `t:MimeContent`, decoded strictly as Exchange decodes it (.NET's
    Convert.FromBase64String: whitespace skipped, any other stray character refused;
    exchangelib would skip those too). It is never larger than three quarters of the body,
    which `parse_xml` bounds. None, with a warning, when it is not base64: Exchange
    answers such a request ErrorMimeContentInvalidBase64String."""
    try:
        data = base64.b64decode("".join((elem.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        warnings.append("MimeContent is not base64: not read")
        return None
    sent = frozenset(local(child.tag) for child in item if child is not elem) - {""}
    return MimeContent(data=data, character_set=elem.get("CharacterSet"), sent_beside=sent)


def validate_recurrence(recurrence: Any) -> None:
    """exchangelib reads a pattern with required parts missing (a WeeklyRecurrence
    without DaysOfWeek) and fails only later, when the model is used; the schema requires
    them, so refuse such a recurrence here, with exchangelib's own checks."""
    try:
        recurrence.clean(version=None)
    except Exception as exc:
        raise EwsParseError(f"invalid Recurrence: {exc}", where="Recurrence") from None


def _to_all_day_dates(model: Any, zones: ItemZones, default_zone: str | None) -> None:
    """exchangelib's convention: all-day start and end are dates, end inclusive."""
    fallback = zone_from_id(default_zone) if default_zone else None
    for name, zone in (("start", zones.start), ("end", zones.end)):
        value = getattr(model, name)
        if not isinstance(value, dt.datetime):
            continue
        chosen = zone or fallback
        if chosen is None:
            zones.warnings.append(f"all-day {name} with no time zone: date taken in UTC")
        tzinfo = chosen.tzinfo if chosen else UTC
        if name == "end":
            value -= dt.timedelta(days=1)
        # via a timestamp: EWSDateTime.astimezone accepts only EWSTimeZone, and legacy
        # rule-based zones are dateutil's
        setattr(model, name, dt.datetime.fromtimestamp(value.timestamp(), tz=tzinfo).date())


def is_types_element(elem: etree._Element) -> bool:
    tag = elem.tag
    return isinstance(tag, str) and tag.startswith("{" + TYPES + "}")
