"""Two-way decisions (sync/core/decide.py), as tables."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from sync.core.decide import (
    Conflict,
    Merge,
    OtherSide,
    StateEmpty,
    check_safety,
    deletion_wins,
    merge,
    plan,
)
from sync.core.notice import ChangeNotice

FIELDS = ("summary", "location", "start")
BASE = {"summary": "Standup", "location": "Room 4", "start": {"dateTime": "2026-03-02T09:00:00Z"}}
EARLY = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LATE = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def changed(**values: object) -> dict[str, object]:
    return {**BASE, **values}


CASES = [
    # (what happened, exchange, google, policy, to_exchange, to_google, merged changes, conflicts)
    ("nothing changed", BASE, BASE, "exchange-wins", {}, {}, {}, []),
    (
        "google renamed it",
        BASE,
        changed(summary="Daily"),
        "exchange-wins",
        {"summary": "Daily"},
        {},
        {"summary": "Daily"},
        [],
    ),
    (
        "exchange moved it",
        changed(location="Room 5"),
        BASE,
        "exchange-wins",
        {},
        {"location": "Room 5"},
        {"location": "Room 5"},
        [],
    ),
    (
        "different fields merge",
        changed(location="Room 5"),
        changed(summary="Daily"),
        "exchange-wins",
        {"summary": "Daily"},
        {"location": "Room 5"},
        {"summary": "Daily", "location": "Room 5"},
        [],
    ),
    (
        "same change on both sides",
        changed(summary="Daily"),
        changed(summary="Daily"),
        "exchange-wins",
        {},
        {},
        {"summary": "Daily"},
        [],
    ),
    (
        "same field: exchange wins",
        changed(summary="E"),
        changed(summary="G"),
        "exchange-wins",
        {},
        {"summary": "E"},
        {"summary": "E"},
        [("summary", "exchange")],
    ),
    (
        "same field: google wins",
        changed(summary="E"),
        changed(summary="G"),
        "google-wins",
        {"summary": "G"},
        {},
        {"summary": "G"},
        [("summary", "google")],
    ),
    (
        "a cleared field is a change",
        changed(location=None),
        BASE,
        "exchange-wins",
        {},
        {"location": None},
        {"location": None},
        [],
    ),
]


@pytest.mark.parametrize(
    ("what", "exchange", "google", "policy", "to_exchange", "to_google", "merged", "conflicts"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_three_way_merge(
    what: str,
    exchange: dict,
    google: dict,
    policy: str,
    to_exchange: dict,
    to_google: dict,
    merged: dict,
    conflicts: list,
) -> None:
    result = merge(BASE, exchange, google, fields=FIELDS, policy=policy)  # type: ignore[arg-type]
    assert result.to_exchange == to_exchange
    assert result.to_google == to_google
    expected = {k: v for k, v in {**BASE, **merged}.items() if v is not None}
    assert result.merged == expected
    assert [(c.field, c.winner) for c in result.conflicts] == conflicts


@pytest.mark.parametrize(
    ("exchange_updated", "google_updated", "winner"),
    [(EARLY, LATE, "google"), (LATE, EARLY, "exchange"), (None, LATE, "exchange")],
)
def test_newest_wins(
    exchange_updated: dt.datetime | None, google_updated: dt.datetime, winner: str
) -> None:
    result = merge(
        BASE,
        changed(summary="E"),
        changed(summary="G"),
        fields=FIELDS,
        policy="newest-wins",
        exchange_updated=exchange_updated,
        google_updated=google_updated,
    )
    assert result.conflicts == (
        Conflict("summary", winner, "both sides changed summary; newest-wins"),
    )  # type: ignore[arg-type]
    assert result.merged["summary"] == ("G" if winner == "google" else "E")


def test_equality_can_be_the_mappings_normalisation() -> None:
    same_instant = {"dateTime": "2026-03-02T10:00:00+01:00"}
    result = merge(
        BASE,
        BASE,
        changed(start=same_instant),
        fields=FIELDS,
        same=lambda name, a, b: (
            (a or {}).get("dateTime", "").replace("10:00:00+01:00", "09:00:00Z")
            == (b or {}).get("dateTime", "").replace("10:00:00+01:00", "09:00:00Z")
            if name == "start"
            else a == b
        ),
    )
    assert result.to_exchange == {}


@pytest.mark.parametrize(
    ("other_changed", "modified_beats_delete", "deletes"),
    [(False, False, True), (True, False, True), (True, True, False), (False, True, True)],
)
def test_a_deletion_wins_unless_the_policy_says_otherwise(
    other_changed: bool, modified_beats_delete: bool, deletes: bool
) -> None:
    assert (
        deletion_wins(
            deleted_on="google",
            other_changed=other_changed,
            modified_beats_delete=modified_beats_delete,
        )
        is deletes
    )


def test_safety_refuses_mass_deletion_and_empty_sides() -> None:
    check_safety(
        mailbox="a@x", mapped=100, deletions=10, side_counts={"google": 90}, max_delete_share=0.5
    )
    with pytest.raises(StateEmpty, match="would delete 60 of 100"):
        check_safety(
            mailbox="a@x",
            mapped=100,
            deletions=60,
            side_counts={"google": 40},
            max_delete_share=0.5,
        )
    with pytest.raises(StateEmpty, match="google shows no events"):
        check_safety(
            mailbox="a@x", mapped=100, deletions=0, side_counts={"google": 0}, max_delete_share=0.5
        )
    # a small calendar may empty itself
    check_safety(
        mailbox="a@x", mapped=3, deletions=3, side_counts={"google": 0}, max_delete_share=0.5
    )


# --- what one change notice calls for -------------------------------------------------------

ME = "alice@example.com"
PAIR = ("I1", "g1")
OURS = {"extendedProperties": {"private": {"calsync_ews_item_id": "I9", "calsync_mailbox": ME}}}
THEIRS = {
    "extendedProperties": {"private": {"calsync_ews_item_id": "I9", "calsync_mailbox": "bob@x"}}
}


def item(kind: str = "Single") -> Any:
    return SimpleNamespace(type=kind)


def exchange(kind: str = "upsert", origin: str = "exchange-feed", **hint: Any) -> ChangeNotice:
    return ChangeNotice(ME, "exchange", "I1", "ck2", kind, origin, item=hint.get("item"))  # type: ignore[arg-type]


def google(kind: str = "upsert", **event: Any) -> ChangeNotice:
    return ChangeNotice(ME, "google", "g1", "e2", kind, "google-feed", event={"id": "g1", **event})  # type: ignore[arg-type]


PLANS = [
    # (what happened, notice, pair, held, made_for, expected (kind, item, event, reason))
    # -- the Exchange feed
    ("new item", exchange(item=item()), None, False, None,
     ("create-google", "I1", None, "new in Exchange")),
    ("changed item", exchange(item=item()), PAIR, False, None,
     ("update-google", "I1", "g1", "changed in Exchange")),
    ("our own write, or carried already", exchange(item=item()), PAIR, True, None,
     ("echo", "I1", "g1", "the pair holds this version")),
    ("an occurrence", exchange(item=item("Occurrence")), PAIR, False, None,
     ("skip", "I1", "g1", "occurrences ride with their series")),
    ("an item made for a Google event, its record lost", exchange(item=item()), None, False,
     "g7", ("forget", "I1", "g7", "made for a Google event, map lost: adopt")),
    ("deleted", exchange("delete"), PAIR, False, None,
     ("delete-google", "I1", "g1", "deleted in Exchange")),
    ("a deletion is never an echo", exchange("delete"), PAIR, True, None,
     ("delete-google", "I1", "g1", "deleted in Exchange")),
    ("deleted, never mapped", exchange("delete"), None, False, None,
     ("skip", "I1", None, "not mapped")),
    ("found gone by the job's check", exchange("delete", "verify"), PAIR, False, None,
     ("delete-google", "I1", "g1", "gone from Exchange")),
    # -- the Google feed
    ("new event", google(), None, False, None,
     ("create-exchange", None, "g1", "new in Google")),
    ("changed event", google(), PAIR, False, None,
     ("update-exchange", "I1", "g1", "changed in Google")),
    ("our own event, its record lost", google(**OURS), None, False, None,
     ("forget", "I9", "g1", "ours, map lost: adopt")),
    ("another mailbox's tag is no claim", google(**THEIRS), None, False, None,
     ("create-exchange", None, "g1", "new in Google")),
    ("an instance", google(recurringEventId="g0"), None, False, None,
     ("skip", None, "g1", "occurrences ride with their series")),
    ("cancelled", google("delete", status="cancelled"), PAIR, False, None,
     ("delete-exchange", "I1", "g1", "deleted in Google")),
    ("the instances of a mapped series", google("refresh"), PAIR, False, None,
     ("update-exchange", "I1", "g1", "instances changed in Google")),
    ("the instances of a series not mapped", google("refresh"), None, False, None,
     ("skip", None, "g1", "not mapped")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("notice", "pair", "held", "made_for", "expected"),
    [case[1:] for case in PLANS],
    ids=[case[0] for case in PLANS],
)
def test_plan(
    notice: ChangeNotice,
    pair: tuple[str, str] | None,
    held: bool,
    made_for: str | None,
    expected: tuple[str, str | None, str | None, str],
) -> None:
    action = plan(notice, pair, held=held, made_for=made_for)
    assert (action.kind, action.ews_item_id, action.google_event_id, action.reason) == expected
    assert action.mailbox == ME


EDITED, UNTOUCHED, GONE = (
    OtherSide(live=True, changed=True),
    OtherSide(live=True, changed=False),
    OtherSide(live=False, changed=False),
)
DELETIONS = [
    # (deleted on, the other side as read, modified_beats_delete, expected kind)
    ("exchange", UNTOUCHED, False, "delete-google"),
    ("exchange", EDITED, False, "delete-google"),
    ("exchange", EDITED, True, "create-exchange"),  # the edit wins: Exchange gets it back
    ("exchange", UNTOUCHED, True, "delete-google"),
    ("exchange", GONE, True, "forget"),  # gone from both
    ("google", EDITED, True, "create-google"),
    ("google", EDITED, False, "delete-exchange"),
]


@pytest.mark.parametrize(("side", "other", "modified_beats_delete", "kind"), DELETIONS)
def test_a_planned_deletion_follows_the_deletion_rule(
    side: str, other: OtherSide, modified_beats_delete: bool, kind: str
) -> None:
    notice = exchange("delete") if side == "exchange" else google("delete", status="cancelled")
    action = plan(
        notice, PAIR, held=False, other=other, modified_beats_delete=modified_beats_delete
    )
    assert action.kind == kind


MERGES = [
    # (the merge of both sides as read, expected kind, words in the reason)
    (Merge({}), "skip", "both sides agree"),
    (Merge({}, to_google={"summary": "E"}), "update-google", "changed in Exchange"),
    (Merge({}, to_exchange={"summary": "G"}), "update-exchange", "changed in Exchange"),
    (
        Merge(
            {},
            to_exchange={"location": "G"},
            to_google={"summary": "E"},
            conflicts=(Conflict("location", "google", "both sides changed location"),),
        ),
        "update-both",
        "location: Google wins",
    ),
]


@pytest.mark.parametrize(("merged", "kind", "words"), MERGES)
def test_a_planned_change_says_what_the_merge_writes(merged: Merge, kind: str, words: str) -> None:
    other = OtherSide(live=True, changed=True, merge=merged)
    action = plan(exchange(item=item()), PAIR, held=False, other=other)
    assert (action.kind, action.merge) == (kind, merged)
    assert words in action.reason


def test_a_change_whose_other_side_is_gone_follows_the_deletion_rule() -> None:
    for modified_beats_delete, kind in ((False, "delete-exchange"), (True, "create-google")):
        action = plan(
            exchange(item=item()),
            PAIR,
            held=False,
            other=GONE,
            modified_beats_delete=modified_beats_delete,
        )
        assert action.kind == kind
