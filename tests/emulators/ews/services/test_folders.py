"""GetFolder, FindFolder and SyncFolderHierarchy through the real exchangelib.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderhierarchy-operation
"""

from __future__ import annotations

from exchangelib import Account
from exchangelib.folders import Calendar, DeletedItems


def test_root_and_top_of_information_store(alice: Account) -> None:
    # GetFolder on "root" and "msgfolderroot": distinct, stable, long base64 ids.
    root = alice.root
    top = alice.msg_folder_root
    assert root.id != top.id
    assert len(root.id) >= 150 and len(top.id) >= 150
    assert top.name == "Top of Information Store"


def test_find_folder_lists_the_calendar_and_deleted_items(alice: Account) -> None:
    # FindFolder Shallow under msgfolderroot returns its child folders with their classes.
    children = {type(f): f for f in alice.msg_folder_root.children}
    assert children[Calendar].id == alice.calendar.id
    assert children[DeletedItems].id == alice.trash.id
    # Deep traversal from root reaches them too.
    assert {f.id for f in alice.root.walk()} >= {alice.calendar.id, alice.trash.id}


def test_sync_folder_hierarchy_creates_then_nothing(alice: Account) -> None:
    # SyncFolderHierarchy without a state reports every folder as Create; from the state
    # it returned, nothing has changed.
    top = alice.msg_folder_root
    first = list(top.sync_hierarchy())
    assert {kind for kind, _ in first} == {"create"}
    assert {f.id for _, f in first} == {alice.calendar.id, alice.trash.id, alice.inbox.id,
                                         alice.sent.id}
    assert list(top.sync_hierarchy(sync_state=top.folder_sync_state)) == []
