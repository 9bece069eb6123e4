"""Recurring events: events.instances, singleEvents expansion, EXDATE / RDATE, overrides
and cancelled instances (recurring events guide, events.instances reference)."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError


def _series(calendar: Any, recurrence: list[str], **extra: Any) -> dict[str, Any]:
    body = {
        "summary": "Weekly sync",
        "start": {"dateTime": "2026-03-16T10:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-03-16T11:00:00", "timeZone": "Europe/Berlin"},
        "recurrence": recurrence,
        **extra,
    }
    return calendar.events().insert(calendarId="primary", body=body).execute()  # type: ignore[no-any-return]


def _instances(calendar: Any, event_id: str, **params: Any) -> list[dict[str, Any]]:
    return calendar.events().instances(  # type: ignore[no-any-return]
        calendarId="primary", eventId=event_id, **params).execute()["items"]


def test_weekly_series_keeps_wall_clock_time_across_dst(calendar: Any) -> None:
    # start.timeZone "specifies the time zone in which the recurrence is expanded": Berlin
    # moves to summer time on 2026-03-29, the meeting stays at 10:00 local.
    master = _series(calendar, ["RRULE:FREQ=WEEKLY;COUNT=4"])
    items = _instances(calendar, master["id"])
    assert [i["start"]["dateTime"] for i in items] == [
        "2026-03-16T10:00:00+01:00", "2026-03-23T10:00:00+01:00",
        "2026-03-30T10:00:00+02:00", "2026-04-06T10:00:00+02:00"]
    assert [i["end"]["dateTime"][11:] for i in items] == ["11:00:00+01:00"] * 2 + [
        "11:00:00+02:00"] * 2
    # Instance ids: <eventId>_<yyyymmddThhmmssZ>, the original start in UTC.
    assert [i["id"] for i in items] == [f"{master['id']}_{s}" for s in (
        "20260316T090000Z", "20260323T090000Z", "20260330T080000Z", "20260406T080000Z")]
    for item in items:
        assert item["recurringEventId"] == master["id"]
        assert item["originalStartTime"] == item["start"]
        assert item["iCalUID"] == master["iCalUID"]   # all instances share the iCalUID
        assert "recurrence" not in item


def test_all_day_series_uses_date_ids(calendar: Any) -> None:
    master = calendar.events().insert(calendarId="primary", body={
        "summary": "Holiday", "start": {"date": "2026-01-28"}, "end": {"date": "2026-01-29"},
        "recurrence": ["RRULE:FREQ=YEARLY;COUNT=3"]}).execute()
    items = _instances(calendar, master["id"])
    assert [i["id"] for i in items] == [f"{master['id']}_{y}0128" for y in (2026, 2027, 2028)]
    assert items[1]["start"] == {"date": "2027-01-28"}
    assert items[1]["end"] == {"date": "2027-01-29"}       # end stays exclusive


def test_exdate_and_rdate(calendar: Any) -> None:
    master = _series(calendar, [
        "RRULE:FREQ=WEEKLY;UNTIL=20260407T000000Z",
        "EXDATE;TZID=Europe/Berlin:20260323T100000",
        "RDATE;TZID=Europe/Berlin:20260325T150000",
    ])
    starts = [i["start"]["dateTime"] for i in _instances(calendar, master["id"])]
    assert starts == ["2026-03-16T10:00:00+01:00", "2026-03-25T15:00:00+01:00",
                      "2026-03-30T10:00:00+02:00", "2026-04-06T10:00:00+02:00"]


def test_utc_exdate_removes_the_same_instant(calendar: Any) -> None:
    master = _series(calendar, ["RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE:20260330T080000Z"])
    ids = [i["id"] for i in _instances(calendar, master["id"])]
    assert ids == [f"{master['id']}_20260316T090000Z", f"{master['id']}_20260323T090000Z"]


def test_start_the_rule_skips_is_an_extra_first_instance(calendar: Any) -> None:
    # RFC 5545 3.8.5.3: "The DTSTART property value always counts as the first occurrence";
    # Google shows it and COUNT more (google-api-nodejs-client#2214). 2026-03-16 is a Monday.
    master = _series(calendar, ["RRULE:FREQ=WEEKLY;BYDAY=TU,TH;COUNT=3"])
    starts = [i["start"]["dateTime"][:10] for i in _instances(calendar, master["id"])]
    assert starts == ["2026-03-16", "2026-03-17", "2026-03-19", "2026-03-24"]
    # an EXDATE on the start removes it like any other instance
    master = _series(calendar, ["RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=2",
                                "EXDATE;TZID=Europe/Berlin:20260316T100000"])
    starts = [i["start"]["dateTime"][:10] for i in _instances(calendar, master["id"])]
    assert starts == ["2026-03-17", "2026-03-24"]


def test_bounded_series_is_expanded_in_full(calendar: Any) -> None:
    # COUNT=999 (EWS's largest numbered range) is not cut at the unbounded series' cap.
    master = _series(calendar, ["RRULE:FREQ=DAILY;COUNT=999"])
    items = _instances(calendar, master["id"], maxResults=2500)
    assert len(items) == 999
    assert items[-1]["start"]["dateTime"] == "2028-12-08T10:00:00+01:00"
    unbounded = _series(calendar, ["RRULE:FREQ=DAILY"])
    assert len(_instances(calendar, unbounded["id"], maxResults=2500)) == 730


def test_recurring_event_without_time_zone_is_400(calendar: Any) -> None:
    # "For recurring events this field [start.timeZone] is required".
    with pytest.raises(HttpError) as caught:
        calendar.events().insert(calendarId="primary", body={
            "start": {"dateTime": "2026-03-16T10:00:00+01:00"},
            "end": {"dateTime": "2026-03-16T11:00:00+01:00"},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]}).execute()
    assert caught.value.status_code == 400


def test_override_and_cancelled_instance(calendar: Any) -> None:
    master = _series(calendar, ["RRULE:FREQ=WEEKLY;COUNT=3"])
    second, third = (f"{master['id']}_20260323T090000Z", f"{master['id']}_20260330T080000Z")
    # "Modifying one occurrence = update/patch the instance id".
    moved = calendar.events().patch(calendarId="primary", eventId=second, body={
        "summary": "Moved", "start": {"dateTime": "2026-03-24T14:00:00",
                                      "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-03-24T15:00:00", "timeZone": "Europe/Berlin"}}).execute()
    # originalStartTime "uniquely identifies the instance ... even if the instance was moved"
    assert moved["id"] == second and moved["recurringEventId"] == master["id"]
    assert moved["originalStartTime"]["dateTime"] == "2026-03-23T10:00:00+01:00"
    assert "recurrence" not in moved
    calendar.events().delete(calendarId="primary", eventId=third).execute()

    items = _instances(calendar, master["id"])
    assert [(i["id"], i.get("summary")) for i in items] == [
        (f"{master['id']}_20260316T090000Z", "Weekly sync"), (second, "Moved")]
    with_deleted = _instances(calendar, master["id"], showDeleted=True)
    assert [(i["id"], i["status"]) for i in with_deleted][-1] == (third, "cancelled")

    # singleEvents=true lists the instances, overrides applied, never the master.
    single = calendar.events().list(calendarId="primary", singleEvents=True,
                                    orderBy="startTime").execute()["items"]
    assert [i["id"] for i in single] == [f"{master['id']}_20260316T090000Z", second]
    # singleEvents=false lists the master and its exceptions, cancelled ones included:
    # "Cancelled instances of recurring events (but not the underlying recurring event)
    # will still be included if showDeleted and singleEvents are both False."
    plain = calendar.events().list(calendarId="primary").execute()["items"]
    assert {(i["id"], i["status"]) for i in plain} == {
        (master["id"], "confirmed"), (second, "confirmed"), (third, "cancelled")}


def test_deleting_an_instance_twice_is_410(calendar: Any) -> None:
    master = _series(calendar, ["RRULE:FREQ=DAILY;COUNT=2"])
    first = f"{master['id']}_20260316T090000Z"
    calendar.events().delete(calendarId="primary", eventId=first).execute()
    with pytest.raises(HttpError) as caught:
        calendar.events().delete(calendarId="primary", eventId=first).execute()
    assert caught.value.status_code == 410


def test_instance_get_and_time_window(calendar: Any) -> None:
    master = _series(calendar, ["RRULE:FREQ=DAILY"])    # unbounded
    got = calendar.events().get(calendarId="primary",
                                eventId=f"{master['id']}_20260318T090000Z").execute()
    assert got["start"]["dateTime"] == "2026-03-18T10:00:00+01:00"
    window = _instances(calendar, master["id"], timeMin="2026-04-01T00:00:00Z",
                        timeMax="2026-04-03T00:00:00Z")
    assert [i["start"]["dateTime"] for i in window] == [
        "2026-04-01T10:00:00+02:00", "2026-04-02T10:00:00+02:00"]
