"""Helpers for the mapping tests: EWS fixtures read through ews_parser, as the worker
reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ews_parser import parse
from ews_parser.values import (
    CreateItemRequest,
    FieldUpdate,
    ParsedItem,
    Response,
    UpdateItemRequest,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ews"


def items(name: str, *, default_zone: str | None = None) -> list[Any]:
    """The CalendarItem models of a fixture (a CreateItem request or a response)."""
    body = parse((FIXTURES / name).read_bytes(), default_zone=default_zone).body
    if isinstance(body, CreateItemRequest):
        parsed = [i for i in body.items if isinstance(i, ParsedItem)]
    else:
        assert isinstance(body, Response)
        parsed = [i for m in body.messages for i in m.items]
    return [i.model for i in parsed if i.model is not None]


def item(name: str, index: int = 0, *, default_zone: str | None = None) -> Any:
    return items(name, default_zone=default_zone)[index]


def changes(name: str) -> list[tuple[FieldUpdate, ...]]:
    """The updates of each ItemChange of an UpdateItem request fixture."""
    body = parse((FIXTURES / name).read_bytes()).body
    assert isinstance(body, UpdateItemRequest)
    return [c.updates for c in body.changes]
