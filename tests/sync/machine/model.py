"""What the user did, as the state machine remembers it, and what the policy says must come
of it.

Each event the machine makes is one `Logical` event, named by a token in its description
(Exchange body), wherever it lives. Every edit is remembered with its side, its value and
whether it is *contested*: the other side edited the same field since the last clean run
(a run without errors, which brings every pair into agreement). An uncontested edit must
win. A contested one is the policy's to settle:

- exchange-wins / google-wins: the winning side's last value of the field;
- newest-wins: the side whose event changed last (its last edit of any field) wins,
  provided no sync wrote to either side since the contest began (a failed run or the
  proxy's worker may have, and its write makes that side newer);

and where a sync may already have carried one side's value before the other edit came
(a failed run, the proxy's worker), the later edit may have been uncontested after all:
then either that edit or the policy's winner is right, never a third value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SIDES = ("exchange", "google")


@dataclass(frozen=True, slots=True)
class Edit:
    side: str
    value: Any
    contested: bool
    #: the stand-ins' clock when it was made
    at: float


@dataclass
class Logical:
    """One event as the user sees it, wherever it lives; `token` is in its description."""

    token: str
    deleted: bool = False
    series: bool = False
    #: field -> every edit in order
    edits: dict[str, list[Edit]] = field(default_factory=dict)
    #: field -> sides that edited it since the last clean run
    since_clean: dict[str, set[str]] = field(default_factory=dict)
    #: side -> when the user last changed the event there
    touched: dict[str, float] = field(default_factory=dict)
    #: a sync may have written to it since the last clean run (failed run, the worker)
    synced_since_clean: bool = False
    #: field -> the values a clean run could settle its contest to, as of that run: a
    #: later edit of another field moves `touched`, not what that run decided
    settled: dict[str, set[Any]] = field(default_factory=dict)

    def record(self, side: str, name: str, value: Any, at: float) -> None:
        other = "google" if side == "exchange" else "exchange"
        contested = other in self.since_clean.get(name, set())
        self.edits.setdefault(name, []).append(Edit(side, value, contested, at))
        self.settled.pop(name, None)
        self.since_clean.setdefault(name, set()).add(side)
        self.touched[side] = at

    def clean(self, policy: str) -> None:
        """A run without errors brought both sides into agreement: each contest it found
        is settled as the policy stood then (newest-wins: the side touched last so far)."""
        for name, edits in self.edits.items():
            if name not in self.settled and edits[-1].contested:
                self.settled[name] = self.acceptable(name, policy)
        self.since_clean.clear()
        self.synced_since_clean = False

    def acceptable(self, name: str, policy: str) -> set[Any]:
        """The values the field may hold once both sides agree. (An occurrence's own
        fields, "occ<index>.<aspect>", have no newest side the machine can tell.)"""
        if name in self.settled:
            return self.settled[name]
        edits = self.edits[name]
        last = edits[-1]
        if not last.contested:
            return {last.value}
        occurrence = name.startswith("occ") and policy == "newest-wins"
        winner = None if occurrence else self.winner(policy)
        if winner is None:  # the newest cannot be told: any side's last value
            return {_last_on(edits, side).value for side in SIDES if _has(edits, side)}
        if last.side == winner:
            return {last.value}
        return {last.value, _last_on(edits, winner).value}

    def winner(self, policy: str) -> str | None:
        if policy == "exchange-wins":
            return "exchange"
        if policy == "google-wins":
            return "google"
        if self.synced_since_clean or len(self.touched) < 2:
            return None
        return "google" if self.touched["google"] > self.touched["exchange"] else "exchange"


def _has(edits: list[Edit], side: str) -> bool:
    return any(e.side == side for e in edits)


def _last_on(edits: list[Edit], side: str) -> Edit:
    return [e for e in edits if e.side == side][-1]
