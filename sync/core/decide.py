"""Two-way decisions, as pure functions (vdirsyncer's plan -> actions).

Three-way and field by field: the base is the last version both sides agreed on (the
snapshot in the id map), and each side's current version is compared with it in Google's
shape (the mapping's `to_google`), with values compared as the mapping normalises them.

- a field only one side changed goes to the other side;
- a field both sides changed to the same value is no conflict;
- a field both changed differently is a conflict, settled by the user's policy
  (exchange-wins by default, google-wins, newest-wins) and recorded;
- a deletion on one side wins over a modification on the other unless the policy says
  `modified_beats_delete`; a deleted event never comes back by itself.

`plan` decides what one change notice calls for (sync/core/notice.py), from what was read:
the notice, the pair the id map holds, and, when read, the pair's other side. The
reconciler (sync/reconcile.py) applies the plan; the dry run prints it, the job's safety
rule counts its deletions.

`check_safety` refuses a run that would delete more than a share of a user's events, or
that finds one side suddenly empty (vdirsyncer's "storage went empty" guard).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ews_parser.errors import CalsyncError
from sync.core.events import EWS_ID_PROPERTY, MAILBOX_PROPERTY

if TYPE_CHECKING:
    from sync.core.notice import ChangeNotice

Policy = Literal["exchange-wins", "google-wins", "newest-wins"]
POLICIES: tuple[Policy, ...] = ("exchange-wins", "google-wins", "newest-wins")
Side = Literal["exchange", "google"]
Kind = Literal[
    "create-exchange",
    "create-google",
    "update-exchange",
    "update-google",
    "update-both",
    "delete-exchange",
    "delete-google",
    "forget",
    "skip",
    "echo",
]


class SyncConflict(CalsyncError):
    """A conflict the policy cannot settle."""


class StateEmpty(CalsyncError):
    """A run stopped because one side went suddenly empty or would lose too much."""


@dataclass(frozen=True, slots=True)
class Conflict:
    field: str
    winner: Side
    reason: str


@dataclass(frozen=True, slots=True)
class Merge:
    """What to write where: `to_exchange` / `to_google` hold the fields (Google-shaped)
    each side must take; `merged` is the new base for both."""

    merged: dict[str, Any]
    to_exchange: dict[str, Any] = field(default_factory=dict)
    to_google: dict[str, Any] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a plan, with the reason it is there (for --dry-run and `explain`).
    `forget` adopts a pair whose record was lost (the map is rebuilt from the tag or the
    property calsync wrote), or forgets one gone from both sides; `echo` is a version the
    pair holds already (calsync's own write, or a change carried since); `skip` is
    nothing to do, said why."""

    kind: Kind
    mailbox: str
    ews_item_id: str | None
    google_event_id: str | None
    reason: str
    merge: Merge | None = None


def merge(
    base: Mapping[str, Any],
    exchange: Mapping[str, Any],
    google: Mapping[str, Any],
    *,
    fields: Sequence[str],
    policy: Policy = "exchange-wins",
    exchange_updated: dt.datetime | None = None,
    google_updated: dt.datetime | None = None,
    same: Any = None,
) -> Merge:
    """Merge the two sides field by field against their common base.

    `same(field, a, b)` says whether two values are equal (default: ==); pass the
    mapping's normalisation so that spellings of one value are one value.
    """

    def equal(name: str, a: Any, b: Any) -> bool:
        return bool(same(name, a, b)) if same is not None else a == b

    merged: dict[str, Any] = {}
    to_exchange: dict[str, Any] = {}
    to_google: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for name in fields:
        b, e, g = base.get(name), exchange.get(name), google.get(name)
        if equal(name, e, g):
            merged[name] = e
        elif equal(name, e, b):  # only Google changed it
            merged[name] = g
            to_exchange[name] = g
        elif equal(name, g, b):  # only Exchange changed it
            merged[name] = e
            to_google[name] = e
        else:
            winner = _winner(policy, exchange_updated, google_updated)
            conflicts.append(Conflict(name, winner, f"both sides changed {name}; {policy}"))
            if winner == "exchange":
                merged[name] = e
                to_google[name] = e
            else:
                merged[name] = g
                to_exchange[name] = g
    return Merge(
        merged={k: v for k, v in merged.items() if v is not None},
        to_exchange=to_exchange,
        to_google=to_google,
        conflicts=tuple(conflicts),
    )


def _winner(
    policy: Policy, exchange_updated: dt.datetime | None, google_updated: dt.datetime | None
) -> Side:
    if policy == "google-wins":
        return "google"
    if policy == "newest-wins" and exchange_updated and google_updated:
        return "google" if google_updated > exchange_updated else "exchange"
    return "exchange"


def deletion_wins(*, deleted_on: Side, other_changed: bool, modified_beats_delete: bool) -> bool:
    """Whether a deletion on one side should delete the other side's version too."""
    return not (other_changed and modified_beats_delete)


def check_safety(
    *,
    mailbox: str,
    mapped: int,
    deletions: int,
    side_counts: Mapping[Side, int | None],
    max_delete_share: float,
    min_events: int = 5,
) -> None:
    """Refuse a run that would delete more than `max_delete_share` of the user's mapped
    events, or that sees a side with no events while the map holds some."""
    if mapped < min_events:
        return
    for side, count in side_counts.items():
        if count == 0:
            raise StateEmpty(
                f"{mailbox}: {side} shows no events while {mapped} are mapped; stopped "
                "for this user (restore the calendar, or run `calsync rebuild-mapping`)"
            )
    if deletions / mapped > max_delete_share:
        raise StateEmpty(
            f"{mailbox}: this run would delete {deletions} of {mapped} events "
            f"(more than {max_delete_share:.0%}); stopped for this user. "
            "Check both calendars, then run `calsync sync --user ... --force-deletes`"
        )


