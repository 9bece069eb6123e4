"""Routing an HTTP request (already read off the socket) to the state, and errors to bodies.

References:
* https://developers.google.com/workspace/calendar/api/v3/reference (paths, verbs)
* `googleapiclient/discovery_cache/documents/calendar.v3.json` (the same paths, as the
  client library builds them)
* https://developers.google.com/workspace/calendar/api/guides/batch (one batch part is one
  of these requests; `batch.py` feeds them back through `Api.handle`)

`Api.handle` is socket-free so the batch endpoint and tests can call it directly; the
`server` module only moves bytes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from emulators.google import batch, errors
from emulators.google.auth import OAuthError, User
from emulators.google.faults import AFTER_WRITE, KINDS, FaultInjector, FaultSpecError
from emulators.google.push import PushNotifier
from emulators.google.state import GoogleCalendarState

log = logging.getLogger("calsync.emulators.google")

API_PREFIX = "/calendar/v3"
# Google's batch path for Calendar is `batch/calendar/v3` (the discovery document's
# batchPath); the bare `/batch` is the legacy global endpoint.
BATCH_PATHS = ("/batch/calendar/v3", "/batch")
# No Google path starts with an underscore; nothing under it takes a bearer token.
ADMIN_PREFIX = "/_admin"
JSON_TYPE = "application/json; charset=UTF-8"
#: the longest a "heldAnswer" fault holds an answer when nobody clears it
HELD_ANSWER_MAX_S = 60.0


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise errors.bad_request("Parse Error") from None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Set by the "outage" fault: the server closes the connection without answering.
    drop: bool = False
    delay_ms: int = 0


def json_response(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, indent=1).encode() + b"\n"
    return Response(status, body, {"Content-Type": JSON_TYPE, **(headers or {})})


def error_response(error: errors.GoogleApiError) -> Response:
    return json_response(error.status, error.body, error.headers)


Route = tuple[str, re.Pattern[str], Callable[..., Response]]


class Api:
    def __init__(self, state: GoogleCalendarState, notifier: PushNotifier,
                 faults: FaultInjector) -> None:
        self.state = state
        self.notifier = notifier
        self.faults = faults
        self.base_url = "http://127.0.0.1"
        segment = r"([^/]+)"
        self.routes: list[Route] = [
            ("GET", re.compile(r"/users/me/calendarList"), self._calendar_list),
            ("GET", re.compile(rf"/users/me/calendarList/{segment}"), self._calendar_list_get),
            ("POST", re.compile(r"/calendars"), self._calendar_insert),
            ("GET", re.compile(rf"/calendars/{segment}"), self._calendar_get),
            ("GET", re.compile(rf"/calendars/{segment}/events"), self._events_list),
            ("POST", re.compile(rf"/calendars/{segment}/events"), self._events_insert),
            ("POST", re.compile(rf"/calendars/{segment}/events/import"), self._events_import),
            ("POST", re.compile(rf"/calendars/{segment}/events/watch"), self._events_watch),
            ("GET", re.compile(rf"/calendars/{segment}/events/{segment}/instances"),
             self._events_instances),
            ("GET", re.compile(rf"/calendars/{segment}/events/{segment}"), self._events_get),
            ("PUT", re.compile(rf"/calendars/{segment}/events/{segment}"), self._events_update),
            ("PATCH", re.compile(rf"/calendars/{segment}/events/{segment}"),
             self._events_patch),
            ("DELETE", re.compile(rf"/calendars/{segment}/events/{segment}"),
             self._events_delete),
            ("POST", re.compile(r"/channels/stop"), self._channels_stop),
        ]

    # -- entry point -----------------------------------------------------------------------

    def handle(self, request: Request, in_batch: bool = False) -> Response:
        path = request.path
        if path.startswith(ADMIN_PREFIX + "/") or path == ADMIN_PREFIX:
            return self._admin(request)
        if path == "/token":
            return self._with_faults(request, self._token, kinds=("latency", "outage"))
        if path in BATCH_PATHS and not in_batch:
            if request.method != "POST":
                return error_response(errors.not_found())
            # The envelope can be slowed or dropped (before or after its parts are carried
            # out); each part meets the error faults.
            return self._with_faults(request, self._batch,
                                     kinds=("latency", "outage", "lostAnswer", "heldAnswer"))
        if path.startswith(API_PREFIX + "/"):
            kinds = ("403", "429", "500", "503") if in_batch else None
            return self._with_faults(request, self._api, kinds=kinds)
        return error_response(errors.not_found())

    def _user_of(self, request: Request) -> str | None:
        token = _bearer(request)
        if not token:
            return None
        with self.state.lock:
            user = self.state.accounts.user_for_access_token(token, self.state.clock())
        return user.email if user else None

    def _with_faults(self, request: Request, handler: Callable[[Request], Response],
                     kinds: tuple[str, ...] | None = None) -> Response:
        delay = 0
        user = self._user_of(request)
        wanted = kinds or KINDS
        fault = self.faults.pick(user, wanted, write=request.method != "GET")
        if fault is not None:
            log.info("injecting fault %s (id %d)", fault.kind, fault.id)
            if fault.kind == "outage":
                return Response(0, drop=True)
            if fault.kind in AFTER_WRITE:
                handler(request)  # carried out; the client never learns it
                if fault.kind == "heldAnswer":
                    fault.released.wait(HELD_ANSWER_MAX_S)
                return Response(0, drop=True)
            if fault.kind == "latency":
                delay = fault.latency_ms
            else:
                error = fault.error()
                assert error is not None
                return error_response(error)
        response = handler(request)
        response.delay_ms += delay
        return response

    def _api(self, request: Request) -> Response:
        sub = unquote_path(request.path[len(API_PREFIX):])
        allowed = False
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(sub)
            if match is None:
                continue
            allowed = True
            if method != request.method:
                continue
            try:
                with self.state.lock:
                    user = self.state.authenticate(_bearer(request))
                    return handler(request, user, *[unquote(g) for g in match.groups()])
            except errors.GoogleApiError as exc:
                log.info("%s %s -> %d %s", request.method, pattern.pattern, exc.status,
                         exc.reason)
                return error_response(exc)
        if allowed:
            return json_response(405, {"error": {"errors": [{
                "domain": "global", "reason": "httpMethodNotAllowed",
                "message": "HTTP method not allowed"}], "code": 405,
                "message": "HTTP method not allowed"}})
        return error_response(errors.not_found())

    # -- calendars -------------------------------------------------------------------------

    def _calendar_list(self, request: Request, user: User) -> Response:
        return json_response(200, self.state.calendar_list(user))

    def _calendar_list_get(self, request: Request, user: User, calendar_id: str) -> Response:
        calendar = self.state.calendar_for(user, calendar_id)
        return json_response(200, self.state.calendar_list_entry(calendar))

    def _calendar_get(self, request: Request, user: User, calendar_id: str) -> Response:
        calendar = self.state.calendar_for(user, calendar_id)
        return json_response(200, self.state.calendar_resource(calendar))

    def _calendar_insert(self, request: Request, user: User) -> Response:
        return json_response(200, self.state.insert_calendar(user, _object(request)))

    # -- events ----------------------------------------------------------------------------

    def _events_list(self, request: Request, user: User, calendar_id: str) -> Response:
        return json_response(200, self.state.list_events(user, calendar_id, request.params))

    def _events_insert(self, request: Request, user: User, calendar_id: str) -> Response:
        event = self.state.insert_event(user, calendar_id, _object(request), request.params)
        log.info("events.insert %s", event["id"])
        return json_response(200, event)

    def _events_import(self, request: Request, user: User, calendar_id: str) -> Response:
        event = self.state.insert_event(user, calendar_id, _object(request), request.params,
                                        imported=True)
        return json_response(200, event)

    def _events_get(self, request: Request, user: User, calendar_id: str,
                    event_id: str) -> Response:
        return json_response(200, self.state.get_event(user, calendar_id, event_id))

    def _events_update(self, request: Request, user: User, calendar_id: str,
                       event_id: str) -> Response:
        event = self.state.update_event(user, calendar_id, event_id, _object(request),
                                        request.params, request.headers.get("if-match"),
                                        patch=False)
        return json_response(200, event)

    def _events_patch(self, request: Request, user: User, calendar_id: str,
                      event_id: str) -> Response:
        event = self.state.update_event(user, calendar_id, event_id, _object(request),
                                        request.params, request.headers.get("if-match"),
                                        patch=True)
        return json_response(200, event)

    def _events_delete(self, request: Request, user: User, calendar_id: str,
                       event_id: str) -> Response:
        self.state.delete_event(user, calendar_id, event_id, request.params,
                                request.headers.get("if-match"))
        return Response(204)

    def _events_instances(self, request: Request, user: User, calendar_id: str,
                          event_id: str) -> Response:
        return json_response(200, self.state.instances(user, calendar_id, event_id,
                                                       request.params))

    def _events_watch(self, request: Request, user: User, calendar_id: str) -> Response:
        calendar = self.state.calendar_for(user, calendar_id)
        channel = self.notifier.watch(user.email, calendar.id, _object(request),
                                      self.base_url)
        return json_response(200, channel)

    def _channels_stop(self, request: Request, user: User) -> Response:
        self.notifier.stop(user.email, _object(request))
        return Response(204)

    # -- OAuth token endpoint --------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return json_response(405, {"error": "invalid_request",
                                       "error_description": "POST only"})
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        try:
            with self.state.lock:
                answer = self.state.refresh(form)
        except OAuthError as exc:
            return json_response(exc.status, exc.body)
        log.info("token refreshed")
        return json_response(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    # -- batch -----------------------------------------------------------------------------

    def _batch(self, request: Request) -> Response:
        try:
            parts = batch.parse(request.headers.get("content-type", ""), request.body)
        except batch.BatchFormatError as exc:
            return error_response(errors.bad_request(str(exc)))
        answers = []
        for part in parts:
            inner = part.request
            if "authorization" not in inner.headers and "authorization" in request.headers:
                # A part without its own credentials uses the envelope's.
                inner.headers["authorization"] = request.headers["authorization"]
            answers.append((part.content_id, self.handle(inner, in_batch=True)))
        boundary, body = batch.serialize(answers)
        return Response(200, body, {"Content-Type": f"multipart/mixed; boundary={boundary}"})

    # -- admin -----------------------------------------------------------------------------

    def _admin(self, request: Request) -> Response:
        sub = request.path[len(ADMIN_PREFIX):]
        try:
            if sub == "/faults":
                if request.method == "POST":
                    try:
                        fault = self.faults.add(request.json())
                    except FaultSpecError as exc:
                        return json_response(400, {"error": str(exc)})
                    return json_response(200, fault.to_json())
                if request.method == "DELETE":
                    self.faults.clear()
                    return Response(204)
                if request.method == "GET":
                    return json_response(200, [f.to_json() for f in self.faults.active()])
            if sub == "/users" and request.method == "POST":
                spec = _object(request)
                email = spec.get("email")
                if not isinstance(email, str) or "@" not in email:
                    return json_response(400, {"error": "email is required"})
                with self.state.lock:
                    self.state.add_user(email, str(spec.get("timeZone") or "UTC"))
                return json_response(200, {"email": email})
            match = re.fullmatch(r"/users/([^/]+)/(expireAccessTokens|expireSyncTokens)", sub)
            if match and request.method == "POST":
                email = unquote(match.group(1))
                with self.state.lock:
                    if match.group(2) == "expireAccessTokens":
                        self.state.expire_access_tokens(email)
                    else:
                        self.state.expire_sync_tokens(email)
                return Response(204)
            if sub == "/calls" and request.method == "GET":
                with self.state.lock:
                    calls = [{"method": c.method, "user": c.user, "calendarId": c.calendar_id,
                              "eventId": c.event_id, "sendUpdates": c.send_updates}
                             for c in self.state.calls]
                return json_response(200, calls)
        except errors.GoogleApiError as exc:
            return error_response(exc)
        return json_response(404, {"error": "no such admin endpoint"})


def unquote_path(path: str) -> str:
    # Segments are unquoted one by one after matching, so an encoded "/" in an id can't
    # change the route; here only a trailing slash is forgiven.
    return path.rstrip("/") or "/"


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _object(request: Request) -> dict[str, Any]:
    value = request.json()
    if not isinstance(value, dict):
        raise errors.bad_request("Parse Error")
    return value
