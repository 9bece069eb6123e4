"""Occurrence ItemIds: every occurrence and exception has an ItemId of its own, stable
across reads, that GetItem, UpdateItem and DeleteItem take as Exchange does, and that
names nothing once its occurrence is gone.

https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/calendars-and-ews-in-exchange
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-access-a-recurring-series-by-using-ews-in-exchange
"""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib import Account, CalendarItem, EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.recurrence import NumberedPattern, Recurrence, WeeklyPattern
from lxml import etree

from emulators.ews import EwsServer, ids
from tests.emulators.ews.conftest import raw_post, soap

UTC = EWSTimeZone("UTC")
BERLIN = EWSTimeZone("Europe/Berlin")
NS = {"m": "http://schemas.microsoft.com/exchange/services/2006/messages",
      "t": "http://schemas.microsoft.com/exchange/services/2006/types"}


def test_an_occurrence_id_decodes_to_its_master_index_and_original_start() -> None:
    master = ids.new_item_id("alice@example.com")
    start = dt.datetime(2027, 1, 18, 8, tzinfo=dt.UTC)
    own = ids.occurrence_id(master, 3, start)
    assert own == ids.occurrence_id(master, 3, start)  # the same occurrence, the same id
    assert own != ids.occurrence_id(master, 3, start + dt.timedelta(hours=1))
    assert own.startswith("AAckA")  # not an ItemId of a stored item ("AAMkA")
    assert ids.read_occurrence_id(own) == ids.OccurrenceRef(master, 3, start)
    assert ids.read_occurrence_id(master) is None
    assert ids.read_occurrence_id("not base64 at all") is None


def _weekly(account: Account, count: int = 5) -> CalendarItem:
    """Mondays 09:00-10:00 Berlin from 2027-01-04."""
    item = CalendarItem(
        account=account, folder=account.calendar, subject="Weekly",
        start=EWSDateTime(2027, 1, 4, 9, tzinfo=BERLIN),
        end=EWSDateTime(2027, 1, 4, 10, tzinfo=BERLIN),
        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1],
                                                    first_day_of_week=1),
                              boundary=NumberedPattern(start=EWSDate(2027, 1, 4), number=count)))
    item.save()
    return item


def _view(account: Account) -> list[CalendarItem]:
    return list(account.calendar.view(start=EWSDateTime(2027, 1, 1, tzinfo=UTC),
                                      end=EWSDateTime(2027, 3, 1, tzinfo=UTC)))


def _get(server: EwsServer, item_xml: str, extra: str = "") -> etree._Element:
    """GetItem as DavMail and the Managed API bind an occurrence: IdOnly plus
    AdditionalProperties."""
    body = soap("<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
                "<t:AdditionalProperties><t:FieldURI FieldURI=\"calendar:OriginalStart\"/>"
                f"<t:FieldURI FieldURI=\"calendar:CalendarItemType\"/>{extra}"
                "</t:AdditionalProperties></m:ItemShape>"
                f"<m:ItemIds>{item_xml}</m:ItemIds></m:GetItem>")
    _, _, answer = raw_post(server.url, body)
    message = etree.fromstring(answer).find(".//m:GetItemResponseMessage", NS)
    assert message is not None
    return message


def _code(message: etree._Element) -> str | None:
    return message.findtext("m:ResponseCode", namespaces=NS)


def _delete(server: EwsServer, item_id: str) -> etree._Element:
    """DeleteItem of an occurrence's own ItemId, as DavMail removes an EXDATE'd one."""
    body = soap('<m:DeleteItem DeleteType="HardDelete"'
                ' SendMeetingCancellations="SendToAllAndSaveCopy"><m:ItemIds>'
                f'<t:ItemId Id="{item_id}"/></m:ItemIds></m:DeleteItem>')
    _, _, answer = raw_post(server.url, body)
    message = etree.fromstring(answer).find(".//m:DeleteItemResponseMessage", NS)
    assert message is not None
    return message


