"""Round-trip properties of the full mapping with exceptions (mapping/full.py,
mapping/exceptions.py): a recurring EWS master with modified and deleted occurrences,
attendees and an online meeting goes EWS -> Google -> EWS, and a Google master with
overrides and cancelled instances goes Google -> EWS -> Google, keeping every supported
field (what does not survive is in LOSSY_FIELDS, tested in test_full / test_exceptions)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any
from zoneinfo import ZoneInfo

from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Attendee, Mailbox
from exchangelib.recurrence import Recurrence
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from emulators.ews.recurrence import occurrences as ews_occurrences
from mapping.event import GoogleEvent
from mapping.exceptions import exceptions_from, occurrences, overrides_for
from mapping.full import FULL_MANAGED_FIELDS, to_ews_full, to_google_full
from mapping.online import conference_data
from tests.mapping.test_event_roundtrip import (
    DST_EDGES,
    boundaries,
    google_events,
    local_times,
    patterns,
    plain,
)

UTC = EWSTimeZone("UTC")
MASTER_ID = "series0123456789"
#: Zones with DST in both hemispheres, a half-hour DST (Lord Howe), none, and Windows ids.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "Pacific Standard Time",
    "W. Europe Standard Time",
]
RESPONSES = ["Accept", "Tentative", "Decline", "NoResponseReceived", "Organizer"]
URLS = [
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0",
    "https://meet.google.com/abc-defg-hij",
    "https://us02web.zoom.us/j/81234567890?pwd=abc",
]
PEOPLE = [f"p{i}@example.com" for i in range(8)]
MAX_EXAMPLES = int(os.environ.get("CALSYNC_EXAMPLES", "300"))
DAY = dt.timedelta(days=1)


# --- EWS -> Google -> EWS -----------------------------------------------------------------


@st.composite
def ews_attendees(draw: st.DrawFn) -> dict[str, Any]:
    emails = draw(st.lists(st.sampled_from(PEOPLE), unique=True, max_size=5))
    lists: dict[str, list[Attendee]] = {"required_attendees": [], "optional_attendees": [],
                                        "resources": []}
    for email in emails:
        kind = draw(st.sampled_from(list(lists)))
        name = draw(st.one_of(st.none(), plain.filter(bool)))
        lists[kind].append(Attendee(
            mailbox=Mailbox(name=name, email_address=email, routing_type="SMTP"),
            response_type=draw(st.sampled_from(RESPONSES))))
    fields: dict[str, Any] = {k: v or None for k, v in lists.items()}
    if draw(st.booleans()):
        fields["organizer"] = Mailbox(name=draw(st.one_of(st.none(), plain.filter(bool))),
                                      email_address=draw(st.sampled_from(PEOPLE)),
                                      routing_type="SMTP")
    where = draw(st.sampled_from(["none", "location", "net_show_url"]))
    if where != "none":
        fields[where] = draw(st.sampled_from(URLS))
    return fields


@st.composite
def ews_series(draw: st.DrawFn) -> tuple[CalendarItem, list[CalendarItem], list[dt.date], str]:
    """A recurring master as Exchange keeps it (on its first occurrence), the occurrence
    items of some modified occurrences, the starts of some deleted ones, and its zone."""
    zone_id = draw(st.sampled_from(ZONES))
    zone = EWSTimeZone.from_ms_id(zone_id)
    tz = ZoneInfo(zone.key)
    all_day = draw(st.booleans())
    first = draw(st.one_of(st.sampled_from(DST_EDGES), st.dates(dt.date(2000, 1, 1),
                                                                 dt.date(2040, 12, 31))))
    pattern = draw(patterns)
    boundary = draw(boundaries(first))
    recurrence = Recurrence(pattern=pattern, boundary=boundary)
    recurrence.clean(version=None)  # names -> numbers, as exchangelib reads them
    wall = dt.time(0) if all_day else draw(local_times)
    local = dt.datetime.combine(first, wall, tzinfo=tz).astimezone(dt.UTC).astimezone(tz)
    starts = [when for _, (_, when) in zip(range(25), ews_occurrences(recurrence, local, tz),
                                           strict=False)]
    assume(starts)
    # Exchange keeps the master on its first occurrence
    first_local = starts[0].astimezone(tz)
    recurrence.boundary.start = EWSDate(first_local.year, first_local.month, first_local.day)
    fields: dict[str, Any] = {"subject": draw(plain), "_start_timezone": zone,
                              "recurrence": recurrence, **draw(ews_attendees())}
    if all_day:
        days = draw(st.integers(1, 3))
        day = first_local.date()
        fields.update(is_all_day=True, start=EWSDate.from_date(day),
                      end=EWSDate.from_date(day + (days - 1) * DAY))
    else:
        minutes = draw(st.integers(0, 600))
        fields.update(is_all_day=False, start=EWSDateTime.from_datetime(starts[0]),
                      end=EWSDateTime.from_datetime(starts[0] + dt.timedelta(minutes=minutes)))
    master = CalendarItem(**fields)
    chosen = draw(st.lists(st.integers(0, len(starts) - 1), unique=True, max_size=6))
    split = draw(st.integers(0, len(chosen)))
    modified = []
    for index in chosen[:split]:
        original = starts[index]
        if all_day:
            day = original.astimezone(tz).date() + draw(st.integers(-2, 2)) * DAY
            times: dict[str, Any] = {
                "is_all_day": True, "start": EWSDate.from_date(day),
                "end": EWSDate.from_date(day + draw(st.integers(0, 2)) * DAY)}
        else:
            start = original + dt.timedelta(minutes=15 * draw(st.integers(-40, 40)))
            times = {"is_all_day": False, "start": EWSDateTime.from_datetime(start),
                     "end": EWSDateTime.from_datetime(
                         start + dt.timedelta(minutes=draw(st.integers(0, 300))))}
        # an occurrence item equal to the master is no exception (LOSSY_FIELDS
        # originalStartTime): Exchange lists only changed ones
        modified.append(CalendarItem(
            subject=(fields["subject"] or "") + draw(plain) + "!", _start_timezone=zone,
            original_start=EWSDateTime.from_datetime(original), **times,
            **draw(ews_attendees())))
    deleted: list[dt.date] = [EWSDateTime.from_datetime(starts[i]) for i in chosen[split:]]
    return master, modified, deleted, zone.key


@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ews_series())
def test_ews_google_ews_keeps_the_series_and_its_exceptions(
    series: tuple[CalendarItem, list[CalendarItem], list[dt.date], str],
) -> None:
    master, modified, deleted, zone = series
    first = to_google_full(master).event
    overrides = overrides_for(MASTER_ID, first, modified, deleted, default_zone=zone)
    assert len(overrides) == len(modified) + len(deleted)
    assert len({o["id"] for o in overrides}) == len(overrides)

    # Google -> EWS
    kwargs = to_ews_full(first)
    back_modified, back_deleted = exceptions_from({**first, "id": MASTER_ID}, overrides)
    tz = ZoneInfo(zone) if master.is_all_day else None
    assert sorted(_key(d, tz) for d in back_deleted) == sorted(_key(d, tz) for d in deleted)
    assert sorted(_key(m["original_start"], tz) for m in back_modified) == sorted(
        _key(m.original_start, tz) for m in modified)
    # attendees: the same people in the same lists, the same answers
    for name in ("required_attendees", "optional_attendees", "resources"):
        assert _people(kwargs[name]) == _people(getattr(master, name), master.organizer), name

    # -> Google again: the same events, field for field
    second = to_google_full(CalendarItem(**kwargs)).event
    for key in FULL_MANAGED_FIELDS:
        assert second.get(key) == first.get(key), key
    again = overrides_for(MASTER_ID, second, [CalendarItem(**m) for m in back_modified],
                          back_deleted, default_zone=zone)
    assert again == overrides


def _key(value: dt.date, all_day_zone: ZoneInfo | None) -> dt.date:
    """An original start as exceptions_from gives it: UTC, or the local date of an
    all-day series."""
    if not isinstance(value, dt.datetime):
        return value
    when = dt.datetime.fromtimestamp(int(value.timestamp()), tz=dt.UTC)
    return when.astimezone(all_day_zone).date() if all_day_zone else when


def _people(attendees: Any, organizer: Any = None) -> list[tuple[str, str | None, str]]:
    """(address, name, response); the organizer's own Accept reads Organizer
    (LOSSY_FIELDS attendees.responseStatus)."""
    boss = organizer.email_address if organizer is not None else None
    return [(a.mailbox.email_address, a.mailbox.name or None,
             "Organizer" if a.response_type == "Accept" and a.mailbox.email_address == boss
             else a.response_type)
            for a in attendees or ()]


# --- Google -> EWS -> Google ------------------------------------------------------------------


@st.composite
def google_series(draw: st.DrawFn) -> tuple[GoogleEvent, list[GoogleEvent]]:
    """A Google master (the subset calsync writes) with people and a meeting, and its
    overrides and cancelled instances."""
    master = draw(google_events().filter(lambda e: "recurrence" in e))
    master["id"] = MASTER_ID
    emails = draw(st.lists(st.sampled_from(PEOPLE), unique=True, max_size=5))
    organizer = draw(st.one_of(st.none(), st.sampled_from(PEOPLE)))
    if organizer:
        master["organizer"] = {"email": organizer}
    attendees = []
    for email in emails:
        entry: dict[str, Any] = {"email": email}
        name = draw(st.one_of(st.none(), plain.filter(bool)))
        if name:
            entry["displayName"] = name
        kind = draw(st.sampled_from(["required", "optional", "resource"]))
        if kind != "required":
            entry[kind] = True
        entry["responseStatus"] = draw(
            st.sampled_from(["accepted", "tentative", "declined", "needsAction"]))
        if email == organizer:
            entry["organizer"] = True
        attendees.append(entry)
    if attendees:
        # EWS keeps required, optional and resources apart: that order
        order = {"required": 0, "optional": 1, "resource": 2}
        attendees.sort(key=lambda e: order["resource" if e.get("resource") else
                                         "optional" if e.get("optional") else "required"])
        master["attendees"] = attendees
    if draw(st.booleans()):
        master["conferenceData"] = conference_data(draw(st.sampled_from(URLS)))
        if draw(st.booleans()):
            master.pop("location", None)

    starts = [when for _, when in zip(range(20), occurrences(master), strict=False)]
    all_day = "date" in master["start"]
    zone = None if all_day else ZoneInfo(master["start"]["timeZone"])
    # DTSTART is skipped: Google shows it even where the RRULE does not (EWS does not)
    chosen = draw(st.lists(st.integers(1, max(1, len(starts) - 1)), unique=True, max_size=6))
    chosen = [i for i in chosen if i < len(starts)]
    instances = []
    for index in chosen:
        original = starts[index]
        if all_day:
            assert not isinstance(original, dt.datetime)
            when: dict[str, str] = {"date": original.isoformat()}
            key = f"{MASTER_ID}_{original:%Y%m%d}"
        else:
            assert isinstance(original, dt.datetime) and zone is not None
            local = original.astimezone(zone)
            when = {"dateTime": local.isoformat(timespec="seconds"),
                    "timeZone": master["start"]["timeZone"]}
            key = f"{MASTER_ID}_{original:%Y%m%dT%H%M%SZ}"
        if draw(st.booleans()):
            instances.append({"id": key, "recurringEventId": MASTER_ID,
                              "originalStartTime": when, "status": "cancelled"})
            continue
        override = {k: v for k, v in master.items()
                    if k not in ("id", "recurrence", "etag", "status")}
        override["summary"] = (master.get("summary") or "") + "!"
        if all_day:
            day = original + draw(st.integers(-2, 2)) * DAY  # type: ignore[operator]
            override["start"] = {"date": day.isoformat()}
            override["end"] = {"date": (day + draw(st.integers(1, 3)) * DAY).isoformat()}
        else:
            assert isinstance(original, dt.datetime) and zone is not None
            start = original + dt.timedelta(minutes=15 * draw(st.integers(-40, 40)))
            end = start + dt.timedelta(minutes=draw(st.integers(0, 300)))
            name = master["start"]["timeZone"]
            override["start"] = {"dateTime": start.astimezone(zone).isoformat(timespec="seconds"),
                                 "timeZone": name}
            override["end"] = {"dateTime": end.astimezone(zone).isoformat(timespec="seconds"),
                               "timeZone": name}
        if attendees and draw(st.booleans()):
            changed = [dict(a) for a in attendees]
            changed[0]["responseStatus"] = "declined"
            override["attendees"] = changed
        override.update(id=key, recurringEventId=MASTER_ID, originalStartTime=when)
        instances.append(override)
    return master, instances


INSTANCE_KEYS = ("id", "recurringEventId", "originalStartTime", "status")


@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(google_series())
def test_google_ews_google_keeps_the_series_and_its_exceptions(
    series: tuple[GoogleEvent, list[GoogleEvent]],
) -> None:
    master, instances = series
    modified, deleted = exceptions_from(master, instances)
    assert len(modified) + len(deleted) == len(instances)
    back = to_google_full(CalendarItem(**to_ews_full(master))).event
    for key in FULL_MANAGED_FIELDS:
        assert back.get(key) == master.get(key), key
    out = overrides_for(MASTER_ID, {**back, "id": MASTER_ID},
                        [CalendarItem(**m) for m in modified], deleted)
    expected = sorted(instances, key=lambda e: e["id"])
    assert [o["id"] for o in sorted(out, key=lambda e: e["id"])] == [e["id"] for e in expected]
    for got, want in zip(sorted(out, key=lambda e: e["id"]), expected, strict=True):
        for key in (*FULL_MANAGED_FIELDS, *INSTANCE_KEYS):
            assert got.get(key) == want.get(key), (want["id"], key)
