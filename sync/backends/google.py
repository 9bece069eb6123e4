"""Google Calendar through the unmodified google-api-python-client, for one user: the
`GoogleBackend` of sync/backends/base.py.

- Credentials: an authorized-user token file (as google-auth writes it; refreshed tokens
  are written back with mode 0600), or a service account with domain-wide delegation
  impersonating the user.
- `sendUpdates=none` on every write: a sync never makes Google send an invitation.
- No proxy is followed (httplib2 would honour HTTP(S)_PROXY): our own writes must never
  loop through the mitmproxy they come from.
- Errors come out as `GoogleError` with the HTTP status, Google's reason, whether a retry
  can help, and Retry-After when Google sent one; a stale If-Match is `GoogleConflict`.
- Many writes at once (`insert_many`, `patch_many`, `get_many`) go as batch requests of
  up to `BATCH_SIZE` calls (https://developers.google.com/workspace/calendar/api/guides/batch):
  each call keeps its own answer; calls refused for rate limits (429, 403
  rateLimitExceeded), 5xx, or lost with their envelope are sent again, with backoff, in a
  later batch, unless Google sent Retry-After (then they come back as their errors, and
  the job schedules the user's next run by it); every other error is that call's alone.

- The calls the proxy's fast path makes for each change (events.insert, get, patch and
  delete) go straight over one kept-alive connection (http.client, the token from
  google-auth, refreshed and sent again once on a 401): googleapiclient's request building
  (the discovery document's parameter checks, uritemplate, its model) and httplib2 (IRI
  encoding, its cache logic) cost more CPU than the rest of the call (issue 17). Every other
  call, and every batch, goes through googleapiclient.

googleapiclient is imported lazily: with exchangelib it would add ~0.5 s to mitmdump's
start-up.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import quote, urlsplit

from ews_parser.errors import CalsyncError
from sync.backends.base import (
    CalendarResource,
    Channel,
    ChannelRequest,
    EventsPage,
    GoogleBackend,
    GoogleError,
    google_error,
)
from sync.config import Config, UserConfig
from sync.ops import metrics

if TYPE_CHECKING:
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account
    from googleapiclient.errors import HttpError
    from googleapiclient.http import HttpRequest

    from mapping.event import GoogleEvent

    GoogleCredentials = user_credentials.Credentials | service_account.Credentials

log = logging.getLogger("calsync.google")

SCOPES = ["https://www.googleapis.com/auth/calendar"]
TIMEOUT_S = 20
#: Calendar's endpoint: the discovery document's rootUrl + servicePath.
API_ENDPOINT = "https://www.googleapis.com/calendar/v3/"
#: Google's batch endpoint for Calendar: the discovery document's rootUrl + batchPath.
BATCH_URI = "https://www.googleapis.com/batch/calendar/v3"
#: Calls per batch request. Google takes up to 1000, but every call still counts against
#: the per-user rate limit, and a large batch meets it all at once (the Gmail guide, same
#: batch system: "batches larger than 50 requests [are] not recommended"). 50 keeps a
#: 10,000-event first sync at 200 requests, bounds what one lost envelope costs, and keeps
#: each multipart answer near 100 KB.
BATCH_SIZE = 50
#: How many times a call a batch could not complete (rate limit, 5xx, lost) is sent again.
BATCH_RETRIES = 5
BATCH_BACKOFF_S = 0.5
BATCH_BACKOFF_MAX_S = 32.0
#: events.list page size (Google's default is 250, its maximum 2500).
PAGE_SIZE: Final = 250

#: One answer of a batch: the resource (a JSON object) or its error.
BatchAnswer = dict[str, object] | GoogleError


def batch_uri_for(config: Config) -> str:
    """`[google] batch_uri`, else the one beside `api_endpoint` (rootUrl + batchPath, as the
    client builds it from the discovery document), else Google's."""
    configured = getattr(config, "google_batch_uri", None)
    if configured:
        return str(configured)
    endpoint = config.google_api_endpoint
    if endpoint:
        root, sep, _ = endpoint.rstrip("/").rpartition("/calendar/v3")
        if sep:
            return f"{root}/batch/calendar/v3"
    return BATCH_URI


def _credentials(config: Config, user: UserConfig) -> GoogleCredentials:
    if user.google_service_account_file is not None:
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_file(
            str(user.google_service_account_file),
            scopes=SCOPES,
            subject=user.google_user or user.mailbox,
        )
        if config.google_token_uri:
            creds = creds.with_token_uri(config.google_token_uri)
        return cast("service_account.Credentials", creds)
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
    return cast("user_credentials.Credentials", creds)


