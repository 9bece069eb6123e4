"""ConvertId: as DavMail sends it at login, through exchangelib, every format and back,
and the errors for ids that are not what they claim.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/convertid-operation
"""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib import Account, CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.properties import AlternateId
from exchangelib.recurrence import DailyPattern, Recurrence
from lxml import etree

from emulators.ews import EwsServer
from tests.emulators.ews.conftest import M, code_of, davmail_soap, messages_of, raw_post

FORMATS = ("EwsId", "EwsLegacyId", "EntryId", "HexEntryId", "StoreId", "OwaId")
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def convert(server: EwsServer, id_: str, source: str, destination: str,
            mailbox: str = "blah@blah.com", user: str = "alice@example.com",
            password: str = "alice-secret") -> etree._Element:
    body = davmail_soap(
        f'<m:ConvertId DestinationFormat="{destination}"><m:SourceIds>'
        f'<t:AlternateId  Format="{source}" Id="{id_}" Mailbox="{mailbox}"/>'
        "</m:SourceIds></m:ConvertId>")
    status, _, answer = raw_post(server.url, body, user=user, password=password)
    assert status == 200, answer[:300]
    (message,) = messages_of(answer)
    return message


def test_davmail_learns_the_mailbox_address_from_the_root_folder(
        server: EwsServer, alice: Account) -> None:
    # DavMail: GetFolder root (IdOnly), then ConvertId of its id, EwsId to EwsId, with a
    # made-up Mailbox; the answer's Mailbox is the address it logs in as.
    message = convert(server, alice.root.id, "EwsId", "EwsId")
    assert code_of(message) == "NoError"
    alternate = message.find(f"{{{M}}}AlternateId")
    assert alternate is not None
    assert alternate.get(f"{{{XSI}}}type") == "t:AlternateIdType"
    assert alternate.get("Mailbox") == "alice@example.com"
    assert alternate.get("Format") == "EwsId"
    assert alternate.get("Id") == alice.root.id


def test_every_format_converts_and_comes_back(alice: Account) -> None:
    item = CalendarItem(account=alice, folder=alice.calendar, subject="x",
                        start=EWSDateTime(2027, 1, 4, 9, tzinfo=EWSTimeZone("UTC")),
                        end=EWSDateTime(2027, 1, 4, 10, tzinfo=EWSTimeZone("UTC")))
    item.save()
    for original in (alice.calendar.id, item.id):
        for destination in FORMATS:
            (there,) = alice.protocol.convert_ids(
                [AlternateId(id=original, format="EwsId", mailbox="alice@example.com")],
                destination_format=destination)
            assert isinstance(there, AlternateId), there
            assert there.mailbox == "alice@example.com"
            if destination != "EwsId":
                assert there.id != original
            (back,) = alice.protocol.convert_ids(
                [AlternateId(id=there.id, format=destination, mailbox="alice@example.com")],
                destination_format="EwsId")
            assert isinstance(back, AlternateId), (destination, back)
            assert back.id == original
    # The hex form is the EntryId's bytes: an item's is a message entry id (type 0x0007).
    (hex_id,) = alice.protocol.convert_ids(
        [AlternateId(id=item.id, format="EwsId", mailbox="alice@example.com")],
        destination_format="HexEntryId")
    assert hex_id.id == hex_id.id.upper() and hex_id.id[40:44] == "0700"


def test_an_id_of_another_mailbox_names_that_mailbox(server: EwsServer, bob: Account) -> None:
    message = convert(server, bob.calendar.id, "EwsId", "EntryId")
    assert code_of(message) == "NoError"
    entry = message.find(f"{{{M}}}AlternateId")
    assert entry is not None and entry.get("Mailbox") == "bob@example.com"
    # Back from EntryId it needs the right Mailbox.
    assert code_of(convert(server, entry.get("Id") or "", "EntryId", "EwsId",
                           mailbox="bob@example.com")) == "NoError"
    assert code_of(convert(server, entry.get("Id") or "", "EntryId", "EwsId",
                           mailbox="alice@example.com")) == "ErrorInvalidIdMalformed"
    assert code_of(convert(server, entry.get("Id") or "", "EntryId", "EwsId",
                           mailbox="nobody@example.com")) == "ErrorNonExistentMailbox"


@pytest.mark.parametrize(("id_", "source", "code"), [
    ("", "EwsId", "ErrorInvalidIdEmpty"),
    ("bm90IGFuIGlk", "EwsId", "ErrorInvalidIdMalformed"),  # base64 of "not an id"
    ("%%%", "EwsId", "ErrorInvalidIdMalformed"),
    ("ZZZZ", "HexEntryId", "ErrorInvalidIdMalformed"),
    ("AAAA", "EwsLegacyId", "ErrorInvalidIdMalformedEwsLegacyIdFormat"),
])
def test_malformed_ids(server: EwsServer, id_: str, source: str, code: str) -> None:
    message = convert(server, id_, source, "EntryId", mailbox="alice@example.com")
    assert message.get("ResponseClass") == "Error"
    assert code_of(message) == code
    assert message.find(f"{{{M}}}AlternateId") is None


def test_one_answer_per_id_in_order(server: EwsServer, alice: Account) -> None:
    body = davmail_soap(
        '<m:ConvertId DestinationFormat="HexEntryId"><m:SourceIds>'
        f'<t:AlternateId Format="EwsId" Id="{alice.inbox.id}" Mailbox="alice@example.com"/>'
        '<t:AlternateId Format="EwsId" Id="nonsense" Mailbox="alice@example.com"/>'
        f'<t:AlternateId Format="EwsId" Id="{alice.calendar.id}" Mailbox="alice@example.com"/>'
        "</m:SourceIds></m:ConvertId>")
    _, _, answer = raw_post(server.url, body)
    assert [code_of(msg) for msg in messages_of(answer)] == [
        "NoError", "ErrorInvalidIdMalformed", "NoError"]


def test_an_occurrence_id_is_only_an_ews_id(server: EwsServer, alice: Account) -> None:
    start = EWSDateTime(2027, 1, 4, 9, tzinfo=EWSTimeZone("UTC"))
    series = CalendarItem(account=alice, folder=alice.calendar, subject="daily", start=start,
                          end=start + dt.timedelta(hours=1),
                          recurrence=Recurrence(pattern=DailyPattern(interval=1),
                                                start=start.date(), number=3))
    series.save()
    occurrence = alice.calendar.view(start=start, end=start + dt.timedelta(days=1))[0]
    assert occurrence.id != series.id
    same = convert(server, occurrence.id, "EwsId", "EwsId")
    assert code_of(same) == "NoError"
    assert code_of(convert(server, occurrence.id, "EwsId", "EntryId")) \
        == "ErrorUnsupportedTypeForConversion"
