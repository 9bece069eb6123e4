"""Series exceptions decided (sync/core/series.py), as tables: what each side changed since
the agreed version (or since the series, before any), and the merge that follows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sync.core.series import (
    BASE_PROPERTY,
    EXCEPTION_FIELDS,
    Agreed,
    agreed_of,
    changed,
    field_hash,
    merge_occurrence,
    with_agreed,
)

BERLIN_9 = {"dateTime": "2026-03-09T09:00:00+01:00", "timeZone": "Europe/Berlin"}
BERLIN_930 = {"dateTime": "2026-03-09T09:30:00+01:00", "timeZone": "Europe/Berlin"}
#: the same instants as Exchange gives them back for a zone it keeps as another
OSLO_9 = {"dateTime": "2026-03-09T09:00:00+01:00", "timeZone": "Europe/Oslo"}
OSLO_930 = {"dateTime": "2026-03-09T09:30:00+01:00", "timeZone": "Europe/Oslo"}
PLAIN = {"summary": "Standup", "location": "Room 1", "start": BERLIN_9, "end": BERLIN_930}
EARLY = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LATE = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def occurrence(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in {**PLAIN, **values}.items() if v is not None}


def test_the_fields_are_an_occurrences_own() -> None:
    assert "recurrence" not in EXCEPTION_FIELDS and "iCalUID" not in EXCEPTION_FIELDS
    assert "attendees" not in EXCEPTION_FIELDS  # one way, with the master
    assert {"summary", "start", "end", "location", "extendedProperties"} <= set(EXCEPTION_FIELDS)


def test_agreed_round_trips_through_the_instance_property() -> None:
    agreed = Agreed.of(occurrence(start=OSLO_9), occurrence(summary="Moved"))
    body = with_agreed({"summary": "Moved", "extendedProperties": {"private": {"k": "v"}}}, agreed)
    private = body["extendedProperties"]["private"]
    assert private["k"] == "v" and len(private[BASE_PROPERTY]) < 1024
    assert agreed_of(body) == agreed
    assert body["summary"] == "Moved"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        42,
        "2:" + "0" * 72 + ":" + "0" * 72,  # another version
        "1:" + "0" * 71 + ":" + "0" * 72,  # cut short
        "1:abc",
    ],
)
def test_an_unreadable_agreed_value_is_none(value: object) -> None:
    assert Agreed.decode(value) is None
    assert agreed_of({"extendedProperties": {"private": {BASE_PROPERTY: value}}}) is None


def test_equal_values_spelled_alike_hash_alike() -> None:
    # Google's offsets and "Z" spell one instant: one hash
    utc = {"dateTime": "2026-03-09T08:00:00Z", "timeZone": "Europe/Berlin"}
    assert field_hash("start", BERLIN_9) == field_hash("start", utc)
    assert field_hash("start", BERLIN_9) != field_hash("start", OSLO_9)
    assert field_hash("summary", "") == field_hash("summary", None)


CHANGED = [
    # (what happened, view, agreed view (None: none yet), plain, fields changed)
    ("a plain occurrence, nothing agreed", PLAIN, None, PLAIN, set()),
    ("moved, nothing agreed", occurrence(start=OSLO_9), None, PLAIN, {"start"}),
    ("renamed, nothing agreed", occurrence(summary="S"), None, PLAIN, {"summary"}),
    ("location cleared, nothing agreed", occurrence(location=None), None, PLAIN, {"location"}),
    ("as agreed", occurrence(summary="S"), occurrence(summary="S"), PLAIN, set()),
    ("as agreed, spelled its own way", occurrence(start=OSLO_9), occurrence(start=OSLO_9), PLAIN, set()),
    ("changed since agreed", occurrence(summary="T"), occurrence(summary="S"), PLAIN, {"summary"}),
    ("back to the series since agreed", PLAIN, occurrence(summary="S"), PLAIN, {"summary"}),
]


@pytest.mark.parametrize(
    ("view", "agreed", "plain", "expected"),
    [case[1:] for case in CHANGED],
    ids=[case[0] for case in CHANGED],
)
def test_changed(
    view: dict[str, Any], agreed: dict[str, Any] | None, plain: dict[str, Any], expected: set[str]
) -> None:
    known = Agreed.of(agreed, agreed).exchange if agreed is not None else None
    assert changed(view, agreed=known, plain=plain) == expected


MERGES = [
    # (what happened, exchange, google, exchange changed, google changed, policy,
    #  to_exchange, to_google, conflicts)
    (
        "moved in Google",
        PLAIN,
        occurrence(start=BERLIN_930, end={**BERLIN_930, "dateTime": "2026-03-09T10:00:00+01:00"}),
        set(),
        {"start", "end"},
        "exchange-wins",
        {"start", "end"},
        set(),
        [],
    ),
    ("renamed in Exchange", occurrence(summary="E"), PLAIN, {"summary"}, set(), "exchange-wins",
     set(), {"summary"}, []),
    ("removed in Google", PLAIN, occurrence(location=None), set(), {"location"}, "exchange-wins",
     {"location"}, set(), []),
    ("both renamed alike", occurrence(summary="X"), occurrence(summary="X"), {"summary"},
     {"summary"}, "exchange-wins", set(), set(), []),
    ("both renamed, exchange wins", occurrence(summary="E"), occurrence(summary="G"),
     {"summary"}, {"summary"}, "exchange-wins", set(), {"summary"}, [("summary", "exchange")]),
    ("both renamed, google wins", occurrence(summary="E"), occurrence(summary="G"),
     {"summary"}, {"summary"}, "google-wins", {"summary"}, set(), [("summary", "google")]),
    ("both renamed, newest (google) wins", occurrence(summary="E"), occurrence(summary="G"),
     {"summary"}, {"summary"}, "newest-wins", {"summary"}, set(), [("summary", "google")]),
    ("each its own field", occurrence(summary="E"), occurrence(location="G"), {"summary"},
     {"location"}, "exchange-wins", {"location"}, {"summary"}, []),
    # the zones Exchange and Google spell differently, neither side changed: nothing to write
    ("agreed, spelled two ways", occurrence(start=OSLO_9, end=OSLO_930), PLAIN, set(), set(),
     "exchange-wins", set(), set(), []),
]


@pytest.mark.parametrize(
    ("exchange", "google", "e_changed", "g_changed", "policy", "to_exchange", "to_google",
     "conflicts"),
    [case[1:] for case in MERGES],
    ids=[case[0] for case in MERGES],
)
def test_merge_occurrence(
    exchange: dict[str, Any],
    google: dict[str, Any],
    e_changed: set[str],
    g_changed: set[str],
    policy: Any,
    to_exchange: set[str],
    to_google: set[str],
    conflicts: list[tuple[str, str]],
) -> None:
    result = merge_occurrence(
        exchange,
        google,
        exchange_changed=frozenset(e_changed),
        google_changed=frozenset(g_changed),
        policy=policy,
        exchange_updated=EARLY,
        google_updated=LATE,
    )
    assert set(result.to_exchange) == to_exchange
    assert set(result.to_google) == to_google
    assert [(c.field, c.winner) for c in result.conflicts] == conflicts
    for name in to_exchange:
        assert result.to_exchange[name] == google.get(name)
    for name in to_google:
        assert result.to_google[name] == exchange.get(name)
