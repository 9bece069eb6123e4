"""`python -m ews_parser FILE...`: one JSON object per file on stdout, for debugging and
acceptance. A file that cannot be read gets one line on stderr and exit status 1; the
other files are still read."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ews_parser.envelope import parse
from ews_parser.errors import EwsParseError
from ews_parser.values import (
    CreateItemRequest,
    DeleteItemRequest,
    Envelope,
    Fault,
    ItemId,
    ItemTarget,
    OccurrenceItemId,
    ParsedItem,
    RecurringMasterItemId,
    Response,
    ResponseObject,
    UpdateItemRequest,
)


def _empty(value: Any) -> bool:
    # exchangelib models compare by hashing their fields, which fails on list fields:
    # test emptiness by type, never with == or `in`.
    return value is None or (isinstance(value, list | tuple) and not value)


def jsonable(value: Any) -> Any:
    """Values as JSON can hold them: exchangelib models and our dataclasses as objects of
    their set fields, date-times in ISO 8601."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)  # exchangelib's Body/HTMLBody are str subclasses
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dt.tzinfo):
        return getattr(value, "key", None) or str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not _empty(getattr(value, f.name))
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    fields = getattr(type(value), "FIELDS", None)
    if fields is not None:  # an exchangelib EWSElement
        out = {"type": type(value).__name__}
        for f in fields:
            v = getattr(value, f.name, None)
            if not _empty(v):
                out[f.name] = jsonable(v)
        return out
    return str(value)


def _moment(value: Any, zone: Any, *, all_day_end: bool = False) -> str | None:
    """ISO 8601 with offset, in the item's own zone when it has one. All-day items read as
    midnight to midnight in their zone (EWS's meaning), end exclusive."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):  # an all-day date (exchangelib: end inclusive)
        day = value + dt.timedelta(days=1) if all_day_end else value
        return dt.datetime.combine(day, dt.time(), tzinfo=zone or dt.UTC).isoformat()
    return (value.astimezone(zone) if zone else value).isoformat()


def _recurrence(model: Any) -> Any:
    recurrence = getattr(model, "recurrence", None)
    if recurrence is None:
        return None
    out: dict[str, Any] = {"text": str(recurrence)}
    for part in ("pattern", "boundary"):
        obj = getattr(recurrence, part, None)
        if obj is not None:
            out[part] = jsonable(obj)
    return out


def _addresses(attendees: Any) -> list[str | None]:
    return [a.mailbox.email_address if a.mailbox else None for a in attendees or []]


def item_json(item: ParsedItem | ResponseObject) -> dict[str, Any]:
    if isinstance(item, ResponseObject):
        return {
            "item_class": item.item_class,
            "reference_item_id": jsonable(item.reference_item_id),
        }
    out: dict[str, Any] = {"item_class": item.item_class}
    if item.item_id:
        out["item_id"] = {"id": item.item_id.id, "change_key": item.item_id.change_key}
    model = item.model
    if model is not None:
        start_zone = model._start_timezone
        end_zone = model._end_timezone or start_zone
        out.update(
            subject=model.subject,
            start=_moment(model.start, start_zone),
            end=_moment(model.end, end_zone, all_day_end=True),
            is_all_day=bool(model.is_all_day),
            recurrence=_recurrence(model),
            location=model.location,
            calendar_item_type=model.type,
            uid=model.uid,
            organizer=jsonable(model.organizer),
            required_attendees=_addresses(model.required_attendees),
            optional_attendees=_addresses(model.optional_attendees),
            resources=_addresses(model.resources),
        )
    if item.legacy_time_zone:
        out["meeting_time_zone"] = jsonable(item.legacy_time_zone)
    if item.warnings:
        out["warnings"] = list(item.warnings)
    return out


def _target_json(target: ItemTarget) -> dict[str, Any]:
    if isinstance(target, ItemId):
        return {"id": target.id, "change_key": target.change_key}
    if isinstance(target, OccurrenceItemId):
        return {
            "recurring_master_id": target.recurring_master_id,
            "instance_index": target.instance_index,
            "change_key": target.change_key,
        }
    assert isinstance(target, RecurringMasterItemId)
    return {"occurrence_id": target.occurrence_id, "change_key": target.change_key}


def envelope_json(envelope: Envelope) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": envelope.kind,
        "operation": envelope.operation,
        "known": envelope.known,
    }
    header = jsonable(envelope.header)
    if header:
        out["header"] = header
    body = envelope.body
    if isinstance(body, Fault):
        out["fault"] = jsonable(body)
        out["response_code"] = body.response_code
        out["back_off_ms"] = body.back_off_ms
    elif isinstance(body, Response):
        out["messages"] = [
            {
                "response_class": msg.response_class,
                "response_code": msg.response_code,
                "message_text": msg.message_text,
                "back_off_ms": msg.back_off_ms,
                "item_ids": [
                    {"id": i.item_id.id, "change_key": i.item_id.change_key}
                    for i in msg.items
                    if i.item_id
                ],
                "items": [item_json(i) for i in msg.items],
                **({"folders": jsonable(msg.folders)} if msg.folders else {}),
                **(
                    {
                        "sync_state": msg.sync_state,
                        "includes_last_item_in_range": msg.includes_last_item_in_range,
                        "changes": [
                            {
                                "change_type": c.change_type,
                                **({"item": item_json(c.item)} if c.item else {}),
                                **({"item_id": jsonable(c.item_id)} if c.item_id else {}),
                                **({"folder": jsonable(c.folder)} if c.folder else {}),
                            }
                            for c in msg.changes
                        ],
                    }
                    if msg.sync_state is not None or msg.changes
                    else {}
                ),
            }
            for msg in body.messages
        ]
    elif isinstance(body, CreateItemRequest):
        out["saved_item_folder"] = jsonable(body.saved_item_folder)
        out["send_meeting_invitations"] = body.send_meeting_invitations
        out["items"] = [item_json(i) for i in body.items]
    elif isinstance(body, UpdateItemRequest):
        out["conflict_resolution"] = body.conflict_resolution
        out["changes"] = [
            {
                "item_id": change.target.id if isinstance(change.target, ItemId) else None,
                "change_key": change.target.change_key,
                "target": _target_json(change.target),
                "action": update.action,
                "field_uri": update.path.uri,
                "field": update.field,
                "value": jsonable(update.value),
            }
            for change in body.changes
            for update in change.updates
        ]
    elif isinstance(body, DeleteItemRequest):
        out["delete_type"] = body.delete_type
        out["send_meeting_cancellations"] = body.send_meeting_cancellations
        out["item_ids"] = [_target_json(t) for t in body.targets]
    else:
        out["request"] = jsonable(body)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ews_parser", description="Print EWS SOAP files as JSON, one per line."
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--zone", help="zone for all-day items that name none (e.g. 'UTC')")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            envelope = parse(path.read_bytes(), default_zone=args.zone)
        except (OSError, EwsParseError) as exc:
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"{path}: {message}", file=sys.stderr)
            status = 1
            continue
        try:
            record = {"file": str(path), **envelope_json(envelope)}
            line = json.dumps(record, ensure_ascii=False)
        except Exception as exc:  # a bug of ours: say so, and go on with the other files
            print(
                f"{path}: internal error printing it: {type(exc).__name__}: {exc}", file=sys.stderr
            )
            status = 1
            continue
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
