"""Round-trip properties of the core mapping (mapping/event.py): EWS -> Google -> EWS ->
Google and Google -> EWS -> Google give the same managed fields, and what does not
survive is exactly what LOSSY_FIELDS says."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Body, HTMLBody
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
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar.prop import vRecur

from mapping.event import LOSSY_FIELDS, MANAGED_FIELDS, GoogleEvent, normalised, to_ews, to_google

UTC = dt.UTC

#: IANA names and Windows ids, both hemispheres, half- and quarter-hour offsets.
ZONES = [
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "America/Santiago",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Africa/Johannesburg",
    "Pacific Standard Time",
    "W. Europe Standard Time",
    "AUS Eastern Standard Time",
    "New Zealand Standard Time",
    "Pacific SA Standard Time",
    "E. South America Standard Time",
]
IANA_ZONES = [z for z in ZONES if "/" in z or z == "UTC"]
#: Days on which some of those zones change their offset.
DST_EDGES = [
    dt.date(2026, 3, 8),
    dt.date(2026, 11, 1),
    dt.date(2026, 3, 29),
    dt.date(2026, 10, 25),
    dt.date(2026, 4, 5),
    dt.date(2026, 10, 4),
    dt.date(2026, 9, 27),
    dt.date(2026, 9, 6),
    dt.date(2031, 3, 30),
    dt.date(2024, 2, 29),
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
RELATIVE_DAYS = [*WEEKDAYS, "Day", "Weekday", "WeekendDay"]
WEEKS = ["First", "Second", "Third", "Fourth", "Last"]
MONTHS = [
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
]

# Plain text: anything but '<', which reads as markup on the way to Exchange (LOSSY_FIELDS)
plain = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=40)
days = st.one_of(st.sampled_from(DST_EDGES), st.dates(dt.date(1990, 1, 1), dt.date(2060, 12, 31)))
local_times = st.one_of(
    st.sampled_from(
        [dt.time(0, 0), dt.time(1, 30), dt.time(2, 30), dt.time(3, 0), dt.time(23, 30)]
    ),
    st.times().map(lambda t: t.replace(microsecond=0)),
)

patterns = st.one_of(
    st.builds(DailyPattern, interval=st.integers(1, 999)),
    st.builds(
        WeeklyPattern,
        interval=st.integers(1, 99),
        weekdays=st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True),
        first_day_of_week=st.sampled_from(WEEKDAYS),
    ),
    st.builds(AbsoluteMonthlyPattern, interval=st.integers(1, 99), day_of_month=st.integers(1, 31)),
    st.builds(
        RelativeMonthlyPattern,
        interval=st.integers(1, 99),
        weekday=st.sampled_from(RELATIVE_DAYS),
        week_number=st.sampled_from(WEEKS),
    ),
    st.builds(
        AbsoluteYearlyPattern, day_of_month=st.integers(1, 31), month=st.sampled_from(MONTHS)
    ),
    st.builds(
        RelativeYearlyPattern,
        weekday=st.sampled_from(RELATIVE_DAYS),
        week_number=st.sampled_from(WEEKS),
        month=st.sampled_from(MONTHS),
    ),
)


def ews_date(day: dt.date) -> EWSDate:
    return EWSDate(day.year, day.month, day.day)


def boundaries(first: dt.date) -> st.SearchStrategy[Any]:
    start = EWSDate(first.year, first.month, first.day)
    return st.one_of(
        st.just(NoEndPattern(start=start)),
        st.builds(NumberedPattern, start=st.just(start), number=st.integers(1, 999)),
        st.integers(0, 2000).map(
            lambda n: EndDatePattern(start=start, end=ews_date(first + dt.timedelta(days=n)))
        ),
    )


html_bodies = st.lists(
    st.tuples(
        st.sampled_from(["p", "div", "li", "b", "a", "br"]),
        st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=10),
    ),
    max_size=5,
).map(
    lambda parts: HTMLBody(
        "<html><body>"
        + "".join(
            f'<a href="https://x.example/{i}">{text}</a>'
            if tag == "a"
            else f"<{tag}>{text}</{tag}>"
            if tag != "br"
            else f"{text}<br>"
            for i, (tag, text) in enumerate(parts)
        )
        + "</body></html>"
    )
)


@st.composite
def items(draw: st.DrawFn) -> CalendarItem:
    """Random calendar items as ews_parser returns them."""
    zone_id = draw(st.one_of(st.none(), st.sampled_from(ZONES)))
    zone = EWSTimeZone.from_ms_id(zone_id) if zone_id else None
    all_day = draw(st.booleans())
    first = draw(days)
    fields: dict[str, Any] = {"is_all_day": all_day}
    if all_day:
        span = draw(st.integers(1, 10))
        fields["start"] = ews_date(first)
        fields["end"] = ews_date(first + dt.timedelta(days=span - 1))
    else:
        local = dt.datetime.combine(first, draw(local_times), tzinfo=zone or UTC)
        start = local.astimezone(UTC)
        end = start + dt.timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
        fields["start"] = EWSDateTime.from_datetime(start)
        fields["end"] = EWSDateTime.from_datetime(end)
        # the series starts on the local date of the first start
        first = start.astimezone(zone or UTC).date()
    fields["_start_timezone"] = zone
    fields["_end_timezone"] = draw(st.sampled_from([zone, None]))
    if draw(st.booleans()):
        fields["recurrence"] = Recurrence(pattern=draw(patterns), boundary=draw(boundaries(first)))
    fields["subject"] = draw(st.one_of(st.none(), plain))
    fields["location"] = draw(st.one_of(st.none(), plain))
    fields["body"] = draw(st.one_of(st.none(), plain.map(Body), html_bodies))
    fields["reminder_is_set"] = draw(st.booleans())
    fields["reminder_minutes_before_start"] = draw(st.integers(0, 40320))
    fields["sensitivity"] = draw(st.sampled_from(["Normal", "Personal", "Private", "Confidential"]))
    fields["legacy_free_busy_status"] = draw(
        st.sampled_from(["Free", "Tentative", "Busy", "OOF", "WorkingElsewhere", "NoData"])
    )
    fields["categories"] = draw(st.one_of(st.none(), st.lists(plain.filter(bool), max_size=4)))
    fields["uid"] = draw(st.one_of(st.none(), st.text("0123456789ABCDEF", min_size=1, max_size=40)))
    fields["is_cancelled"] = draw(st.booleans())
    return CalendarItem(**fields)


@settings(max_examples=300)
@given(items())
def test_ews_google_ews_google_keeps_every_managed_field(item: CalendarItem) -> None:
    first = to_google(item)
    second = to_google(CalendarItem(**to_ews(first)))
    assert set(first) <= set(MANAGED_FIELDS)
    for key in MANAGED_FIELDS:
        assert second.get(key) == first.get(key), key


# --- Google -> EWS -> Google ----------------------------------------------------------------

DAY_CODES = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
ordinals = st.sampled_from([1, 2, 3, 4, -1])


@st.composite
def rrules(draw: st.DrawFn, all_day: bool, start: dt.datetime | dt.date, zone: Any) -> str:
    """RRULEs in the spelling calsync writes (the supported subset)."""
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts: dict[str, Any] = {"FREQ": freq}
    interval = draw(st.integers(1, {"DAILY": 999, "YEARLY": 1}.get(freq, 99)))
    if freq == "WEEKLY":
        parts["BYDAY"] = sorted(
            draw(st.sets(st.sampled_from(DAY_CODES), min_size=1)), key=DAY_CODES.index
        )
        wkst = draw(st.sampled_from(DAY_CODES))
        if wkst != "MO":
            parts["WKST"] = wkst
    if freq in ("MONTHLY", "YEARLY"):
        if freq == "YEARLY":
            parts["BYMONTH"] = [draw(st.integers(1, 12))]
        if draw(st.booleans()):
            parts["BYMONTHDAY"] = [draw(st.integers(1, 28))]
        else:
            parts["BYDAY"] = [f"{draw(ordinals)}{draw(st.sampled_from(DAY_CODES))}"]
    if interval != 1:
        parts["INTERVAL"] = interval
    end = draw(st.sampled_from(["none", "count", "until"]))
    if end == "count":
        parts["COUNT"] = draw(st.integers(1, 999))
    elif end == "until":
        first = start if not isinstance(start, dt.datetime) else start.date()
        last = first + dt.timedelta(days=draw(st.integers(0, 2000)))
        if all_day:
            parts["UNTIL"] = last
        else:
            parts["UNTIL"] = dt.datetime.combine(last, dt.time(23, 59, 59), tzinfo=zone).astimezone(
                UTC
            )
    text: bytes = vRecur(parts).to_ical()
    return "RRULE:" + text.decode()


@st.composite
def google_events(draw: st.DrawFn) -> GoogleEvent:
    """Random Google events in the supported subset, spelled as calsync writes them."""
    event: GoogleEvent = {"id": "ignored", "etag": '"1"', "status": "confirmed"}
    for key in ("summary", "description", "location"):
        value = draw(plain)
        if value:
            event[key] = value
    first = draw(days)
    all_day = draw(st.booleans())
    zone_name = draw(st.sampled_from(IANA_ZONES))
    zone = ZoneInfo(zone_name)
    start: dt.date | dt.datetime
    if all_day:
        start = first
        event["start"] = {"date": first.isoformat()}
        span = dt.timedelta(days=draw(st.integers(1, 10)))
        event["end"] = {"date": (first + span).isoformat()}
    else:
        start = dt.datetime.combine(first, draw(local_times), tzinfo=zone)
        start = start.astimezone(UTC).astimezone(zone)  # a time that exists there
        end = start + dt.timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
        end = end.astimezone(UTC).astimezone(zone)
        event["start"] = {"dateTime": start.isoformat(timespec="seconds"), "timeZone": zone_name}
        event["end"] = {"dateTime": end.isoformat(timespec="seconds"), "timeZone": zone_name}
    if draw(st.booleans()):
        event["recurrence"] = [draw(rrules(all_day, start, zone))]
    if draw(st.booleans()):
        event["iCalUID"] = draw(st.text("0123456789abcdef@.", min_size=1, max_size=40))
    overrides = draw(st.lists(st.integers(0, 40320), max_size=1))
    event["reminders"] = {
        "useDefault": False,
        "overrides": [{"method": "popup", "minutes": m} for m in overrides],
    }
    visibility = draw(st.sampled_from(["default", "private", "confidential"]))
    event["visibility"] = visibility
    free_busy = draw(st.sampled_from(["Free", "Tentative", "Busy", "OOF", "WorkingElsewhere"]))
    event["transparency"] = "transparent" if free_busy == "Free" else "opaque"
    private: dict[str, str] = {"ews_free_busy": free_busy}
    if visibility == "private" and draw(st.booleans()):
        private["ews_sensitivity"] = "Personal"
    categories = draw(st.lists(plain.filter(bool), max_size=3))
    if categories:
        private["categories"] = json.dumps(categories, ensure_ascii=False, separators=(",", ":"))
    if draw(st.booleans()):
        private["ews_is_cancelled"] = "true"
    event["extendedProperties"] = {"private": private}
    return event


@settings(max_examples=300)
@given(google_events())
def test_google_ews_google_keeps_every_managed_field(event: GoogleEvent) -> None:
    kwargs = to_ews(event)
    again = to_google(CalendarItem(**kwargs))
    for key in MANAGED_FIELDS:
        assert again.get(key) == event.get(key), key


# --- what does not survive, and the rule it follows ----------------------------------------


def event(**fields: Any) -> GoogleEvent:
    base: GoogleEvent = {
        "summary": "Call",
        "start": {"dateTime": "2026-06-01T09:00:00+02:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-06-01T09:30:00+02:00", "timeZone": "Europe/Berlin"},
        "reminders": {"useDefault": False, "overrides": []},
        "visibility": "default",
        "transparency": "opaque",
        "extendedProperties": {"private": {"ews_free_busy": "Busy"}},
    }
    base.update(fields)
    return base


def trip(google: GoogleEvent) -> GoogleEvent:
    return to_google(CalendarItem(**to_ews(google)))


def exchange_trip(google: GoogleEvent) -> GoogleEvent:
    """Through Exchange: it keeps the Windows id of a zone, not the IANA name."""
    kwargs = to_ews(google)
    for name in ("_start_timezone", "_end_timezone"):
        if kwargs[name] is not None:
            kwargs[name] = EWSTimeZone.from_ms_id(kwargs[name].ms_id)
    return to_google(CalendarItem(**kwargs))


#: (the LOSSY_FIELDS entry, Google event in, the managed fields that come back)
LOSSES = [
    (
        ("description",),
        event(description='<b>Agenda</b><br>Join <a href="https://meet.example/x">here</a>'),
        {"description": "Agenda\nJoin here <https://meet.example/x>"},
    ),
    (
        ("summary", "location"),
        event(summary="", location=""),
        {"summary": None, "location": None},
    ),
    (
        ("start.timeZone", "end.timeZone"),
        event(
            start={"dateTime": "2026-06-01T09:00:00+02:00", "timeZone": "Europe/Oslo"},
            end={"dateTime": "2026-06-01T09:30:00+02:00", "timeZone": "Europe/Oslo"},
        ),
        {
            "start": {"dateTime": "2026-06-01T09:00:00+02:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-06-01T09:30:00+02:00", "timeZone": "Europe/Berlin"},
        },
    ),
    (
        ("start.dateTime", "end.dateTime"),
        event(
            start={"dateTime": "2026-06-01T07:00:00.250Z", "timeZone": "Europe/Berlin"},
            end={"dateTime": "2026-06-01T07:30:00Z"},
        ),
        {
            "start": {"dateTime": "2026-06-01T09:00:00+02:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-06-01T09:30:00+02:00", "timeZone": "Europe/Berlin"},
        },
    ),
    (
        ("start.date", "end.date"),
        event(
            start={"date": "2026-06-01", "timeZone": "Europe/Berlin"},
            end={"date": "2026-06-01"},
        ),
        {"start": {"date": "2026-06-01"}, "end": {"date": "2026-06-02"}},
    ),
    (
        ("reminders",),
        event(
            reminders={
                "useDefault": False,
                "overrides": [
                    {"method": "popup", "minutes": 10},
                    {"method": "email", "minutes": 60},
                ],
            }
        ),
        {"reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 10}]}},
    ),
    (("visibility",), event(visibility="public"), {"visibility": "default"}),
    (
        ("transparency",),
        event(
            transparency="opaque",
            extendedProperties={"private": {"ews_free_busy": "Free"}},
        ),
        {"transparency": "opaque", "extendedProperties": {"private": {"ews_free_busy": "Busy"}}},
    ),
    (
        ("extendedProperties.private.categories",),
        event(extendedProperties={"private": {"ews_free_busy": "Busy", "categories": "not json"}}),
        {"extendedProperties": {"private": {"ews_free_busy": "Busy"}}},
    ),
    (
        ("extendedProperties.private.ews_is_cancelled",),
        event(extendedProperties={"private": {"ews_free_busy": "Busy", "ews_is_cancelled": "yes"}}),
        {"extendedProperties": {"private": {"ews_free_busy": "Busy"}}},
    ),
    (
        ("recurrence",),
        event(
            recurrence=["RRULE:FREQ=MONTHLY;BYMONTHDAY=31;INTERVAL=1", "EXDATE:20260701T070000Z"]
        ),
        {"recurrence": ["RRULE:FREQ=MONTHLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1"]},
    ),
]


@pytest.mark.parametrize(
    ("rules", "google", "expected"), LOSSES, ids=["+".join(r) for r, _, _ in LOSSES]
)
def test_what_does_not_survive_follows_its_rule(
    rules: tuple[str, ...], google: GoogleEvent, expected: dict[str, Any]
) -> None:
    assert set(rules) <= set(LOSSY_FIELDS)
    back = exchange_trip(google) if "start.timeZone" in rules else trip(google)
    for key, value in expected.items():
        if key == "recurrence":
            assert normalised(key, back.get(key)) == normalised(key, value)
        else:
            assert back.get(key) == value, key
    # and the normalised value is stable from then on
    assert trip(back) == back


def test_lossy_fields_document_every_loss_the_tests_show() -> None:
    # the rules of the full mapping and of exceptions are tested next to them
    from tests.mapping.test_exceptions import EXCEPTION_LOSSES
    from tests.mapping.test_full import FULL_LOSSES

    tested = {rule for rules, _, _ in LOSSES for rule in rules}
    tested |= {rule for rules, _, _ in FULL_LOSSES for rule in rules}
    tested |= {rule for rules, _ in EXCEPTION_LOSSES for rule in rules}
    assert tested == set(LOSSY_FIELDS)


def test_reminder_defaults_and_clamping() -> None:
    # Google's calendar default is not known here: Outlook's 15 minutes
    assert trip(event(reminders={"useDefault": True}))["reminders"]["overrides"] == [
        {"method": "popup", "minutes": 15}
    ]
    assert trip({k: v for k, v in event().items() if k != "reminders"})["reminders"][
        "overrides"
    ] == [{"method": "popup", "minutes": 15}]
    # an EWS reminder further ahead than Google allows
    item = CalendarItem(
        **{**to_ews(event()), "reminder_is_set": True, "reminder_minutes_before_start": 99999}
    )
    assert to_google(item)["reminders"]["overrides"] == [{"method": "popup", "minutes": 40320}]


def test_a_zone_exchange_cannot_store_becomes_utc_at_the_same_instant() -> None:
    google = event(
        start={"dateTime": "2026-06-01T09:00:00+02:00", "timeZone": "Mars/Olympus_Mons"},
        end={"dateTime": "2026-06-01T09:30:00+02:00", "timeZone": "Mars/Olympus_Mons"},
    )
    assert trip(google)["start"] == {"dateTime": "2026-06-01T07:00:00+00:00", "timeZone": "UTC"}
