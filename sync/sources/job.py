"""The periodic two-way job, per user: the Exchange change feed, then Google's.

1. Exchange: SyncFolderItems on the calendar from the stored SyncState catches what never
   passed the proxy (web mail, phones, Windows Outlook over MAPI/HTTP, server-side meeting
   processing). The proxy stays the fast path; this makes the result complete.
2. Google: events.list with the stored sync token (the first run lists a window in full;
   410 drops the token and lists in full again). Each page's changes are applied before its
   nextSyncToken is stored.

The job orchestrates; it writes nothing itself. Each changed item or event becomes a
change notice (sync/core/notice.py, the feed's item or event its hint) for the one
reconciler (sync/reconcile.py): `Reconciler.plan` says what each calls for (an echo of
calsync's own write or a version the pair holds already is skipped; new ones are created
on the other side; changed ones are merged three-way, the policy settling conflicts;
deletions follow the deletion rule), the plan is checked against the safety rule, and only
then `Reconciler.apply_many` applies it; `dry_run` stops after planning (its plan reads
each pair's other side, so it says what the merge and the deletion rule make of it). The
job keeps the feeds' cursors, the back-off and the quarantine.

Every write a run makes is recorded with what it replaced (the store's `runs` and
`run_writes`), so that `calsync undo USER` can put the last run's writes back.

Beside the feeds: on a user's first run, then every `[sync] verify_interval_s`, the job asks
Exchange which mapped items still exist and deletes the Google events of the gone ones
(the feed cannot report an item created and deleted after its stored state); after each
run, quarantined outbox entries whose change the job has carried leave the quarantine, and
a run without errors turns the user's current error into a past one.

A series' exceptions ride with it: once a feed's masters are settled, the reconciler's
series entry point (`Reconciler.apply_series`) brings the exceptions of each series whose
master Exchange reported changed, or whose instances Google reported changed, into
agreement (sync/series.py). A dry run plans the
masters only: what an occurrence needs is known once both sides are read.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ews_parser.errors import CalsyncError
from sync.backends.base import (
    EventsPage,
    ExchangeBackend,
    ExchangeError,
    GoogleBackend,
    GoogleError,
    ItemChange,
    VersionConflict,
)
from sync.backends.clients import Clients
from sync.config import Config, UserConfig
from sync.core.decide import Action, StateEmpty, check_safety
from sync.core.events import short as _short
from sync.core.notice import ChangeNotice, Kind
from sync.reconcile import Reconciler, RunContext
from sync.store import OutboxEntry, Store

if TYPE_CHECKING:
    from mapping.event import GoogleEvent

log = logging.getLogger("calsync.job")


def _nothing(count: int) -> None:
    pass


@contextmanager
def progress_bar(
    enabled: bool, description: str, total: int | None = None
) -> Iterator[Callable[[int], None]]:
    """`advance(n)` for a long piece of work: a rich progress bar on stderr when `enabled`
    (the command's stderr is a terminal), else nothing, so that logs and pipes get only
    the lines they always got. The bar is transient: it leaves no trace once done."""
    if not enabled:
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda count: bar.advance(task, count)


@dataclass(slots=True)
class Report:
    mailbox: str
    #: this run's own context: where its writes are recorded (never on the shared job)
    run: RunContext = field(default_factory=lambda: RunContext("", None, created_in_exchange=[]))
    actions: list[Action] = field(default_factory=list)
    applied: int = 0
    echoes: int = 0
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None
    #: a retryable error met in the Exchange feed: its SyncState is not advanced
    retry_exchange_feed: bool = False
    #: ... in the Google feed: its sync token is not stored
    retry_google_feed: bool = False
    #: changes that cannot be applied as they are, quarantined by this run (their
    #: errors are in `errors` too)
    quarantined: list[str] = field(default_factory=list)
    #: a server asked calsync to wait: the user's next run is not before then
    backing_off_until: float | None = None

    @property
    def created_in_exchange(self) -> list[str]:
        """Items the Google feed created in Exchange in this run."""
        return self.run.created_in_exchange or []

    def summary(self) -> str:
        state = f"stopped: {self.stopped}" if self.stopped else "ok"
        if self.backing_off_until is not None:
            until = dt.datetime.fromtimestamp(self.backing_off_until).strftime("%H:%M:%S")
            state = f"backing off until {until}"
        held = f", {len(self.quarantined)} quarantined" if self.quarantined else ""
        return (
            f"{self.mailbox}: {len(self.actions)} planned, {self.applied} applied, "
            f"{self.echoes} echoes ignored, {self.conflicts} conflicts, "
            f"{len(self.errors)} errors{held} ({state})"
        )


class SyncJob:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        clients: Clients | None = None,
        progress: bool = False,
    ) -> None:
        self.config = config
        #: progress bars for a first (full) sync: the `calsync sync` command on a terminal
        self.progress = progress
        self.store = store
        self.clock = clock
        #: the process's one client cache (shared with the worker and push)
        self.client_cache = clients or Clients(config)
        #: every write goes through the one reconciler (sync/reconcile.py); what a run
        #: needs travels in its own RunContext, so overlapping runs never mix
        self.reconciler = Reconciler(config, store, clock=clock)
        #: per user, when every mapped item was last confirmed in Exchange (`_verify_pairs`)
        self._verified_at: dict[str, float] = {}
        #: per user, when a server lets calsync call again (`BackOff`)
        self._not_before: dict[str, float] = {}

    def clients(self, user: UserConfig) -> tuple[Any, Any]:
        return self.client_cache.google(user), self.client_cache.exchange(user)

    def run(
        self,
        users: Sequence[UserConfig] | None = None,
        *,
        dry_run: bool = False,
        force_deletes: bool = False,
    ) -> list[Report]:
        return [
            self.run_user(user, dry_run=dry_run, force_deletes=force_deletes)
            for user in (users if users is not None else self.config.users)
        ]

    def run_user(
        self, user: UserConfig, *, dry_run: bool = False, force_deletes: bool = False
    ) -> Report:
        until = self._not_before.get(user.mailbox)
        if until is not None and self.clock() < until:
            # Exchange's BackOffMilliseconds or Google's Retry-After: this user waits, the
            # others run (nothing sleeps inside a run)
            waiting = Report(user.mailbox, run=RunContext(user.mailbox, None))
            waiting.backing_off_until = until
            log.info("%s: backing off for %.0f s more", user.mailbox, until - self.clock())
            return waiting
        report = Report(user.mailbox, run=self.reconciler.begin(user.mailbox, recorded=not dry_run))
        completed = False
        try:
            google, exchange = self.clients(user)
            if user.mirrors_to_google:
                self._verify_pairs(user, google, exchange, report, dry_run, force_deletes)
                self._exchange_feed(user, google, exchange, report, dry_run, force_deletes)
            if user.direction in ("both", "google-to-exchange"):
                self._google_feed(user, google, exchange, report, dry_run, force_deletes)
                if report.created_in_exchange and user.mirrors_to_google:
                    # The items just created in Exchange are newer than the SyncState the
                    # Exchange feed stored: one the user deletes before the next run would
                    # never show in the feed (SyncFolderItems reports nothing for an item
                    # created and deleted since the state), and its Google event would
                    # stay. Read the feed past them now, and treat one that is no longer
                    # there as deleted.
                    self._exchange_feed(
                        user,
                        google,
                        exchange,
                        report,
                        dry_run,
                        force_deletes,
                        ours=set(report.created_in_exchange),
                    )
            completed = True
        except BackOff as exc:  # a change met it: its error is in the report already
            self._back_off(user, report, exc.seconds)
        except StateEmpty as exc:
            report.stopped = str(exc)
            log.warning("%s", exc)
        except (GoogleError, CalsyncError) as exc:
            report.errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("%s: sync run failed: %s", user.mailbox, exc)
            if not dry_run:
                self.store.record_error(user.mailbox, str(exc), now=self.clock())
            wait = requested_wait(exc)
            if wait is not None:
                self._back_off(user, report, wait)
        finally:
            self.reconciler.finish(report.run)
            report.conflicts = report.run.conflicts
        if completed and not dry_run:
            if not report.errors:
                self.store.clear_error(user.mailbox, now=self.clock())
            self._heal_quarantine(user)
        return report

    def _back_off(self, user: UserConfig, report: Report, seconds: float) -> None:
        """Schedule the user's next run `seconds` from now, as the server asked."""
        until = self.clock() + seconds
        self._not_before[user.mailbox] = max(until, self._not_before.get(user.mailbox, 0.0))
        report.backing_off_until = self._not_before[user.mailbox]
        log.info("%s: asked to back off %g s: next run not before then", user.mailbox, seconds)

    # --- pairs whose Exchange item is gone ----------------------------------------------

    def _verify_pairs(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        report: Report,
        dry_run: bool,
        force_deletes: bool,
    ) -> None:
        """Settle the mapped pairs whose Exchange item no longer exists (their Google
        events go, by the deletion rule). The feed cannot report them all: SyncFolderItems
        says nothing of an item created and deleted after its stored state (a delete the
        proxy never recorded, lost in a kill). On a user's first run of this job, then
        every `[sync] verify_interval_s`, Exchange is asked which mapped items still
        exist; the plan goes through the same safety rule as every deletion."""
        now = self.clock()
        last = self._verified_at.get(user.mailbox)
        if last is not None and now - last < self.config.sync.verify_interval_s:
            return
        pairs = self.store.mapped_ids(user.mailbox)
        try:
            gone = exchange.missing(list(pairs))
        except ExchangeError as exc:
            # "unknown", never "gone": nothing is deleted, the feeds still run (unless
            # Exchange asked us to wait), and the question is asked again next run
            report.errors.append(f"verify: {exc}")
            wait = requested_wait(exc)
            if wait is not None:
                raise BackOff(wait, exc) from exc
            log.warning("%s: mapped items not verified: %s", user.mailbox, exc)
            return
        notices = [
            ChangeNotice(user.mailbox, "exchange", item_id, None, "delete", "verify")
            for item_id in sorted(pairs)
            if item_id in gone
        ]
        planned = self._plan(user, google, exchange, notices, report, dry_run, force_deletes)
        if dry_run:
            return
        failed = False
        for notice, action, result in self.reconciler.apply_many(
            planned, report.run, user=user, google=google, exchange=exchange
        ):
            if isinstance(result, CalsyncError):
                report.errors.append(f"{action.kind} {_short(notice.key)}: {result}")
                failed = True
            else:
                report.applied += 1
        if not failed:  # else asked again next run
            self._verified_at[user.mailbox] = now

    # --- quarantine that heals -----------------------------------------------------------

    def _heal_quarantine(self, user: UserConfig) -> None:
        """Drop the user's quarantined entries whose change this job has since carried
        (`carried`): the quarantine then shows only what still needs a look. A lookup
        that fails leaves every entry as it is, for the next run."""
        from mapping.event import event_id_for

        entries = self.store.quarantined(user.mailbox)
        if not entries:
            return
        google, exchange = self.clients(user)
        try:
            mapped = {
                e.ews_item_id for e in entries if self.store.is_mapped(user.mailbox, e.ews_item_id)
            }
            # a Google change refused before its event had an item is keyed by the event
            events = {e.ews_item_id for e in entries if e.op == GOOGLE_CHANGE} - mapped
            unmapped_changes = sorted(
                {e.ews_item_id for e in entries if e.op != "delete"} - mapped - events
            )
            gone = exchange.missing(unmapped_changes) if unmapped_changes else set()
            for entry in entries:
                item_id = entry.ews_item_id
                if item_id in mapped:
                    healed = carried(
                        entry, reconciled_at=self.store.reconciled_at(user.mailbox, item_id)
                    )
                elif item_id in events:
                    # created since (the pair exists), or the event is gone
                    healed = self.store.mapped_by_google(
                        user.mailbox, item_id
                    ) is not None or not _live(google.get(item_id))
                elif entry.op == "delete" or item_id in gone:
                    # nothing on either side, if Google has no live event for the item
                    healed = not _live(google.get(event_id_for(item_id)))
                else:
                    healed = False
                if healed and self.store.heal(entry.id):
                    log.info(
                        "%s: quarantined entry %d (%s %s) healed: the sync job carried it",
                        user.mailbox,
                        entry.id,
                        entry.op,
                        _short(item_id),
                    )
        except (GoogleError, CalsyncError) as exc:
            log.warning("%s: quarantine not checked: %s", user.mailbox, exc)

    # --- Exchange -> Google ----------------------------------------------------------------

    def _exchange_feed(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        report: Report,
        dry_run: bool,
        force_deletes: bool,
        ours: set[str] | None = None,
    ) -> None:
        state = self.store.sync_state(user.mailbox).get("ews_sync_state")
        changes, new_state = exchange.changes(state)
        # created by this run and gone before the feed could show them: deleted; and a
        # full read (no state: a first run, or one whose read was held back by an error)
        # lists every item of the calendar, so a mapped item it does not list is gone
        gone = set(ours or ())
        if state is None:
            gone |= set(self.store.mapped_ids(user.mailbox))
        if gone:
            seen = {c.item_id for c in changes}
            changes = changes + [ItemChange("delete", i, None) for i in sorted(gone - seen)]
        notices = [exchange_notice(user.mailbox, change) for change in changes]
        planned = self._plan(user, google, exchange, notices, report, dry_run, force_deletes)
        if dry_run:
            return
        todo = [(n, a) for n, a in planned if a.kind not in ("echo", "skip")]
        with progress_bar(
            self.progress and state is None and bool(todo),
            f"{user.mailbox}: Exchange -> Google",
            len(todo),
        ) as advance:
            self._apply(user, google, exchange, todo, report, advance)
        for notice, _ in todo:
            if notice.kind != "delete":  # a series' exceptions ride with its master
                self._series(user, google, exchange, notice, report)
        if report.retry_exchange_feed:
            # the feed moves on only once what it carried is done: a change that failed
            # for a while (an outage, a rate limit) comes again next run; replaying the
            # rest is harmless (deterministic event ids, three-way merges, tombstones)
            log.info("%s: Exchange feed kept where it was; retried next run", user.mailbox)
            return
        self.store.save_sync_state(
            user.mailbox, ews_sync_state=new_state, last_exchange_sync=self.clock()
        )

    # --- Google -> Exchange ----------------------------------------------------------------

    def _google_feed(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        report: Report,
        dry_run: bool,
        force_deletes: bool,
    ) -> None:
        token = self.store.sync_state(user.mailbox).get("google_sync_token")
        try:
            self._google_pages(user, google, exchange, report, token, dry_run, force_deletes)
        except GoogleError as exc:
            if exc.status != 410:
                raise
            # "This should trigger a full wipe of the client's store and a new full sync":
            # the id map stays (it is what makes the full sync create no duplicates).
            log.info("%s: Google sync token expired (410); listing in full", user.mailbox)
            self._google_pages(user, google, exchange, report, None, dry_run, force_deletes)

    def _google_pages(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        report: Report,
        token: str | None,
        dry_run: bool,
        force_deletes: bool,
    ) -> None:
        time_min = None
        if token is None:
            start = dt.datetime.fromtimestamp(self.clock(), dt.UTC) - dt.timedelta(
                days=self.config.sync.window_days
            )
            time_min = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        full = self.progress and token is None
        pages: list[EventsPage] = []
        with progress_bar(full, f"{user.mailbox}: listing Google") as advance:
            for page in google.list_pages(sync_token=token, time_min=time_min):
                pages.append(page)
                advance(len(page.get("items", [])))
        events = [e for page in pages for e in page.get("items", [])]
        notices = [google_notice(user.mailbox, event) for event in events]
        if token is None:
            notices += self._unlisted(user, google, events)
        full_count = (
            len([e for e in events if e.get("status") != "cancelled"]) if token is None else None
        )
        planned = self._plan(
            user, google, exchange, notices, report, dry_run, force_deletes, google_count=full_count
        )
        if dry_run:
            return
        todo = [(n, a) for n, a in planned if a.kind not in ("echo", "skip")]
        with progress_bar(
            full and bool(todo), f"{user.mailbox}: Google -> Exchange", len(todo)
        ) as advance:
            self._apply(user, google, exchange, todo, report, advance)
        self._google_exceptions(user, google, exchange, notices, report)
        next_token = pages[-1].get("nextSyncToken") if pages else None
        # a change that cannot be applied is quarantined and never holds the others back;
        # one that failed for a while (an outage, a rate limit) comes again next run
        if next_token and not report.retry_google_feed:
            self.store.save_sync_state(
                user.mailbox, google_sync_token=next_token, last_google_sync=self.clock()
            )

    def _unlisted(
        self, user: UserConfig, google: GoogleBackend, events: Sequence[GoogleEvent]
    ) -> list[ChangeNotice]:
        """The deletions a full listing cannot show. Without showDeleted it leaves deleted
        events out (and an incremental listing shows each deletion once, to the run that
        stores its token: one that failed, or a first listing, never saw it), so a mapped
        pair whose event it did not list is asked for (batched gets): one Google answers
        with a cancelled tombstone, 410 or 404 is a deletion. One outside the listed
        window is live, and left alone; one Google did not answer for is asked again at
        the next full listing."""
        listed = {e.get("id") for e in events}
        unlisted = sorted(set(self.store.mapped_ids(user.mailbox).values()) - listed)
        if not unlisted:
            return []
        notices = []
        for event_id, answer in zip(unlisted, google.get_many(unlisted), strict=True):
            if isinstance(answer, GoogleError):
                if answer.status != 410:
                    continue
                answer = None
            if answer is None or answer.get("status") == "cancelled":
                notices.append(
                    ChangeNotice(
                        user.mailbox,
                        "google",
                        event_id,
                        None,
                        "delete",
                        "google-feed",
                        event=answer,
                    )
                )
        return notices

    # --- planned, then handed to the reconciler -----------------------------------------------

    def _plan(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        notices: Sequence[ChangeNotice],
        report: Report,
        dry_run: bool,
        force_deletes: bool,
        *,
        google_count: int | None = None,
    ) -> list[tuple[ChangeNotice, Action]]:
        """The reconciler's plan for each notice, checked against the safety rule before
        anything is written. A dry run's plan reads each pair's other side (what the merge
        and the deletion rule make of it); a run's plan reads nothing more, and the
        reconciler decides those as it writes."""
        planned = [
            (
                notice,
                self.reconciler.plan(
                    notice,
                    user=user,
                    google=google if dry_run else None,
                    exchange=exchange if dry_run else None,
                ),
            )
            for notice in notices
        ]
        actions = [a for _, a in planned if a.kind not in ("echo", "skip")]
        report.echoes += sum(1 for _, a in planned if a.kind == "echo")
        self._check(user, actions, google=google_count, force_deletes=force_deletes)
        report.actions.extend(actions)
        return planned

    def _apply(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        planned: Sequence[tuple[ChangeNotice, Action]],
        report: Report,
        advance: Callable[[int], None] = _nothing,
    ) -> None:
        """Hand a feed's planned notices to the reconciler; a failed one is retried or
        quarantined (`_failed`), the others go on, unless a server asked us to wait."""
        for notice, action, result in self.reconciler.apply_many(
            planned, report.run, user=user, google=google, exchange=exchange, progress=advance
        ):
            if isinstance(result, CalsyncError):
                self._failed(user, report, action.kind, notice, result, key=action.ews_item_id)
            else:
                report.applied += 1

    # --- series exceptions -------------------------------------------------------------------

    def _google_exceptions(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        notices: Sequence[ChangeNotice],
        report: Report,
    ) -> None:
        """The instances Google reported, carried series by series."""
        series: dict[str, list[ChangeNotice]] = {}
        for notice in notices:
            master_id = (notice.event or {}).get("recurringEventId")
            if master_id:
                series.setdefault(master_id, []).append(notice)
        for master_id, instances in series.items():
            master = ChangeNotice(user.mailbox, "google", master_id, None, "refresh", "google-feed")
            action = self.reconciler.plan(master, user=user)
            if action.kind != "skip":
                self._series(
                    user, google, exchange, master, report, instances, key=action.ews_item_id
                )

    def _series(
        self,
        user: UserConfig,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        master: ChangeNotice,
        report: Report,
        instances: Sequence[ChangeNotice] = (),
        *,
        key: str | None = None,
    ) -> None:
        """The reconciler's agreement on one series' exceptions; a failure is the change's,
        as any other (retried, or quarantined with its reason)."""
        try:
            if self.reconciler.apply_series(
                master, report.run, user=user, google=google, exchange=exchange, instances=instances
            ):
                report.applied += 1
        except CalsyncError as exc:
            self._failed(
                user, report, "exceptions", instances[0] if instances else master, exc, key=key
            )

    # --- changes that fail -------------------------------------------------------------------

    def _failed(
        self,
        user: UserConfig,
        report: Report,
        kind: str,
        notice: ChangeNotice,
        exc: CalsyncError,
        *,
        key: str | None = None,
    ) -> None:
        """One change of a feed failed. One that may apply later as it is (an outage, a
        rate limit, a version conflict) keeps the feed where it was: the next run meets
        it again. One refused as it is (Google's 400, an Exchange ResponseCode, a value
        the mapping cannot carry) is quarantined with its reason and the feed moves on: it
        is tried again when it changes again (or a full listing brings it back). The
        quarantine keys it by its Exchange item (`key`; else the notice's own key)."""
        label = _short(notice.key) if notice.side == "exchange" else notice.key
        report.errors.append(f"{kind} {label}: {exc}")
        op = EXCHANGE_CHANGE if notice.side == "exchange" else GOOGLE_CHANGE
        if retryable(exc):
            if op == EXCHANGE_CHANGE:
                report.retry_exchange_feed = True
            else:
                report.retry_google_feed = True
            wait = requested_wait(exc)
            if wait is not None:  # the user's run stops here: no call until then
                raise BackOff(wait, exc) from exc
            return
        self._quarantine(user, op, key or notice.key, notice.version, f"{kind}: {exc}")
        report.quarantined.append(f"{kind} {label}")

    def _quarantine(
        self, user: UserConfig, op: str, key: str, version: str | None, reason: str
    ) -> None:
        """Record a change that cannot be applied in the outbox's quarantine (`calsync
        status`, `calsync explain`), keyed by its Exchange item id (an event with no item
        yet: its Google event id), replacing the key's earlier entry of the same feed."""
        now = self.clock()
        with self.store.transaction():
            for entry in self.store.quarantined(user.mailbox):
                if entry.ews_item_id == key and entry.op == op:
                    self.store.heal(entry.id)
            entry_id = self.store.enqueue(user.mailbox, key, op, now=now, change_key=version)
            self.store.retry_later(entry_id, error=reason[:500], at=now, quarantine=True)
        log.warning("%s: %s %s quarantined: %s", user.mailbox, op, _short(key), reason)

    def _check(
        self, user: UserConfig, actions: list[Action], *, google: int | None, force_deletes: bool
    ) -> None:
        if force_deletes:
            return
        deletions = sum(1 for a in actions if a.kind.startswith("delete-"))
        if not deletions and google != 0:
            return  # nothing the rule guards against: no need to count the whole map
        check_safety(
            mailbox=user.mailbox,
            mapped=self._mapped_count(user.mailbox),
            deletions=deletions,
            side_counts={"google": google} if google is not None else {},
            max_delete_share=self.config.sync.max_delete_share,
        )

    def _mapped_count(self, mailbox: str) -> int:
        # a COUNT, not mapped_items(): that unseals every snapshot in the map
        return self.store.mapped_count(mailbox)


#: Outbox operations of the changes the job quarantines: an Exchange change Google refused,
#: a Google change Exchange refused (sync/cli/status.py shows them beside the worker's).
EXCHANGE_CHANGE = "exchange-change"
GOOGLE_CHANGE = "google-change"


class BackOff(CalsyncError):
    """A server asked calsync to wait before calling again for this user (Exchange's
    ErrorServerBusy BackOffMilliseconds, Google's Retry-After on 429/503): the user's run
    stops, its feeds stay where they were, and the job schedules the next run (other
    users are not held up; nothing sleeps inside a run)."""

    def __init__(self, seconds: float, cause: BaseException) -> None:
        self.seconds = seconds
        super().__init__(f"asked to back off {seconds:g} s: {cause}")


def requested_wait(exc: BaseException) -> float | None:
    """The seconds a server asked calsync to wait (ExchangeError.back_off, GoogleError's
    Retry-After); None when it asked for nothing."""
    wait = getattr(exc, "retry_after", None)
    return float(wait) if isinstance(wait, int | float) and wait > 0 else None


def retryable(exc: BaseException) -> bool:
    """Whether a failed change may apply later as it is: a failure of the transport (an
    outage, a rate limit, throttling), a version conflict (read again and decide again),
    a pair that kept changing."""
    return bool(getattr(exc, "retryable", False)) or isinstance(exc, VersionConflict)


def carried(entry: OutboxEntry, *, reconciled_at: float | None) -> bool:
    """Whether the job has carried a quarantined entry's change to a pair that is still
    mapped: it brought the pair into agreement after the entry was recorded (its read of
    the item came after Exchange accepted the change). A delete is never carried while
    the pair is mapped."""
    return entry.op != "delete" and reconciled_at is not None and reconciled_at >= entry.created_at


def exchange_notice(mailbox: str, change: ItemChange) -> ChangeNotice:
    """The notice of one change SyncFolderItems reported (the item its hint)."""
    kind: Kind = "delete" if change.kind == "delete" else "upsert"
    return ChangeNotice(
        mailbox,
        "exchange",
        change.item_id,
        change.change_key,
        kind,
        "exchange-feed",
        item=change.item,
    )


def google_notice(mailbox: str, event: GoogleEvent) -> ChangeNotice:
    """The notice of one event events.list returned (the event its hint; a deleted one
    comes with status cancelled)."""
    kind: Kind = "delete" if event.get("status") == "cancelled" else "upsert"
    return ChangeNotice(
        mailbox,
        "google",
        event.get("id", ""),
        event.get("etag"),
        kind,
        "google-feed",
        event=event,
    )


def _live(event: dict[str, Any] | None) -> bool:
    return event is not None and event.get("status") != "cancelled"
