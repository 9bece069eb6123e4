"""The one reconciler: every write to Google or Exchange, whichever source noticed the change.

Sources (the proxy's outbox worker, the Exchange feed, the Google feed, push) decide *that*
something changed; this module decides *what to write* and writes it, with one set of rules:

- a pair is brought into agreement by reading both sides and merging three-way against the
  last version both agreed on (`sync.core.decide.merge`), the user's policy settling a field
  both sides changed, the conflict recorded;
- every write is conditioned on the version read (If-Match etag, ChangeKey with
  NeverOverwrite); a concurrent change means read again and decide again, never "one side
  wins" by default;
- a create on Google that finds the event id taken (409) adopts the event when it carries
  this item's tag and merges it like any pair (never blindly overwritten, never duplicated);
- a deletion on one side deletes the other side's version, unless `[sync]
  modified_beats_delete` is set and the other side changed since the pair last agreed: then
  the edited version survives and the deleted side gets it back (a new item or event);
- the pair, the journal of our own versions (echo suppression), any conflict and the undo
  pre-image are recorded with each write, in the `RunContext` of the run that wrote it (a
  sync run, or the outbox worker's one-entry run), so `calsync undo` covers every write.

Nothing here keeps per-run state on itself: one Reconciler serves overlapping runs (push
and poll, several users at once); what a run needs travels in its `RunContext`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ews_parser.errors import CalsyncError
from sync.backends.base import (
    BackendError,
    ExchangeConflict,
    ExchangeError,
    GoogleError,
    differs,
)
from sync.config import Config, UserConfig
from sync.core.decide import Action, Merge, OtherSide, Policy, deletion_wins, merge
from sync.core.decide import plan as decide_plan
from sync.core.events import (
    EWS_ID_PROPERTY,
    MAILBOX_PROPERTY,
    ONE_WAY_FIELDS,
    WRITTEN_FIELDS,
    belongs_to,
    google_body,
    managed,
    short,
    tagged,
)
from sync.state.base import UNKNOWN_ITEM
from sync.store import MappedItem, Store

if TYPE_CHECKING:
    from sync.backends.base import ExchangeBackend, GoogleBackend
    from sync.core.notice import ChangeNotice
    from sync.fast_path import FastPath

log = logging.getLogger("calsync.reconcile")

#: How many times a write re-reads and re-decides after a concurrent change.
RETRIES = 3


def _nothing(count: int) -> None:
    pass


class StillChanging(CalsyncError):
    """A pair kept changing on both sides while it was merged: the next run tries again."""

    retryable = True


@dataclass(slots=True)
class RunContext:
    """What one run carries: where its writes are recorded (None: not recorded, as in a
    dry run) and what it counted. One per run, never shared between runs."""

    mailbox: str
    run_id: int | None
    conflicts: int = 0
    #: Exchange items this run created (the job re-reads the feed past them)
    created_in_exchange: list[str] | None = None
    #: writes made (recorded or not): a notice applied with none changed nothing
    writes: int = 0


class Reconciler:
    def __init__(
        self, config: Config, store: Store, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._fast_path: FastPath | None = None

    # --- runs and their records ------------------------------------------------------------

    def begin(self, mailbox: str, *, recorded: bool = True) -> RunContext:
        run_id = self.store.begin_run(mailbox, now=self.clock()) if recorded else None
        return RunContext(mailbox, run_id, created_in_exchange=[])

    def finish(self, run: RunContext) -> None:
        if run.run_id is not None:
            self.store.finish_run(run.run_id, now=self.clock())

    def record(
        self,
        run: RunContext,
        side: str,
        op: str,
        key: str,
        *,
        other_key: str | None,
        version: str | None,
        before: dict[str, Any] | None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Remember a write of this run and what it replaced, for `calsync undo`."""
        run.writes += 1
        if run.run_id is not None:
            self.store.record_write(
                run.run_id,
                side,
                op,
                key,
                other_key=other_key,
                version=version,
                before=before,
                fields=fields,
                now=self.clock(),
            )

    @contextmanager
    def recorded_if_lost(
        self,
        run: RunContext,
        side: str,
        op: str,
        key: str,
        *,
        other_key: str | None,
        before: dict[str, Any] | None,
        fields: dict[str, Any] | None = None,
    ) -> Iterator[None]:
        """A write whose failure may hide that it was made (`maybe_done`: no answer came)
        is recorded all the same, its version unknown: `calsync undo` then takes back
        whatever it finds made. A write that succeeds is recorded by the caller, with the
        version it left."""
        try:
            yield
        except BackendError as exc:
            if maybe_done(exc):
                self.record(
                    run,
                    side,
                    op,
                    key,
                    other_key=other_key,
                    version=None,
                    before=before,
                    fields=fields,
                )
            raise

    def policy(self, user: UserConfig) -> Policy:
        policy: Policy = user.policy or self.config.sync.policy  # type: ignore[assignment]
        return policy

    # --- one pair, both sides read ----------------------------------------------------------

    def reconcile_pair(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        ews_item_id: str,
        run: RunContext,
    ) -> MappedItem | None:
        """Bring one mapped pair into agreement: read both, merge three-way, write each
        side what it lacks, conditioned on the versions read; read again on a concurrent
        change. A side found gone is the deletion rule's business (`settle_deleted`).
        Returns the pair as recorded (None when it is no longer mapped)."""
        from mapping.event import content_hash, to_ews

        for _ in range(RETRIES):
            mapped = self.store.mapped(user.mailbox, ews_item_id)
            if mapped is None:
                return None
            item = exchange.calendar_item(ews_item_id)
            event = google.get(mapped.google_event_id)
            now = self.clock()
            if item is None or not _live(event):
                return self.settle_deleted(user, google, exchange, mapped, item, event, run)
            assert event is not None
            exchange_before = google_body(item)
            exchange_view = tagged(exchange_before, user.mailbox, ews_item_id)
            google_view = managed(event)
            result = self._merge(user, mapped, item, event, exchange_view)
            for conflict in result.conflicts:
                run.conflicts += 1
                self.store.record_conflict(
                    user.mailbox,
                    ews_item_id,
                    mapped.google_event_id,
                    conflict.field,
                    conflict.winner,
                    conflict.reason,
                    now=now,
                )
            wrote_exchange = wrote_google = False
            try:
                change_key = getattr(item, "changekey", None) or mapped.ews_change_key
                to_exchange = {
                    k: v for k, v in result.to_exchange.items() if k not in ONE_WAY_FIELDS
                }
                if to_exchange:
                    # only the EWS fields whose mapped value changed: the rest of the item
                    # (an HTML body, say) is never rewritten from its Google form
                    target = to_ews({**exchange_view, **result.merged})
                    current = to_ews(exchange_view)
                    values = {k: v for k, v in target.items() if differs(v, current.get(k))}
                    with self.recorded_if_lost(
                        run,
                        "exchange",
                        "patch",
                        ews_item_id,
                        other_key=mapped.google_event_id,
                        before=exchange_before,
                        fields={name: True for name in values},
                    ):
                        written = exchange.update(item, values)
                    if written is not None:
                        ews_item_id, change_key = written
                        wrote_exchange = True
                        # for undo at once, whatever happens next
                        self.record(
                            run,
                            "exchange",
                            "patch",
                            ews_item_id,
                            other_key=mapped.google_event_id,
                            version=change_key,
                            before=exchange_before,
                            fields={name: True for name in values},
                        )
                etag = event.get("etag")
                to_google = dict(result.to_google)
                if "extendedProperties" not in to_google and not belongs_to(event, ews_item_id):
                    # the tag a create could not write (a failed patch), or an adopted
                    # event never had: the map can be rebuilt from Google again
                    to_google["extendedProperties"] = {
                        "private": {EWS_ID_PROPERTY: ews_item_id, MAILBOX_PROPERTY: user.mailbox}
                    }
                if to_google:
                    with self.recorded_if_lost(
                        run,
                        "google",
                        "patch",
                        mapped.google_event_id,
                        other_key=ews_item_id,
                        before=google_view,
                        fields=to_google,
                    ):
                        patched = google.patch(mapped.google_event_id, to_google, etag=etag)
                    wrote_google = True
                    self.record(
                        run,
                        "google",
                        "patch",
                        mapped.google_event_id,
                        other_key=ews_item_id,
                        version=patched.get("etag"),
                        before=google_view,
                        fields=to_google,
                    )
                    etag = patched.get("etag")
            except ExchangeConflict:
                continue  # the item changed while we decided: read again
            except GoogleError as exc:
                if exc.status == 412:
                    continue  # the event changed while we decided: read again
                raise
            merged_hash = content_hash(result.merged)
            pair = MappedItem(
                user.mailbox,
                ews_item_id,
                mapped.google_event_id,
                change_key,
                etag,
                merged_hash,
                result.merged,
            )
            # Our versions are journaled (the feeds skip them as echoes) together with the
            # pair that agrees with them: when the second write fails, the first is not
            # taken for an echo, and the next run reads both sides and merges again.
            with self.store.transaction():
                if wrote_exchange:
                    self.store.journal(
                        user.mailbox, "exchange", ews_item_id, change_key, merged_hash, now=now
                    )
                if wrote_google:
                    self.store.journal(
                        user.mailbox, "google", mapped.google_event_id, etag, merged_hash, now=now
                    )
                self.store.save_mapping(pair, now=now, reconciled=True)
            if result.to_exchange or result.to_google:
                log.info(
                    "%s reconciled %s: to Exchange %s, to Google %s",
                    user.mailbox,
                    short(ews_item_id),
                    sorted(result.to_exchange),
                    sorted(result.to_google),
                )
            return pair
        raise StillChanging(f"{short(ews_item_id)} kept changing on both sides; will try again")

    def _merge(
        self,
        user: UserConfig,
        mapped: MappedItem,
        item: Any,
        event: dict[str, Any],
        exchange_view: dict[str, Any] | None = None,
    ) -> Merge:
        """Both sides merged three-way against the pair's base, the policy settling a
        field both changed."""
        from mapping.event import normalised

        if exchange_view is None:
            exchange_view = tagged(google_body(item), user.mailbox, mapped.ews_item_id)
        return merge(
            mapped.snapshot or {},
            exchange_view,
            managed(event),
            fields=WRITTEN_FIELDS,
            policy=self.policy(user),
            exchange_updated=getattr(item, "last_modified_time", None),
            google_updated=_parse_time(event.get("updated")),
            same=lambda name, a, b: normalised(name, a) == normalised(name, b),
        )

    # --- deletions ---------------------------------------------------------------------------

    def settle_deleted(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        mapped: MappedItem,
        item: Any | None,
        event: dict[str, Any] | None,
        run: RunContext,
    ) -> MappedItem | None:
        """One side of a pair is gone. By default the deletion wins: the other side's
        version is deleted too. With `modified_beats_delete`, a version changed since the
        pair last agreed survives, and the deleted side gets it back as a new item or
        event (`sync.core.decide.deletion_wins` decides). A deleted event is never brought
        back by itself otherwise."""
        live = _live(event)
        if item is None and not live:
            self.store.forget(user.mailbox, mapped.ews_item_id)
            return None
        if event is None and item is not None and intended(mapped):
            # Google has no such event, not even deleted: the insert a killed run intended
            # never arrived. It is made now (nothing was deleted)
            return self.create_google(
                user,
                google,
                exchange,
                mapped.ews_item_id,
                getattr(item, "changekey", None),
                google_body(item),
                run,
            )
        base = mapped.snapshot or {}

        def changed(view: dict[str, Any]) -> bool:
            return _changed(base, view)

        modified_beats_delete = self.config.sync.modified_beats_delete
        if item is None:  # deleted in Exchange; the Google event is live
            assert event is not None
            if not deletion_wins(
                deleted_on="exchange",
                other_changed=changed(managed(event)),
                modified_beats_delete=modified_beats_delete,
            ):
                log.info(
                    "%s: %s deleted in Exchange but edited in Google: the edit wins",
                    user.mailbox,
                    mapped.google_event_id,
                )
                return self.create_exchange(
                    user, google, exchange, event, run, replaces=mapped.ews_item_id
                )
            self.delete_google(
                user, google, mapped.ews_item_id, mapped.google_event_id, run, "deleted in Exchange"
            )
            return None
        # deleted in Google; the Exchange item is live
        view = tagged(google_body(item), user.mailbox, mapped.ews_item_id)
        if not deletion_wins(
            deleted_on="google",
            other_changed=changed(view),
            modified_beats_delete=modified_beats_delete,
        ):
            log.info(
                "%s: %s deleted in Google but edited in Exchange: the edit wins",
                user.mailbox,
                short(mapped.ews_item_id),
            )
            return self.recreate_google(user, google, exchange, mapped, item, view, run)
        self.delete_exchange(user, exchange, mapped.ews_item_id, mapped.google_event_id, run)
        return None

    def recreate_google(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        mapped: MappedItem,
        item: Any,
        view: dict[str, Any],
        run: RunContext,
    ) -> MappedItem | None:
        """The Exchange version survives a deletion in Google: a new event for the item.
        The old id is a tombstone Google keeps, so the new one is derived from the item's
        and the old event's: a retried insert (its answer lost) meets 409 and takes the
        event the earlier attempt made, never a second one. The pair moves to it in one
        step, so a failed insert leaves the old pair for the next run to settle again."""
        from mapping.event import content_hash, event_id_for

        body = {k: v for k, v in view.items() if k != "id"}
        event_id = event_id_for(f"{mapped.ews_item_id} after {mapped.google_event_id}")
        try:
            created: dict[str, Any] | None = google.insert({**body, "id": event_id})
        except GoogleError as exc:
            if exc.status != 409:
                raise
            created = google.get(event_id)
            if not _live(created) or not belongs_to(created or {}, mapped.ews_item_id):
                # that event was made and deleted since: the deletion stands
                self.delete_exchange(user, exchange, mapped.ews_item_id, event_id, run)
                return None
        assert created is not None
        now = self.clock()
        pair = MappedItem(
            user.mailbox,
            mapped.ews_item_id,
            event_id,
            getattr(item, "changekey", None),
            created.get("etag"),
            content_hash(body),
            body,
        )
        with self.store.transaction():
            self.record(
                run,
                "google",
                "create",
                event_id,
                other_key=mapped.ews_item_id,
                version=created.get("etag"),
                before=None,
            )
            self.store.journal(
                user.mailbox, "google", event_id, created.get("etag"), content_hash(body), now=now
            )
            self.store.forget(user.mailbox, mapped.ews_item_id)
            self.store.save_mapping(pair, now=now, reconciled=True)
        return pair

    def delete_google(
        self,
        user: UserConfig,
        google: GoogleBackend,
        ews_item_id: str,
        event_id: str,
        run: RunContext,
        why: str,
        *,
        before: dict[str, Any] | None = None,
    ) -> None:
        """Delete the pair's Google event and forget the pair; the event as it was is
        kept for undo. `before`: the event as the caller just read it (else it is read
        here, when this run is recorded)."""
        # the pre-image, for undo: read only when this run is recorded
        gone = (
            before
            if before is not None
            else (google.get(event_id) if run.run_id is not None else None)
        )
        try:
            google.delete(event_id)
        except GoogleError as exc:
            if exc.status not in (404, 410):
                raise
            if not maybe_done(exc):  # else gone by this delete's first sending, its answer lost
                gone = None
        with self.store.transaction():
            self.store.forget(user.mailbox, ews_item_id)
            if _live(gone):
                assert gone is not None
                self.record(
                    run,
                    "google",
                    "delete",
                    event_id,
                    other_key=ews_item_id,
                    version=None,
                    before=managed(gone),
                )
        log.info("%s delete Google %s (%s)", user.mailbox, event_id, why)

    def delete_exchange(
        self,
        user: UserConfig,
        exchange: ExchangeBackend,
        ews_item_id: str,
        event_id: str,
        run: RunContext,
    ) -> None:
        from mapping.event import to_google

        gone = exchange.calendar_item(ews_item_id) if run.run_id is not None else None
        exchange.delete(ews_item_id)
        self.store.forget(user.mailbox, ews_item_id)
        if gone is not None:
            self.record(
                run,
                "exchange",
                "delete",
                ews_item_id,
                other_key=event_id,
                version=None,
                before=to_google(gone),
            )
        log.info("%s delete Exchange %s (deleted in Google)", user.mailbox, short(ews_item_id))

    # --- creations ---------------------------------------------------------------------------

    def create_google(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        item_id: str,
        change_key: str | None,
        event: dict[str, Any],
        run: RunContext,
        *,
        intended: bool = False,
    ) -> MappedItem | None:
        """The Google event for a new Exchange item, under its deterministic id.
        `intended`: the pair is recorded as intended before the insert (`intend`), so a
        process killed before the record leaves the base the next run merges against."""
        from mapping.event import event_id_for

        body = tagged(event, user.mailbox, item_id)
        event_id = event_id_for(item_id)
        if intended:
            self.intend([(item_id, event_id, body)], user.mailbox)
        try:
            with self.recorded_if_lost(
                run, "google", "create", event_id, other_key=item_id, before=None
            ):
                result = google.insert({**body, "id": event_id})
        except GoogleError as exc:
            if intended:  # not made by this insert: what it meant to write is no base
                self.unintend(user.mailbox, item_id, exc)
            if exc.status == 409:
                return self.adopt_taken(user, google, exchange, item_id, event_id, run)
            raise
        return self.created(user, item_id, change_key, body, event_id, result, run)

    def intend(self, creates: Sequence[tuple[str, str, dict[str, Any]]], mailbox: str) -> None:
        """Record the pairs about to be made (item id, event id, the event's body) before
        their inserts, in one step: no version agreed on either side, the body as their
        base. A process killed between an insert and its record leaves this pair: the
        next run merges both sides against what was written (edits made since on either
        side are told apart, and a field both changed is the policy's), and makes the
        event if the insert never arrived (`settle_deleted`)."""
        from mapping.event import content_hash

        now = self.clock()
        with self.store.transaction():
            for item_id, event_id, body in creates:
                snapshot = managed(body)
                self.store.save_mapping(
                    MappedItem(
                        mailbox, item_id, event_id, None, None, content_hash(snapshot), snapshot
                    ),
                    now=now,
                )

    def unintend(self, mailbox: str, item_id: str, exc: BaseException) -> None:
        """An intended pair's insert was refused (the server answered: this insert made
        nothing; a 409 found an event made before, adopted by the 409 rule): the pair is
        forgotten. One whose answer was lost stays, for the next run."""
        if not maybe_done(exc):
            self.store.forget(mailbox, item_id)

    def adopt_taken(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        item_id: str,
        event_id: str,
        run: RunContext,
        current: dict[str, Any] | None = None,
    ) -> MappedItem | None:
        """The 409 rule, one for every source, and the Google feed's adoption of an event
        tagged as an item's that the map lost: a write made before a crash left this item's
        own event, its record lost. Map it, then merge as any pair (the tag is written if it
        was missing), against the version calsync wrote as far as it can be told
        (`adoption_base`). An id Google keeps for a deleted event is never brought back; an
        event tagged as another item's is an error, never overwritten."""
        from mapping.event import content_hash

        if current is None:
            current = google.get(event_id)
        if not _live(current):
            return None  # deleted in Google: never brought back by itself
        assert current is not None
        private = (current.get("extendedProperties") or {}).get("private") or {}
        if private.get(EWS_ID_PROPERTY) not in (None, item_id):
            raise CalsyncError(f"Google event {event_id} exists but belongs to another item")
        item = exchange.calendar_item(item_id)
        base = adoption_base(
            current,
            None if item is None else tagged(google_body(item), user.mailbox, item_id),
            getattr(item, "last_modified_time", None),
        )
        # no version agreed yet on either side (the merge records them): a notice of the
        # event's version is no echo until then
        self.store.save_mapping(
            MappedItem(user.mailbox, item_id, event_id, None, None, content_hash(base), base),
            now=self.clock(),
        )
        return self.reconcile_pair(user, google, exchange, item_id, run)

    def created(
        self,
        user: UserConfig,
        item_id: str,
        change_key: str | None,
        body: dict[str, Any],
        event_id: str,
        result: dict[str, Any],
        run: RunContext,
    ) -> MappedItem | None:
        """Journal, record and map a Google event just created for `item_id`."""
        from mapping.event import content_hash

        if not _live(result):
            return None
        now = self.clock()
        pair = MappedItem(
            user.mailbox,
            item_id,
            event_id,
            change_key,
            result.get("etag"),
            content_hash(body),
            body,
        )
        with self.store.transaction():  # one step, as every other create's record
            self.record(
                run,
                "google",
                "create",
                event_id,
                other_key=item_id,
                version=result.get("etag"),
                before=None,
            )
            self.store.journal(
                user.mailbox, "google", event_id, result.get("etag"), pair.content_hash, now=now
            )
            self.store.save_mapping(pair, now=now, reconciled=True)
        log.info("%s create Google %s (new in Exchange %s)", user.mailbox, event_id, short(item_id))
        return pair

    def create_exchange(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        event: dict[str, Any],
        run: RunContext,
        *,
        found: Mapping[str, str] | None = None,
        replaces: str | None = None,
    ) -> MappedItem | None:
        """A new Exchange item for a Google event, then the event tagged as its.

        Idempotent across retries: the item carries the event's id from its CreateItem on,
        and before creating, the item an earlier attempt made (its answer lost, the process
        killed before the record) is looked for (`found`: the caller's lookup for many
        events; else one FindItem here) and adopted. The item is recorded with its
        create, before the tag is written: a failure of that patch leaves a pair the next
        run settles (and tags), never an item nobody knows. `replaces`: the pair's old
        item (deleted in Exchange, the Google edit winning), forgotten in the same step."""
        from mapping.event import content_hash, to_ews

        event_id = event["id"]
        earlier = (found if found is not None else exchange.created_for([event_id])).get(event_id)
        if earlier is not None and earlier != replaces:
            adopted = self.adopt_created(user, google, exchange, earlier, event_id, run, replaces)
            if adopted is not None:
                return adopted
        # an answer lost is a create maybe made, its item's id unknown: recorded all the
        # same, for undo to find by the event's id the item carries (whichever run adopts it)
        with self.recorded_if_lost(
            run, "exchange", "create", UNKNOWN_ITEM, other_key=event_id, before=None
        ):
            item_id, change_key = exchange.create(to_ews(event), google_event_id=event_id)
        now = self.clock()
        if run.created_in_exchange is not None:
            run.created_in_exchange.append(item_id)
        snapshot = managed(event)
        # the event's version is agreed once it carries the tag: until then (a failed
        # patch) the Google feed's notice of it is no echo, and the next run tags it
        pair = MappedItem(
            user.mailbox, item_id, event_id, change_key, None, content_hash(snapshot), snapshot
        )
        with self.store.transaction():
            self.record(
                run,
                "exchange",
                "create",
                item_id,
                other_key=event_id,
                version=change_key,
                before=None,
            )
            self.store.journal(
                user.mailbox, "exchange", item_id, change_key, content_hash(snapshot), now=now
            )
            if replaces is not None:
                self.store.forget(user.mailbox, replaces)
            self.store.save_mapping(pair, now=now)
        log.info("%s create Exchange %s (new in Google %s)", user.mailbox, short(item_id), event_id)
        # tie the Google event to its new item (and journal that write too)
        tag = {
            "extendedProperties": {
                "private": {EWS_ID_PROPERTY: item_id, MAILBOX_PROPERTY: user.mailbox}
            }
        }
        tagged_event = google.patch(event_id, tag, etag=event.get("etag"))
        now = self.clock()
        pair = MappedItem(
            user.mailbox,
            item_id,
            event_id,
            change_key,
            tagged_event.get("etag"),
            content_hash(snapshot),
            managed(tagged_event),
        )
        with self.store.transaction():
            self.record(
                run,
                "google",
                "patch",
                event_id,
                other_key=item_id,
                version=tagged_event.get("etag"),
                before=managed(event),
                fields=tag,
            )
            self.store.journal(
                user.mailbox, "google", event_id, tagged_event.get("etag"), None, now=now
            )
            self.store.save_mapping(pair, now=now, reconciled=True)
        return pair

    def adopt_created(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        item_id: str,
        event_id: str,
        run: RunContext,
        replaces: str | None = None,
    ) -> MappedItem | None:
        """An Exchange item calsync created for a Google event (it carries the event's id)
        that the map does not hold: an earlier attempt's, its record lost. Map it, with the
        item as the base (it was made from the event, so what Google changed since goes to
        it), then settle the pair as any other: merged when both live, the deletion rule
        when the event is gone. None when the item is gone too, or the event is another
        item's."""
        from mapping.event import content_hash

        item = exchange.calendar_item(item_id)
        if item is None:
            return None
        if self.store.is_mapped(user.mailbox, item_id):
            return self.reconcile_pair(user, google, exchange, item_id, run)
        mapped = self.store.mapped_by_google(user.mailbox, event_id)
        if mapped is not None and mapped.ews_item_id != replaces:
            raise CalsyncError(
                f"Exchange item {short(item_id)} was made for Google event {event_id}, "
                f"which is mapped to another item ({short(mapped.ews_item_id)})"
            )
        base = creation_base(
            tagged(google_body(item), user.mailbox, item_id),
            getattr(item, "datetime_created", None),
            getattr(item, "last_modified_time", None),
            lambda: google.get(event_id),
        )
        log.info(
            "%s: Exchange %s was created for Google %s earlier: adopted",
            user.mailbox,
            short(item_id),
            event_id,
        )
        with self.store.transaction():
            if replaces is not None:
                self.store.forget(user.mailbox, replaces)
            self.store.save_mapping(
                MappedItem(
                    user.mailbox,
                    item_id,
                    event_id,
                    getattr(item, "changekey", None),
                    None,
                    content_hash(base),
                    base,
                ),
                now=self.clock(),
            )
        return self.reconcile_pair(user, google, exchange, item_id, run)

    # --- change notices ---------------------------------------------------------------------

    def held(self, notice: ChangeNotice, mapped: MappedItem | None) -> bool:
        """Whether the pair holds the notice's version already: the version it last agreed
        on (a change carried since, by whichever source), or one calsync wrote itself (its
        journal: an echo). A deletion is never held."""
        if notice.version is None or notice.kind == "delete":
            return False
        if mapped is not None:
            agreed = mapped.ews_change_key if notice.side == "exchange" else mapped.google_etag
            if agreed == notice.version:
                return True
        return self.store.is_echo(notice.mailbox, notice.side, notice.key, notice.version)

    def known(self, notice: ChangeNotice) -> bool:
        """Whether an Exchange notice needs no run of its own (a notification's item
        change): the pair holds its version (`held`: carried, or calsync's own write), or a
        source has it in hand (an outbox entry of that version; for a deletion, a queued
        deletion). A deletion of an item neither mapped nor queued leaves nothing in
        Google. Anything else is for the user's run (the feed reads what changed)."""
        queued = self.store.queued(notice.mailbox, notice.key)
        if notice.kind == "delete":
            if any(op == "delete" for op, _ in queued):
                return True
            return not queued and not self.store.is_mapped(notice.mailbox, notice.key)
        if notice.version is not None and any(
            op != "delete" and key == notice.version for op, key in queued
        ):
            return True
        return self.held(notice, self.store.mapped(notice.mailbox, notice.key))

    def _pair_of(self, notice: ChangeNotice) -> MappedItem | None:
        if notice.side == "exchange":
            return self.store.mapped(notice.mailbox, notice.key)
        return self.store.mapped_by_google(notice.mailbox, notice.key)

    def plan(
        self,
        notice: ChangeNotice,
        *,
        user: UserConfig,
        google: GoogleBackend | None = None,
        exchange: ExchangeBackend | None = None,
    ) -> Action:
        """What `notice` calls for (`sync.core.decide.plan`), from what the source read and
        the pair the map holds. Given both backends (a dry run), the pair's other side is
        read too, and the plan says what the merge (the user's policy) and the deletion
        rule (`modified_beats_delete`) make of it; without them nothing is read, and
        `apply` decides those as it writes."""
        from sync.backends.base import google_event_of

        mapped = self._pair_of(notice)
        pair = (mapped.ews_item_id, mapped.google_event_id) if mapped is not None else None
        held = self.held(notice, mapped)
        made_for = google_event_of(notice.item) if notice.item is not None else None
        other = None
        if mapped is not None and not held and google is not None and exchange is not None:
            other = self._other_side(user, notice, mapped, google, exchange)
        return decide_plan(
            notice,
            pair,
            held=held,
            made_for=made_for,
            other=other,
            modified_beats_delete=self.config.sync.modified_beats_delete,
        )

    def _other_side(
        self,
        user: UserConfig,
        notice: ChangeNotice,
        mapped: MappedItem,
        google: GoogleBackend,
        exchange: ExchangeBackend,
    ) -> OtherSide:
        """The pair's other side as it is now, and, for a change, the merge."""
        base = mapped.snapshot or {}
        if notice.side == "exchange":
            event = google.get(mapped.google_event_id)
            if not _live(event):
                return OtherSide(live=False, changed=False)
            assert event is not None
            view = managed(event)
            result = None
            if notice.kind != "delete" and notice.item is not None:
                result = self._merge(user, mapped, notice.item, event)
            return OtherSide(live=True, changed=_changed(base, view), merge=result)
        item = exchange.calendar_item(mapped.ews_item_id)
        if item is None:
            return OtherSide(live=False, changed=False)
        view = tagged(google_body(item), user.mailbox, mapped.ews_item_id)
        result = None
        if notice.kind != "delete" and notice.event is not None:
            result = self._merge(user, mapped, item, notice.event)
        return OtherSide(live=True, changed=_changed(base, view), merge=result)

    def apply(
        self,
        notice: ChangeNotice,
        run: RunContext,
        *,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        remember: Callable[[dict[str, Any]], None] = lambda prepared: None,
        action: Action | None = None,
    ) -> Outcome:
        """Apply one change notice with the user's policy; every write is recorded in
        `run`. A notice whose version the pair holds already (an echo of calsync's own
        write, a change another source carried) is skipped (`Skip`), whatever its origin.

        Proxy notices take the fast path (sync/fast_path.py): the request says what
        changed; `remember` keeps what it prepared, and the caller records the returned
        pair with its own bookkeeping. A feed's notice (or the job's check of which items
        exist) is applied as `plan` decides (`action`: the plan the caller made already),
        reading both sides: merged three-way, created, adopted, or settled by the deletion
        rule; the pair is recorded here."""
        if notice.origin == "proxy":
            if notice.side != "exchange":
                raise NotImplementedError(f"no rule for {notice.origin} {notice.side} notices")
            if self.held(notice, self._proxied_pair(notice)):
                raise Skip("the pair holds this version already")
            return self._fast().apply(notice, user, run, google, exchange, remember)
        if action is None:
            action = self.plan(notice, user=user)
        return self._execute(notice, action, run, user, google, exchange)

    def _proxied_pair(self, notice: ChangeNotice) -> MappedItem | None:
        # read only when the notice has a version to compare (a delete has none)
        if notice.version is None or notice.kind == "delete":
            return None
        return self.store.mapped(notice.mailbox, notice.key)

    def _fast(self) -> FastPath:
        from sync.fast_path import FastPath

        if self._fast_path is None:
            self._fast_path = FastPath(self.config, self.store, self, clock=self.clock)
        return self._fast_path

    def apply_many(
        self,
        planned: Sequence[tuple[ChangeNotice, Action]],
        run: RunContext,
        *,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        progress: Callable[[int], None] = _nothing,
    ) -> Iterator[tuple[ChangeNotice, Action, Outcome | CalsyncError]]:
        """Apply a feed's planned notices, in order, one at a time as the caller takes each
        result (a caller that stops taking them stops the rest): each notice's outcome, or
        the error that stopped it (its own; the others go on). Echoes and skips are left
        out. Many new Exchange items' events go as batched inserts (and the reads after a
        409 too), first; the items earlier attempts made for many new Google events (their
        answers lost) are looked up with one FindItem, so that no create is made twice."""
        todo = [(n, a) for n, a in planned if a.kind not in ("echo", "skip")]
        inserts = [(n, a) for n, a in todo if a.kind == "create-google" and n.side == "exchange"]
        batched = len(inserts) > 1 and hasattr(google, "insert_many")
        if batched:
            yield from self._create_google_many(user, google, exchange, inserts, run, progress)
        found: dict[str, str] | None = None
        creates = [n.key for n, a in todo if a.kind == "create-exchange" and n.side == "google"]
        if creates:
            try:
                found = exchange.created_for(creates)
            except ExchangeError as exc:  # each create looks on its own then
                log.info("%s: items made for Google events not looked up: %s", user.mailbox, exc)
        for notice, action in todo:
            if batched and action.kind == "create-google" and notice.side == "exchange":
                continue
            result: Outcome | CalsyncError
            try:
                result = self._execute(notice, action, run, user, google, exchange, found=found)
            except CalsyncError as exc:
                result = exc
            yield notice, action, result
            progress(1)

    def _execute(
        self,
        notice: ChangeNotice,
        action: Action,
        run: RunContext,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        *,
        found: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Carry out the plan for a feed's notice, deciding again with both sides read."""
        if action.kind in ("echo", "skip"):
            raise Skip(action.reason)
        item_id, event_id = action.ews_item_id, action.google_event_id
        if notice.kind == "delete":
            mapped = self.store.mapped(user.mailbox, item_id) if item_id else None
            if mapped is None:
                return Outcome(None, forget=True)
            if notice.side == "exchange":  # deleted in Exchange (or gone from it)
                item, event = None, google.get(mapped.google_event_id)
            else:  # deleted in Google: the item as it is now decides
                item, event = exchange.calendar_item(mapped.ews_item_id), notice.event
            pair = self.settle_deleted(user, google, exchange, mapped, item, event, run)
            return Outcome(pair, forget=pair is None)
        if action.kind == "forget":  # the map lost an earlier write's pair: adopt it
            assert item_id is not None and event_id is not None
            if notice.side == "exchange":
                pair = self.adopt_created(user, google, exchange, item_id, event_id, run)
            elif self.store.is_mapped(user.mailbox, item_id):
                return Outcome(None)  # the item has its pair: this event is not it (left alone)
            else:
                # both live: merged; the item gone (deleted after a run wrote its event and
                # was killed before its record): the deletion rule, the event goes too
                pair = self.adopt_taken(
                    user, google, exchange, item_id, event_id, run, current=notice.event
                )
        elif action.kind == "create-google" and notice.side == "exchange":
            assert notice.item is not None
            body = google_body(notice.item)
            pair = self.create_google(
                user, google, exchange, notice.key, notice.version, body, run, intended=True
            )
        elif action.kind == "create-exchange" and notice.side == "google":
            assert notice.event is not None
            pair = self.create_exchange(user, google, exchange, notice.event, run, found=found)
        else:
            assert item_id is not None
            pair = self.reconcile_pair(user, google, exchange, item_id, run)
        return Outcome(pair, forget=pair is None)

    def _create_google_many(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        planned: list[tuple[ChangeNotice, Action]],
        run: RunContext,
        progress: Callable[[int], None],
    ) -> Iterator[tuple[ChangeNotice, Action, Outcome | CalsyncError]]:
        """`create_google` for many new items: the inserts go as batch requests (and the
        reads after a 409 too); each item's error is its own."""
        from mapping.event import event_id_for

        ready: list[tuple[ChangeNotice, Action, dict[str, Any], str]] = []
        for notice, action in planned:
            assert notice.item is not None
            try:
                body = tagged(google_body(notice.item), user.mailbox, notice.key)
            except CalsyncError as exc:
                yield notice, action, exc
                continue
            ready.append((notice, action, body, event_id_for(notice.key)))
        self.intend([(n.key, event_id, body) for n, _, body, event_id in ready], user.mailbox)
        answers = google.insert_many(
            [{**body, "id": event_id} for _, _, body, event_id in ready], progress=progress
        )
        # every insert's outcome is recorded before any is handed back (the caller may
        # stop taking them: a server asking to wait)
        for (notice, _, _, event_id), answer in zip(ready, answers, strict=True):
            if isinstance(answer, GoogleError):  # not made by this insert
                self.unintend(user.mailbox, notice.key, answer)
                if maybe_done(answer):
                    self.record(
                        run,
                        "google",
                        "create",
                        event_id,
                        other_key=notice.key,
                        version=None,
                        before=None,
                    )
        taken = [i for i, a in enumerate(answers) if isinstance(a, GoogleError) and a.status == 409]
        current = dict(zip(taken, google.get_many([ready[i][3] for i in taken]), strict=True))
        for index, ((notice, action, body, event_id), answer) in enumerate(
            zip(ready, answers, strict=True)
        ):
            result = current.get(index, answer)
            if isinstance(result, GoogleError):
                yield notice, action, result
                continue
            try:
                if index in current:  # the id was taken: the one 409 rule
                    pair = self.adopt_taken(
                        user, google, exchange, notice.key, event_id, run, result
                    )
                elif result is not None:
                    pair = self.created(
                        user, notice.key, notice.version, body, event_id, result, run
                    )
                else:
                    pair = None
            except CalsyncError as exc:
                yield notice, action, exc
                continue
            yield notice, action, Outcome(pair)

    # --- series exceptions ------------------------------------------------------------------

    def apply_series(
        self,
        notice: ChangeNotice,
        run: RunContext,
        *,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        instances: Sequence[ChangeNotice] = (),
    ) -> int:
        """Bring the exceptions of the series `notice` names (its master: an Exchange item,
        or a Google event) into agreement, with the instances of it a feed reported
        (those the pair holds already left out). How many writes it took; 0 when the
        series is not mapped, or all the instances were echoes."""
        if notice.item is not None and not _is_series(notice.item):
            return 0  # the feed's item says it is no series: nothing more to read
        mapped = self._pair_of(notice)
        if mapped is None:
            return 0
        reported = [i.event for i in instances if i.event is not None and not self.held(i, None)]
        if instances and not reported:
            return 0
        return self.reconcile_exceptions(user, google, exchange, mapped.ews_item_id, run, reported)

    def reconcile_exceptions(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        ews_item_id: str,
        run: RunContext,
        instances: Iterable[Mapping[str, Any]] = (),
    ) -> int:
        """Bring the exceptions of a mapped series into agreement, occurrence by occurrence,
        with the user's policy (sync/series.py): Google overrides and EWS modified
        occurrences, cancelled instances and deleted occurrences. `instances`: Google
        instances a feed reported for it (beside the exceptions Exchange holds). How many
        writes it took."""
        from sync.series import SeriesExceptions

        return SeriesExceptions(self).reconcile(user, google, exchange, ews_item_id, run, instances)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying a notice left: the pair as it now is (None: no pair), and whether
    the pair is to be forgotten (the item or its event is gone)."""

    mapping: MappedItem | None
    forget: bool = False


class Skip(CalsyncError):
    """Nothing to write: said why, and the change is done."""


#: How much later than its `created` an event's `updated` shows a change made after the
#: insert (Google stamps the two a few milliseconds apart at creation).
CHANGED_SINCE_CREATED_S = 1.0


def adoption_base(
    event: dict[str, Any],
    item_view: dict[str, Any] | None,
    item_modified: dt.datetime | None = None,
) -> dict[str, Any]:
    """The base to merge a pair against when calsync adopts the event an earlier write
    made and whose record was lost, with no record of what it wrote (`intend` keeps one
    now). The stamps tell which side changed since the event was made: the event
    untouched (`updated` within a second of `created`) is as calsync wrote it, and its
    version is the base (what Exchange changed since goes to it); changed since by
    someone, while the item was not (its last modification before the event was made),
    the item's version is the base (the event was made from it; the Google edit wins).
    Both changed since: no base, so that neither side's edit reads as no change: a field
    they hold apart is a conflict, settled by the policy."""
    created, updated = _parse_time(event.get("created")), _parse_time(event.get("updated"))
    edited = (
        created is not None
        and updated is not None
        and (updated - created).total_seconds() > CHANGED_SINCE_CREATED_S
    )
    if not edited or item_view is None:
        return managed(event)
    item_edited = (
        item_modified is not None
        and created is not None
        and (item_modified - created).total_seconds() > CHANGED_SINCE_CREATED_S
    )
    return {} if item_edited else item_view


def creation_base(
    item_view: dict[str, Any],
    item_created: dt.datetime | None,
    item_modified: dt.datetime | None,
    read_event: Callable[[], dict[str, Any] | None],
) -> dict[str, Any]:
    """The base to merge a pair against when calsync adopts the item an earlier write
    made for a Google event and whose record was lost (the item carries the event's id).
    The item untouched since it was made is as calsync wrote it: its version is the base
    (what Google changed since goes to it). Changed since, while the event was not (its
    last update before the item was made), the event's version is the base (the item was
    made from it; the Exchange edit wins). Both changed since: no base, a field they hold
    apart is the policy's."""
    edited = (
        item_created is not None
        and item_modified is not None
        and (item_modified - item_created).total_seconds() > CHANGED_SINCE_CREATED_S
    )
    if not edited:
        return item_view
    assert item_created is not None
    event = read_event()
    updated = _parse_time((event or {}).get("updated"))
    if event is None or updated is None:
        return item_view
    if (updated - item_created).total_seconds() > CHANGED_SINCE_CREATED_S:
        return {}
    return managed(event)


def maybe_done(exc: BaseException) -> bool:
    """Whether a write that failed may have been made all the same: no answer came (a
    dropped connection, a timeout: Google's status 0, Exchange's transport errors, which
    exchangelib re-raises as ErrorTimeoutExpired / ErrorServerBusy without a back-off).
    An error Google answered (a conflict, 4xx, 5xx, a rate limit) or Exchange's busy with
    a back-off was not made, unless it answered a write sent again after its first
    sending got no answer (`sent_again`: a 409 or 412 may be that first sending's own)."""
    if isinstance(exc, GoogleError):
        return exc.status == 0 or exc.sent_again
    if isinstance(exc, ExchangeError):
        return exc.retryable and not exc.back_off
    return False


def intended(mapped: MappedItem) -> bool:
    """A pair recorded before its event's insert (`Reconciler.intend`): no version agreed
    on either side yet."""
    return mapped.ews_change_key is None and mapped.google_etag is None


def _changed(base: Mapping[str, Any], view: Mapping[str, Any]) -> bool:
    """Whether a side's view changed since the pair's base (its tag aside)."""
    from mapping.event import normalised

    return any(
        normalised(k, view.get(k)) != normalised(k, base.get(k))
        for k in set(view) | set(base)
        if k != "extendedProperties"
    )


def _is_series(item: Any) -> bool:
    """Whether an item a feed reported is a series master (whatever the feed's shape says
    of its exceptions: they are read with the master)."""
    return (
        getattr(item, "type", None) == "RecurringMaster"
        or getattr(item, "recurrence", None) is not None
    )


def _live(event: dict[str, Any] | None) -> bool:
    return event is not None and event.get("status") != "cancelled"


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
