"""Opaque EWS identifiers: ItemIds, FolderIds, ChangeKeys and SyncStates.

Exchange documents all of them as opaque strings that clients must store and send back
unchanged: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-identifiers-in-exchange
Real ones are long base64 strings (an ItemId is ~150 characters) and calsync must not
depend on their inside, so these are base64 too, of the same order of length, with a
readable-to-us payload: a tag byte, the mailbox they belong to and a random part.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import secrets
import struct
from dataclasses import dataclass
from typing import Final

# Real ItemIds start "AAMkA" (bytes 00 03 24 00): keep the look, so a parser that sniffs
# the prefix (as some clients do to tell ids from change keys) behaves the same.
_ITEM_PREFIX: Final = b"\x00\x03\x24\x00"
_FOLDER_PREFIX: Final = b"\x00\x01\x2e\x00"
_OCCURRENCE_PREFIX: Final = b"\x00\x07\x24\x00"
# Real ChangeKeys start "DwAAABYAAAA" (a 0x0f length-prefixed blob).
_CHANGE_KEY_PREFIX: Final = b"\x0f\x00\x00\x00\x16\x00\x00\x00"
_SYNC_PREFIX: Final = b"calsync-ews-sync\x00"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def mailbox_tag(address: str) -> bytes:
    """36 bytes that name the mailbox inside every id (a real id embeds the mailbox GUID)."""
    return hashlib.sha256(address.lower().encode("utf-8")).hexdigest()[:36].encode("ascii")


def new_item_id(address: str) -> str:
    return _b64(_ITEM_PREFIX + mailbox_tag(address) + b"\x00F" + secrets.token_bytes(72))


def folder_id(address: str, distinguished: str) -> str:
    """Folder ids are stable per mailbox and folder, as Exchange's are."""
    digest = hashlib.sha256(f"{address.lower()}/{distinguished}".encode()).digest()
    return _b64(_FOLDER_PREFIX + mailbox_tag(address) + b"\x00\x01" + digest + digest + digest[:12])


@dataclass(frozen=True, slots=True)
class OccurrenceRef:
    master_id: str
    index: int
    original_start: dt.datetime  # UTC, whole seconds


def occurrence_id(master_id: str, index: int, original_start: dt.datetime) -> str:
    """An occurrence's own ItemId. Exchange derives it from the master's id and the
    occurrence's original start, so the same occurrence has the same id on every read and
    an id outlives neither its master nor a change of the series that moves its original
    start; here the index is kept beside the start, so the id decodes to master + index."""
    raw = _unb64(master_id) or master_id.encode("utf-8")
    stamp = int(original_start.timestamp())
    return _b64(_OCCURRENCE_PREFIX + struct.pack(">Iq", index, stamp) + raw)


