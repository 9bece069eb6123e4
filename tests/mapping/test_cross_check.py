"""Cross-check of the mapped recurrence against Exchange's expansion: the occurrences an
EWS pattern gives (emulators.ews.recurrence, read-only use) equal the occurrences of the
mapped RRULE expanded by dateutil in the event's zone, over two years, once the
exceptions are applied on each side (EWS: modified occurrences moved, deleted ones
removed; Google: overrides_for's overrides and cancelled instances)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.recurrence import Recurrence
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from emulators.ews.recurrence import occurrences as ews_occurrences
from mapping.event import GoogleEvent
from mapping.exceptions import overrides_for
from mapping.full import to_google_full
from tests.mapping.test_event_roundtrip import DST_EDGES, boundaries, local_times, patterns
from tests.mapping.test_full_roundtrip import MAX_EXAMPLES, ZONES

WINDOW = dt.timedelta(days=730)
MASTER_ID = "crosscheck0001"


def google_starts(event: GoogleEvent, overrides: list[GoogleEvent], end: dt.datetime,
                  zone: ZoneInfo) -> set[dt.datetime]:
    """Google's instances: the RRULE from DTSTART in start.timeZone (DTSTART always one),
    cancelled instances removed, overrides moved."""
    dtstart = dt.datetime.fromisoformat(event["start"]["dateTime"]).astimezone(zone)
    rule = rrulestr(event["recurrence"][0].partition(":")[2], dtstart=dtstart)
    starts = {dtstart.astimezone(dt.UTC)}
    for when in rule:
        if when.astimezone(dt.UTC) >= end:
            break
        starts.add(when.astimezone(dt.UTC))
    for override in overrides:
        original = dt.datetime.fromisoformat(override["originalStartTime"]["dateTime"])
        assert original.astimezone(dt.UTC) in starts, override["id"]
        starts.discard(original.astimezone(dt.UTC))
        assert override["id"] == f"{MASTER_ID}_{original.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
        if override.get("status") != "cancelled":
            starts.add(dt.datetime.fromisoformat(override["start"]["dateTime"]).astimezone(dt.UTC))
    return {s for s in starts if s < end}


@st.composite
def series(draw: st.DrawFn) -> tuple[Recurrence, dt.datetime, str]:
    zone_id = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(EWSTimeZone.from_ms_id(zone_id).key)
    first = draw(st.one_of(st.sampled_from(DST_EDGES),
                           st.dates(dt.date(2000, 1, 1), dt.date(2040, 12, 31))))
    recurrence = Recurrence(pattern=draw(patterns), boundary=draw(boundaries(first)))
    recurrence.clean(version=None)
    local = dt.datetime.combine(first, draw(local_times), tzinfo=tz)
    return recurrence, local.astimezone(dt.UTC).astimezone(tz), zone_id


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series(), st.data())
def test_ews_occurrences_equal_the_mapped_rrule_with_exceptions(
    drawn: tuple[Recurrence, dt.datetime, str], data: st.DataObject
) -> None:
    recurrence, local, zone_id = drawn
    zone = EWSTimeZone.from_ms_id(zone_id)
    tz = ZoneInfo(zone.key)
    all_starts = [when for _, when in ews_occurrences(recurrence, local, tz,
                                                      until=local + WINDOW * 2)]
    assume(all_starts)
    # Exchange keeps the master on its first occurrence
    first = all_starts[0]
    first_local = first.astimezone(tz)
    recurrence.boundary.start = EWSDate(first_local.year, first_local.month, first_local.day)
    end = first + WINDOW
    ews = [when for when in all_starts if when < end]
    master = CalendarItem(subject="x", start=EWSDateTime.from_datetime(first),
                          end=EWSDateTime.from_datetime(first + dt.timedelta(minutes=30)),
                          _start_timezone=zone, recurrence=recurrence)
    event = to_google_full(master).event

    chosen = data.draw(st.lists(st.integers(0, len(ews) - 1), unique=True, max_size=5))
    split = data.draw(st.integers(0, len(chosen)))
    moves = {ews[i]: ews[i] + dt.timedelta(minutes=15 * data.draw(st.integers(-30, 30)))
             for i in chosen[:split]}
    deleted = [ews[i] for i in chosen[split:]]
    modified = [CalendarItem(subject="moved", start=EWSDateTime.from_datetime(new),
                             end=EWSDateTime.from_datetime(new + dt.timedelta(minutes=30)),
                             _start_timezone=zone, original_start=EWSDateTime.from_datetime(old))
                for old, new in moves.items()]
    overrides = overrides_for(MASTER_ID, event, modified,
                              [EWSDateTime.from_datetime(d) for d in deleted])

    expected = {moves.get(when, when) for when in ews if when not in deleted}
    got = google_starts(event, overrides, end, tz)
    # a move may carry an occurrence across the window's end: compare inside it
    assert {s for s in got if s < end} == {s for s in expected if s < end}
