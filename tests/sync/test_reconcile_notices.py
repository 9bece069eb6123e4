"""The reconciler's change notices (sync/reconcile.py: `plan`, `apply`), whatever their
origin, on the in-memory calendars (sync/backends/memory.py, held to the stand-ins by the
contract suite): a version the pair holds already is skipped for every origin, and a
plan that read the other side says what the deletion rule will do."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import EWSDateTime, EWSTimeZone

from sync.backends.memory import MemoryExchange, MemoryGoogle
from sync.config import load_config
from sync.core.notice import ChangeNotice
from sync.reconcile import Reconciler, Skip, adoption_base, creation_base
from sync.store import Store
from tests.sync.conftest import ALICE

UTC = EWSTimeZone("UTC")


class Calendars:
    def __init__(self, tmp: Path, extra: str = "") -> None:
        (tmp / "calsync.toml").write_text(
            f'[store]\npath = "{tmp / "calsync.db"}"\n{extra}[[users]]\nmailbox = "{ALICE}"\n'
        )
        self.config = load_config(tmp / "calsync.toml")
        self.user = self.config.users[0]
        self.store = Store(self.config.store_path)
        self.google, self.exchange = MemoryGoogle(ALICE), MemoryExchange(ALICE)
        self.reconciler = Reconciler(self.config, self.store)

    def apply(self, notice: ChangeNotice, **kwargs: Any) -> Any:
        run = self.reconciler.begin(ALICE)
        try:
            return self.reconciler.apply(
                notice, run, user=self.user, google=self.google, exchange=self.exchange, **kwargs
            )
        finally:
            self.reconciler.finish(run)

    def plan(self, notice: ChangeNotice, *, read: bool = False) -> Any:
        readers = {"google": self.google, "exchange": self.exchange} if read else {}
        return self.reconciler.plan(notice, user=self.user, **readers)

    def item_notice(self, item_id: str, origin: Any = "exchange-feed") -> ChangeNotice:
        item = self.exchange.calendar_item(item_id)
        assert item is not None
        return ChangeNotice(ALICE, "exchange", item_id, item.changekey, "upsert", origin, item=item)

    def event_notice(self, event_id: str) -> ChangeNotice:
        event = self.google.get(event_id)
        assert event is not None
        kind: Any = "delete" if event.get("status") == "cancelled" else "upsert"
        return ChangeNotice(
            ALICE, "google", event_id, event.get("etag"), kind, "google-feed", event=event
        )

    def mapped_pair(self) -> tuple[str, str]:
        """An item made in Exchange, carried to Google by the Exchange feed's notice."""
        item_id, _ = self.exchange.create(
            {
                "subject": "Review",
                "start": EWSDateTime(2026, 3, 2, 8, tzinfo=UTC),
                "end": EWSDateTime(2026, 3, 2, 9, tzinfo=UTC),
            }
        )
        outcome = self.apply(self.item_notice(item_id))
        assert outcome.mapping is not None
        return item_id, outcome.mapping.google_event_id

    def writes(self) -> list[tuple[str, str | None]]:
        reads = ("GetItem", "FindItem", "GetFolder", "get", "list", "get_many")
        return [c for c in self.google.calls + self.exchange.calls if c[0] not in reads]


@pytest.fixture
def calendars(tmp_path: Path) -> Iterator[Calendars]:
    made = Calendars(tmp_path)
    yield made
    made.store.close()


@pytest.mark.parametrize("origin", ["exchange-feed", "proxy"])
def test_an_exchange_version_the_pair_holds_is_skipped(calendars: Calendars, origin: str) -> None:
    item_id, _ = calendars.mapped_pair()
    held = calendars.item_notice(item_id, origin)
    before = calendars.writes()
    with pytest.raises(Skip):
        calendars.apply(held)
    assert calendars.writes() == before  # nothing read as a change, nothing written
    if origin == "exchange-feed":
        assert calendars.plan(held).kind == "echo"


