"""Google Calendar through the unmodified google-api-python-client, for one user.

- Credentials: an authorized-user token file (as google-auth writes it; refreshed tokens
  are written back with mode 0600), or a service account with domain-wide delegation
  impersonating the user.
- `sendUpdates=none` on every write: a sync never makes Google send an invitation.
- No proxy is followed (httplib2 would honour HTTP(S)_PROXY): our own writes must never
  loop through the mitmproxy they come from.
- Errors come out as `GoogleError` with the HTTP status, Google's reason, whether a retry
  can help, and Retry-After when Google sent one.

googleapiclient is imported lazily: with exchangelib it would add ~0.5 s to mitmdump's
start-up.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ews_parser.errors import CalsyncError
from sync.config import Config, UserConfig

log = logging.getLogger("calsync.google")

SCOPES = ["https://www.googleapis.com/auth/calendar"]
TIMEOUT_S = 20


class GoogleError(CalsyncError):
    def __init__(
        self,
        status: int,
        reason: str,
        message: str = "",
        *,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"Google {status} {reason}: {message}".rstrip(": "))

    @property
    def retryable(self) -> bool:
        if self.status in (429, 500, 502, 503, 504) or self.status == 0:
            return True
        if self.status == 401:
            return True  # credentials refresh on the next try
        return self.status == 403 and self.reason in (
            "rateLimitExceeded",
            "userRateLimitExceeded",
            "quotaExceeded",
        )


def _credentials(config: Config, user: UserConfig) -> Any:
    if user.google_service_account_file is not None:
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_file(
            str(user.google_service_account_file),
            scopes=SCOPES,
            subject=user.google_user or user.mailbox,
        )
        if config.google_token_uri:
            creds = creds.with_token_uri(config.google_token_uri)
        return creds
    if user.google_token_file is None:
        raise CalsyncError(
            f"{user.mailbox}: no google_token_file or google_service_account_file configured"
        )
    from google.oauth2.credentials import Credentials

    try:
        info = json.loads(Path(user.google_token_file).read_text())
    except (OSError, ValueError) as exc:
        raise CalsyncError(
            f"{user.mailbox}: cannot read Google token file {user.google_token_file}: {exc}"
        ) from None
    creds = Credentials.from_authorized_user_info(info, scopes=info.get("scopes"))
    # google-auth replaces the file's token_uri with Google's own; the stand-in (and any
    # private endpoint) needs it put back.
    token_uri = config.google_token_uri or info.get("token_uri")
    if token_uri and token_uri != creds.token_uri:
        creds = creds.with_token_uri(token_uri)
    return creds


def save_token_file(path: Path, creds: Any) -> None:
    """Write an authorized-user token file readable by its owner only."""
    data = creds.to_json()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class GoogleCalendar:
    """One user's Google calendar. Calls block: run them in a thread."""

    def __init__(self, config: Config, user: UserConfig) -> None:
        import google_auth_httplib2
        import httplib2
        from googleapiclient.discovery import build

        self.user = user
        self.calendar_id = user.google_calendar
        self._creds = _credentials(config, user)
        self._token = getattr(self._creds, "token", None)
        http = google_auth_httplib2.AuthorizedHttp(
            self._creds, http=httplib2.Http(timeout=TIMEOUT_S, proxy_info=None)
        )
        options = (
            {"api_endpoint": config.google_api_endpoint} if config.google_api_endpoint else None
        )
        self._service = build(
            "calendar",
            "v3",
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options=options,
        )
        # httplib2 connections are not thread-safe: one call at a time per user
        self._lock = threading.Lock()

    def _execute(self, request: Any, *, if_match: str | None = None) -> Any:
        from googleapiclient.errors import HttpError

        if if_match:
            request.headers["If-Match"] = if_match
        with self._lock:
            try:
                result = request.execute(num_retries=0)
            except HttpError as exc:
                raise _google_error(exc) from None
            except (OSError, TimeoutError) as exc:
                raise GoogleError(0, "unreachable", type(exc).__name__) from None
            except Exception as exc:  # httplib2's own errors (ServerNotFoundError, ...)
                if type(exc).__module__.startswith("httplib2"):
                    raise GoogleError(0, "unreachable", type(exc).__name__) from None
                raise
            self._save_if_refreshed()
            return result

    def _save_if_refreshed(self) -> None:
        token = getattr(self._creds, "token", None)
        if token != self._token and self.user.google_token_file is not None:
            self._token = token
            try:
                save_token_file(Path(self.user.google_token_file), self._creds)
            except OSError as exc:
                log.warning(
                    "%s: could not save the refreshed Google token: %s",
                    self.user.mailbox,
                    exc.strerror,
                )

    def insert(self, event: dict[str, Any]) -> dict[str, Any]:
        events = self._service.events()
        return dict(
            self._execute(
                events.insert(calendarId=self.calendar_id, body=event, sendUpdates="none")
            )
        )

    def get(self, event_id: str) -> dict[str, Any] | None:
        """The event, a cancelled tombstone for a deleted one, or None when unknown."""
        events = self._service.events()
        try:
            return dict(self._execute(events.get(calendarId=self.calendar_id, eventId=event_id)))
        except GoogleError as exc:
            if exc.status == 404:
                return None
            raise

    def patch(
        self, event_id: str, body: dict[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]:
        events = self._service.events()
        request = events.patch(
            calendarId=self.calendar_id, eventId=event_id, body=body, sendUpdates="none"
        )
        return dict(self._execute(request, if_match=etag))

    def delete(self, event_id: str, *, etag: str | None = None) -> None:
        events = self._service.events()
        request = events.delete(calendarId=self.calendar_id, eventId=event_id, sendUpdates="none")
        self._execute(request, if_match=etag)

    def list_pages(
        self, *, sync_token: str | None, time_min: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """events.list pages, every one followed; the last carries nextSyncToken. A 410
        comes out as GoogleError(410): start over in full.

        Incremental lists keep the initial query's parameters (Google: "all other query
        parameters should be the same as for the initial synchronization").
        """
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {"calendarId": self.calendar_id, "maxResults": 250}
            if sync_token:
                params["syncToken"] = sync_token
            elif time_min:
                params["timeMin"] = time_min
            if page_token:
                params["pageToken"] = page_token
            page = dict(self._execute(self._service.events().list(**params)))
            yield page
            page_token = page.get("nextPageToken")
            if not page_token:
                return


def _google_error(exc: Any) -> GoogleError:
    status = int(getattr(exc.resp, "status", 0) or 0)
    reason = ""
    message = ""
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        message = str(error.get("message", ""))[:200]
        errors = error.get("errors") or []
        reason = str(errors[0].get("reason", "")) if errors else str(error.get("status", ""))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        pass
    retry_after = None
    header = exc.resp.get("retry-after") if hasattr(exc.resp, "get") else None
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    return GoogleError(status, reason or "error", message, retry_after=retry_after)
