"""Compatibility: Google Calendar now lives in sync/backends/google.py (the client) and
sync/backends/base.py (its interface and errors). Removed once every caller imports those."""

from sync.backends.base import GoogleConflict, GoogleError
from sync.backends.google import (
    BATCH_BACKOFF_MAX_S,
    BATCH_BACKOFF_S,
    BATCH_RETRIES,
    BATCH_SIZE,
    BATCH_URI,
    SCOPES,
    TIMEOUT_S,
    GoogleCalendar,
    batch_uri_for,
    save_token_file,
)

__all__ = [
    "BATCH_BACKOFF_MAX_S",
    "BATCH_BACKOFF_S",
    "BATCH_RETRIES",
    "BATCH_SIZE",
    "BATCH_URI",
    "SCOPES",
    "TIMEOUT_S",
    "GoogleCalendar",
    "GoogleConflict",
    "GoogleError",
    "batch_uri_for",
    "save_token_file",
]
