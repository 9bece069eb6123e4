"""GetUserConfiguration: OWA.UserOptions in the root folder holds the mailbox's time
zone, as DavMail reads it at login; other names are ErrorItemNotFound.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getuserconfiguration-operation
"""

from __future__ import annotations

import pytest
from exchangelib import Account
from exchangelib.errors import ErrorItemNotFound

from emulators.ews import EwsServer
from tests.emulators.ews.conftest import M, T, code_of, davmail_soap, messages_of, raw_post

DAVMAIL = davmail_soap(
    # GetUserConfigurationMethod.writeSoapBody
    '<m:GetUserConfiguration><m:UserConfigurationName Name="OWA.UserOptions">'
    '<t:DistinguishedFolderId Id="root"/></m:UserConfigurationName>'
    "<m:UserConfigurationProperties>All</m:UserConfigurationProperties>"
    "</m:GetUserConfiguration>")


def test_davmail_reads_the_time_zone(server: EwsServer) -> None:
    server.store.mailbox("alice@example.com").time_zone = "W. Europe Standard Time"  # type: ignore[union-attr]
    status, _, body = raw_post(server.url, DAVMAIL)
    assert status == 200
    (message,) = messages_of(body)
    assert code_of(message) == "NoError"
    configuration = message.find(f"{{{M}}}UserConfiguration")
    assert configuration is not None
    name = configuration.find(f"{{{T}}}UserConfigurationName")
    assert name is not None and name.get("Name") == "OWA.UserOptions"
    assert name.find(f"{{{T}}}DistinguishedFolderId") is not None  # echoed as asked
    assert configuration.find(f"{{{T}}}ItemId") is not None  # "All" includes the id
    # DavMail's handleDictionaryEntry: the first Value is the key, the next the value.
    entries = {
        entry.findtext(f"{{{T}}}DictionaryKey/{{{T}}}Value"):
            entry.findtext(f"{{{T}}}DictionaryValue/{{{T}}}Value")
        for entry in configuration.iter(f"{{{T}}}DictionaryEntry")
    }
    assert entries["timezone"] == "W. Europe Standard Time"


def test_exchangelib_reads_it_too(alice: Account) -> None:
    configuration = alice.root.get_user_configuration("OWA.UserOptions")
    assert configuration.dictionary["timezone"] == "UTC"
    assert configuration.user_configuration_name.name == "OWA.UserOptions"
    assert configuration.id
    # Dictionary only: no ItemId
    only = alice.root.get_user_configuration("OWA.UserOptions", properties="Dictionary")
    assert only.id is None and only.dictionary["timezone"] == "UTC"


@pytest.mark.parametrize(("folder", "name"), [
    ("root", "OWA.SomethingElse"),
    ("inbox", "OWA.UserOptions"),  # it lives in the root folder only
])
def test_what_is_not_there_is_item_not_found(alice: Account, folder: str, name: str) -> None:
    target = alice.root if folder == "root" else alice.inbox
    with pytest.raises(ErrorItemNotFound):
        target.get_user_configuration(name)


def test_a_folder_that_is_not_there(server: EwsServer) -> None:
    body = DAVMAIL.replace(b'Id="root"', b'Id="archiveroot"')
    _, _, answer = raw_post(server.url, body)
    (message,) = messages_of(answer)
    assert code_of(message) == "ErrorFolderNotFound"
