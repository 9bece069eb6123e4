"""Change notices: what every source of change hands to the one reconciler.

A source (the proxy, the Exchange feed, EWS streaming, the Google feed, Google push, the
job's check of which mapped items still exist) says *that* something changed, on which
side, in which version as it saw it, and whatever it already knows (its hint); the
reconciler (sync/reconcile.py) decides and writes. Pure values: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from exchangelib.items import CalendarItem

    from mapping.event import GoogleEvent

Side = Literal["exchange", "google"]
#: upsert: created or changed; update: changed (the request says which fields); delete:
#: gone; refresh: something changed, read it (an occurrence's series, a Kerberos flow, a
#: series whose instances a feed reported)
Kind = Literal["upsert", "update", "delete", "refresh"]
#: verify: the job asked Exchange which mapped items still exist (a gone one is a delete
#: no feed reported)
Origin = Literal["proxy", "exchange-feed", "streaming", "google-feed", "push", "verify"]


@dataclass(frozen=True, slots=True)
class RequestHint:
    """The EWS request a change came in, as the proxy saw it (kept in memory, never on
    disk): `index` is the item's place in the request, `default_zone` its
    TimeZoneContext."""

    request: bytes
    index: int | None
    default_zone: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeNotice:
    """One change one source saw.

    `key` is the item's id on `side` (an EWS ItemId, a Google event id), `version` the
    version the source saw (ChangeKey, etag: an echo of calsync's own write has the
    version calsync recorded). `hint` is what the proxy already knows of the change (the
    request); `prepared` what an earlier attempt made of that hint (the outbox keeps it
    sealed, so a retry never prepares twice). A feed's notice carries what the feed read:
    `item`, the Exchange item SyncFolderItems returned (create and update), or `event`,
    the Google event as events.list returned it (a deleted one with status cancelled)."""

    mailbox: str
    side: Side
    key: str
    version: str | None
    kind: Kind
    origin: Origin
    hint: RequestHint | None = None
    prepared: dict[str, Any] | None = None
    item: CalendarItem | None = None
    event: GoogleEvent | None = None