def test_view_occurrences_have_stable_ids_of_their_own(alice: Account) -> None:
    # FindItem/CalendarView: one ItemId per occurrence, none the master's; a second read
    # gives the same ids, and GetItem by OccurrenceItemId the same as the view.
    master = _weekly(alice)
    first, second = _view(alice), _view(alice)
    assert [o.id for o in first] == [o.id for o in second]
    assert len({o.id for o in first}) == 5 and master.id not in {o.id for o in first}
    third = master.occurrence(3)
    third.refresh()
    assert third.id == first[2].id
    # and GetItem by that id returns the occurrence itself, id unchanged
    again = alice.calendar.get(id=first[2].id)
    assert (again.id, again.type, again.start) == (
        first[2].id, "Occurrence", EWSDateTime(2027, 1, 18, 8, tzinfo=UTC))


def test_occurrence_item_id_answers_with_the_occurrences_own_id(
        server: EwsServer, alice: Account) -> None:
    # DavMail's loop: GetItem OccurrenceItemId (master + InstanceIndex) with OriginalStart;
    # the answer's ItemId is the occurrence's own, the one CalendarView shows.
    master = _weekly(alice)
    view = _view(alice)
    message = _get(server, f'<t:OccurrenceItemId RecurringMasterId="{master.id}"'
                           ' InstanceIndex="2"/>')
    item = message.find("m:Items/t:CalendarItem", NS)
    assert item is not None
    assert item.find("t:ItemId", NS).get("Id") == view[1].id  # type: ignore[union-attr]
    assert item.findtext("t:OriginalStart", namespaces=NS) == "2027-01-11T08:00:00Z"
    assert item.findtext("t:CalendarItemType", namespaces=NS) == "Occurrence"


def test_updating_an_occurrence_by_its_own_id_makes_it_an_exception(alice: Account) -> None:
    # UpdateItem on the occurrence's ItemId (what CalendarView returned): it becomes an
    # Exception, keeps its id, and the master lists it in ModifiedOccurrences.
    master = _weekly(alice)
    occurrence = _view(alice)[1]
    occurrence.subject = "Moved"
    occurrence.start = EWSDateTime(2027, 1, 11, 15, tzinfo=BERLIN)
    occurrence.end = EWSDateTime(2027, 1, 11, 16, tzinfo=BERLIN)
    occurrence.save(update_fields=["subject", "start", "end"])
    assert occurrence.id == _view(alice)[1].id
    changed = alice.calendar.get(id=occurrence.id)
    assert (changed.type, changed.subject, changed.original_start) == (
        "Exception", "Moved", EWSDateTime(2027, 1, 11, 8, tzinfo=UTC))
    fresh = alice.calendar.get(id=master.id)
    assert [o.id for o in fresh.modified_occurrences] == [occurrence.id]


def test_deleting_an_occurrence_by_its_own_id(server: EwsServer, alice: Account) -> None:
    # DeleteItem on the occurrence's ItemId: a DeletedOccurrence of the master, whose
    # ChangeKey changes and which SyncFolderItems reports as updated.
    master = _weekly(alice)
    list(alice.calendar.sync_items())  # the feed's state before
    before = alice.calendar.get(id=master.id)
    doomed = _view(alice)[2]
    assert _code(_delete(server, doomed.id)) == "NoError"
    after = alice.calendar.get(id=master.id)
    assert after.changekey != before.changekey
    assert [d.start for d in after.deleted_occurrences] == [
        EWSDateTime(2027, 1, 18, 8, tzinfo=UTC)]
    assert [o.id for o in _view(alice)] == [o.id for o in _view(alice)]
    assert doomed.id not in {o.id for o in _view(alice)}
    assert [(kind, item.id) for kind, item in alice.calendar.sync_items()] == [
        ("update", master.id)]


