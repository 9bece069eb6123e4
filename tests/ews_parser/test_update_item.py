"""UpdateItem: each Set/Append/Delete with its target, path, exchangelib field and value
(ews_parser/services/update_item.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib.properties import Body
from exchangelib.recurrence import EndDatePattern, WeeklyPattern

from ews_parser import parse
from ews_parser.values import (
    ExtendedFieldURI,
    FieldUpdate,
    FieldURI,
    ItemId,
    LegacyTimeZone,
    OccurrenceItemId,
    RecurringMasterItemId,
    UpdateItemRequest,
)
from tests.ews_parser.conftest import load

UTC = dt.UTC


def request(name: str) -> UpdateItemRequest:
    body = parse(load(name)).body
    assert isinstance(body, UpdateItemRequest)
    return body


def by_uri(updates: tuple[FieldUpdate, ...]) -> dict[str, FieldUpdate]:
    return {u.path.uri: u for u in updates}


def test_occurrence_location_start_end_attendees_subject() -> None:
    req = request("update/msdocs_updateitem_occurrence_location_start_end_req.xml")
    assert req.conflict_resolution == "AlwaysOverwrite"
    assert req.send_meeting_invitations_or_cancellations == "SendToAllAndSaveCopy"
    (change,) = req.changes
    assert change.target == ItemId("AAMkA", "DwAAAB")
    updates = by_uri(change.updates)
    assert list(updates) == [
        "calendar:Location",
        "calendar:Start",
        "calendar:End",
        "calendar:RequiredAttendees",
        "item:Subject",
    ]
    assert updates["calendar:Location"].value == "Helipad of Contoso Bldg 1"
    assert updates["calendar:Start"].field == "start"
    assert updates["calendar:Start"].value == dt.datetime(2014, 3, 28, 2, 33, tzinfo=UTC)
    assert updates["calendar:End"].value == dt.datetime(2014, 3, 28, 3, 33, tzinfo=UTC)
    attendees = updates["calendar:RequiredAttendees"].value
    assert [a.mailbox.email_address for a in attendees][:2] == [
        "Mack@contoso.com",
        "Sadie@contoso.com",
    ]
    assert len(attendees) == 6
    assert updates["item:Subject"].value == "Weekly Update Meeting:Mandatory"
    assert all(u.action == "set" and u.item_class == "CalendarItem" for u in change.updates)


def test_recurrence_and_legacy_meeting_time_zone_change() -> None:
    req = request("update/msdocs_updateitem_recurrence_change_req.xml")
    assert req.conflict_resolution == "AutoResolve"
    updates = by_uri(req.changes[0].updates)
    recurrence = updates["calendar:Recurrence"].value
    assert isinstance(recurrence.pattern, WeeklyPattern)
    assert isinstance(recurrence.boundary, EndDatePattern)
    meeting = updates["calendar:MeetingTimeZone"].value
    assert isinstance(meeting, LegacyTimeZone)
    assert meeting.name


def test_start_time_zone_set_in_the_same_change_reads_its_floating_start() -> None:
    req = request("update/msdocs_updateitem_timezone_and_start_end_req.xml")
    updates = by_uri(req.changes[0].updates)
    assert updates["calendar:StartTimeZone"].value.key == "America/Chicago"
    assert updates["calendar:EndTimeZone"].value.key == "America/Chicago"
    assert updates["calendar:Start"].value.tzinfo is not None


def test_occurrence_and_master_targets_extended_property_append_and_delete() -> None:
    req = request("synthetic/updateitem_occurrenceitemid_req.xml")
    assert req.send_meeting_invitations_or_cancellations == "SendToNone"
    occurrence, master = req.changes
    assert isinstance(occurrence.target, OccurrenceItemId)
    assert occurrence.target.instance_index == 3
    assert occurrence.target.recurring_master_id.startswith("AAMkADk0")
    updates = by_uri(occurrence.updates)
    # floating 15:00 under TimeZoneContext Pacific (PDT on 10 March 2026) is 22:00Z
    assert updates["calendar:Start"].value == dt.datetime(2026, 3, 10, 22, tzinfo=UTC)
    assert updates["calendar:Location"] == FieldUpdate(
        action="delete", path=FieldURI("calendar:Location"), field="location"
    )
    assert master.target == RecurringMasterItemId("AAMkOcc2Id", "DwAAAOcc2")
    extended, categories = master.updates
    assert isinstance(extended.path, ExtendedFieldURI)
    assert extended.path.property_name == "calsync-origin"
    assert extended.path.distinguished_property_set_id == "PublicStrings"
    assert extended.value == "google"
    assert categories.action == "append"
    assert categories.field == "categories"
    assert categories.value == ["Blue category"]


def test_message_wrapper_for_a_calendar_field_still_maps() -> None:
    # clients wrap item:* fields in t:Message even for calendar items
    req = request("update/msdocs_updateitem_setitemfield_sensitivity_message_wrapper_req.xml")
    (update,) = req.changes[0].updates
    assert update.item_class == "Message"
    assert update.field == "sensitivity"
    assert update.value in {"Normal", "Personal", "Private", "Confidential"}


def test_batch_of_three_subject_changes_keeps_order_and_values_verbatim() -> None:
    req = request("update/msdocs_updateitem_batch3_subject_req.xml")
    assert req.send_meeting_invitations_or_cancellations == "SendToChangedAndSaveCopy"
    subjects = [c.updates[0].value for c in req.changes]
    assert [s.rstrip().rpartition(": ")[2] for s in subjects] == [
        "Review current quarterly deliverables",
        "Food bank delivery",
        "Code Blast",
    ]
    # the client sent a trailing newline and spaces in the first: it is its value
    assert subjects[0] != subjects[0].rstrip()


def test_append_and_delete_body() -> None:
    append = request("update/msdocs_updateitem_appendtoitemfield_body_req.xml")
    (update,) = append.changes[0].updates
    assert (update.action, update.path.uri, update.field) == ("append", "item:Body", "body")
    assert update.value
    delete = request("update/msdocs_updateitem_deleteitemfield_body_req.xml")
    (update,) = delete.changes[0].updates
    assert (update.action, update.path.uri, update.value) == ("delete", "item:Body", None)


def test_deletes_name_their_exchangelib_field_too() -> None:
    # regression (found by the EWS stand-in): DeleteItemField came without its field
    req = request("synthetic/updateitem_occurrenceitemid_req.xml")
    location = by_uri(req.changes[0].updates)["calendar:Location"]
    assert (location.action, location.field, location.value) == ("delete", "location", None)


# --- MAPI properties that are an item's own fields (DavMail sets subject and body so) ----------


def _property_update(tag: str, kind: str, value: str | None) -> bytes:
    path = f'<t:ExtendedFieldURI PropertyTag="{tag}" PropertyType="{kind}"/>'
    if value is None:
        update = f"<t:DeleteItemField>{path}</t:DeleteItemField>"
    else:
        update = (
            f"<t:SetItemField>{path}<t:CalendarItem><t:ExtendedProperty>{path}"
            f"<t:Value>{value}</t:Value></t:ExtendedProperty></t:CalendarItem></t:SetItemField>"
        )
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>'
        '<m:UpdateItem ConflictResolution="AlwaysOverwrite" SendMeetingInvitationsOrCancellations="SendToNone">'
        '<m:ItemChanges><t:ItemChange><t:ItemId Id="X" ChangeKey="Y"/><t:Updates>'
        f"{update}</t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem></s:Body></s:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    ("tag", "kind", "value", "field", "expected"),
    [
        # PidTagSubject and PidTagBody, in the spellings clients use
        ("0x37", "String", "New subject", "subject", "New subject"),
        ("0x0037", "String", "New subject", "subject", "New subject"),
        ("55", "String", "New subject", "subject", "New subject"),
        ("0x1000", "String", "Plain body", "body", "Plain body"),
        ("0x1000", "String", None, "body", None),
        # other tags and other types stay extended properties
        ("0x10f3", "String", "event.EML", None, "event.EML"),
        ("0x0037", "Integer", "7", None, "7"),
        ("zzz", "String", "x", None, "x"),
    ],
)
def test_well_known_property_tags_are_item_fields(
    tag: str, kind: str, value: str | None, field: str | None, expected: str | None
) -> None:
    body = parse(_property_update(tag, kind, value)).body
    assert isinstance(body, UpdateItemRequest)
    (update,) = body.changes[0].updates
    assert update.field == field
    assert update.value == expected
    if field == "body" and value is not None:
        assert isinstance(update.value, Body)
