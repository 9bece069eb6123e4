"""The reconciler's fast path for a change the proxy saw (layer 2, beside reconcile.py).

A change notice from the proxy carries the request Exchange accepted (its hint). From it
the change is prepared without asking Exchange: the new event (CreateItem; iCalendar
MimeContent merged as Exchange imports it) or the fields changed (UpdateItem); after a
restart, or when the request cannot tell (occurrence edits, unknown folders, floating
times), the item is read from Exchange instead. Then:

- create under the item's deterministic id (a taken id follows the reconciler's one 409
  rule), or patch what changed with If-Match on the version calsync last wrote. A 412
  means Google changed meanwhile: the reconciler's read-merge-write with the user's
  policy, never "Exchange wins";
- delete (404/410: already gone); an unmapped item's event is deleted only when it is
  tagged as that item's, else the two-way job settles it;
- no orphans: a payload an earlier attempt prepared is written only once one GetItem
  confirms the item still exists; an item Exchange no longer has takes along the event
  made for it (only one tagged as its).

Every write is recorded in the run's RunContext (`calsync undo`); the source records the
outcome (the pair) in the same transaction as its own bookkeeping.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from sync.backends.base import ExchangeBackend, GoogleBackend, GoogleError
from sync.config import Config, UserConfig
from sync.core.events import apply_patch, belongs_to, diff, google_body, short, tagged
from sync.core.notice import ChangeNotice
from sync.reconcile import Outcome, Reconciler, RunContext, Skip, intended
from sync.store import MappedItem, Store

log = logging.getLogger("calsync.mirror")

#: What `_prepare` says of an item Exchange no longer has: its Google event goes too.
GONE: dict[str, Any] = {"kind": "gone"}


class FastPath:
    """Applies the proxy's change notices for the one reconciler."""

    def __init__(
        self,
        config: Config,
        store: Store,
        reconciler: Reconciler,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.reconciler = reconciler
        self.clock = clock

    def apply(
        self,
        notice: ChangeNotice,
        user: UserConfig,
        run: RunContext,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        remember: Callable[[dict[str, Any]], None],
    ) -> Outcome:
        """Apply one change the proxy saw. `remember` keeps what was prepared (the outbox
        seals it into the entry, so a retry never prepares twice)."""
        mapped = self.store.mapped(notice.mailbox, notice.key)
        if notice.kind == "delete":
            return self._delete(google, notice, user, mapped, run)
        payload: dict[str, Any] | None = notice.prepared  # the worker reads its own JSON
        if payload is None:
            payload = self._prepare(notice, exchange, mapped)
            remember(payload)
        elif payload["kind"] in ("event", "patch") and self._gone_from_exchange(notice, exchange):
            # prepared by an earlier attempt: the item may have been deleted since, by a
            # delete calsync never recorded (lost in a kill of the proxy)
            payload = GONE
        if payload["kind"] == "gone":
            return self._forget_gone(google, notice, user, mapped, run)
        if payload["kind"] == "skip":
            raise Skip(payload["reason"])
        if self._carried_since(notice, payload, mapped):
            # the pair holds another version of the item than the one this payload was made
            # from or leads to (the two-way job carried a later change since): the request's
            # fields are older than what the pair holds, so both sides are read and merged
            log.info(
                "%s %s %s: the pair moved on since this change; merging both sides",
                notice.mailbox,
                notice.kind,
                short(notice.key),
            )
            return Outcome(self.reconciler.reconcile_pair(user, google, exchange, notice.key, run))
        if payload.get("version"):  # the version a full read found
            notice = dataclasses.replace(notice, version=payload["version"])
        # a pair whose event is known to exist (an intended one's insert may not have been)
        made = mapped is not None and not intended(mapped) and mapped.snapshot is not None
        if payload["kind"] == "patch" and made and mapped is not None:
            result = self._patch(google, exchange, notice, user, mapped, payload["patch"], run)
        else:
            event = payload.get("event")
            if event is None:  # a patch with nothing to patch: read the whole item
                payload = self._prepare(notice, exchange, None)
                remember(payload)
                if payload["kind"] == "gone":
                    return self._forget_gone(google, notice, user, mapped, run)
                if payload["kind"] == "skip":
                    raise Skip(payload["reason"])
                event = payload["event"]
            result = self._put(google, exchange, notice, user, mapped, event, run)
            if result is not None:
                self._exceptions(google, exchange, notice, user, payload, run)
        if result is None:
            log.info(
                "%s %s %s: the Google event was deleted there; not recreated",
                notice.mailbox,
                notice.kind,
                short(notice.key),
            )
            return Outcome(None, forget=True)
        return Outcome(result)

    def _carried_since(
        self, notice: ChangeNotice, payload: dict[str, Any], mapped: MappedItem | None
    ) -> bool:
        """Whether the pair holds an Exchange version this payload neither applies to nor
        leads to: a create's payload applies to no pair, an update's to the version its
        request was made on (`bases`), a full read's to the pair as it was then; each leads
        to the version it shows. The fast path conditions its Google write on the etag
        calsync last wrote, which the job's writes move too: without this, an entry drained
        late writes its older fields over what the job carried since. A pair without a
        version, or no Exchange to read (no `ews_url`), trusts the payload."""
        if mapped is None or mapped.ews_change_key is None or not self.config.exchange_ews_url:
            return False
        leads_to = payload.get("version") or notice.version
        return mapped.ews_change_key not in (leads_to, *payload.get("bases", ()))

    def _gone_from_exchange(self, notice: ChangeNotice, exchange: ExchangeBackend) -> bool:
        """One cheap GetItem (IdOnly): True only when Exchange answers ErrorItemNotFound.
        Without an `[exchange] ews_url` nothing can be asked, and the payload is trusted."""
        if not self.config.exchange_ews_url:
            return False
        return notice.key in exchange.missing([notice.key])

    def _forget_gone(
        self,
        google: GoogleBackend,
        notice: ChangeNotice,
        user: UserConfig,
        mapped: MappedItem | None,
        run: RunContext,
    ) -> Outcome:
        """The item is gone from Exchange: delete the Google event this entry or an earlier
        one made for it (the mapped event, else the item's deterministic id), but only
        when that event is tagged as this item's (recorded for undo), and forget the
        pair."""
        from mapping.event import event_id_for

        event_id = mapped.google_event_id if mapped else event_id_for(notice.key)
        left = self._delete_if_ours(google, notice, user, event_id, run, "no longer in Exchange")
        outcome = left or f"Google {event_id} deleted"
        log.info(
            "%s %s %s: no longer in Exchange; %s",
            notice.mailbox,
            notice.kind,
            short(notice.key),
            outcome,
        )
        return Outcome(None, forget=True)

    def _prepare(
        self, notice: ChangeNotice, exchange: ExchangeBackend, mapped: MappedItem | None
    ) -> dict[str, Any]:
        """What to write: {"kind": "event"|"patch"|"skip"|"gone", ...}."""
        from mapping.event import patch_for

        hot = notice.hint
        if hot is not None and hot.index is not None:
            from ews_parser.envelope import parse
            from ews_parser.values import CreateItemRequest, ParsedItem, UpdateItemRequest
            from mapping.errors import MappingError

            request = parse(hot.request, default_zone=hot.default_zone).body
            try:
                if notice.kind == "upsert" and isinstance(request, CreateItemRequest):
                    item = request.items[hot.index]
                    if isinstance(item, ParsedItem) and item.model is not None:
                        model = item.model
                        deleted: tuple[Any, ...] = ()  # original starts, for an EXDATE
                        if item.mime_content is not None:
                            # iCalendar only (DavMail): the item as Exchange imports it;
                            # MimeConversionError (a MappingError) when it cannot tell
                            from mapping.ical import calendar_item

                            model, deleted = calendar_item(
                                model,
                                item.mime_content,
                                owner=notice.mailbox,
                                default_zone=hot.default_zone,
                            )
                        event = google_body(model, default_zone=hot.default_zone)
                        if not deleted:
                            return {"kind": "event", "event": event}
                        from mapping.event import event_id_for
                        from mapping.exceptions import overrides_for

                        master = (
                            mapped.google_event_id if mapped else event_id_for(notice.key)
                        )
                        cancelled = [o["id"] for o in overrides_for(master, event, [], deleted)]
                        return {"kind": "event", "event": event, "cancelled": cancelled}
                if (
                    notice.kind == "update"
                    and isinstance(request, UpdateItemRequest)
                    and mapped is not None
                    and mapped.snapshot is not None
                ):
                    change = request.changes[hot.index]
                    patch = patch_for(change.updates, mapped.snapshot)
                    if patch is not None:
                        base = change.target.change_key  # the version the client changed
                        return {"kind": "patch", "patch": patch, "bases": [base] if base else []}
            except MappingError as exc:
                # the request alone cannot say (an item without times, say): read it whole
                log.info(
                    "%s %s %s: %s; reading the item from Exchange",
                    notice.mailbox,
                    notice.kind,
                    short(notice.key),
                    exc,
                )
        # The request is gone or cannot tell: read the item from Exchange.
        full = exchange.calendar_item(notice.key)
        if full is None:
            return GONE
        if getattr(full, "type", None) in ("Occurrence", "Exception"):
            # A client that read an occurrence (GetItem on an OccurrenceItemId, or a
            # CalendarView) edits it by its own ItemId: it is no event of its own, and rides
            # with its series master, as OccurrenceItemId edits do.
            series = exchange.master_item_id(full)
            if series is not None and series != notice.key:
                self.store.enqueue(notice.mailbox, series, "refresh", now=self.clock())
            return {"kind": "skip", "reason": "an occurrence: its series master is refreshed"}
        if notice.kind == "refresh" and mapped is None:
            parent = getattr(full.parent_folder_id, "id", None)
            calendar = exchange.calendar_folder_id()
            # remember it: later CreateItems naming this FolderId need no question
            self.store.learn_folders(notice.mailbox, {calendar: "calendar"})
            if parent is not None and parent != calendar:
                return {"kind": "skip", "reason": "the item is not in the calendar"}
        exceptions = getattr(full, "type", None) == "RecurringMaster" and bool(
            full.modified_occurrences or full.deleted_occurrences
        )
        return {
            "kind": "event",
            "event": google_body(full),
            "series": exceptions,
            "version": getattr(full, "changekey", None),
            "bases": [mapped.ews_change_key] if mapped and mapped.ews_change_key else [],
        }

    def _exceptions(
        self,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        notice: ChangeNotice,
        user: UserConfig,
        payload: dict[str, Any],
        run: RunContext,
    ) -> None:
        """A series' exceptions, once its master is written: those Exchange holds through
        the reconciler's series rules (sync/series.py: the policy, and the base each
        instance keeps, so the two-way job knows the instance as calsync's write), or the
        occurrences a request's iCalendar deleted (EXDATE), cancelled without asking
        Exchange."""
        if payload.get("series") or payload.get("instances"):  # (instances: older payloads)
            if self.config.exchange_ews_url:
                self.reconciler.reconcile_exceptions(user, google, exchange, notice.key, run)
            return
        if not payload.get("cancelled"):
            return
        from sync.series import cancel_instance

        for instance_id in payload["cancelled"]:
            if not cancel_instance(google, instance_id):
                log.info(
                    "%s %s: no instance %s to cancel in Google",
                    notice.mailbox,
                    short(notice.key),
                    instance_id,
                )

    def _put(
        self,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        notice: ChangeNotice,
        user: UserConfig,
        mapped: MappedItem | None,
        event: dict[str, Any],
        run: RunContext,
    ) -> MappedItem | None:
        """Make the Google event equal `event`: a new one under the item's deterministic
        id (a taken id follows the reconciler's one 409 rule), or a patch of what differs.
        A pair only intended (an insert whose answer was lost: this entry's earlier
        attempt, a killed `calsync sync`, a stopped node) is read before anything is
        written, as the job reads it: the event there is merged against what that insert
        wrote, and made when it never arrived (`Reconciler.settle_deleted`)."""
        body = tagged(event, notice.mailbox, notice.key)
        if mapped is not None and intended(mapped) and self.config.exchange_ews_url:
            # Inserting again would record this body as the base in place of the one the
            # lost insert wrote, and its 409 then drops the record for the stamps'
            # guess: an edit made in Google since would read as a conflict
            return self.reconciler.reconcile_pair(user, google, exchange, notice.key, run)
        if mapped is not None and not intended(mapped):
            patch = diff(mapped.snapshot or {}, body)
            return self._patch(google, exchange, notice, user, mapped, patch, run, snapshot=body)
        # recorded as intended first: a node stopped between the insert and its record
        # leaves the base an edit made in Google meanwhile is merged against
        return self.reconciler.create_google(
            user, google, exchange, notice.key, notice.version, event, run, intended=True
        )

    def _patch(
        self,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        notice: ChangeNotice,
        user: UserConfig,
        mapped: MappedItem,
        patch: dict[str, Any],
        run: RunContext,
        *,
        snapshot: dict[str, Any] | None = None,
    ) -> MappedItem | None:
        """The fast path: the fields Exchange changed, patched onto the version calsync
        last wrote (If-Match). When Google changed since (412), it is the reconciler's
        read-merge-write with the user's policy: never "Exchange wins" by default."""
        new_snapshot = (
            snapshot if snapshot is not None else apply_patch(mapped.snapshot or {}, patch)
        )
        if not patch:
            return MappedItem(
                mailbox=mapped.mailbox,
                ews_item_id=mapped.ews_item_id,
                google_event_id=mapped.google_event_id,
                ews_change_key=notice.version or mapped.ews_change_key,
                google_etag=mapped.google_etag,
                content_hash=mapped.content_hash,
                snapshot=new_snapshot,
            )
        try:
            result = google.patch(mapped.google_event_id, patch, etag=mapped.google_etag)
        except GoogleError as exc:
            if exc.status in (404, 410):
                return None
            if exc.status != 412:
                raise
            log.info(
                "%s %s: Google changed since our last write; merging both sides",
                notice.mailbox,
                mapped.google_event_id,
            )
            return self.reconciler.reconcile_pair(
                user, google, exchange, notice.key, run
            )
        self.reconciler.record(
            run,
            "google",
            "patch",
            mapped.google_event_id,
            other_key=notice.key,
            version=result.get("etag"),
            before=mapped.snapshot,
            fields=patch,
        )
        log.info(
            "%s %s %s -> Google %s (%s)",
            notice.mailbox,
            notice.kind,
            short(notice.key),
            mapped.google_event_id,
            ", ".join(sorted(patch)),
        )
        return self._mapped_after(notice, mapped.google_event_id, result, new_snapshot, mapped)

    def _delete(
        self,
        google: GoogleBackend,
        notice: ChangeNotice,
        user: UserConfig,
        mapped: MappedItem | None,
        run: RunContext,
    ) -> Outcome:
        """Exchange accepted a delete: the pair's Google event goes (recorded for undo).
        An item calsync never mapped is not claimed as done: its deterministic event is
        deleted only when it exists and carries this item's tag, else the two-way job
        settles it."""
        from mapping.event import event_id_for

        if mapped is not None:
            self.reconciler.delete_google(
                user, google, notice.key, mapped.google_event_id, run, "deleted in Exchange"
            )
        else:
            event_id = event_id_for(notice.key)
            if self._delete_if_ours(google, notice, user, event_id, run, "deleted in Exchange"):
                log.info(
                    "%s delete %s: not mapped; left to the two-way job",
                    notice.mailbox,
                    short(notice.key),
                )
        return Outcome(None, forget=True)

    def _delete_if_ours(
        self,
        google: GoogleBackend,
        notice: ChangeNotice,
        user: UserConfig,
        event_id: str,
        run: RunContext,
        why: str,
    ) -> str | None:
        """Delete `event_id` through the reconciler (recorded for undo) only when it is
        live and tagged as this item's event; else why it was left, in words."""
        event = google.get(event_id)
        if event is None or event.get("status") == "cancelled":
            return "no Google event to delete"
        if not belongs_to(event, notice.key):
            return f"Google {event_id} is not tagged as its event: left alone"
        self.reconciler.delete_google(user, google, notice.key, event_id, run, why, before=event)
        return None

    def _mapped_after(
        self,
        notice: ChangeNotice,
        event_id: str,
        result: dict[str, Any],
        snapshot: dict[str, Any],
        previous: MappedItem | None = None,
    ) -> MappedItem:
        from mapping.event import content_hash

        digest = content_hash(snapshot)
        # the two-way job must know this version for ours when Google's feed returns it
        self.store.journal(
            notice.mailbox, "google", event_id, result.get("etag"), digest, now=self.clock()
        )
        return MappedItem(
            mailbox=notice.mailbox,
            ews_item_id=notice.key,
            google_event_id=event_id,
            ews_change_key=notice.version or (previous.ews_change_key if previous else None),
            google_etag=result.get("etag"),
            content_hash=digest,
            snapshot=snapshot,
        )
