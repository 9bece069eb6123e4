"""iCalendar <-> EWS calendar item, converted the way Exchange converts MimeContent (pure).

Exchange keeps a calendar item's properties, not the iCalendar it was given. `read_calendar`
converts an iCalendar (CreateItem's `t:MimeContent`, decoded) into calendar item fields:
the first VEVENT without RECURRENCE-ID is the item, VEVENTs with its UID and a
RECURRENCE-ID are its modified occurrences, its EXDATEs its deleted ones. Elements a
request sends beside the MimeContent win over what the iCalendar says (`merge`).
`write_calendar` writes an item as the iCalendar GetItem returns (IncludeMimeContent):
METHOD:PUBLISH, one VTIMEZONE in Windows form (TZID the Windows zone id, the year's rules
from 1601) per zone used, the VEVENT with Exchange's X-MICROSOFT-CDO-* properties, then one
VEVENT per modified occurrence. Calendar items carry the iCalendar itself, not a MIME
message around it.

The EWS stand-in answers CreateItem and GetItem with these; the worker maps a CreateItem
whose item is MimeContent only (DavMail's) to Google without asking Exchange
(`calendar_item`), and falls back to reading the item when the iCalendar cannot tell
(`MimeConversionError`).

References:
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/mimecontent
(base64 of the stream; the server ignores CharacterSet on input)
https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxcical/
(the iCalendar <-> appointment conversion: RRULE templates, EXDATE, RECURRENCE-ID, TZID,
X-MICROSOFT-CDO-ALLDAYEVENT, X-MICROSOFT-CDO-BUSYSTATUS)
"""

from __future__ import annotations

import calendar
import datetime as dt
import email
import email.policy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import icalendar
from dateutil.rrule import rrulestr
from ews_parser.calendar_item import zone_from_id
from ews_parser.values import MimeContent
from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Attendee, Body, HTMLBody
from exchangelib.properties import Mailbox as ModelMailbox
from exchangelib.recurrence import Recurrence
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP
from lxml import etree
from lxml import html as lxml_html

from mapping.errors import MappingError
from mapping.recurrence import DAY_CODES, from_rrule, to_rrule

UTC_ZONE: Final = EWSTimeZone("UTC")
Moment = dt.datetime | dt.date

_PARTSTAT_RESPONSE: Final = {
    "ACCEPTED": "Accept", "TENTATIVE": "Tentative", "DECLINED": "Decline",
    "NEEDS-ACTION": "Unknown",
}
_RESPONSE_PARTSTAT: Final = {
    "Accept": "ACCEPTED", "Tentative": "TENTATIVE", "Decline": "DECLINED",
    "Organizer": "ACCEPTED",
}
_MY_RESPONSE: Final = {**_PARTSTAT_RESPONSE, "NEEDS-ACTION": "NoResponseReceived"}
_BUSY_STATUS: Final = {
    "FREE": "Free", "TENTATIVE": "Tentative", "BUSY": "Busy", "OOF": "OOF",
    "WORKINGELSEWHERE": "WorkingElsewhere",
}
_CLASS_SENSITIVITY: Final = {"PUBLIC": "Normal", "PRIVATE": "Private",
                             "CONFIDENTIAL": "Confidential"}
_SENSITIVITY_CLASS: Final = {"Normal": "PUBLIC", "Personal": "PRIVATE", "Private": "PRIVATE",
                             "Confidential": "CONFIDENTIAL"}
_INSTANCE_TYPE: Final = {"Single": "0", "RecurringMaster": "1", "Occurrence": "2",
                         "Exception": "3"}


class MimeConversionError(MappingError):
    """iCalendar that cannot become a calendar item (Exchange answers
    ErrorMimeContentConversionFailed), or whose item depends on what it does not say (a
    floating time, and no zone given to read it in)."""


@dataclass(frozen=True, slots=True)
class Override:
    """A RECURRENCE-ID VEVENT: the occurrence it replaces and the fields it sets."""

    original_start: Moment  # a UTC instant, or a date for an all-day series
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Imported:
    """An iCalendar read as a calendar item: CalendarItem field name -> value for what the
    iCalendar says (start/end aware, or dates with an inclusive end for all-day items, as
    exchangelib has them), plus the series' modified and deleted occurrences."""

    fields: dict[str, Any]
    modified: tuple[Override, ...] = ()
    deleted: tuple[Moment, ...] = ()


