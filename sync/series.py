"""The reconciler's part for series exceptions, both ways, one mapped series at a time
(`Reconciler.reconcile_exceptions` hands a series over to `SeriesExceptions`).

- A Google instance override <-> an EWS modified occurrence (an Exception of the master);
  a cancelled instance <-> a deleted occurrence. The two are one occurrence when they have
  one original start (mapping/exceptions.py): the Google instance is `<master>_<start>`,
  the EWS occurrence is the one at that InstanceIndex of the series as Exchange holds it,
  checked against the OriginalStart Exchange answers.
- Field by field with the user's policy, and the deletion rule, as every pair
  (sync/core/series.py decides; the base travels with the Google instance). An occurrence
  deleted in Exchange cannot come back there (EWS has no way to restore one), so that
  deletion always wins; one cancelled in Google is deleted in Exchange unless
  `modified_beats_delete` keeps an Exchange edit, which then brings the instance back.
- Every write is conditioned on the version read (the occurrence's ChangeKey, the
  instance's etag); a concurrent change means read again and decide again. Nothing sends
  an invitation (SendToNone, sendUpdates=none).

Which occurrences are looked at: every exception Exchange holds for the series, and the
ones the caller names (the instances Google's feed reported changed).

Recorded for `calsync undo`: field writes on either side (patches). A deleted occurrence
is not: EWS cannot restore one, and undo would bring it back as an event of its own.

https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-modify-appointments-and-meetings-by-using-ews-in-exchange
https://developers.google.com/workspace/calendar/api/guides/recurringevents
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from ews_parser.errors import CalsyncError
from mapping.errors import MappingError
from sync.backends.base import BackendError, ExchangeConflict, GoogleError, differs
from sync.core.decide import deletion_wins
from sync.core.events import ONE_WAY_FIELDS, google_body, managed, short
from sync.core.series import (
    EXCEPTION_FIELDS,
    Agreed,
    agreed_of,
    changed,
    merge_occurrence,
    with_agreed,
)

if TYPE_CHECKING:
    from exchangelib.items import CalendarItem

    from mapping.exceptions import OriginalStart
    from sync.backends.base import ExchangeBackend, GoogleBackend
    from sync.config import UserConfig
    from sync.reconcile import Reconciler, RunContext

log = logging.getLogger("calsync.series")

#: How many times one occurrence is read again after a concurrent change.
RETRIES: Final = 3
#: to_ews keys that belong to the series, never to one occurrence.
_SERIES_ONLY: Final = frozenset({"recurrence", "uid", "is_cancelled"})


class KeptChanging(CalsyncError):
    """An occurrence kept changing on both sides while it was merged: the next run tries
    again."""

    retryable = True


class _NoSuchOccurrence:
    """The two sides' series do not share this occurrence: nothing to do with it."""


_NO_SUCH: Final = _NoSuchOccurrence()


@dataclass(frozen=True, slots=True)
class _Series:
    user: UserConfig
    google: GoogleBackend
    exchange: ExchangeBackend
    run: RunContext
    master_item_id: str
    master_event_id: str
    #: each master in Google's shape: Exchange's mapped (google_body), Google's as read
    exchange_master: dict[str, Any]
    google_master: dict[str, Any]
    all_day: bool
    #: the series' zone in Exchange: an all-day occurrence's OriginalStart is its midnight
    zone: dt.tzinfo
    #: Exchange's exceptions as the master listed them: original start -> the occurrence's
    #: own (ItemId, ChangeKey); the deleted ones
    modified: dict[Any, tuple[str, str | None]]
    deleted: frozenset[Any]
    #: what this reconciliation wrote to Exchange: original start -> the exception's new
    #: (ItemId, ChangeKey), None for an occurrence deleted
    written: dict[Any, tuple[str, str] | None]

    def original_start(self, value: dt.date) -> OriginalStart:
        """An EWS OriginalStart (or DeletedOccurrence Start) as an original start."""
        from mapping.exceptions import ews_original_start

        return ews_original_start(value, all_day=self.all_day, zone=self.zone)


