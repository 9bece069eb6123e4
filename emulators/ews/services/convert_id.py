"""ConvertId: an item or folder id from one format to another (EwsId, EwsLegacyId,
EntryId, HexEntryId, StoreId, OwaId), with the primary SMTP address of its mailbox.

DavMail learns the address it logs in as this way: it converts the root folder's EwsId to
an EwsId with a made-up Mailbox attribute ("blah@blah.com") and reads the Mailbox of the
answer, which is the id's own mailbox. An EwsId names its mailbox; the other formats are
read in the mailbox the Mailbox attribute names. Conversion reads the id only: the object
need not exist, as on Exchange.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/convertid-operation
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/alternateid
(one response message per id; on an error no AlternateId)
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from emulators.ews import ids
from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import m, success
from ews_parser import EwsResponseError
from ews_parser.xml import TYPES, XSI, local

_ALTERNATE_IDS: Final = frozenset({"AlternateId", "AlternatePublicFolderId",
                                   "AlternatePublicFolderItemId"})


def handle(ctx: Context, request: object) -> list[etree._Element]:
    op = ctx.operation("ConvertId")
    destination = op.get("DestinationFormat") or ""
    sources = op.find(m("SourceIds"))
    messages = []
    for source in (c for c in (sources if sources is not None else ()) if isinstance(c.tag, str)):
        if local(source.tag) not in _ALTERNATE_IDS:
            continue
        try:
            converted = _convert(ctx, source, destination)
        except EwsResponseError as exc:
            messages.append(error_message("ConvertId", exc))
            continue
        message = success("ConvertId")
        message.append(converted)
        messages.append(message)
    return messages


def _convert(ctx: Context, source: etree._Element, destination: str) -> etree._Element:
    if local(source.tag) != "AlternateId":
        # No public folders here (see well_known.py).
        raise EwsResponseError("ErrorFolderNotFound",
                               "The specified folder could not be found in the store.")
    text = source.get("Id") or ""
    source_format = source.get("Format") or ""
    named = source.get("Mailbox")
    if ids.is_occurrence_id(text):
        # An occurrence has no store object of its own, so no EntryId and no form but
        # the EwsId it already is.
        if source_format != "EwsId" or destination != "EwsId":
            raise EwsResponseError("ErrorUnsupportedTypeForConversion",
                                   "The id cannot be converted to the destination format.")
        ref = ids.read_occurrence_id(text)
        master = ids.read_ews_id(ref.master_id) if ref is not None else None
        owner = ctx.mailbox.directory(master.tag) if master is not None else None
        if owner is None:
            raise EwsResponseError("ErrorInvalidIdMalformed", "Id is malformed.")
        return _alternate(destination, text, owner.address)
    try:
        given = None
        if source_format not in ("EwsId", "EwsLegacyId"):
            given = _mailbox_for(ctx, named)
        obj, legacy_address = ids.from_format(text, source_format, given)
        address = legacy_address
        if address is None:
            owner = ctx.mailbox.directory(obj.tag)
            if owner is None:
                raise EwsResponseError("ErrorNonExistentMailbox",
                                       "The SMTP address has no mailbox associated with it.")
            address = owner.address
        converted = ids.to_format(obj, destination, address)
    except ids.IdFormatError as exc:
        raise EwsResponseError(exc.code, exc.message) from None
    return _alternate(destination, converted, address)


def _mailbox_for(ctx: Context, address: str | None) -> str:
    owner = ctx.mailbox.directory(ids.mailbox_tag(address)) if address else None
    if owner is None:
        raise EwsResponseError("ErrorNonExistentMailbox",
                               "The SMTP address has no mailbox associated with it.")
    return owner.address


def _alternate(destination: str, converted: str, address: str) -> etree._Element:
    # AlternateIdBaseType is abstract: the element says which kind it is.
    elem = etree.Element(m("AlternateId"), nsmap={"xsi": XSI, "t": TYPES})
    elem.set(f"{{{XSI}}}type", "t:AlternateIdType")
    elem.set("Format", destination)
    elem.set("Id", converted)
    elem.set("Mailbox", address)
    return elem

