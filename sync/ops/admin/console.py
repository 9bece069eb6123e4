"""What the admin console shows and does, apart from HTTP: the views' data (users with both
sides' state, outbox and quarantine, recent changes with their explain trail, conflicts,
the charts' series) and the actions (retry / discard a quarantined entry, a dry run of the
next sync, undo of the last run, pause / resume a user).

Every view takes `signed_in`: without it, nothing that holds event text or an attendee
address is put in it (titles, error texts, pre-images), only ids, counts, times, field
names and the plan's reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ews_parser.errors import CalsyncError
from sync.cli.explain import facts
from sync.config import Config, UserConfig
from sync.ops import metrics
from sync.store import Store


class ActionError(Exception):
    """An action that cannot be done, said in one line (shown on the result page)."""


@dataclass(frozen=True, slots=True)
class Result:
    title: str
    lines: list[str] = field(default_factory=list)
    ok: bool = True
    mailbox: str | None = None


class Console:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        job: Any = None,
        runs: Any = None,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        #: the process's SyncJob (dry runs; its clients for undo); None: those are not offered
        self.job = job
        #: the process's UserRuns: a resumed user's run is triggered at once
        self.runs = runs
        self.wake = wake
        self.clock = clock

    # --- views --------------------------------------------------------------------------------

    def user(self, name: str) -> UserConfig:
        user = self.config.user_named(name)
        if user is None:
            raise ActionError("no such user")
        return user

    def users(self, *, signed_in: bool) -> list[dict[str, Any]]:
        paused = self.store.paused()
        pending = _count_by_user(self.store.pending())
        quarantined = _count_by_user(self.store.quarantined())
        rows = []
        for user in self.config.users:
            cursor = self.store.sync_state(user.mailbox)
            rows.append(
                {
                    "mailbox": user.mailbox,
                    "direction": user.direction,
                    "policy": user.policy or self.config.sync.policy,
                    "paused": user.mailbox in paused,
                    "mapped": self.store.mapped_count(user.mailbox),
                    "pending": pending.get(user.mailbox, 0),
                    "quarantined": quarantined.get(user.mailbox, 0),
                    "last_exchange_sync": cursor.get("last_exchange_sync"),
                    "last_google_sync": cursor.get("last_google_sync"),
                    "error_at": cursor.get("last_error_at"),
                    "error": cursor.get("last_error") if signed_in else None,
                    "has_error": bool(cursor.get("last_error")),
                    "lease": self._lease(user.mailbox),
                }
            )
        return rows

    def _lease(self, mailbox: str) -> str | None:
        if not self.store.shared:
            return None
        lease = self.store.state.leases.holder(mailbox, now=self.clock())
        return lease.holder if lease is not None else None

    def detail(self, name: str, *, signed_in: bool) -> dict[str, Any]:
        user = self.user(name)
        mailbox = user.mailbox
        titles = self._titles(mailbox) if signed_in else {}
        entries = [*self.store.pending(mailbox), *self.store.quarantined(mailbox)]
        run = self.store.last_run(mailbox)
        writes = self.store.run_writes(run.id) if run is not None else []
        return {
            "user": next(u for u in self.users(signed_in=signed_in) if u["mailbox"] == mailbox),
            "outbox": [
                {
                    "id": e.id,
                    "op": e.op,
                    "state": e.state,
                    "attempts": e.attempts,
                    "created_at": e.created_at,
                    "next_attempt_at": e.next_attempt_at,
                    "item": e.ews_item_id,
                    "title": titles.get(e.ews_item_id),
                    "error": e.last_error if signed_in else None,
                    "has_error": bool(e.last_error),
                }
                for e in sorted(entries, key=lambda e: e.id)
            ],
            "last_run": None
            if run is None
            else {
                "id": run.id,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "undone_at": run.undone_at,
                "writes": [
                    {
                        "side": w.side,
                        "op": w.op,
                        "key": w.key,
                        "other_key": w.other_key,
                        "fields": sorted((w.fields or {}).keys()),
                        "title": titles.get(w.key) or titles.get(w.other_key or ""),
                    }
                    for w in writes
                ],
            },
            "recent": self.recent(mailbox, signed_in=signed_in),
            "conflicts": [
                {k: c[k] for k in ("field", "winner", "reason", "at", "ews_item_id")}
                | {"title": titles.get(c["ews_item_id"] or "")}
                for c in self.store.conflicts(mailbox)[-50:]
            ],
        }

    def recent(self, mailbox: str | None = None, *, signed_in: bool) -> list[dict[str, Any]]:
        """The changes this process carried last (newest first), with what was decided, why
        and by which source: the explain trail's start."""
        changes = [c for c in list(metrics.RECENT) if mailbox is None or c.mailbox == mailbox]
        titles: dict[str, dict[str, str]] = {}
        rows = []
        for change in reversed(changes[-100:]):
            title = None
            if signed_in:
                if change.mailbox not in titles:
                    titles[change.mailbox] = self._titles(change.mailbox)
                title = titles[change.mailbox].get(change.ews_item_id or "") or titles[
                    change.mailbox
                ].get(change.google_event_id or "")
            rows.append(
                {
                    "at": change.at,
                    "mailbox": change.mailbox,
                    "source": change.source,
                    "kind": change.kind,
                    "key": change.ews_item_id or change.google_event_id,
                    "reason": change.reason,
                    "title": title,
                }
            )
        return rows

    def explain(self, name: str, key: str, *, signed_in: bool) -> dict[str, Any]:
        user = self.user(name)
        found = facts(self.store, [user.mailbox], key)
        mapped = self.store.mapped(user.mailbox, key) or self.store.mapped_by_google(
            user.mailbox, key
        )
        keys = {key} | ({mapped.ews_item_id, mapped.google_event_id} if mapped else set())
        event: dict[str, Any] = dict(mapped.snapshot or {}) if mapped and signed_in else {}
        for fact in found:
            for entry in fact["outbox"]:
                entry["last_error"] = entry["last_error"] if signed_in else None
        return {
            "mailbox": user.mailbox,
            "key": key,
            "facts": found,
            "trail": [
                r for r in self.recent(user.mailbox, signed_in=signed_in) if r["key"] in keys
            ],
            "event": {
                "summary": event.get("summary"),
                "location": event.get("location"),
                "attendees": [
                    a.get("email") for a in event.get("attendees", []) if isinstance(a, dict)
                ],
            }
            if event
            else None,
        }

    def _titles(self, mailbox: str) -> dict[str, str]:
        """Item id and event id -> the event's title, from the pairs' snapshots (signed-in
        views only)."""
        titles: dict[str, str] = {}
        for pair in self.store.mapped_items(mailbox):
            summary = (pair.snapshot or {}).get("summary")
            if isinstance(summary, str):
                titles[pair.ews_item_id] = titles[pair.google_event_id] = summary
        return titles

    def charts(self, *, hours: int = 6) -> dict[str, Any]:
        from sync.ops.admin.charts import latency_chart, throughput_chart

        minutes = metrics.HISTORY.series(now=self.clock(), minutes=hours * 60)
        return {
            "hours": hours,
            "throughput": throughput_chart(minutes),
            "latency": latency_chart(minutes),
            "carried": sum(m.count for m in minutes),
        }

    # --- actions ------------------------------------------------------------------------------

    def retry(self, entry_id: int) -> Result:
        entry = self.store.entry(entry_id)
        if entry is None or entry.state != "quarantined":
            raise ActionError(f"entry {entry_id} is not quarantined (done, or retried already)")
        self.store.retry_later(
            entry_id,
            error=entry.last_error or "retried from the admin console",
            at=self.clock(),
            quarantine=False,
        )
        if self.wake is not None:
            self.wake()
        return Result(f"Entry {entry_id} goes back to the outbox", mailbox=entry.mailbox)

    def discard(self, entry_id: int) -> Result:
        entry = self.store.entry(entry_id)
        if entry is None or not self.store.heal(entry_id):
            raise ActionError(f"entry {entry_id} is not quarantined (done, or retried already)")
        return Result(f"Entry {entry_id} discarded", mailbox=entry.mailbox)

    def pause(self, name: str) -> Result:
        user = self.user(name)
        self.store.pause(user.mailbox, now=self.clock())
        return Result(
            f"{user.mailbox} paused",
            ["Its runs and its outbox entries wait until it is resumed."],
            mailbox=user.mailbox,
        )

    def resume(self, name: str) -> Result:
        user = self.user(name)
        self.store.resume(user.mailbox)
        if self.runs is not None:
            self.runs.trigger(user)
        if self.wake is not None:
            self.wake()
        return Result(f"{user.mailbox} resumed", mailbox=user.mailbox)

    def dry_run(self, name: str) -> Result:
        user = self.user(name)
        if self.job is None:
            raise ActionError("no sync job in this process")
        report = self.job.run_user(user, dry_run=True)
        lines = [
            f"{a.kind}\t{_short(a.ews_item_id or a.google_event_id or '')}\t{a.reason}"
            for a in report.actions
            if a.kind not in ("echo", "skip")
        ]
        lines += [f"error\t{e}" for e in report.errors]
        if report.stopped:
            lines.append(f"stopped\t{report.stopped}")
        title = f"Dry run for {user.mailbox}: {len(lines) or 'nothing'} to do"
        return Result(title, lines, ok=not report.errors, mailbox=user.mailbox)

    def undo(self, name: str) -> Result:
        """Put back what the user's last run wrote (as `calsync undo`). The user must be
        paused first, so that no run of theirs overlaps the undo."""
        from sync.cli.undo import _Undo, _what

        user = self.user(name)
        if not self.store.is_paused(user.mailbox):
            raise ActionError(f"pause {user.mailbox} first: no run may overlap the undo")
        if self.job is None:
            raise ActionError("no sync job in this process")
        run = self.store.last_run(user.mailbox)
        if run is None:
            raise ActionError(f"{user.mailbox}: nothing to undo")
        google, exchange = self.job.clients(user)
        undoer = _Undo(self.store, user.mailbox, google, exchange, dry_run=False)
        lines, problems = [], 0
        for write in reversed(self.store.run_writes(run.id)):
            try:
                line, ok = undoer.one(write)
            except CalsyncError as exc:
                line, ok = f"failed\t{_what(write)}\t{type(exc).__name__}", False
            problems += not ok
            lines.append(line)
        self.store.mark_undone(run.id, now=self.clock())
        title = f"Run {run.id} of {user.mailbox} undone" + (
            f" ({problems} writes skipped or failed)" if problems else ""
        )
        return Result(title, lines, ok=not problems, mailbox=user.mailbox)


def _count_by_user(entries: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.mailbox] = counts.get(entry.mailbox, 0) + 1
    return counts


def _short(key: str) -> str:
    return key if len(key) <= 24 else f"{key[:10]}...{key[-10:]}"
