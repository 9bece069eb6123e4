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


def occurrence_id(master_id: str, index: int) -> str:
    """An occurrence's own ItemId: Exchange gives every occurrence one, derived from the
    master and the occurrence's original start; here from the master and its index."""
    raw = _unb64(master_id) or master_id.encode("utf-8")
    return _b64(_OCCURRENCE_PREFIX + struct.pack(">I", index) + raw)


def read_occurrence_id(item_id: str) -> OccurrenceRef | None:
    raw = _unb64(item_id)
    if raw is None or not raw.startswith(_OCCURRENCE_PREFIX) or len(raw) < 9:
        return None
    (index,) = struct.unpack(">I", raw[4:8])
    return OccurrenceRef(master_id=_b64(raw[8:]), index=index)


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
