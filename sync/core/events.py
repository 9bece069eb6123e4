"""What calsync writes into a Google event and reads back, as pure functions: the private
tag tying an event to its Exchange item, the managed fields, patches between versions."""

from __future__ import annotations

from typing import Any, Final

from mapping.event import MANAGED_FIELDS

#: Private extended properties that tie a Google event to its Exchange item, so the map
#: can be rebuilt from Google alone.
EWS_ID_PROPERTY = "calsync_ews_item_id"
MAILBOX_PROPERTY = "calsync_mailbox"

#: The Google fields calsync writes and compares: the core mapping's and the attendees.
#: People go one way, Exchange to Google (meetings are organised in Exchange; Google gets
#: them with sendUpdates=none): an attendee edit made in Google is not written back.
#: Not the organizer (Google sets it, only an import could write it) nor conferenceData
#: (written only with conferenceDataVersion=1): comparing them would never settle.
WRITTEN_FIELDS: Final[tuple[str, ...]] = (*MANAGED_FIELDS, "attendees")
ONE_WAY_FIELDS: Final = frozenset({"attendees"})


def google_body(item: Any, *, default_zone: str | None = None) -> dict[str, Any]:
    """The Google event calsync writes for an Exchange calendar item (exchangelib's
    CalendarItem): the core mapping, plus the attendees with their roles and responses
    (mapping.people), so the real-time path and the job write the same fields."""
    from mapping.event import to_google
    from mapping.people import attendees_to_google

    event: dict[str, Any] = dict(to_google(item, default_zone=default_zone))
    attendees = attendees_to_google(
        item.required_attendees, item.optional_attendees, item.resources, item.organizer
    )
    if attendees:
        event["attendees"] = attendees
    return event


def belongs_to(event: dict[str, Any], ews_item_id: str) -> bool:
    """Whether a Google event carries calsync's tag for this Exchange item."""
    private = (event.get("extendedProperties") or {}).get("private") or {}
    return bool(private.get(EWS_ID_PROPERTY) == ews_item_id)


def managed(event: dict[str, Any]) -> dict[str, Any]:
    """The fields calsync writes, from a Google event as read. Not iCalUID: Google gives
    every event one, calsync never writes it (see tagged), so it is no difference."""
    return {k: event[k] for k in WRITTEN_FIELDS if k in event and k != "iCalUID"}


def tagged(event: dict[str, Any], mailbox: str, ews_item_id: str) -> dict[str, Any]:
    """The event as calsync writes it: tied to its Exchange item by private extended
    properties, and without iCalUID (Google takes either a client id or an iCalUID at
    creation, and iCalUID cannot be patched later; the properties rebuild the map)."""
    body = {k: v for k, v in event.items() if k != "iCalUID"}
    extended = dict(body.get("extendedProperties") or {})
    private = dict(extended.get("private") or {})
    private[EWS_ID_PROPERTY] = ews_item_id
    private[MAILBOX_PROPERTY] = mailbox
    extended["private"] = private
    body["extendedProperties"] = extended
    return body


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The patch that turns `old` into `new` on the managed fields (None removes one)."""
    from mapping.event import normalised

    patch: dict[str, Any] = {}
    for key in WRITTEN_FIELDS:
        # equal values Google spells differently (offsets, RRULE part order) are equal
        if normalised(key, old.get(key)) != normalised(key, new.get(key)):
            patch[key] = new.get(key)
    return patch


def apply_patch(snapshot: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(snapshot)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def short(item_id: str) -> str:
    """Item ids are 150+ characters: logs show the end, which is what differs."""
    return item_id if len(item_id) <= 16 else "…" + item_id[-12:]
