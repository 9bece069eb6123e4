"""Online meetings (Teams, Google Meet, Zoom) between EWS and Google (pure).

EWS has no writable "join URL" field in the versions exchangelib models: Exchange 2013's
JoinOnlineMeetingUrl and OnlineMeetingSettings are read-only and Teams puts its link in
the body. The carrier both ways is `NetShowUrl` (calendar:NetShowUrl, a writable URI),
and the EWS location when it is empty. Google's is `conferenceData` (read and written
only with `conferenceDataVersion=1`; its legacy `hangoutLink` is read-only).

EWS -> Google: the join URL is, in this order, NetShowUrl, the first Teams / Meet / Zoom
URL in Location, then in the body; it becomes `conferenceData` with one video entry
point and, where the provider is known, its `conferenceSolution`. Location and body are
mapped as they are, except that a location which is exactly the join URL is not repeated.
Google -> EWS: the first video entry point's uri (else `hangoutLink`) becomes NetShowUrl,
and the location too when the event has none.

https://developers.google.com/workspace/calendar/api/v3/reference/events#conferenceData
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/netshowurl
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

#: Known providers: host pattern -> (conferenceSolution key type, name).
PROVIDERS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "meet.google.com": ("hangoutsMeet", "Google Meet"),
        "teams.microsoft.com": ("addOn", "Microsoft Teams Meeting"),
        "teams.live.com": ("addOn", "Microsoft Teams Meeting"),
        "zoom.us": ("addOn", "Zoom Meeting"),
        "zoomgov.com": ("addOn", "Zoom Meeting"),
    }
)
#: Paths that are a meeting, not the provider's home page or a download link.
_MEETING_PATHS: Final = MappingProxyType(
    {
        "meet.google.com": re.compile(r"^/[a-z]{3}-[a-z]{4}-[a-z]{3}$"),
        "teams.microsoft.com": re.compile(r"^/l/meetup-join/"),
        "teams.live.com": re.compile(r"^/meet/"),
        "zoom.us": re.compile(r"^/(j|my|w|s)/"),
        "zoomgov.com": re.compile(r"^/(j|my|w|s)/"),
    }
)
_URL: Final = re.compile(r"https://[^\s<>\"'\]\[]+", re.IGNORECASE)
_TRAILING: Final = ".,;:!?)>"


def provider(url: str) -> str | None:
    """The PROVIDERS key for a meeting URL, or None for any other URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for known, path in _MEETING_PATHS.items():
        if (host == known or host.endswith("." + known)) and path.match(parts.path):
            return known
    return None


def find_meeting_url(text: str | None) -> str | None:
    """The first Teams / Meet / Zoom meeting URL in a text."""
    for match in _URL.finditer(text or ""):
        url = match.group(0).rstrip(_TRAILING)
        if provider(url):
            return url
    return None


def conference_data(url: str) -> dict[str, Any]:
    """Google `conferenceData` for a join URL (what calsync writes; Google adds ids and
    labels)."""
    data: dict[str, Any] = {"entryPoints": [{"entryPointType": "video", "uri": url}]}
    known = provider(url)
    if known is not None:
        kind, name = PROVIDERS[known]
        data["conferenceSolution"] = {"key": {"type": kind}, "name": name}
    return data


def conference_url(event: Mapping[str, Any]) -> str | None:
    """The join URL of a Google event: its first video entry point, else hangoutLink."""
    data = event.get("conferenceData")
    if isinstance(data, Mapping):
        for entry in data.get("entryPoints") or ():
            if (
                isinstance(entry, Mapping)
                and entry.get("entryPointType") == "video"
                and entry.get("uri")
            ):
                return str(entry["uri"])
    link = event.get("hangoutLink")
    return str(link) if link else None


def normalised_conference(value: Any) -> Any:
    """One spelling for equal `conferenceData`: the join URL and the solution type."""
    url = conference_url({"conferenceData": value})
    if url is None:
        return None
    solution = value.get("conferenceSolution") if isinstance(value, Mapping) else None
    key = solution.get("key") if isinstance(solution, Mapping) else None
    kind = key.get("type") if isinstance(key, Mapping) else None
    return {"uri": url, "type": kind}
