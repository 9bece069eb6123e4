"""The core field mapping between an EWS calendar item (exchangelib's `CalendarItem`) and
a Google Calendar v3 event resource, both ways, and the Google patch for an UpdateItem.

Core fields: subject, body, location, start/end with zones, all-day, reminder,
sensitivity, free/busy, categories, UID, IsCancelled, recurrence. Attendees and the
organizer are never written here: nothing this module returns can cause an invitation.
Whatever cannot survive the trip is listed, with its rule, in `LOSSY_FIELDS`.

https://developers.google.com/workspace/calendar/api/v3/reference/events#resource
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/calendaritem
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo

from ews_parser.fields import field_for
from ews_parser.values import FieldUpdate, FieldURI, LegacyTimeZone
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Body, HTMLBody

from mapping.body import html_to_text, looks_like_html
from mapping.errors import MappingError
from mapping.online import normalised_conference
from mapping.people import normalised_attendees
from mapping.recurrence import canonical_rrule, from_rrule, to_rrule
from mapping.zones import google_zone, item_zone, zone_for

GoogleEvent = dict[str, Any]

#: Top-level keys of a Google event that calsync writes.
MANAGED_FIELDS: Final[tuple[str, ...]] = (
    "summary",
    "description",
    "location",
    "start",
    "end",
    "recurrence",
    "iCalUID",
    "reminders",
    "visibility",
    "transparency",
    "extendedProperties",
)

#: `extendedProperties.private` keys calsync owns (others are left alone).
FREE_BUSY_PROPERTY: Final = "ews_free_busy"
SENSITIVITY_PROPERTY: Final = "ews_sensitivity"
CANCELLED_PROPERTY: Final = "ews_is_cancelled"
CATEGORIES_PROPERTY: Final = "categories"
MANAGED_PROPERTIES: Final[tuple[str, ...]] = (
    FREE_BUSY_PROPERTY,
    SENSITIVITY_PROPERTY,
    CANCELLED_PROPERTY,
    CATEGORIES_PROPERTY,
)

#: Google truncates longer extended property values (extended-properties guide; the
#: number is not verified against the live service, see semantics.md section 7).
MAX_PROPERTY_VALUE: Final = 1024
#: Google's range for reminder override minutes (discovery document).
MAX_REMINDER_MINUTES: Final = 40320
#: Outlook's default reminder, for Google's "calendar default" whose value we cannot know.
DEFAULT_REMINDER_MINUTES: Final = 15

_VISIBILITY: Final = MappingProxyType(
    {
        "Normal": "default",
        "Personal": "private",
        "Private": "private",
        "Confidential": "confidential",
    }
)
_FREE: Final = "Free"
_FREE_BUSY: Final = frozenset({"Free", "Tentative", "Busy", "OOF", "WorkingElsewhere", "NoData"})
_ONE_DAY: Final = dt.timedelta(days=1)

_ZONE_RULE: Final = (
    "Exchange stores Windows zone ids. A Windows id becomes its CLDR IANA zone "
    "(exchangelib.winzone); an IANA zone written to Exchange comes back as the primary IANA "
    "zone of its Windows zone (Europe/Oslo -> 'W. Europe Standard Time' -> Europe/Berlin), "
    "same instants. An item with no zone gets default_zone, else UTC; a Google zone with no "
    "Windows zone becomes UTC, same instants. A legacy MeetingTimeZone with its own offsets "
    "and DST rules (to_google_full) becomes the IANA zone whose offsets equal those rules at "
    "every transition over the series' years (the named zone first, else the first primary "
    "zone of a Windows zone; a series with no end: 5 years); with none, the instants are "
    "kept in the named zone, else default_zone, else UTC, and a warning says the wall clock "
    "of later occurrences may differ."
)
_DATE_TIME_RULE: Final = (
    "Seconds precision (EWS has no fractions); written with the offset of the event's own "
    "zone, so '...Z' spellings are not kept."
)
_DATE_RULE: Final = (
    "Google all-day dates carry no zone: EWS all-day items lose theirs (Exchange applies the "
    "mailbox zone when writing). Google's end is exclusive, exchangelib's inclusive: "
    "end + 1 day; an inclusive end before the start becomes a one-day event."
)
_EMPTY_RULE: Final = "Empty and missing are the same: left out of the event, None in EWS."

#: Every field that cannot survive the trip (Google names), and the rule applied.
LOSSY_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "summary": _EMPTY_RULE,
        "location": (
            _EMPTY_RULE + " With people and online meetings (to_google_full): a location "
            "that is exactly the join URL is left out (conferenceData carries it), and an "
            "event without location gets the join URL as its EWS location."
        ),
        "description": (
            "An HTML body becomes plain text (lxml.html): paragraphs become blank-line "
            "separated, lines and list items stay lines, a link keeps its address as "
            "'words <href>'; formatting, images and styles are dropped. A description that "
            "carries Google's rich-text tags goes to Exchange as an HTML body and comes back "
            "as that text. Text bodies pass as they are. " + _EMPTY_RULE
        ),
        "start.timeZone": _ZONE_RULE,
        "end.timeZone": _ZONE_RULE,
        "start.dateTime": _DATE_TIME_RULE,
        "end.dateTime": _DATE_TIME_RULE,
        "start.date": _DATE_RULE,
        "end.date": _DATE_RULE,
        "reminders": (
            "EWS has one reminder. Google's useDefault (or no reminders key) becomes a "
            "15-minute reminder (Outlook's default; the calendar's own default is not known "
            "here). Several overrides become the earliest popup (else the earliest of any "
            "method); email reminders become popups. Minutes are clamped to Google's "
            "0..40320. ReminderMinutesBeforeStart is not kept when ReminderIsSet is false."
        ),
        "visibility": (
            "Google 'public' becomes Normal and comes back 'default'. EWS Personal and Private "
            "both show as 'private'; Personal is kept in "
            "extendedProperties.private.ews_sensitivity."
        ),
        "transparency": (
            "Free <-> transparent, every other LegacyFreeBusyStatus <-> opaque; the exact EWS "
            "value is kept in extendedProperties.private.ews_free_busy and wins while it "
            "agrees with transparency; Google opaque with a Free record becomes Busy."
        ),
        "extendedProperties.private.categories": (
            "A JSON list; categories that would push it past Google's 1024-character value "
            "limit are dropped from the end. Unreadable JSON reads as no categories."
        ),
        "extendedProperties.private.ews_is_cancelled": (
            "IsCancelled is read-only in EWS: kept for the record ('true' or absent), never "
            "written back by Exchange. The Google event stays confirmed."
        ),
        "recurrence": (
            "One RRULE within EWS's six patterns; anything else raises MappingError (to_ews). "
            "EWS's StartDate is not carried (the series starts at start). EndDate becomes "
            "UNTIL at 23:59:59 of that day in start.timeZone (a DATE for all-day), and an "
            "UNTIL comes back as the local date of the last start it allows. Days 29-31 are "
            "written BYMONTHDAY=28..d;BYSETPOS=-1 (EWS uses the month's last day); a Google "
            "BYMONTHDAY=d without it comes back that way. RelativeMonthly/Yearly on 'Day' "
            "First..Fourth come back as Absolute patterns on day 1..4 (same dates). "
            "FREQ=DAILY;BYDAY=... comes back WEEKLY. INTERVAL=1 and WKST=MO are left out. "
            "Missing BYDAY/BYMONTHDAY/BYMONTH are filled from start. RDATE lines are not read. "
            "EXDATE lines are not written: a deleted occurrence is a cancelled instance; a "
            "master's EXDATE values are read as deleted occurrences (exceptions_from) and "
            "come back as cancelled instances."
        ),
        "attendees": (
            "Required, optional and resource attendees <-> one list with optional / "
            "resource, in that order; an address listed twice keeps its first place "
            "(case-insensitive); an attendee without an SMTP address (EX routing, no '@') "
            "is left out, Google requires one. LastResponseTime, ProposedStart/End, and "
            "Google's self, id, comment and additionalGuests are not carried. "
            + _EMPTY_RULE
        ),
        "attendees.responseStatus": (
            "Accept/Tentative/Decline/NoResponseReceived <-> accepted/tentative/declined/"
            "needsAction. Unknown becomes needsAction and comes back NoResponseReceived. "
            "Organizer becomes accepted with organizer: true (also set for the organizer's "
            "own address, so its Accept comes back Organizer); organizer: true with "
            "accepted comes back Organizer, with any other status that status. Exchange "
            "sets ResponseType from replies: what is written is kept only in the model."
        ),
        "organizer": (
            "Read-only both ways: Google writes it only on import, Exchange sets it to the "
            "mailbox that creates the item. Kept as email and displayName (self, id "
            "dropped); an organizer without an SMTP address is left out."
        ),
        "conferenceData": (
            "Only the join URL survives: the first video entry point's uri (else the "
            "read-only hangoutLink) <-> NetShowUrl (EWS reads it first, then a Teams / Meet / "
            "Zoom URL in Location, then in the body). conferenceSolution is derived from the "
            "URL (Meet: hangoutsMeet; Teams, Zoom: addOn; another URL: none); conferenceId, "
            "labels, phone/sip/more entry points, notes, parameters and createRequest are "
            "dropped. Google reads and writes it only with conferenceDataVersion=1."
        ),
        "hangoutLink": (
            "Read-only in Google: an event with a hangoutLink and no conferenceData comes "
            "back with that link as conferenceData."
        ),
        "status": (
            "Only instances: a deleted occurrence <-> a cancelled instance (id, "
            "recurringEventId, originalStartTime, status). A cancelled single event or "
            "master is a deletion, not mapped here."
        ),
        "originalStartTime": (
            "Seconds precision, written in the master's start.timeZone (a date for an "
            "all-day series). An instance whose original start is not an occurrence of the "
            "master's rule (a series trimmed by 'this and following') is dropped; an "
            "instance that differs from its master in nothing mapped is not an exception."
        ),
        "recurringEventId": (
            "'This and following' splits are not linked in EWS: the trimmed master and the "
            "new series (iCalUID <uid>_R<timestamp>) are two EWS series, and an EWS series "
            "ended and restarted by Outlook is two Google series."
        ),
    }
)


# --- EWS -> Google -----------------------------------------------------------------------


def to_google(item: CalendarItem, *, default_zone: str | None = None) -> GoogleEvent:
    """The Google event for an EWS calendar item (as ews_parser.parse returns it:
    aware UTC datetimes, or dates for all-day items with exchangelib's INCLUSIVE end).
    No 'id' key: the caller sets it."""
    start_zone = item_zone(item._start_timezone, default_zone)
    end_zone = item_zone(item._end_timezone, None) if item._end_timezone else start_zone
    return google_event(item, start_zone, end_zone)


def google_event(item: CalendarItem, start_zone: EWSTimeZone, end_zone: EWSTimeZone) -> GoogleEvent:
    """`to_google` with the zones already chosen (mapping.full picks them for legacy
    MeetingTimeZone rules)."""
    event: GoogleEvent = {}
    if item.subject:
        event["summary"] = str(item.subject)
    description = _description(item.body)
    if description:
        event["description"] = description
    if item.location:
        event["location"] = str(item.location)

    if item.start is None or item.end is None:
        raise MappingError("a calendar item without start or end")
    if item.is_all_day:
        first = _all_day(item.start, start_zone, end=False)
        last = max(_all_day(item.end, end_zone, end=True), first)
        event["start"] = {"date": first.isoformat()}
        event["end"] = {"date": (last + _ONE_DAY).isoformat()}
    else:
        event["start"] = _date_time(item.start, start_zone, "start")
        event["end"] = _date_time(item.end, end_zone, "end")
    if item.recurrence is not None:
        event["recurrence"] = [
            to_rrule(item.recurrence, all_day=bool(item.is_all_day), zone=start_zone)
        ]
    if item.uid:
        event["iCalUID"] = str(item.uid)

    overrides = []
    if item.reminder_is_set:
        minutes = min(max(int(item.reminder_minutes_before_start or 0), 0), MAX_REMINDER_MINUTES)
        overrides.append({"method": "popup", "minutes": minutes})
    event["reminders"] = {"useDefault": False, "overrides": overrides}

    sensitivity = item.sensitivity or "Normal"
    event["visibility"] = _VISIBILITY.get(sensitivity, "default")
    free_busy = item.legacy_free_busy_status or "Busy"
    event["transparency"] = "transparent" if free_busy == _FREE else "opaque"

    private: dict[str, str] = {FREE_BUSY_PROPERTY: free_busy}
    if sensitivity == "Personal":
        private[SENSITIVITY_PROPERTY] = sensitivity
    if item.is_cancelled:
        private[CANCELLED_PROPERTY] = "true"
    categories = _categories_value(item.categories or ())
    if categories:
        private[CATEGORIES_PROPERTY] = categories
    event["extendedProperties"] = {"private": private}
    return event


def _description(body: Any) -> str:
    if not body:
        return ""
    if isinstance(body, HTMLBody):
        return html_to_text(str(body))
    return str(body)


def _all_day(value: dt.date, zone: EWSTimeZone, *, end: bool) -> dt.date:
    """An all-day bound as a date (exchangelib's inclusive convention for the end)."""
    if not isinstance(value, dt.datetime):
        return dt.date(value.year, value.month, value.day)
    if value.tzinfo is None:
        raise MappingError("an all-day item with a naive start or end")
    if end:
        value -= _ONE_DAY  # EWS sends the exclusive midnight
    local = dt.datetime.fromtimestamp(value.timestamp(), tz=zone)
    return dt.date(local.year, local.month, local.day)


def _date_time(value: dt.date, zone: EWSTimeZone, name: str) -> dict[str, str]:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise MappingError(f"a timed item whose {name} is not an aware date-time: {value!r}")
    # through a plain ZoneInfo: EWSTimeZone.fromutc drops `fold`, so the repeated hour
    # when DST ends would be written with the summer offset (an hour early)
    local = dt.datetime.fromtimestamp(int(value.timestamp()), tz=ZoneInfo(zone.key))
    return {"dateTime": local.isoformat(timespec="seconds"), "timeZone": zone.key}


def _categories_value(categories: Sequence[str]) -> str:
    kept = [str(c) for c in categories]
    while kept:
        value = json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
        if len(value) <= MAX_PROPERTY_VALUE:
            return value
        kept.pop()
    return ""


# --- Google -> EWS -----------------------------------------------------------------------


def to_ews(event: GoogleEvent) -> dict[str, Any]:
    """exchangelib CalendarItem keyword arguments for a Google event (the inverse on the
    supported fields): CalendarItem(**to_ews(e)) must be constructible."""
    start_raw, end_raw = event.get("start"), event.get("end")
    if not isinstance(start_raw, Mapping) or not isinstance(end_raw, Mapping):
        raise MappingError("an event without start or end")
    private = _private(event)
    kwargs: dict[str, Any] = {
        "subject": event.get("summary") or None,
        "body": _body(event.get("description")),
        "location": event.get("location") or None,
    }
    series_start: dt.date | dt.datetime
    if start_raw.get("date"):
        first = _google_date(start_raw, "start")
        last = max(_google_date(end_raw, "end") - _ONE_DAY, first)
        kwargs.update(
            start=EWSDate(first.year, first.month, first.day),
            end=EWSDate(last.year, last.month, last.day),
            is_all_day=True,
            _start_timezone=None,
            _end_timezone=None,
        )
        series_start = first
    else:
        start_zone = _event_zone(start_raw)
        end_zone = _event_zone(end_raw) or start_zone
        start = _local(_instant(start_raw, start_zone, "start"), start_zone)
        end = _local(_instant(end_raw, end_zone, "end"), end_zone)
        kwargs.update(
            start=_ews_datetime(start, start_zone),
            end=_ews_datetime(end, end_zone),
            is_all_day=False,
            _start_timezone=start_zone,
            _end_timezone=end_zone,
        )
        series_start = start
    kwargs["recurrence"] = from_rrule(
        list(event.get("recurrence") or ()),
        start=series_start,
        all_day=bool(kwargs["is_all_day"]),
    )
    kwargs["uid"] = event.get("iCalUID") or None

    reminder_is_set, minutes = _reminder(event.get("reminders"))
    kwargs["reminder_is_set"] = reminder_is_set
    kwargs["reminder_minutes_before_start"] = minutes

    visibility = event.get("visibility") or "default"
    if visibility == "private":
        personal = private.get(SENSITIVITY_PROPERTY) == "Personal"
        kwargs["sensitivity"] = "Personal" if personal else "Private"
    elif visibility == "confidential":
        kwargs["sensitivity"] = "Confidential"
    else:
        kwargs["sensitivity"] = "Normal"

    recorded = private.get(FREE_BUSY_PROPERTY)
    if event.get("transparency") == "transparent":
        kwargs["legacy_free_busy_status"] = _FREE
    elif recorded in _FREE_BUSY and recorded != _FREE:
        kwargs["legacy_free_busy_status"] = recorded
    else:
        kwargs["legacy_free_busy_status"] = "Busy"

    kwargs["categories"] = _categories(private.get(CATEGORIES_PROPERTY)) or None
    kwargs["is_cancelled"] = private.get(CANCELLED_PROPERTY) == "true"
    return kwargs


def _local(value: dt.datetime, zone: EWSTimeZone | None) -> dt.datetime:
    """`value` on the zone's wall clock, `fold` set in the repeated hour (a plain ZoneInfo:
    EWSTimeZone.fromutc drops fold)."""
    return value.astimezone(ZoneInfo(zone.key) if zone is not None else dt.UTC)


def _ews_datetime(value: dt.datetime, zone: EWSTimeZone | None = None) -> EWSDateTime:
    """exchangelib's own type (its fields refuse a plain datetime), in `zone`. EWSDateTime
    has no `fold`: the second of two equal wall-clock times (when DST ends) is kept in UTC,
    which is the same instant."""
    if isinstance(value, EWSDateTime):
        return value
    if value.fold:
        return EWSDateTime.from_datetime(value.astimezone(dt.UTC))
    if zone is not None:
        value = value.replace(tzinfo=zone)
    return EWSDateTime.from_datetime(value)


def _private(event: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = event.get("extendedProperties")
    private = properties.get("private") if isinstance(properties, Mapping) else None
    return private if isinstance(private, Mapping) else {}


def _body(description: Any) -> Body | None:
    if not description:
        return None
    text = str(description)
    return HTMLBody(text) if looks_like_html(text) else Body(text)


def _google_date(raw: Mapping[str, Any], name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(raw["date"]))
    except (KeyError, ValueError):
        raise MappingError(f"all-day event whose {name} is not a date: {raw!r}") from None


def _event_zone(raw: Mapping[str, Any]) -> EWSTimeZone | None:
    name = raw.get("timeZone")
    return google_zone(str(name)) if name else None


def _instant(raw: Mapping[str, Any], zone: EWSTimeZone | None, name: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(str(raw["dateTime"]))
    except (KeyError, ValueError):
        raise MappingError(f"timed event whose {name} has no RFC 3339 dateTime") from None
    if value.tzinfo is None:
        if zone is None:
            raise MappingError(f"{name}.dateTime without offset or timeZone")
        value = value.replace(tzinfo=zone)
    return value.replace(microsecond=0)


def _reminder(reminders: Any) -> tuple[bool, int | None]:
    if not isinstance(reminders, Mapping) or reminders.get("useDefault"):
        return True, DEFAULT_REMINDER_MINUTES
    overrides = [
        o
        for o in reminders.get("overrides") or ()
        if isinstance(o, Mapping) and isinstance(o.get("minutes"), int)
    ]
    if not overrides:
        return False, None
    popups = [o for o in overrides if o.get("method") == "popup"] or overrides
    return True, max(int(o["minutes"]) for o in popups)


def _categories(value: Any) -> list[str]:
    if not value:
        return []
    try:
        parsed = json.loads(str(value))
    except ValueError:
        return []
    return [str(c) for c in parsed] if isinstance(parsed, list) else []


# --- ids and hashes ----------------------------------------------------------------------


def event_id_for(ews_item_id: str) -> str:
    """Deterministic Google event id for an Exchange item id: base32hex (0-9a-v), 5-1024
    chars: the lowercase, unpadded b32hexencode of the id's sha256 digest (52 chars)."""
    digest = hashlib.sha256(ews_item_id.encode("utf-8")).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def content_hash(event: GoogleEvent, fields: Sequence[str] = MANAGED_FIELDS) -> str:
    """Stable hash of the mapped (managed) fields only, ignoring Google-owned keys
    (etag, updated, created, htmlLink, sequence, id, status when confirmed, ...).
    `fields`: mapping.full.FULL_MANAGED_FIELDS for events mapped with people."""
    canonical = {key: normalised(key, event.get(key)) for key in fields}
    if event.get("status") not in (None, "confirmed"):
        canonical["status"] = event["status"]
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalised(key: str, value: Any) -> Any:
    """One spelling for equal values of a managed field, with Google's defaults filled
    in (no reminders = the calendar default, no transparency = opaque, ...)."""
    if key in ("start", "end"):
        return _normal_time(value)
    if key == "recurrence":
        return [_normal_rule(str(line)) for line in value] if value else None
    if key == "reminders":
        if not isinstance(value, Mapping):
            return {"useDefault": True, "overrides": []}
        overrides = sorted(
            (str(o.get("method")), int(o.get("minutes") or 0))
            for o in value.get("overrides") or ()
            if isinstance(o, Mapping)
        )
        return {"useDefault": bool(value.get("useDefault")), "overrides": overrides}
    if key == "visibility":
        return value or "default"
    if key == "transparency":
        return value or "opaque"
    if key == "attendees":
        return normalised_attendees(value)
    if key == "organizer":
        email = value.get("email") if isinstance(value, Mapping) else None
        return str(email).lower() if email else None
    if key == "conferenceData":
        return normalised_conference(value)
    if key == "extendedProperties":
        private = _private({"extendedProperties": value})
        return {k: str(private[k]) for k in MANAGED_PROPERTIES if private.get(k) is not None}
    return value or None


def _normal_time(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return None
    if value.get("date"):
        return {"date": str(value["date"])}
    raw = value.get("dateTime")
    when: Any = raw
    if raw:
        try:
            parsed = dt.datetime.fromisoformat(str(raw))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            when = parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"dateTime": when, "timeZone": value.get("timeZone") or None}


def _normal_rule(line: str) -> str:
    if line.partition(":")[0].strip().upper() != "RRULE":
        return line
    try:
        return canonical_rrule(line)
    except MappingError:
        return line


# --- UpdateItem -> Google patch ------------------------------------------------------------

_TIME_KEYS: Final = ("start", "end", "recurrence")
#: The Google keys each core EWS field decides.
_AFFECTS: Final = MappingProxyType(
    {
        "subject": ("summary",),
        "body": ("description",),
        "location": ("location",),
        "start": _TIME_KEYS,
        "end": _TIME_KEYS,
        "_start_timezone": _TIME_KEYS,
        "_end_timezone": _TIME_KEYS,
        "_meeting_timezone": _TIME_KEYS,
        "is_all_day": _TIME_KEYS,
        "reminder_is_set": ("reminders",),
        "reminder_minutes_before_start": ("reminders",),
        "sensitivity": ("visibility", "extendedProperties"),
        "legacy_free_busy_status": ("transparency", "extendedProperties"),
        "categories": ("extendedProperties",),
        "uid": ("iCalUID",),
    }
)
#: The private extended properties each EWS field decides.
_AFFECTS_PROPERTIES: Final = MappingProxyType(
    {
        "sensitivity": (SENSITIVITY_PROPERTY,),
        "legacy_free_busy_status": (FREE_BUSY_PROPERTY,),
        "categories": (CATEGORIES_PROPERTY,),
    }
)
#: Fields whose DeleteItemField is understood: the value becomes empty.
_DELETABLE: Final = frozenset({"subject", "body", "location", "categories"})
#: Fields that change nothing Google shows (Outlook sends ReminderDueBy with reminders).
_IGNORED: Final = frozenset({"reminder_due_by"})


def patch_for(updates: Sequence[FieldUpdate], snapshot: GoogleEvent) -> GoogleEvent | None:
    """The Google patch body for an UpdateItem's changes, given the last event we wrote
    (snapshot). Contains exactly the Google fields whose value changes. Returns None when
    the delta is not enough to decide (recurrence changes, IsAllDayEvent toggles with
    missing start/end, fields outside the core set, occurrence-level targets are the
    caller's business) so the caller fetches the full item instead."""
    changed: dict[str, Any] = {}
    for update in updates:
        name = _field_name(update)
        if name in _IGNORED:
            continue
        if name is None or name not in _AFFECTS or update.action == "append":
            return None
        if update.action == "delete":
            if name not in _DELETABLE:
                return None
            changed[name] = None
        else:
            changed[name] = update.value
    if not changed:
        return {}
    try:
        state = to_ews(snapshot)
    except MappingError:
        return None
    if not _apply(changed, state, snapshot):
        return None
    new = to_google(CalendarItem(**state))

    patch: GoogleEvent = {}
    keys = {key for name in changed for key in _AFFECTS[name]}
    for key in (k for k in MANAGED_FIELDS if k in keys and k != "extendedProperties"):
        old_value, new_value = snapshot.get(key), new.get(key)
        if normalised(key, old_value) == normalised(key, new_value):
            continue
        if key in ("start", "end") and isinstance(old_value, Mapping):
            gone = {k: None for k in old_value if k not in (new_value or {})}
            patch[key] = {**gone, **(new_value or {})}
        else:
            patch[key] = new_value
    properties = {p for name in changed for p in _AFFECTS_PROPERTIES.get(name, ())}
    old_private, new_private = _private(snapshot), _private(new)
    private_patch = {
        p: new_private.get(p)
        for p in MANAGED_PROPERTIES
        if p in properties and old_private.get(p) != new_private.get(p)
    }
    if private_patch:
        patch["extendedProperties"] = {"private": private_patch}
    return patch


def _field_name(update: FieldUpdate) -> str | None:
    if update.field:
        return update.field
    # ews_parser names the field of Set/Append only; a DeleteItemField has just its path
    if isinstance(update.path, FieldURI):
        field = field_for(update.path, update.item_class or CalendarItem.ELEMENT_NAME)
        return str(field.name) if field is not None else None
    return None


def _apply(changed: Mapping[str, Any], state: dict[str, Any], snapshot: GoogleEvent) -> bool:
    """Apply the changed EWS fields to `state` (to_ews of the snapshot); False when the
    delta does not decide the result."""
    for name in ("subject", "body", "location", "uid", "sensitivity"):
        if name in changed:
            state[name] = changed[name]
    if "categories" in changed:
        state["categories"] = list(changed["categories"] or ()) or None
    if "legacy_free_busy_status" in changed:
        state["legacy_free_busy_status"] = changed["legacy_free_busy_status"]
    if "reminder_minutes_before_start" in changed:
        state["reminder_minutes_before_start"] = changed["reminder_minutes_before_start"]
    if "reminder_is_set" in changed:
        if (
            changed["reminder_is_set"]
            and not state["reminder_is_set"]
            and "reminder_minutes_before_start" not in changed
        ):
            return False  # the minutes Exchange kept are not in the snapshot
        state["reminder_is_set"] = bool(changed["reminder_is_set"])
    return _apply_times(changed, state)


def _apply_times(changed: Mapping[str, Any], state: dict[str, Any]) -> bool:
    meeting = changed.get("_meeting_timezone")
    if "_meeting_timezone" in changed:
        named = meeting.name if isinstance(meeting, LegacyTimeZone) else None
        zone = zone_for(named) if named else None
        if zone is None:
            return False
        changed = {"_start_timezone": zone, "_end_timezone": zone, **changed}
    for zone_name, bound in (("_start_timezone", "start"), ("_end_timezone", "end")):
        if zone_name in changed:
            if bound not in changed:
                return False  # a new zone alone: which wall-clock time Exchange keeps is unsaid
            value = changed[zone_name]
            if isinstance(value, EWSTimeZone):
                zone = value
            else:
                zone = zone_for(str(value)) if value else None
            if zone is None:
                return False
            state[zone_name] = zone
    was_all_day = bool(state["is_all_day"])
    all_day = bool(changed.get("is_all_day", was_all_day))
    if all_day != was_all_day and not ("start" in changed and "end" in changed):
        return False
    state["is_all_day"] = all_day
    for bound in ("start", "end"):
        if bound not in changed and all_day == was_all_day:
            continue
        value = changed.get(bound, state[bound])
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            return False
        zone = (
            state["_end_timezone" if bound == "end" else "_start_timezone"]
            or state["_start_timezone"]
        )
        if all_day:
            if zone is None:
                return False  # an all-day date needs the item's zone
            day = _all_day(value, zone, end=bound == "end")
            state[bound] = EWSDate(day.year, day.month, day.day)
        else:
            if zone is None:
                return False  # the snapshot was all-day: it says no zone
            state[bound] = _ews_datetime(_local(value, zone), zone)
    return True
