"""Two-way decisions (sync/core/decide.py), as tables."""

from __future__ import annotations

import datetime as dt

import pytest

from sync.core.decide import Conflict, StateEmpty, check_safety, deletion_wins, merge

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