class SeriesExceptions:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.store = reconciler.store

    def reconcile(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        ews_item_id: str,
        run: RunContext,
        instances: Iterable[Mapping[str, Any]] = (),
    ) -> int:
        """Bring the exceptions of one mapped series into agreement; how many writes it
        took. A series not mapped, or not a series on both sides, is left alone.

        When it fails, the pair stops holding the master's version: the pair took it when
        the master was carried, before its exceptions, and holding it, the feed's next
        listing of the master (kept where it was for a retry, or a full one) would read as
        carried already, and the exceptions would never be tried again."""
        with self._uncarried_if_it_fails(user.mailbox, ews_item_id):
            from mapping.exceptions import read_original_start
            from mapping.zones import item_zone

            mapped = self.store.mapped(user.mailbox, ews_item_id)
            if mapped is None:
                return 0
            master = exchange.calendar_item(ews_item_id)
            if master is None or getattr(master, "type", None) != "RecurringMaster":
                return 0
            google_master = google.get(mapped.google_event_id)
            if google_master is None or google_master.get("status") == "cancelled":
                return 0
            if not google_master.get("recurrence"):
                return 0
            exchange_master = google_body(master)
            all_day = bool(exchange_master["start"].get("date"))
            series = _Series(
                user,
                google,
                exchange,
                run,
                ews_item_id,
                mapped.google_event_id,
                exchange_master,
                google_master,
                all_day,
                item_zone(master._start_timezone, None),
                {},
                frozenset(),
                {},
            )
            modified, deleted = _exceptions_of(series, master)
            series = replace(series, modified=modified, deleted=frozenset(deleted))
            named = set()
            for instance in instances:
                if instance.get("recurringEventId") != mapped.google_event_id:
                    continue
                try:
                    original = instance.get("originalStartTime")
                    named.add(read_original_start(original, all_day=all_day))
                except MappingError as exc:
                    log.info(
                        "%s: instance %s skipped: %s", user.mailbox, instance.get("id"), exc
                    )
            written = 0
            refused: BackendError | None = None
            for start in sorted({*modified, *deleted, *named}, key=lambda s: s.isoformat()):
                try:
                    written += self._occurrence(series, start)
                except BackendError as exc:
                    if exc.retryable:
                        raise
                    # refused as it is (an occurrence moved past its neighbour, say): the
                    # others still go; the caller learns of it once they have
                    refused = refused or exc
                    self._log(series, "occurrence refused", start, exc)
            if series.written:
                self._journal_master(series)
            if refused is not None:
                raise refused
            return written

    @contextmanager
    def _uncarried_if_it_fails(self, mailbox: str, ews_item_id: str) -> Iterator[None]:
        """On a failure, the pair stops holding the master's version (see `reconcile`)."""
        try:
            yield
        except Exception:
            mapped = self.store.mapped(mailbox, ews_item_id)
            if mapped is not None and mapped.ews_change_key is not None:
                self.store.save_mapping(
                    replace(mapped, ews_change_key=None), now=self.reconciler.clock()
                )
            raise

    def _journal_master(self, series: _Series) -> None:
        """Writing an occurrence gives its master a new ChangeKey: journal it as ours, so the
        Exchange feed does not bring the series back, and record it as the version this run
        left the master at (a write with no fields: `calsync undo` checks the run's earlier
        writes of the master against it, and has nothing of the master's own to put back),
        but only when the master shows nothing but our writes (its fields, and every other
        exception, as read before)."""
        master = series.exchange.calendar_item(series.master_item_id)
        if master is None or google_body(master) != series.exchange_master:
            return
        expected = {**series.modified, **series.written}
        modified, deleted = _exceptions_of(series, master)
        if modified != {s: w for s, w in expected.items() if w is not None}:
            return
        if deleted != series.deleted | {s for s, w in expected.items() if w is None}:
            return
        self.store.journal(
            series.user.mailbox,
            "exchange",
            series.master_item_id,
            master.changekey,
            None,
            now=self.reconciler.clock(),
        )
        mapped = self.store.mapped(series.user.mailbox, series.master_item_id)
        if mapped is not None and mapped.snapshot:
            self.reconciler.record(
                series.run,
                "exchange",
                "patch",
                series.master_item_id,
                other_key=series.master_event_id,
                version=master.changekey,
                before=mapped.snapshot,
                fields={},
            )

    def _occurrence(self, series: _Series, start: OriginalStart) -> int:
        for _ in range(RETRIES):
            try:
                return self._settle(series, start)
            except ExchangeConflict:
                continue  # the occurrence changed while we decided: read again
            except GoogleError as exc:
                if exc.status != 412:
                    raise
        raise KeptChanging(
            f"an occurrence of {short(series.master_item_id)} ({start.isoformat()}) kept "
            "changing on both sides; will try again"
        )

    def _settle(self, series: _Series, start: OriginalStart) -> int:
        """One occurrence: read both sides, decide, write what each lacks."""
        from mapping.exceptions import instance_id, occurrence_of

        user, google = series.user, series.google
        event_id = instance_id(series.master_event_id, start)
        instance = google.get(event_id)
        if instance is None:
            log.info(
                "%s: %s has no occurrence at %s in Google: left alone",
                user.mailbox,
                series.master_event_id,
                start.isoformat(),
            )
            return 0
        occurrence = self._exchange_occurrence(series, start)
        if isinstance(occurrence, _NoSuchOccurrence):
            return 0
        cancelled = instance.get("status") == "cancelled"
        if occurrence is None:  # deleted in Exchange: that deletion stands
            if not cancel_instance(google, event_id, instance):
                return 0
            self._log(series, "cancel Google instance", start, "deleted in Exchange")
            return 1
        exchange_view = _view(google_body(occurrence))
        agreed = agreed_of(instance)
        exchange_changed = changed(
            exchange_view,
            agreed=agreed.exchange if agreed else None,
            plain=exchange_view
            if occurrence.type == "Occurrence"
            else occurrence_of(series.exchange_master, start),
        )
        if cancelled:
            return self._cancelled_in_google(
                series, start, event_id, instance, occurrence, exchange_view, exchange_changed
            )
        google_view = _view(managed(instance))
        google_changed = changed(
            google_view,
            agreed=agreed.google if agreed else None,
            plain=occurrence_of(series.google_master, start),
        )
        result = merge_occurrence(
            exchange_view,
            google_view,
            exchange_changed=exchange_changed,
            google_changed=google_changed,
            policy=self.reconciler.policy(user),
            exchange_updated=getattr(occurrence, "last_modified_time", None),
            google_updated=_parse_time(instance.get("updated")),
        )
        for conflict in result.conflicts:
            series.run.conflicts += 1
            self.store.record_conflict(
                user.mailbox,
                str(occurrence.id),
                event_id,
                conflict.field,
                conflict.winner,
                conflict.reason,
                now=self.reconciler.clock(),
            )
        writes = 0
        to_exchange = {k: v for k, v in result.to_exchange.items() if k not in ONE_WAY_FIELDS}
        if to_exchange:
            written = self._write_exchange(series, event_id, occurrence, exchange_view, to_exchange)
            if written is not None:
                writes += 1
                self._log(series, "update Exchange occurrence", start, sorted(to_exchange))
                exchange_view = written
        new_google = {**google_view, **result.to_google}
        now_agreed = Agreed.of(exchange_view, new_google)
        nothing_to_remember = now_agreed == agreed or (
            agreed is None and not writes and not exchange_changed
        )  # agreed already, or both still what the series gives
        if not result.to_google and nothing_to_remember:
            return writes
        body = with_agreed(result.to_google, now_agreed)
        # recorded for undo when it changes the instance (not when it only remembers)
        before = managed(instance) if result.to_google else None
        patched = self._patch_instance(series, event_id, instance, body, occurrence, before)
        if result.to_google:
            writes += 1
            self._log(series, "update Google instance", start, sorted(result.to_google))
            shown = Agreed.of(exchange_view, _view(managed(patched)))
            if shown != now_agreed:  # Google spelled a value its own way: remember that
                body = with_agreed({}, shown)
                self._patch_instance(series, event_id, patched, body, occurrence, None)
        return writes

    def _cancelled_in_google(
        self,
        series: _Series,
        start: OriginalStart,
        event_id: str,
        instance: dict[str, Any],
        occurrence: CalendarItem,
        exchange_view: dict[str, Any],
        exchange_changed: frozenset[str],
    ) -> int:
        """The deletion rule for an occurrence cancelled in Google and live in Exchange."""
        if deletion_wins(
            deleted_on="google",
            other_changed=bool(exchange_changed),
            modified_beats_delete=self.reconciler.config.sync.modified_beats_delete,
        ):
            series.exchange.delete_occurrence(occurrence)
            series.written[start] = None
            self._log(series, "delete Exchange occurrence", start, "cancelled in Google")
            return 1
        # the Exchange edit survives: the instance comes back with it
        body = {name: exchange_view.get(name) for name in EXCEPTION_FIELDS}
        body = with_agreed({**body, "status": "confirmed"}, Agreed.of(exchange_view, body))
        before = {**managed(instance), "status": "cancelled"}
        self._patch_instance(series, event_id, instance, body, occurrence, before)
        self._log(series, "restore Google instance", start, "edited in Exchange")
        return 1

    def _exchange_occurrence(
        self, series: _Series, start: OriginalStart
    ) -> CalendarItem | _NoSuchOccurrence | None:
        """Exchange's occurrence at `start`: its exception or its plain occurrence, None
        when it was deleted from the series, _NO_SUCH when Exchange's series has none."""
        from mapping.exceptions import occurrence_index

        if start in series.deleted:
            return None
        known = series.modified.get(start)
        if known is not None:
            found = series.exchange.calendar_item(known[0])
            if found is not None:
                return found
        index = occurrence_index(series.exchange_master, start)
        occurrence = (
            series.exchange.occurrence(series.master_item_id, index) if index is not None else None
        )
        original = getattr(occurrence, "original_start", None)
        if original is not None and series.original_start(original) == start:
            return occurrence
        # none there, or deleted since the master was read: the next run sees which
        self._log(series, "no Exchange occurrence", start, "left alone")
        return _NO_SUCH

    def _write_exchange(
        self,
        series: _Series,
        event_id: str,
        occurrence: CalendarItem,
        exchange_view: dict[str, Any],
        fields: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        """UpdateItem (conditioned on its ChangeKey) of the occurrence's EWS fields whose
        mapped value `fields` change (None: removed); the occurrence as Exchange now shows
        it, None when nothing differed."""
        from mapping.event import to_ews

        before = google_body(occurrence)
        desired = {k: v for k, v in before.items() if k not in fields}
        desired.update({k: v for k, v in fields.items() if v is not None})
        target = to_ews(desired)
        current = to_ews(before)
        values = {
            k: v
            for k, v in target.items()
            if k not in _SERIES_ONLY and differs(v, current.get(k))
        }
        written = series.exchange.update(occurrence, values) if values else None
        if written is None:
            return None
        item_id, change_key = written
        series.written[series.original_start(occurrence.original_start)] = written
        self.reconciler.record(
            series.run,
            "exchange",
            "patch",
            item_id,
            other_key=event_id,
            version=change_key,
            before=before,
            fields={name: True for name in values},
        )
        now = series.exchange.calendar_item(item_id)
        return _view(google_body(now)) if now is not None else _view(desired)

    def _patch_instance(
        self,
        series: _Series,
        event_id: str,
        instance: Mapping[str, Any],
        body: dict[str, Any],
        occurrence: CalendarItem,
        before: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """events.patch of the instance, If-Match the version read; journaled as ours (the
        Google feed skips it as an echo), and recorded for undo when `before` is given."""
        patched = series.google.patch(event_id, body, etag=instance.get("etag"))
        now = self.reconciler.clock()
        self.store.journal(
            series.user.mailbox, "google", event_id, patched.get("etag"), None, now=now
        )
        if before is not None:
            self.reconciler.record(
                series.run,
                "google",
                "patch",
                event_id,
                other_key=str(occurrence.id),
                version=patched.get("etag"),
                before=before,
                fields=body,
            )
        return patched

    def _log(self, series: _Series, what: str, start: OriginalStart, why: object) -> None:
        log.info(
            "%s %s of %s at %s (%s)",
            series.user.mailbox,
            what,
            short(series.master_item_id),
            start.isoformat(),
            why,
        )


def cancel_instance(
    google: GoogleBackend, event_id: str, instance: Mapping[str, Any] | None = None
) -> bool:
    """Cancel the Google instance `event_id` (an occurrence deleted in Exchange), If-Match
    the version read (`instance`, else read here); False when there was none to cancel
    (not an occurrence of the series as Google expands it, or cancelled already)."""
    if instance is None:
        instance = google.get(event_id)
    if instance is None or instance.get("status") == "cancelled":
        return False
    try:
        google.delete(event_id, etag=instance.get("etag"))
    except GoogleError as exc:
        if exc.status not in (404, 410):
            raise
    return True


def _exceptions_of(
    series: _Series, master: CalendarItem
) -> tuple[dict[Any, tuple[str, str | None]], set[Any]]:
    """A master's exceptions by original start: modified (the occurrence's own ItemId and
    ChangeKey) and deleted."""
    modified = {
        series.original_start(o.original_start): (str(o.id), o.changekey)
        for o in master.modified_occurrences or ()
        if o.original_start is not None and o.id
    }
    deleted = {
        series.original_start(d.start) for d in master.deleted_occurrences or () if d.start
    }
    return modified, deleted


def _view(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: event[k] for k in EXCEPTION_FIELDS if k in event}


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