def test_a_google_version_the_pair_holds_is_skipped(calendars: Calendars) -> None:
    _, event_id = calendars.mapped_pair()
    held = calendars.event_notice(event_id)  # the version calsync wrote
    assert calendars.plan(held).kind == "echo"
    with pytest.raises(Skip):
        calendars.apply(held)
    calendars.google.patch(event_id, {"location": "Room 9"})  # a user's edit: no echo
    edited = calendars.event_notice(event_id)
    assert calendars.plan(edited).kind == "update-exchange"
    calendars.apply(edited)
    (item,) = calendars.exchange.all_items()
    assert item.location == "Room 9"
    # carried (the pair agreed on that version; calsync wrote nothing to Google): the same
    # version listed again (a sync token not stored, a full listing) is no change
    assert calendars.plan(edited).kind == "echo"


@pytest.mark.parametrize(
    ("modified_beats_delete", "kind"), [(False, "delete-google"), (True, "create-exchange")]
)
def test_a_plan_that_read_the_other_side_follows_the_deletion_rule(
    tmp_path: Path, modified_beats_delete: bool, kind: str
) -> None:
    extra = f"[sync]\nmodified_beats_delete = {str(modified_beats_delete).lower()}\n"
    calendars = Calendars(tmp_path, extra)
    item_id, event_id = calendars.mapped_pair()
    calendars.google.patch(event_id, {"summary": "Review, moved"})
    calendars.exchange.delete(item_id)
    deleted = ChangeNotice(ALICE, "exchange", item_id, None, "delete", "exchange-feed")
    assert calendars.plan(deleted).kind == "delete-google"  # nothing read: the rule waits
    assert calendars.plan(deleted, read=True).kind == kind
    calendars.apply(deleted)
    pages = calendars.google.list_pages(sync_token=None)
    live = [e for page in pages for e in page.get("items", [])]
    items = calendars.exchange.all_items()
    if modified_beats_delete:  # the Google edit survives, and Exchange gets it back
        assert [e["summary"] for e in live] == ["Review, moved"]
        assert [i.subject for i in items] == ["Review, moved"]
    else:
        assert (live, items) == ([], [])
    calendars.store.close()


# --- adopting an event whose record was lost -----------------------------------------------

CREATED = "2026-03-01T10:00:00.000Z"
WRITTEN = {"summary": "Plan", "location": "Room 1"}
ITEM_VIEW = {"summary": "Plan", "location": "Room 1 (Exchange's edit)"}
AFTER = dt.datetime(2026, 3, 1, 10, 5, tzinfo=dt.UTC)
BEFORE = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)

ADOPTIONS = [
    # (event updated, item last modified, expected base)
    ("untouched since made", CREATED, AFTER, WRITTEN),  # Exchange's edits go to it
    ("only Google changed it", "2026-03-01T10:03:00.000Z", BEFORE, ITEM_VIEW),
    ("both changed it since", "2026-03-01T10:03:00.000Z", AFTER, {}),  # the policy's
]


@pytest.mark.parametrize(
    ("updated", "item_modified", "base"),
    [case[1:] for case in ADOPTIONS],
    ids=[case[0] for case in ADOPTIONS],
)
def test_the_base_of_an_adopted_event(
    updated: str, item_modified: dt.datetime, base: dict[str, Any]
) -> None:
    event = {**WRITTEN, "id": "g1", "created": CREATED, "updated": updated}
    assert adoption_base(event, ITEM_VIEW, item_modified) == base


MADE = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
EVENT = {**WRITTEN, "id": "g1", "created": "2026-03-01T09:00:00.000Z"}

CREATIONS = [
    # (item last modified, event updated, expected base)
    ("untouched since made", MADE, "2026-03-01T10:03:00.000Z", ITEM_VIEW),  # Google's go to it
    ("only Exchange changed it", AFTER, "2026-03-01T09:30:00.000Z", WRITTEN),
    ("both changed it since", AFTER, "2026-03-01T10:03:00.000Z", {}),  # the policy's
]


@pytest.mark.parametrize(
    ("item_modified", "updated", "base"),
    [case[1:] for case in CREATIONS],
    ids=[case[0] for case in CREATIONS],
)
def test_the_base_of_an_adopted_item(
    item_modified: dt.datetime, updated: str, base: dict[str, Any]
) -> None:
    event = {**EVENT, "updated": updated}
    assert creation_base(ITEM_VIEW, MADE, item_modified, lambda: event) == base
