"""The cheap depth (ews_parser/classify.py): what the hooks read, without exchangelib."""

from __future__ import annotations

import pytest
from exchangelib.properties import EWSElement

from ews_parser import classify
from ews_parser.values import DistinguishedFolderId, ItemId, OccurrenceItemId
from tests.ews_parser.conftest import FIXTURE_FILES, load


def test_classify_never_reads_items_with_exchangelib(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("classify called exchangelib's from_xml")

    monkeypatch.setattr(EWSElement, "from_xml", classmethod(refuse))
    for path in FIXTURE_FILES:
        classify(path.read_bytes())


def test_create_request_names_folder_and_item_kinds() -> None:
    c = classify(load("create/msdocs_createitem_batch3_incl_weekly_recurrence_req.xml"))
    assert c.folders == (DistinguishedFolderId("calendar"),)
    assert c.item_classes == ("CalendarItem",) * 3
    assert c.time_zone_context == "Pacific Standard Time"


def test_cancel_calendar_item_targets_the_meeting() -> None:
    c = classify(load("delete/msdocs_createitem_cancelcalendaritem_req.xml"))
    assert c.item_classes == ("CancelCalendarItem",)
    (target,) = c.targets
    assert isinstance(target, ItemId)


def test_delete_occurrence_and_move_targets() -> None:
    (target,) = classify(load("delete/msdocs_deleteitem_occurrenceitemid_req.xml")).targets
    assert isinstance(target, OccurrenceItemId) and target.instance_index == 3
    move = classify(load("move/msdocs_moveitem_req.xml"))
    assert move.targets and move.folders


def test_update_item_classes_align_with_targets() -> None:
    c = classify(load("synthetic/updateitem_occurrenceitemid_req.xml"))
    assert len(c.targets) == len(c.item_classes) == 2
    assert c.item_classes == ("CalendarItem", "CalendarItem")
    wrapper = classify(
        load("update/msdocs_updateitem_setitemfield_sensitivity_message_wrapper_req.xml")
    )
    assert wrapper.item_classes == ("Message",)
    delete_only = classify(load("update/msdocs_updateitem_deleteitemfield_body_req.xml"))
    assert delete_only.item_classes == ("",)


def test_response_summaries_tell_calendar_items_from_mail() -> None:
    (create,) = classify(load("create/pyexchange_createitem_resp.xml")).messages
    assert create.ok and [r.item_class for r in create.items] == ["CalendarItem"]
    (sync,) = classify(
        load("sync/msdocs_syncfolderitems_incremental_resp_update_create_readflag_delete.xml")
    ).messages
    assert {r.change_type for r in sync.items} == {"Update", "Create", "ReadFlagChange", "Delete"}
    assert "Message" in {r.item_class for r in sync.items}


def test_conflicting_meetings_inside_an_item_are_not_taken_for_the_item() -> None:
    # ConflictingMeetings/AdjacentMeetings hold CalendarItems with their own ItemIds
    (message,) = classify(load("get/pyexchange_getitem_full_meeting_attendees_resp.xml")).messages
    assert len(message.items) == 1


def test_sync_summary_of_a_calendar_folder() -> None:
    (message,) = classify(load("synthetic/syncfolderitems_calendar_resp.xml")).messages
    assert [(r.change_type, r.item_class) for r in message.items] == [
        ("Create", "CalendarItem"),
        ("Update", "CalendarItem"),
        ("Delete", ""),
    ]


def test_get_folder_summary_names_the_calendar_folder() -> None:
    (message,) = classify(load("synthetic/getfolder_calendar_resp.xml")).messages
    (folder,) = message.folders
    assert (folder.folder_type, folder.folder_class, folder.id) == (
        "CalendarFolder",
        "IPF.Appointment",
        "AAMkCalendarFolder",
    )


def test_server_busy_message_carries_its_back_off() -> None:
    (message,) = classify(
        load("errors/ewsrs_syncfolderitems_ErrorServerBusy_ConcurrentSyncCalls_BackOff5000.xml")
    ).messages
    assert (message.response_code, message.back_off_ms, message.ok) == (
        "ErrorServerBusy",
        5000,
        False,
    )


def test_classify_imports_no_exchangelib() -> None:
    # the addon imports classify at mitmdump start-up; exchangelib would add ~0.2 s there
    import subprocess
    import sys

    code = "import sys, ews_parser, ews_parser.classify; print('exchangelib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