def test_exchangelib_deletes_an_occurrence_it_bound_by_index(alice: Account) -> None:
    # exchangelib (like the Managed API's Appointment.BindToOccurrence + Delete) reads the
    # occurrence by OccurrenceItemId, then deletes it by the ItemId that came back.
    master = _weekly(alice)
    occurrence = master.occurrence(4)
    occurrence.refresh()
    occurrence.delete()
    assert [o.start.astimezone(BERLIN).day for o in _view(alice)] == [4, 11, 18, 1]


@pytest.mark.parametrize("change", ["occurrence deleted", "master deleted", "series moved",
                                    "master moved"])
def test_a_stale_occurrence_id_is_not_found(server: EwsServer, alice: Account,
                                            change: str) -> None:
    # An occurrence's ItemId names one original start of one master: once that occurrence
    # is gone it answers ErrorItemNotFound to GetItem, UpdateItem and DeleteItem.
    master = _weekly(alice)
    stale = _view(alice)[1].id
    if change == "occurrence deleted":
        _delete(server, stale)
    elif change == "master deleted":
        master.delete()
    elif change == "series moved":  # an hour later: every original start moves
        master.start += dt.timedelta(hours=1)
        master.end += dt.timedelta(hours=1)
        master.save(update_fields=["start", "end"])
    else:  # MoveItem gives the master a new ItemId
        master.move(alice.trash)
    assert _code(_get(server, f'<t:ItemId Id="{stale}"/>')) == "ErrorItemNotFound"
    assert _code(_delete(server, stale)) == "ErrorItemNotFound"
    body = soap('<m:UpdateItem ConflictResolution="AutoResolve" MessageDisposition="SaveOnly"'
                ' SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges>'
                f'<t:ItemChange><t:ItemId Id="{stale}"/><t:Updates><t:SetItemField>'
                '<t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>x</t:Subject>'
                "</t:CalendarItem></t:SetItemField></t:Updates></t:ItemChange>"
                "</m:ItemChanges></m:UpdateItem>")
    _, _, answer = raw_post(server.url, body)
    assert b"<m:ResponseCode>ErrorItemNotFound</m:ResponseCode>" in answer


def test_a_deleted_index_by_occurrence_item_id_is_the_documented_error(
        server: EwsServer, alice: Account) -> None:
    # By master + index the answer names the case (ErrorCalendarOccurrenceIsDeletedFrom
    # Recurrence), where the occurrence's own id just names nothing.
    master = _weekly(alice)
    _delete(server, _view(alice)[1].id)
    message = _get(server, f'<t:OccurrenceItemId RecurringMasterId="{master.id}"'
                           ' InstanceIndex="2"/>')
    assert _code(message) == "ErrorCalendarOccurrenceIsDeletedFromRecurrence"


def test_first_and_last_occurrence_are_those_still_in_the_series(
        server: EwsServer, alice: Account) -> None:
    # The master's FirstOccurrence/LastOccurrence skip deleted occurrences and give an
    # exception's own times, each with the occurrence's own ItemId.
    master = _weekly(alice, count=4)
    view = _view(alice)
    _delete(server, view[0].id)
    _delete(server, view[3].id)
    moved = view[2]
    moved.start = EWSDateTime(2027, 1, 18, 15, tzinfo=BERLIN)
    moved.end = EWSDateTime(2027, 1, 18, 16, tzinfo=BERLIN)
    moved.save(update_fields=["start", "end"])
    fresh = alice.calendar.get(id=master.id)
    first, last = fresh.first_occurrence, fresh.last_occurrence
    assert (first.id, first.start) == (view[1].id, EWSDateTime(2027, 1, 11, 8, tzinfo=UTC))
    assert (last.id, last.start, last.original_start) == (
        view[2].id, EWSDateTime(2027, 1, 18, 14, tzinfo=UTC),
        EWSDateTime(2027, 1, 18, 8, tzinfo=UTC))