def read_occurrence_id(item_id: str) -> OccurrenceRef | None:
    raw = _unb64(item_id)
    head = len(_OCCURRENCE_PREFIX) + 12
    if raw is None or not raw.startswith(_OCCURRENCE_PREFIX) or len(raw) <= head:
        return None
    index, stamp = struct.unpack(">Iq", raw[len(_OCCURRENCE_PREFIX) : head])
    try:
        start = dt.datetime.fromtimestamp(stamp, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None  # not an id this stand-in wrote
    return OccurrenceRef(master_id=_b64(raw[head:]), index=index, original_start=start)


def change_key(counter: int) -> str:
    """A fresh ChangeKey: it changes on every write, which is all a client may rely on."""
    return _b64(_CHANGE_KEY_PREFIX + struct.pack(">Q", counter) + secrets.token_bytes(12))


def sync_state(folder: str, watermark: int) -> str:
    """SyncState is opaque to clients; here it names the folder and a change watermark."""
    return _b64(_SYNC_PREFIX + struct.pack(">Q", watermark) + folder.encode("ascii"))


def read_sync_state(state: str) -> tuple[str, int] | None:
    raw = _unb64(state)
    if raw is None or not raw.startswith(_SYNC_PREFIX):
        return None
    body = raw[len(_SYNC_PREFIX) :]
    if len(body) < 9:
        return None
    (watermark,) = struct.unpack(">Q", body[:8])
    try:
        return body[8:].decode("ascii"), watermark
    except UnicodeDecodeError:
        return None


# --- the other forms of an id (ConvertId) -----------------------------------------------------
#
# https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-identifiers-in-exchange
# One store object, several spellings: EwsId (what EWS hands out, the mailbox inside it),
# EwsLegacyId (Exchange 2007 RTM's: the mailbox's SMTP address inside it), EntryId (MAPI's
# PR_ENTRYID: flags, the store's provider UID, the object type, then the object's own part),
# HexEntryId (the same bytes in hex, the form availability answers use), StoreId and OwaId.
# Only the EwsId and EwsLegacyId forms name their mailbox; the others need ConvertId's
# Mailbox attribute. An occurrence's id has no EntryId (occurrences are not store objects).

ID_FORMATS: Final = ("EwsLegacyId", "EwsId", "EntryId", "HexEntryId", "StoreId", "OwaId")
_TAG_LENGTH: Final = 36
_ENTRY_FLAGS: Final = b"\x00\x00\x00\x00"
_MESSAGE_TYPE: Final = b"\x07\x00"  # eitLTPrivateMessage
_FOLDER_TYPE: Final = b"\x01\x00"  # eitLTPrivateFolder


class IdFormatError(ValueError):
    """An id that is not of the format it claims; `code` is Exchange's response code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _malformed() -> IdFormatError:
    return IdFormatError("ErrorInvalidIdMalformed", "Id is malformed.")


@dataclass(frozen=True, slots=True)
class StoreObject:
    """What every form of an id names: the mailbox (its tag), the kind, the object's part."""

    tag: bytes
    folder: bool
    part: bytes  # after the mailbox tag in the EwsId


def read_ews_id(item_or_folder_id: str) -> StoreObject | None:
    """The store object an item or folder EwsId names; None for anything else
    (occurrence ids included)."""
    raw = _unb64(item_or_folder_id)
    if raw is None:
        return None
    for prefix, folder in ((_ITEM_PREFIX, False), (_FOLDER_PREFIX, True)):
        head = len(prefix) + _TAG_LENGTH
        if raw.startswith(prefix) and len(raw) > head + 2:
            return StoreObject(raw[len(prefix):head], folder, raw[head:])
    return None


def is_occurrence_id(text: str) -> bool:
    raw = _unb64(text)
    return raw is not None and raw.startswith(_OCCURRENCE_PREFIX)


def ews_id(obj: StoreObject) -> str:
    return _b64((_FOLDER_PREFIX if obj.folder else _ITEM_PREFIX) + obj.tag + obj.part)


def _provider(tag_bytes: bytes) -> bytes:
    # A real PR_ENTRYID carries the store's provider UID; here 16 bytes of the mailbox tag.
    return bytes.fromhex(tag_bytes[:32].decode("ascii"))


def entry_id(obj: StoreObject) -> bytes:
    return _ENTRY_FLAGS + _provider(obj.tag) + (_FOLDER_TYPE if obj.folder else _MESSAGE_TYPE) \
        + obj.part


def read_entry_id(raw: bytes, address: str) -> StoreObject:
    tag_bytes = mailbox_tag(address)
    if len(raw) < 24 or not raw.startswith(_ENTRY_FLAGS) or raw[4:20] != _provider(tag_bytes):
        raise _malformed()
    kind = raw[20:22]
    if kind not in (_FOLDER_TYPE, _MESSAGE_TYPE):
        raise _malformed()
    return StoreObject(tag_bytes, kind == _FOLDER_TYPE, raw[22:])


def to_format(obj: StoreObject, destination: str, address: str) -> str:
    """`obj` in ConvertId's DestinationFormat; `address` is its mailbox."""
    if destination == "EwsId":
        return ews_id(obj)
    if destination == "EwsLegacyId":
        encoded = address.encode("utf-8")
        kind = _FOLDER_TYPE if obj.folder else _MESSAGE_TYPE
        return _b64(b"\x00\x00" + struct.pack("<H", len(encoded)) + encoded + kind + obj.part)
    entry = entry_id(obj)
    if destination == "EntryId":
        return _b64(entry)
    if destination == "HexEntryId":
        return entry.hex().upper()
    if destination == "StoreId":
        return _b64(entry + (b"\x01" if obj.folder else b"\x09"))
    if destination == "OwaId":
        # OWA's ids are the entry id behind its length ("RgAAAA..." for a 70-byte one).
        return _b64(bytes([len(entry)]) + entry)
    raise IdFormatError("ErrorInvalidRequest", f"Unknown id format {destination!r}.")


def from_format(text: str, source: str, address: str | None) -> tuple[StoreObject, str | None]:
    """The object an id of format `source` names, and the mailbox address the id itself
    carries (EwsLegacyId; None for the others). `address` is ConvertId's Mailbox
    attribute, which the forms without a mailbox need."""
    if not text.strip():
        raise IdFormatError("ErrorInvalidIdEmpty", "Id is empty.")
    if source == "EwsId":
        obj = read_ews_id(text)
        if obj is None:
            raise _malformed()
        return obj, None
    if source == "EwsLegacyId":
        raw = _unb64(text)
        if raw is None or len(raw) < 6 or not raw.startswith(b"\x00\x00"):
            raise IdFormatError("ErrorInvalidIdMalformedEwsLegacyIdFormat",
                                "Id is malformed (EwsLegacyId).")
        (length,) = struct.unpack("<H", raw[2:4])
        try:
            legacy_address = raw[4:4 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed() from None
        kind, part = raw[4 + length:6 + length], raw[6 + length:]
        if kind not in (_FOLDER_TYPE, _MESSAGE_TYPE) or not part:
            raise _malformed()
        return StoreObject(mailbox_tag(legacy_address), kind == _FOLDER_TYPE, part), \
            legacy_address
    if address is None:
        raise _malformed()
    if source == "HexEntryId":
        try:
            entry = bytes.fromhex(text.strip())
        except ValueError:
            raise _malformed() from None
    elif source == "EntryId":
        entry = _unb64(text.strip()) or b""
    elif source == "StoreId":
        raw = _unb64(text.strip()) or b""
        entry = raw[:-1]
    elif source == "OwaId":
        raw = _unb64(text.strip()) or b""
        if not raw or raw[0] != len(raw) - 1:
            raise _malformed()
        entry = raw[1:]
    else:
        raise IdFormatError("ErrorInvalidRequest", f"Unknown id format {source!r}.")
    return read_entry_id(entry, address), None


def stable_item_id(address: str, key: str) -> tuple[str, str]:
    """An ItemId and ChangeKey that stay the same for one object of one mailbox (a user
    configuration, which no request here changes)."""
    digest = hashlib.sha256(f"{address.lower()}/{key}".encode()).digest()
    item_id = _b64(_ITEM_PREFIX + mailbox_tag(address) + b"\x00F" + digest + digest + digest[:8])
    return item_id, _b64(_CHANGE_KEY_PREFIX + digest[:20])