@dataclass(frozen=True, slots=True)
class OtherSide:
    """What was read of a pair's other side when a notice was planned (a dry run reads
    it; a run decides again as it applies, with both sides read then)."""

    live: bool
    #: it changed since the pair last agreed (the snapshot)
    changed: bool
    #: the three-way merge of both sides (both live, a change notice)
    merge: Merge | None = None


#: Series instances in Google, occurrences and exceptions in Exchange: the reconciler
#: carries them with their series (sync/series.py).
RIDES_WITH_SERIES = "occurrences ride with their series"
#: Exchange item types a master-level notice is about.
_MASTER_TYPES = (None, "Single", "RecurringMaster")

_CREATE: dict[Side, Kind] = {"exchange": "create-exchange", "google": "create-google"}
_UPDATE: dict[Side, Kind] = {"exchange": "update-exchange", "google": "update-google"}
_DELETE: dict[Side, Kind] = {"exchange": "delete-exchange", "google": "delete-google"}
_OTHER: dict[Side, Side] = {"exchange": "google", "google": "exchange"}
_NAME: dict[Side, str] = {"exchange": "Exchange", "google": "Google"}


def plan(
    notice: ChangeNotice,
    pair: tuple[str, str] | None,
    *,
    held: bool,
    made_for: str | None = None,
    other: OtherSide | None = None,
    modified_beats_delete: bool = False,
) -> Action:
    """What one change notice calls for.

    `pair`: the mapped (Exchange item id, Google event id) the notice is about, if any;
    `held`: the notice's version is one the pair holds already (an echo of calsync's own
    write, or a change carried since); `made_for`: the Google event an Exchange item was
    created for (the property calsync writes with CreateItem); `other`: the pair's other
    side, when it was read: a deletion then follows the deletion rule
    (`modified_beats_delete`), a change the merge, the policy settling conflicts."""
    side, there = notice.side, _OTHER[notice.side]
    here_name, there_name = _NAME[side], _NAME[there]

    def action(kind: Kind, reason: str, merged: Merge | None = None) -> Action:
        adopted = kind == "forget" and pair is None
        if side == "exchange":
            event_id = made_for if adopted else (pair[1] if pair else None)
            return Action(kind, notice.mailbox, notice.key, event_id, reason, merged)
        item_id = _tag(notice) if adopted else (pair[0] if pair else None)
        return Action(kind, notice.mailbox, item_id, notice.key, reason, merged)

    event = notice.event or {}
    if side == "google" and event.get("recurringEventId") and notice.kind != "refresh":
        return action("skip", RIDES_WITH_SERIES)
    if held and notice.kind != "delete":
        return action("echo", "the pair holds this version")
    if side == "exchange" and getattr(notice.item, "type", None) not in _MASTER_TYPES:
        return action("skip", RIDES_WITH_SERIES)
    if notice.kind == "delete":
        deleted = "gone from Exchange" if notice.origin == "verify" else f"deleted in {here_name}"
        if pair is None:
            return action("skip", "not mapped")
        if other is not None and not other.live:
            return action("forget", "gone from both sides")
        if other is not None and not deletion_wins(
            deleted_on=side,
            other_changed=other.changed,
            modified_beats_delete=modified_beats_delete,
        ):
            return action(_CREATE[side], f"{deleted} but edited in {there_name}: the edit wins")
        return action(_DELETE[there], deleted)
    if pair is None:
        if notice.kind == "refresh":
            return action("skip", "not mapped")
        if side == "exchange" and made_for is not None:
            # calsync made this item for a Google event and lost the record (a kill
            # between CreateItem and the store): the pair again, never a second event
            return action("forget", "made for a Google event, map lost: adopt")
        if side == "google" and _tag(notice) is not None:
            return action("forget", "ours, map lost: adopt")
        return action(_CREATE[there], f"new in {here_name}")
    changed = f"changed in {here_name}"
    if notice.kind == "refresh":
        changed = "instances changed in Google" if side == "google" else "exceptions changed"
    if other is None:
        return action(_UPDATE[there], changed)
    if not other.live:  # changed here, deleted there
        if not deletion_wins(
            deleted_on=there, other_changed=True, modified_beats_delete=modified_beats_delete
        ):
            return action(_CREATE[there], f"{changed} but deleted in {there_name}: the edit wins")
        return action(_DELETE[side], f"deleted in {there_name}")
    merged = other.merge
    if merged is None:
        return action(_UPDATE[there], changed)
    conflicts = "".join(f"; {c.reason}: {_NAME[c.winner]} wins" for c in merged.conflicts)
    if merged.to_exchange and merged.to_google:
        return action("update-both", changed + conflicts, merged)
    if merged.to_exchange or merged.to_google:
        to: Side = "exchange" if merged.to_exchange else "google"
        return action(_UPDATE[to], changed + conflicts, merged)
    return action("skip", f"{changed}; both sides agree", merged)


def _tag(notice: ChangeNotice) -> str | None:
    """The Exchange item a Google event is tagged as calsync's event of, for this
    mailbox."""
    private = ((notice.event or {}).get("extendedProperties") or {}).get("private") or {}
    if private.get(MAILBOX_PROPERTY) != notice.mailbox:
        return None
    return private.get(EWS_ID_PROPERTY) or None
