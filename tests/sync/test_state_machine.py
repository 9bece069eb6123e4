"""Convergence of calsync, as vdirsyncer's `tests/unit/sync/test_sync.py` checks its sync:
a hypothesis state machine making random creates, edits (one field, or the same field on
both sides) and deletes through every source of change, against both stand-ins:

- edits in Google (google-api-python-client);
- edits made directly on Exchange (exchangelib), which only the job's SyncFolderItems
  feed sees;
- edits through the proxy: a mail client's EWS request to Exchange seen by the addon
  (loaded as mitmdump loads it), whose outbox worker mirrors it when the outbox drains;
- series: weekly series made on either side, occurrences moved, renamed or deleted in
  Exchange, instances moved, renamed or cancelled in Google;

run by the two-way job, by the outbox worker and by `calsync sync` processes, under
Google 429/403/5xx/outages and EWS ErrorServerBusy/503/outages, with answers lost after
the write was done, and with `calsync sync` SIGKILLed between a write and its record. The
conflict policy is drawn per example (sync/config.py's POLICIES).

After quiescence (faults cleared, the outbox drained and the job run until it has
nothing to do, bounded):

- both sides equal on the managed fields, compared through `to_google` + `normalised`
  (the Google event first projected through `to_ews`, so LOSSY_FIELDS rules apply), and
  a series' occurrences equal on both sides;
- no duplicates: each logical event (a token in its description) at most once per side
  (checked after every step too);
- no resurrection: an event deleted on either side is gone from both;
- no lost edit: the value the policy says must win (tests/sync/machine/model.py);
- nothing left in the outbox or its quarantine;
- `calsync undo` puts both sides back as they were before the last run that wrote,
  when nothing happened after it.

Profiles: under `CI` the examples are derandomized (the same ones every run); elsewhere
they are random; `CALSYNC_SOAK=N` runs N random examples
(`CALSYNC_SOAK=500 scripts/test -k state_machine`). Sources calsync does not carry yet
are left out of the random examples (`NOT_YET`); each has a strict xfail below.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from exchangelib import EWSDateTime
from exchangelib.errors import EWSError
from exchangelib.items import CalendarItem
from exchangelib.properties import Body
from exchangelib.recurrence import Recurrence, WeeklyPattern
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from mapping.event import MANAGED_FIELDS, normalised, to_ews, to_google
from sync.config import POLICIES
from tests.sync.conftest import ALICE, BERLIN, PASSWORDS
from tests.sync.machine import soap
from tests.sync.machine.model import Logical
from tests.sync.machine.series import (
    COUNT,
    exchange_occurrences,
    google_instance,
    google_occurrences,
)
from tests.sync.machine.world import World, clear_faults, faults

#: how many job runs quiescence may take once the faults are cleared
QUIET_RUNS = 8
FIELDS = ("summary", "location", "time")
COMPARED = tuple(f for f in MANAGED_FIELDS if f != "iCalUID")
GOOGLE_FAULTS = ("429", "403", "500", "503", "outage", "lostAnswer")
EWS_FAULTS = ("ErrorServerBusy", "http503", "outage", "lostAnswer")
#: what a user does to one occurrence of a series
CHANGES = ("move", "rename", "delete")
#: sources of change calsync does not carry yet: their rules stay out of the random
#: examples (CALSYNC_SM_ALL=1 lets them in); each has a strict xfail regression below,
#: which passes, and so fails, the day the source is carried: then drop it from here
NOT_YET = {
    # `calsync sync` killed once Exchange made an item for a Google event, before the
    # record (the kills on Google's side, and on Exchange's other writes, are let in)
    "a killed create in Exchange": "different fields edited on both sides since: one "
    "edit is lost (nothing tells which side changed which field)",
}
#: the stand-ins' clock moves on this much before each edit a user makes: "newest" is
#: then never a tie within one of Exchange's whole seconds
EDIT_GAP_S = 2.0


def _when(slot: int) -> tuple[EWSDateTime, EWSDateTime]:
    start = EWSDateTime(2026, 5, 4, 8, tzinfo=BERLIN) + dt.timedelta(hours=slot)
    return start, start + dt.timedelta(minutes=30)


def _other_slot(n: int, held: dt.datetime) -> int:
    """The time slot an edit moves to: `n`'s, or the next when the side holds that one
    already (an edit to the value a side holds changes no field: no merge can see it, so
    the model must not count it as that side's edit). (Found by the soak: sm-9.)"""
    slot = n % 9
    return (slot + 1) % 9 if _when(slot)[0] == held else slot


def _local(value: EWSDateTime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


class TwoWaySync(RuleBasedStateMachine):
    events = Bundle("events")
    series = Bundle("series")

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.counter = 0
        self.logical: dict[str, Logical] = {}
        #: both sides before the last run that wrote, while nothing happened after it
        self.undo_base: dict[str, tuple[Any, Any]] | None = None
        #: whether the last `calsync sync` process was killed (else it ended by itself)
        self.killed = False
        #: whether the outbox waits for a drain rule (else each proxy rule drains at once)
        self.late_drains = False

    def teardown(self) -> None:
        try:
            self._quiesce_and_check()
        finally:
            self.world.close()

    # --- bookkeeping ----------------------------------------------------------------------

    @staticmethod
    def enabled(source: str) -> bool:
        return source not in NOT_YET or os.environ.get("CALSYNC_SM_ALL") == "1"

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _user_acts(self) -> float:
        """A user is about to change something: the clock moves on; what the last run
        wrote can no longer simply be undone."""
        self.world.clock.advance(EDIT_GAP_S)
        self.undo_base = None
        return self.world.clock.time()

    def _record(self, token: str, side: str, name: str, value: Any, at: float) -> None:
        self.logical[token].record(side, name, value, at)

    def _synced(self) -> None:
        """Something of calsync's may have written: newest-wins can no longer be told
        from the user's edits alone until the next clean run."""
        self.undo_base = None
        for logical in self.logical.values():
            logical.synced_since_clean = True

    # --- the policy -------------------------------------------------------------------------

    # (not sampled_from: it favours the first policy, and the others met few conflicts)
    @initialize(policy=st.randoms(use_true_random=False).map(lambda r: r.choice(POLICIES)))
    def choose_policy(self, policy: str) -> None:
        self.world.set_policy(policy)

    @initialize(late=st.booleans())
    def choose_drains(self, late: bool) -> None:
        self.late_drains = late

    # --- Exchange, directly (the job's feed sees it) ------------------------------------------

    @initialize(target=events)
    def first_event(self) -> str:
        return self.create_in_exchange()

    @rule(target=events)
    def create_in_exchange(self) -> str:
        return self._create_in_exchange(series=False)

    def _create_in_exchange(self, *, series: bool) -> str:
        self._user_acts()
        n = self._next()
        token = f"sm-{n}"
        start, end = _when(n % 9)
        recurrence = Recurrence(
            pattern=WeeklyPattern(interval=1, weekdays=[start.isoweekday()]),
            start=start.date(),
            number=COUNT,
        )
        CalendarItem(
            account=self.world.account,
            folder=self.world.account.calendar,
            subject=f"{'Series' if series else 'Exchange'} {n}",
            body=Body(token),
            start=start,
            end=end,
            recurrence=recurrence if series else None,
        ).save()
        self.logical[token] = Logical(token, series=series)
        return token

    def _edit_exchange(self, token: str, name: str) -> bool:
        items = self.world.exchange_items().get(token)
        if not items:
            return False
        item = items[0]
        at = self._user_acts()
        n = self._next()
        if name == "time":
            slot = _other_slot(n, item.start)
            item.start, item.end = _when(slot)
            item.save(update_fields=["start", "end"])
            self._record(token, "exchange", name, slot, at)
        else:
            attribute = "subject" if name == "summary" else name
            setattr(item, attribute, f"E{n}")
            item.save(update_fields=[attribute])
            self._record(token, "exchange", name, f"E{n}", at)
        return True

    @rule(token=events, name=st.sampled_from(FIELDS))
    def edit_in_exchange(self, token: str, name: str) -> None:
        self._edit_exchange(token, name)

    @rule(token=consumes(events))
    def delete_in_exchange(self, token: str) -> None:
        items = self.world.exchange_items().get(token, [])
        if items:
            self._user_acts()
        for item in items:
            item.delete()
            self.logical[token].deleted = True

    # --- Google -------------------------------------------------------------------------------

    @rule(target=events)
    def create_in_google(self) -> str:
        return self._create_in_google(series=False)

    def _create_in_google(self, *, series: bool) -> str:
        self._user_acts()
        n = self._next()
        token = f"sm-{n}"
        start, end = _when(n % 9)
        body: dict[str, Any] = {
            "summary": f"Google {'series ' if series else ''}{n}",
            "description": token,
            "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Berlin"},
            "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Berlin"},
        }
        if series:
            body["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={COUNT};BYDAY=MO"]
        self.world.service.events().insert(calendarId="primary", body=body).execute()
        self.logical[token] = Logical(token, series=series)
        return token

    def _edit_google(self, token: str, name: str) -> bool:
        events = self.world.google_events().get(token)
        if not events:
            return False
        at = self._user_acts()
        n = self._next()
        if name == "time":
            slot = _other_slot(n, dt.datetime.fromisoformat(events[0]["start"]["dateTime"]))
            start, end = _when(slot)
            body: dict[str, Any] = {
                "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Berlin"},
                "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Berlin"},
            }
            value: Any = slot
        else:
            body = {name: f"G{n}"}
            value = f"G{n}"
        self.world.service.events().patch(
            calendarId="primary", eventId=events[0]["id"], body=body
        ).execute()
        self._record(token, "google", name, value, at)
        return True

    @rule(token=events, name=st.sampled_from(FIELDS))
    def edit_in_google(self, token: str, name: str) -> None:
        self._edit_google(token, name)

    @rule(token=consumes(events))
    def delete_in_google(self, token: str) -> None:
        events = self.world.google_events().get(token, [])
        if events:
            self._user_acts()
        for event in events:
            self.world.service.events().delete(calendarId="primary", eventId=event["id"]).execute()
            self.logical[token].deleted = True

    # --- both sides -------------------------------------------------------------------------

    @rule(token=events, name=st.sampled_from(FIELDS), exchange_first=st.booleans())
    def edit_same_field_on_both_sides(self, token: str, name: str, exchange_first: bool) -> None:
        if exchange_first:
            self._edit_exchange(token, name)
            self._edit_google(token, name)
        else:
            self._edit_google(token, name)
            self._edit_exchange(token, name)

    @rule(token=events, name=st.sampled_from(FIELDS), exchange_first=st.booleans())
    def conflict_after_a_run(self, token: str, name: str, exchange_first: bool) -> None:
        """A run (both sides then hold the event), then the same field edited on both:
        the conflict the policy settles."""
        self._run()
        self.edit_same_field_on_both_sides(token, name, exchange_first)

    @rule(token=events, first=st.sampled_from(FIELDS), second=st.sampled_from(FIELDS))
    def edit_different_fields(self, token: str, first: str, second: str) -> None:
        self._edit_exchange(token, first)
        self._edit_google(token, second)

    # --- Exchange, through the proxy (the addon's outbox worker mirrors it) ----------------------

    def _proxied(self) -> None:
        """The outbox worker drains at once, as it does while Google answers, unless
        the example drains late: then a drain rule decides when."""
        if not self.late_drains:
            self._synced()
            self.world.drain()

    @rule(target=events)
    def create_through_proxy(self) -> str:
        self._user_acts()
        n = self._next()
        token = f"sm-{n}"
        start, end = _when(n % 9)
        answer = self.world.through_proxy(
            soap.create_item(f"Proxy {n}", token, _local(start), _local(end))
        )
        assert answer.ok(), answer.answer[:500]
        self.logical[token] = Logical(token)
        self._proxied()
        return token

    @rule(token=events, name=st.sampled_from(FIELDS))
    def edit_through_proxy(self, token: str, name: str) -> None:
        items = self.world.exchange_items().get(token)
        if not items:
            return
        item = items[0]
        at = self._user_acts()
        n = self._next()
        if name == "time":
            start, end = _when(n % 9)
            fields = {"start": _local(start), "end": _local(end)}
            value: Any = n % 9
        else:
            fields = {"subject" if name == "summary" else name: f"P{n}"}
            value = f"P{n}"
        answer = self.world.through_proxy(soap.update_item(item.id, item.changekey, fields))
        assert answer.ok(), answer.answer[:500]
        self._record(token, "exchange", name, value, at)
        self._proxied()

    @rule(token=consumes(events), how=st.sampled_from(["MoveToDeletedItems", "HardDelete"]))
    def delete_through_proxy(self, token: str, how: str) -> None:
        items = self.world.exchange_items().get(token, [])
        if items:
            self._user_acts()
        for item in items:
            answer = self.world.through_proxy(soap.delete_item(item.id, how))
            assert answer.ok(), answer.answer[:500]
            self.logical[token].deleted = True
        self._proxied()

    @precondition(lambda self: self.world.has_addon and self.late_drains)
    @rule()
    def drain_outbox(self) -> None:
        self._synced()
        self.world.drain()

    @precondition(lambda self: self.world.has_addon and self.late_drains)
    @rule(
        google_fault=st.none() | st.sampled_from(GOOGLE_FAULTS),
        ews_fault=st.none() | st.sampled_from(EWS_FAULTS),
        rate=st.sampled_from([0.2, 0.5]),
        seed=st.integers(0, 3),
    )
    def drain_outbox_on_a_bad_network(
        self, google_fault: str | None, ews_fault: str | None, rate: float, seed: int
    ) -> None:
        self._synced()
        with faults(self.world, *_specs(google_fault, ews_fault, rate, seed)):
            self.world.drain()

    # --- series ---------------------------------------------------------------------------

    @rule(target=series)
    def create_series_in_exchange(self) -> str:
        return self._create_in_exchange(series=True)

    @rule(target=series)
    def create_series_in_google(self) -> str:
        return self._create_in_google(series=True)

    def _master(self, token: str) -> CalendarItem | None:
        items = self.world.exchange_items().get(token)
        if not items:
            return None
        (master,) = self.world.account.fetch(ids=items[:1])
        return master if isinstance(master, CalendarItem) else None

    def _occurrence_change(self, n: int, change: str, start: dt.datetime) -> tuple[str, Any]:
        """The aspect a change touches and the value it leaves."""
        if change == "move":
            moved = dt.datetime.fromtimestamp(start.timestamp(), dt.UTC)
            moved += dt.timedelta(hours=1 + n % 3)
            return "start", moved.strftime("%Y-%m-%dT%H:%M:%SZ")
        if change == "rename":
            return "summary", f"O{n}"
        return "deleted", True

    @rule(token=series, index=st.integers(1, COUNT), change=st.sampled_from(CHANGES))
    def change_occurrence_in_exchange(self, token: str, index: int, change: str) -> None:
        master = self._master(token)
        if master is None:
            return
        try:
            occurrence = master.occurrence(index)
            occurrence.refresh()
        except EWSError:  # deleted already
            return
        at = self._user_acts()
        n = self._next()
        aspect, value = self._occurrence_change(n, change, occurrence.start)
        if change == "move":
            delta = dt.timedelta(hours=1 + n % 3)
            occurrence.start, occurrence.end = occurrence.start + delta, occurrence.end + delta
            occurrence.save(update_fields=["start", "end"])
        elif change == "rename":
            occurrence.subject = value
            occurrence.save(update_fields=["subject"])
        else:
            occurrence.delete()
        self._record(token, "exchange", f"occ{index}.{aspect}", value, at)

    @rule(token=series, index=st.integers(1, COUNT), change=st.sampled_from(CHANGES))
    def change_occurrence_through_proxy(self, token: str, index: int, change: str) -> None:
        master = self._master(token)
        if master is None:
            return
        found = self.world.through_proxy(soap.get_occurrence(master.id, index))
        if not found.ok():  # deleted already
            return
        (occurrence_id, change_key), *_ = found.item_ids()
        (occurrence,) = self.world.account.fetch(ids=[(occurrence_id, change_key)])
        at = self._user_acts()
        n = self._next()
        aspect, value = self._occurrence_change(n, change, occurrence.start)
        if change == "move":
            delta = dt.timedelta(hours=1 + n % 3)
            start = (occurrence.start + delta).astimezone(BERLIN)
            end = (occurrence.end + delta).astimezone(BERLIN)
            request = soap.update_item(
                occurrence_id, change_key, {"start": _local(start), "end": _local(end)}
            )
        elif change == "rename":
            request = soap.update_item(occurrence_id, change_key, {"subject": value})
        else:
            request = soap.delete_item(occurrence_id, "HardDelete")
        answer = self.world.through_proxy(request)
        assert answer.ok(), answer.answer[:500]
        self._record(token, "exchange", f"occ{index}.{aspect}", value, at)
        self._proxied()

    @rule(token=series, index=st.integers(1, COUNT), change=st.sampled_from(CHANGES))
    def change_instance_in_google(self, token: str, index: int, change: str) -> None:
        events = self.world.google_events().get(token)
        if not events:
            return
        instance = google_instance(self.world.service, events[0], index)
        if instance is None:
            return
        at = self._user_acts()
        n = self._next()
        start = dt.datetime.fromisoformat(instance["start"]["dateTime"])
        aspect, value = self._occurrence_change(n, change, start)
        calendar = self.world.service.events()
        if change == "move":
            delta = dt.timedelta(hours=1 + n % 3)
            end = dt.datetime.fromisoformat(instance["end"]["dateTime"])
            body = {
                "start": {"dateTime": (start + delta).isoformat(), "timeZone": "Europe/Berlin"},
                "end": {"dateTime": (end + delta).isoformat(), "timeZone": "Europe/Berlin"},
            }
            calendar.patch(calendarId="primary", eventId=instance["id"], body=body).execute()
        elif change == "rename":
            calendar.patch(
                calendarId="primary", eventId=instance["id"], body={"summary": value}
            ).execute()
        else:
            calendar.delete(calendarId="primary", eventId=instance["id"]).execute()
        self._record(token, "google", f"occ{index}.{aspect}", value, at)

    @rule(token=consumes(series))
    def delete_series_in_exchange(self, token: str) -> None:
        self.delete_in_exchange(token)

    @rule(token=consumes(series))
    def delete_series_in_google(self, token: str) -> None:
        self.delete_in_google(token)

    # --- the job ----------------------------------------------------------------------------

    @rule()
    def run_job(self) -> None:
        self._run()

    @rule(
        google_fault=st.none() | st.sampled_from(GOOGLE_FAULTS),
        ews_fault=st.none() | st.sampled_from(EWS_FAULTS),
        rate=st.sampled_from([0.2, 0.5]),
        seed=st.integers(0, 3),
    )
    @precondition(lambda self: bool(self.logical))
    def run_job_on_a_bad_network(
        self, google_fault: str | None, ews_fault: str | None, rate: float, seed: int
    ) -> None:
        # faults only around the job: the user's own edits are not what is under test
        self._run(*_specs(google_fault, ews_fault, rate, seed))

    @rule(side=st.sampled_from(["google", "ews"]), seed=st.integers(0, 7))
    @precondition(lambda self: bool(self.logical))
    def kill_sync(self, side: str, seed: int) -> None:
        if side == "ews" and not self.enabled("a killed create in Exchange"):
            side = "google"  # its write there may be a create: killed on Google's side
        self.sync_killed_after_a_write(side, seed)

    def sync_killed_after_a_write(self, side: str, seed: int) -> None:
        """`calsync sync`, SIGKILLed once one of its writes to `side` is done and before
        it learns so (let alone records it)."""
        self._synced()
        self.killed = self.world.killed_sync(side, seed)

    def _run(
        self, google_fault: dict[str, Any] | None = None, ews_fault: dict[str, Any] | None = None
    ) -> Any:
        before = self._both_sides()
        last = self.world.last_run_id()
        with faults(self.world, google_fault, ews_fault):
            report = self.world.run()
        if not report.errors and not report.stopped:
            for logical in self.logical.values():
                logical.clean(self.world.policy)
        else:
            self._synced()
        if self.world.last_run_id() != last:
            self.undo_base = before
        return report

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def no_duplicates(self) -> None:
        for side, found in (
            ("Exchange", self.world.exchange_items()),
            ("Google", self.world.google_events()),
        ):
            for token, copies in found.items():
                assert len(copies) <= 1, f"{token}: {len(copies)} copies in {side}"

    # --- quiescence and the invariants -------------------------------------------------------

    def _quiesce(self) -> None:
        """Faults cleared, the outbox drained and the job run until a run has nothing to
        do, then once more after `verify_interval_s` (the job asks Exchange then which
        mapped items still exist: the feed says nothing of an item created and deleted
        between two of its reads)."""
        clear_faults(self.world)
        reports = []
        verified = False
        for _ in range(QUIET_RUNS):
            drained = self.world.drain()
            if drained:
                self._synced()
            report = self._run()
            reports.append(report.summary())
            quiet = not report.errors and not report.actions and not report.stopped
            if quiet and not drained and verified:
                return
            verified = quiet and not drained
            self.world.clock.advance(self.world.verify_interval_s + 1)  # past any back-off
        raise AssertionError(f"no quiescence after {QUIET_RUNS} runs: {reports}")

    def _quiesce_and_check(self) -> None:
        self._quiesce()
        pending, quarantined = self.world.outbox()
        assert not pending and not quarantined, (
            f"outbox: {pending} pending, {quarantined} quarantined after quiescence"
        )
        exchange = self.world.exchange_items()
        google = self.world.google_events()
        policy = self.world.policy
        for token, logical in self.logical.items():
            items, events = exchange.get(token, []), google.get(token, [])
            # no duplicates
            assert len(items) <= 1, f"{token}: {len(items)} copies in Exchange"
            assert len(events) <= 1, f"{token}: {len(events)} copies in Google"
            # no resurrection, and nothing half there
            if logical.deleted:
                assert not items and not events, f"{token} came back after its deletion"
                continue
            assert items and events, f"{token}: Exchange {len(items)}, Google {len(events)}"
            item, event = items[0], events[0]
            # both sides equal on the managed fields
            ours, theirs = _exchange_view(item), _google_view(event)
            for name in COMPARED:
                assert ours[name] == theirs[name], (
                    f"{token}: {name} differs: Exchange {ours[name]!r}, "
                    f"Google {event.get(name)!r}"
                )
            if logical.series:
                self._check_occurrences(logical, item, event)
            # no lost edit the policy says must win
            for name in logical.edits:
                if name.startswith("occ"):
                    continue
                actual = _value(item, name)
                allowed = logical.acceptable(name, policy)
                edit = logical.edits[name][-1]
                assert actual in allowed, (
                    f"{token}: {name} is {actual!r} under {policy}; the last edit was "
                    f"{edit.side}'s {edit.value!r}, one of {sorted(map(str, allowed))} must win"
                )
        unknown = (set(exchange) | set(google)) - set(self.logical)
        assert not unknown, f"events nobody made: {sorted(unknown)}"
        self._check_undo()

    def _check_occurrences(
        self, logical: Logical, item: CalendarItem, event: dict[str, Any]
    ) -> None:
        """A series' occurrences equal on both sides, and the edits the policy says must
        win made to them."""
        (master,) = self.world.account.fetch(ids=[item])
        ours = exchange_occurrences(self.world.account, master)
        theirs = google_occurrences(self.world.service, event)
        token = logical.token
        for index in range(1, COUNT + 1):
            assert ours.get(index) == theirs.get(index), (
                f"{token}: occurrence {index} differs: Exchange {ours.get(index)!r}, "
                f"Google {theirs.get(index)!r}"
            )
        for name in logical.edits:
            if not name.startswith("occ"):
                continue
            index = int(name[3:].split(".")[0])
            aspect = name.split(".")[1]
            actual = ours.get(index)
            if f"occ{index}.deleted" in logical.edits:
                assert actual is None, f"{token}: occurrence {index} came back: {actual!r}"
                continue
            assert actual is not None, f"{token}: occurrence {index} is gone"
            value = actual[0] if aspect == "start" else actual[2]
            allowed = logical.acceptable(name, self.world.policy)
            assert value in allowed, (
                f"{token}: occurrence {index}'s {aspect} is {value!r}; one of "
                f"{sorted(map(str, allowed))} must win"
            )

    def _both_sides(self) -> dict[str, tuple[Any, Any]]:
        exchange = self.world.exchange_items()
        google = self.world.google_events()
        return {
            token: (
                [_exchange_view(i) for i in exchange.get(token, [])],
                [_google_view(e) for e in google.get(token, [])],
            )
            for token in set(exchange) | set(google)
        }

    def _check_undo(self) -> None:
        """`calsync undo` right after the last run that wrote puts back what it found."""
        base = self.undo_base
        if base is None:
            return
        status, out = self.world.undo()
        assert status == 0, f"calsync undo: exit {status}\n{out}"
        after = self._both_sides()
        for token in sorted(set(base) | set(after)):
            assert after.get(token) == base.get(token), (
                f"{token} after undo: {after.get(token)!r}, before the run: "
                f"{base.get(token)!r}\n{out}"
            )


