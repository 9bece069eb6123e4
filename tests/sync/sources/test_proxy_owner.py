"""Whose calendar a flow changes, through the path the addon takes (issue 10 cases 1 and 2):
`Observer.observe(Exchange)` with the headers and bodies a client sent and Exchange
answered, into a real store; the outcome read back from the store.

The authenticated principal decides (Basic, Bearer, NTLM in the header or remembered for
the connection); the impersonated mailbox when Exchange accepted an ExchangeImpersonation;
the folder owner a Mailbox element names (a delegate write), or the configured mailbox an
item id is known in. X-AnchorMailbox is a routing hint any client can set: it never names
the owner. An authenticated user who is not configured, or a delegate write into a mailbox
that is not, is mirrored to nobody and teaches calsync nothing. Where the principal cannot
be read (Kerberos), the hint may at most make the worker ask Exchange (`refresh` intents for
the hinted user); no upsert, update or delete is recorded on its word.

Configured: alice (also EXAMPLE\\alice over NTLM) and carol. Valid Exchange users that are
not configured: bob and dave.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sync.config import parse_config
from sync.sources.outbox import Mirror
from sync.sources.proxy import Exchange, Observer
from sync.store import Store
from tests.addon.conftest import (
    basic,
    create_request,
    delete_request,
    envelope,
    long_id,
    response,
    update_request,
)
from tests.sync.core.test_identity import bearer, ntlm_type3

ALICE, BOB, CAROL, DAVE = (f"{n}@example.com" for n in ("alice", "bob", "carol", "dave"))
EVERYONE = (ALICE, BOB, CAROL, DAVE)
CALENDAR = "CalendarItem"

NEW = long_id("created")  # the id Exchange answers a CreateItem with
KNOWN = long_id("known-to-alice")  # a calendar item calsync knows in alice's mailbox
UNKNOWN = long_id("known-to-nobody")
FOLDER = long_id("calendar-folder")  # the calendar's FolderId a GetFolder answers with
FOUND = (long_id("found-1"), long_id("found-2"))  # what a FindItem lists
#: every id a flow could teach calsync (KNOWN is taught by the test itself)
TEACHABLE = (NEW, UNKNOWN, FOLDER, *FOUND)


# --- what a client sends ------------------------------------------------------------------------


def ntlm(user: str) -> str:
    return "NTLM " + base64.b64encode(ntlm_type3(user, "EXAMPLE")).decode()


#: Negotiate with a Kerberos token (SPNEGO: GSS-API [APPLICATION 0], OID 1.3.6.1.5.5.2):
#: authenticated, but the user cannot be read from it
KERBEROS = (
    "Negotiate "
    + base64.b64encode(
        b"\x60\x82\x02\x00\x06\x06\x2b\x06\x01\x05\x05\x02\xa0\x82\x01\xf4" + bytes(range(64))
    ).decode()
)


def in_mailbox(mailbox: str) -> str:
    return (
        '<t:DistinguishedFolderId Id="calendar"><t:Mailbox>'
        f"<t:EmailAddress>{mailbox}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
    )


def impersonating(mailbox: str) -> bytes:
    return create_request("Impersonated").replace(
        b"<s:Header>",
        b"<s:Header><t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>"
        + mailbox.encode()
        + b"</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>",
    )


GET_FOLDER = envelope(
    "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
    '<m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder>'
)
GET_FOLDER_RESPONSE = envelope(
    '<m:GetFolderResponse><m:ResponseMessages><m:GetFolderResponseMessage ResponseClass="Success">'
    "<m:ResponseCode>NoError</m:ResponseCode><m:Folders><t:CalendarFolder>"
    f'<t:FolderId Id="{FOLDER}" ChangeKey="AgAAAA=="/><t:DisplayName>Calendar</t:DisplayName>'
    "</t:CalendarFolder></m:Folders></m:GetFolderResponseMessage></m:ResponseMessages>"
    "</m:GetFolderResponse>"
)
FIND_ITEM = envelope(
    '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>'
    '<m:CalendarView StartDate="2026-03-01T00:00:00Z" EndDate="2026-04-01T00:00:00Z"/>'
    '<m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds></m:FindItem>'
)
FIND_ITEM_RESPONSE = envelope(
    '<m:FindItemResponse><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Success">'
    '<m:ResponseCode>NoError</m:ResponseCode><m:RootFolder TotalItemsInView="2" '
    'IncludesLastItemInRange="true"><t:Items>'
    + "".join(
        f'<t:CalendarItem><t:ItemId Id="{i}" ChangeKey="DwAAAB{i[-12:]}"/></t:CalendarItem>'
        for i in FOUND
    )
    + "</t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages>"
    "</m:FindItemResponse>"
)

CREATE = (create_request("Created"), response("CreateItem", NEW))


def create_in(mailbox: str) -> tuple[bytes, bytes]:
    return create_request("Delegate", folder=in_mailbox(mailbox)), response("CreateItem", NEW)


def create_impersonating(mailbox: str) -> tuple[bytes, bytes]:
    return impersonating(mailbox), response("CreateItem", NEW)


def update(item_id: str) -> tuple[bytes, bytes]:
    return update_request(item_id, subject="Renamed"), response("UpdateItem", item_id)


def delete(item_id: str) -> tuple[bytes, bytes]:
    return delete_request(item_id), response("DeleteItem", None)


GETFOLDER = (GET_FOLDER, GET_FOLDER_RESPONSE)
FINDITEM = (FIND_ITEM, FIND_ITEM_RESPONSE)


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One flow and its expected outcome.

    `authorization`: the header (None: none sent). `connection`: an Authorization header the
    client connection sent before (NTLM), with none on this request. `intents`: exactly the
    (mailbox, op) recorded. `confirm`: a Kerberos flow whose hint names this configured user:
    at most `refresh` intents for them, nothing else. `learns`: the one mailbox allowed to
    learn ids from the flow (the owner's); nobody else learns anything.
    """

    exchange: tuple[bytes, bytes]
    authorization: str | None = None
    anchor: str | None = None
    connection: str | None = None
    intents: tuple[tuple[str, str], ...] = ()
    confirm: str | None = None
    learns: str | None = None
    seed_known: bool = False  # KNOWN is a calendar item calsync learned in alice's mailbox
    extra: dict[str, str] = field(default_factory=dict)


