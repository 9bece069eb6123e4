"""Cross-check of the two stand-ins: the occurrences the EWS stand-in expands for a
recurring master equal the instances the Google stand-in expands from the equivalent RRULE.

Both are driven only through the real clients: exchangelib creates the series in the EWS
stand-in and reads it back (`account.calendar.view` for the occurrences, GetItem for the
master); `mapping.event.to_google` turns the master into a Google event, which
google-api-python-client inserts into the Google stand-in and lists with
`events().instances()`, page by page. The window is two years, so every series crosses
DST changes on both hemispheres.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from exchangelib import BASIC, DELEGATE, Account, CalendarItem, Configuration, Credentials
from exchangelib.ewsdatetime import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.protocol import FailFast
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
from exchangelib.version import EXCHANGE_2016, Version
from google.oauth2.credentials import Credentials as GoogleCredentials
from googleapiclient.discovery import build

from emulators.ews import EwsServer, start_server
from emulators.google import GoogleCalendarServer
from mapping.event import event_id_for, to_google

ADDRESS = "alice@example.com"
PASSWORD = "alice-secret"
UTC = EWSTimeZone("UTC")
#: Two years (730 days), so each series crosses two DST starts and ends in either hemisphere.
WINDOW = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 12, 31, tzinfo=dt.UTC))
#: Small pages, so `instances` needs several of them for most series.
PAGE = 25

MON, TUE, WED, THU, FRI, SAT, SUN = range(1, 8)
WEEKDAY, LAST = 9, 5

Span = tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True)
class Series:
    zone: str
    start: tuple[int, int, int, int, int]  # the item's start, local wall clock
    minutes: int
    recurrence: Recurrence


SERIES = {
    # every other week on Tuesday and Thursday, weeks starting on Sunday, no end
    "weekly-tu-th-every-2-weeks": Series(
        "Europe/Berlin", (2024, 1, 9, 9, 30), 45,
        Recurrence(pattern=WeeklyPattern(interval=2, weekdays=[TUE, THU], first_day_of_week=SUN),
                   boundary=NoEndPattern(start=EWSDate(2024, 1, 9)))),
    # every third day, 18:00 New York, until a date (the end day is included)
    "daily-every-3-days-until": Series(
        "America/New_York", (2024, 2, 1, 18, 0), 90,
        Recurrence(pattern=DailyPattern(interval=3),
                   boundary=EndDatePattern(start=EWSDate(2024, 2, 1), end=EWSDate(2025, 11, 15)))),
    # the 31st of every month: months with fewer days take their last day
    "monthly-on-the-31st": Series(
        "Australia/Sydney", (2024, 1, 31, 8, 0), 60,
        Recurrence(pattern=AbsoluteMonthlyPattern(interval=1, day_of_month=31),
                   boundary=NumberedPattern(start=EWSDate(2024, 1, 31), number=20))),
    # every second month on the 15th, numbered
    "monthly-15th-every-2-months": Series(
        "Europe/Berlin", (2024, 1, 15, 23, 30), 60,
        Recurrence(pattern=AbsoluteMonthlyPattern(interval=2, day_of_month=15),
                   boundary=NumberedPattern(start=EWSDate(2024, 1, 15), number=10))),
    # the second Tuesday of every month, numbered, created on a Monday the pattern skips:
    # Exchange moves the master onto its first occurrence (MS-OXOCAL 2.2.1.5), else
    # Google would show an extra instance on the DTSTART the RRULE skips
    "monthly-second-tuesday": Series(
        "America/New_York", (2024, 1, 1, 10, 0), 60,
        Recurrence(pattern=RelativeMonthlyPattern(interval=1, weekday=TUE, week_number=2),
                   boundary=NumberedPattern(start=EWSDate(2024, 1, 1), number=20))),
    # the last weekday of every month, in the southern hemisphere
    "monthly-last-weekday": Series(
        "Australia/Sydney", (2024, 1, 31, 17, 0), 30,
        Recurrence(pattern=RelativeMonthlyPattern(interval=1, weekday=WEEKDAY, week_number=LAST),
                   boundary=NoEndPattern(start=EWSDate(2024, 1, 31)))),
    # the last Friday of November, every year
    "yearly-last-friday-of-november": Series(
        "Australia/Sydney", (2024, 11, 29, 12, 0), 120,
        Recurrence(pattern=RelativeYearlyPattern(weekday=FRI, week_number=LAST, month=11),
                   boundary=NoEndPattern(start=EWSDate(2024, 11, 29)))),
    # 29 February: the 28th in common years
    "yearly-29-february": Series(
        "Europe/Berlin", (2024, 2, 29, 7, 0), 60,
        Recurrence(pattern=AbsoluteYearlyPattern(day_of_month=29, month=2),
                   boundary=NumberedPattern(start=EWSDate(2024, 2, 29), number=3))),
}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests and httplib2 follow HTTP(S)_PROXY; both stand-ins are on loopback only.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ews() -> Iterator[EwsServer]:
    # A fresh mailbox per test: every view then holds one series, not all of them.
    server = start_server(users={ADDRESS: PASSWORD})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(users=[ADDRESS]) as server:
        yield server


@pytest.fixture
def account(ews: EwsServer) -> Account:
    config = Configuration(service_endpoint=ews.url, credentials=Credentials(ADDRESS, PASSWORD),
                           auth_type=BASIC, version=Version(build=EXCHANGE_2016),
                           retry_policy=FailFast())
    return Account(ADDRESS, config=config, autodiscover=False, access_type=DELEGATE)


@pytest.fixture
def calendar(google: GoogleCalendarServer) -> Any:
    creds = GoogleCredentials(token=ADDRESS, refresh_token=f"refresh-{ADDRESS}",
                              token_uri=google.token_uri, client_id="calsync-tests",
                              client_secret="not-a-secret")
    return build("calendar", "v3", static_discovery=True, credentials=creds,
                 client_options={"api_endpoint": google.api_endpoint})


# --- the two sides ----------------------------------------------------------------------


def _create(account: Account, series: Series, subject: str) -> CalendarItem:
    zone = EWSTimeZone(series.zone)
    start = EWSDateTime(*series.start, tzinfo=zone)
    item = CalendarItem(account=account, folder=account.calendar, subject=subject,
                        start=start, end=start + dt.timedelta(minutes=series.minutes),
                        recurrence=series.recurrence)
    item.save()
    return item


def _ews_spans(account: Account) -> list[tuple[Span, Any]]:
    start, end = (EWSDateTime.from_datetime(w) for w in WINDOW)
    return [((o.start.astimezone(UTC), o.end.astimezone(UTC)), o)
            for o in account.calendar.view(start=start, end=end)]


def _insert(calendar: Any, master: CalendarItem) -> str:
    event = to_google(master)
    event["id"] = event_id_for(master.id)
    calendar.events().insert(calendarId="primary", body=event).execute()
    return str(event["id"])


def _instant(value: dict[str, str]) -> dt.datetime:
    return dt.datetime.fromisoformat(value["dateTime"]).astimezone(dt.UTC)


def _google_spans(calendar: Any, event_id: str) -> tuple[list[Span], int]:
    """Every instance in the window, following nextPageToken; and how many pages it took."""
    spans: list[Span] = []
    token = None
    pages = 0
    while True:
        page = calendar.events().instances(
            calendarId="primary", eventId=event_id, timeMin=WINDOW[0].isoformat(),
            timeMax=WINDOW[1].isoformat(), maxResults=PAGE, pageToken=token).execute()
        pages += 1
        spans.extend((_instant(i["start"]), _instant(i["end"])) for i in page["items"])
        token = page.get("nextPageToken")
        if not token:
            return spans, pages


def _instance_id(event_id: str, original_start: dt.datetime) -> str:
    # The Google stand-in's (and Google's) id for an instance of a timed series.
    return f"{event_id}_{original_start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SERIES))
def test_calendar_view_equals_google_instances(account: Account, calendar: Any,
                                               name: str) -> None:
    series = SERIES[name]
    created = _create(account, series, name)
    ews = [span for span, _ in _ews_spans(account) if _.subject == name]
    assert len(ews) >= 2
    master = account.calendar.get(id=created.id)
    event_id = _insert(calendar, master)
    google, pages = _google_spans(calendar, event_id)
    assert sorted(google) == sorted(ews), name
    assert len(google) == len(set(google))
    if len(ews) > 4:
        # on the zone's wall clock: both its UTC offsets occur in the window
        offsets = {s.astimezone(EWSTimeZone(series.zone)).utcoffset() for s, _ in ews}
        assert len(offsets) == 2
    assert pages == -(-len(google) // PAGE)


def test_modified_and_deleted_occurrences_match_google_overrides(account: Account,
                                                                 calendar: Any) -> None:
    # An EWS exception becomes a Google override, a deleted occurrence a cancelled instance;
    # both keyed by the instance id of the original start.
    name = "exceptions"
    series = SERIES["weekly-tu-th-every-2-weeks"]
    created = _create(account, series, name)
    master = account.calendar.get(id=created.id)
    event_id = _insert(calendar, master)

    zone = EWSTimeZone(series.zone)
    moved = master.occurrence(3)
    moved.refresh()
    original = moved.start
    # two hours later, and half an hour longer
    moved.start = moved.start + dt.timedelta(hours=2)
    moved.end = moved.end + dt.timedelta(hours=2, minutes=30)
    moved.save(update_fields=["start", "end"])
    gone = master.occurrence(5)
    gone.refresh()
    gone_start = gone.start
    gone.delete()

    ews = [(span, o) for span, o in _ews_spans(account) if o.subject == name]
    exception = next(o for _, o in ews if o.type == "Exception")
    assert exception.original_start == original
    assert gone_start not in {span[0] for span, _ in ews}

    override = to_google(account.calendar.get(id=exception.id))
    calendar.events().patch(calendarId="primary", eventId=_instance_id(event_id, original),
                            body={"start": override["start"], "end": override["end"]}).execute()
    calendar.events().delete(calendarId="primary",
                             eventId=_instance_id(event_id, gone_start)).execute()

    google, _pages = _google_spans(calendar, event_id)
    assert sorted(google) == sorted(span for span, _ in ews)
    moved_span = (original.astimezone(UTC) + dt.timedelta(hours=2),
                  original.astimezone(UTC) + dt.timedelta(hours=3, minutes=15))
    assert moved_span in google
    assert original.astimezone(zone).time() == dt.time(9, 30)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Australia/Sydney", "America/New_York"])
def test_all_day_series_match_google_dates(account: Account, calendar: Any, zone: str) -> None:
    # All-day occurrences are midnights in the item's zone on the EWS side and plain dates
    # (exclusive end) on the Google side: the 31st of each month, last day in short months.
    name = f"all-day {zone}"
    tz = EWSTimeZone(zone)
    item = CalendarItem(
        account=account, folder=account.calendar, subject=name, is_all_day=True,
        start=EWSDate(2024, 1, 31), end=EWSDate(2024, 1, 31),
        _start_timezone=tz, _end_timezone=tz,
        recurrence=Recurrence(pattern=AbsoluteMonthlyPattern(interval=1, day_of_month=31),
                              boundary=EndDatePattern(start=EWSDate(2024, 1, 31),
                                                      end=EWSDate(2025, 6, 30))))
    item.save()
    window = [EWSDateTime.from_datetime(w) for w in WINDOW]
    ews = sorted((o.start, o.end + dt.timedelta(days=1))  # exchangelib's end is inclusive
                 for o in account.calendar.view(start=window[0], end=window[1])
                 if o.subject == name)
    event_id = _insert(calendar, account.calendar.get(id=item.id))
    google = []
    token = None
    while True:
        page = calendar.events().instances(calendarId="primary", eventId=event_id,
                                           maxResults=PAGE, pageToken=token).execute()
        google.extend((dt.date.fromisoformat(i["start"]["date"]),
                       dt.date.fromisoformat(i["end"]["date"])) for i in page["items"])
        token = page.get("nextPageToken")
        if not token:
            break
    assert sorted(google) == ews
    assert len(ews) == 18 and (dt.date(2024, 2, 29), dt.date(2024, 3, 1)) in ews
