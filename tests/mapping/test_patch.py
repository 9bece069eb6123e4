"""The Google patch for an UpdateItem's changes (mapping/event.py: patch_for)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from exchangelib.ewsdatetime import EWSDateTime, EWSTimeZone
from exchangelib.items import CalendarItem
from exchangelib.properties import Body
from hypothesis import given, settings
from hypothesis import strategies as st

from ews_parser.values import ExtendedFieldURI, FieldUpdate, FieldURI
from mapping.event import MANAGED_FIELDS, GoogleEvent, normalised, patch_for, to_google
from tests.mapping.conftest import changes, item
from tests.mapping.test_event_roundtrip import items

UTC = EWSTimeZone("UTC")
LA = "America/Los_Angeles"

FIELD_URIS = {
    "subject": "item:Subject",
    "body": "item:Body",
    "categories": "item:Categories",
    "sensitivity": "item:Sensitivity",
    "reminder_is_set": "item:ReminderIsSet",
    "reminder_minutes_before_start": "item:ReminderMinutesBeforeStart",
    "reminder_due_by": "item:ReminderDueBy",
    "location": "calendar:Location",
    "start": "calendar:Start",
    "end": "calendar:End",
    "is_all_day": "calendar:IsAllDayEvent",
    "legacy_free_busy_status": "calendar:LegacyFreeBusyStatus",
    "uid": "calendar:UID",
    "_start_timezone": "calendar:StartTimeZone",
    "_end_timezone": "calendar:EndTimeZone",
    "recurrence": "calendar:Recurrence",
    "required_attendees": "calendar:RequiredAttendees",
    "importance": "item:Importance",
}


def set_(field: str, value: Any) -> FieldUpdate:
    return FieldUpdate("set", FieldURI(FIELD_URIS[field]), "CalendarItem", field, value)


def delete(field: str) -> FieldUpdate:
    return FieldUpdate("delete", FieldURI(FIELD_URIS[field]), None, field)


def utc(*args: int) -> EWSDateTime:
    return EWSDateTime(*args, tzinfo=UTC)


def snapshot(**changes: Any) -> GoogleEvent:
    """The tennis lesson as calsync wrote it to Google, with changes."""
    event = to_google(item("create/msdocs_createitem_appointment_tennis_req.xml"))
    event.update(changes)
    return event


NO_BODY = {k: v for k, v in snapshot().items() if k != "description"}
ALL_DAY = snapshot(start={"date": "2026-03-02"}, end={"date": "2026-03-03"})
REMINDED = snapshot(
    reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 15}]}
)
PERSONAL = snapshot(
    visibility="private",
    extendedProperties={"private": {"ews_free_busy": "Busy", "ews_sensitivity": "Personal"}},
)
CATEGORISED = snapshot(
    extendedProperties={"private": {"ews_free_busy": "Busy", "categories": '["Blue"]'}}
)

HAND_MADE = [
    # subject only
    ([set_("subject", "Squash")], snapshot(), {"summary": "Squash"}),
    # an unchanged value: an empty patch
    ([set_("subject", "Tennis lesson")], snapshot(), {}),
    ([set_("location", "Tennis club")], snapshot(), {}),
    # deletes
    ([delete("location")], snapshot(), {"location": None}),
    ([delete("subject")], snapshot(), {"summary": None}),
    ([delete("body")], snapshot(description="Bring rackets"), {"description": None}),
    ([delete("body")], NO_BODY, {}),
    (
        [delete("categories")],
        CATEGORISED,
        {"extendedProperties": {"private": {"categories": None}}},
    ),
    # body: text as is
    ([set_("body", Body("Bring rackets"))], snapshot(), {"description": "Bring rackets"}),
    # start and end: rendered in the snapshot's zone
    (
        [set_("start", utc(2013, 9, 21, 20, 0)), set_("end", utc(2013, 9, 21, 21, 0))],
        snapshot(),
        {
            "start": {"dateTime": "2013-09-21T13:00:00-07:00", "timeZone": LA},
            "end": {"dateTime": "2013-09-21T14:00:00-07:00", "timeZone": LA},
        },
    ),
    # the end only
    (
        [set_("end", utc(2013, 9, 21, 21, 0))],
        snapshot(),
        {"end": {"dateTime": "2013-09-21T14:00:00-07:00", "timeZone": LA}},
    ),
    # reminders set, unset, minutes
    (
        [set_("reminder_is_set", True), set_("reminder_minutes_before_start", 30)],
        snapshot(),
        {"reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 30}]}},
    ),
    (
        [set_("reminder_is_set", False)],
        REMINDED,
        {"reminders": {"useDefault": False, "overrides": []}},
    ),
    (
        [set_("reminder_minutes_before_start", 5)],
        REMINDED,
        {"reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]}},
    ),
    # minutes of a reminder that is not set change nothing Google shows
    ([set_("reminder_minutes_before_start", 5)], snapshot(), {}),
    # Outlook's ReminderDueBy alone changes nothing Google shows
    ([set_("reminder_due_by", utc(2013, 9, 21, 18, 45))], snapshot(), {}),
    # sensitivity and its record
    ([set_("sensitivity", "Private")], snapshot(), {"visibility": "private"}),
    (
        [set_("sensitivity", "Personal")],
        snapshot(),
        {
            "visibility": "private",
            "extendedProperties": {"private": {"ews_sensitivity": "Personal"}},
        },
    ),
    (
        [set_("sensitivity", "Private")],
        PERSONAL,
        {"extendedProperties": {"private": {"ews_sensitivity": None}}},
    ),
    # free/busy and its record
    (
        [set_("legacy_free_busy_status", "Free")],
        snapshot(),
        {
            "transparency": "transparent",
            "extendedProperties": {"private": {"ews_free_busy": "Free"}},
        },
    ),
    (
        [set_("legacy_free_busy_status", "Tentative")],
        snapshot(),
        {"extendedProperties": {"private": {"ews_free_busy": "Tentative"}}},
    ),
    # categories
    (
        [set_("categories", ["Red", "Green"])],
        snapshot(),
        {"extendedProperties": {"private": {"categories": '["Red","Green"]'}}},
    ),
    # UID
    ([set_("uid", "040000008200E001")], snapshot(), {"iCalUID": "040000008200E001"}),
    # all-day toggled on with start and end (UTC instants of Pacific midnights)
    (
        [
            set_("is_all_day", True),
            set_("start", utc(2013, 9, 21, 7, 0)),
            set_("end", utc(2013, 9, 22, 7, 0)),
        ],
        snapshot(),
        {
            "start": {"date": "2013-09-21", "dateTime": None, "timeZone": None},
            "end": {"date": "2013-09-22", "dateTime": None, "timeZone": None},
        },
    ),
    # all-day moved, its zone named in the same change
    (
        [
            set_("_start_timezone", EWSTimeZone("Asia/Tokyo")),
            set_("start", utc(2026, 3, 3, 15, 0)),
            set_("end", utc(2026, 3, 5, 15, 0)),
        ],
        ALL_DAY,
        {"start": {"date": "2026-03-04"}, "end": {"date": "2026-03-06"}},
    ),
    # several changes at once: only the fields that change
    (
        [set_("subject", "Tennis lesson"), set_("location", "Court 3"), delete("body")],
        NO_BODY,
        {"location": "Court 3"},
    ),
]


@pytest.mark.parametrize(("updates", "before", "expected"), HAND_MADE)
def test_hand_made_updates(
    updates: list[FieldUpdate], before: GoogleEvent, expected: GoogleEvent
) -> None:
    assert patch_for(updates, before) == expected


NOT_ENOUGH = [
    # recurrence changes: the caller fetches the series
    [set_("recurrence", None)],
    # IsAllDayEvent toggles without both start and end
    [set_("is_all_day", True)],
    [set_("is_all_day", True), set_("start", utc(2013, 9, 21, 7, 0))],
    # an all-day item moved without a zone to date it in
    [set_("start", utc(2026, 3, 3, 15, 0))],
    # a zone without the time it applies to
    [set_("_start_timezone", EWSTimeZone("Asia/Tokyo"))],
    # a reminder switched on: the minutes Exchange kept are unknown
    [set_("reminder_is_set", True)],
    # fields outside the core set, extended properties, appends
    [set_("required_attendees", [])],
    [set_("importance", "High")],
    [FieldUpdate("set", ExtendedFieldURI("String", property_name="x"), "CalendarItem", None, "v")],
    [FieldUpdate("set", FieldURI("calendar:Unknown"), "CalendarItem", None, None)],
    [FieldUpdate("append", FieldURI("item:Body"), "CalendarItem", "body", Body("more"))],
    # deletes whose result Exchange decides
    [delete("start")],
    [delete("sensitivity")],
]


@pytest.mark.parametrize("updates", NOT_ENOUGH)
def test_not_enough_to_decide(updates: list[FieldUpdate]) -> None:
    before = ALL_DAY if updates[0].field == "start" else snapshot()
    assert patch_for(updates, before) is None


def test_all_day_toggled_off_needs_a_zone() -> None:
    updates = [
        set_("is_all_day", False),
        set_("start", utc(2026, 3, 2, 17, 0)),
        set_("end", utc(2026, 3, 2, 18, 0)),
    ]
    assert patch_for(updates, ALL_DAY) is None
    zone = [set_("_start_timezone", EWSTimeZone("Europe/Paris")), *updates]
    assert patch_for(zone, ALL_DAY) == {
        "start": {
            "dateTime": "2026-03-02T18:00:00+01:00",
            "timeZone": "Europe/Paris",
            "date": None,
        },
        "end": {"dateTime": "2026-03-02T19:00:00+01:00", "timeZone": "Europe/Paris", "date": None},
    }


def test_a_snapshot_exchange_cannot_hold_is_not_enough() -> None:
    before = snapshot(recurrence=["RRULE:FREQ=HOURLY"])
    assert patch_for([set_("subject", "x")], before) is None


def test_no_updates_no_patch() -> None:
    assert patch_for([], snapshot()) == {}


# --- from the corpus -----------------------------------------------------------------------


def test_corpus_subject_only() -> None:
    (updates,) = changes("update/msdocs_updateitem_appointment_req.xml")
    assert patch_for(updates, snapshot()) == {
        "summary": "Tennis Lesson moved one hour later and to the day after Wednesday!"
    }


def test_corpus_batch_of_subjects() -> None:
    batch = changes("update/msdocs_updateitem_batch3_subject_req.xml")
    patches = [patch_for(updates, snapshot()) for updates in batch]
    assert [set(p or ()) for p in patches] == [{"summary"}] * 3
    assert patches[1] == {
        "summary": "Company headquarters are moving down the street to 1234 Contoso Drive!: Food bank delivery"
    }


def test_corpus_start_end_with_their_zone() -> None:
    (updates,) = changes("update/msdocs_updateitem_timezone_and_start_end_req.xml")
    before = snapshot(
        start={"dateTime": "2014-06-20T09:00:00-07:00", "timeZone": LA},
        end={"dateTime": "2014-06-20T10:00:00-07:00", "timeZone": LA},
    )
    assert patch_for(updates, before) == {
        "start": {"dateTime": "2014-06-20T12:00:00-05:00", "timeZone": "America/Chicago"},
        "end": {"dateTime": "2014-06-20T13:00:00-05:00", "timeZone": "America/Chicago"},
    }


def test_corpus_recurrence_change_is_not_enough() -> None:
    (updates,) = changes("update/msdocs_updateitem_recurrence_change_req.xml")
    assert patch_for(updates, snapshot()) is None


def test_corpus_attendee_change_is_not_enough() -> None:
    (updates,) = changes("update/msdocs_updateitem_occurrence_location_start_end_req.xml")
    assert patch_for(updates, snapshot()) is None


def test_corpus_body_delete_and_append() -> None:
    (deleted,) = changes("update/msdocs_updateitem_deleteitemfield_body_req.xml")
    assert patch_for(deleted, snapshot(description="Old text")) == {"description": None}
    (appended,) = changes("update/msdocs_updateitem_appendtoitemfield_body_req.xml")
    assert patch_for(appended, snapshot(description="Old text")) is None


def test_corpus_sensitivity_in_a_message_wrapper() -> None:
    (updates,) = changes(
        "update/msdocs_updateitem_setitemfield_sensitivity_message_wrapper_req.xml"
    )
    assert patch_for(updates, snapshot()) == {}
    assert patch_for(updates, PERSONAL) == {
        "visibility": "default",
        "extendedProperties": {"private": {"ews_sensitivity": None}},
    }


def test_corpus_occurrence_change() -> None:
    # the target is an occurrence (the caller decides which Google instance to patch);
    # the fields map all the same
    first, second = changes("synthetic/updateitem_occurrenceitemid_req.xml")
    assert patch_for(first, snapshot()) == {
        "summary": "Moved this week only",
        "location": None,
        # 22:00 UTC is 15:00 in Los Angeles, two days after DST began
        "start": {"dateTime": "2026-03-10T15:00:00-07:00", "timeZone": LA},
        "end": {"dateTime": "2026-03-10T16:00:00-07:00", "timeZone": LA},
    }
    # an extended property and an append of categories
    assert patch_for(second, snapshot()) is None


def test_patch_applied_to_the_snapshot_is_the_full_mapping() -> None:
    """A patch merged into the snapshot gives what to_google gives for the whole item."""
    (updates,) = changes("update/msdocs_updateitem_timezone_and_start_end_req.xml")
    before = snapshot()
    patch = patch_for(updates, before)
    assert patch is not None
    after = {**before, **patch}
    model = item("create/msdocs_createitem_appointment_tennis_req.xml")
    for update in updates:
        setattr(model, str(update.field), update.value)
    assert after == to_google(model)
    assert dt.datetime.fromisoformat(after["start"]["dateTime"]).utcoffset() == dt.timedelta(
        hours=-5
    )


# --- property: a patch merged into the snapshot is the full mapping ------------------------

TEXT = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=20)
UPDATES = st.lists(
    st.one_of(
        st.builds(lambda v: ("subject", v), st.one_of(st.none(), TEXT)),
        st.builds(lambda v: ("location", v), st.one_of(st.none(), TEXT)),
        st.builds(lambda v: ("body", v), st.one_of(st.none(), TEXT.map(Body))),
        st.builds(lambda v: ("uid", v), st.text("0123456789ABCDEF", min_size=1, max_size=8)),
        st.builds(
            lambda v: ("sensitivity", v),
            st.sampled_from(["Normal", "Personal", "Private", "Confidential"]),
        ),
        st.builds(
            lambda v: ("legacy_free_busy_status", v),
            st.sampled_from(["Free", "Tentative", "Busy", "OOF", "WorkingElsewhere"]),
        ),
        st.builds(
            lambda v: ("categories", v),
            st.one_of(st.none(), st.lists(TEXT.filter(bool), max_size=3)),
        ),
        st.builds(lambda v: ("reminder_is_set", v), st.just(False)),
        st.builds(lambda v: ("reminder_minutes_before_start", v), st.integers(0, 40320)),
        st.builds(lambda v: ("shift", v), st.integers(-3000, 3000)),
    ),
    min_size=1,
    max_size=4,
)


def merged(snapshot: GoogleEvent, patch: GoogleEvent) -> GoogleEvent:
    """What Google holds after a PATCH: nulls delete, extendedProperties merge."""
    result = dict(snapshot)
    for key, value in patch.items():
        if key == "extendedProperties":
            private = dict(result.get(key, {}).get("private", {}))
            private.update(value["private"])
            result[key] = {"private": {k: v for k, v in private.items() if v is not None}}
        elif value is None:
            result.pop(key, None)
        elif key in ("start", "end"):
            result[key] = {k: v for k, v in value.items() if v is not None}
        else:
            result[key] = value
    return result


@settings(max_examples=300)
@given(items(), UPDATES)
def test_patch_merged_into_the_snapshot_is_the_full_mapping(
    model: CalendarItem, changes_: list[tuple[str, Any]]
) -> None:
    before = to_google(model)
    after = copy.deepcopy(model)
    updates = []
    for name, value in changes_:
        if name == "shift":
            if after.is_all_day:
                continue
            delta = dt.timedelta(minutes=value)
            for bound in ("start", "end"):
                moved = getattr(after, bound) + delta
                setattr(after, bound, moved)
                updates.append(set_(bound, moved))
            continue
        if value is None:
            updates.append(delete(name))
        else:
            updates.append(set_(name, value))
        setattr(after, name, value)
    patch = patch_for(updates, before)
    if patch is None:
        return
    expected = to_google(after)
    got = merged(before, patch)
    for key in MANAGED_FIELDS:
        assert normalised(key, got.get(key)) == normalised(key, expected.get(key)), key
    # and nothing in the patch is a field that did not change
    for key in patch:
        assert normalised(key, before.get(key)) != normalised(key, expected.get(key)), key