def save_token_file(path: Path, creds: user_credentials.Credentials) -> None:
    """Write an authorized-user token file readable by its owner only."""
    data = creds.to_json()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _unreachable(exc: BaseException) -> GoogleError | None:
    """GoogleError(0) for a call that got no answer (connection refused or dropped, a
    timeout, a DNS failure: httplib2's and http.client's own errors); None for anything
    else."""
    if isinstance(exc, OSError | TimeoutError | http.client.HTTPException) or type(
        exc
    ).__module__.startswith("httplib2"):
        return GoogleError(0, "unreachable", type(exc).__name__)
    return None


class GoogleCalendar:
    """One user's Google calendar. Calls block: run them in a thread."""

    def __init__(self, config: Config, user: UserConfig) -> None:
        import google_auth_httplib2
        import httplib2
        from googleapiclient.discovery import build

        self.user = user
        self.calendar_id = user.google_calendar
        self._creds = _credentials(config, user)
        self._token = self._creds.token
        authorized = google_auth_httplib2.AuthorizedHttp(
            self._creds, http=httplib2.Http(timeout=TIMEOUT_S, proxy_info=None)
        )
        options = (
            {"api_endpoint": config.google_api_endpoint} if config.google_api_endpoint else None
        )
        self._service = build(
            "calendar",
            "v3",
            http=authorized,
            static_discovery=True,
            cache_discovery=False,
            client_options=options,
        )
        # Built once: each `events()` call builds the resource from the discovery document
        # again (every method, docstrings from pretty-printed schemas), ~6 ms of CPU, about
        # half of what mirroring one change costs the proxy's process.
        self._events = self._service.events()
        self._http = authorized
        self.batch_uri = batch_uri_for(config)
        self.batch_size = BATCH_SIZE
        self.retries = BATCH_RETRIES
        self.backoff_s = BATCH_BACKOFF_S
        self.sleep: Callable[[float], None] = time.sleep
        # httplib2 connections are not thread-safe: one call at a time per user
        self._lock = threading.Lock()
        # the fast path's calls: one kept-alive connection, paths made once
        endpoint = urlsplit(config.google_api_endpoint or API_ENDPOINT)
        self._origin = (endpoint.scheme, endpoint.hostname or "", endpoint.port)
        self._origin_url = f"{endpoint.scheme}://{endpoint.netloc}"
        self._events_path = (
            f"{endpoint.path.rstrip('/')}/calendars/{quote(self.calendar_id, safe='')}/events"
        )
        self._connection: http.client.HTTPConnection | None = None
        self._refresher = google_auth_httplib2.Request(
            httplib2.Http(timeout=TIMEOUT_S, proxy_info=None)
        )

    def _execute(self, request: HttpRequest, *, if_match: str | None = None) -> dict[str, object]:
        from googleapiclient.errors import HttpError

        if if_match:
            request.headers["If-Match"] = if_match
        with self._lock:
            try:
                result = request.execute(num_retries=0)
            except HttpError as exc:
                answer = _from_http_error(exc)
                metrics.google_request(request.methodId, _status(answer))
                raise answer from None
            except Exception as exc:
                error = _unreachable(exc)
                if error is None:
                    raise
                metrics.google_request(request.methodId, "unreachable")
                raise error from None
            metrics.google_request(request.methodId, "ok")
            self._save_if_refreshed()
            # events.delete and channels.stop answer 204 with no body
            return dict(result) if result else {}

    def _save_if_refreshed(self) -> None:
        from google.oauth2.credentials import Credentials

        token = self._creds.token
        if token == self._token or self.user.google_token_file is None:
            return
        self._token = token
        if not isinstance(self._creds, Credentials):
            return
        try:
            save_token_file(Path(self.user.google_token_file), self._creds)
        except OSError as exc:
            log.warning(
                "%s: could not save the refreshed Google token: %s",
                self.user.mailbox,
                exc.strerror,
            )

    # --- the fast path's calls, straight -------------------------------------------------------

    def _call(
        self,
        method: str,
        operation: str,
        event_id: str | None = None,
        *,
        body: GoogleEvent | None = None,
        if_match: str | None = None,
        writes: bool = True,
    ) -> dict[str, object]:
        """One call on the events collection (or one event of it), as googleapiclient would
        make it, answered as `_execute` answers. A connection that drops (a kept-alive one
        the server closed meanwhile) is opened again and the call sent once more, as httplib2
        does (a repeated write is safe: fixed ids, If-Match; an error it meets then says the
        first sending may have been made, `sent_again`), but not after a timeout; a 401
        refreshes the token and sends the call once more, as google-auth's AuthorizedHttp
        does."""
        path = self._events_path
        if event_id is not None:
            path += "/" + quote(event_id, safe="")
        if writes:
            path += "?sendUpdates=none"
        payload = None if body is None else json.dumps(body).encode()  # TypeError: our bug
        headers = {"accept": "application/json"}
        if payload is not None:
            headers["content-type"] = "application/json"
        if if_match:
            headers["if-match"] = if_match
        with self._lock:
            refreshed = False
            sent_again = False  # a write whose first sending got no answer
            for attempt in range(2):
                # the whole URL: google-auth looks at its host (regional endpoints)
                self._creds.before_request(
                    self._refresher, method, self._origin_url + path, headers
                )
                connection = self._connect()
                try:
                    connection.request(method, path, body=payload, headers=headers)
                    response = connection.getresponse()
                    content = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    if attempt == 0 and not isinstance(exc, TimeoutError):
                        sent_again = writes
                        continue
                    metrics.google_request(operation, "unreachable")
                    raise GoogleError(0, "unreachable", type(exc).__name__) from None
                if response.will_close:
                    connection.close()
                if response.status == 401 and not refreshed:
                    self._creds.refresh(self._refresher)
                    refreshed = True
                    continue
                break
            if response.status >= 300:
                error = google_error(
                    response.status,
                    content,
                    response.getheader("retry-after"),
                    sent_again=sent_again,
                )
                metrics.google_request(operation, _status(error))
                raise error
            metrics.google_request(operation, "ok")
            self._save_if_refreshed()
            # events.delete answers 204 with no body
            return cast(dict[str, object], json.loads(content)) if content else {}

    def _connect(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is None:
            scheme, host, port = self._origin
            if scheme == "https":
                import ssl

                import httplib2

                # the CA bundle httplib2 trusts, as the rest of the client does
                context = ssl.create_default_context(cafile=httplib2.certs.where())
                connection = http.client.HTTPSConnection(
                    host, port, timeout=TIMEOUT_S, context=context
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
            self._connection = connection
        return connection

    def insert(self, event: GoogleEvent) -> GoogleEvent:
        return self._call("POST", "calendar.events.insert", body=event)

    def get(self, event_id: str) -> GoogleEvent | None:
        """The event, a cancelled tombstone for a deleted one, or None when unknown."""
        try:
            return self._call("GET", "calendar.events.get", event_id, writes=False)
        except GoogleError as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, event_id: str, body: GoogleEvent, *, etag: str | None = None) -> GoogleEvent:
        return self._call("PATCH", "calendar.events.patch", event_id, body=body, if_match=etag)

    def delete(self, event_id: str, *, etag: str | None = None) -> None:
        self._call("DELETE", "calendar.events.delete", event_id, if_match=etag)

    def calendar(self) -> CalendarResource:
        """calendars.get of this user's calendar: the cheapest call that proves the token
        and the calendar id."""
        answer = self._execute(self._service.calendars().get(calendarId=self.calendar_id))
        return cast(CalendarResource, answer)

    def watch(self, body: ChannelRequest) -> Channel:
        """events.watch on this user's calendar: opens a push channel, answers its resource."""
        answer = self._execute(self._events.watch(calendarId=self.calendar_id, body=body))
        return cast(Channel, answer)

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """channels.stop: Google sends that channel no more notifications."""
        channels = self._service.channels()
        self._execute(channels.stop(body={"id": channel_id, "resourceId": resource_id}))

    def list_pages(
        self, *, sync_token: str | None, time_min: str | None = None
    ) -> Iterator[EventsPage]:
        """events.list pages, every one followed; the last carries nextSyncToken. A 410
        comes out as GoogleError(410): start over in full.

        Incremental lists keep the initial query's parameters (Google: "all other query
        parameters should be the same as for the initial synchronization").
        """
        page_token: str | None = None
        while True:
            params: dict[str, object] = {"calendarId": self.calendar_id, "maxResults": PAGE_SIZE}
            if sync_token:
                params["syncToken"] = sync_token
            elif time_min:
                params["timeMin"] = time_min
            if page_token:
                params["pageToken"] = page_token
            page = cast(EventsPage, self._execute(self._events.list(**params)))
            if sync_token:  # an incremental listing: what changed since the token (/metrics)
                metrics.feed_stamps("google", (e.get("updated") for e in page.get("items", [])))
            yield page
            page_token = page.get("nextPageToken")
            if not page_token:
                return

    # --- batches -------------------------------------------------------------------------------

    def insert_many(
        self,
        events: Sequence[GoogleEvent],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[GoogleEvent | GoogleError]:
        """events.insert for each event, batched; each answer is the event or its error.
        `progress(n)` is told of each batch's n calls as their first answer comes."""
        answers = self._batch(
            [partial(self._insert_request, event) for event in events], progress=progress
        )
        return list(answers)

    def patch_many(
        self, patches: Sequence[tuple[str, GoogleEvent, str | None]]
    ) -> list[GoogleEvent | GoogleError]:
        """events.patch for each (event id, body, If-Match etag), batched."""
        return list(self._batch([partial(self._patch_request, *patch) for patch in patches]))

    def get_many(self, event_ids: Sequence[str]) -> list[GoogleEvent | GoogleError | None]:
        """events.get for each id, batched: the event (tombstones included), None when
        unknown, or the error."""
        answers = self._batch([partial(self._get_request, i) for i in event_ids])
        return [None if isinstance(a, GoogleError) and a.status == 404 else a for a in answers]

    def _insert_request(self, event: GoogleEvent) -> HttpRequest:
        return self._events.insert(calendarId=self.calendar_id, body=event, sendUpdates="none")

    def _patch_request(self, event_id: str, body: GoogleEvent, etag: str | None) -> HttpRequest:
        request = self._events.patch(
            calendarId=self.calendar_id, eventId=event_id, body=body, sendUpdates="none"
        )
        if etag:
            request.headers["If-Match"] = etag
        return request

    def _get_request(self, event_id: str) -> HttpRequest:
        return self._events.get(calendarId=self.calendar_id, eventId=event_id)

    def _batch(
        self,
        builders: Sequence[Callable[[], HttpRequest]],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[BatchAnswer]:
        """Run the requests `builders` make, `batch_size` to a batch request, sending again
        (after a backoff) the ones that met a retryable error; the answers in order."""
        answers: list[BatchAnswer] = [{} for _ in builders]
        todo = list(range(len(builders)))
        for attempt in range(self.retries + 1):
            again: list[int] = []
            wait = 0.0
            asked = False  # Google sent Retry-After: the job schedules it, no sleep here
            for first in range(0, len(todo), self.batch_size):
                chunk = todo[first : first + self.batch_size]
                answered = self._one_batch([builders[i] for i in chunk])
                for index, answer in zip(chunk, answered, strict=True):
                    answers[index] = answer
                    if isinstance(answer, GoogleError) and answer.retryable:
                        again.append(index)
                        wait = max(wait, answer.retry_after or 0.0)
                        asked |= bool(answer.retry_after)
                if progress is not None and attempt == 0:
                    progress(len(chunk))
            if not again or attempt == self.retries or asked:
                break
            log.info(
                "%s: %d of %d batched calls to send again",
                self.user.mailbox,
                len(again),
                len(builders),
            )
            self.sleep(max(wait, min(self.backoff_s * 2**attempt, BATCH_BACKOFF_MAX_S)))
            todo = again
        return answers

    def _one_batch(self, builders: Sequence[Callable[[], HttpRequest]]) -> list[BatchAnswer]:
        from googleapiclient.errors import BatchError, HttpError
        from googleapiclient.http import BatchHttpRequest

        answers: list[BatchAnswer] = [
            GoogleError(0, "unreachable", "no answer in the batch") for _ in builders
        ]

        def done(request_id: str, response: object, exception: Exception | None) -> None:
            index = int(request_id)
            if exception is None:
                answers[index] = dict(cast(dict[str, object], response)) if response else {}
            elif isinstance(exception, HttpError):
                answers[index] = _from_http_error(exception)
            else:
                # googleapiclient hands a call's own failure here as HttpError only; any
                # other exception is a bug to see, not a call to send again
                raise exception

        batch = BatchHttpRequest(callback=done, batch_uri=self.batch_uri)
        operations = []
        for index, build in enumerate(builders):
            request = build()
            operations.append(request.methodId)
            batch.add(request, request_id=str(index))
        with self._lock:
            try:
                batch.execute(http=self._http)
            except HttpError as exc:  # the envelope itself: every call shares its fate
                error = _from_http_error(exc)
                answers = [error for _ in builders]
            except BatchError as exc:
                error = GoogleError(502, "badBatchResponse", str(exc)[:200])
                answers = [error for _ in builders]
            except Exception as exc:
                unreachable = _unreachable(exc)
                if unreachable is None:
                    raise
                answers = [unreachable for _ in builders]
            else:
                self._save_if_refreshed()
        for operation, answer in zip(operations, answers, strict=True):
            metrics.google_request(operation, _status(answer))  # each call of the batch
        return answers


def _status(answer: BatchAnswer) -> str:
    """A call's status as /metrics counts it: ok, Google's HTTP status, or unreachable."""
    if not isinstance(answer, GoogleError):
        return "ok"
    return str(answer.status) if answer.status else "unreachable"


def _from_http_error(exc: HttpError) -> GoogleError:
    status = int(getattr(exc.resp, "status", 0) or 0)
    header = exc.resp.get("retry-after") if hasattr(exc.resp, "get") else None
    content = exc.content if isinstance(exc.content, bytes) else b""
    return google_error(status, content, header)


_check: type[GoogleBackend] = GoogleCalendar  # mypy: GoogleCalendar is a GoogleBackend