def mine(owner: str, op: str = "upsert") -> dict[str, object]:
    return {"intents": ((owner, op),), "learns": owner}


NOBODY: dict[str, object] = {}

CASES: dict[str, Case] = {
    # --- Basic: the user, configured or not; the hint never counts
    "basic-alice": Case(CREATE, basic(ALICE), **mine(ALICE)),
    "basic-alice-anchor-self": Case(CREATE, basic(ALICE), ALICE, **mine(ALICE)),
    "basic-alice-anchor-carol": Case(CREATE, basic(ALICE), CAROL, **mine(ALICE)),
    "basic-alice-anchor-smtp-carol": Case(CREATE, basic(ALICE), f"SMTP:{CAROL}", **mine(ALICE)),
    "basic-bob": Case(CREATE, basic(BOB), **NOBODY),
    "basic-bob-anchor-self": Case(CREATE, basic(BOB), BOB, **NOBODY),
    "basic-bob-anchor-alice": Case(CREATE, basic(BOB), ALICE, **NOBODY),  # issue 10 case 1
    "basic-bob-anchor-smtp-carol": Case(CREATE, basic(BOB), f"SMTP:{CAROL}", **NOBODY),
    "basic-bob-anchor-smtp-alice-lower": Case(CREATE, basic(BOB), f"smtp:{ALICE}", **NOBODY),
    # --- Bearer: the token's upn
    "bearer-alice": Case(CREATE, bearer({"upn": ALICE}), **mine(ALICE)),
    "bearer-alice-anchor-carol": Case(CREATE, bearer({"upn": ALICE}), CAROL, **mine(ALICE)),
    "bearer-bob-anchor-alice": Case(CREATE, bearer({"upn": BOB}), ALICE, **NOBODY),
    # --- NTLM: the Type 3 user, in the header or remembered for the connection
    "ntlm-alice-anchor-carol": Case(CREATE, ntlm("alice"), CAROL, **mine(ALICE)),
    "ntlm-bob-anchor-alice": Case(CREATE, ntlm("bob"), ALICE, **NOBODY),
    "ntlm-connection-alice-anchor-carol": Case(
        CREATE, None, CAROL, connection=ntlm("alice"), **mine(ALICE)
    ),
    "ntlm-connection-bob-anchor-alice": Case(CREATE, None, ALICE, connection=ntlm("bob")),
    # --- Kerberos: authenticated, principal unreadable: never mirrored on the hint's word
    "kerberos": Case(CREATE, KERBEROS, **NOBODY),
    "kerberos-anchor-alice": Case(CREATE, KERBEROS, ALICE, confirm=ALICE),
    "kerberos-anchor-smtp-carol": Case(CREATE, KERBEROS, f"SMTP:{CAROL}", confirm=CAROL),
    "kerberos-anchor-bob": Case(CREATE, KERBEROS, BOB, **NOBODY),
    "kerberos-update-unknown-anchor-alice": Case(update(UNKNOWN), KERBEROS, ALICE, confirm=ALICE),
    "kerberos-delete-unknown-anchor-alice": Case(delete(UNKNOWN), KERBEROS, ALICE, confirm=ALICE),
    "kerberos-getfolder-anchor-alice": Case(GETFOLDER, KERBEROS, ALICE, confirm=ALICE),
    "kerberos-finditem-anchor-alice": Case(FINDITEM, KERBEROS, ALICE, confirm=ALICE),
    # --- no Authorization at all: nobody's, whatever the hint says
    "none": Case(CREATE, None, **NOBODY),
    "none-anchor-alice": Case(CREATE, None, ALICE, **NOBODY),
    # --- ExchangeImpersonation (Exchange checked the right to impersonate): that mailbox
    "impersonating-carol-as-bob": Case(create_impersonating(CAROL), basic(BOB), **mine(CAROL)),
    "impersonating-carol-as-alice-anchor-alice": Case(
        create_impersonating(CAROL), basic(ALICE), ALICE, **mine(CAROL)
    ),
    "impersonating-dave-as-alice": Case(create_impersonating(DAVE), basic(ALICE), **NOBODY),
    "impersonating-dave-as-bob-anchor-alice": Case(
        create_impersonating(DAVE), basic(BOB), ALICE, **NOBODY
    ),
    # --- a Mailbox element: the folder's owner (a delegate write), configured or nobody
    "alice-into-bob": Case(create_in(BOB), basic(ALICE), **NOBODY),  # issue 10 case 2
    "alice-into-bob-anchor-alice": Case(create_in(BOB), basic(ALICE), ALICE, **NOBODY),
    "bob-into-alice": Case(create_in(ALICE), basic(BOB), **mine(ALICE)),
    "bob-into-alice-anchor-carol": Case(create_in(ALICE), basic(BOB), CAROL, **mine(ALICE)),
    "alice-into-carol-anchor-bob": Case(create_in(CAROL), basic(ALICE), BOB, **mine(CAROL)),
    "bob-into-dave-anchor-alice": Case(create_in(DAVE), basic(BOB), ALICE, **NOBODY),
    "kerberos-into-alice": Case(create_in(ALICE), KERBEROS, **mine(ALICE)),
    "kerberos-into-bob-anchor-alice": Case(create_in(BOB), KERBEROS, ALICE, **NOBODY),
    # --- item ids: one known in a configured user's mailbox names that user
    "bob-updates-alices-item": Case(
        update(KNOWN), basic(BOB), intents=((ALICE, "update"),), seed_known=True
    ),
    "carol-updates-alices-item": Case(
        update(KNOWN), basic(CAROL), intents=((ALICE, "update"),), seed_known=True
    ),
    "alice-updates-her-item-anchor-carol": Case(
        update(KNOWN), basic(ALICE), CAROL, intents=((ALICE, "update"),), seed_known=True
    ),
    "bob-deletes-alices-item": Case(
        delete(KNOWN), basic(BOB), intents=((ALICE, "delete"),), seed_known=True
    ),
    "kerberos-updates-alices-item": Case(
        update(KNOWN), KERBEROS, intents=((ALICE, "update"),), seed_known=True
    ),
    "bob-updates-unknown-anchor-alice": Case(update(UNKNOWN), basic(BOB), ALICE, **NOBODY),
    "bob-deletes-unknown-anchor-alice": Case(delete(UNKNOWN), basic(BOB), ALICE, **NOBODY),
    # --- listings teach ids: only to the principal's own mailbox
    "alice-getfolder": Case(GETFOLDER, basic(ALICE), learns=ALICE),
    "alice-finditem": Case(FINDITEM, basic(ALICE), learns=ALICE),
    "bob-getfolder-anchor-alice": Case(GETFOLDER, basic(BOB), ALICE, **NOBODY),
    "bob-finditem-anchor-alice": Case(FINDITEM, basic(BOB), ALICE, **NOBODY),
    "bob-finditem-anchor-smtp-carol": Case(FINDITEM, basic(BOB), f"SMTP:{CAROL}", **NOBODY),
    "none-getfolder-anchor-alice": Case(GETFOLDER, None, ALICE, **NOBODY),
    # --- no authentication calsync can see: nothing, even where the request names the owner
    "none-into-alice": Case(create_in(ALICE), None, **NOBODY),
    "none-updates-alices-item": Case(update(KNOWN), None, seed_known=True),
    "none-deletes-alices-item": Case(delete(KNOWN), None, seed_known=True),
}


