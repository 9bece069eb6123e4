"""Attendees, resources and the organizer between EWS and Google (pure).

EWS keeps three lists (RequiredAttendees, OptionalAttendees, Resources) of `t:Attendee`
(a Mailbox, a ResponseType, a LastResponseTime) and an Organizer mailbox; Google keeps one
`attendees` list whose entries say `optional` / `resource`, and an `organizer`.

Nothing here may make either side send mail. The mapping only returns values; the
writers must always send them with `sendUpdates=none` (Google: events.insert / patch /
update / delete) and `send_meeting_invitations=SEND_TO_NONE` /
`send_meeting_cancellations=SEND_TO_NONE` (exchangelib: SendMeetingInvitations,
SendMeetingInvitationsOrCancellations and SendMeetingCancellations = SendToNone). Google's
guest permissions (`guestsCanInviteOthers`, `guestsCanModify`, `guestsCanSeeOtherGuests`)
are never set, nor EWS's IsResponseRequested: their defaults stay.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/attendee
https://developers.google.com/workspace/calendar/api/v3/reference/events#attendees
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from exchangelib.properties import Attendee, Mailbox

#: EWS ResponseType -> Google responseStatus.
RESPONSE_TO_GOOGLE: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Accept": "accepted",
        "Tentative": "tentative",
        "Decline": "declined",
        "NoResponseReceived": "needsAction",
        "Unknown": "needsAction",
        "Organizer": "accepted",
    }
)
#: Google responseStatus -> EWS ResponseType (the organizer's "accepted" is "Organizer").
RESPONSE_TO_EWS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "accepted": "Accept",
        "tentative": "Tentative",
        "declined": "Decline",
        "needsAction": "NoResponseReceived",
    }
)
_ORGANIZER: Final = "Organizer"
#: Routing types whose address is an SMTP address (EX carries an X.500 DN).
_SMTP_ROUTING: Final = frozenset({"SMTP", "", None})


def _address(mailbox: Any) -> str | None:
    """The SMTP address of a Mailbox, or None (Google requires one)."""
    if not isinstance(mailbox, Mailbox):
        return None
    email = str(mailbox.email_address or "").strip()
    if mailbox.routing_type not in _SMTP_ROUTING or "@" not in email:
        return None
    return email


def organizer_to_google(organizer: Any) -> dict[str, str] | None:
    """Google `organizer` for an EWS Organizer mailbox (Google writes it only on import)."""
    email = _address(organizer)
    if email is None:
        return None
    out = {"email": email}
    if organizer.name:
        out["displayName"] = str(organizer.name)
    return out


def attendees_to_google(
    required: Sequence[Any] | None,
    optional: Sequence[Any] | None,
    resources: Sequence[Any] | None,
    organizer: Any = None,
) -> list[dict[str, Any]]:
    """Google `attendees` for EWS's three lists, in their order (required, optional,
    resources). An address listed twice keeps its first place; one without an SMTP
    address is left out."""
    organizer_email = (_address(organizer) or "").lower()
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for kind, attendees in (("required", required), ("optional", optional),
                            ("resource", resources)):
        for attendee in attendees or ():
            if not isinstance(attendee, Attendee):
                continue
            email = _address(attendee.mailbox)
            if email is None or email.lower() in seen:
                continue
            seen.add(email.lower())
            entry: dict[str, Any] = {"email": email}
            name = attendee.mailbox.name
            if name:
                entry["displayName"] = str(name)
            if kind == "optional":
                entry["optional"] = True
            elif kind == "resource":
                entry["resource"] = True
            response = str(attendee.response_type or "Unknown")
            entry["responseStatus"] = RESPONSE_TO_GOOGLE.get(response, "needsAction")
            if response == _ORGANIZER or email.lower() == organizer_email:
                entry["organizer"] = True
            out.append(entry)
    return out


def organizer_to_ews(organizer: Any) -> Mailbox | None:
    if not isinstance(organizer, Mapping) or not organizer.get("email"):
        return None
    return Mailbox(
        name=str(organizer.get("displayName") or "") or None,
        email_address=str(organizer["email"]),
        routing_type="SMTP",
    )


def attendees_to_ews(attendees: Any) -> dict[str, list[Attendee] | None]:
    """exchangelib keyword arguments `required_attendees`, `optional_attendees` and
    `resources` for Google `attendees` (None for an empty list)."""
    lists: dict[str, list[Attendee]] = {
        "required_attendees": [],
        "optional_attendees": [],
        "resources": [],
    }
    seen: set[str] = set()
    for entry in attendees or ():
        if not isinstance(entry, Mapping) or not entry.get("email"):
            continue
        email = str(entry["email"])
        if email.lower() in seen:
            continue
        seen.add(email.lower())
        status = str(entry.get("responseStatus") or "needsAction")
        response = RESPONSE_TO_EWS.get(status, "NoResponseReceived")
        if entry.get("organizer") and response == "Accept":
            response = _ORGANIZER
        attendee = Attendee(
            mailbox=Mailbox(
                name=str(entry.get("displayName") or "") or None,
                email_address=email,
                routing_type="SMTP",
            ),
            response_type=response,
        )
        if entry.get("resource"):
            lists["resources"].append(attendee)
        elif entry.get("optional"):
            lists["optional_attendees"].append(attendee)
        else:
            lists["required_attendees"].append(attendee)
    return {name: (found or None) for name, found in lists.items()}


def normalised_attendees(value: Any) -> Any:
    """One spelling for equal `attendees` (Google's own keys dropped, defaults filled)."""
    if not value:
        return None
    out = []
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        out.append(
            {
                "email": str(entry.get("email") or "").lower(),
                "displayName": entry.get("displayName") or None,
                "optional": bool(entry.get("optional")),
                "resource": bool(entry.get("resource")),
                "responseStatus": entry.get("responseStatus") or "needsAction",
            }
        )
    return sorted(out, key=lambda e: str(e["email"]))
