"""A mail client's EWS requests, as raw SOAP, sent to the EWS stand-in: what the state
machine's proxy path hands the addon (the request as the client sent it and the answer
Exchange gave). The shapes follow what the Managed API and DavMail send (SendToNone,
a TimeZoneContext, an ItemId with its ChangeKey); the stand-in checks each against
Exchange 2016's schema, so a malformed one fails the example.
"""

from __future__ import annotations

import base64
import http.client
import urllib.parse
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
#: the zone the client writes its local times in
ZONE = "W. Europe Standard Time"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, as they crossed the proxy."""

    request: bytes
    answer: bytes
    status: int

    def item_ids(self) -> list[tuple[str, str]]:
        """(Id, ChangeKey) of every ItemId in the answer's Items."""
        root = etree.fromstring(self.answer)
        return [
            (e.get("Id", ""), e.get("ChangeKey", ""))
            for e in root.iter(f"{{{T}}}ItemId")
        ]

    def ok(self) -> bool:
        root = etree.fromstring(self.answer)
        codes = [e.text for e in root.iter(f"{{{M}}}ResponseCode")]
        return self.status == 200 and bool(codes) and all(c == "NoError" for c in codes)


def envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:m="{M}" xmlns:t="{T}"><soap:Header>'
        '<t:RequestServerVersion Version="Exchange2016"/>'
        f'<t:TimeZoneContext><t:TimeZoneDefinition Id="{ZONE}"/></t:TimeZoneContext>'
        f"</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def create_item(subject: str, body: str, start: str, end: str) -> bytes:
    """CreateItem of one calendar item; `start`/`end` local times in ZONE."""
    return envelope(
        '<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items>'
        f"<t:CalendarItem><t:Subject>{escape(subject)}</t:Subject>"
        f'<t:Body BodyType="Text">{escape(body)}</t:Body>'
        f"<t:Start>{start}</t:Start><t:End>{end}</t:End></t:CalendarItem>"
        "</m:Items></m:CreateItem>"
    )


def _set(field_uri: str, element: str, value: str) -> str:
    return (
        f'<t:SetItemField><t:FieldURI FieldURI="{field_uri}"/><t:CalendarItem>'
        f"<t:{element}>{escape(value)}</t:{element}></t:CalendarItem></t:SetItemField>"
    )


def update_item(item_id: str, change_key: str, fields: dict[str, str]) -> bytes:
    """UpdateItem setting `fields` (subject, location, start, end: local times in ZONE)."""
    uris = {
        "subject": ("item:Subject", "Subject"),
        "location": ("calendar:Location", "Location"),
        "start": ("calendar:Start", "Start"),
        "end": ("calendar:End", "End"),
    }
    # the schema's order of CalendarItem's elements is the order the updates may take
    updates = "".join(_set(*uris[name], fields[name]) for name in uris if name in fields)
    return envelope(
        '<m:UpdateItem ConflictResolution="AutoResolve" '
        'SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>'
        f"<t:ItemId Id={quoteattr(item_id)} ChangeKey={quoteattr(change_key)}/>"
        f"<t:Updates>{updates}</t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"
    )


def delete_item(item_id: str, how: str) -> bytes:
    return envelope(
        f'<m:DeleteItem DeleteType="{how}" SendMeetingCancellations="SendToNone">'
        f"<m:ItemIds><t:ItemId Id={quoteattr(item_id)}/></m:ItemIds></m:DeleteItem>"
    )


def get_occurrence(master_id: str, index: int) -> bytes:
    """GetItem of a series' occurrence by its index, as clients find one before they
    change it (the answer carries the occurrence's own ItemId)."""
    return envelope(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ItemIds>"
        f"<t:OccurrenceItemId RecurringMasterId={quoteattr(master_id)} "
        f'InstanceIndex="{index}"/></m:ItemIds></m:GetItem>'
    )


def post(url: str, user: str, password: str, request: bytes) -> Exchange:
    """Send one request to the stand-in as the user (Basic), the answer as it came."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        connection.request(
            "POST",
            parts.path,
            body=request,
            headers={"Content-Type": "text/xml; charset=utf-8", "Authorization": f"Basic {token}"},
        )
        response = connection.getresponse()
        return Exchange(request, response.read(), response.status)
    finally:
        connection.close()