# --- running one -------------------------------------------------------------------------------


@pytest.fixture
def observer(tmp_path: Path) -> Iterator[Observer]:
    """The Observer as the addon builds it, on a fresh store; nothing reaches Google (the
    worker is never run: what the flow recorded stays in the outbox to be read)."""
    config = parse_config(
        {
            "store": {"path": "calsync.db"},
            "users": [
                {
                    "mailbox": ALICE,
                    "logins": ["EXAMPLE\\alice"],
                    "google_token_file": "alice.json",
                },
                {"mailbox": CAROL, "google_token_file": "carol.json"},
            ],
        },
        base=tmp_path,
    )
    store = Store(config.store_path)
    try:
        yield Observer(config, store, Mirror(config, store), clock=lambda: 1_000.0)
    finally:
        store.close()


def observe(observer: Observer, case: Case) -> None:
    request_body, response_body = case.exchange
    headers = {"content-type": "text/xml; charset=utf-8", **case.extra}
    if case.authorization is not None:
        headers["authorization"] = case.authorization
    if case.anchor is not None:
        headers["x-anchormailbox"] = case.anchor
    if case.connection is not None:  # the request hook saw it on an earlier request
        observer.saw_request_headers("conn-1", {"authorization": case.connection})
    observer.observe(
        Exchange(
            method="POST",
            path="/EWS/Exchange.asmx",
            request_headers=headers,
            request_body=request_body,
            status_code=200,
            response_body=response_body,
            connection_id="conn-1",
        )
    )


