"""Google Calendar API error bodies, in the exact shape Google sends them.

Reference: https://developers.google.com/workspace/calendar/api/guides/errors

Every failure the stand-in reports is a `GoogleApiError` carrying the status code and the
`{"error": {"errors": [...], "code": ..., "message": ...}}` body. The bodies Google publishes
are reproduced field for field (and in the same key order) here; the tests compare them with
the copies in `fixtures/google/errors/`. Bodies Google does not publish (400 `invalid`,
400 `required`) follow the same shape with the `global` domain, as real 400s do.
"""

from __future__ import annotations

from typing import Any


class GoogleApiError(Exception):
    """An error response: HTTP status, JSON body and any extra response headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(f"{status} {body['error']['errors'][0]['reason']}")
        self.status = status
        self.body = body
        self.headers = headers or {}

    @property
    def reason(self) -> str:
        return str(self.body["error"]["errors"][0]["reason"])


def _error(
    code: int,
    domain: str,
    reason: str,
    message: str,
    location_type: str | None = None,
    location: str | None = None,
    headers: dict[str, str] | None = None,
) -> GoogleApiError:
    # Key order matters to nobody's parser, but keeping Google's order makes the bytes match
    # the published examples, which is what users diff against when something looks odd.
    item: dict[str, str] = {"domain": domain, "reason": reason, "message": message}
    if location_type is not None and location is not None:
        item["locationType"] = location_type
        item["location"] = location
    body = {"error": {"errors": [item], "code": code, "message": message}}
    return GoogleApiError(code, body, headers)


def time_range_empty() -> GoogleApiError:
    return _error(
        400, "calendar", "timeRangeEmpty", "The specified time range is empty.",
        "parameter", "timeMax",
    )


def invalid(message: str) -> GoogleApiError:
    return _error(400, "global", "invalid", message)


def invalid_parameter(name: str, message: str) -> GoogleApiError:
    return _error(400, "global", "invalidParameter", message, "parameter", name)


def required(message: str) -> GoogleApiError:
    return _error(400, "global", "required", message)


def bad_request(message: str) -> GoogleApiError:
    return _error(400, "global", "badRequest", message)


def auth_error() -> GoogleApiError:
    # Google adds a WWW-Authenticate challenge to every 401 (RFC 6750 section 3).
    return _error(
        401, "global", "authError", "Invalid Credentials", "header", "Authorization",
        headers={
            "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
            'error="invalid_token"'
        },
    )


def rate_limit_exceeded(status: int, retry_after: int | None = None) -> GoogleApiError:
    """403 or 429 `rateLimitExceeded`: "functionally similar", per the errors guide."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _error(status, "usageLimits", "rateLimitExceeded", "Rate Limit Exceeded",
                  headers=headers)


def user_rate_limit_exceeded() -> GoogleApiError:
    return _error(403, "usageLimits", "userRateLimitExceeded", "User Rate Limit Exceeded")


def not_found() -> GoogleApiError:
    return _error(404, "global", "notFound", "Not Found")


def duplicate() -> GoogleApiError:
    return _error(409, "global", "duplicate", "The requested identifier already exists.")


def deleted() -> GoogleApiError:
    return _error(410, "global", "deleted", "Resource has been deleted")


def full_sync_required() -> GoogleApiError:
    return _error(
        410, "calendar", "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.", "parameter", "syncToken",
    )


def updated_min_too_long_ago() -> GoogleApiError:
    return _error(
        410, "calendar", "updatedMinTooLongAgo",
        "The requested minimum modification time lies too far in the past.",
        "parameter", "updatedMin",
    )


def condition_not_met() -> GoogleApiError:
    return _error(412, "global", "conditionNotMet", "Precondition Failed", "header", "If-Match")


def backend_error() -> GoogleApiError:
    return _error(500, "global", "backendError", "Backend Error")


def service_unavailable(retry_after: int | None = None) -> GoogleApiError:
    # Google's 503 carries the backendError reason with its own message.
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _error(503, "global", "backendError", "The service is currently unavailable.",
                  headers=headers)
