"""A local stand-in for the Google Calendar API v3 that the real client libraries talk to.

Reference: https://developers.google.com/workspace/calendar/api/v3/reference

    from emulators.google import GoogleCalendarServer
    with GoogleCalendarServer(users=["alice@example.com"]) as server:
        ...  # server.api_endpoint, server.token_uri, server.batch_uri

Modules: `state` (calendars, events and their rules; clock injected), `listing`
(events.list / instances, sync and page tokens), `recurrence` (RRULE expansion),
`times` (RFC 3339, EventDateTime), `auth` (users, tokens, refresh), `errors` (Google's
error bodies), `api` (routing), `batch` (multipart/mixed), `push` (watch channels),
`faults` (run-time fault injection), `store` (`--db` SQLite), `server` (HTTP), `cli`.
"""

from emulators.google.server import GoogleCalendarServer

__all__ = ["GoogleCalendarServer"]