# --- import ------------------------------------------------------------------------------


def read_calendar(data: bytes, *, owner: str, default_zone: EWSTimeZone | None) -> Imported:
    """Convert MimeContent (an iCalendar, or a MIME message with a text/calendar part).

    `default_zone` reads floating times and dates all-day items on (the request's
    TimeZoneContext, else the mailbox's zone). None means not known: an iCalendar whose
    item depends on it (floating times, a VTIMEZONE matched by its rules) raises
    MimeConversionError, and an all-day item gets no zone. `owner` is the mailbox address:
    it organises an item without ORGANIZER, and its ATTENDEE line sets MyResponseType on
    a meeting someone else organises."""
    try:
        cal = icalendar.Calendar.from_ical(_calendar_text(data))
        events: list[Any] = list(cal.walk("VEVENT"))
    except MimeConversionError:
        raise
    except Exception as exc:  # icalendar raises ValueError and, on odd input, others
        raise MimeConversionError(f"unreadable iCalendar: {type(exc).__name__}") from None
    if not events:
        raise MimeConversionError("no VEVENT")
    master = next((e for e in events if "RECURRENCE-ID" not in e), events[0])
    reader = _Reader(cal, default_zone, owner)
    try:
        fields = reader.event_fields(master, series=True)
        rules = master.get("RRULE")
        if rules is None or "RECURRENCE-ID" in master:
            return Imported(fields)
        rule = rules[0] if isinstance(rules, list) else rules
        zone = fields["_start_timezone"]
        fields["recurrence"] = reader.recurrence(rule, fields["start"], zone)
        _start_on_first_occurrence(fields, zone)
        all_day = bool(fields["is_all_day"])
        deleted = tuple(reader.original(v, zone, all_day) for v in master.exdates)
        uid = master.get("UID")
        modified = tuple(
            Override(reader.original(e["RECURRENCE-ID"].dt, zone, all_day),
                     reader.event_fields(e, series=False))
            for e in events
            if e is not master and "RECURRENCE-ID" in e and e.get("UID") == uid
        )
    except MimeConversionError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MimeConversionError(f"unconvertible VEVENT: {type(exc).__name__}") from exc
    return Imported(fields, modified, deleted)


def _start_on_first_occurrence(fields: dict[str, Any], zone: EWSTimeZone | None) -> None:
    """A series whose DTSTART its rule skips starts on its first occurrence, its duration
    kept, as Exchange stores it (MS-OXOCAL 2.2.1.5 PidLidAppointmentStartWhole: "the start
    date and time of the first instance according to the recurrence pattern"). The rule is
    expanded as EWS reads it (mapping.recurrence's RRULE for the EWS pattern)."""
    start, end = fields["start"], fields["end"]
    if isinstance(start, dt.datetime):
        tz: dt.tzinfo = ZoneInfo(zone.key) if zone is not None else dt.UTC
        first_from = start.astimezone(tz)
    else:
        tz, first_from = dt.UTC, dt.datetime.combine(start, dt.time(0))
    line = to_rrule(fields["recurrence"], all_day=not isinstance(start, dt.datetime), zone=tz)
    first = next(iter(rrulestr(line, dtstart=first_from)), None)
    if first is None or first == first_from:
        return  # no occurrence at all: Exchange refuses the series (ErrorInvalidRecurrence)
    if isinstance(start, dt.datetime):
        moved: Moment = first.astimezone(dt.UTC)
        fields["start"], fields["end"] = moved, moved + (end - start)
    else:
        fields["start"], fields["end"] = first.date(), first.date() + (end - start)


def _calendar_text(data: bytes) -> str:
    if not data.lstrip()[:15].upper().startswith(b"BEGIN:VCALENDAR"):
        message = email.message_from_bytes(data, policy=email.policy.default)
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    data = payload
                    break
        else:
            raise MimeConversionError("neither an iCalendar nor a message with one")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # never fails: the server ignores CharacterSet


def _address(value: Any) -> str | None:
    text = str(value).strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    return text if "@" in text else None


