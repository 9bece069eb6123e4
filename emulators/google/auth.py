"""Users, OAuth 2.0 access and refresh tokens, and the token endpoint's grant logic.

References:
* https://developers.google.com/identity/protocols/oauth2/web-server#offline
  (refreshing an access token: `POST /token` with `grant_type=refresh_token`; the answer
  carries `access_token`, `expires_in`, `scope`, `token_type`; a bad refresh token gets
  400 `invalid_grant`).
* https://developers.google.com/workspace/calendar/api/guides/errors#401_invalid_credentials
  (an expired or unknown access token gets 401 `authError`).

A user created with `--user alice@example.com` can call the API with the access token
`alice@example.com` (it never expires on its own, so a demo can use it straight away) and
refresh with `refresh-alice@example.com`; refreshed tokens expire like Google's, after
3599 seconds on the stand-in's clock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# Google's access tokens last an hour; it reports 3599 to leave room for clock skew.
ACCESS_TOKEN_LIFETIME = 3599
DEFAULT_SCOPE = "https://www.googleapis.com/auth/calendar"


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer from the token endpoint."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(error)
        self.status = status
        self.body = {"error": error, "error_description": description}


@dataclass(slots=True)
class User:
    email: str
    refresh_token: str
    time_zone: str = "UTC"
    # access token -> expiry (None: the address token, valid until an admin expires it)
    access_tokens: dict[str, datetime | None] = field(default_factory=dict)
    # Bumped by the admin endpoint: sync tokens minted under an older epoch get 410.
    sync_epoch: int = 0


class Accounts:
    """Every known user and token; the only place that turns a bearer token into a user."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    def add(self, email: str, time_zone: str = "UTC") -> User:
        user = self.users.get(email)
        if user is None:
            user = User(email=email, refresh_token=f"refresh-{email}", time_zone=time_zone)
            user.access_tokens[email] = None
            self.users[email] = user
        return user

    def user_for_access_token(self, token: str, now: datetime) -> User | None:
        for user in self.users.values():
            if token in user.access_tokens:
                expiry = user.access_tokens[token]
                if expiry is not None and expiry <= now:
                    return None
                return user
        return None

    def refresh(self, form: dict[str, str], now: datetime) -> tuple[User, dict[str, object]]:
        grant_type = form.get("grant_type", "")
        if grant_type != "refresh_token":
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        if not form.get("client_id"):
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        token = form.get("refresh_token", "")
        user = next((u for u in self.users.values() if u.refresh_token == token), None)
        if user is None:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        access = "ya29.stand-in." + secrets.token_urlsafe(24)
        user.access_tokens[access] = now + timedelta(seconds=ACCESS_TOKEN_LIFETIME)
        answer: dict[str, object] = {
            "access_token": access,
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "scope": form.get("scope") or DEFAULT_SCOPE,
            "token_type": "Bearer",
        }
        return user, answer

    def expire_access_tokens(self, email: str) -> None:
        # Keeping the tokens with a past expiry (rather than forgetting them) keeps the 401
        # identical to what Google answers for an expired token.
        user = self.users[email]
        user.access_tokens = dict.fromkeys(user.access_tokens, _EXPIRED)

    def expire_sync_tokens(self, email: str) -> None:
        self.users[email].sync_epoch += 1


_EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)
