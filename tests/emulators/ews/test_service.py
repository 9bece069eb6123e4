"""Who may act on which mailbox, and how requests the stand-in cannot serve are answered:
ExchangeImpersonation for the service account only, isolated mailboxes, faults for unknown
operations and unreadable envelopes, the meeting-message options each request carried.
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/impersonation-and-ews-in-exchange
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from exchangelib import IMPERSONATION, Account, CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorItemNotFound,
    ErrorNonExistentMailbox,
)

from emulators.ews import EwsServer
from ews_parser import classify
from tests.emulators.ews.conftest import USERS, admin, make_account, raw_post, soap

BERLIN = EWSTimeZone("Europe/Berlin")


def _create(account: Account, subject: str = "Mine") -> CalendarItem:
    item = CalendarItem(account=account, folder=account.calendar, subject=subject,
                        start=EWSDateTime(2024, 5, 1, 10, tzinfo=BERLIN),
                        end=EWSDateTime(2024, 5, 1, 11, tzinfo=BERLIN))
    item.save()
    return item


def test_service_account_impersonates_a_user(
    impersonating: Callable[[str], Account], alice: Account
) -> None:
    # A service account with the impersonation right acts as the user: items it creates
    # are in the user's mailbox.
    as_alice = impersonating("alice@example.com")
    item = _create(as_alice, "Booked by the service")
    assert alice.calendar.get(id=item.id).subject == "Booked by the service"
    assert [i.subject for i in as_alice.calendar.all()] == ["Booked by the service"]


def test_impersonating_an_unknown_mailbox(impersonating: Callable[[str], Account]) -> None:
    # ExchangeImpersonation naming an address without a mailbox: ErrorNonExistentMailbox.
    with pytest.raises(ErrorNonExistentMailbox):
        impersonating("nobody@example.com").calendar  # noqa: B018


def test_impersonation_is_denied_to_ordinary_users(server: EwsServer) -> None:
    # An account without the ApplicationImpersonation role gets ErrorImpersonateUserDenied.
    bob_as_alice = make_account(server.url, "alice@example.com", USERS["bob@example.com"],
                                username="bob@example.com", access_type=IMPERSONATION)
    with pytest.raises(ErrorImpersonateUserDenied):
        bob_as_alice.calendar  # noqa: B018


def test_users_never_see_each_others_items(alice: Account, bob: Account) -> None:
    # Each mailbox is its own store: bob neither lists nor reads alice's items, even by id.
    item = _create(alice)
    assert list(bob.calendar.all()) == []
    with pytest.raises(ErrorItemNotFound):
        bob.calendar.get(id=item.id)
    assert alice.calendar.id != bob.calendar.id


def test_delegate_access_to_another_mailbox_is_denied(server: EwsServer) -> None:
    # A DistinguishedFolderId naming another user's mailbox needs delegate rights, which
    # nobody has here: ErrorAccessDenied.
    bob_on_alice = make_account(server.url, "alice@example.com", USERS["bob@example.com"],
                                username="bob@example.com")
    with pytest.raises(ErrorAccessDenied):
        bob_on_alice.calendar  # noqa: B018


def test_wrong_password_is_401_with_a_challenge(server: EwsServer) -> None:
    # IIS refuses bad credentials with 401 and WWW-Authenticate, and no SOAP body.
    body = soap('<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>'
                '<m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>')
    status, headers, _ = raw_post(server.url, body, "alice@example.com", "wrong")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert raw_post(server.url, body, None, None)[0] == 401
    assert raw_post(server.url, body, "mallory@example.com", "alice-secret")[0] == 401


def test_exchangelib_reports_a_wrong_password(server: EwsServer) -> None:
    from exchangelib.errors import UnauthorizedError

    wrong = make_account(server.url, "alice@example.com", "not-her-password")
    with pytest.raises(UnauthorizedError):
        wrong.calendar  # noqa: B018


def test_unknown_operation_is_an_invalid_request_fault(server: EwsServer) -> None:
    # An operation this stand-in does not serve gets the SOAP fault ErrorInvalidRequest.
    body = soap('<m:ResolveNames ReturnFullContactData="false">'
                "<m:UnresolvedEntry>alice</m:UnresolvedEntry></m:ResolveNames>")
    status, _, answer = raw_post(server.url, body)
    assert status == 500
    assert classify(answer).fault_code == "ErrorInvalidRequest"


def test_unreadable_envelope_is_a_schema_validation_fault(server: EwsServer) -> None:
    status, _, answer = raw_post(server.url, b"<not-soap/>")
    assert status == 500
    assert classify(answer).fault_code == "ErrorSchemaValidation"


def test_meeting_message_options_are_recorded_per_request(alice: Account,
                                                          server: EwsServer) -> None:
    # Send{MeetingInvitations,MeetingCancellations,MeetingInvitationsOrCancellations} as
    # each request carried them, so tests can check calsync always sends SendToNone.
    item = _create(alice)
    item.subject = "Renamed"
    item.save(update_fields=["subject"])
    item.delete()
    other = CalendarItem(account=alice, folder=alice.calendar, subject="Loud",
                         start=EWSDateTime(2024, 5, 2, 10, tzinfo=BERLIN),
                         end=EWSDateTime(2024, 5, 2, 11, tzinfo=BERLIN))
    other.save(send_meeting_invitations="SendToAllAndSaveCopy")
    status, records = admin(server.base_url, "GET", "/_admin/send-options")
    assert status == 200
    assert [(r["operation"], r["attribute"], r["value"]) for r in records] == [  # type: ignore[index,union-attr]
        ("CreateItem", "SendMeetingInvitations", "SendToNone"),
        ("UpdateItem", "SendMeetingInvitationsOrCancellations", "SendToNone"),
        ("DeleteItem", "SendMeetingCancellations", "SendToNone"),
        ("CreateItem", "SendMeetingInvitations", "SendToAllAndSaveCopy"),
    ]
    assert {r["mailbox"] for r in records} == {"alice@example.com"}  # type: ignore[index,union-attr]
    assert admin(server.base_url, "DELETE", "/_admin/send-options") == (200, [])