class _Reader:
    def __init__(
        self, cal: icalendar.Calendar, default_zone: EWSTimeZone | None, owner: str
    ) -> None:
        self.given_default = default_zone
        self.owner = owner.lower()
        self.locations = {
            str(tz.get("TZID")): str(tz.get("X-LIC-LOCATION"))
            for tz in cal.walk("VTIMEZONE") if tz.get("X-LIC-LOCATION")
        }

    # -- time zones

    @property
    def default(self) -> EWSTimeZone:
        if self.given_default is None:
            raise MimeConversionError("the item depends on a time zone nobody named")
        return self.given_default

    def zone_for(self, tzid: str, tzinfo: dt.tzinfo | None, year: int) -> EWSTimeZone:
        """The item's zone for a TZID: a Windows id or IANA name as it is, a path ending in
        one ("/mozilla.org/.../Europe/Berlin"), the VTIMEZONE's X-LIC-LOCATION; else, as
        Exchange matches a custom VTIMEZONE, a Windows zone with the same offsets that
        year (the request's TimeZoneContext first), else UTC."""
        names = [tzid]
        key = getattr(tzinfo, "key", None)
        if key:
            names.append(key)
        parts = tzid.strip("/").split("/")
        names += ["/".join(parts[-2:]), "/".join(parts[-3:])]
        if tzid in self.locations:
            names.append(self.locations[tzid])
        for name in names:
            zone = zone_from_id(name)
            if zone is not None and isinstance(zone.ews, EWSTimeZone):
                return zone.ews
        if tzinfo is None:
            return self.default
        wanted = _offsets(tzinfo, year)
        for candidate in _candidates(self.default):
            if _zone_offsets(candidate, year) == wanted:
                return candidate
        return UTC_ZONE

    def moment(self, prop: Any) -> tuple[Moment, EWSTimeZone | None]:
        """A DTSTART/DTEND value and the zone the item keeps for it (for a date, the
        default zone, None when that is not known)."""
        value: Moment = prop.dt
        tzid = prop.params.get("TZID")
        if not isinstance(value, dt.datetime):
            return value, self.given_default
        year = value.year
        if value.tzinfo is None:  # floating, or a TZID with no definition anywhere
            zone = self.zone_for(str(tzid), None, year) if tzid else self.default
            return value.replace(tzinfo=zone), zone
        if tzid:
            return value, self.zone_for(str(tzid), value.tzinfo, year)
        if value.utcoffset() == dt.timedelta(0):
            return value, UTC_ZONE
        return value, self.zone_for("", value.tzinfo, year)

    def original(self, value: Moment, zone: EWSTimeZone | None, all_day: bool) -> Moment:
        """An EXDATE or RECURRENCE-ID value as the occurrence's original start: a UTC
        instant, or a date (all-day series, and VALUE=DATE exclusions of timed series)."""
        if not isinstance(value, dt.datetime):
            return value
        zone = zone or self.default  # a date-time: the series' zone (an all-day one's default)
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        if all_day:
            return value.astimezone(ZoneInfo(zone.key)).date()
        return value.astimezone(dt.UTC)

    # -- one VEVENT

    def event_fields(self, ev: Any, *, series: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "DTSTART" not in ev:
            raise MimeConversionError("VEVENT without DTSTART")
        start, start_zone = self.moment(ev["DTSTART"])
        if "DTEND" in ev:
            end, end_zone = self.moment(ev["DTEND"])
        elif "DURATION" in ev:
            end, end_zone = start + ev["DURATION"].dt, start_zone
        else:  # RFC 5545 3.6.1: a day for a date, the start instant for a date-time
            end = start + dt.timedelta(days=1) if not isinstance(start, dt.datetime) else start
            end_zone = start_zone
        out.update(self._times(ev, start, end, start_zone, end_zone))
        if "SUMMARY" in ev:
            out["subject"] = str(ev["SUMMARY"])
        if "LOCATION" in ev:
            out["location"] = str(ev["LOCATION"])
        body = self._body(ev)
        if body is not None:
            out["body"] = body
        if "CATEGORIES" in ev:
            out["categories"] = [str(c) for c in ev.categories] or None
        if "CLASS" in ev:
            out["sensitivity"] = _CLASS_SENSITIVITY.get(str(ev["CLASS"]).upper(), "Private")
        busy = self._busy_status(ev)
        if busy is not None:
            out["legacy_free_busy_status"] = busy
        alarm = self._reminder(ev)
        if alarm is not None:
            out["reminder_is_set"] = True
            out["reminder_minutes_before_start"] = alarm
        organizer = _address(ev["ORGANIZER"]) if "ORGANIZER" in ev else None
        out.update(self._attendees(ev, organizer))
        if series:
            if "UID" in ev:
                out["uid"] = str(ev["UID"])
            if str(ev.get("STATUS", "")).upper() == "CANCELLED":
                out["is_cancelled"] = True
            if organizer is not None:
                out["organizer"] = ModelMailbox(
                    name=ev["ORGANIZER"].params.get("CN") or None, email_address=organizer,
                    routing_type="SMTP", mailbox_type="Mailbox")
                if organizer.lower() != self.owner:
                    out["my_response_type"] = self._my_response(ev)
            elif self.owner:  # an item created in a mailbox is organised by its owner
                out["organizer"] = ModelMailbox(email_address=self.owner, routing_type="SMTP",
                                                mailbox_type="Mailbox")
        return out

    def _times(self, ev: Any, start: Moment, end: Moment, start_zone: EWSTimeZone | None,
               end_zone: EWSTimeZone | None) -> dict[str, Any]:
        all_day = not isinstance(start, dt.datetime)
        if (isinstance(start, dt.datetime) and isinstance(end, dt.datetime)
                and str(ev.get("X-MICROSOFT-CDO-ALLDAYEVENT", "")).upper() == "TRUE"):
            # date-times always come with their zone
            start_zone, end_zone = start_zone or self.default, end_zone or self.default
            if _is_midnight(start, start_zone) and _is_midnight(end, end_zone):
                # MS-OXCICAL 2.1.3.1.1.20.28: TRUE with local midnights is an all-day event
                start, end, all_day = (start.astimezone(ZoneInfo(start_zone.key)).date(),
                                       end.astimezone(ZoneInfo(end_zone.key)).date(), True)
        if all_day:
            day = start if not isinstance(start, dt.datetime) else start.date()
            last = end.date() if isinstance(end, dt.datetime) else end
            # exchangelib's all-day end is inclusive; iCalendar's DTEND is exclusive
            return {"start": day, "end": max(day, last - dt.timedelta(days=1)),
                    "is_all_day": True, "_start_timezone": start_zone,
                    "_end_timezone": start_zone}
        if not isinstance(end, dt.datetime):  # a timed start with a date end
            end_zone = self.default
            end = dt.datetime.combine(end, dt.time(0), tzinfo=end_zone)
        return {"start": start, "end": end, "is_all_day": False,
                "_start_timezone": start_zone, "_end_timezone": end_zone}

    def _body(self, ev: Any) -> Body | None:
        for prop in _all(ev.get("X-ALT-DESC")):
            if str(prop.params.get("FMTTYPE", "")).lower() == "text/html":
                return HTMLBody(str(prop))
        if "DESCRIPTION" in ev:
            return Body(str(ev["DESCRIPTION"]))
        return None

    def _busy_status(self, ev: Any) -> str | None:
        # X-MICROSOFT-CDO-BUSYSTATUS wins over TRANSP and STATUS (MS-OXCICAL 2.1.3.1.1.20.31)
        cdo = str(ev.get("X-MICROSOFT-CDO-BUSYSTATUS", "")).upper()
        if cdo in _BUSY_STATUS:
            return _BUSY_STATUS[cdo]
        if str(ev.get("TRANSP", "")).upper() == "TRANSPARENT":
            return "Free"
        if str(ev.get("STATUS", "")).upper() == "TENTATIVE":
            return "Tentative"
        if "TRANSP" in ev:
            return "Busy"
        return None

    def _reminder(self, ev: Any) -> int | None:
        for alarm in ev.walk("VALARM"):
            trigger = alarm.get("TRIGGER")
            if trigger is None or not isinstance(trigger.dt, dt.timedelta):
                continue
            return max(0, int(-trigger.dt.total_seconds() // 60))
        return None

    def _attendees(self, ev: Any, organizer: str | None) -> dict[str, Any]:
        lists: dict[str, list[Attendee]] = {}
        for prop in _all(ev.get("ATTENDEE")):
            address = _address(prop)
            if address is None or (organizer and address.lower() == organizer.lower()):
                continue  # the organizer is not one of the meeting's attendees
            params = prop.params
            role = str(params.get("ROLE", "REQ-PARTICIPANT")).upper()
            if str(params.get("CUTYPE", "")).upper() in ("ROOM", "RESOURCE"):
                kind = "resources"
            elif role in ("OPT-PARTICIPANT", "NON-PARTICIPANT"):
                kind = "optional_attendees"
            else:
                kind = "required_attendees"
            lists.setdefault(kind, []).append(Attendee(
                mailbox=ModelMailbox(name=params.get("CN") or None, email_address=address,
                                     routing_type="SMTP", mailbox_type="Mailbox"),
                response_type=_PARTSTAT_RESPONSE.get(str(params.get("PARTSTAT", "")).upper(),
                                                     "Unknown"),
            ))
        return {kind: lists.get(kind) for kind in
                ("required_attendees", "optional_attendees", "resources")} if lists else {}

    def _my_response(self, ev: Any) -> str:
        for prop in _all(ev.get("ATTENDEE")):
            address = _address(prop)
            if address and address.lower() == self.owner:
                partstat = str(prop.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
                return _MY_RESPONSE.get(partstat, "NoResponseReceived")
        return "NoResponseReceived"

    # -- RRULE

    def recurrence(self, rule: Any, start: Moment, zone: EWSTimeZone | None) -> Recurrence:
        """An RRULE as an EWS Recurrence, through mapping.recurrence (the conversion the
        Google side uses), after what Exchange's import adds to RFC 5545's reading:
        MS-OXCICAL's templates restate DTSTART's time in BYHOUR/BYMINUTE (dropped), and
        "every n years" is kept as every 12n months, since EWS yearly patterns have no
        interval."""
        parts = {str(k).upper(): list(v) if isinstance(v, list) else [v]
                 for k, v in rule.items()}
        for name in ("BYHOUR", "BYMINUTE", "BYSECOND"):
            if len(parts.pop(name, ())) > 1:
                raise MimeConversionError(f"RRULE {name} with several values")
        local = (start.astimezone(ZoneInfo((zone or self.default).key))
                 if isinstance(start, dt.datetime) else start)
        interval = int(parts.get("INTERVAL", [1])[0])
        if parts.get("FREQ") == ["YEARLY"] and interval > 1:
            if parts.pop("BYMONTH", [local.month]) != [local.month]:
                raise MimeConversionError("a multi-year rule in another month than DTSTART")
            parts.update(FREQ=["MONTHLY"], INTERVAL=[12 * interval])
        line = "RRULE:" + icalendar.vRecur(parts).to_ical().decode("ascii")  # type: ignore[no-untyped-call]
        try:
            recurrence = from_rrule([line], start=local,
                                    all_day=not isinstance(start, dt.datetime))
        except MappingError as exc:
            raise MimeConversionError(str(exc)) from None
        assert recurrence is not None
        recurrence.clean(version=None)  # enum names to the numbers the stand-in expands
        return recurrence


def _all(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _is_midnight(value: Moment, zone: EWSTimeZone) -> bool:
    return (isinstance(value, dt.datetime)
            and value.astimezone(ZoneInfo(zone.key)).time() == dt.time(0))


# --- the item a CreateItem makes ----------------------------------------------------------

#: CalendarItem child element -> exchangelib field name (what a request sets explicitly).
ELEMENT_FIELDS: Final = {
    f.field_uri.partition(":")[2]: f.name
    for f in CalendarItem.FIELDS if getattr(f, "field_uri", None)
}


def merge(model: CalendarItem, imported: Imported, sent: Iterable[str]) -> None:
    """Set on `model` (in place) each field the iCalendar gives, except those whose
    element the request sent beside the MimeContent (`sent`: the CalendarItem's child
    element names): as on Exchange, an element sent wins over the iCalendar."""
    explicit = {ELEMENT_FIELDS[name] for name in sent if name in ELEMENT_FIELDS}
    for name, value in imported.fields.items():
        if name not in explicit:
            setattr(model, name, value)


def calendar_item(
    model: CalendarItem, mime: MimeContent, *, owner: str, default_zone: str | None
) -> tuple[CalendarItem, tuple[Moment, ...]]:
    """The item Exchange makes of a CreateItem's CalendarItem that carries MimeContent,
    without asking Exchange: a copy of `model` (ews_parser's read of the elements sent
    beside it) with the iCalendar merged in, and the original starts of the series'
    deleted occurrences (UTC instants, or dates for an all-day series).

    `default_zone` is the request's TimeZoneContext (a Windows or IANA id). Raises
    MimeConversionError when the request cannot tell: iCalendar Exchange would refuse,
    floating times or a VTIMEZONE matched by its rules without a TimeZoneContext (Exchange
    reads them in the mailbox's zone), or modified occurrences (what an exception keeps
    of its master is Exchange's to decide, and read from it)."""
    found = zone_from_id(default_zone) if default_zone else None
    zone = found.ews if found is not None and isinstance(found.ews, EWSTimeZone) else None
    imported = read_calendar(mime.data, owner=owner, default_zone=zone)
    if imported.modified:
        raise MimeConversionError("the series has modified occurrences")
    item = CalendarItem(**{f.name: getattr(model, f.name) for f in CalendarItem.FIELDS})
    merge(item, imported, mime.sent_beside)
    item.mime_content = None  # Exchange keeps the properties, not the iCalendar
    return item, imported.deleted


# --- time zone matching ------------------------------------------------------------------


def _samples(year: int) -> list[dt.datetime]:
    return [dt.datetime(year, month, day, 12, tzinfo=dt.UTC)
            for month in range(1, 13) for day in (1, 15)]


def _offsets(tzinfo: dt.tzinfo, year: int) -> tuple[dt.timedelta | None, ...]:
    return tuple(s.astimezone(tzinfo).utcoffset() for s in _samples(year))


@lru_cache(maxsize=4096)
def _zone_offsets(zone: EWSTimeZone, year: int) -> tuple[dt.timedelta | None, ...]:
    return _offsets(ZoneInfo(zone.key), year)


def _candidates(first: EWSTimeZone) -> Iterable[EWSTimeZone]:
    yield first
    for ms_id in MS_TIMEZONE_TO_IANA_MAP:
        zone = zone_from_id(ms_id)
        if zone is not None and isinstance(zone.ews, EWSTimeZone):
            yield zone.ews


# --- export ------------------------------------------------------------------------------


def write_calendar(item: Any, exceptions: Sequence[Any] = (), *, now: dt.datetime) -> bytes:
    """The iCalendar GetItem returns as an item's MimeContent.

    `item` is the view of a single item, recurring master, occurrence or exception (as
    GetItem serialises it); `exceptions` the views of a master's modified occurrences."""
    zone = _zone(item._start_timezone)
    end_zone = _zone(item._end_timezone) if not item.is_all_day else zone
    cal = icalendar.Calendar()
    cal.add("method", "PUBLISH")
    cal.add("prodid", "Microsoft Exchange Server 2010")
    cal.add("version", "2.0")
    year = _local(item.start, zone).year
    for used in dict.fromkeys((zone, end_zone)):
        cal.add_component(vtimezone(used, year))
    cal.add_component(_vevent(item, zone, end_zone, now))
    for exc in exceptions:
        exc.organizer = item.organizer  # an exception keeps its series' organizer
        cal.add_component(_vevent(exc, zone, _zone(exc._end_timezone), now))
    data: bytes = cal.to_ical(sorted=False)
    return data


def _zone(value: Any) -> EWSTimeZone:
    return value if isinstance(value, EWSTimeZone) else UTC_ZONE


def _local(value: dt.datetime, zone: EWSTimeZone) -> dt.datetime:
    """Wall-clock time in `zone`, naive. EWSDateTime and EWSTimeZone arithmetic differ
    from plain datetime's, so this goes through plain values."""
    return dt.datetime.fromtimestamp(value.timestamp(), tz=ZoneInfo(zone.key)).replace(
        tzinfo=None)


def _add_time(ev: icalendar.Event, name: str, value: dt.datetime, zone: EWSTimeZone,
              all_day: bool) -> None:
    local = _local(value, zone)
    if all_day:
        ev.add(name, local.date())
    else:
        ev.add(name, local, parameters={"TZID": zone.ms_id})


def _vevent(model: Any, zone: EWSTimeZone, end_zone: EWSTimeZone, now: dt.datetime) -> Any:
    ev = icalendar.Event()
    all_day = bool(model.is_all_day)
    organizer = model.organizer
    if model.is_meeting and organizer is not None and organizer.email_address:
        # an appointment without attendees is no meeting: Exchange writes no ORGANIZER
        ev.add("organizer", _cal_address(organizer.name, organizer.email_address, {}))
    roles = (("required_attendees", {"ROLE": "REQ-PARTICIPANT"}),
             ("optional_attendees", {"ROLE": "OPT-PARTICIPANT"}),
             ("resources", {"CUTYPE": "RESOURCE", "ROLE": "NON-PARTICIPANT"}))
    for name, params in roles:
        for attendee in getattr(model, name) or ():
            box = attendee.mailbox
            if box is None or not box.email_address:
                continue
            extra = {**params, "PARTSTAT": _RESPONSE_PARTSTAT.get(attendee.response_type or "",
                                                                  "NEEDS-ACTION"),
                     "RSVP": "TRUE"}
            ev.add("attendee", _cal_address(box.name, box.email_address, extra))
    body = model.body
    if body:
        text = _text_of(body) if isinstance(body, HTMLBody) else str(body)
        ev.add("description", text, parameters={"LANGUAGE": "en-US"})
    if model.recurrence is not None:
        line = to_rrule(model.recurrence, all_day=all_day, zone=ZoneInfo(zone.key))
        ev.add("rrule", icalendar.vRecur.from_ical(line.partition(":")[2]))
        deleted = [d.start for d in model.deleted_occurrences or ()]
        if deleted:
            locals_ = [_local(d, zone) for d in deleted]
            if all_day:
                ev.add("exdate", [d.date() for d in locals_])
            else:
                ev.add("exdate", locals_, parameters={"TZID": zone.ms_id})
    if model.uid:
        ev.add("uid", model.uid)
    if model.type in ("Occurrence", "Exception") and model.original_start is not None:
        _add_time(ev, "recurrence-id", model.original_start, zone, all_day)
    if model.subject is not None:
        ev.add("summary", model.subject, parameters={"LANGUAGE": "en-US"})
    _add_time(ev, "dtstart", model.start, zone, all_day)
    _add_time(ev, "dtend", model.end, end_zone if not all_day else zone, all_day)
    ev.add("class", _SENSITIVITY_CLASS.get(model.sensitivity or "Normal", "PUBLIC"))
    ev.add("priority", 5)
    ev.add("dtstamp", dt.datetime.fromtimestamp(now.timestamp(), dt.UTC))
    busy = model.legacy_free_busy_status or "Busy"
    ev.add("transp", "TRANSPARENT" if busy == "Free" else "OPAQUE")
    status = ("CANCELLED" if model.is_cancelled
              else "TENTATIVE" if busy == "Tentative" else "CONFIRMED")
    ev.add("status", status)
    ev.add("sequence", model.appointment_sequence_number or 0)
    if model.location is not None:
        ev.add("location", model.location, parameters={"LANGUAGE": "en-US"})
    if model.categories:
        ev.add("categories", list(model.categories))
    cdo_busy = {v: k for k, v in _BUSY_STATUS.items()}.get(busy, "BUSY")
    ev.add("x-microsoft-cdo-appt-sequence", str(model.appointment_sequence_number or 0))
    ev.add("x-microsoft-cdo-busystatus", cdo_busy)
    ev.add("x-microsoft-cdo-intendedstatus", cdo_busy)
    ev.add("x-microsoft-cdo-alldayevent", "TRUE" if all_day else "FALSE")
    ev.add("x-microsoft-cdo-importance", "1")
    ev.add("x-microsoft-cdo-insttype", _INSTANCE_TYPE.get(model.type or "Single", "0"))
    if isinstance(body, HTMLBody):
        ev.add("x-alt-desc", str(body), parameters={"FMTTYPE": "text/html"})
    if model.reminder_is_set:
        alarm = icalendar.Alarm()
        alarm.add("description", "REMINDER")
        alarm.add("trigger", dt.timedelta(minutes=-(model.reminder_minutes_before_start or 0)),
                  parameters={"RELATED": "START"})
        alarm.add("action", "DISPLAY")
        ev.add_component(alarm)
    return ev


def _cal_address(name: str | None, address: str, params: dict[str, str]) -> Any:
    value = icalendar.vCalAddress(f"mailto:{address}")
    if name:
        value.params["CN"] = name
    for key, param in params.items():
        value.params[key] = param
    return value


def _text_of(html: str) -> str:
    try:
        text: str = lxml_html.fromstring(html).text_content()  # type: ignore[attr-defined]
    except (etree.ParserError, ValueError):
        return html
    return text.strip()


@dataclass(frozen=True, slots=True)
class _Rule:
    """One yearly transition: into `offset_to` at `time` (local, before the change) on the
    `nth` (-1 last) `weekday` of `month`."""

    offset_from: dt.timedelta
    offset_to: dt.timedelta
    month: int
    nth: int
    weekday: int  # 0 Monday
    time: dt.time


@dataclass(frozen=True, slots=True)
class _ZoneRules:
    standard: _Rule
    daylight: _Rule | None = None


def vtimezone(zone: EWSTimeZone, year: int) -> Any:
    """A VTIMEZONE as Exchange writes one: TZID the Windows id, STANDARD and DAYLIGHT
    starting 1601-01-01 with the zone's yearly rule (the rule of `year`)."""
    rules = _zone_rules(zone, year)
    tz = icalendar.Timezone()
    tz.add("tzid", zone.ms_id)
    for kind, rule in (("STANDARD", rules.standard), ("DAYLIGHT", rules.daylight)):
        if rule is None:
            continue
        part = icalendar.TimezoneStandard() if kind == "STANDARD" else \
            icalendar.TimezoneDaylight()
        part.add("dtstart", dt.datetime.combine(dt.date(1601, 1, 1), rule.time))
        if rules.daylight is not None:
            day = f"{rule.nth}{DAY_CODES[rule.weekday]}"
            part.add("rrule", icalendar.vRecur(
                {"FREQ": "YEARLY", "INTERVAL": 1, "BYDAY": [day], "BYMONTH": rule.month}))
        part.add("tzoffsetfrom", rule.offset_from)
        part.add("tzoffsetto", rule.offset_to)
        tz.add_component(part)
    return tz


@lru_cache(maxsize=512)
def _zone_rules(zone: EWSTimeZone, year: int) -> _ZoneRules:
    plain = ZoneInfo(zone.key)  # EWSDateTime arithmetic is not plain datetime's
    changes = _transitions(plain, year)
    if len(changes) != 2:  # no DST that year (or a one-off change): the offset at New Year
        offset = dt.datetime(year, 1, 1, tzinfo=plain).utcoffset() or dt.timedelta(0)
        return _ZoneRules(_Rule(offset, offset, 1, 1, 0, dt.time(0)))
    rules = [_rule_of(when, before, after) for when, before, after in changes]
    standard, daylight = sorted(rules, key=lambda r: r.offset_to)
    return _ZoneRules(standard, daylight)


def _rule_of(when: dt.datetime, before: dt.timedelta, after: dt.timedelta) -> _Rule:
    local = (when + before).replace(tzinfo=None)
    last = calendar.monthrange(local.year, local.month)[1]
    nth = -1 if local.day + 7 > last else (local.day - 1) // 7 + 1
    return _Rule(before, after, local.month, nth, local.weekday(), local.time())


def _transitions(zone: dt.tzinfo, year: int) -> list[tuple[dt.datetime, dt.timedelta,
                                                           dt.timedelta]]:
    """(UTC instant, offset before, offset after) of each offset change in `year`."""
    def offset(at: dt.datetime) -> dt.timedelta:
        return at.astimezone(zone).utcoffset() or dt.timedelta(0)

    out = []
    day = dt.timedelta(days=1)
    at = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
    while at < end:
        before, after = offset(at), offset(at + day)
        if before != after:
            low, high = at, at + day
            while high - low > dt.timedelta(minutes=1):
                middle = low + (high - low) / 2
                if offset(middle) == before:
                    low = middle
                else:
                    high = middle
            out.append((high.replace(second=0, microsecond=0), before, after))
        at += day
    return out