def learned(store: Store, mailbox: str) -> dict[str, str]:
    """What calsync knows in `mailbox` of the ids a flow could teach: id -> what."""
    known = {f: f"folder {r}" for f, r in store.folders(mailbox).items()}
    for item_id in TEACHABLE:
        item_class = store.item_class(mailbox, item_id)
        if item_class is not None:
            known[item_id] = item_class
        if store.is_mapped(mailbox, item_id):
            known[item_id] = "mapped"
    return known


@pytest.mark.parametrize("name", CASES)
def test_owner(name: str, observer: Observer) -> None:
    case = CASES[name]
    store = observer.store
    if case.seed_known:
        store.learn_items(ALICE, {KNOWN: CALENDAR})
    observe(observer, case)
    recorded = sorted((e.mailbox, e.op) for e in store.pending())
    if case.confirm is not None:
        # nothing on the hint's word: at most "ask Exchange" for the hinted user
        assert {op for _mailbox, op in recorded} <= {"refresh"}, recorded
        assert {mailbox for mailbox, _op in recorded} <= {case.confirm}, recorded
    else:
        assert recorded == sorted(case.intents)
    for mailbox in EVERYONE:
        if mailbox != case.learns:
            assert learned(store, mailbox) == {}, f"{mailbox} learned from a flow not theirs"
    if case.learns is not None:  # the control: the owner did learn (the check can fail)
        assert learned(store, case.learns) != {}


def test_a_listing_under_a_spoofed_anchor_does_not_redirect_later_flows(
    observer: Observer,
) -> None:
    """What a FindItem under a spoofed hint would teach (bob's ids as alice's calendar items)
    is what makes a later, unhinted edit of bob's look like a delegate edit of alice's."""
    observe(observer, Case(FINDITEM, basic(BOB), ALICE))
    observe(observer, Case(update(FOUND[0]), basic(BOB)))
    assert observer.store.pending() == []
