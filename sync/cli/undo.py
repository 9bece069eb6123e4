"""`calsync undo USER [--dry-run]`: put back what the user's last sync run wrote.

The two-way job records every write of a run with what it replaced (sync/sources/job.py,
`runs`/`run_writes` in the store): the Google event's managed fields or the Exchange item's
mapped fields (as `to_google(item)`) before a patch or delete, the new ids of what it
created, and the etag / ChangeKey each write left. Undo walks the last completed run's
writes newest first:

- created -> deleted (and unmapped); an Exchange item whose create's answer was lost is
  found by the Google event's id it carries;
- patched -> the fields it set are put back to what they were;
- deleted -> created again from the pre-image (a new id), and mapped to its counterpart
  when that still exists.

Each is conditioned on the version the run left: an event or item changed since (by
anyone) is skipped and reported, never overwritten. Nothing sends an invitation
(`sendUpdates=none`, SendToNone). Undo's own writes are journaled, so the next run does not
carry them across as fresh edits. The run is then marked undone; a second undo finds
nothing. Only the last run can be undone, and only while no sync runs for the user.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from sync.backends.base import ExchangeBackend, GoogleBackend
from sync.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    CommandError,
    add_config_option,
    config_from,
    run_guarded,
    user_from,
)
from sync.state.base import UNKNOWN_ITEM
from sync.store import MappedItem, RunWrite, Store, StoreError

#: Google fields a re-created event takes from its pre-image (never its old id or tags).
_NOT_RECREATED = frozenset({"iCalUID", "extendedProperties"})
#: CalendarItemTypes of a series' occurrence (its writes change its master's ChangeKey).
_OCCURRENCES = frozenset({"Occurrence", "Exception"})


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "undo",
        help="put back what the user's last sync run wrote",
        description="Reverse the user's last completed sync run from its stored pre-images: "
        "delete what it created, restore what it patched, re-create what it deleted. An event "
        "or item changed since the run is skipped and reported. Exit status 0 done, 1 some "
        "write was skipped or failed (or nothing to undo), 2 bad config or unknown user.",
    )
    add_config_option(parser)
    parser.add_argument("user", metavar="USER", help="the user's mailbox")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done")
    parser.set_defaults(run=lambda args: run_guarded("undo", args, undo))


def undo(args: Any) -> int:
    from ews_parser.errors import CalsyncError
    from sync.backends.exchange import ExchangeMailbox
    from sync.backends.google import GoogleCalendar

    config = config_from(args)
    user = user_from(config, args.user)
    try:
        store = Store.open(config)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        run = store.last_run(user.mailbox)
        if run is None:
            print(f"{user.mailbox}: nothing to undo (no completed sync run that wrote anything)")
            return EXIT_PROBLEMS
        writes = store.run_writes(run.id)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
        verb = "would undo" if args.dry_run else "undoing"
        print(f"{user.mailbox}: {verb} run {run.id} of {started}, {len(writes)} writes")
        try:
            undoer = _Undo(
                store,
                user.mailbox,
                GoogleCalendar(config, user),
                ExchangeMailbox(config, user),
                dry_run=args.dry_run,
            )
        except CalsyncError as exc:
            raise CommandError(f"{user.mailbox}: {exc}", EXIT_PROBLEMS) from None
        problems = 0
        for write in reversed(writes):
            try:
                line, ok = undoer.one(write)
            except CalsyncError as exc:
                line, ok = f"failed\t{_what(write)}\t{exc}", False
            problems += not ok
            print(line)
        if not args.dry_run:
            store.mark_undone(run.id, now=time.time())
        return EXIT_PROBLEMS if problems else EXIT_OK
    finally:
        store.close()


def _what(write: RunWrite) -> str:
    side = "Google event" if write.side == "google" else "Exchange item"
    return f"{side} {_short(write.key)}"


def _short(key: str) -> str:
    return key if len(key) <= 24 else f"{key[:10]}...{key[-10:]}"


def reverse_patch(before: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    """The patch that takes back `written` (a Google patch body) from an event that was
    `before`: objects merge in a patch, so keys the write added are set to null (removed)."""
    body: dict[str, Any] = {}
    for key, value in written.items():
        if key not in before:
            body[key] = None
        elif isinstance(value, dict) and isinstance(before[key], dict):
            body[key] = reverse_patch(before[key], value)
        else:
            body[key] = before[key]
    return body


class _Undo:
    """Undoes one write at a time, newest first; remembers the versions its own writes
    leave, so an older write to the same event or item is checked against those."""

    def __init__(
        self,
        store: Store,
        mailbox: str,
        google: GoogleBackend,
        exchange: ExchangeBackend,
        *,
        dry_run: bool,
    ) -> None:
        self.store = store
        self.mailbox = mailbox
        self.google = google
        self.exchange = exchange
        self.dry_run = dry_run
        self.left: dict[tuple[str, str], str | None] = {}

    def one(self, write: RunWrite) -> tuple[str, bool]:
        """The line to print, and whether the write was (or would be) undone."""
        if write.op == "delete":
            return self._recreate(write)
        if write.key == UNKNOWN_ITEM:  # a create whose answer was lost: found by its event
            made = self.exchange.created_for([write.other_key]) if write.other_key else {}
            if write.other_key not in made:
                what = f"Exchange item for Google event {_short(write.other_key or '')}"
                return f"gone\t{what}\t(created by the run, its answer lost: not there)", True
            write = replace(write, key=made[write.other_key])
        expected = self.left.get((write.side, write.key), write.version)
        if write.side == "google":
            current = self.google.get(write.key)
            gone = current is None or current.get("status") == "cancelled"
            version = None if current is None else current.get("etag")
        else:
            current = self.exchange.calendar_item(write.key)
            gone = current is None
            version = None if current is None else str(current.changekey)
        if gone:
            if write.op == "create":
                return f"gone\t{_what(write)}\t(created by the run, already deleted)", True
            return f"skipped\t{_what(write)}\tdeleted since the run", False
        if expected is None:  # its answer was lost: taken back from what it is now, if made
            expected = version
        if version != expected:
            return f"skipped\t{_what(write)}\tchanged since the run; left as it is", False
        if write.op == "create":
            return self._delete(write, version)
        return self._restore(write, current, version)

    def _delete(self, write: RunWrite, version: str | None) -> tuple[str, bool]:
        if self.dry_run:
            return f"would delete\t{_what(write)}\t(created by the run)", True
        if write.side == "google":
            self.google.delete(write.key, etag=version)
            mapped = self.store.mapped_by_google(self.mailbox, write.key)
            if mapped is not None:
                self.store.forget(self.mailbox, mapped.ews_item_id)
        else:
            self.exchange.delete(write.key)
            self.store.forget(self.mailbox, write.key)
        return f"deleted\t{_what(write)}\t(created by the run)", True

    def _restore(self, write: RunWrite, current: Any, version: str | None) -> tuple[str, bool]:
        from mapping.event import MANAGED_FIELDS, content_hash, to_ews

        before = write.before or {}
        fields = sorted(write.fields or {})
        if self.dry_run:
            return f"would restore\t{_what(write)}\t{', '.join(fields)}", True
        now = time.time()
        restored = {k: before.get(k) for k in MANAGED_FIELDS if k not in _NOT_RECREATED}
        if write.side == "google":
            body = reverse_patch(before, write.fields or {})
            patched = self.google.patch(write.key, body, etag=version)
            new_version = patched.get("etag")
            mapped = self.store.mapped_by_google(self.mailbox, write.key)
            if mapped is not None:
                mapped = replace(mapped, google_etag=new_version)
        else:
            from sync.backends.base import ExchangeConflict

            target = to_ews(before)
            try:
                written = self.exchange.update(current, {n: target.get(n) for n in fields})
            except ExchangeConflict:
                return f"skipped\t{_what(write)}\tchanged since the run; left as it is", False
            new_version = written[1] if written is not None else version
            if written is not None and getattr(current, "type", None) in _OCCURRENCES:
                self._occurrence_written(current, now)
            mapped = self.store.mapped(self.mailbox, write.key)
            if mapped is not None:
                mapped = replace(mapped, ews_change_key=new_version)
        self.left[(write.side, write.key)] = new_version
        self.store.journal(self.mailbox, write.side, write.key, new_version, None, now=now)
        if mapped is not None:
            # the pair's base is what the run found: its change is undone, not replayed
            snapshot = {**(mapped.snapshot or {}), **restored}
            snapshot = {k: v for k, v in snapshot.items() if v is not None}
            self.store.save_mapping(
                replace(mapped, snapshot=snapshot, content_hash=content_hash(snapshot)), now=now
            )
        return f"restored\t{_what(write)}\t{', '.join(fields)}", True

    def _occurrence_written(self, occurrence: Any, now: float) -> None:
        """An occurrence is part of its series: writing it gave the master a new ChangeKey.
        The run's earlier writes of the master are checked against that one, and it is
        journaled as undo's own, as every write of undo's."""
        master_id = self.exchange.master_item_id(occurrence)
        master = self.exchange.calendar_item(master_id) if master_id else None
        if master_id and master is not None:
            version = str(master.changekey)
            self.left[("exchange", master_id)] = version
            self.store.journal(self.mailbox, "exchange", master_id, version, None, now=now)

    def _recreate(self, write: RunWrite) -> tuple[str, bool]:
        from mapping.event import content_hash, to_ews
        from sync.core.events import EWS_ID_PROPERTY, MAILBOX_PROPERTY, managed

        before = {k: v for k, v in (write.before or {}).items() if k not in _NOT_RECREATED}
        if self.dry_run:
            return f"would re-create\t{_what(write)}\t(deleted by the run; a new id)", True
        now = time.time()
        if write.side == "google":
            # mapped again only to an Exchange item that is still there and unmapped
            item = None
            if write.other_key and self.store.mapped(self.mailbox, write.other_key) is None:
                item = self.exchange.calendar_item(write.other_key)
            body = dict(before)
            if item is not None:
                body["extendedProperties"] = {
                    "private": {EWS_ID_PROPERTY: write.other_key, MAILBOX_PROPERTY: self.mailbox}
                }
            event = self.google.insert(body)
            new_id, version = str(event["id"]), event.get("etag")
            self.store.journal(self.mailbox, "google", new_id, version, None, now=now)
            if item is not None and write.other_key:
                snapshot = managed(event)
                self.store.save_mapping(
                    MappedItem(
                        self.mailbox,
                        write.other_key,
                        new_id,
                        str(item.changekey),
                        version,
                        content_hash(snapshot),
                        snapshot,
                    ),
                    now=now,
                )
        else:
            new_id, version = self.exchange.create(to_ews(before))
            self.store.journal(self.mailbox, "exchange", new_id, version, None, now=now)
            current = self.google.get(write.other_key) if write.other_key else None
            if (
                current is not None
                and current.get("status") != "cancelled"
                and self.store.mapped_by_google(self.mailbox, str(current["id"])) is None
            ):
                snapshot = managed(current)
                self.store.save_mapping(
                    MappedItem(
                        self.mailbox,
                        new_id,
                        str(current["id"]),
                        version,
                        current.get("etag"),
                        content_hash(snapshot),
                        snapshot,
                    ),
                    now=now,
                )
        side = "Google event" if write.side == "google" else "Exchange item"
        return f"re-created\t{_what(write)}\tas {side} {_short(new_id)}", True
