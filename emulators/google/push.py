"""Push notifications: `events.watch`, `channels.stop` and the webhook POSTs.

Reference: https://developers.google.com/workspace/calendar/api/guides/push
("After creating a new notification channel ... the Google Calendar API sends a sync
message to indicate that notifications are starting" with `X-Goog-Resource-State: sync`
and message number 1; each later change of the watched collection sends `exists`;
notifications carry X-Goog-Channel-ID, X-Goog-Channel-Token (when set),
X-Goog-Channel-Expiration, X-Goog-Resource-ID, X-Goog-Resource-URI, X-Goog-Resource-State
and X-Goog-Message-Number, and have no body).

Deviation: Google only calls HTTPS addresses on registered domains. The stand-in calls
http or https addresses, and only on loopback, since it must never reach another host.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from emulators.google import errors

log = logging.getLogger("calsync.emulators.google.push")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Calendar channels last a week unless the client asks for less.
DEFAULT_TTL = timedelta(days=7)


@dataclass(slots=True)
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration: datetime
    user: str
    calendar_id: str
    message_number: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "api#channel", "id": self.id,
                               "resourceId": self.resource_id,
                               "resourceUri": self.resource_uri}
        if self.token is not None:
            out["token"] = self.token
        out["expiration"] = str(int(self.expiration.timestamp() * 1000))
        return out


class PushNotifier:
    """Keeps channels and delivers their notifications in order on one worker thread."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.channels: dict[str, Channel] = {}
        self._queue: queue.Queue[tuple[Channel, str, int] | None] = queue.Queue()
        # No proxy: HTTP(S)_PROXY must not route a loopback webhook elsewhere.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._worker = threading.Thread(target=self._deliver, name="google-push", daemon=True)
        self._worker.start()
        self.delivered = 0

    def watch(self, user: str, calendar_id: str, body: dict[str, Any],
              base_url: str) -> dict[str, Any]:
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            raise errors.required("Required: id")
        if body.get("type") not in ("web_hook", "webhook"):
            raise errors.invalid("Invalid value for: type")
        address = body.get("address")
        if not isinstance(address, str) or urlsplit(address).scheme not in ("http", "https"):
            raise errors.required("Required: address")
        if urlsplit(address).hostname not in LOOPBACK_HOSTS:
            raise errors.invalid(f"Invalid value for: address {address} (the stand-in only "
                                 "calls loopback addresses)")
        now = self._clock()
        expiration = now + DEFAULT_TTL
        if body.get("expiration") is not None:
            requested = datetime.fromtimestamp(int(body["expiration"]) / 1000, UTC)
            expiration = min(requested, expiration)
        with self._lock:
            if channel_id in self.channels:
                raise errors.duplicate()
            channel = Channel(
                channel_id, uuid.uuid4().hex,
                f"{base_url}/calendar/v3/calendars/{quote(calendar_id, safe='')}/events"
                "?alt=json",
                address, body.get("token"), expiration, user, calendar_id)
            self.channels[channel_id] = channel
            self._enqueue(channel, "sync")
        log.info("channel %s opened", channel_id)
        return channel.to_json()

    def stop(self, user: str, body: dict[str, Any]) -> None:
        with self._lock:
            channel = self.channels.get(str(body.get("id")))
            if (channel is None or channel.user != user
                    or channel.resource_id != body.get("resourceId")):
                raise errors.not_found()
            del self.channels[channel.id]
        log.info("channel %s stopped", channel.id)

    def on_change(self, calendar_id: str) -> None:
        now = self._clock()
        with self._lock:
            for channel in list(self.channels.values()):
                if channel.expiration <= now:
                    del self.channels[channel.id]
                elif channel.calendar_id == calendar_id:
                    self._enqueue(channel, "exists")

    def _enqueue(self, channel: Channel, state: str) -> None:
        channel.message_number += 1
        self._queue.put((channel, state, channel.message_number))

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            channel, state, number = item
            headers = {
                "X-Goog-Channel-ID": channel.id,
                "X-Goog-Channel-Expiration": format_datetime(channel.expiration, usegmt=True),
                "X-Goog-Resource-ID": channel.resource_id,
                "X-Goog-Resource-URI": channel.resource_uri,
                "X-Goog-Resource-State": state,
                "X-Goog-Message-Number": str(number),
                "Content-Length": "0",
            }
            if channel.token is not None:
                headers["X-Goog-Channel-Token"] = channel.token
            # Scheme and host were checked in watch(): http(s) on loopback only.
            request = urllib.request.Request(  # noqa: S310
                channel.address, data=b"", headers=headers, method="POST")
            try:
                with self._opener.open(request, timeout=5) as answer:
                    answer.read()
                self.delivered += 1
            except (urllib.error.URLError, OSError) as exc:
                # Google drops a notification the receiver does not accept; so do we.
                log.info("notification %d on channel %s not delivered: %s", number,
                         channel.id, exc)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)