def _specs(
    google_fault: str | None, ews_fault: str | None, rate: float, seed: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    google = {"kind": google_fault, "rate": rate, "seed": seed} if google_fault else None
    ews = (
        {"kind": ews_fault, "rate": rate, "seed": seed, "backOffMilliseconds": 0}
        if ews_fault
        else None
    )
    return google, ews


def _exchange_view(item: CalendarItem) -> dict[str, Any]:
    ours = to_google(item)
    return {name: normalised(name, ours.get(name)) for name in COMPARED}


def _google_view(event: dict[str, Any]) -> dict[str, Any]:
    theirs = to_google(CalendarItem(**_writable(to_ews(event))))
    return {name: normalised(name, theirs.get(name)) for name in COMPARED}


def _value(item: CalendarItem, name: str) -> Any:
    if name == "summary":
        return item.subject
    if name == "location":
        return item.location
    start, _ = _when(0)
    return int((item.start - start).total_seconds() // 3600)


def _writable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("is_cancelled", "uid")}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALSYNC_TEST_ALICE_PASSWORD", PASSWORDS[ALICE])
    yield


def _settings() -> settings:
    current = settings.get_profile(settings._current_profile or "default")  # type: ignore[attr-defined]
    soak = int(os.environ.get("CALSYNC_SOAK") or 0)
    if soak:
        return settings(current, max_examples=soak, derandomize=False, stateful_step_count=STEPS)
    examples = CI_EXAMPLES if os.environ.get("CI") else DEV_EXAMPLES
    return settings(current, max_examples=examples, stateful_step_count=STEPS, deadline=None)


#: steps an example takes at most
STEPS = 15
#: CI's derandomized examples: as many as fit in about three minutes on two cores
#: (measured on a 2-core machine: 100 derandomized examples in 217 s, 2.2 s each)
CI_EXAMPLES = 80
#: elsewhere, random examples: a few, so that scripts/test stays quick (~40 s)
DEV_EXAMPLES = 20

TwoWaySync.TestCase.settings = _settings()
if os.environ.get("CALSYNC_SOAK"):  # as long as it takes: no per-test timeout (pyproject)
    TwoWaySync.TestCase.pytestmark = [pytest.mark.timeout(0)]  # type: ignore[attr-defined]
test_two_way_sync_converges = TwoWaySync.TestCase


# --- named regressions: the sequences the machine found, shortest first ------------------------


def replay(steps: Callable[[TwoWaySync], None]) -> None:
    """Run `steps(machine)` on a new machine, then its invariant and teardown:
    quiescence and the checks."""
    machine = TwoWaySync()
    try:
        steps(machine)
        machine.no_duplicates()
    finally:
        machine.teardown()


def _known(reason: str) -> pytest.MarkDecorator:
    """A failure the machine found, not fixed yet: the test fails on its invariant, and
    passing is a failure too (then drop the mark, and the NOT_YET entry that kept the
    random examples away from it)."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


@pytest.mark.parametrize("then", ["delete_in_exchange", "edit_in_google"])
def test_an_event_written_before_a_kill(then: str) -> None:
    """`calsync sync` killed once it inserted the Google event of a new Exchange item,
    before it recorded it; then the user deletes the item, or edits the event. (Found by
    the machine: the event stayed, or the edit was lost, before 5adccff.)"""

    def steps(m: TwoWaySync) -> None:
        e0 = m.first_event()
        m.sync_killed_after_a_write(side="google", seed=1)
        assert m.killed  # while e0's event was inserted
        if then == "delete_in_exchange":
            m.delete_in_exchange(e0)
        else:
            m.edit_in_google(token=e0, name="location")
        m.run_job()

    replay(steps)


@pytest.mark.parametrize(("first", "second"), [("time", "time"), ("summary", "location")])
@pytest.mark.parametrize("policy", ["exchange-wins", "google-wins"])
def test_both_sides_edited_after_a_kill_settle_by_the_policy(
    first: str, second: str, policy: str
) -> None:
    """(Found by the machine: the adopted event's base was the item's current version,
    so every Exchange edit made since read as no change, and Google's value won whatever
    the policy.) The pair is now recorded before the insert, with what is written as its
    base: an edit on one side wins, a field both changed is the policy's."""

    def steps(m: TwoWaySync) -> None:
        m.choose_policy(policy)
        e0 = m.first_event()
        m.sync_killed_after_a_write(side="google", seed=1)
        assert m.killed  # while e0's event was inserted
        m.edit_different_fields(token=e0, first=first, second=second)
        m.run_job()

    replay(steps)


@pytest.mark.parametrize("then", ["edit_in_google", "delete_in_google"])
def test_a_proxy_edit_after_a_killed_insert_merges_against_what_it_wrote(then: str) -> None:
    """`calsync sync` killed once it inserted the Google event of a new Exchange item,
    before the record; then the event is edited (summary) or deleted in Google, the item's
    location edited through the proxy, and the outbox drains. (Found by the soak of
    2026-12-01: under exchange-wins, Google's summary was lost to the item's first one;
    or the item stayed after its event's deletion. The worker inserted the intended
    pair's event again: the intention took the new body for its base, the 409 dropped it
    for the stamps' guess (both sides changed since the insert: no base, the policy
    settles every field that differs), and a deleted event left the item unmapped.) An
    intended pair is now read first, as the job reads it, and merged against what the
    killed insert wrote."""

    def steps(m: TwoWaySync) -> None:
        m.choose_policy(policy="exchange-wins")
        m.choose_drains(late=True)
        e0 = m.first_event()
        m.sync_killed_after_a_write(side="google", seed=1)
        assert m.killed  # while e0's event was inserted
        if then == "edit_in_google":
            m.edit_in_google(token=e0, name="summary")
        else:
            m.delete_in_google(e0)
        m.edit_through_proxy(token=e0, name="location")
        m.drain_outbox()

    replay(steps)


@pytest.mark.parametrize("policy", ["exchange-wins", "google-wins"])
def test_an_exchange_edit_after_a_killed_create_in_exchange_reaches_google(policy: str) -> None:
    """`calsync sync` killed once Exchange made the item of a new Google event, before
    the record; then the item is edited. (Found while fixing the kills on Google's side:
    the adopted item was its own base, and the edit read as no change.)"""

    def steps(m: TwoWaySync) -> None:
        m.choose_policy(policy)
        e0 = m.create_in_google()
        m.sync_killed_after_a_write(side="ews", seed=1)
        assert m.killed  # while e0's item was created
        m.edit_in_exchange(token=e0, name="location")
        m.run_job()

    replay(steps)


@_known(
    "calsync sync killed once Exchange made the item of a new Google event, before the "
    "record: with different fields edited on both sides since, neither side's version "
    "is the base, and without one the policy settles both fields: one edit is lost (the "
    "Google direction records the pair before its insert; an item's id is known only "
    "from CreateItem's answer)"
)
def test_different_fields_edited_after_a_killed_create_in_exchange_both_stay() -> None:
    def steps(m: TwoWaySync) -> None:
        e0 = m.create_in_google()
        m.sync_killed_after_a_write(side="ews", seed=1)
        assert m.killed  # while e0's item was created
        m.edit_different_fields(token=e0, first="location", second="summary")
        m.run_job()

    replay(steps)


def test_undo_takes_back_a_write_whose_answer_was_lost() -> None:
    """(Found by the machine: a write whose answer was lost, done but seen as an error, was
    not recorded, and undo left it.) Such a write is recorded with its version unknown,
    and undo takes it back from what it finds."""

    def steps(m: TwoWaySync) -> None:
        e0 = m.create_in_google()
        series = m.create_series_in_google()
        m.run_job()
        m.edit_different_fields(token=e0, first="summary", second="summary")
        m.delete_series_in_exchange(series)  # the next run deletes its event: recorded
        m.edit_in_google(token=e0, name="location")  # the next run patches Exchange ...
        # ... and loses the answer; the teardown's runs find nothing more to write, and
        # undo takes back the faulted run
        m.run_job_on_a_bad_network(ews_fault="lostAnswer", google_fault=None, rate=0.5, seed=3)

    replay(steps)


def test_undo_takes_back_an_exchange_item_whose_create_answer_was_lost() -> None:
    """(Found by the soak of 2026-12-01: after a run whose CreateItem for a new Google
    event was made but its answer lost, undo left the item in Exchange. The create was
    not recorded, its item's id unknown; the same run found the item by the event's id it
    carries and adopted it, recording only the tag it wrote to Google.) Such a create is
    recorded with its item unknown, and undo finds the item by the event's id."""

    def steps(m: TwoWaySync) -> None:
        m.create_in_google()
        m.create_in_google()
        # sm-1's CreateItem is made and its answer lost; sm-2's is answered. The run reads
        # the Exchange feed past its creates and adopts sm-1's item; the teardown's runs
        # find nothing more to write, and undo takes back the faulted run
        m.run_job_on_a_bad_network(ews_fault="lostAnswer", google_fault=None, rate=0.2, seed=1)

    replay(steps)


def test_undo_takes_back_a_google_event_whose_insert_answer_was_lost_then_taken() -> None:
    """(Found by the soak of 2026-12-01: after a run that made the Google event of a
    series new in Exchange, undo left the event. The insert was made and its answer lost;
    the client sent it again on a new connection, as httplib2 does, and that answer, a
    409, looked like Google's word that nothing was made: the insert was not recorded,
    and the 409 rule adopted the run's own event.) A write sent again after its first
    sending got no answer is maybe made whatever the second answer says, and is recorded
    for undo."""

    def steps(m: TwoWaySync) -> None:
        m.first_event()
        m.choose_policy(policy="newest-wins")
        event = m.create_in_google()
        m.run_job()
        m.create_series_in_exchange()
        m.edit_same_field_on_both_sides(exchange_first=True, name="time", token=event)
        # the series' events.insert is made, its answer lost; sent again, it meets 409
        m.run_job_on_a_bad_network(
            ews_fault="lostAnswer", google_fault="lostAnswer", rate=0.5, seed=3
        )

    replay(steps)


def test_a_newest_wins_contest_stays_settled_by_the_run_that_settled_it() -> None:
    """(Found by the soak of 2026-12-01, the model's own: under newest-wins, a clean run
    settled a location edited on both sides by the side touched last then (Google, whose
    summary edit came last); a later edit of another field through the proxy made Exchange
    the newest, and the model judged the old contest again by it.) A clean run's decision
    on a contest stands until the field is edited again."""

    def steps(m: TwoWaySync) -> None:
        m.choose_policy(policy="newest-wins")
        e0 = m.create_in_exchange()
        m.run_job()
        m.edit_same_field_on_both_sides(exchange_first=False, name="location", token=e0)
        m.edit_same_field_on_both_sides(exchange_first=True, name="summary", token=e0)
        m.run_job()  # location: Google's, as Google's event changed last
        m.edit_through_proxy(name="time", token=e0)  # Exchange's is now the newer event

    replay(steps)


def test_an_exception_whose_instance_write_failed_reaches_google_later() -> None:
    """(Found by the machine: a series made in Exchange with an exception, its Google
    event made, then the instance write failed (a 429): the next runs took the master's
    listing for carried, its version being the pair's, and never wrote the instance.)"""

    def steps(m: TwoWaySync) -> None:
        series = m.create_series_in_exchange()
        m.change_occurrence_in_exchange(token=series, index=4, change="rename")
        m.create_in_google()  # (one Google call more: the 429 meets the instance write)
        m.run_job_on_a_bad_network(ews_fault=None, google_fault="429", rate=0.2, seed=2)

    replay(steps)


@pytest.mark.parametrize("change", ["move", "rename"])
def test_an_occurrence_edited_through_the_proxy_then_in_exchange_keeps_the_last(
    change: str,
) -> None:
    """(Found by the machine: under google-wins, the job read the worker's instance write
    as Google's edit, and the proxy's value won over the later Exchange one.)"""

    def steps(m: TwoWaySync) -> None:
        m.choose_policy("google-wins")
        series = m.create_series_in_exchange()
        m.change_occurrence_through_proxy(token=series, index=1, change=change)
        m.change_occurrence_in_exchange(token=series, index=1, change=change)
        m.run_job()

    replay(steps)


@pytest.mark.parametrize("mapped_by", ["a failed run", "the proxy"])
def test_a_google_deletion_before_a_complete_listing_reaches_exchange(mapped_by: str) -> None:
    """(Found by the machine: an event deleted in Google while the job had no sync token,
    its first listing or every one since having met an error, was never seen deleted:
    full listings leave deleted events out, and its Exchange item stayed.) A full
    listing asks for the mapped events it did not list."""

    def steps(m: TwoWaySync) -> None:
        if mapped_by == "the proxy":
            e0 = m.create_through_proxy()  # the worker maps it before any run
        else:
            e0 = m.first_event()
            m.create_in_google()
            # maps e0; a 429 on the other event's write keeps the sync token unstored
            m.run_job_on_a_bad_network(google_fault="429", ews_fault=None, rate=0.5, seed=0)
        m.delete_in_google(e0)
        m.run_job()

    replay(steps)


@pytest.mark.parametrize("name", ["summary", "location"])
def test_a_late_proxy_entry_does_not_undo_what_the_job_carried(name: str) -> None:
    """(Found by the machine: a proxy create drained after the job made and updated its
    event wrote the request's older fields over it, conditioned only on the etag calsync
    last wrote.)"""

    def steps(m: TwoWaySync) -> None:
        m.choose_drains(late=True)
        e0 = m.create_through_proxy()
        m.run_job()
        m.edit_in_exchange(token=e0, name=name)
        m.run_job()
        m.drain_outbox()

    replay(steps)


@pytest.mark.parametrize("change", CHANGES)
def test_an_occurrence_changed_in_exchange_reaches_google(change: str) -> None:
    """Seen only by the job's feed (exchangelib, no proxy)."""
    def steps(m: TwoWaySync) -> None:
        series = m.create_series_in_exchange()
        m.run_job()
        m.change_occurrence_in_exchange(token=series, index=2, change=change)
        m.run_job()

    replay(steps)


@pytest.mark.parametrize("change", CHANGES)
def test_an_instance_changed_in_google_reaches_exchange(change: str) -> None:
    """A moved instance, a renamed one, a cancelled one."""
    def steps(m: TwoWaySync) -> None:
        series = m.create_series_in_google()
        m.run_job()
        m.change_instance_in_google(token=series, index=3, change=change)
        m.run_job()

    replay(steps)


@_known(
    "an item the proxy's worker mapped and then deleted directly in Exchange before the "
    "job's next run stays in Google until the job's next verification (verify_interval_s): "
    "the feed says nothing of an item created and deleted since its state, and the job "
    "looks for such items only among those it created itself"
)
def test_an_item_the_proxy_mapped_and_deleted_in_exchange_goes_at_the_next_run() -> None:
    def steps(m: TwoWaySync) -> None:
        m.run_job()
        e1 = m.create_through_proxy()
        m.delete_in_exchange(token=e1)
        m.run_job()
        m.no_duplicates()
        assert not m.world.google_events().get(e1), f"{e1} still in Google after the run"

    replay(steps)


@pytest.mark.parametrize("change", CHANGES)
def test_undo_takes_back_a_series_made_with_an_exception(change: str) -> None:
    """(Found by the machine: undo skipped the series, its own occurrence writes having
    changed its ChangeKey since its create was recorded, before 67bb93b.)"""

    def steps(m: TwoWaySync) -> None:
        series = m.create_series_in_google()
        m.change_instance_in_google(token=series, index=3, change=change)
        # the teardown's first run makes the series in Exchange; undo must take it back

    replay(steps)


def test_a_calsync_process_beside_two_stores_leaves_the_database_whole() -> None:
    """(Found by the machine: sync/state/sealing.private_file opened and closed the
    database file beside this process's connections, dropping its POSIX locks; another
    calsync process's exit then deleted the WAL under them: disk I/O error, malformed
    database.)"""

    def steps(m: TwoWaySync) -> None:
        m.first_event()
        m.run_job()  # the job's store
        m.create_through_proxy()  # the addon's store: a second one in this process
        m.sync_killed_after_a_write(side="ews", seed=0)
        assert not m.killed  # it wrote nothing there: it ended by itself, closing the db
        m.edit_in_google(token="sm-1", name="summary")
        m.run_job()  # the job's connection writes; the teardown's undo opens a third

    replay(steps)


@contextlib.contextmanager
def _let_in(*sources: str) -> Iterator[None]:
    """The machine with these NOT_YET sources let in (a replay that needs their rules'
    full behaviour: kills, proxy traffic before the first listing)."""
    saved = {name: NOT_YET.pop(name) for name in sources}
    try:
        yield
    finally:
        NOT_YET.update(saved)


def test_sm_9_time_conflicts_on_an_event_made_in_google_follow_exchange_wins() -> None:
    """(Found by the soak of 2026-12-01 within a 150-example chunk, 485 s: under
    exchange-wins, sm-9's time "edited" on both sides ended at Google's value. The
    machine's, not calsync's: Exchange's edit moved the time to the slot the item held
    already (sm-9 was made at slot 9 % 9 = 0, Exchange's edit drew 0 again), which changes
    no field, and a three-way merge rightly took Google's change. Edits now always move a
    field (`_other_slot`).)"""

    def steps(m: TwoWaySync) -> None:
        m.choose_drains(late=False)
        m.choose_policy(policy="exchange-wins")
        e0 = m.first_event()
        m.edit_same_field_on_both_sides(exchange_first=True, name="summary", token=e0)
        m.edit_same_field_on_both_sides(exchange_first=True, name="location", token=e0)
        m.conflict_after_a_run(exchange_first=False, name="time", token=e0)
        m.edit_same_field_on_both_sides(exchange_first=False, name="location", token=e0)
        m.create_in_google()
        e2 = m.create_in_google()
        m.conflict_after_a_run(exchange_first=False, name="summary", token=e2)
        m.conflict_after_a_run(exchange_first=False, name="summary", token=e0)
        m.create_in_google()
        m.conflict_after_a_run(exchange_first=True, name="time", token=e0)
        m.conflict_after_a_run(exchange_first=False, name="time", token=e2)
        m.edit_same_field_on_both_sides(exchange_first=False, name="summary", token=e0)

    replay(steps)
