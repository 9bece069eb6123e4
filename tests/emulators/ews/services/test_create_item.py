"""CreateItem of meeting response objects through the real exchangelib: AcceptItem,
TentativelyAcceptItem, DeclineItem for an attendee, CancelCalendarItem for the organizer.
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-respond-to-meeting-requests-by-using-ews-in-exchange
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-cancel-a-meeting-by-using-ews-in-exchange
"""

from __future__ import annotations

from exchangelib import Account, CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.properties import Attendee, Mailbox

from emulators.ews import EwsServer
from emulators.ews.mailbox import clone

BERLIN = EWSTimeZone("Europe/Berlin")


def _meeting(account: Account) -> CalendarItem:
    return CalendarItem(
        account=account, folder=account.calendar, subject="Review",
        start=EWSDateTime(2024, 6, 3, 10, tzinfo=BERLIN),
        end=EWSDateTime(2024, 6, 3, 11, tzinfo=BERLIN),
        required_attendees=[Attendee(mailbox=Mailbox(email_address="bob@example.com"))],
    )


def _invite_bob(server: EwsServer, alice: Account) -> str:
    # This stand-in does not deliver invitations: put alice's meeting into bob's calendar
    # as a received one (the state Accept/Decline act on).
    meeting = _meeting(alice)
    meeting.save()
    stored = server.store.mailbox("alice@example.com").items[meeting.id].model  # type: ignore[union-attr]
    return server.store.mailbox("bob@example.com").add_received_meeting(  # type: ignore[union-attr]
        clone(stored), organizer="alice@example.com")


def test_accept_and_tentative_set_my_response_type(server: EwsServer, alice: Account,
                                                    bob: Account) -> None:
    # AcceptItem / TentativelyAcceptItem with a ReferenceItemId set MyResponseType and
    # keep the meeting in the calendar.
    item = bob.calendar.get(id=_invite_bob(server, alice))
    assert item.my_response_type == "NoResponseReceived"
    assert item.organizer.email_address == "alice@example.com"
    item.accept()
    assert bob.calendar.get(id=item.id).my_response_type == "Accept"
    again = bob.calendar.get(id=item.id)
    again.tentatively_accept()
    assert bob.calendar.get(id=item.id).my_response_type == "Tentative"


def test_decline_removes_the_meeting_from_the_calendar(server: EwsServer, alice: Account,
                                                       bob: Account) -> None:
    # DeclineItem: the declined meeting leaves the attendee's calendar for Deleted Items.
    item = bob.calendar.get(id=_invite_bob(server, alice))
    item.decline()
    assert list(bob.calendar.all()) == []
    assert [(i.subject, i.my_response_type) for i in bob.trash.all()] == [("Review", "Decline")]


def test_cancel_moves_the_organizers_meeting_to_deleted_items(alice: Account,
                                                               server: EwsServer) -> None:
    # CancelCalendarItem by the organizer: the meeting is cancelled and leaves the calendar.
    meeting = _meeting(alice)
    meeting.save()
    meeting.cancel()
    assert list(alice.calendar.all()) == []
    trashed = list(alice.trash.all())
    assert [(i.subject, i.is_cancelled) for i in trashed] == [("Review", True)]
