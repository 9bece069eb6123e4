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

`check_safety` refuses a run that would delete more than a share of a user's events, or
that finds one side suddenly empty (vdirsyncer's "storage went empty" guard).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ews_parser.errors import CalsyncError

Policy = Literal["exchange-wins", "google-wins", "newest-wins"]
POLICIES: tuple[Policy, ...] = ("exchange-wins", "google-wins", "newest-wins")
Side = Literal["exchange", "google"]


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
    """One step of a plan, with the reason it is there (for --dry-run and `explain`)."""

    kind: Literal[
        "create-exchange",
        "create-google",
        "update-exchange",
        "update-google",
        "update-both",
        "delete-exchange",
        "delete-google",
        "forget",
        "skip",
    ]
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
