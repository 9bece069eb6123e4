"""Mutation fuzzing over the corpus: whatever the bytes, nothing but `EwsParseError`
escapes `classify`, `parse` or the CLI's rendering of what `parse` returned."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree

from ews_parser import EwsParseError, classify, parse
from ews_parser.__main__ import envelope_json
from tests.ews_parser.conftest import FIXTURE_FILES

#: CALSYNC_FUZZ_SCALE=50 runs fifty times the examples (a longer hunt than CI's).
SCALE = int(os.environ.get("CALSYNC_FUZZ_SCALE", "1"))
CORPUS = {p.name: p.read_bytes() for p in FIXTURE_FILES}
NAMES = sorted(CORPUS)


def read_everything(body: bytes) -> None:
    """Run both depths and the CLI rendering; only EwsParseError may come out."""
    with contextlib.suppress(EwsParseError):
        classify(body)
    try:
        envelope = parse(body)
    except EwsParseError:
        return
    json.dumps(envelope_json(envelope))


# --- byte-level mutations -----------------------------------------------------------------

byte_edit = st.tuples(
    st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate"]),
    st.floats(min_value=0, max_value=1),
    st.binary(min_size=1, max_size=12),
)


@settings(max_examples=400 * SCALE)
@given(name=st.sampled_from(NAMES), edits=st.lists(byte_edit, min_size=1, max_size=4))
def test_byte_mutations_raise_only_parse_errors(
    name: str, edits: list[tuple[str, float, bytes]]
) -> None:
    body = bytearray(CORPUS[name])
    for op, where, data in edits:
        at = int(where * len(body))
        if op == "delete":
            del body[at : at + len(data)]
        elif op == "insert":
            body[at:at] = data
        elif op == "replace":
            body[at : at + len(data)] = data
        elif op == "truncate":
            del body[at:]
        else:
            body[at:at] = body[at : at + 64]
    read_everything(bytes(body))


# --- tree-level mutations: well-formed XML, wrong shapes -------------------------------------

TRICKY_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "99999999999999999999",
            "true",
            "maybe",
            "2024-02-30T10:00:00Z",
            "2024-01-01",
            "2024-01-01T10:00:00",
            "2024-01-01T10:00:00+25:00",
            "PT-5M",
            "Atlantis Standard Time",
            "calendar",
            "Error",
            "Success",
            "Monday Funday",
            "Last",
            "NaN",
        ]
    ),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=20),
)
ATTRIBUTES = [
    "Id",
    "ChangeKey",
    "InstanceIndex",
    "RecurringMasterId",
    "OccurrenceId",
    "ResponseClass",
    "FieldURI",
    "FieldIndex",
    "PropertyType",
    "PropertyId",
    "TimeZoneName",
    "StartDate",
    "EndDate",
    "MaxEntriesReturned",
    "Offset",
]
TAGS = [
    "{http://schemas.microsoft.com/exchange/services/2006/types}" + n
    for n in (
        "CalendarItem",
        "Message",
        "ItemId",
        "OccurrenceItemId",
        "Start",
        "End",
        "Recurrence",
        "MeetingTimeZone",
        "StartTimeZone",
        "Delete",
        "Create",
        "FieldURI",
        "ExtendedFieldURI",
        "CalendarFolder",
        "FolderId",
    )
] + [
    "{http://schemas.microsoft.com/exchange/services/2006/messages}" + n
    for n in ("ResponseMessages", "Items", "ItemChanges", "RootFolder", "Changes")
]

tree_edit = st.tuples(
    st.sampled_from(
        ["remove", "duplicate", "set_text", "set_attribute", "rename", "move", "empty"]
    ),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
    TRICKY_TEXT,
    st.sampled_from(ATTRIBUTES),
    st.sampled_from(TAGS),
)

_TRUSTED = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)


@settings(max_examples=600 * SCALE)
@given(name=st.sampled_from(NAMES), edits=st.lists(tree_edit, min_size=1, max_size=5))
@example(
    name="pyexchange_getitem_recurring_master_weekly_resp.xml",
    edits=[("set_text", 0.9, 0.0, "PT-5M", "Id", TAGS[0])],
)
def test_tree_mutations_raise_only_parse_errors(name: str, edits: list[tuple]) -> None:  # type: ignore[type-arg]
    root = etree.fromstring(CORPUS[name], _TRUSTED)
    for op, where, other, value, attribute, tag in edits:
        elements = [e for e in root.iter() if isinstance(e.tag, str)]
        target = elements[int(where * (len(elements) - 1))]
        parent = target.getparent()
        if op == "remove" and parent is not None:
            parent.remove(target)
        elif op == "duplicate" and parent is not None:
            parent.insert(parent.index(target), etree.fromstring(etree.tostring(target)))
        elif op == "set_text":
            target.text = value
        elif op == "set_attribute":
            target.set(attribute, value)
        elif op == "rename" and parent is not None:
            target.tag = tag
        elif op == "move" and parent is not None:
            destination = elements[int(other * (len(elements) - 1))]
            if target not in destination.iterancestors() and destination is not target:
                parent.remove(target)
                destination.append(target)
        elif op == "empty":
            for child in list(target):
                target.remove(child)
    read_everything(etree.tostring(root))


def test_fuzz_targets_exist() -> None:
    # the strategies above sample from these; an empty corpus would fuzz nothing
    assert len(NAMES) >= 80
    assert all(Path(p).suffix == ".xml" for p in NAMES)
