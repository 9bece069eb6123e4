"""Responses: one message per requested item, in order, with codes, ids, back-off, paging
and sync changes (ews_parser/responses.py)."""

from __future__ import annotations

import pytest

from ews_parser import parse
from ews_parser.values import Response
from tests.ews_parser.conftest import load


def response(name: str) -> Response:
    body = parse(load(name)).body
    assert isinstance(body, Response)
    return body


def test_batch_with_a_failure_in_the_middle_keeps_pairing() -> None:
    messages = response("synthetic/createitem_batch_mixed_resp.xml").messages
    assert [m.response_class for m in messages] == ["Success", "Error", "Success"]
    assert [m.ok for m in messages] == [True, False, True]
    assert messages[1].response_code == "ErrorFolderNotFound"
    assert messages[1].items == ()
    assert [m.items[0].item_id.id for m in (messages[0], messages[2])] == ["AAMkFirst", "AAMkThird"]


def test_irresolvable_conflict_and_conflict_results() -> None:
    conflict, ok = response("synthetic/updateitem_errorirresolvableconflict_resp.xml").messages
    assert conflict.response_code == "ErrorIrresolvableConflict"
    assert conflict.descriptive_link_key == 0
    assert "change key" in (conflict.message_text or "")
    assert ok.items[0].item_id is not None
    assert ok.items[0].item_id.change_key == "DwAAAOcc3"
    assert ok.conflict_results == 0
    autoresolved = response("update/msdocs_updateitem_batch3_resp_conflictresults1.xml")
    assert [m.conflict_results for m in autoresolved.messages] == [1, 1, 1]


ERROR_CASES = [
    # (fixture, message index, code, back-off ms, a MessageXml name it must carry)
    (
        "errors/ewsrs_syncfolderitems_ErrorServerBusy_ConcurrentSyncCalls_BackOff5000.xml",
        0,
        "ErrorServerBusy",
        5000,
        "BackOffMilliseconds",
    ),
    (
        "errors/exchangelib_deleteitem_ErrorInternalServerError_inner_error.xml",
        0,
        "ErrorInternalServerError",
        None,
        None,
    ),
    (
        "errors/exchangelib_deleteitem_ErrorInvalidValueForProperty_messagexml.xml",
        0,
        "ErrorInvalidValueForProperty",
        None,
        None,
    ),
    ("errors/msdocs_deleteitem_resp_ErrorItemNotFound.xml", 0, "ErrorItemNotFound", None, None),
    (
        "errors/pyexchange_getitem_ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange_resp.xml",
        4,
        "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
        None,
        None,
    ),
]


@pytest.mark.parametrize(("name", "index", "code", "back_off", "xml_name"), ERROR_CASES)
def test_error_messages(
    name: str, index: int, code: str, back_off: int | None, xml_name: str | None
) -> None:
    message = response(name).messages[index]
    assert message.response_class == "Error"
    assert message.response_code == code
    assert message.back_off_ms == back_off
    assert not message.ok
    if xml_name:
        assert xml_name in dict(message.message_xml)


def test_inner_error_code_is_kept_in_message_xml() -> None:
    (message,) = response(
        "errors/exchangelib_deleteitem_ErrorInternalServerError_inner_error.xml"
    ).messages
    assert message.message_xml  # the inner error pattern: a code inside MessageXml
    assert any("Error" in value for _, value in message.message_xml)


def test_occurrence_batch_mixes_successes_and_an_out_of_range_error() -> None:
    messages = response(
        "get/pyexchange_getitem_occurrences_batch_with_out_of_range_resp.xml"
    ).messages
    classes = [m.response_class for m in messages]
    assert "Success" in classes and "Error" in classes
    for message in messages:
        if message.ok:
            assert message.items and message.items[0].model.type == "Occurrence"
        else:
            assert message.response_code == "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange"
            assert message.items == ()


def test_find_item_paging() -> None:
    (message,) = response("find/pyexchange_finditem_calendarview_resp.xml").messages
    assert message.paging is not None
    assert message.paging.total_items_in_view == 42
    assert [i.model.type for i in message.items].count("Occurrence") == 2


def test_sync_folder_items_on_a_calendar() -> None:
    (message,) = response("synthetic/syncfolderitems_calendar_resp.xml").messages
    assert message.sync_state == "H4sIAAAAAAAEAGNgYGBgAAAAAP//"
    assert message.includes_last_item_in_range is False
    create, update, delete = message.changes
    assert create.change_type == "Create" and create.item is not None
    assert create.item.model.subject == "Dentist"
    assert create.item.model._start_timezone.key == "Europe/London"
    assert update.item is not None and update.item.model.recurrence is not None
    assert delete.change_type == "Delete" and delete.item_id is not None
    assert delete.item_id.id == "AAMkGoneId"


def test_sync_change_kinds_including_read_flag() -> None:
    (message,) = response(
        "sync/msdocs_syncfolderitems_incremental_resp_update_create_readflag_delete.xml"
    ).messages
    kinds = [c.change_type for c in message.changes]
    assert set(kinds) == {"Update", "Create", "ReadFlagChange", "Delete"}
    read_flag = next(c for c in message.changes if c.change_type == "ReadFlagChange")
    assert read_flag.is_read is not None and read_flag.item_id is not None
    update = next(c for c in message.changes if c.change_type == "Update")
    assert update.item is not None and update.item.item_class == "Message"
    assert update.item.model is None  # mail is read for its id only


def test_move_item_response_with_the_docs_itemid_typo() -> None:
    (message,) = response("move/msdocs_moveitem_resp.xml").messages
    assert message.items and message.items[0].item_id is not None


def test_moved_calendar_item_has_a_new_id() -> None:
    (message,) = response("move/pyexchange_moveitem_calendaritem_resp.xml").messages
    (item,) = message.items
    assert item.item_class == "CalendarItem" and item.item_id is not None


def test_get_folder_names_the_calendar_folder() -> None:
    (message,) = response("synthetic/getfolder_calendar_resp.xml").messages
    (folder,) = message.folders
    assert folder.folder_type == "CalendarFolder"
    assert folder.folder_class == "IPF.Appointment"
    assert folder.folder_id is not None and folder.folder_id.id == "AAMkCalendarFolder"


def test_find_and_sync_requests_keep_additional_properties() -> None:
    # regression (found by the EWS stand-in): exchangelib asks IdOnly + AdditionalProperties
    from ews_parser.values import FieldURI, FindItemRequest, SyncFolderItemsRequest

    find = parse(load("find/msdocs_finditem_calendarview_req2.xml")).body
    assert isinstance(find, FindItemRequest)
    assert FieldURI("item:Subject") in find.additional_properties
    sync = parse(
        load("sync/msdocs_syncfolderitems_req.xml").replace(
            b"<t:BaseShape>Default</t:BaseShape>",
            b'<t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="calendar:Start"/></t:AdditionalProperties>',
        )
    ).body
    assert isinstance(sync, SyncFolderItemsRequest)
    assert sync.additional_properties == (FieldURI("calendar:Start"),)
