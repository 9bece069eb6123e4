"""Every file of the wire corpus parses, at both depths, to the kind and operation its
name says; and the two depths agree on what they both read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ews_parser import classify, parse
from ews_parser.values import (
    CreateItemRequest,
    DeleteItemRequest,
    Fault,
    GetItemRequest,
    ItemId,
    MoveItemRequest,
    ParsedItem,
    Response,
    ResponseObject,
    UpdateItemRequest,
)
from tests.ews_parser.conftest import FIXTURE_FILES, FIXTURES, SHARED_CORPUS, SHARED_FILES

OPERATIONS = {
    name.lower(): name
    for name in (
        "CreateItem",
        "UpdateItem",
        "DeleteItem",
        "MoveItem",
        "GetItem",
        "FindItem",
        "SyncFolderItems",
        "GetFolder",
        "FindFolder",
        "SyncFolderHierarchy",
    )
}


def expected_from_name(path: Path) -> tuple[str, str | None]:
    """The corpus names files `<origin>_<operation>_..._(req|resp).xml`; faults say
    `soapfault`."""
    stem = path.stem.lower()
    if "soapfault" in stem:
        return "fault", None
    kind = "request" if re.search(r"_req\d*$", stem) else "response"
    for token in stem.split("_"):
        if token in OPERATIONS:
            return kind, OPERATIONS[token]
    raise AssertionError(f"cannot tell the operation of {path.name}")


ALL_FILES = [pytest.param(p, id=f"fixtures/{p.parent.name}/{p.name}") for p in FIXTURE_FILES] + [
    pytest.param(p, id=f"shared/{p.parent.name}/{p.name}") for p in SHARED_FILES
]


def test_the_corpus_is_there() -> None:
    # a glob that finds nothing would make every test below vacuous
    assert len(FIXTURE_FILES) >= 80


@pytest.mark.parametrize("path", ALL_FILES)
def test_every_file_parses_to_its_kind_and_operation(path: Path) -> None:
    body = path.read_bytes()
    kind, operation = expected_from_name(path)
    envelope = parse(body)
    assert (envelope.kind, envelope.operation) == (kind, operation)
    assert envelope.known
    classification = classify(body)
    assert (classification.kind, classification.operation) == (kind, operation)
    assert classification.known


@pytest.mark.skipif(not SHARED_FILES, reason="shared/ is not beside this checkout")
def test_fixtures_hold_every_shared_file_unchanged() -> None:
    for shared in SHARED_FILES:
        copy = FIXTURES / shared.relative_to(SHARED_CORPUS)
        assert copy.read_bytes() == shared.read_bytes(), copy


def _ids(items: tuple[ParsedItem, ...]) -> list[tuple[str, str | None]]:
    return [(i.item_id.id, i.item_id.change_key) for i in items if i.item_id]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in FIXTURE_FILES])
def test_classify_agrees_with_parse(path: Path) -> None:
    body = path.read_bytes()
    cheap = classify(body)
    full = parse(body).body
    if isinstance(full, Fault):
        assert cheap.fault_code == full.response_code
        assert cheap.back_off_ms == full.back_off_ms
    elif isinstance(full, Response):
        assert len(cheap.messages) == len(full.messages)
        for summary, message in zip(cheap.messages, full.messages, strict=True):
            assert summary.response_class == message.response_class
            assert summary.response_code == message.response_code
            assert summary.back_off_ms == message.back_off_ms
            parsed_ids = _ids(message.items) + [
                (c.item.item_id.id, c.item.item_id.change_key)
                if c.item and c.item.item_id
                else (c.item_id.id, c.item_id.change_key)
                for c in message.changes
                if (c.item and c.item.item_id) or c.item_id
            ]
            assert [(r.id, r.change_key) for r in summary.items] == parsed_ids
            assert [r.id for r in summary.folders] == [
                f.folder_id.id for f in message.folders if f.folder_id
            ] + [c.folder.folder_id.id for c in message.changes if c.folder and c.folder.folder_id]
    elif isinstance(full, DeleteItemRequest | MoveItemRequest | GetItemRequest):
        assert cheap.targets == full.targets
    elif isinstance(full, UpdateItemRequest):
        assert cheap.targets == tuple(change.target for change in full.changes)
    elif isinstance(full, CreateItemRequest):
        assert cheap.item_classes == tuple(i.item_class for i in full.items)
        references = tuple(
            i.reference_item_id
            for i in full.items
            if isinstance(i, ResponseObject) and isinstance(i.reference_item_id, ItemId)
        )
        assert cheap.targets == references
        assert cheap.folders == ((full.saved_item_folder,) if full.saved_item_folder else ())
