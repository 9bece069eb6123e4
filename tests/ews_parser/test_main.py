"""`python -m ews_parser FILE...` through its real entry point (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.ews_parser.conftest import FIXTURES, ROOT


def run(*files: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ews_parser", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_one_json_object_per_file_with_the_documented_keys() -> None:
    files = [
        FIXTURES / "create/msdocs_createitem_batch3_incl_weekly_recurrence_req.xml",
        FIXTURES / "create/msdocs_createitem_batch3_resp.xml",
        FIXTURES / "update/msdocs_updateitem_occurrence_location_start_end_req.xml",
        FIXTURES / "delete/msdocs_deleteitem_batch3_affectedtaskoccurrences_req.xml",
        FIXTURES / "errors/exchangelib_soapfault_ErrorServerBusy_BackOffMilliseconds.xml",
    ]
    result = run(*files)
    assert result.returncode == 0, result.stderr
    create, response, update, delete, fault = map(json.loads, result.stdout.splitlines())

    assert (create["kind"], create["operation"]) == ("request", "CreateItem")
    assert [i["subject"] for i in create["items"]] == [
        "Review current quarterly deliverables",
        "Food bank delivery",
        "Code Blast",
    ]
    weekly = create["items"][1]
    assert weekly["start"] == "2014-01-07T13:13:40-08:00"  # ISO 8601 in the item's zone
    assert weekly["end"] == "2014-01-07T14:13:40-08:00"
    assert weekly["is_all_day"] is False
    assert weekly["recurrence"]["pattern"]["type"] == "WeeklyPattern"
    assert weekly["recurrence"]["boundary"]["number"] == 10
    assert create["items"][0]["recurrence"] is None

    assert response["kind"] == "response"
    assert len(response["messages"]) == 3
    first = response["messages"][0]
    assert first["response_class"] == "Success" and first["response_code"] == "NoError"
    assert set(first["item_ids"][0]) == {"id", "change_key"}

    change = update["changes"][0]
    assert set(change) >= {"item_id", "change_key", "action", "field_uri", "value"}
    assert (change["action"], change["field_uri"], change["value"]) == (
        "set",
        "calendar:Location",
        "Helipad of Contoso Bldg 1",
    )

    assert delete["delete_type"] == "MoveToDeletedItems"
    assert len(delete["item_ids"]) == 3

    assert fault["kind"] == "fault" and fault["back_off_ms"] == 297749


def test_all_day_prints_midnight_to_midnight_in_the_items_zone() -> None:
    result = run(FIXTURES / "create/msdocs_createitem_allday_vacation_req.xml")
    (item,) = json.loads(result.stdout)["items"]
    assert (item["start"], item["end"], item["is_all_day"]) == (
        "2014-06-09T00:00:00-04:00",
        "2014-06-10T00:00:00-04:00",
        True,
    )


def test_bad_files_get_one_line_each_and_the_rest_still_print(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(
        (FIXTURES / "create/msdocs_createitem_batch3_resp.xml").read_bytes()[:300]
    )
    bomb = tmp_path / "bomb.xml"
    bomb.write_bytes(b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>')
    good = FIXTURES / "delete/msdocs_deleteitem_resp_success.xml"
    result = run(truncated, tmp_path / "missing.xml", good, bomb)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3
    assert errors[0].startswith(f"{truncated}: malformed XML")
    assert errors[1].startswith(f"{tmp_path / 'missing.xml'}: No such file")
    assert errors[2].startswith(f"{bomb}: document type declarations are not allowed")
    assert "Traceback" not in result.stderr
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["operation"] == "DeleteItem"


def test_attendee_without_a_mailbox_prints() -> None:
    # regression (found by fuzzing): an Attendee whose Mailbox element is missing
    body = (FIXTURES / "create/msdocs_createitem_meeting_required_attendees_req.xml").read_text()
    start = body.index("<Mailbox>")  # this sample uses the default namespace
    end = body.index("</Mailbox>") + len("</Mailbox>")
    result = subprocess.run(
        [sys.executable, "-m", "ews_parser", "/dev/stdin"],
        input=body[:start] + body[end:],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    attendees = json.loads(result.stdout)["items"][0]["required_attendees"]
    assert attendees[0] is None and len(attendees) == 2
